//! The host's own descriptors, kept from its guests.
//!
//! Each file a guest opens is a descriptor of the host process, from the
//! same table as the host's sockets. A process holds at most
//! `RESOURCES_MAX` resources, but 256 processes could hold 262,144, and a
//! host whose table is full cannot accept a connection, dial a peer or
//! open its own files: its guests would have locked everybody out. So a
//! guest's `open-at` is refused while the host holds `--descriptors-max`
//! descriptors or more (all of them, the host's own included), and the
//! rest of the OS limit stays for the host.
//!
//! The count comes from `/proc/self/fd`, which costs a directory read of
//! every descriptor, so an open does not read it: it is read again when
//! the last count and the opens admitted since reach the bound, after
//! [`RECOUNT_OPENS`] opens, or [`RECOUNT_MS`] after the last count. Between
//! two counts the host may pass the bound by those opens and by what it
//! opened itself in that time; the reserve (a quarter of the limit, at
//! least 256) is far larger.
//!
//! A host raises its soft limit of open files to the hard one when it
//! starts ([`raise_open_files_limit`]), as servers do: the default soft
//! limit (often 1,024) is what one process may hold alone.
//!
//! The refused open fails in the guest with `busy` (EBUSY): WASI has no
//! code for a full descriptor table, and the condition passes when other
//! processes close files. The host logs the refusals, naming the limit.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView as _};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, ErrorCode, HostDescriptor as _, OpenFlags, PathFlags,
};

use super::process::ProcState;
use super::{to_guest, FILESYSTEM_TYPES};
use crate::limits::{DESCRIPTORS_RESERVED_MIN, DESCRIPTORS_RESERVED_PERCENT};

/// Opens admitted after which the descriptors are counted again.
const RECOUNT_OPENS: usize = 64;

/// Time after which the descriptors are counted again at the next open, in
/// ms.
const RECOUNT_MS: u64 = 100;

/// The host-wide bound on descriptors that guests' opens respect.
#[derive(Debug)]
pub(crate) struct HostDescriptors {
    max: usize,
    started: Instant,
    /// What `/proc/self/fd` held at the last count, and when (ms after
    /// `started`).
    counted: AtomicUsize,
    counted_at_ms: AtomicU64,
    /// Opens admitted since the last count.
    admitted: AtomicUsize,
    recounts: AtomicU64,
    refused: AtomicU64,
}

impl HostDescriptors {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            started: Instant::now(),
            counted: AtomicUsize::new(open_descriptors().unwrap_or(0)),
            counted_at_ms: AtomicU64::new(0),
            admitted: AtomicUsize::new(0),
            recounts: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Opens refused so far.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Whether a guest may open one more file now.
    fn admit(&self) -> Result<(), ErrorCode> {
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let admitted = self.admitted.load(Ordering::Relaxed);
        let estimate = self
            .counted
            .load(Ordering::Relaxed)
            .saturating_add(admitted);
        let stale = estimate >= self.max
            || admitted >= RECOUNT_OPENS
            || now_ms.saturating_sub(self.counted_at_ms.load(Ordering::Relaxed)) >= RECOUNT_MS;
        let held = if stale {
            // Unreadable (no procfs): the OS limit is the only bound.
            let Ok(held) = open_descriptors() else {
                return Ok(());
            };
            self.recounts.fetch_add(1, Ordering::Relaxed);
            self.counted.store(held, Ordering::Relaxed);
            self.counted_at_ms.store(now_ms, Ordering::Relaxed);
            self.admitted.store(0, Ordering::Relaxed);
            held
        } else {
            estimate
        };
        if held < self.max {
            self.admitted.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        // The first refusal and then one in a thousand: a guest that
        // retries in a loop must not flood the log.
        if refused % 1_000 == 1 {
            tracing::warn!(
                "refused a guest's open: the host holds {held} descriptors, its bound for guests' opens is {} (ww start --descriptors-max); {refused} opens refused so far",
                self.max
            );
        }
        Err(ErrorCode::Busy)
    }
}

/// The descriptors this process holds.
///
/// # Errors
///
/// When `/proc/self/fd` cannot be read.
pub fn open_descriptors() -> std::io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")?.count())
}

