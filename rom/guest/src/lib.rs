//! The guest runtime: everything a ROM needs to talk to its host, behind one
//! entry point.
//!
//! ```ignore
//! fn main() {
//!     ww_guest::run(|env| async move {
//!         let peer = env.host.peer_id_request().send().promise.await?;
//!         println!("running on {}", peer.get()?.get_peer_id()?.to_str()?);
//!         Ok(())
//!     })
//! }
//! ```
//!
//! [`run`] connects capnp-rpc over the streams the host gives the process
//! through the `ww:rpc/transport` import (`wit/rpc.wit`), gives the ROM its
//! host's [`ww_api::host::Client`], drives the connection and the ROM's
//! future on one single-threaded executor, and exits with the ROM's result.
//!
//! # Rules for ROM authors
//!
//! - stdin, stdout and stderr are the user's: under `ww run` they are the
//!   terminal's (or the pipe's). Print results to stdout and logs and
//!   progress to stderr ([`progress::Progress`]: a live line on a
//!   terminal, plain lines otherwise). A process spawned on a host has no
//!   stdin, and the host logs its stdout and stderr line by line, tagged
//!   with its id.
//! - Do not block: use [`sleep`] and `.await`, never `std::thread::sleep`.
//!   A ROM that computes without yielding to its host for too long is
//!   killed by the host's busy limit.
//! - To end with a code other than 0 or 1, return
//!   `Err(ExitCode(n).into())` or call [`exit`]: `std::process::exit`
//!   goes through WASI 0.2's `exit`, which gives only 0 or 1.

pub mod args;
mod executor;
pub mod metrics;
pub mod progress;
mod reactor;
mod stream;
mod time;

pub use executor::{
    exit, exit_if_not_permitted, run, spawn, yield_now, Env, ExitCode, YieldNow,
    NOT_PERMITTED_EXIT_CODE,
};
pub use time::{now_ms, sleep, timeout, unix_time_ms, Elapsed};
pub use ww_api;

/// Whether the ROM was asked for its usage text: a first argument of
/// `--help`, `-h` or `help` (`ww run ROM.wasm --help` passes it through).
pub fn wants_help(args: &[String]) -> bool {
    matches!(
        args.first().map(String::as_str),
        Some("--help" | "-h" | "help")
    )
}
