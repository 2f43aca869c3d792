//! Budgets on a real host: a flood is refused with the name of the budget
//! it hit, the host's memory stays within that budget, and the host keeps
//! serving everybody else. Each flood runs on a host of a cluster that
//! holds a Raft group, and the group must still take writes after it (or
//! while it is held).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/native.rs"]
mod support;

use std::time::Duration;

use ww_tests::{raft_rom, rom, wait_until, ww, Cluster};

const TIMEOUT: Duration = Duration::from_secs(60);

/// The host the floods target: it holds one of the group's replicas.
const FLOODED: usize = 1;

/// Four hosts, started with `extra`, and a Raft group whose replicas are
/// on hosts 1 to 3 (host 0 is the clients'). Every flood runs beside it.
fn beside_a_group(extra: &[&str]) -> Cluster {
    let cluster = raft_rom::deployed_with(4, TIMEOUT, extra);
    raft_rom::run(
        &cluster.hosts[0].addr,
        &["put", "before", "the flood"],
        TIMEOUT,
    )
    .assert_ok();
    cluster
}

/// The group still takes writes and serves reads: a few `ww run` clients
/// put keys named after `flood` and read the last one back.
fn assert_group_writes(cluster: &Cluster, flood: &str) {
    let client = &cluster.hosts[0].addr;
    let keys: Vec<String> = (0..3).map(|n| format!("{flood}-{n}")).collect();
    for key in &keys {
        raft_rom::run(client, &["put", key, flood], TIMEOUT).assert_ok();
    }
    let got = raft_rom::run(client, &["get", &keys[2]], TIMEOUT);
    got.assert_ok();
    assert!(got.stdout.contains(flood), "{got:#?}");
}

