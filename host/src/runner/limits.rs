//! Resource limits of one process.

/// What one process may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory, summed over the component's memories.
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
