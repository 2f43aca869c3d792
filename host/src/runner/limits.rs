//! Resource limits of one process, and the limiter that enforces them.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::limits::{
    BUSY_MS_MAX_DEFAULT, INSTANCES_MAX, MEMORIES_MAX, MEMORY_BYTES_MAX_DEFAULT, TABLES_MAX,
    TABLE_ELEMENTS_MAX,
};

/// What one process may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory, summed over all of the process's memories (see
    /// [`ProcessLimiter`]).
    pub memory_bytes_max: usize,
    /// The longest a guest may compute without calling its host (any WASI
    /// call: a read, a write, a poll). A guest past it is in a loop that
    /// never yields, and is killed. Waiting in a poll does not count.
    pub busy_ms_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes_max: MEMORY_BYTES_MAX_DEFAULT,
            busy_ms_max: BUSY_MS_MAX_DEFAULT,
        }
    }
}

/// The linear memory of all of a host's processes together, against the
/// host's budget (`ww start --guest-memory-limit-mb`): without it, 256
/// processes of 512 MiB each could ask for 128 GiB.
#[derive(Debug)]
pub(crate) struct GuestMemory {
    bytes: AtomicUsize,
    bytes_max: usize,
    /// Growths refused for the budget.
    refused: AtomicU64,
}

impl GuestMemory {
    pub(crate) fn new(bytes_max: usize) -> Self {
        Self {
            bytes: AtomicUsize::new(0),
            bytes_max,
            refused: AtomicU64::new(0),
        }
    }

    /// Growths refused because of this budget.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Bytes of linear memory the host's processes hold.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn bytes_max(&self) -> usize {
        self.bytes_max
    }

    /// Charges `bytes`, or returns the total they would have made.
    fn charge(&self, bytes: usize) -> Result<(), usize> {
        let mut held = self.bytes.load(Ordering::Relaxed);
        loop {
            let total = held.saturating_add(bytes);
            if total > self.bytes_max {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(total);
            }
            match self.bytes.compare_exchange_weak(
                held,
                total,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => held = now,
            }
        }
    }

    /// Gives back `bytes` charged before.
    fn release(&self, bytes: usize) {
        let before = self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        assert!(before >= bytes, "released {bytes} of {before} bytes");
    }
}

/// A growth refused by the host's [`GuestMemory`] budget (the process's
/// own limit was not reached), so the process's exit can name it.
#[derive(Debug)]
pub(crate) struct HostMemoryBudget {
    desired: usize,
    host_total: usize,
    bytes_max: usize,
}

impl std::fmt::Display for HostMemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "forcing trap when growing memory to {} bytes: the host's processes would hold {} bytes of linear memory in all, past the host's {} (guest_memory_bytes_max, ww start --guest-memory-limit-mb)",
            self.desired, self.host_total, self.bytes_max
        )
    }
}

impl std::error::Error for HostMemoryBudget {}

/// The resource limiter of one process's store.
///
/// wasmtime's `StoreLimits` checks each linear memory on its own, so a
/// component with [`MEMORIES_MAX`] memories could hold that many times
/// [`Limits::memory_bytes_max`]. This limiter charges every memory's growth
/// (its creation included) against one total for the process, and
/// delegates the counts of instances, tables and memories and the table
/// sizes to `StoreLimits`. Every growth is charged to the host's
/// [`GuestMemory`] too, and given back when the process ends. A growth
/// past either total is an error, which wasmtime turns into a trap, so the
/// process ends with a message naming the budget.
pub(crate) struct ProcessLimiter {
    memory_bytes_max: usize,
    host: Arc<GuestMemory>,
    /// Bytes of all of the process's memories, as granted.
    memory_bytes: usize,
    /// The growth granted last, given back if the memory then fails to grow.
    pending_bytes: usize,
    counts: wasmtime::StoreLimits,
}

impl ProcessLimiter {
    pub(crate) fn new(memory_bytes_max: usize, host: Arc<GuestMemory>) -> Self {
        Self {
            memory_bytes_max,
            host,
            memory_bytes: 0,
            pending_bytes: 0,
            counts: wasmtime::StoreLimitsBuilder::new()
                .instances(INSTANCES_MAX)
                .tables(TABLES_MAX)
                .memories(MEMORIES_MAX)
                .table_elements(TABLE_ELEMENTS_MAX)
                .trap_on_grow_failure(true)
                .build(),
        }
    }

    /// Bytes of linear memory the process holds.
    #[cfg(test)]
    pub(crate) fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }
}

