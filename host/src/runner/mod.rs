//! The process runner: wasmtime, the ROM cache, and the limits every
//! process runs under.
//!
//! A ROM is a `wasm32-wasip2` command component. One pair of streams, which
//! it imports through `ww:rpc/transport` (`wit/rpc.wit`), carries its
//! capnp-rpc connection to the host; its stdin, stdout and stderr are the
//! user's under `ww run`, and logged by the host for a spawned process. It
//! gets no network, no environment (but `NO_COLOR` under `ww run`) and no
//! files beyond what it is granted.

mod cache;
mod caller;
mod cpu;
mod descriptors;
mod limits;
mod process;
mod quota;
mod ticker;
mod transport;

pub use cache::{Rom, RomCache};
#[cfg(test)]
pub(crate) use caller::as_process;
pub use caller::calling_process;
pub use cpu::CpuUse;
pub use descriptors::{default_max as default_descriptors_max, raise_open_files_limit};
pub use limits::Limits;
pub use process::{start, ExitKind, ExitStatus, Running, SpawnSpec, Stdio};
pub use quota::VolumeQuota;

use std::rc::Rc;
use std::sync::Arc;

use anyhow::{Context, Result};
use wasmtime::component::Linker;
use wasmtime::{Config, Engine};

use process::ProcState;

/// How often the epoch advances. A running guest yields to the host's
/// event loop at the first tick after it has computed for half a tick, so
/// a busy guest delays the host's RPC by at most 1.5 ticks; a host's
/// computing guests then wait for their CPU shares (`cpu.rs`).
pub const EPOCH_TICK_MS: u64 = 1;

/// The wasmtime engine, its linker, and the ROM cache. One per host (and
/// one per `ww run`).
/// wasmtime-wasi's `wasi:filesystem/types`, the version that serves every
/// 0.2 import: the host replaces some of its functions in the linker, to
/// enforce the volume quota (`quota.rs`) and the descriptor bound
/// (`descriptors.rs`).
const FILESYSTEM_TYPES: &str = "wasi:filesystem/types@0.2.12";

/// A wasmtime-wasi filesystem call's result as a replaced function returns
/// it: the value or the guest's error code, or a trap.
fn to_guest<T>(
    result: wasmtime_wasi::p2::FsResult<T>,
) -> wasmtime::Result<(Result<T, wasmtime_wasi::p2::bindings::filesystem::types::ErrorCode>,)> {
    match result {
        Ok(value) => Ok((Ok(value),)),
        Err(err) => Ok((Err(err.downcast()?),)),
    }
}

/// What a runtime's processes may hold together (`ww start`'s flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budgets {
    /// Their linear memories, in bytes.
    pub guest_memory_bytes_max: usize,
    /// Their file opens are refused while the host holds this many
    /// descriptors.
    pub descriptors_max: usize,
    /// The part of the event loop computing processes get together, in
    /// percent (`cpu.rs`).
    pub guests_cpu_percent: u32,
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<ProcState>,
    ticks: Arc<ticker::Ticks>,
    cache: RomCache,
    cpu: Rc<cpu::CpuShares>,
    /// The linear memory of all of this runtime's processes.
    guest_memory: Arc<limits::GuestMemory>,
    /// The host's descriptors that its processes' opens leave alone.
    descriptors: Arc<descriptors::HostDescriptors>,
    /// Calls and bytes on the connections of this runtime's processes.
    pub rpc_meter: Rc<ww_api::meter::Meter>,
}

impl Runtime {
    /// Builds the engine and starts its epoch ticker. Compiled ROMs are kept
    /// under `cache_dir` if given; the processes together are held to
    /// `budgets`.
    ///
    /// # Errors
    ///
    /// When wasmtime cannot be configured on this machine.
    pub fn new(cache_dir: Option<std::path::PathBuf>, budgets: Budgets) -> Result<Rc<Self>> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        // No copy-on-write memory images. Wasmtime builds each one in a
        // memfd and seals it against writes; under load Linux may refuse
        // that seal (EBUSY while the freshly written pages are still
        // referenced), and instantiation then fails with "cannot add seals
        // to the memfd" (seen on a loaded 2-core machine). Our ROMs' data
        // segments are small, so copying them into each instance costs
        // little, and a start that cannot fail this way is worth more.
        config.memory_init_cow(false);
        // `WW_PROFILE=perfmap` writes /tmp/perf-<pid>.map, so `perf report`
        // names guest functions (see docs/benchmarks.md).
        if std::env::var("WW_PROFILE").is_ok_and(|value| value == "perfmap") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("configuring wasmtime")?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        transport::add_to_linker(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking ww:rpc/transport")?;
        quota::add_to_linker(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking the volume quota's file writes")?;
        descriptors::add_to_linker(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking the descriptor bound's opens")?;
        let ticks = ticker::start(engine.weak());
        Ok(Rc::new(Self {
            cache: RomCache::new(engine.clone(), cache_dir),
            engine,
            linker,
            ticks,
            cpu: Rc::new(cpu::CpuShares::new(budgets.guests_cpu_percent)),
            guest_memory: Arc::new(limits::GuestMemory::new(budgets.guest_memory_bytes_max)),
            descriptors: Arc::new(descriptors::HostDescriptors::new(budgets.descriptors_max)),
            rpc_meter: Rc::default(),
        }))
    }

    /// What the host-wide budgets refused so far: growths of linear
    /// memory, and file opens.
    pub fn budget_refusals(&self) -> [(&'static str, u64); 2] {
        [
            ("guest_memory", self.guest_memory.refused()),
            ("descriptors", self.descriptors.refused()),
        ]
    }

    /// Bytes of linear memory this runtime's processes hold, and the most
    /// they may hold together.
    pub fn guest_memory_bytes(&self) -> (usize, usize) {
        (self.guest_memory.bytes(), self.guest_memory.bytes_max())
    }

    /// The ROM cache.
    pub fn roms(&self) -> &RomCache {
        &self.cache
    }

    /// The time each live process of the host waited for its CPU share,
    /// in ns, by pid (the one process of `ww run` is not held to a share).
    pub fn cpu_waits_ns(&self) -> Vec<(u64, u64)> {
        self.cpu.waits()
    }

    fn now_ticks(&self) -> u64 {
        self.ticks.now()
    }
}
