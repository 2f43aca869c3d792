//! Budgets on a real host: a flood is refused with the name of the budget
//! it hit, the host's memory stays within that budget, and the host keeps
//! serving everybody else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ww_tests::{rom, ww, Cluster};

/// Resident memory of process `pid`, in KiB, from `/proc`.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

#[test]
fn an_anchor_flood_stops_at_its_writers_share_and_the_host_keeps_serving() {
    const MIB: u64 = 1024;
    let cluster = Cluster::start(1);
    let host = &cluster.hosts[0];
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
}
