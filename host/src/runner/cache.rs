//! ROMs, compiled once and cached by the blake3 hash of their bytes: in
//! memory for the life of the runtime, and on disk (if given a directory)
//! across restarts. Compiling a ROM takes ~0.5-1.5 s with Cranelift;
//! loading its compiled form takes ~2 ms.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::limits::{
    COMPILED_CACHE_BYTES_MAX, COMPILES_AT_ONCE_MAX, COMPILES_WAITING_MAX, ROMS_IN_MEMORY_MAX,
    ROM_BYTES_MAX,
};
use anyhow::{anyhow, bail, Context, Result};
use wasmtime::component::Component;
use wasmtime::Engine;

/// A compiled ROM.
#[derive(Clone)]
pub struct Rom {
    /// blake3 of the ROM's bytes.
    pub hash: blake3::Hash,
    /// The ROM's bytes (kept so a host can hand them to a peer).
    pub bytes: Arc<[u8]>,
    pub(crate) component: Component,
}

/// The cache.
pub struct RomCache {
    engine: Engine,
    dir: Option<PathBuf>,
    compiled: RefCell<HashMap<blake3::Hash, Rom>>,
    compiles: std::cell::Cell<u64>,
    hits: std::cell::Cell<u64>,
    /// Compile slots; see [`COMPILES_AT_ONCE_MAX`].
    slots: Arc<tokio::sync::Semaphore>,
    waiting: std::cell::Cell<usize>,
    /// Compiles running now, and the most that ever ran at once.
    running: Arc<std::sync::atomic::AtomicUsize>,
    running_peak: Arc<std::sync::atomic::AtomicUsize>,
    /// [`compile`]; tests put a slower one in its place so loads overlap.
    compiler: Compiler,
}

/// What compiles a ROM's bytes, given the engine, the disk cache and the
/// bytes' hash.
type Compiler = fn(&Engine, Option<PathBuf>, &blake3::Hash, &[u8]) -> Result<Component>;

impl RomCache {
    pub(crate) fn new(engine: Engine, dir: Option<PathBuf>) -> Self {
        Self {
            engine,
            dir,
            compiled: RefCell::new(HashMap::new()),
            compiles: std::cell::Cell::new(0),
            hits: std::cell::Cell::new(0),
            slots: Arc::new(tokio::sync::Semaphore::new(COMPILES_AT_ONCE_MAX)),
            waiting: std::cell::Cell::new(0),
            running: Arc::default(),
            running_peak: Arc::default(),
            compiler: compile,
        }
    }

    /// The most compiles that ran at once since the host started.
    pub fn compiles_at_once_peak(&self) -> usize {
        self.running_peak.load(Ordering::Relaxed)
    }

    /// A ROM already compiled in memory, by hash.
    pub fn get(&self, hash: &blake3::Hash) -> Option<Rom> {
        let rom = self.compiled.borrow().get(hash).cloned();
        if rom.is_some() {
            self.hits.set(self.hits.get() + 1);
        }
        rom
    }

    /// ROMs compiled (or loaded from the disk cache) since the host started.
    pub fn compiles(&self) -> u64 {
        self.compiles.get()
    }

    /// Lookups answered from the compiled ROMs in memory.
    pub fn hits(&self) -> u64 {
        self.hits.get()
    }

    /// Compiles `bytes` (or finds them compiled), on a blocking thread so the
    /// host's event loop keeps running, at most [`COMPILES_AT_ONCE_MAX`] at
    /// once.
    ///
    /// # Errors
    ///
    /// When the bytes are too big or not a valid WebAssembly component, or
    /// [`COMPILES_WAITING_MAX`] loads already wait for a compile slot.
    pub async fn load(&self, bytes: Arc<[u8]>) -> Result<Rom> {
        if bytes.len() > ROM_BYTES_MAX {
            bail!(
                "the ROM is {} bytes; the limit is {ROM_BYTES_MAX}",
                bytes.len()
            );
        }
        let hash = blake3::hash(&bytes);
        if let Some(rom) = self.get(&hash) {
            return Ok(rom);
        }
        if self.waiting.get() >= COMPILES_WAITING_MAX {
            bail!(
                "the host is compiling {COMPILES_AT_ONCE_MAX} ROMs with {COMPILES_WAITING_MAX} more waiting (COMPILES_WAITING_MAX); try again later"
            );
        }
        self.waiting.set(self.waiting.get() + 1);
        let slot = self.slots.clone().acquire_owned().await;
        self.waiting.set(self.waiting.get() - 1);
        let slot = slot.map_err(|err| anyhow!("the compile slots are closed: {err}"))?;
        if let Some(rom) = self.get(&hash) {
            // Compiled by a load that held the slot before this one.
            return Ok(rom);
        }
        let engine = self.engine.clone();
        let dir = self.dir.clone();
        let source = bytes.clone();
        let (running, peak) = (self.running.clone(), self.running_peak.clone());
        let compiler = self.compiler;
        let component = tokio::task::spawn_blocking(move || {
            let now = running.fetch_add(1, Ordering::Relaxed) + 1;
            assert!(now <= COMPILES_AT_ONCE_MAX, "{now} compiles at once");
            peak.fetch_max(now, Ordering::Relaxed);
            let compiled = compiler(&engine, dir, &hash, &source);
            running.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
            compiled
        })
        .await
        .map_err(|err| anyhow!("the compiler thread failed: {err}"))??;
        self.compiles.set(self.compiles.get() + 1);
        let rom = Rom {
            hash,
            bytes,
            component,
        };
        let mut compiled = self.compiled.borrow_mut();
        if compiled.len() >= ROMS_IN_MEMORY_MAX {
            // Forget an arbitrary ROM; the disk cache keeps reloading cheap.
            if let Some(victim) = compiled.keys().next().copied() {
                compiled.remove(&victim);
            }
        }
        compiled.insert(hash, rom.clone());
        Ok(rom)
    }
}