/// The `field` (in KiB) of process `pid`'s `/proc` status.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// The most resident memory process `pid` has had, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// The number in the first `refused after N MiB` in `text`.
fn refused_after_mib(text: &str) -> usize {
    text.match_indices("refused after ")
        .find_map(|(at, found)| {
            let rest = &text[at + found.len()..];
            let (number, rest) = rest.split_once(' ')?;
            rest.starts_with("MiB").then(|| number.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no `refused after N MiB` in {text}"))
}

/// The first line of `text` that says it was refused after some MiB.
fn mib_refusal(text: &str) -> Option<&str> {
    text.lines()
        .find(|line| line.contains("refused after") && line.contains(" MiB: "))
}

#[test]
fn an_anchor_flood_stops_at_its_writers_share_and_the_host_keeps_serving() {
    const MIB: u64 = 1024;
    let cluster = beside_a_group(&[]);
    let host = &cluster.hosts[FLOODED];
    let misbehave = rom("misbehave");
    let misbehave = misbehave.to_str().unwrap();
    let before_kib = rss_kib(host.pid());

    // `ww run` acts for a caller that is not a process of the host, so its
    // values count against the share of all such callers: 64 MiB.
    let flood = ww(&["run", "--peer", &host.addr, misbehave, "anchor-flood"]);
    flood.assert_ok();
    assert!(
        flood.stdout.contains("refused after 64 MiB")
            && flood.stdout.contains("WRITER_DATA_BYTES_MAX"),
        "{flood:#?}"
    );
    // The share is spent: a second such caller, on new paths, is refused at
    // once.
    let again = ww(&[
        "run",
        "--peer",
        &host.addr,
        misbehave,
        "anchor-flood",
        "more",
    ]);
    again.assert_ok();
    assert!(again.stdout.contains("refused after 0 MiB"), "{again:#?}");

    // The host holds what it admitted and no more: without the budget the
    // flood would have anchored 1 GiB.
    let grown_kib = rss_kib(host.pid()).saturating_sub(before_kib);
    eprintln!("host RSS grew {grown_kib} KiB for 64 MiB of admitted data");
    assert!(
        grown_kib < 160 * MIB,
        "the host grew by {grown_kib} KiB for 64 MiB of admitted data"
    );

    // And it keeps serving: the admitted values are there, a process of the
    // host still answers.
    let listing = ww(&[
        "ls",
        "--peer",
        &host.addr,
        &format!("/{}/flood", host.peer_id),
    ]);
    listing.assert_ok();
    assert_eq!(listing.stdout.lines().count(), 64, "{listing:#?}");
    let peer = ww(&["run", "--peer", &host.addr, misbehave, "peer-id"]);
    peer.assert_ok();
    assert!(peer.stdout.contains(&host.peer_id), "{peer:#?}");
    assert_group_writes(&cluster, "anchor-flood");
}

#[test]
fn a_channel_flood_stops_at_each_writers_share_and_the_host_keeps_serving() {
    const MIB: u64 = 1024;
    // A writer's share (CHANNEL_WRITER_BYTES_MAX, 64 MiB) holds 63 messages
    // of 1 MiB and their overhead; the flooder checks for a refusal every 8
    // sends, and sends after the refused one are refused too.
    const SHARE_MIB: usize = 63;
    let cluster = beside_a_group(&[]);
    let host = &cluster.hosts[FLOODED];
    let (misbehave, probe) = (rom("misbehave"), rom("probe"));
    let (misbehave, probe) = (misbehave.to_str().unwrap(), probe.to_str().unwrap());
    let before_kib = rss_kib(host.pid());

    // A process of the host floods and keeps what it was admitted.
    let spawner = ww(&[
        "run",
        "--peer",
        &host.addr,
        probe,
        "child",
        "--detach",
        "--",
        "channel-flood",
        "hold",
    ]);
    spawner.assert_ok();
    let log = wait_until(
        "the flooding process to be refused",
        Duration::from_secs(120),
        || {
            let log = host.log();
            mib_refusal(&log).is_some().then_some(log)
        },
    );
    let channels = log
        .lines()
        .find(|line| line.contains("channels refused after"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        channels.contains("channels refused after 4096")
            && channels.contains("WRITER_CHANNELS_MAX"),
        "{channels}"
    );
    let held = mib_refusal(&log).unwrap();
    assert!(held.contains("CHANNEL_WRITER_BYTES_MAX"), "{held}");
    assert_eq!(refused_after_mib(held), SHARE_MIB, "{held}");

    // Its flood leaves the other writers their shares: a CLI client floods
    // next to it and is refused at its own share, not before.
    let flood = ww(&["run", "--peer", &host.addr, misbehave, "channel-flood"]);
    flood.assert_ok();
    assert!(
        flood.stdout.contains("channels refused after 4096")
            && flood.stdout.contains("WRITER_CHANNELS_MAX"),
        "{flood:#?}"
    );
    assert!(
        flood.stdout.contains("CHANNEL_WRITER_BYTES_MAX"),
        "{flood:#?}"
    );
    assert_eq!(refused_after_mib(&flood.stdout), SHARE_MIB, "{flood:#?}");

    // The host held two shares at once and no more: without the budget the
    // two floods would have held 256 MiB each. Two shares are 128 MiB; the
    // rest is slack for the allocator and the RPC read buffers (a message
    // is read whole before it is charged).
    let grown_kib = rss_kib(host.pid()).saturating_sub(before_kib);
    let peak_kib = peak_rss_kib(host.pid()).saturating_sub(before_kib);
    eprintln!(
        "host RSS grew {grown_kib} KiB (peak {peak_kib} KiB over the start) for two 64 MiB shares"
    );
    assert!(
        peak_kib < 224 * MIB,
        "the host peaked {peak_kib} KiB over its start"
    );

    // And it keeps serving: another ROM still answers, and the CLI flood's
    // share came back when it ended, so it can flood again.
    let peer = ww(&["run", "--peer", &host.addr, misbehave, "peer-id"]);
    peer.assert_ok();
    assert!(peer.stdout.contains(&host.peer_id), "{peer:#?}");
    let again = ww(&["run", "--peer", &host.addr, misbehave, "channel-flood"]);
    again.assert_ok();
    assert_eq!(refused_after_mib(&again.stdout), SHARE_MIB, "{again:#?}");
    assert_group_writes(&cluster, "channel-flood");
}

#[test]
fn a_subscriber_that_never_reads_holds_its_share_and_the_host_keeps_serving() {
    const MIB: u64 = 1024;
    // Eight times a subscriber's share (SUBSCRIBER_BYTES_MAX, 64 MiB); its
    // buffer of 65,536 messages would take them all.
    const FLOOD_MIB: u64 = 512;
    let cluster = beside_a_group(&[]);
    let host = &cluster.hosts[FLOODED];
    let (misbehave, probe) = (rom("misbehave"), rom("probe"));
    let (misbehave, probe) = (misbehave.to_str().unwrap(), probe.to_str().unwrap());
    let before_kib = rss_kib(host.pid());

    let spawner = ww(&[
        "run",
        "--peer",
        &host.addr,
        probe,
        "child",
        "--detach",
        "--host",
        "--",
        "subscribe-hold",
        "flood",
    ]);
    spawner.assert_ok();
    wait_until(
        "the subscriber to subscribe",
        Duration::from_secs(60),
        || host.log().contains("subscribed to flood").then_some(()),
    );
    let flood = ww(&[
        "run",
        "--peer",
        &host.addr,
        misbehave,
        "pubsub-flood",
        "flood",
        &FLOOD_MIB.to_string(),
    ]);
    flood.assert_ok();
    assert!(
        flood.stdout.contains(&format!("published {FLOOD_MIB} MiB")),
        "{flood:#?}"
    );
    // The host says which budget dropped messages, once.
    let log = host.log();
    assert_eq!(log.matches("(SUBSCRIBER_BYTES_MAX)").count(), 1, "{log}");

    // It buffered one share, not the flood: 64 MiB, and slack for the
    // allocator and the messages in transit.
    let grown_kib = rss_kib(host.pid()).saturating_sub(before_kib);
    let peak_kib = peak_rss_kib(host.pid()).saturating_sub(before_kib);
    eprintln!(
        "host RSS grew {grown_kib} KiB (peak {peak_kib} KiB over the start) for a {FLOOD_MIB} MiB flood"
    );
    assert!(
        peak_kib < 160 * MIB,
        "the host peaked {peak_kib} KiB over its start"
    );

    // The subscriber, reading at last, gets the newest share and a count of
    // what was dropped (63 messages of 1 MiB and their overhead fit).
    ww(&[
        "set",
        "--peer",
        &host.addr,
        &format!("/{}/flood-done", host.peer_id),
        "1",
    ])
    .assert_ok();
    let line = wait_until("the subscriber to read", Duration::from_secs(60), || {
        host.log()
            .lines()
            .find(|line| line.contains("first message"))
            .map(str::to_owned)
    });
    let kept = 63;
    let first = FLOOD_MIB - kept;
    assert!(
        line.contains(&format!("first message {first}, {first} dropped before it")),
        "{line}"
    );

    // And the host keeps serving.
    let peer = ww(&["run", "--peer", &host.addr, misbehave, "peer-id"]);
    peer.assert_ok();
    assert!(peer.stdout.contains(&host.peer_id), "{peer:#?}");
    assert_group_writes(&cluster, "subscriber-flood");
}

#[test]
fn a_pipelined_call_flood_stops_at_the_calls_in_flight_cap_and_the_host_keeps_serving() {
    use ww_api::limits::CALLS_IN_FLIGHT_PER_CONNECTION_MAX as CAP;
    use ww_tests::metrics::{find, scrape};
    const MIB: u64 = 1024;
    // Host 0, through which every client of the group reaches it: a
    // replica's host has calls of its own in flight, which the counts
    // below would include.
    let cluster = beside_a_group(&["--http", "127.0.0.1:0"]);
    let host = &cluster.hosts[0];
    let http = host.http.clone().expect("--http address");
    let misbehave = rom("misbehave");
    let misbehave = misbehave.to_str().unwrap();
    let before_kib = rss_kib(host.pid());

    // 20,000 `recv` calls that never return, pipelined by a process of the
    // host (spawned by the probe ROM with the host's authority, so it can
    // make a channel).
    let pid = spawn_child(
        &host.addr,
        "flooder",
        &["--host"],
        &["call-flood", "20000", "600"],
    );
    let in_flight = wait_until("the flood refused past the cap", TIMEOUT, || {
        let samples = scrape(&http);
        let in_flight = find(&samples, "ww_rpc_calls_in_flight", &[("from", "process")])?;
        let refused = find(
            &samples,
            "ww_rpc_calls_refused_total",
            &[("from", "process")],
        )?;
        (in_flight >= CAP as f64 && refused >= (20_000 - CAP) as f64).then_some(in_flight)
    });
    assert_eq!(in_flight, CAP as f64, "calls in flight");

    // The host keeps serving others meanwhile, and holds little for it.
    let peer = ww(&["run", "--peer", &host.addr, misbehave, "peer-id"]);
    peer.assert_ok();
    assert!(peer.stdout.contains(&host.peer_id), "{peer:#?}");
    ww(&["ls", "--peer", &host.addr, "/"]).assert_ok();
    assert_group_writes(&cluster, "call-flood");
    let grown_kib = rss_kib(host.pid()).saturating_sub(before_kib);
    eprintln!("host RSS grew {grown_kib} KiB holding {in_flight} calls");
    // The flooder's linear memory (its 20,000 promises and queued calls)
    // lives in the host's RSS too, bounded by its own 512 MiB limit; the
    // host's part, with 4,096 calls held, is what the 64 MiB allows.
    assert!(
        grown_kib < (512 + 64) * MIB,
        "the host grew by {grown_kib} KiB"
    );
    let samples = scrape(&http);
    let still = find(&samples, "ww_rpc_calls_in_flight", &[("from", "process")]).unwrap();
    assert_eq!(still, CAP as f64, "calls in flight");

    // The flooder killed, its calls are given back.
    ww(&[
        "kill",
        "--peer",
        &host.addr,
        &format!("{}/{pid}", host.peer_id),
    ])
    .assert_ok();
    wait_until("the flooder's calls released", TIMEOUT, || {
        let in_flight = find(
            &scrape(&http),
            "ww_rpc_calls_in_flight",
            &[("from", "process")],
        )?;
        (in_flight == 0.0).then_some(())
    });
}

/// Descriptors process `pid` holds open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The process `id` in `ww ps --json` on `addr`.
fn process(addr: &str, id: &str) -> Option<serde_json::Value> {
    let out = ww(&["ps", "--json", "--peer", addr]);
    out.assert_ok();
    let ps: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    ps["processes"]
        .as_array()?
        .iter()
        .find(|process| {
            process["id"]
                .as_u64()
                .is_some_and(|pid| pid.to_string() == id)
        })
        .cloned()
}

/// Spawns the misbehave ROM with `args` as a detached process named `name`
/// of the host at `addr` (the probe ROM spawns it, with `options` such as
/// `--volume V` or `--host`); returns its pid.
fn spawn_child(addr: &str, name: &str, options: &[&str], args: &[&str]) -> String {
    let probe = rom("probe");
    let mut argv = vec!["run", "--peer", addr, probe.to_str().unwrap(), "child"];
    argv.extend_from_slice(options);
    argv.extend_from_slice(&["--detach", "--name", name, "--"]);
    argv.extend_from_slice(args);
    let spawned = ww(&argv);
    spawned.assert_ok();
    spawned
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("child pid "))
        .unwrap_or_else(|| panic!("no child pid: {spawned:#?}"))
        .to_owned()
}

/// Waits for process `pid` of the host at `addr` to end; returns its entry
/// in `ww ps --json` and its exit message.
fn wait_ended(addr: &str, pid: &str) -> (serde_json::Value, String) {
    let ended = wait_until("the process ends", TIMEOUT, || {
        process(addr, pid).filter(|p| p["state"] != "running" && p["state"] != "starting")
    });
    let message = ended["exit"].as_str().unwrap_or_default().to_owned();
    (ended, message)
}

#[test]
fn a_descriptor_flood_ends_at_its_processes_cap_and_the_host_keeps_serving() {
    // A process's WASI resources, its open files among them.
    use ww::limits::RESOURCES_MAX;
    let cluster = beside_a_group(&[]);
    let host = &cluster.hosts[FLOODED];
    let before = open_fds(host.pid());

    let (ended, message) = run_opener(&host.addr);
    assert_eq!(ended["state"], "trapped", "{ended}");
    assert!(
        message.contains("killed by the descriptor limit") && message.contains("resources_max"),
        "{ended}"
    );

    // It got as far as the cap and no further: it said how many it held
    // every 256, and the last count is below the cap.
    let most = most_files_held(&host.log());
    assert!(
        (RESOURCES_MAX - 256..RESOURCES_MAX).contains(&most),
        "held at most {most} files"
    );
    assert_opener_gone(&cluster, host, before, "descriptor-flood");
}

/// Runs a process on the host at `addr` that opens one file of its volume
/// again and again, keeping every descriptor, until something stops it;
/// returns how it ended, as [`wait_ended`].
fn run_opener(addr: &str) -> (serde_json::Value, String) {
    let pid = spawn_child(addr, "opener", &["--volume", "flood"], &["open-flood"]);
    wait_ended(addr, &pid)
}

/// The most files an `open-flood` process said it held (it says so every
/// 256), from its host's log.
fn most_files_held(log: &str) -> usize {
    log.lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once("holding ")?;
            let (count, rest) = rest.split_once(' ')?;
            rest.starts_with("open files")
                .then(|| count.parse::<usize>().ok())?
        })
        .max()
        .unwrap_or(0)
}

/// The `open-flood` process on `host` ended: its descriptors went with it
/// (the host held `before`), the host serves a new client, and the group
/// keeps writing.
fn assert_opener_gone(cluster: &Cluster, host: &ww_tests::Host, before: usize, flood: &str) {
    wait_until("the opener's descriptors closed", TIMEOUT, || {
        (open_fds(host.pid()) < before + 64).then_some(())
    });
    host.assert_runs_a_new_process();
    assert_group_writes(cluster, flood);
}

#[test]
fn a_publish_flood_to_a_topic_nobody_reads_holds_at_most_the_waiting_budget() {
    const PENDING_MIB: u64 = (ww_net::limits::PENDING_PUBLISHES_BYTES_MAX >> 20) as u64;
    const PUBLISHES: u64 = 1_000;
    const PUBLISH_KIB: u64 = 256;
    let cluster = beside_a_group(&[]);
    let host = &cluster.hosts[FLOODED];
    let misbehave = rom("misbehave");
    let misbehave = misbehave.to_str().unwrap();
    let before_kib = peak_rss_kib(host.pid());

    // 250 MiB of publishes, pipelined, to a topic with no subscriber: each
    // taken one waits for one (`PUBLISH_WAIT_MS`), then fails.
    let flood = ww(&[
        "run",
        "--peer",
        &host.addr,
        misbehave,
        "publish-flood",
        "nobody-reads",
        &PUBLISHES.to_string(),
        &PUBLISH_KIB.to_string(),
    ]);
    flood.assert_ok();
    let line = flood
        .stdout
        .lines()
        .find(|line| line.starts_with("delivered "))
        .unwrap_or_else(|| panic!("{flood:#?}"));
    let counts: Vec<u64> = line
        .split([' ', ',', ':'])
        .filter_map(|word| word.parse().ok())
        .collect();
    // The budget's worth waited, the rest was refused. More may have
    // waited when the flood took longer to arrive than a publish waits
    // (a loaded machine): the first to wait had expired and made room.
    let budget = PENDING_MIB * 1024 / PUBLISH_KIB;
    let [delivered, waited, refused] = counts[..3] else {
        panic!("{line}");
    };
    assert_eq!(delivered, 0, "{line}");
    assert_eq!(waited + refused, PUBLISHES, "{line}");
    assert!(waited >= budget && refused > 0, "{line}");
    assert!(line.contains("PENDING_PUBLISHES_BYTES_MAX"), "{line}");

    // The host held the budget's worth, not the flood's.
    let grown_mib = (peak_rss_kib(host.pid()) - before_kib) / 1024;
    eprintln!("host peak RSS grew {grown_mib} MiB");
    assert!(
        grown_mib < PENDING_MIB * 3,
        "the host grew by {grown_mib} MiB"
    );
    let peer = ww(&["run", "--peer", &host.addr, misbehave, "peer-id"]);
    peer.assert_ok();
    assert!(peer.stdout.contains(&host.peer_id), "{peer:#?}");
    assert_group_writes(&cluster, "publish-flood");
}

/// Bytes the files under `dir` take on disk.
fn disk_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.path().symlink_metadata().unwrap();
        bytes += meta.blocks() * 512;
        if meta.is_dir() {
            bytes += disk_bytes(&entry.path());
        }
    }
    bytes
}

