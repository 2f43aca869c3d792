//! ROMs, compiled once and cached by the blake3 hash of their bytes: in
//! memory for the life of the runtime, and on disk (if given a directory)
//! across restarts. Compiling a ROM takes ~0.5-1.5 s with Cranelift;
//! loading its compiled form takes ~2 ms.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Largest ROM accepted, in bytes.
pub const ROM_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Most ROMs kept compiled in memory.
const ROMS_IN_MEMORY_MAX: usize = 64;

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
}

impl RomCache {
    pub(crate) fn new(engine: Engine, dir: Option<PathBuf>) -> Self {
        Self {
            engine,
            dir,
            compiled: RefCell::new(HashMap::new()),
            compiles: std::cell::Cell::new(0),
            hits: std::cell::Cell::new(0),
        }
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
    /// host's event loop keeps running.
    ///
    /// # Errors
    ///
    /// When the bytes are too big or not a valid WebAssembly component.
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
        let engine = self.engine.clone();
        let dir = self.dir.clone();
        let source = bytes.clone();
        let component = tokio::task::spawn_blocking(move || compile(&engine, dir, &hash, &source))
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
        return Ok(component);
    }
    let component = Component::new(engine, bytes)
        .map_err(anyhow::Error::from)
        .context("it is not a valid WebAssembly component")?;
    if let Err(err) = store_artifact(&component, &dir, &artifact, &checksum) {
        tracing::warn!("not caching the compiled ROM in {}: {err:#}", dir.display());
    }
    Ok(component)
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
