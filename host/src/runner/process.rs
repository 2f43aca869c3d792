//! Running one process: a component instance whose `ww:rpc/transport`
//! streams carry a capnp-rpc connection to the host, and whose stdio is the
//! user's (`ww run`) or the host's log (a spawned process).

use std::fmt;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use capnp_rpc::rpc_twoparty_capnp::Side;
use futures::future::{FutureExt, LocalBoxFuture, Shared};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};
use wasmtime::component::{ResourceTable, ResourceTableError};
use wasmtime::{CallHook, Store, UpdateDeadline};
use wasmtime_wasi::cli::AsyncStdoutStream;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::p2::pipe::{AsyncReadStream, AsyncWriteStream};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

use super::cpu::{Metered, Slice};
use super::limits::ProcessLimiter;
use super::transport::Transport;
use super::{Limits, Rom, Runtime, EPOCH_TICK_MS};
use crate::limits::{OUTPUT_LINE_BYTES_MAX, PIPE_BYTES, RESOURCES_MAX};

/// Where a guest's stdin, stdout and stderr go.
#[derive(Clone, Debug)]
pub enum Stdio {
    /// This process's own (`ww run`: the ROM talks to the user).
    Inherit,
    /// No stdin; stdout and stderr go to the host's log, one event per
    /// line, tagged with the process id and the stream. The process is the
    /// host's process `pid`: the calls it makes are charged to it
    /// ([`super::calling_process`]).
    Log {
        /// The process id to tag lines with.
        pid: u64,
    },
}

/// How to start one process.
#[derive(Clone, Debug)]
pub struct SpawnSpec {
    /// Arguments after argv\[0\] (argv\[0\] is the ROM's hash).
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// A host directory preopened as `/data`, read-write.
    pub volume: Option<PathBuf>,
    /// The volume's quota, which every file write takes from.
    pub quota: Option<Arc<super::VolumeQuota>>,
    /// Resource limits.
    pub limits: Limits,
    /// Where stdin, stdout and stderr go.
    pub stdio: Stdio,
    /// Where the guest's time and slices on the host's thread are counted
    /// (the executor keeps one per process, summed over its incarnations).
    pub cpu: Rc<super::CpuUse>,
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// It returned or called exit.
    Exited,
    /// It trapped, exceeded a limit, or failed to start.
    Trapped,
    /// It was killed.
    Killed,
}

/// The end of a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitStatus {
    /// How it ended.
    pub kind: ExitKind,
    /// The exit code (-1 unless it exited).
    pub code: i32,
    /// Why, for people.
    pub message: String,
}

impl ExitStatus {
    /// Whether the process exited with 0.
    pub fn success(&self) -> bool {
        self.kind == ExitKind::Exited && self.code == 0
    }

    fn trapped(message: String) -> Self {
        Self {
            kind: ExitKind::Trapped,
            code: -1,
            message,
        }
    }

    /// The status of a killed process.
    pub fn killed() -> Self {
        Self {
            kind: ExitKind::Killed,
            code: -1,
            message: "killed".to_owned(),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A started process.
pub struct Running {
    /// The capability the guest exports (its capnp bootstrap).
    pub exported: capnp::capability::Client,
    /// Resolves when the process ends. Dropping it does not stop the
    /// process; aborting `task` does.
    pub exit: Shared<LocalBoxFuture<'static, ExitStatus>>,
    /// The task running the guest. Aborting it kills the process.
    pub task: tokio::task::AbortHandle,
}

pub(crate) struct ProcState {
    ctx: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) transport: Transport,
    limits: ProcessLimiter,
    busy: Busy,
    /// See [`SpawnSpec::quota`].
    pub(super) quota: Option<Arc<super::VolumeQuota>>,
    /// The host's bound on descriptors, shared by its processes.
    pub(super) descriptors: Arc<super::descriptors::HostDescriptors>,
}

/// Tracks how long the guest has computed without calling its host; see
/// [`Limits::busy_ms_max`].
///
/// wasmtime reports every exit to the host as `CallHook::CallingHost`:
/// WASI calls, but also libcalls such as the epoch check itself. So the
/// epoch callback counts exits since it last ran: exactly one (its own)
/// means the guest called nothing in between, and has been busy since
/// `since_tick`.
#[derive(Default)]
struct Busy {
    host_calls: u64,
    host_calls_at_check: u64,
    since_tick: u64,
}

impl WasiView for ProcState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// The error a busy guest is stopped with.
#[derive(Debug)]
struct BusyLimit {
    busy_ms_max: u64,
}

impl fmt::Display for BusyLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "killed by the CPU limit: computed for more than {} ms without yielding to the host",
            self.busy_ms_max
        )
    }
}

impl std::error::Error for BusyLimit {}