#[test]
fn a_volume_filler_is_refused_at_its_quota_and_the_host_keeps_serving() {
    const QUOTA_MIB: u64 = 64;
    let cluster = beside_a_group(&["--volume-limit-mb", &QUOTA_MIB.to_string()]);
    let host = &cluster.hosts[FLOODED];
    let misbehave = rom("misbehave");
    let misbehave = misbehave.to_str().unwrap();
    // A process writes 1 MiB files into its volume until a write fails.
    let pid = spawn_child(&host.addr, "filler", &["--volume", "filler"], &["fill"]);
    let (ended, message) = wait_ended(&host.addr, &pid);
    assert_eq!(ended["state"], "exited", "{ended}");
    assert_eq!(message, "exited with 1", "{ended}");
    // The write past the quota failed in the guest (wasi-libc reports a
    // failed stream write as EIO), and the host named the quota.
    let log = host.log();
    assert!(
        log.contains("error: I/O error") && log.contains("stream=\"stderr\""),
        "the guest saw no failed write:\n{log}"
    );
    assert!(
        log.contains("refused a write of") && log.contains("--volume-limit-mb"),
        "the host named no quota:\n{log}"
    );
    let written = log
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once("wrote ")?;
            let (mib, rest) = rest.split_once(' ')?;
            rest.starts_with("MiB").then(|| mib.parse::<u64>().ok())?
        })
        .max()
        .unwrap_or(0);
    // It wrote up to the quota and no further: the volume holds the quota
    // on disk, within a few files below it and the file system's own
    // blocks above it (extent blocks, preallocation: seen 64 KiB).
    let volume = cluster
        .dir()
        .join(format!("host{FLOODED}"))
        .join("volumes")
        .join("filler");
    let held = disk_bytes(&volume);
    eprintln!(
        "the filler wrote {written} MiB or more; its volume holds {} KiB",
        held >> 10
    );
    assert!(
        held <= (QUOTA_MIB << 20) + ww::limits::VOLUME_OVERHEAD_BYTES_MAX,
        "held {held} bytes"
    );
    assert!(held > (QUOTA_MIB - 4) << 20, "held {held} bytes");
    assert!(written >= QUOTA_MIB - 16, "wrote {written} MiB");

    let peer = ww(&["run", "--peer", &host.addr, misbehave, "peer-id"]);
    peer.assert_ok();
    assert!(peer.stdout.contains(&host.peer_id), "{peer:#?}");
    assert_group_writes(&cluster, "volume-filler");
}