fn compile(
    engine: &Engine,
    dir: Option<PathBuf>,
    hash: &blake3::Hash,
    bytes: &[u8],
) -> Result<Component> {
    if !looks_like_component(bytes) {
        if bytes.starts_with(b"\0asm") {
            bail!("it is a core WebAssembly module, not a component; build ROMs for the wasm32-wasip2 target");
        }
        bail!("it is not a WebAssembly component (no \\0asm header)");
    }
    let Some(dir) = dir else {
        return Component::new(engine, bytes)
            .map_err(anyhow::Error::from)
            .context("it is not a valid WebAssembly component");
    };
    let artifact = dir.join(format!("{}.cwasm", hash.to_hex()));
    let checksum = dir.join(format!("{}.cwasm.blake3", hash.to_hex()));
    if let Some(component) = load_artifact(engine, &artifact, &checksum) {
        // Marks it used, for eviction; a failure only makes it look older.
        let _ = std::fs::File::options()
            .write(true)
            .open(&artifact)
            .and_then(|file| file.set_modified(std::time::SystemTime::now()));
        return Ok(component);
    }
    let component = Component::new(engine, bytes)
        .map_err(anyhow::Error::from)
        .context("it is not a valid WebAssembly component")?;
    if let Err(err) = store_artifact(&component, &dir, &artifact, &checksum) {
        tracing::warn!("not caching the compiled ROM in {}: {err:#}", dir.display());
    }
    match evict(&dir, COMPILED_CACHE_BYTES_MAX, &artifact) {
        Ok(0) => {}
        Ok(removed) => tracing::info!(
            "removed {removed} compiled ROMs used longest ago from {}: it held more than {COMPILED_CACHE_BYTES_MAX} bytes (COMPILED_CACHE_BYTES_MAX)",
            dir.display()
        ),
        Err(err) => tracing::warn!("cannot evict from {}: {err:#}", dir.display()),
    }
    Ok(component)
}

/// Removes the artifacts in `dir` used longest ago (by modification time,
/// which a load refreshes) until they hold at most `bytes_max`, never
/// `keep`; returns how many it removed. Several hosts may share a cache
/// dir, so a file that vanished meanwhile is not an error.
fn evict(dir: &std::path::Path, bytes_max: u64, keep: &std::path::Path) -> Result<usize> {
    let mut artifacts = Vec::new();
    let mut total: u64 = 0;
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        if path.extension().is_none_or(|ext| ext != "cwasm") {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let used = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        total = total.saturating_add(meta.len());
        artifacts.push((used, meta.len(), path));
    }
    artifacts.sort();
    let mut removed = 0;
    for (_, bytes, path) in artifacts {
        if total <= bytes_max {
            break;
        }
        if path == keep {
            continue;
        }
        if std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
        let _ = std::fs::remove_file(path.with_extension("cwasm.blake3"));
        total = total.saturating_sub(bytes);
    }
    Ok(removed)
}

/// The component-model preamble: magic, then layer 1 (version 0x0d).
fn looks_like_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && &bytes[0..4] == b"\0asm" && bytes[6..8] == [0x01, 0x00]
}

