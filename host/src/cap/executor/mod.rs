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
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::grants::{self, Grant, GrantValue};
use super::host::HostContext;
use super::path;
use super::volume::{self, VolumeKey};
use crate::runner::{self, ExitStatus, Rom};

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
mod server;
mod supervise;

pub use server::{ExecutorServer, ProcessServer};
pub use supervise::spawn;