#[test]
fn a_memory_bomb_across_sixteen_memories_stops_at_its_processes_budget_and_the_group_keeps_writing()
{
    use ww::limits::{MEMORIES_MAX, MEMORY_BYTES_MAX_DEFAULT};
    const STEP_MIB: u64 = 64;
    const BUDGET_MIB: u64 = (MEMORY_BYTES_MAX_DEFAULT >> 20) as u64;
    let memories = MEMORIES_MAX as u64;
    // Held to each memory alone, the bomb would hold twice its budget.
    assert!(memories * STEP_MIB >= 2 * BUDGET_MIB);
    let mut cluster = beside_a_group(&[]);
    let host = &cluster.hosts[FLOODED];
    let rss_before = rss_kib(host.pid());
    let bomb = ww_tests::memory_bomb::component(memories as u32, STEP_MIB as u32);
    let addr: libp2p::Multiaddr = host.addr.parse().unwrap();
    let (code, message) = support::native(async {
        let (_node, host) = support::connect_host(&addr).await;
        support::spawn_and_wait_for_exit(&host, &bomb, &[], &[], TIMEOUT).await
    });
    let peak_mib = peak_rss_kib(host.pid()).saturating_sub(rss_before) >> 10;
    eprintln!("memory bomb: {message}; the host's peak RSS grew {peak_mib} MiB");
    // It trapped at the budget, which the message names, with the total it
    // asked for: the budget and one more step.
    assert_eq!(code, -1, "{message}");
    assert!(
        message.contains("killed by the memory limit") && message.contains("(memory_bytes_max)"),
        "{message}"
    );
    let asked = (BUDGET_MIB + STEP_MIB) << 20;
    assert!(
        message.contains(&format!("would hold {asked} bytes in all")),
        "{message}"
    );
    // The host held what the budget allows, touched, and no more.
    assert!(peak_mib <= BUDGET_MIB + 64, "peak RSS grew {peak_mib} MiB");
    assert!(
        peak_mib >= BUDGET_MIB - STEP_MIB,
        "the bomb touched less than its budget: peak RSS grew {peak_mib} MiB"
    );
    // And gave it back when the process ended.
    wait_until("the bomb's memory to be freed", TIMEOUT, || {
        (rss_kib(host.pid()) < rss_before + (64 << 10)).then_some(())
    });

    assert_group_writes(&cluster, "memory-bomb");
    cluster.assert_all_running();
}

