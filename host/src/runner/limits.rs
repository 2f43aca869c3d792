//! Resource limits of one process.

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
            memory_bytes_max: 512 * 1024 * 1024,
            busy_ms_max: 10_000,
        }
    }
}

/// Instances, tables and memories a component may create. ROMs built from
/// Rust need a handful; the caps stop a hostile component from creating
/// thousands.
pub(crate) const INSTANCES_MAX: usize = 64;
pub(crate) const TABLES_MAX: usize = 64;
pub(crate) const MEMORIES_MAX: usize = 16;
pub(crate) const TABLE_ELEMENTS_MAX: usize = 1_000_000;

/// WASI resources one process may hold at once: open files and directory
/// handles, streams, pollables, clocks' subscriptions. Each open file is a
/// host descriptor too, so this also caps the descriptors a process takes
/// from its host. A Rust ROM holds tens (its stdio, its capnp streams, the
/// pollables of one poll); past the cap, the WASI call that asked for one
/// more traps the process, which ends "killed by the descriptor limit".
pub(crate) const RESOURCES_MAX: usize = 1_024;

/// The part of a host's event loop that computing guests (those the epoch
/// tick preempts) get together, in equal parts; the rest stays for the
/// swarm, the RPC and the guests that only answer. See `cpu.rs`.
pub(crate) const GUESTS_CPU_PERCENT: u32 = 25;
/// Slices cut short by the tick, one after the other, that make a process
/// count as computing (see `cpu.rs`).
pub(crate) const PREEMPTED_SLICES_MIN: u32 = 4;
/// How long a process counts as computing after the tick last preempted
/// it, in ms.
pub(crate) const CPU_WINDOW_MS: u64 = 1_000;
/// The CPU time a computing process may use at once before it waits for
/// its part, in ms.
pub(crate) const CPU_BURST_MS: u64 = 20;

/// The resource limiter of one process's store.
///
/// wasmtime's `StoreLimits` checks each linear memory on its own, so a
/// component with [`MEMORIES_MAX`] memories could hold that many times
/// [`Limits::memory_bytes_max`]. This limiter charges every memory's growth
/// (its creation included) against one total for the process, and
/// delegates the counts of instances, tables and memories and the table
/// sizes to `StoreLimits`. A growth past the total is an error, which
/// wasmtime turns into a trap, so the process ends with a clear message.
pub(crate) struct ProcessLimiter {
    memory_bytes_max: usize,
    /// Bytes of all of the process's memories, as granted.
    memory_bytes: usize,
    /// The growth granted last, given back if the memory then fails to grow.
    pending_bytes: usize,
    counts: wasmtime::StoreLimits,
}

impl ProcessLimiter {
    pub(crate) fn new(memory_bytes_max: usize) -> Self {
        Self {
            memory_bytes_max,
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
        self.memory_bytes = total;
        self.pending_bytes = growth;
        assert!(self.memory_bytes <= self.memory_bytes_max);
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // Paired with `memory_growing`: the growth it granted did not happen.
        assert!(self.memory_bytes >= self.pending_bytes);
        self.memory_bytes -= self.pending_bytes;
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

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter as _;

    const PAGE: usize = 64 * 1024;

    #[test]
    fn memories_are_limited_in_sum_not_each() {
        let mut limiter = ProcessLimiter::new(16 * PAGE);
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
        let mut limiter = ProcessLimiter::new(4 * PAGE);
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
    }
}
