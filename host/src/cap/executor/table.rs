//! The process table: what each process was spawned with, its state and
//! supervision record, and the executor's file work. The context every
//! capability server shares holds it; the servers and the supervisor
//! ([`super::server`], [`super::supervise`]) use it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::cap::grants::Grant;
use crate::cap::path;
use crate::cap::volume::VolumeKey;
use crate::limits::{ROM_STORE_BYTES_MAX, VOLUME_BYTES_MAX_DEFAULT};
use crate::runner::{self, ExitStatus, Rom};

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
    pub(super) fn applies(self, status: &ExitStatus) -> bool {
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
    /// The key of `volume` (see [`crate::cap::volume`]).
    #[serde(default)]
    pub volume_key: Option<VolumeKey>,
}

pub(super) fn full_host() -> bool {
    true
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    Starting,
    Running,
    Restarting,
    Ended,
}

/// One process and its supervision.
pub struct Proc {
    pub(super) id: u64,
    pub(super) spec: ProcessSpec,
    /// The supervision record's file stem, if supervised.
    pub(super) record: Option<String>,
    pub(super) state: Cell<State>,
    pub(super) started: Cell<Instant>,
    pub(super) restarts: Cell<u32>,
    pub(super) exported: RefCell<Option<capnp::capability::Client>>,
    pub(super) task: RefCell<Option<tokio::task::AbortHandle>>,
    pub(super) killed: Cell<bool>,
    pub(super) last_exit: RefCell<Option<ExitStatus>>,
    pub(super) ended: Notify,
    pub(super) wake: Notify,
    /// Notified when an incarnation has started (its capability is set).
    pub(super) launched: Notify,
    /// Its time and slices on the host's thread, summed over incarnations.
    pub(super) cpu: Rc<runner::CpuUse>,
}

impl Proc {
    /// Its id on this host.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether it was spawned with its host's whole authority
    /// (`SpawnSpec.host`).
    pub fn holds_host(&self) -> bool {
        self.spec.host
    }

    /// What it was granted.
    pub fn grants(&self) -> &[Grant] {
        &self.spec.grants
    }
}

/// Every process of this host.
pub struct Processes {
    pub(super) data_dir: PathBuf,
    pub(super) runtime: Rc<runner::Runtime>,
    pub(super) next_id: Cell<u64>,
    pub(super) table: RefCell<BTreeMap<u64, Rc<Proc>>>,
    /// Incarnations that trapped (or could not start), for `/metrics`.
    pub(super) traps: Cell<u64>,
    /// Held by one spawn from its checks to its insert into `table`: the
    /// file work in between awaits, and two spawns must not both pass the
    /// volume-in-use and capacity checks.
    pub(super) spawning: tokio::sync::Mutex<()>,
    /// Each volume's quota, in bytes on disk.
    pub(super) volume_bytes_max: Cell<u64>,
}

/// One process as the operator view (`ww start --http`) shows it.
pub struct ProcSummary {
    pub id: u64,
    pub name: String,
    pub state: &'static str,
    pub restarts: u32,
    pub anchor: String,
    pub uptime_ms: u64,
    /// Its time on the host's thread, summed over incarnations.
    pub cpu_ns: u64,
    /// Its slices (polls of its guest), summed over incarnations.
    pub cpu_slices: u64,
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
            spawning: tokio::sync::Mutex::new(()),
            volume_bytes_max: Cell::new(VOLUME_BYTES_MAX_DEFAULT),
        })
    }

    /// Sets each volume's quota, in bytes on disk.
    pub fn set_volume_bytes_max(&self, bytes: u64) {
        self.volume_bytes_max.set(bytes);
    }

    pub(super) fn roms_dir(&self) -> PathBuf {
        self.data_dir.join("roms")
    }

    pub(super) fn records_dir(&self) -> PathBuf {
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
                cpu_ns: proc.cpu.ns(),
                cpu_slices: proc.cpu.slices(),
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
    pub(super) async fn rom_by_hash(&self, hash: &blake3::Hash) -> Result<Rom> {
        if let Some(rom) = self.runtime.roms().get(hash) {
            return Ok(rom);
        }
        let path = self.roms_dir().join(format!("{}.wasm", hash.to_hex()));
        match off_loop(move || Ok(std::fs::read(&path)?)).await {
            Ok(bytes) => self.runtime.roms().load(Arc::from(bytes)).await,
            Err(_) => bail!(
                "ROM {} is not on this host; spawn it with its bytes first",
                hash.to_hex()
            ),
        }
    }
}

/// Runs `work`, file system calls, on tokio's blocking pool. The event loop
/// also serves the host's Raft replicas and every connection, and one fsync
/// can take tens of milliseconds; none of the executor's file work runs on
/// it.
///
/// # Errors
///
/// `work`'s error, or the blocking task's failure.
pub(crate) async fn off_loop<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| anyhow::anyhow!("a file task failed: {err}"))?
}