impl wasmtime::ResourceLimiter for ProcessLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|maximum| desired > maximum) {
            // Past the memory's own maximum: `memory.grow` returns -1, as
            // the spec says; nothing is charged.
            self.pending_bytes = 0;
            return Ok(false);
        }
        let growth = desired.saturating_sub(current);
        let total = self.memory_bytes.saturating_add(growth);
        if total > self.memory_bytes_max {
            wasmtime::bail!(
                "forcing trap when growing memory to {desired} bytes: the process's memories would hold {total} bytes in all, past its {} (memory_bytes_max)",
                self.memory_bytes_max
            );
        }
        if let Err(host_total) = self.host.charge(growth) {
            return Err(HostMemoryBudget {
                desired,
                host_total,
                bytes_max: self.host.bytes_max,
            }
            .into());
        }
        self.memory_bytes = total;
        self.pending_bytes = growth;
        assert!(self.memory_bytes <= self.memory_bytes_max);
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // Paired with `memory_growing`: the growth it granted did not happen.
        assert!(self.memory_bytes >= self.pending_bytes);
        self.memory_bytes -= self.pending_bytes;
        self.host.release(self.pending_bytes);
        self.pending_bytes = 0;
        Err(error.context("forcing a memory growth failure to be a trap"))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.counts.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.counts.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.counts.instances()
    }

    fn tables(&self) -> usize {
        self.counts.tables()
    }

    fn memories(&self) -> usize {
        self.counts.memories()
    }
}

impl Drop for ProcessLimiter {
    /// The process's store is gone, and its memories with it.
    fn drop(&mut self) {
        self.host.release(self.memory_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter as _;

    const PAGE: usize = 64 * 1024;

    #[test]
    fn memories_are_limited_in_sum_not_each() {
        let mut limiter = ProcessLimiter::new(16 * PAGE, unbounded());
        // Sixteen memories of one page each: the whole budget.
        for _ in 0..16 {
            assert!(limiter.memory_growing(0, PAGE, None).unwrap());
        }
        assert_eq!(limiter.memory_bytes(), 16 * PAGE);
        // Any of them growing by a page is past it, whatever its own size.
        let err = limiter.memory_growing(PAGE, 2 * PAGE, None).unwrap_err();
        assert!(err.to_string().contains("memory_bytes_max"), "{err}");
        assert!(err.to_string().contains("forcing trap when growing memory"));
        assert_eq!(limiter.memory_bytes(), 16 * PAGE);
    }

    #[test]
    fn a_failed_growth_is_given_back_and_a_maximum_costs_nothing() {
        let host = unbounded();
        let mut limiter = ProcessLimiter::new(4 * PAGE, host.clone());
        assert!(limiter.memory_growing(0, PAGE, None).unwrap());
        assert!(limiter.memory_growing(PAGE, 3 * PAGE, None).unwrap());
        assert!(limiter
            .memory_grow_failed(wasmtime::Error::msg("no room"))
            .is_err());
        assert_eq!(limiter.memory_bytes(), PAGE);
        // Past the memory's own maximum: refused (-1 to the guest), free.
        assert!(!limiter.memory_growing(PAGE, 2 * PAGE, Some(PAGE)).unwrap());
        assert_eq!(limiter.memory_bytes(), PAGE);
        assert!(limiter.memory_growing(PAGE, 4 * PAGE, None).unwrap());
        assert_eq!(limiter.memory_bytes(), 4 * PAGE);
        assert_eq!(host.bytes(), 4 * PAGE);
    }

    fn unbounded() -> Arc<GuestMemory> {
        Arc::new(GuestMemory::new(usize::MAX))
    }

    #[test]
    fn the_hosts_processes_share_one_budget_and_give_it_back_when_they_end() {
        let host = Arc::new(GuestMemory::new(3 * PAGE));
        let mut first = ProcessLimiter::new(4 * PAGE, host.clone());
        let mut second = ProcessLimiter::new(4 * PAGE, host.clone());
        assert!(first.memory_growing(0, 2 * PAGE, None).unwrap());
        assert!(second.memory_growing(0, PAGE, None).unwrap());
        // Within its own budget, past the host's: refused, naming it, and
        // nothing charged.
        let err = second.memory_growing(PAGE, 2 * PAGE, None).unwrap_err();
        assert!(err.to_string().contains("guest_memory_bytes_max"), "{err}");
        assert_eq!(host.refused(), 1);
        assert_eq!((second.memory_bytes(), host.bytes()), (PAGE, 3 * PAGE));
        // The first process ends: its memory is the host's again.
        drop(first);
        assert_eq!(host.bytes(), PAGE);
        assert!(second.memory_growing(PAGE, 3 * PAGE, None).unwrap());
        assert_eq!(host.bytes(), 3 * PAGE);
        drop(second);
        assert_eq!(host.bytes(), 0);
    }
}
