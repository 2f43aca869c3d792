//! [`QueueSim`]: the queue workload plugged into raft-core's simulator.

use raft_core::rng::Rng;
use raft_core::sim::workload::{Request as SimRequest, Workload};

use super::workload::{Outcome, QueueWorkload, Request, Settings};
use crate::QueueMachine;

/// How long consumers misbehave (crash holding leases, nack, release,
/// reject) before the drain, in simulated ms from the first request: about
/// the simulator's safety phase (6 s by default), so that the drain runs
/// while the faults heal. The drain also waits for every producer to finish.
pub const CHAOS_MS: u64 = 5_000;

/// Sized for a 6 s safety phase and a 10 s liveness bound: 1 s leases
/// expire several times within a run, and 3 producers × 60 values finish
/// early in the safety phase even under faults.
fn settings() -> Settings {
    Settings {
        lease_ms: 1_000,
        batch_max: 4,
        max_deliveries: 4,
        values_per_producer: 60,
    }
}

/// The `queue` workload of `make sim WORKLOAD=queue`.
#[derive(Debug)]
pub struct QueueSim {
    inner: QueueWorkload,
    first_ms: Option<u64>,
}

impl Workload for QueueSim {
    type Machine = QueueMachine;

    const NAME: &'static str = "queue";

    fn new(client_count: usize, rng: &mut Rng) -> Self {
        Self {
            inner: QueueWorkload::new(rng.next_u64(), client_count, settings()),
            first_ms: None,
        }
    }

    fn state_machine(&self) -> QueueMachine {
        QueueMachine::new()
    }

    fn next_request(&mut self, client: usize, now_ms: u64, _rng: &mut Rng) -> Option<SimRequest> {
        let first_ms = *self.first_ms.get_or_insert(now_ms);
        if !self.inner.is_draining()
            && now_ms.saturating_sub(first_ms) >= CHAOS_MS
            && self.inner.produced_all()
        {
            self.inner.begin_drain();
        }
        self.inner
            .next_request(client)
            .map(|request| match request {
                Request::Submit(bytes) => SimRequest::Write(bytes),
                Request::Query(bytes) => SimRequest::Read(bytes),
            })
    }

    fn on_complete(
        &mut self,
        client: usize,
        _invoked_ms: u64,
        _completed_ms: u64,
        _request: &SimRequest,
        response: &[u8],
    ) {
        self.inner
            .complete(client, Outcome::Reply(response.to_vec()));
    }

    fn on_abandon(&mut self, client: usize, _invoked_ms: u64, request: &SimRequest) {
        let outcome = match request {
            SimRequest::Write(_) => Outcome::Unknown,
            SimRequest::Read(_) => Outcome::Unavailable,
        };
        self.inner.complete(client, outcome);
    }

    /// The simulator keeps the clients going after the heal until the drain
    /// has emptied the queue.
    fn is_done(&self) -> bool {
        self.inner.is_drained()
    }

    fn check(&self) -> Result<String, String> {
        let report = self.inner.check();
        if !report.passed() {
            return Err(format!("queue oracles failed: {report}"));
        }
        if !self.inner.is_drained() {
            return Err(format!(
                "the final drain did not empty the queue before the run ended: {report}"
            ));
        }
        Ok(report.to_string())
    }
}
