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

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use capnp::capability::Rc as CapRc;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::{info, warn};
use ww_api::{executor, process};

use super::grants::{self, Grant, GrantValue};
use super::host::{HostContext, HostServer};
use super::tree::Owner;
use super::volume::{self, VolumeKey};
use super::{invalid, path, text};
use crate::runner::{self, ExitKind, ExitStatus, Limits, Rom, SpawnSpec, Stdio};

/// Most processes (live or ended, not yet reaped) per host.
pub const PROCESSES_MAX: usize = 256;

/// First restart delay; doubles up to [`RESTART_BACKOFF_MAX_MS`].
const RESTART_BACKOFF_MIN_MS: u64 = 250;
const RESTART_BACKOFF_MAX_MS: u64 = 30_000;
/// An incarnation that ran this long resets the backoff.
const RESTART_BACKOFF_RESET_MS: u64 = 60_000;

/// Most arguments and environment entries, and their total bytes.
const ARGS_MAX: u32 = 256;
const ARG_BYTES_MAX: usize = 64 * 1024;

/// Restart policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Restart {
    /// Never restart.
    Never,
    /// Restart after a trap or a non-zero exit.
    OnFailure,
    /// Restart after any end but a kill.
    Always,
}

impl Restart {
    fn applies(self, status: &ExitStatus) -> bool {
        match self {
            Restart::Never => false,
            Restart::OnFailure => !status.success(),
            Restart::Always => true,
        }
    }
}

/// What a process was spawned with; also the supervision record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// A label.
    pub name: String,
    /// blake3 of the ROM, hex.
    pub rom_hash: String,
    /// Arguments after argv\[0\].
    pub args: Vec<String>,
    /// Environment, `KEY=VALUE`.
    pub env: Vec<String>,
    /// Volume name, if granted.
    pub volume: Option<String>,
    /// Restart policy.
    pub restart: Restart,
    /// Path below this host where the exported capability is anchored.
    pub anchor: Option<Vec<String>>,
    /// Whether the process gets this host's full `Host`. Records written
    /// before grants existed lack it; their processes had the full host.
    #[serde(default = "full_host")]
    pub host: bool,
    /// What the process is handed by name.
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// The key of `volume` (see [`super::volume`]).
    #[serde(default)]
    pub volume_key: Option<VolumeKey>,
}

fn full_host() -> bool {
    true
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Starting,
    Running,
    Restarting,
    Ended,
}

/// One process and its supervision.
pub struct Proc {
    id: u64,
    spec: ProcessSpec,
    /// The supervision record's file stem, if supervised.
    record: Option<String>,
    state: Cell<State>,
    started: Cell<Instant>,
    restarts: Cell<u32>,
    exported: RefCell<Option<capnp::capability::Client>>,
    task: RefCell<Option<tokio::task::AbortHandle>>,
    killed: Cell<bool>,
    last_exit: RefCell<Option<ExitStatus>>,
    ended: Notify,
    wake: Notify,
    /// Notified when an incarnation has started (its capability is set).
    launched: Notify,
}

/// Every process of this host.
pub struct Processes {
    data_dir: PathBuf,
    runtime: Rc<runner::Runtime>,
    next_id: Cell<u64>,
    table: RefCell<BTreeMap<u64, Rc<Proc>>>,
    /// Incarnations that trapped (or could not start), for `/metrics`.
    traps: Cell<u64>,
}

/// One process as the operator view (`ww start --http`) shows it.
pub struct ProcSummary {
    pub id: u64,
    pub name: String,
    pub state: &'static str,
    pub restarts: u32,
    pub anchor: String,
    pub uptime_ms: u64,
}

impl Processes {
    /// An empty table for a host whose data dir is `data_dir`.
    pub fn new(data_dir: PathBuf, runtime: Rc<runner::Runtime>) -> Rc<Self> {
        Rc::new(Self {
            data_dir,
            runtime,
            next_id: Cell::new(1),
            table: RefCell::new(BTreeMap::new()),
            traps: Cell::new(0),
        })
    }

    fn roms_dir(&self) -> PathBuf {
        self.data_dir.join("roms")
    }

    fn records_dir(&self) -> PathBuf {
        self.data_dir.join("supervised")
    }

