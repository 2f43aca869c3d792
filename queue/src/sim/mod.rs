//! The queue workload for raft-core's deterministic simulator
//! (`make sim WORKLOAD=queue`), and its checker.
//!
//! [`QueueWorkload`] is the client side and knows nothing of the simulator:
//! a driver asks idle clients for requests, delivers outcomes (a reply, or
//! "unavailable", or "unknown" when a reply was lost), advances log time,
//! and finally drains. [`History`] checks the oracles of
//! ../../docs/queue.md: lost = 0, unexpected = 0, exclusive leases,
//! redelivery only after expiry or a nack, and a duplicate-delivery rate.
//!
//! [`CrawlSim`] is the crawl frontier's workload (`make sim
//! WORKLOAD=crawl`): workers crawl a generated link graph through the
//! frontier commands; [`CrawlHistory`] checks dedupe, politeness and that
//! nothing is lost.
//!
//! [`run_local`] drives it against one [`QueueMachine`] with lost replies
//! injected (no Raft), which tests the workload and the checker themselves.

mod adapter;
mod crawl;
mod crawl_graph;
mod crawl_history;
mod history;
mod workload;

pub use adapter::{QueueSim, CHAOS_MS};
pub use crawl::{CrawlSim, CRAWL};
pub use crawl_history::CrawlHistory;
pub use history::{History, Report};
pub use workload::{Outcome, QueueWorkload, Request, Settings, TOPIC};

use raft_core::rng::Rng;
use raft_core::{ApplyContext, StateMachine};

use crate::QueueMachine;

/// Runs the workload against a bare state machine: clients take turns in a
/// seeded order, log time moves 0–200 ms per step, and one request in ten
/// loses its reply (applied or not). Returns the report after a drain, or
/// an error if the drain does not finish within its step budget.
///
/// # Errors
///
/// A message when the drain did not empty the queue.
pub fn run_local(seed: u64, clients: usize, settings: Settings) -> Result<Report, String> {
    let mut rng = Rng::new(seed ^ 0x5157_4545);
    let mut workload = QueueWorkload::new(seed, clients, settings);
    let mut machine = QueueMachine::new();
    let mut index = 0;
    let mut time_ms = 1_000_000;
    let mut step =
        |workload: &mut QueueWorkload, rng: &mut Rng, index: &mut u64, time_ms: &mut u64| {
            let client = rng.below(clients as u64) as usize;
            *time_ms += rng.below(200);
            let Some(request) = workload.next_request(client) else {
                return;
            };
            let fault = rng.below(20);
            let outcome = match (request, fault) {
                (_, 0) => Outcome::Unavailable,
                (Request::Submit(command), _) => {
                    *index += 1;
                    let ctx = ApplyContext {
                        index: *index,
                        term: 1,
                        time_ms: *time_ms,
                    };
                    let reply = machine.apply(&ctx, &command);
                    if fault == 1 {
                        Outcome::Unknown
                    } else {
                        Outcome::Reply(reply)
                    }
                }
                (Request::Query(query), _) => Outcome::Reply(machine.query(&query)),
            };
            workload.complete(client, outcome);
        };
    for _ in 0..3_000 {
        step(&mut workload, &mut rng, &mut index, &mut time_ms);
    }
    workload.begin_drain();
    for _ in 0..200_000 {
        if workload.is_drained() {
            return Ok(workload.check());
        }
        step(&mut workload, &mut rng, &mut index, &mut time_ms);
    }
    Err(format!(
        "seed={seed}: the drain did not finish; {}",
        workload.check()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_runs_pass_the_checker() {
        for seed in 1..=20 {
            let report = run_local(seed, 7, Settings::default()).unwrap();
            assert!(report.passed(), "seed={seed}: {report}");
            assert!(
                report.enqueued > 0 && report.deliveries > report.enqueued,
                "{report}"
            );
        }
    }
}

#[cfg(test)]
mod raft_tests {
    use raft_core::sim::{run, SimOptions};

    use super::{CrawlSim, QueueSim};

    /// The crawl workload under faults, a few seeds (`make sim
    /// WORKLOAD=crawl` runs many).
    #[test]
    fn crawl_workload_passes_under_faults() {
        let mut failures = Vec::new();
        for nodes in [3, 5] {
            for seed in 1..=4 {
                let options = SimOptions::new(seed, nodes, "crawl");
                if let Err(failure) = run::<CrawlSim>(&options) {
                    failures.push(failure.to_string());
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }

    /// The queue workload under raft-core's fault simulator, a few seeds on
    /// 3 and 5 nodes (`make sim WORKLOAD=queue` runs many;
    /// `QUEUE_SIM_SEEDS=N` runs N here).
    #[test]
    fn queue_workload_passes_under_faults() {
        let seeds: u64 = std::env::var("QUEUE_SIM_SEEDS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(4);
        let mut failures = Vec::new();
        for nodes in [3, 5] {
            for seed in 1..=seeds {
                let options = SimOptions::new(seed, nodes, "queue");
                match run::<QueueSim>(&options) {
                    Ok(report) => {
                        eprintln!("nodes={nodes} seed={seed}: {}", report.workload_summary)
                    }
                    Err(failure) => failures.push(failure.to_string()),
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }
}
