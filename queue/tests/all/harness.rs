//! Helpers: a client on a fresh state machine, and a way to wait for its
//! futures without an async runtime.

use queue::{poll_once, Client, MemoryTransport};

/// A client on a fresh state machine at log time 1,000,000 ms.
pub fn client() -> Client<MemoryTransport> {
    Client::new(MemoryTransport::new(1_000_000))
}

/// The output of a memory-transport future, which is always ready.
pub fn ready<F: std::future::Future>(future: F) -> F::Output {
    poll_once(future).expect("memory transport futures are always ready")
}