#[test]
fn processes_together_stop_at_the_hosts_guest_memory_budget_and_the_group_keeps_writing() {
    use ww_tests::metrics::{find, scrape};
    const BUDGET_MIB: u64 = 768;
    const HOLD_MIB: u64 = 400;
    const GREEDY_MIB: u64 = 496;
    let cluster = beside_a_group(&[
        "--guest-memory-limit-mb",
        &BUDGET_MIB.to_string(),
        "--http",
        "127.0.0.1:0",
    ]);
    let host = &cluster.hosts[FLOODED];
    let http = host.http.clone().expect("--http address");
    let held_mib = || {
        let samples = scrape(&http);
        let used = find(
            &samples,
            "ww_budget_used_bytes",
            &[("budget", "guest_memory")],
        )
        .expect("the guest memory budget is reported");
        let limit = find(
            &samples,
            "ww_budget_limit_bytes",
            &[("budget", "guest_memory")],
        )
        .unwrap();
        assert_eq!(limit as u64, BUDGET_MIB << 20);
        used as u64 >> 20
    };
    // The replica's memory counts too.
    let replica_mib = held_mib();
    assert!(replica_mib > 0 && replica_mib < 128, "{replica_mib} MiB");
    let rss_before = rss_kib(host.pid());
    let held_times = || host.log().matches(&format!("held {HOLD_MIB} MiB")).count();

    // One process holds 400 MiB, within its own 512 MiB.
    let first = spawn_child(&host.addr, "holder", &[], &["hog", &HOLD_MIB.to_string()]);
    wait_until("the first holder to hold its memory", TIMEOUT, || {
        (held_times() == 1).then_some(())
    });
    // A second asks for more, also within its own limit: the host's budget
    // refuses the growth that would pass it, and only that process ends.
    // Without the budget the two would hold about 900 MiB.
    let second = spawn_child(&host.addr, "greedy", &[], &["hog", &GREEDY_MIB.to_string()]);
    let (ended, message) = wait_ended(&host.addr, &second);
    assert_eq!(ended["state"], "trapped", "{ended}");
    assert!(
        message.contains("killed by the host's memory budget")
            && message.contains("(guest_memory_bytes_max"),
        "{message}"
    );
    assert_eq!(held_times(), 1, "the second holder got its memory");
    let refusals = find(
        &scrape(&http),
        "ww_budget_refusals_total",
        &[("budget", "guest_memory")],
    );
    assert_eq!(refusals, Some(1.0), "refusals counted");
    assert_eq!(
        process(&host.addr, &first).unwrap()["state"],
        "running",
        "the first holder was stopped"
    );
    let held = held_mib();
    let peak_mib = peak_rss_kib(host.pid()).saturating_sub(rss_before) >> 10;
    eprintln!(
        "guest memory: {held} MiB held with the first holder; the host's peak RSS grew {peak_mib} MiB"
    );
    assert!((HOLD_MIB..=BUDGET_MIB).contains(&held), "{held} MiB");
    // The budget, and slack for what else the host allocates meanwhile
    // (a compile, RPC buffers: seen 35 MiB).
    assert!(peak_mib <= BUDGET_MIB + 64, "peak RSS grew {peak_mib} MiB");
    assert_group_writes(&cluster, "guest-memory");

    // The first holder killed, its memory is the host's again.
    ww(&[
        "kill",
        "--peer",
        &host.addr,
        &format!("{}/{first}", host.peer_id),
    ])
    .assert_ok();
    wait_until("the first holder's memory given back", TIMEOUT, || {
        (held_mib() < HOLD_MIB).then_some(())
    });
    spawn_child(
        &host.addr,
        "holder-again",
        &[],
        &["hog", &HOLD_MIB.to_string()],
    );
    wait_until("another holder to hold its memory", TIMEOUT, || {
        (held_times() == 2).then_some(())
    });
}