fn load_artifact(
    engine: &Engine,
    artifact: &std::path::Path,
    checksum: &std::path::Path,
) -> Option<Component> {
    let bytes = std::fs::read(artifact).ok()?;
    let expected = std::fs::read_to_string(checksum).ok()?;
    if blake3::hash(&bytes).to_hex().as_str() != expected.trim() {
        tracing::warn!(
            "ignoring {}: its checksum does not match",
            artifact.display()
        );
        return None;
    }
    // SAFETY: `deserialize` trusts its input to be an artifact this wasmtime
    // wrote. The file was written by `store_artifact` in the host's own data
    // dir, and its blake3 checksum matches, so it is not truncated or
    // corrupted; wasmtime itself rejects artifacts of another version or
    // configuration with an error.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize(engine, &bytes) };
    match component {
        Ok(component) => Some(component),
        Err(err) => {
            tracing::info!("recompiling {}: {err}", artifact.display());
            None
        }
    }
}

fn store_artifact(
    component: &Component,
    dir: &std::path::Path,
    artifact: &std::path::Path,
    checksum: &std::path::Path,
) -> Result<()> {
    crate::private::create_dir(dir)?;
    let bytes = component.serialize()?;
    // A unique name: several processes may compile the same ROM at once.
    let tmp = artifact.with_extension(format!(
        "tmp.{}.{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::write(&tmp, &bytes)?;
    std::fs::write(checksum, blake3::hash(&bytes).to_hex().as_str())?;
    std::fs::rename(&tmp, artifact)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::rc::Rc;

    /// An empty component, made distinct by a custom section named `tag`.
    fn component(tag: u8) -> Arc<[u8]> {
        let mut bytes = b"\0asm\x0d\x00\x01\x00".to_vec();
        bytes.extend_from_slice(&[0x00, 0x02, 0x01, tag]);
        Arc::from(bytes)
    }

    #[test]
    fn compiles_wait_for_a_slot_and_no_more_than_the_slots_run() {
        // The test's components are empty and compile in microseconds; a
        // real ROM's compile takes about this long, so loads overlap.
        fn slow_compile(
            engine: &Engine,
            dir: Option<PathBuf>,
            hash: &blake3::Hash,
            bytes: &[u8],
        ) -> Result<Component> {
            std::thread::sleep(std::time::Duration::from_millis(20));
            compile(engine, dir, hash, bytes)
        }
        let mut cache = RomCache::new(Engine::default(), None);
        cache.compiler = slow_compile;
        let cache = Rc::new(cache);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        let loads = COMPILES_AT_ONCE_MAX * 4;
        let mut roms = local.block_on(&runtime, async {
            let tasks: Vec<_> = (0..loads)
                .map(|tag| {
                    let cache = cache.clone();
                    tokio::task::spawn_local(async move {
                        cache
                            .load(component(tag as u8))
                            .await
                            .map(|rom| *rom.hash.as_bytes())
                    })
                })
                .collect();
            let mut roms = Vec::new();
            for task in tasks {
                roms.push(task.await.unwrap().unwrap());
            }
            roms
        });
        roms.sort();
        roms.dedup();
        assert_eq!(roms.len(), loads, "each distinct ROM compiled");
        assert_eq!(cache.compiles(), loads as u64);
        let peak = cache.compiles_at_once_peak();
        assert_eq!(peak, COMPILES_AT_ONCE_MAX, "compiles at once");
    }

    #[test]
    fn a_load_past_the_waiting_bound_is_refused_naming_it() {
        let cache = RomCache::new(Engine::default(), None);
        cache.waiting.set(COMPILES_WAITING_MAX);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let Err(err) = runtime.block_on(cache.load(component(1))) else {
            panic!("a load past the waiting bound was taken");
        };
        assert!(err.to_string().contains("COMPILES_WAITING_MAX"), "{err}");
        assert_eq!(cache.compiles(), 0);
    }

    #[test]
    fn eviction_removes_the_artifacts_used_longest_ago_and_keeps_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let at = |seconds: u64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
        let mut paths = Vec::new();
        for (index, used) in [(0, 30), (1, 10), (2, 20), (3, 5)] {
            let path = dir.path().join(format!("{index}.cwasm"));
            std::fs::write(&path, [0u8; 100]).unwrap();
            std::fs::write(path.with_extension("cwasm.blake3"), "x").unwrap();
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(at(used))
                .unwrap();
            paths.push(path);
        }
        // 400 bytes held, 250 allowed: the two used longest ago go, except
        // the one just stored (3), so 1 and 2 go.
        let removed = evict(dir.path(), 250, &paths[3]).unwrap();
        assert_eq!(removed, 2);
        let left: Vec<bool> = paths.iter().map(|path| path.exists()).collect();
        assert_eq!(left, [true, false, false, true]);
        assert!(!paths[1].with_extension("cwasm.blake3").exists());
        assert!(paths[0].with_extension("cwasm.blake3").exists());
        // Within the bound, nothing goes.
        assert_eq!(evict(dir.path(), 250, &paths[3]).unwrap(), 0);
    }
}
