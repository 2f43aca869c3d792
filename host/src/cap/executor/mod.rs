//! `Executor` and `Process`: spawning, supervising and killing processes.
//!
//! A supervised process (restart policy `onFailure` or `always`) is
//! restarted with exponential backoff when it ends, and recorded in the
//! data dir (`supervised/<key>.json`, with its ROM in `roms/<hash>.wasm`) so
//! that a host restarted with the same data dir respawns it with the same
//! volume (and its key), anchor and grants. A record whose grants include a
//! live capability is not respawned: the capability died with the host.
//! Killing a process ends its supervision, clears its anchors and forgets
//! the record; its volume and the volume's key stay (see [`super::volume`]).

mod server;
mod supervise;
pub mod table;

pub use server::{ExecutorServer, ProcessServer};
pub use supervise::{respawn_supervised, spawn};
pub use table::{Proc, ProcSummary, ProcessSpec, Processes, Restart};