    /// Every process in the table, for the operator view.
    pub fn summaries(&self) -> Vec<ProcSummary> {
        self.table
            .borrow()
            .values()
            .map(|proc| ProcSummary {
                id: proc.id,
                name: proc.spec.name.clone(),
                state: proc.state_name(),
                restarts: proc.restarts.get(),
                anchor: proc
                    .spec
                    .anchor
                    .as_ref()
                    .map(|anchor| path::join(anchor))
                    .unwrap_or_default(),
                uptime_ms: if proc.state.get() == State::Running {
                    u64::try_from(proc.started.get().elapsed().as_millis()).unwrap_or(u64::MAX)
                } else {
                    0
                },
            })
            .collect()
    }

    /// Incarnations that trapped or failed to start since the host started.
    pub fn traps(&self) -> u64 {
        self.traps.get()
    }

    /// The runtime (its ROM cache counters, for `/metrics`).
    pub fn runtime(&self) -> &runner::Runtime {
        &self.runtime
    }

    /// A live process by id.
    pub fn get(&self, id: u64) -> Option<Rc<Proc>> {
        self.table.borrow().get(&id).cloned()
    }

    /// The ROM with `hash`: compiled in memory, or stored in the data dir.
    async fn rom_by_hash(&self, hash: &blake3::Hash) -> Result<Rom> {
        if let Some(rom) = self.runtime.roms().get(hash) {
            return Ok(rom);
        }
        let path = self.roms_dir().join(format!("{}.wasm", hash.to_hex()));
        match std::fs::read(&path) {
            Ok(bytes) => self.runtime.roms().load(Arc::from(bytes)).await,
            Err(_) => bail!(
                "ROM {} is not on this host; spawn it with its bytes first",
                hash.to_hex()
            ),
        }
    }

    fn store_rom(&self, rom: &Rom) -> Result<()> {
        let path = self.roms_dir().join(format!("{}.wasm", rom.hash.to_hex()));
        if path.exists() {
            return Ok(());
        }
        write_atomic(&path, &rom.bytes)
    }

    /// Respawns every supervised process recorded in the data dir.
    pub async fn respawn_supervised(ctx: &Rc<HostContext>) {
        let processes = &ctx.processes;
        let Ok(entries) = std::fs::read_dir(processes.records_dir()) else {
            return;
        };
        let mut records: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        records.sort();
        for path in records {
            let result = async {
                let bytes = std::fs::read(&path)?;
                let mut spec: ProcessSpec =
                    serde_json::from_slice(&bytes).context("malformed record")?;
                let caps: Vec<&str> = spec
                    .grants
                    .iter()
                    .filter(|grant| matches!(grant.value, GrantValue::Cap(_)))
                    .map(|grant| grant.name.as_str())
                    .collect();
                if !caps.is_empty() {
                    warn!(
                        name = %spec.name,
                        "not respawning the supervised process of {}: its grants include live capabilities ({}) that did not survive the host restart; its spawner must spawn it again",
                        path.display(),
                        caps.join(", ")
                    );
                    let _ = std::fs::remove_file(&path);
                    return Ok(());
                }
                grants::revive(&mut spec.grants).map_err(anyhow::Error::msg)?;
                let hash = blake3::Hash::from_hex(&spec.rom_hash).context("malformed ROM hash")?;
                let rom = processes.rom_by_hash(&hash).await?;
                if let (Some(name), None) = (&spec.volume, spec.volume_key) {
                    spec.volume_key = Some(volume::adopt(&processes.data_dir, name)?);
                    write_atomic(&path, &serde_json::to_vec_pretty(&spec)?)?;
                    info!(volume = %name, "a record of an older version adopted its volume");
                }
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_owned();
                let proc = spawn(ctx, rom, spec, Some(stem))?;
                info!(pid = proc.id, name = %proc.spec.name, "respawned a supervised process");
                anyhow::Ok(())
            }
            .await;
            if let Err(err) = result {
                warn!(
                    "cannot respawn the supervised process in {}: {err:#}",
                    path.display()
                );
            }
        }
    }
}

/// Writes `bytes` to `path` (0600) atomically and durably.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().context("a path with a parent")?;
    crate::private::create_dir(dir)?;
    let tmp = path.with_extension(format!("tmp.{}", rand::random::<u64>()));
    let mut file = crate::private::file_options().open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

