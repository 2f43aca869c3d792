//! The guest runtime: everything a ROM needs to talk to its host, behind one
//! entry point.
//!
//! ```ignore
//! fn main() {
//!     ww_guest::run(|env| async move {
//!         let peer = env.host.peer_id_request().send().promise.await?;
//!         eprintln!("running on {}", peer.get()?.get_peer_id()?.to_str()?);
//!         Ok(())
//!     })
//! }
//! ```
//!
//! [`run`] connects capnp-rpc over the process's stdin/stdout, gives the ROM
//! its host's [`ww_api::host::Client`], drives the connection and the ROM's
//! future on one single-threaded executor, and exits with the ROM's result.
//!
//! # Rules for ROM authors
//!
//! - **stdout is the capnp transport.** Never `println!`: it corrupts the
//!   connection and the host drops it. Log with `eprintln!`; the host tags
//!   each stderr line with the process id and forwards it to its log.
//! - Do not block: use [`sleep`] and `.await`, never `std::thread::sleep`.
//!   A ROM that computes without yielding to its host for too long is
//!   killed by the host's busy limit.
//! - To end with a code other than 0 or 1, return
//!   `Err(ExitCode(n).into())` or call [`exit`]: `std::process::exit`
//!   goes through WASI 0.2's `exit`, which gives only 0 or 1.

mod executor;
mod reactor;
mod stdio;
mod time;

pub use executor::{exit, run, spawn, Env, ExitCode};
pub use time::{now_ms, sleep, timeout, Elapsed};
pub use ww_api;
