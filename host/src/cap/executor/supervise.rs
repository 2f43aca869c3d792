//! Starting a process and supervising its incarnations: restart with
//! backoff, and what ending, killing and waiting do.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::table::{off_loop, prune_roms, store_rom, Proc, ProcessSpec, Restart, State};
use crate::cap::context::HostContext;
use crate::cap::grants::{self, GrantValue};
use crate::cap::path;
use crate::cap::tree::Owner;
use crate::cap::volume;
use crate::limits::{
    PROCESSES_MAX, RESTART_BACKOFF_MAX_MS, RESTART_BACKOFF_MIN_MS, RESTART_BACKOFF_RESET_MS,
    VOLUME_CHECK_MS, VOLUME_ENTRIES_MAX, VOLUME_OVERHEAD_BYTES_MAX,
};
use crate::runner::{self, ExitKind, ExitStatus, Limits, Rom, SpawnSpec, Stdio, VolumeQuota};

/// Starts `rom` as a new process of `spec` and supervises it. `record` is
/// the stem of its supervision record when it is respawned from one.
///
/// # Errors
///
/// The host runs [`PROCESSES_MAX`] live processes, the volume is in use or
/// its key does not match, or the record or ROM cannot be written.
pub async fn spawn(
    ctx: &Rc<HostContext>,
    rom: Rom,
    mut spec: ProcessSpec,
    record: Option<String>,
) -> Result<Rc<Proc>> {
    let processes = &ctx.processes;
    let _spawning = processes.spawning.lock().await;
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
        let (data_dir, volume, given) =
            (processes.data_dir.clone(), volume.clone(), spec.volume_key);
        spec.volume_key = Some(off_loop(move || volume::claim(&data_dir, &volume, given)).await?);
    }
    let supervised = spec.restart != Restart::Never;
    let record = match (supervised, record) {
        (false, _) => None,
        (true, Some(record)) => Some(record),
        (true, None) => {
            let stem = format!("{:016x}", rand::random::<u64>());
            let record_bytes = serde_json::to_vec_pretty(&spec)?;
            let record_path = processes.records_dir().join(format!("{stem}.json"));
            let (roms_dir, records_dir) = (processes.roms_dir(), processes.records_dir());
            let (hash, rom_bytes) = (rom.hash, rom.bytes.clone());
            off_loop(move || {
                store_rom(&roms_dir, &records_dir, hash, &rom_bytes)?;
                Ok(crate::private::write_atomic(&record_path, &record_bytes)?)
            })
            .await?;
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
        cpu: Rc::default(),
    });
    processes.table.borrow_mut().insert(id, proc.clone());
    tokio::task::spawn_local(supervise(ctx.clone(), proc.clone(), rom));
    Ok(proc)
}

/// Respawns every supervised process recorded in the data dir.
pub async fn respawn_supervised(ctx: &Rc<HostContext>) {
    let processes = &ctx.processes;
    let records_dir = processes.records_dir();
    let Ok(mut records) = off_loop(move || {
        Ok(std::fs::read_dir(records_dir)?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect::<Vec<PathBuf>>())
    })
    .await
    else {
        return;
    };
    records.sort();
    for path in records {
        let result = async {
            let read = path.clone();
            let bytes = off_loop(move || Ok(std::fs::read(read)?)).await?;
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
                let remove = path.clone();
                let _ = off_loop(move || Ok(std::fs::remove_file(remove)?)).await;
                return Ok(());
            }
            grants::revive(&mut spec.grants).map_err(anyhow::Error::msg)?;
            let hash = blake3::Hash::from_hex(&spec.rom_hash).context("malformed ROM hash")?;
            let rom = processes.rom_by_hash(&hash).await?;
            if let (Some(name), None) = (&spec.volume, spec.volume_key) {
                let (data_dir, adopt) = (processes.data_dir.clone(), name.clone());
                spec.volume_key = Some(off_loop(move || volume::adopt(&data_dir, &adopt)).await?);
                let (write, bytes) = (path.clone(), serde_json::to_vec_pretty(&spec)?);
                off_loop(move || Ok(crate::private::write_atomic(&write, &bytes)?)).await?;
                info!(volume = %name, "a record of an older version adopted its volume");
            }
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_owned();
            let proc = spawn(ctx, rom, spec, Some(stem)).await?;
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
        // Under the spawning lock: a spawn stores its ROM before writing
        // its record, and the pruning must not fall between the two.
        let _spawning = ctx.processes.spawning.lock().await;
        let path = ctx.processes.records_dir().join(format!("{record}.json"));
        let (roms_dir, records_dir) = (ctx.processes.roms_dir(), ctx.processes.records_dir());
        let removed = off_loop(move || {
            std::fs::remove_file(path)?;
            // The ROM goes with the last record that names it.
            prune_roms(&roms_dir, &records_dir)
        });
        if let Err(err) = removed.await {
            warn!(
                pid = proc.id,
                "cannot remove the supervision record or its ROM: {err:#}"
            );
        }
    }
    proc.ended.notify_waiters();
}