fn validate_volume(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || name.starts_with('.')
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(format!(
            "volume name {name:?} must be 1 to 64 of [A-Za-z0-9._-], not starting with '.'"
        ));
    }
    Ok(())
}

/// Starts `rom` under `spec` and supervises it. `record` is the name of an
/// existing supervision record to reuse (a respawn after restart).
///
/// # Errors
///
/// When the host has too many processes, the volume is in use, or the
/// supervision record cannot be written.
pub fn spawn(
    ctx: &Rc<HostContext>,
    rom: Rom,
    mut spec: ProcessSpec,
    record: Option<String>,
) -> Result<Rc<Proc>> {
    let processes = &ctx.processes;
    {
        let mut table = processes.table.borrow_mut();
        if table.len() >= PROCESSES_MAX {
            // Forget the oldest ended process to make room.
            let oldest_ended = table
                .values()
                .find(|proc| proc.state.get() == State::Ended)
                .map(|proc| proc.id);
            match oldest_ended {
                Some(id) => {
                    table.remove(&id);
                }
                None => bail!("this host runs {PROCESSES_MAX} processes already; kill some first"),
            }
        }
        if let Some(volume) = &spec.volume {
            if let Some(user) = table.values().find(|proc| {
                proc.state.get() != State::Ended && proc.spec.volume.as_ref() == Some(volume)
            }) {
                bail!("volume {volume:?} is in use by process {}", user.id);
            }
        }
    }
    // A fresh spawn must own its volume; a respawn's record holds the key.
    if let (Some(volume), None) = (&spec.volume, &record) {
        spec.volume_key = Some(volume::claim(&processes.data_dir, volume, spec.volume_key)?);
    }
    let supervised = spec.restart != Restart::Never;
    let record = match (supervised, record) {
        (false, _) => None,
        (true, Some(record)) => Some(record),
        (true, None) => {
            processes.store_rom(&rom)?;
            let stem = format!("{:016x}", rand::random::<u64>());
            let bytes = serde_json::to_vec_pretty(&spec)?;
            write_atomic(
                &processes.records_dir().join(format!("{stem}.json")),
                &bytes,
            )?;
            Some(stem)
        }
    };
    let id = processes.next_id.get();
    processes.next_id.set(id + 1);
    let proc = Rc::new(Proc {
        id,
        spec,
        record,
        state: Cell::new(State::Starting),
        started: Cell::new(Instant::now()),
        restarts: Cell::new(0),
        exported: RefCell::new(None),
        task: RefCell::new(None),
        killed: Cell::new(false),
        last_exit: RefCell::new(None),
        ended: Notify::new(),
        wake: Notify::new(),
        launched: Notify::new(),
    });
    processes.table.borrow_mut().insert(id, proc.clone());
    tokio::task::spawn_local(supervise(ctx.clone(), proc.clone(), rom));
    Ok(proc)
}

async fn supervise(ctx: Rc<HostContext>, proc: Rc<Proc>, rom: Rom) {
    let mut backoff_ms = RESTART_BACKOFF_MIN_MS;
    loop {
        proc.started.set(Instant::now());
        let status = run_once(&ctx, &proc, &rom).await;
        info!(pid = proc.id, name = %proc.spec.name, "process ended: {status}");
        // Clears the process's own anchor too: it is set as the process.
        ctx.tree.clear_owned(owner(&ctx, &proc));
        proc.exported.borrow_mut().take();
        *proc.last_exit.borrow_mut() = Some(status.clone());
        if proc.killed.get() || !proc.spec.restart.applies(&status) {
            break;
        }
        if proc.started.get().elapsed() >= Duration::from_millis(RESTART_BACKOFF_RESET_MS) {
            backoff_ms = RESTART_BACKOFF_MIN_MS;
        }
        proc.state.set(State::Restarting);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
            () = proc.wake.notified() => {}
        }
        if proc.killed.get() {
            break;
        }
        backoff_ms = (backoff_ms * 2).min(RESTART_BACKOFF_MAX_MS);
        proc.restarts.set(proc.restarts.get() + 1);
    }
    proc.state.set(State::Ended);
    if let Some(record) = &proc.record {
        let _ = std::fs::remove_file(ctx.processes.records_dir().join(format!("{record}.json")));
    }
    proc.ended.notify_waiters();
}

