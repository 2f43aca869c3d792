//! Driving `raft.wasm` from the end-to-end tests: one `ww run` process per
//! command, and its JSON output.

use std::time::Duration;

use serde_json::Value;

use crate::cluster::{rom, ww_with_timeout, Output};

/// Runs `ww run --peer ADDR raft.wasm ARGS...`, killed after `timeout`.
pub fn run(addr: &str, args: &[&str], timeout: Duration) -> Output {
    let rom = rom("raft");
    let mut all = vec!["run", "--peer", addr, rom.to_str().expect("UTF-8 path")];
    all.extend_from_slice(args);
    ww_with_timeout(&all, timeout)
}

/// The last JSON object a ROM printed on stdout.
///
/// # Panics
///
/// When there is none, or it does not parse: the test fails with the output.
pub fn json_of(out: &Output) -> Value {
    let line = out
        .stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in {out:#?}"));
    serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}"))
}

/// Every replica's entry of `status --json`, asked through the host at
/// `addr`.
///
/// # Panics
///
/// When the command fails or prints no replica list.
pub fn status(addr: &str, timeout: Duration) -> Vec<Value> {
    let out = run(addr, &["status", "--json"], timeout);
    out.assert_ok();
    json_of(&out)["replicas"]
        .as_array()
        .unwrap_or_else(|| panic!("no replicas in {out:#?}"))
        .clone()
}

/// Starts `hosts` hosts and deploys 3 replicas of `v1` from a client
/// attached to host 0, which gets no replica.
///
/// # Panics
///
/// When the hosts do not see each other or the deploy fails.
pub fn deployed(hosts: usize, timeout: Duration) -> crate::Cluster {
    deployed_with(hosts, timeout, &[])
}

/// The index of a host other than host 0 that holds no replica: deploy
/// picks three hosts from host 0's view, so with more than four hosts which
/// ones it leaves out is not fixed. Killing the host at that index kills no
/// replica.
///
/// # Panics
///
/// When `status` does not list three replicas within `timeout`, or every
/// host but host 0 holds one.
pub fn spare_host(cluster: &crate::Cluster, timeout: Duration) -> usize {
    let client = &cluster.hosts[0].addr;
    let replica_hosts: Vec<String> = crate::wait_until("3 replicas in status", timeout, || {
        let peers: Vec<String> = status(client, timeout)
            .iter()
            .filter_map(|replica| Some(replica["peer_id"].as_str()?.to_owned()))
            .collect();
        (peers.len() == 3).then_some(peers)
    });
    (1..cluster.hosts.len())
        .find(|&index| !replica_hosts.contains(&cluster.hosts[index].peer_id))
        .unwrap_or_else(|| panic!("every host but host 0 holds a replica: {replica_hosts:?}"))
}

/// Like [`deployed`], with extra `ww start` arguments for every host.
///
/// # Panics
///
/// When the hosts do not see each other or the deploy fails.
pub fn deployed_with(hosts: usize, timeout: Duration, extra: &[&str]) -> crate::Cluster {
    let cluster = crate::Cluster::start_with(hosts, extra);
    let client = cluster.hosts[0].addr.clone();
    crate::wait_until("every host in host 0's view", timeout, || {
        let out = crate::ww(&["ls", "--json", "--peer", &client, "/"]);
        let listing: Value = serde_json::from_str(out.stdout.trim()).ok()?;
        (listing["children"].as_array()?.len() == hosts).then_some(())
    });
    let out = run(&client, &["deploy"], Duration::from_secs(120));
    out.assert_ok();
    assert!(out.stdout.contains("leader elected"), "{out:#?}");
    // Progress on a pipe: plain lines, each state once, no live line.
    assert!(!out.stderr.contains('\r'), "{out:#?}");
    assert_eq!(
        out.stderr.matches("replicas anchored: 3/3").count(),
        1,
        "{out:#?}"
    );
    assert!(
        !out.stderr
            .contains(&format!("spawned replica on {}", cluster.hosts[0].peer_id)),
        "{out:#?}"
    );
    cluster
}

/// What the benchmarks measure on: 4 hosts whose compile cache is shared
/// across runs (`target/bench/ww-cache`, so no run pays for Cranelift), and
/// a group deployed from host 0 with the Raft ROM at `raft_rom`. The hosts
/// are killed when dropped; their data dirs live in the returned directory.
///
/// # Errors
///
/// When the deploy keeps failing for 60 s.
pub fn deployed_for_bench(
    raft_rom: &std::path::Path,
) -> Result<(Vec<crate::Host>, tempfile::TempDir), String> {
    deployed_for_bench_with(raft_rom, 4, &["v1"], 3)
}

/// Like [`deployed_for_bench`], with `host_count` hosts and one group of
/// `replicas` replicas per version in `versions` (each deployed from host
/// 0, which holds none of them).
///
/// # Errors
///
/// When a deploy keeps failing for 60 s.
pub fn deployed_for_bench_with(
    raft_rom: &std::path::Path,
    host_count: usize,
    versions: &[&str],
    replicas: usize,
) -> Result<(Vec<crate::Host>, tempfile::TempDir), String> {
    let dir = tempfile::tempdir().map_err(|err| err.to_string())?;
    let cache = crate::cluster::workspace_root().join("target/bench/ww-cache");
    std::fs::create_dir_all(&cache).map_err(|err| err.to_string())?;
    let first = crate::Host::start_cached(&dir.path().join("host0"), &cache, &[]);
    let bootstrap = first.addr.clone();
    let mut hosts = vec![first];
    for index in 1..host_count {
        hosts.push(crate::Host::start_cached(
            &dir.path().join(format!("host{index}")),
            &cache,
            &[&bootstrap],
        ));
    }
    let rom_path = raft_rom.to_str().ok_or("the ROM path is not UTF-8")?;
    let replicas = replicas.to_string();
    for version in versions {
        // Deploy once host 0 sees every host (deploy picks from its view).
        let started = std::time::Instant::now();
        loop {
            let out = crate::ww_with_timeout(
                &[
                    "run",
                    "--peer",
                    &bootstrap,
                    rom_path,
                    "--version",
                    version,
                    "deploy",
                    "--replicas",
                    &replicas,
                ],
                Duration::from_secs(120),
            );
            if out.code == Some(0) {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(format!("deploy of {version} failed: {}", out.stderr));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    Ok((hosts, dir))
}