async fn run_once(ctx: &Rc<HostContext>, proc: &Rc<Proc>, rom: &Rom) -> ExitStatus {
    let volume = match &proc.spec.volume {
        Some(name) => {
            let dir = volume::dir(&ctx.processes.data_dir, name);
            let create = dir.clone();
            if let Err(err) = off_loop(move || Ok(crate::private::create_dir(&create)?)).await {
                return failed(format!("cannot create volume {}: {err:#}", dir.display()));
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
    // Writes take from the quota from the start: it begins from what the
    // volume holds now.
    let bytes_max = ctx.processes.volume_bytes_max.get();
    let quota = match &volume {
        Some(dir) => {
            let walked = dir.clone();
            let usage = off_loop(move || volume::usage(&walked, VOLUME_ENTRIES_MAX)).await;
            let measured = usage.map_or(0, |(bytes, _)| bytes);
            Some(VolumeQuota::new(
                dir.display().to_string(),
                bytes_max,
                measured,
            ))
        }
        None => None,
    };
    let watched = volume.clone().zip(quota.clone());
    let spec = SpawnSpec {
        args: proc.spec.args.clone(),
        env,
        volume,
        quota,
        limits: Limits::default(),
        stdio: Stdio::Log { pid: proc.id },
        cpu: proc.cpu.clone(),
    };
    let host = (ctx.process_host)(ctx.clone(), proc);
    let running = match runner::start(&ctx.processes.runtime, rom, spec, host.client) {
        Ok(running) => running,
        Err(err) => return failed(format!("cannot start: {err:#}")),
    };
    if let Some(anchor) = &proc.spec.anchor {
        if let Err(err) = ctx.tree.set(
            anchor,
            crate::cap::tree::Stored::Cap(running.exported.clone()),
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
    let over_quota = Rc::new(RefCell::new(None));
    let watcher = watched.map(|(dir, quota)| {
        let (task, over_quota) = (running.task.clone(), over_quota.clone());
        tokio::task::spawn_local(watch_volume(dir, quota, task, over_quota))
    });
    let mut exit = running.exit.await;
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    if let Some(message) = over_quota.borrow_mut().take() {
        exit = ExitStatus {
            kind: ExitKind::Trapped,
            code: -1,
            message,
        };
    }
    if exit.kind == ExitKind::Trapped {
        ctx.processes.traps.set(ctx.processes.traps.get() + 1);
    }
    exit
}

/// Measures the volume at `dir` every [`VOLUME_CHECK_MS`] for `quota`,
/// which refuses each write past it with ENOSPC (`runner::VolumeQuota`).
/// What writes do not count (directories, the blocks of tiny files) can
/// still take a volume past its quota, or past [`VOLUME_ENTRIES_MAX`]
/// entries: then it says why in `over_quota` and kills the process
/// (`task`). A supervised process whose volume is still over when it
/// restarts has every write refused and is killed at the first check.
async fn watch_volume(
    dir: PathBuf,
    quota: Arc<VolumeQuota>,
    task: tokio::task::AbortHandle,
    over_quota: Rc<RefCell<Option<String>>>,
) {
    loop {
        // `run_once` measured the volume just before the start.
        tokio::time::sleep(Duration::from_millis(VOLUME_CHECK_MS)).await;
        let walked = dir.clone();
        let usage = off_loop(move || volume::usage(&walked, VOLUME_ENTRIES_MAX)).await;
        let bytes_max = quota.bytes_max();
        match usage {
            Ok((bytes, _)) if bytes > bytes_max.saturating_add(VOLUME_OVERHEAD_BYTES_MAX) => {
                *over_quota.borrow_mut() = Some(format!(
                    "killed by the volume quota: its volume holds {bytes} bytes on disk, past its {bytes_max} (ww start --volume-limit-mb) and the file system's {VOLUME_OVERHEAD_BYTES_MAX} more (VOLUME_OVERHEAD_BYTES_MAX); free space in {} to run it again",
                    dir.display()
                ));
                task.abort();
                return;
            }
            Ok((_, entries)) if entries > VOLUME_ENTRIES_MAX => {
                *over_quota.borrow_mut() = Some(format!(
                    "killed by the volume quota: its volume holds more than {VOLUME_ENTRIES_MAX} files and directories (VOLUME_ENTRIES_MAX); remove some from {} to run it again",
                    dir.display()
                ));
                task.abort();
                return;
            }
            Ok((bytes, _)) => quota.measured(bytes),
            Err(err) => warn!("cannot measure volume {}: {err:#}", dir.display()),
        }
    }
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

    pub(super) fn state_name(&self) -> &'static str {
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

    pub(super) fn fill_info(
        &self,
        peer: &str,
        mut info: ww_api::ww_capnp::process_info::Builder<'_>,
    ) {
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