async fn run_once(ctx: &Rc<HostContext>, proc: &Rc<Proc>, rom: &Rom) -> ExitStatus {
    let volume = match &proc.spec.volume {
        Some(name) => {
            let dir = volume::dir(&ctx.processes.data_dir, name);
            if let Err(err) = crate::private::create_dir(&dir) {
                return failed(format!("cannot create volume {}: {err}", dir.display()));
            }
            Some(dir)
        }
        None => None,
    };
    let env = proc
        .spec
        .env
        .iter()
        .map(|entry| match entry.split_once('=') {
            Some((key, value)) => (key.to_owned(), value.to_owned()),
            None => (entry.clone(), String::new()),
        })
        .collect();
    let spec = SpawnSpec {
        args: proc.spec.args.clone(),
        env,
        volume,
        limits: Limits::default(),
        stdio: Stdio::Log { pid: proc.id },
    };
    // Every incarnation gets the same grants, caps included.
    let host = HostServer::for_process(
        ctx.clone(),
        proc.id,
        proc.spec.host,
        Rc::from(proc.spec.grants.clone()),
    );
    let running = match runner::start(&ctx.processes.runtime, rom, spec, host.client) {
        Ok(running) => running,
        Err(err) => return failed(format!("cannot start: {err:#}")),
    };
    if let Some(anchor) = &proc.spec.anchor {
        if let Err(err) = ctx.tree.set(
            anchor,
            super::tree::Stored::Cap(running.exported.clone()),
            Some(owner(ctx, proc)),
        ) {
            warn!(pid = proc.id, "cannot anchor the process: {err}");
        }
    }
    *proc.exported.borrow_mut() = Some(running.exported.clone());
    *proc.task.borrow_mut() = Some(running.task.clone());
    proc.state.set(State::Running);
    proc.launched.notify_waiters();
    if proc.killed.get() {
        running.task.abort();
    }
    let exit = running.exit.await;
    if exit.kind == ExitKind::Trapped {
        ctx.processes.traps.set(ctx.processes.traps.get() + 1);
    }
    exit
}

/// `proc` as the owner of what it anchors.
fn owner(ctx: &HostContext, proc: &Proc) -> Owner {
    Owner {
        host: ctx.node.peer_id(),
        pid: proc.id,
    }
}

fn failed(message: String) -> ExitStatus {
    ExitStatus {
        kind: ExitKind::Trapped,
        code: -1,
        message,
    }
}

impl Proc {
    /// Kills the process and ends its supervision.
    pub fn kill(&self) {
        self.killed.set(true);
        if let Some(task) = self.task.borrow().as_ref() {
            task.abort();
        }
        self.wake.notify_waiters();
    }

    /// Waits until supervision has ended; returns the last exit status.
    pub async fn wait(&self) -> ExitStatus {
        loop {
            let ended = self.ended.notified();
            if self.state.get() == State::Ended {
                return self
                    .last_exit
                    .borrow()
                    .clone()
                    .unwrap_or_else(ExitStatus::killed);
            }
            ended.await;
        }
    }

    fn state_name(&self) -> &'static str {
        match self.state.get() {
            State::Starting => "starting",
            State::Running => "running",
            State::Restarting => "restarting",
            State::Ended => match self.last_exit.borrow().as_ref().map(|s| s.kind) {
                Some(ExitKind::Exited) => "exited",
                Some(ExitKind::Trapped) => "trapped",
                Some(ExitKind::Killed) | None => "killed",
            },
        }
    }

    fn fill_info(&self, peer: &str, mut info: ww_api::ww_capnp::process_info::Builder<'_>) {
        info.set_id(self.id);
        info.set_peer_id(peer);
        info.set_name(&self.spec.name);
        info.set_rom_hash(&self.spec.rom_hash);
        info.set_state(self.state_name());
        let uptime = if self.state.get() == State::Running {
            u64::try_from(self.started.get().elapsed().as_millis()).unwrap_or(u64::MAX)
        } else {
            0
        };
        info.set_uptime_ms(uptime);
        info.set_restarts(self.restarts.get());
        info.set_anchor(
            self.spec
                .anchor
                .as_ref()
                .map(|anchor| path::join(anchor))
                .unwrap_or_default(),
        );
        let mut args = info
            .reborrow()
            .init_args(u32::try_from(self.spec.args.len()).unwrap_or(0));
        for (index, arg) in self.spec.args.iter().enumerate() {
            let Ok(index) = u32::try_from(index) else {
                break;
            };
            args.set(index, arg);
        }
        if let Some(exit) = self.last_exit.borrow().as_ref() {
            let mut out = info.init_exit();
            out.set_code(exit.code);
            out.set_message(&exit.message);
        }
    }
}