/// Starts `rom` as a process on the current `LocalSet`, offering it
/// `bootstrap` as its host capability.
///
/// # Errors
///
/// When the WASI context cannot be built (e.g. the volume directory cannot
/// be opened). Instantiation errors and traps end the process instead, with
/// an [`ExitStatus`] that says why.
pub fn start(
    runtime: &Rc<Runtime>,
    rom: &Rom,
    spec: SpawnSpec,
    bootstrap: capnp::capability::Client,
) -> Result<Running> {
    let (host_end, guest_end) = tokio::io::duplex(PIPE_BYTES);
    let (guest_read, guest_write) = tokio::io::split(guest_end);
    let (host_read, host_write) = tokio::io::split(host_end);

    let transport = Transport::new(
        Box::new(AsyncReadStream::new(guest_read)),
        Box::new(AsyncWriteStream::new(PIPE_BYTES, guest_write)),
    );

    let mut builder = WasiCtx::builder();
    builder
        .arg(rom.hash.to_hex().as_str())
        .args(&spec.args)
        .envs(&spec.env);
    match &spec.stdio {
        Stdio::Inherit => {
            builder.inherit_stdio();
        }
        Stdio::Log { pid } => {
            // stdin stays the builder's default: empty.
            let (stdout_write, stdout_read) = tokio::io::duplex(PIPE_BYTES);
            builder.stdout(AsyncStdoutStream::new(PIPE_BYTES, stdout_write));
            tokio::task::spawn_local(forward_output(*pid, "stdout", stdout_read));
            let (stderr_write, stderr_read) = tokio::io::duplex(PIPE_BYTES);
            builder.stderr(AsyncStdoutStream::new(PIPE_BYTES, stderr_write));
            tokio::task::spawn_local(forward_output(*pid, "stderr", stderr_read));
        }
    }
    if let Some(volume) = &spec.volume {
        builder
            .preopened_dir(volume, "/data", FsPerms::ReadWrite)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("opening volume {}", volume.display()))?;
    }
    let mut table = ResourceTable::new();
    table.set_max_capacity(RESOURCES_MAX);
    let state = ProcState {
        ctx: builder.build(),
        table,
        transport,
        limits: ProcessLimiter::new(spec.limits.memory_bytes_max, runtime.guest_memory.clone()),
        quota: spec.quota.clone(),
        descriptors: runtime.descriptors.clone(),
        busy: Busy {
            since_tick: runtime.now_ticks(),
            ..Busy::default()
        },
    };
    let mut store = Store::new(&runtime.engine, state);
    store.limiter(|state| &mut state.limits);
    let slice = Arc::new(Slice::default());
    let hook_slice = slice.clone();
    store.call_hook(move |mut ctx, hook| {
        if matches!(hook, CallHook::CallingHost) {
            ctx.data_mut().busy.host_calls += 1;
            // A held process that calls its host ends its slice at the
            // guest's next epoch check once the slice ran its least, not at
            // the next tick: what waits behind it waits ~100 µs, not up to
            // a tick (`cpu.rs`).
            if hook_slice.held_slice_spent() {
                ctx.set_epoch_deadline(0);
            }
        }
        Ok(())
    });
    let busy_ticks_max = spec.limits.busy_ms_max.div_ceil(EPOCH_TICK_MS).max(1);
    let ticks = runtime.ticks.clone();
    let busy_ms_max = spec.limits.busy_ms_max;
    let in_slice = slice.clone();
    store.epoch_deadline_callback(move |mut ctx| {
        let now = ticks.now();
        let busy = &mut ctx.data_mut().busy;
        if busy.host_calls - busy.host_calls_at_check > 1 {
            busy.since_tick = now;
        }
        busy.host_calls_at_check = busy.host_calls;
        if now.saturating_sub(busy.since_tick) > busy_ticks_max {
            return Err(BusyLimit { busy_ms_max }.into());
        }
        // Yield to the event loop once a slice has computed for half a tick
        // or more, so a busy guest cannot starve the host's RPC; the CPU
        // share sees that it was still computing.
        if in_slice.preempt() {
            Ok(UpdateDeadline::Yield(1))
        } else {
            Ok(UpdateDeadline::Continue(1))
        }
    });
    store.set_epoch_deadline(1);

    let process = match spec.stdio {
        Stdio::Log { pid } => Some(pid),
        Stdio::Inherit => None,
    };
    let connection = ww_api::vat::connect_metered::<capnp::capability::Client, _, _, _>(
        host_read.compat(),
        host_write.compat_write(),
        Side::Server,
        Some(bootstrap),
        runtime.rpc_meter.clone(),
        None,
        |driver| {
            tokio::task::spawn_local(async move {
                // Calls on a supervised process's connection are its own:
                // budgets charge them to it (see `caller`).
                let ended = match process {
                    Some(pid) => super::caller::scope(pid, driver).await,
                    None => driver.await,
                };
                if let Err(err) = ended {
                    tracing::debug!("guest connection ended: {err}");
                }
            });
        },
    );

    let pre = runtime.linker.instantiate_pre(&rom.component);
    let memory_limit = spec.limits.memory_bytes_max;
    let guest = async move {
        match pre {
            Ok(pre) => run(pre, &mut store, memory_limit).await,
            Err(err) => ExitStatus::trapped(format!("cannot link the ROM: {err:#}")),
        }
    };
    // A host's processes share its event loop, so they are held to their
    // CPU shares; `ww run`'s one process has the loop to itself.
    let share = process.map(|pid| (runtime.cpu.clone(), pid));
    let metered = Metered::new(slice, runtime.ticks.clone(), share, spec.cpu.clone(), guest);
    let handle = tokio::task::spawn_local(metered);
    let task = handle.abort_handle();
    let exit = async move {
        match handle.await {
            Ok(status) => status,
            Err(err) if err.is_cancelled() => ExitStatus::killed(),
            Err(err) => ExitStatus::trapped(format!("the process task failed: {err}")),
        }
    }
    .boxed_local()
    .shared();
    // The connection ends when the process does: its store, which holds
    // the guest's ends of the pipe, is dropped with the task, so the host's
    // side reads EOF and every capability of the guest fails from then on.
    // The connection is not disconnected by hand: capnp-rpc (0.27) panics
    // in the connection's task ("message loop outlived connection state?")
    // when a disconnect races a message still buffered from the guest.
    Ok(Running {
        exported: connection.client,
        exit,
        task,
    })
}