#[test]
fn guests_opens_stop_at_the_hosts_descriptor_bound_and_the_group_keeps_writing() {
    // Far below the per-process cap (RESOURCES_MAX, 1,024): the host-wide
    // bound refuses first.
    const DESCRIPTORS_MAX: usize = 400;
    let cluster = beside_a_group(&[
        "--descriptors-max",
        &DESCRIPTORS_MAX.to_string(),
        "--http",
        "127.0.0.1:0",
    ]);
    let host = &cluster.hosts[FLOODED];
    let before = open_fds(host.pid());
    assert!(before < DESCRIPTORS_MAX - 100, "the host holds {before}");

    let (ended, message) = run_opener(&host.addr);
    // Its open failed (EBUSY), so it gave up: it was not killed.
    assert_eq!(ended["state"], "exited", "{ended}");
    assert_eq!(message, "exited with 1", "{ended}");
    let log = host.log();
    assert!(
        log.contains("refused a guest's open") && log.contains("--descriptors-max"),
        "the host named no bound:\n{log}"
    );
    let held = most_files_held(&log);
    assert!(
        held < DESCRIPTORS_MAX,
        "the process held {held} files past the bound"
    );
    let refusals = ww_tests::metrics::find(
        &ww_tests::metrics::scrape(host.http.as_ref().expect("--http address")),
        "ww_budget_refusals_total",
        &[("budget", "descriptors")],
    )
    .unwrap_or(0.0);
    assert!(refusals >= 1.0, "{refusals} refusals counted");
    // The group's replicas open their own files meanwhile.
    assert_opener_gone(&cluster, host, before, "descriptor-bound");
}