/// Stores `bytes`, the ROM with `hash`, in `roms_dir` unless it is there,
/// first removing the ROMs that no record in `records_dir` names. Callers
/// hold the executor's spawning lock, so no record is being written
/// meanwhile.
///
/// # Errors
///
/// When the ROMs still named and this one would hold more than
/// [`ROM_STORE_BYTES_MAX`], or on a file error.
pub(super) fn store_rom(
    roms_dir: &Path,
    records_dir: &Path,
    hash: blake3::Hash,
    bytes: &[u8],
) -> Result<()> {
    store_rom_within(roms_dir, records_dir, hash, bytes, ROM_STORE_BYTES_MAX)
}

fn store_rom_within(
    roms_dir: &Path,
    records_dir: &Path,
    hash: blake3::Hash,
    bytes: &[u8],
    bytes_max: u64,
) -> Result<()> {
    let path = roms_dir.join(format!("{}.wasm", hash.to_hex()));
    if path.exists() {
        return Ok(());
    }
    let held = prune_roms(roms_dir, records_dir)?;
    let wanted = held.saturating_add(bytes.len() as u64);
    if wanted > bytes_max {
        bail!(
            "the host's store of supervised ROMs holds {held} bytes; this ROM's {} would pass its {bytes_max} (ROM_STORE_BYTES_MAX)",
            bytes.len()
        );
    }
    Ok(crate::private::write_atomic(&path, bytes)?)
}

/// Removes the ROMs in `roms_dir` that no supervision record in
/// `records_dir` names; returns the bytes of those left. A record it cannot
/// read keeps every ROM: better a ROM too many than a process that cannot
/// respawn.
pub(super) fn prune_roms(roms_dir: &Path, records_dir: &Path) -> Result<u64> {
    let mut named = std::collections::HashSet::new();
    let mut readable = true;
    if let Ok(records) = std::fs::read_dir(records_dir) {
        for record in records.flatten() {
            let path = record.path();
            if path.extension().is_none_or(|ext| ext != "json") {
                continue;
            }
            let hash = std::fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
                .and_then(|spec| spec.get("rom_hash")?.as_str().map(str::to_owned));
            match hash {
                Some(hash) => {
                    named.insert(hash);
                }
                None => readable = false,
            }
        }
    }
    let Ok(roms) = std::fs::read_dir(roms_dir) else {
        return Ok(0);
    };
    let mut held: u64 = 0;
    for rom in roms.flatten() {
        let path = rom.path();
        let Some(stem) = path.file_stem().and_then(|stem| stem.to_str()) else {
            continue;
        };
        if readable && path.extension().is_some_and(|ext| ext == "wasm") && !named.contains(stem) {
            std::fs::remove_file(&path)?;
            continue;
        }
        held = held.saturating_add(rom.metadata().map_or(0, |meta| meta.len()));
    }
    Ok(held)
}

pub(super) fn validate_volume(name: &str) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn record(records: &Path, stem: &str, hash: &blake3::Hash) {
        let json = serde_json::json!({ "name": stem, "rom_hash": hash.to_hex().as_str() });
        std::fs::write(records.join(format!("{stem}.json")), json.to_string()).unwrap();
    }

    #[test]
    fn the_rom_store_keeps_what_records_name_and_refuses_past_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let (roms, records) = (dir.path().join("roms"), dir.path().join("supervised"));
        std::fs::create_dir_all(&roms).unwrap();
        std::fs::create_dir_all(&records).unwrap();
        let rom = |byte: u8| (vec![byte; 100], blake3::hash(&[byte; 100]));
        let stored = |hash: &blake3::Hash| roms.join(format!("{}.wasm", hash.to_hex())).exists();
        let (a, a_hash) = rom(1);
        let (b, b_hash) = rom(2);
        let (c, c_hash) = rom(3);

        // A, then its record; B, whose record is gone by the time C comes.
        store_rom_within(&roms, &records, a_hash, &a, 250).unwrap();
        record(&records, "a", &a_hash);
        store_rom_within(&roms, &records, b_hash, &b, 250).unwrap();
        record(&records, "b", &b_hash);
        // A third ROM would pass 250 bytes: refused, naming the bound, and
        // nothing named is lost.
        let err = store_rom_within(&roms, &records, c_hash, &c, 250).unwrap_err();
        assert!(err.to_string().contains("ROM_STORE_BYTES_MAX"), "{err}");
        assert!(stored(&a_hash) && stored(&b_hash) && !stored(&c_hash));

        // B's process ended: its ROM goes at the next store, making room.
        std::fs::remove_file(records.join("b.json")).unwrap();
        store_rom_within(&roms, &records, c_hash, &c, 250).unwrap();
        assert!(stored(&a_hash) && !stored(&b_hash) && stored(&c_hash));

        // A record that cannot be read keeps every ROM.
        std::fs::write(records.join("garbled.json"), "{").unwrap();
        assert_eq!(prune_roms(&roms, &records).unwrap(), 200);
        assert!(stored(&a_hash) && stored(&c_hash));
        std::fs::remove_file(records.join("garbled.json")).unwrap();
        assert_eq!(prune_roms(&roms, &records).unwrap(), 100);
        assert!(stored(&a_hash) && !stored(&c_hash));
    }
}
