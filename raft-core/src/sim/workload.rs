//! The pluggable workload: the replicated state machine under test, the
//! requests clients make, and the checker of what they observed.
//!
//! To add a workload (the `queue` crate adds one), implement [`Workload`]
//! and add one match arm to the `sim` binary in `tests/src/bin/sim.rs`.

use crate::rng::Rng;
use crate::state_machine::StateMachine;

/// A client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// A command, proposed through Raft and applied at most once.
    Write(Vec<u8>),
    /// A query, answered through ReadIndex.
    Read(Vec<u8>),
}

/// A workload run by the simulator's clients. Each client has at most one
/// request outstanding; the simulator retries it (a write with the same
/// `(client_id, seq)`) until it gets a definitive answer or the run ends.
pub trait Workload {
    /// The replicated state machine.
    type Machine: StateMachine;

    /// A name for reports and the command line.
    const NAME: &'static str;

    /// Creates the workload for `client_count` clients.
    fn new(client_count: usize, rng: &mut Rng) -> Self;

    /// A fresh, empty state machine for a replica.
    fn state_machine(&self) -> Self::Machine;

    /// The next request of an idle `client`, or `None` to stay idle for
    /// now. `now_ms` is the simulation's virtual time.
    fn next_request(&mut self, client: usize, now_ms: u64, rng: &mut Rng) -> Option<Request>;

    /// A request completed: it was invoked at `invoked_ms` and its result
    /// came back at `completed_ms`.
    fn on_complete(
        &mut self,
        client: usize,
        invoked_ms: u64,
        completed_ms: u64,
        request: &Request,
        response: &[u8],
    );

    /// A request never got a definitive answer: a write may or may not have
    /// applied (at any time after `invoked_ms`).
    fn on_abandon(&mut self, client: usize, invoked_ms: u64, request: &Request);

    /// Whether the workload's own post-heal work is finished (for example,
    /// a queue drained). After faults heal, the simulator keeps asking idle
    /// clients for requests until this holds and every client was served
    /// once (or had nothing to ask); then it stops issuing requests and
    /// waits for convergence. The default, for workloads with no such
    /// work, is `true`.
    fn is_done(&self) -> bool {
        true
    }

    /// Checks everything observed, after the run.
    ///
    /// # Errors
    ///
    /// A readable description of the violation.
    fn check(&self) -> Result<String, String>;
}