/// A client's queue to a replica that does not answer: the client keeps
/// one message in flight to it and queues the rest, up to
/// `QUEUED_BYTES_MAX`; past it the oldest calls fail at once with a
/// retryable "overloaded" naming the bound, instead of the client holding
/// every byte until the send times out. The replica's host is stopped
/// (SIGSTOP) while the calls are made, then let go; the group keeps
/// writing.
#[test]
fn a_clients_queue_to_a_silent_replica_stops_at_its_byte_bound() {
    use raft_client::group::QUEUED_BYTES_MAX;
    use raft_client::proto::{Request, Response};
    use std::time::Instant;

    const QUERY_BYTES: usize = 1024 * 1024;
    const CALLS: usize = 72;
    let cluster = beside_a_group(&[]);
    let addr: libp2p::Multiaddr = cluster.hosts[0].addr.parse().unwrap();
    let silent = &cluster.hosts[FLOODED];
    let outcomes: Vec<(Duration, String)> = support::native(async {
        let group = raft_client::native::connect(std::slice::from_ref(&addr), "v1")
            .await
            .unwrap();
        assert!(
            group.replicas().contains(&silent.peer_id),
            "{:?}",
            group.replicas()
        );
        ww_tests::signal(silent.pid(), "STOP");
        let started = Instant::now();
        let calls = (0..CALLS).map(|_| {
            let request = Request::Query {
                query: vec![0; QUERY_BYTES],
            };
            let call = group.call(&silent.peer_id, request, TIMEOUT);
            async move {
                let outcome = match call.await {
                    Ok(Response::Error { message, .. }) => message,
                    other => format!("{other:?}"),
                };
                (started.elapsed(), outcome)
            }
        });
        futures::future::join_all(calls).await
    });
    ww_tests::signal(silent.pid(), "CONT");

    // Each query counts its bytes and 16 more; the first messages' worth
    // may already be in flight, so at least the overflow past the bound
    // fails, and all of it at once.
    let fit = QUEUED_BYTES_MAX / (QUERY_BYTES + 16);
    let overloaded: Vec<&(Duration, String)> = outcomes
        .iter()
        .filter(|(_, outcome)| outcome.starts_with("overloaded"))
        .collect();
    assert!(
        overloaded.len() >= CALLS - fit - 4 && overloaded.len() <= CALLS - fit,
        "{} of {CALLS} calls overloaded, {fit} fit: {outcomes:?}",
        overloaded.len()
    );
    for (took, outcome) in &overloaded {
        assert!(outcome.contains("QUEUED_BYTES_MAX"), "{outcome}");
        assert!(
            *took < Duration::from_millis(raft_client::outbox::SEND_TIMEOUT_MS),
            "an overloaded call waited {took:?}"
        );
    }
    // The rest waited for the silent replica and failed with it (none was
    // answered: its host was stopped), soon after the send's deadline, not
    // at each call's own timeout.
    let latest = outcomes.iter().map(|(took, _)| *took).max().unwrap();
    assert!(
        latest
            < Duration::from_millis(raft_client::outbox::SEND_TIMEOUT_MS) + Duration::from_secs(5),
        "the last call ended after {latest:?}: {outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .all(|(_, outcome)| !outcome.starts_with("Ok(Answer")),
        "{outcomes:?}"
    );
    assert_group_writes(&cluster, "client-queue");
}