/// `Executor`.
pub struct ExecutorServer {
    ctx: Rc<HostContext>,
}

impl ExecutorServer {
    /// The executor of this host.
    pub fn client(ctx: Rc<HostContext>) -> executor::Client {
        capnp_rpc::new_client(Self { ctx })
    }
}

fn texts(list: capnp::text_list::Reader<'_>, what: &str) -> Result<Vec<String>, capnp::Error> {
    if list.len() > ARGS_MAX {
        return Err(invalid(format!(
            "at most {ARGS_MAX} {what}; got {}",
            list.len()
        )));
    }
    let mut out = Vec::with_capacity(list.len() as usize);
    let mut bytes = 0;
    for item in list.iter() {
        let item = text(item, what)?;
        bytes += item.len();
        if bytes > ARG_BYTES_MAX {
            return Err(invalid(format!("{what} exceed {ARG_BYTES_MAX} bytes")));
        }
        out.push(item);
    }
    Ok(out)
}

impl executor::Server for ExecutorServer {
    async fn spawn(
        self: CapRc<Self>,
        params: executor::SpawnParams,
        mut results: executor::SpawnResults,
    ) -> Result<(), capnp::Error> {
        use ww_api::ww_capnp::spawn_spec::rom::Which as RomWhich;
        use ww_api::ww_capnp::RestartPolicy;
        let spec = params.get()?.get_spec()?;
        let args = texts(spec.get_args()?, "args")?;
        let env = texts(spec.get_env()?, "env entries")?;
        let volume = text(spec.get_volume(), "volume")?;
        let volume = if volume.is_empty() {
            None
        } else {
            validate_volume(&volume).map_err(invalid)?;
            Some(volume)
        };
        let volume_key = match spec.get_volume_key()? {
            [] => None,
            _ if volume.is_none() => {
                return Err(invalid("volumeKey is set but no volume is"));
            }
            bytes => Some(VolumeKey::from_slice(bytes).map_err(invalid)?),
        };
        let grants = grants::parse(spec.get_grants()?)?;
        let full_host = spec.get_host();
        let anchor = text(spec.get_anchor(), "anchor")?;
        let anchor = if anchor.is_empty() {
            None
        } else {
            let components = path::parse(&anchor).map_err(invalid)?;
            if components.is_empty() {
                return Err(invalid(
                    "anchor must name a path below this host, e.g. \"raft/v1\"",
                ));
            }
            Some(components)
        };
        let name = text(spec.get_name(), "name")?;
        let restart = match spec.get_restart()? {
            RestartPolicy::Never => Restart::Never,
            RestartPolicy::OnFailure => Restart::OnFailure,
            RestartPolicy::Always => Restart::Always,
        };
        let rom = match spec.get_rom().which()? {
            RomWhich::Bytes(bytes) => {
                let bytes: Arc<[u8]> = Arc::from(bytes?);
                self.ctx.processes.runtime.roms().load(bytes).await
            }
            RomWhich::Hash(hash) => {
                let hash: [u8; 32] = hash?
                    .try_into()
                    .map_err(|_| invalid("a ROM hash is 32 bytes of blake3"))?;
                self.ctx
                    .processes
                    .rom_by_hash(&blake3::Hash::from_bytes(hash))
                    .await
            }
        }
        .map_err(|err| invalid(format!("cannot spawn: the ROM is not valid: {err:#}")))?;
        let spec = ProcessSpec {
            name: if name.is_empty() {
                rom.hash.to_hex()[..12].to_owned()
            } else {
                name
            },
            rom_hash: rom.hash.to_hex().to_string(),
            args,
            env,
            volume,
            restart,
            anchor,
            host: full_host,
            grants,
            volume_key,
        };
        let proc = spawn(&self.ctx, rom, spec, None)
            .map_err(|err| invalid(format!("cannot spawn: {err:#}")))?;
        results
            .get()
            .set_process(ProcessServer::client(self.ctx.clone(), proc));
        Ok(())
    }