/// Raises this process's soft limit of open files to its hard limit, and
/// returns the soft limit in force after (the old one if it cannot be
/// raised; `u64::MAX` when unlimited).
pub fn raise_open_files_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    if limit.maximum == limit.current {
        return soft;
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => limit.maximum.unwrap_or(u64::MAX),
        Err(err) => {
            tracing::warn!("cannot raise the open files limit from {soft}: {err}");
            soft
        }
    }
}

/// The default bound for a host whose soft limit of open files is
/// `soft_limit`: all but [`DESCRIPTORS_RESERVED_PERCENT`] of it, and at
/// least [`DESCRIPTORS_RESERVED_MIN`], kept for the host.
#[must_use]
pub fn default_max(soft_limit: u64) -> usize {
    let soft_limit = usize::try_from(soft_limit).unwrap_or(usize::MAX);
    let reserved = (soft_limit / 100)
        .saturating_mul(DESCRIPTORS_RESERVED_PERCENT)
        .max(DESCRIPTORS_RESERVED_MIN);
    soft_limit.saturating_sub(reserved)
}

type OpenReturn = (Result<Resource<Descriptor>, ErrorCode>,);

/// Replaces `descriptor.open-at` in `linker` with one that asks the
/// process's [`HostDescriptors`] first.
///
/// # Errors
///
/// When the linker does not define the filesystem interface.
pub(crate) fn add_to_linker(linker: &mut Linker<ProcState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(FILESYSTEM_TYPES)?;
    types.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store,
         (fd, path_flags, path, open_flags, flags): (
            Resource<Descriptor>,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )| {
            Box::new(async move {
                let state = store.data_mut();
                if let Err(code) = state.descriptors.admit() {
                    return Ok::<OpenReturn, wasmtime::Error>((Err(code),));
                }
                to_guest(
                    state
                        .filesystem()
                        .open_at(fd, path_flags, path, open_flags, flags)
                        .await,
                )
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
    fn the_default_keeps_a_quarter_and_at_least_the_minimum_for_the_host() {
        assert_eq!(default_max(20_000), 15_000);
        assert_eq!(default_max(1_024), 1_024 - DESCRIPTORS_RESERVED_MIN);
        assert_eq!(default_max(100), 0);
        assert!(default_max(u64::MAX) > 1 << 40);
    }

    #[test]
    fn opens_are_refused_at_the_bound_and_counted() {
        // Other tests open files meanwhile: the bounds are far from what
        // the test process holds.
        assert!(open_descriptors().unwrap() > 0);
        assert!(HostDescriptors::new(usize::MAX).admit().is_ok());
        let full = HostDescriptors::new(0);
        assert!(matches!(full.admit(), Err(ErrorCode::Busy)));
        assert!(full.admit().is_err());
        assert_eq!(full.refused(), 2);
    }

    #[test]
    fn opens_far_from_the_bound_count_the_descriptors_once_in_a_while() {
        let bound = HostDescriptors::new(usize::MAX / 2);
        // Within RECOUNT_MS of the first count, only the opens since it
        // make it count again.
        for _ in 0..RECOUNT_OPENS {
            assert!(bound.admit().is_ok());
        }
        assert!(bound.recounts.load(Ordering::Relaxed) <= 1);
        for _ in 0..RECOUNT_OPENS {
            assert!(bound.admit().is_ok());
        }
        let recounts = bound.recounts.load(Ordering::Relaxed);
        assert!(
            (1..=3).contains(&recounts),
            "{recounts} counts for 128 opens"
        );
        // At the bound it counts on every open.
        let near = HostDescriptors::new(open_descriptors().unwrap() + 4_096);
        near.counted.store(near.max, Ordering::Relaxed);
        assert!(near.admit().is_ok(), "a fresh count finds room");
        assert_eq!(near.recounts.load(Ordering::Relaxed), 1);
    }
}
