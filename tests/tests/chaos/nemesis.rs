//! The nemesis: carries out the seeded [`Schedule`] on the replica hosts.
//! kill -9 is `Child::kill` (SIGKILL by pid) and a restart with the same
//! data dir and port; a pause is SIGSTOP then SIGCONT, by pid.

use std::time::Duration;

use ww_tests::chaos::{FaultKind, Schedule, Target};
use ww_tests::{signal, Cluster};

use crate::cli::{raft, Exit};
use crate::driver::{last_json, Shared, HOST_COUNT};

/// How long finding the leader may take before a fault aimed at it goes
/// to a follower instead (an election may be under way).
const LEADER_LOOKUP_ATTEMPTS: usize = 3;

/// The index of the leader's host, asked through host 0.
fn leader(shared: &Shared, cluster: &Cluster) -> Option<usize> {
    let Exit::Done {
        code: Some(0),
        stdout,
        ..
    } = raft(
        &shared.rom,
        &[shared.addrs[0].as_str()],
        &["status".to_owned(), "--json".to_owned()],
    )
    else {
        return None;
    };
    let status = last_json(&stdout)?;
    let peer = status["replicas"]
        .as_array()?
        .iter()
        .find(|replica| replica["role"] == "leader")?["peer_id"]
        .as_str()?
        .to_owned();
    cluster.hosts.iter().position(|host| host.peer_id == peer)
}

fn set_healthy(shared: &Shared, host: usize, healthy: bool) {
    shared.healthy.lock().unwrap()[host] = healthy;
}

/// Sleeps until `at_ms` of the run (or returns false at once if the
/// workload stopped).
fn wait_for(shared: &Shared, at_ms: u64) -> bool {
    loop {
        if shared.stopped() {
            return false;
        }
        let now_ms = shared.now_ms();
        if now_ms >= at_ms {
            return true;
        }
        std::thread::sleep(Duration::from_millis((at_ms - now_ms).min(100)));
    }
}

/// Runs every fault of `schedule` (times counted from `start_ms`), each
/// healed before the next.
pub fn run(shared: &Shared, cluster: &mut Cluster, schedule: &Schedule, start_ms: u64) {
    for fault in &schedule.faults {
        if !wait_for(shared, start_ms + fault.at_ms) {
            break;
        }
        let mut leader_host = None;
        for _ in 0..LEADER_LOOKUP_ATTEMPTS {
            leader_host = leader(shared, cluster);
            if leader_host.is_some() {
                break;
            }
        }
        // Replicas live on hosts 1..; host 0 serves the clients.
        let (host, on_leader) = match (fault.target, leader_host) {
            (Target::Leader, Some(leader)) => (leader, true),
            (_, leader) => {
                let followers: Vec<usize> = (1..HOST_COUNT)
                    .filter(|host| Some(*host) != leader)
                    .collect();
                (
                    followers[(fault.at_ms / 1000) as usize % followers.len()],
                    false,
                )
            }
        };
        let at_ms = shared.now_ms();
        let what = match fault.kind {
            FaultKind::Kill => "kill -9",
            FaultKind::Pause => "SIGSTOP",
        };
        let role = if on_leader { "leader" } else { "follower" };
        eprintln!(
            "chaos: {at_ms} ms: {what} host {host} ({role}) for {} ms",
            fault.hold_ms
        );
        set_healthy(shared, host, false);
        match fault.kind {
            FaultKind::Kill => cluster.hosts[host].kill(),
            FaultKind::Pause => signal(cluster.hosts[host].pid(), "STOP"),
        }
        // The hold is the fault's length, chosen by the schedule.
        std::thread::sleep(Duration::from_millis(fault.hold_ms));
        match fault.kind {
            FaultKind::Kill => cluster.hosts[host].restart(),
            FaultKind::Pause => signal(cluster.hosts[host].pid(), "CONT"),
        }
        set_healthy(shared, host, true);
        let healed_ms = shared.now_ms();
        eprintln!("chaos: {healed_ms} ms: host {host} back");
        let mut recorder = shared.recorder();
        recorder.fault(fault.kind, on_leader, host, at_ms, healed_ms);
        recorder.note(
            at_ms,
            format!("{what} host {host} ({role}), healed at {healed_ms} ms"),
        );
    }
}