    async fn ps(
        self: CapRc<Self>,
        _: executor::PsParams,
        mut results: executor::PsResults,
    ) -> Result<(), capnp::Error> {
        let procs: Vec<Rc<Proc>> = self
            .ctx
            .processes
            .table
            .borrow()
            .values()
            .cloned()
            .collect();
        let peer = self.ctx.node.peer_id().to_base58();
        let mut list = results
            .get()
            .init_processes(u32::try_from(procs.len()).unwrap_or(0));
        for (index, proc) in procs.iter().enumerate() {
            let Ok(index) = u32::try_from(index) else {
                break;
            };
            proc.fill_info(&peer, list.reborrow().get(index));
        }
        Ok(())
    }

    async fn kill(
        self: CapRc<Self>,
        params: executor::KillParams,
        _: executor::KillResults,
    ) -> Result<(), capnp::Error> {
        let id = params.get()?.get_id();
        let proc =
            self.ctx.processes.get(id).ok_or_else(|| {
                invalid(format!("no process {id} on this host; `ww ps` lists them"))
            })?;
        proc.kill();
        Ok(())
    }
}

/// `Process`.
pub struct ProcessServer {
    ctx: Rc<HostContext>,
    proc: Rc<Proc>,
}

impl ProcessServer {
    /// A capability to `proc`.
    pub fn client(ctx: Rc<HostContext>, proc: Rc<Proc>) -> process::Client {
        capnp_rpc::new_client(Self { ctx, proc })
    }
}

impl process::Server for ProcessServer {
    async fn id(
        self: CapRc<Self>,
        _: process::IdParams,
        mut results: process::IdResults,
    ) -> Result<(), capnp::Error> {
        results.get().set_id(self.proc.id);
        Ok(())
    }

    async fn wait(
        self: CapRc<Self>,
        _: process::WaitParams,
        mut results: process::WaitResults,
    ) -> Result<(), capnp::Error> {
        let status = self.proc.wait().await;
        let mut exit = results.get().init_exit();
        exit.set_code(status.code);
        exit.set_message(&status.message);
        Ok(())
    }

    async fn kill(
        self: CapRc<Self>,
        _: process::KillParams,
        _: process::KillResults,
    ) -> Result<(), capnp::Error> {
        self.proc.kill();
        Ok(())
    }

    async fn status(
        self: CapRc<Self>,
        _: process::StatusParams,
        mut results: process::StatusResults,
    ) -> Result<(), capnp::Error> {
        self.proc.fill_info(
            &self.ctx.node.peer_id().to_base58(),
            results.get().init_info(),
        );
        Ok(())
    }

    async fn volume_key(
        self: CapRc<Self>,
        _: process::VolumeKeyParams,
        mut results: process::VolumeKeyResults,
    ) -> Result<(), capnp::Error> {
        let key = self
            .proc
            .spec
            .volume_key
            .ok_or_else(|| invalid(format!("process {} has no volume", self.proc.id)))?;
        results.get().set_key(&key.0);
        Ok(())
    }

    async fn bootstrap(
        self: CapRc<Self>,
        _: process::BootstrapParams,
        mut results: process::BootstrapResults,
    ) -> Result<(), capnp::Error> {
        // A `bootstrap` pipelined on `spawn` arrives before the process's
        // first incarnation has started: wait for it (or for its end).
        loop {
            let launched = self.proc.launched.notified();
            let ended = self.proc.ended.notified();
            let exported = self.proc.exported.borrow().clone();
            if let Some(cap) = exported {
                results.get().init_cap().set_as_capability(cap.hook);
                return Ok(());
            }
            if self.proc.state.get() != State::Starting {
                return Err(capnp::Error::disconnected(format!(
                    "process {} is not running ({})",
                    self.proc.id,
                    self.proc.state_name()
                )));
            }
            tokio::select! {
                () = launched => {}
                () = ended => {}
            }
        }
    }
}