async fn run(
    pre: wasmtime::component::InstancePre<ProcState>,
    store: &mut Store<ProcState>,
    memory_limit: usize,
) -> ExitStatus {
    let command_pre = match CommandPre::new(pre) {
        Ok(command_pre) => command_pre,
        Err(err) => {
            return ExitStatus::trapped(format!(
                "the component is not a WASI command (it must export wasi:cli/run): {err:#}"
            ))
        }
    };
    let command = match command_pre.instantiate_async(&mut *store).await {
        Ok(command) => command,
        Err(err) => return classify(err, memory_limit),
    };
    match command.wasi_cli_run().call_run(&mut *store).await {
        Ok(Ok(())) => ExitStatus {
            kind: ExitKind::Exited,
            code: 0,
            message: "exited with 0".to_owned(),
        },
        Ok(Err(())) => ExitStatus {
            kind: ExitKind::Exited,
            code: 1,
            message: "exited with 1".to_owned(),
        },
        Err(err) => classify(err, memory_limit),
    }
}

fn classify(err: wasmtime::Error, memory_limit: usize) -> ExitStatus {
    if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return ExitStatus {
            kind: ExitKind::Exited,
            code: exit.0,
            message: format!("exited with {}", exit.0),
        };
    }
    if let Some(busy) = err.downcast_ref::<BusyLimit>() {
        return ExitStatus::trapped(busy.to_string());
    }
    let text = format!("{err:#}");
    let table_full = err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<ResourceTableError>(),
            Some(ResourceTableError::Full)
        )
    });
    if table_full {
        return ExitStatus::trapped(format!(
            "killed by the descriptor limit: the ROM asked for more than {RESOURCES_MAX} WASI resources at once (open files, streams, pollables; resources_max) ({text})"
        ));
    }
    if err.chain().any(|cause| {
        cause
            .downcast_ref::<super::limits::HostMemoryBudget>()
            .is_some()
    }) {
        return ExitStatus::trapped(format!(
            "killed by the host's memory budget: its processes together may hold no more linear memory (ww start --guest-memory-limit-mb) ({text})"
        ));
    }
    if text.contains("forcing trap when growing memory") || text.contains("memory.grow") {
        return ExitStatus::trapped(format!(
            "killed by the memory limit: the ROM tried to grow its memory past {} MiB ({text})",
            memory_limit / (1024 * 1024)
        ));
    }
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => ExitStatus::trapped(format!("trapped: {trap} ({text})")),
        None => ExitStatus::trapped(format!("failed: {text}")),
    }
}

async fn forward_output(pid: u64, stream: &'static str, output: tokio::io::DuplexStream) {
    let mut reader = tokio::io::BufReader::new(output);
    let mut line = Vec::new();
    loop {
        line.clear();
        // `take` bounds the line: a ROM that never prints a newline cannot
        // make the host buffer without limit.
        let mut bounded = (&mut reader).take(OUTPUT_LINE_BYTES_MAX as u64);
        match bounded.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                tracing::info!(target: "ww::rom", pid, stream, "{}", text.trim_end());
            }
        }
    }
}
