//! The chaos harness on real hosts (docs/chaos.md): 4 `ww start` hosts on
//! loopback, a 3-replica Raft group, concurrent clients (separate
//! `ww run raft.wasm` processes and native sessions) doing get/put/cas on a
//! few keys and enqueue/lease/ack on a few topics, while a seeded nemesis
//! kill -9's and restarts replica hosts (same data dir and port) and
//! SIGSTOPs/SIGCONTs them. Every operation's invocation, completion and
//! outcome is recorded and checked: per-key linearizability of the KV
//! history, and the total-queue checks of the queue history.
//!
//! One test, `run`: ~35 s in `make test` (at least one kill -9 and one
//! SIGSTOP); `make chaos DURATION=S SEED=N` runs the same test longer.
//!
//! Environment: `CHAOS_SEED` (default: from the clock), `CHAOS_DURATION_S`
//! (default 35), `CHAOS_CLI_CLIENTS`, `CHAOS_NATIVE_CLIENTS`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod driver;
mod native;
mod nemesis;

use std::time::Duration;

use driver::Config;

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

fn seed() -> u64 {
    env_u64("CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |elapsed| elapsed.as_secs())
    })
}

fn config(duration: Duration) -> Config {
    Config {
        seed: seed(),
        duration,
        cli_clients: env_u64("CHAOS_CLI_CLIENTS").map_or(8, |n| n as usize),
        native_clients: env_u64("CHAOS_NATIVE_CLIENTS").map_or(4, |n| n as usize),
    }
}

#[test]
fn run() {
    let seconds = env_u64("CHAOS_DURATION_S").unwrap_or(35);
    driver::run(&config(Duration::from_secs(seconds)));
}
