//! Which local process a capability call comes from.
//!
//! capnp-rpc does not tell a server who called it. Every call a process
//! makes arrives on its own connection, and that connection's `RpcSystem`
//! polls the call's future, so the runner drives each process's
//! connection inside a task-local scope naming the process. Budgets that
//! share a host's memory among writers (channels) read it; a call that
//! arrives on any other connection (a CLI client, another host) sees none.

use std::future::Future;

tokio::task_local! {
    static PROCESS: u64;
}

/// Drives `future` (a process's connection) as process `pid`'s.
pub(crate) async fn scope<F: Future>(pid: u64, future: F) -> F::Output {
    PROCESS.scope(pid, future).await
}

/// The local process whose connection is driving the current call, if any.
pub fn calling_process() -> Option<u64> {
    PROCESS.try_with(|pid| *pid).ok()
}

/// Runs `future` as if process `pid` were calling: for tests of budgets.
#[cfg(test)]
pub(crate) async fn as_process<F: Future>(pid: u64, future: F) -> F::Output {
    scope(pid, future).await
}
