//! A volume's quota, enforced on each write: a write that would take the
//! volume past it fails in the guest, as on a full disk, nothing of it is
//! written, and the host logs the refusal naming the quota. A positional
//! write (`descriptor.write`) fails with ENOSPC. A stream write fails with
//! `last-operation-failed` carrying ENOSPC, but wasi-libc (what Rust's
//! `std::fs` uses) does not ask the error's code and reports EIO ("I/O
//! error").
//!
//! wasmtime-wasi writes straight into the preopened directory, so the host
//! wraps the two ways a guest writes a file: `descriptor.write` (positional
//! writes) and the output streams of `write-via-stream` and
//! `append-via-stream` (what `std::fs::File::write` uses). Both are
//! redefined in the linker over wasmtime-wasi's own, which they call.
//!
//! What the volume holds is measured on disk by the executor's watcher (in
//! allocated blocks, every `VOLUME_CHECK_MS`); the bytes written since are
//! added to it. An overwrite counts as growth until the next measurement,
//! so the quota errs on the side of refusing. Creating files and
//! directories is not a write; the watcher bounds those.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView as _};
use wasmtime_wasi::p2::bindings::filesystem::types::{ErrorCode, HostDescriptor as _};
use wasmtime_wasi::p2::{DynOutputStream, OutputStream, Pollable, StreamError, StreamResult};

use super::process::ProcState;
use super::{to_guest, FILESYSTEM_TYPES};

/// Linux's ENOSPC, which wasmtime-wasi reports to the guest as
/// `insufficient-space`.
const ENOSPC: i32 = 28;

/// One volume's quota, shared by its process's writes and the watcher that
/// measures it.
#[derive(Debug)]
pub struct VolumeQuota {
    /// The volume's directory, for the log.
    volume: String,
    bytes_max: u64,
    /// What the volume held on disk at the last measurement.
    measured: AtomicU64,
    /// Bytes written since.
    written: AtomicU64,
    /// Writes refused so far.
    refused: AtomicU64,
}

impl VolumeQuota {
    /// A quota of `bytes_max` for the volume `volume` (its directory, for
    /// the log), which holds `measured` bytes.
    pub fn new(volume: String, bytes_max: u64, measured: u64) -> Arc<Self> {
        Arc::new(Self {
            volume,
            bytes_max,
            measured: AtomicU64::new(measured),
            written: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// The quota, in bytes.
    pub fn bytes_max(&self) -> u64 {
        self.bytes_max
    }

    /// Records a fresh measurement of what the volume holds on disk, which
    /// includes every write made so far.
    pub fn measured(&self, bytes: u64) {
        self.measured.store(bytes, Ordering::Relaxed);
        self.written.store(0, Ordering::Relaxed);
    }

    /// Takes `bytes` of the quota for a write.
    ///
    /// # Errors
    ///
    /// ENOSPC, with nothing taken, when the volume would pass its quota.
    pub fn take(&self, bytes: u64) -> std::io::Result<()> {
        let measured = self.measured.load(Ordering::Relaxed);
        let taken = self.written.fetch_add(bytes, Ordering::Relaxed);
        if measured.saturating_add(taken).saturating_add(bytes) > self.bytes_max {
            self.written.fetch_sub(bytes, Ordering::Relaxed);
            let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
            // The 1st, 2nd, 4th... refusal: named once, never a flood.
            if refused.is_power_of_two() {
                tracing::warn!(
                    volume = %self.volume,
                    "refused a write of {bytes} bytes: the volume holds about {} bytes, and its quota is {} (ww start --volume-limit-mb); {refused} writes refused so far",
                    measured.saturating_add(taken),
                    self.bytes_max
                );
            }
            return Err(std::io::Error::from_raw_os_error(ENOSPC));
        }
        Ok(())
    }
}

/// A file's output stream whose writes are taken from its volume's quota.
struct QuotaStream {
    inner: DynOutputStream,
    quota: Arc<VolumeQuota>,
}

impl QuotaStream {
    fn take(&self, bytes: usize) -> StreamResult<()> {
        self.quota
            .take(bytes as u64)
            .map_err(|err| StreamError::LastOperationFailed(err.into()))
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for QuotaStream {
    async fn ready(&mut self) {
        self.inner.ready().await;
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for QuotaStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.take(bytes.len())?;
        self.inner.write(bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.inner.check_write()
    }

    async fn blocking_write_and_flush(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.take(bytes.len())?;
        self.inner.blocking_write_and_flush(bytes).await
    }

    fn write_zeroes(&mut self, count: usize) -> StreamResult<()> {
        self.take(count)?;
        self.inner.write_zeroes(count)
    }
}

/// Wraps the output stream `stream` of `state`'s table in its quota.
fn wrap(state: &mut ProcState, stream: &Resource<DynOutputStream>) -> wasmtime::Result<()> {
    let Some(quota) = state.quota.clone() else {
        return Ok(());
    };
    let slot = state.table.get_mut(stream)?;
    let inner = std::mem::replace(slot, Box::new(wasmtime_wasi::p2::pipe::SinkOutputStream));
    *slot = Box::new(QuotaStream { inner, quota });
    Ok(())
}

type StreamReturn = (Result<Resource<DynOutputStream>, ErrorCode>,);

/// Redefines the file write functions of `wasi:filesystem/types` in
/// `linker` (which must hold wasmtime-wasi's) to take from the quota.
///
/// # Errors
///
/// When the linker has no such interface to redefine.
pub(crate) fn add_to_linker(linker: &mut Linker<ProcState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(FILESYSTEM_TYPES)?;
    types.func_wrap(
        "[method]descriptor.write-via-stream",
        |mut store, (fd, offset): (Resource<Descriptor>, u64)| -> wasmtime::Result<StreamReturn> {
            let state = store.data_mut();
            match state.filesystem().write_via_stream(fd, offset) {
                Ok(stream) => {
                    wrap(state, &stream)?;
                    Ok((Ok(stream),))
                }
                Err(err) => Ok((Err(err.downcast()?),)),
            }
        },
    )?;
    types.func_wrap(
        "[method]descriptor.append-via-stream",
        |mut store, (fd,): (Resource<Descriptor>,)| -> wasmtime::Result<StreamReturn> {
            let state = store.data_mut();
            match state.filesystem().append_via_stream(fd) {
                Ok(stream) => {
                    wrap(state, &stream)?;
                    Ok((Ok(stream),))
                }
                Err(err) => Ok((Err(err.downcast()?),)),
            }
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.write",
        |mut store, (fd, bytes, offset): (Resource<Descriptor>, Vec<u8>, u64)| {
            Box::new(async move {
                let state = store.data_mut();
                if let Some(quota) = &state.quota {
                    if quota.take(bytes.len() as u64).is_err() {
                        return Ok((Err(ErrorCode::InsufficientSpace),));
                    }
                }
                to_guest(state.filesystem().write(fd, bytes, offset).await)
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_take_from_the_quota_until_a_measurement_resets_them() {
        let quota = VolumeQuota::new("v".to_owned(), 100, 40);
        assert!(quota.take(50).is_ok());
        // 40 measured + 50 written + 20 > 100: refused, and nothing taken.
        let err = quota.take(20).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(ENOSPC));
        assert!(quota.take(10).is_ok());
        assert!(quota.take(1).is_err());
        // The watcher measured the volume after an overwrite: 60 on disk.
        quota.measured(60);
        assert!(quota.take(40).is_ok());
        assert!(quota.take(1).is_err());
    }
}
