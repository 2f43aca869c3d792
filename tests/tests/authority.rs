//! Least authority, on a real host: a process gets only what its spawner
//! grants.
//!
//! - a grant-only process is refused root, view, pubsub, executor, dial and
//!   connect ("not permitted"), and through a `readPath` grant may only read; the
//!   process and the anchor it went after are untouched;
//! - data, cap and readPath grants reach the child;
//! - a volume belongs to its key: a second spawn without it is refused;
//! - a supervised restart keeps the grants;
//! - after a host restart a process with data grants is respawned with
//!   them, one holding a cap grant is not, and neither `ww ps` nor the
//!   records' permissions expose grant data.
//!
//! The spawner is the probe ROM (`probe child ...`, run by `ww run` with
//! the full host); the children are the misbehave ROM's grant commands.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;
use ww_tests::{rom, wait_until, ww, Cluster, Host, Output};

const TIMEOUT: Duration = Duration::from_secs(60);

fn probe(addr: &str, args: &[&str]) -> Output {
    let probe = rom("probe");
    let mut all = vec!["run", "--peer", addr, probe.to_str().unwrap()];
    all.extend_from_slice(args);
    ww(&all)
}

/// The value printed after `prefix` on a line of `out`'s stdout.
fn printed(out: &Output, prefix: &str) -> String {
    out.stdout
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line: {out:#?}"))
        .trim()
        .to_owned()
}

fn processes(addr: &str) -> Vec<Value> {
    let out = ww(&["ps", "--json", "--peer", addr]);
    out.assert_ok();
    let ps: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    ps["processes"].as_array().unwrap().clone()
}

fn process(addr: &str, pid: u64) -> Option<Value> {
    processes(addr)
        .into_iter()
        .find(|p| p["id"].as_u64() == Some(pid))
}

fn wait_for_log(host: &Host, needle: &str) {
    wait_until(&format!("{needle:?} in the host log"), TIMEOUT, || {
        host.log().contains(needle).then_some(())
    });
}

fn get(addr: &str, path: &str) -> String {
    let out = ww(&["get", "--peer", addr, path]);
    out.assert_ok();
    out.stdout.trim().to_owned()
}

#[test]
fn a_grant_only_process_is_refused_everything_else_and_changes_nothing() {
    let cluster = Cluster::start(1);
    let host = &cluster.hosts[0];
    let (addr, peer) = (&host.addr, &host.peer_id);
    let victim = probe(
        addr,
        &[
            "child",
            "--detach",
            "--name",
            "victim",
            "--data",
            "token=v",
            "--",
            "hold-grant",
            "token",
        ],
    );
    victim.assert_ok();
    let victim: u64 = printed(&victim, "child pid ").parse().unwrap();
    let anchor = format!("/{peer}/victim/value");
    ww(&["set", "--peer", addr, &anchor, "original"]).assert_ok();
    ww(&[
        "set",
        "--peer",
        addr,
        &format!("/{peer}/shared/v"),
        "readable",
    ])
    .assert_ok();

    let out = probe(
        addr,
        &[
            "child",
            "--data",
            "token=s3cret",
            "--path",
            "shared=shared/v",
            "--",
            "try-everything",
            &victim.to_string(),
            &anchor,
        ],
    );
    assert!(
        out.stdout.contains("child exit 0"),
        "{out:#?}\n{}",
        host.log()
    );
    out.assert_ok();
    wait_for_log(host, "everything refused");
    let log = host.log();
    for refused in [
        "refused root:",
        "refused executor.kill:",
        "refused dial:",
        "refused connect:",
        "refused readPath set:",
    ] {
        assert!(log.contains(refused), "{refused}: {log}");
    }
    assert!(log.contains("holds grants only (token, shared)"), "{log}");
    assert!(log.contains("readPath get: readable"), "{log}");

    let victim = process(addr, victim).unwrap();
    assert_eq!(victim["state"], "running", "{victim:#}");
    assert_eq!(get(addr, &anchor), "original");
}

#[test]
fn grants_reach_the_child_and_volumes_belong_to_their_key() {
    let cluster = Cluster::start(1);
    let addr = &cluster.hosts[0].addr;

    let out = probe(
        addr,
        &[
            "child",
            "--data",
            "token=s3cret",
            "--path",
            "shared=raft/v1/request",
            "--reply",
            "reply",
            "--",
            "show-grants",
        ],
    );
    out.assert_ok();
    for line in [
        "reply: token=data:s3cret",
        "reply: shared=readPath:/raft/v1/request",
        "reply: reply=cap",
    ] {
        assert!(out.stdout.contains(line), "{line}: {out:#?}");
    }

    let a = probe(
        addr,
        &["child", "--volume", "v1", "--", "write-file", "hello"],
    );
    a.assert_ok();
    let key = printed(&a, "volume key ");
    assert_eq!(key.len(), 64, "{a:#?}");

    let thief = probe(
        addr,
        &[
            "child",
            "--volume",
            "v1",
            "--reply",
            "reply",
            "--",
            "read-file",
        ],
    );
    assert_ne!(thief.code, Some(0), "{thief:#?}");
    assert!(
        thief
            .stderr
            .contains("volume \"v1\" exists and belongs to another process; pass its key"),
        "{thief:#?}"
    );
    let wrong = "00".repeat(32);
    let guess = probe(
        addr,
        &[
            "child",
            "--volume",
            "v1",
            "--key",
            &wrong,
            "--",
            "read-file",
        ],
    );
    assert_ne!(guess.code, Some(0), "{guess:#?}");
    assert!(guess.stderr.contains("not its key"), "{guess:#?}");

    let owner = probe(
        addr,
        &[
            "child",
            "--volume",
            "v1",
            "--key",
            &key,
            "--reply",
            "reply",
            "--",
            "read-file",
        ],
    );
    owner.assert_ok();
    assert!(owner.stdout.contains("reply: file: hello"), "{owner:#?}");
}

#[test]
fn a_supervised_restart_keeps_the_grants() {
    let cluster = Cluster::start(1);
    let addr = &cluster.hosts[0].addr;
    let out = probe(
        addr,
        &[
            "child",
            "--restart",
            "on-failure",
            "--volume",
            "t1",
            "--data",
            "token=kept",
            "--reply",
            "reply",
            "--",
            "trap-once",
            "token",
        ],
    );
    out.assert_ok();
    assert!(
        out.stdout.contains("reply: after a restart token=kept"),
        "{out:#?}"
    );
    let pid: u64 = printed(&out, "child pid ").parse().unwrap();
    let info = process(addr, pid).unwrap();
    assert_eq!(info["restarts"], 1, "{info:#}");
}

#[test]
fn a_host_restart_respawns_data_grants_but_not_cap_grants() {
    let mut cluster = Cluster::start(1);
    let addr = cluster.hosts[0].addr.clone();
    for (name, extra) in [("keeper", &[][..]), ("capped", &["--reply", "reply"][..])] {
        let mut args = vec![
            "child",
            "--detach",
            "--restart",
            "on-failure",
            "--name",
            name,
            "--data",
            "token=s3cret-data",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "hold-grant", "token"]);
        probe(&addr, &args).assert_ok();
    }
    wait_until("both children running", TIMEOUT, || {
        let running = processes(&addr)
            .iter()
            .filter(|p| p["state"] == "running")
            .count();
        (running == 2).then_some(())
    });
    wait_for_log(&cluster.hosts[0], "grant token=s3cret-data");

    let ps = ww(&["ps", "--json", "--peer", &addr]);
    assert!(
        !ps.stdout.contains("s3cret"),
        "ps shows grant data: {ps:#?}"
    );
    let records = cluster.hosts[0].data_dir.join("supervised");
    let mut count = 0;
    for entry in std::fs::read_dir(&records).unwrap() {
        let path = entry.unwrap().path();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
        count += 1;
    }
    assert_eq!(count, 2);

    cluster.hosts[0].restart();
    let addr = cluster.hosts[0].addr.clone();
    let host = &cluster.hosts[0];
    wait_for_log(host, "grant token=s3cret-data");
    wait_for_log(host, "not respawning the supervised process");
    let log = host.log();
    assert!(log.contains("live capabilities (reply)"), "{log}");
    let names: Vec<String> = processes(&addr)
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, vec!["keeper".to_owned()], "{log}");
    assert_eq!(std::fs::read_dir(&records).unwrap().count(), 1);
}
