//! What each worker did in a crawl: leases taken and how they ended, per
//! worker name, so `status` can show which workers carry the crawl and
//! which ones fail or die.
//!
//! The counts are replicated state like the rest of the crawl (every replica
//! applies the same events), bounded by [`CRAWL_WORKERS_TRACKED_MAX`]: past
//! it, new names share the [`OTHER_WORKERS`] row, so a fleet that renames
//! itself at every restart cannot grow the state without end.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::limits::CRAWL_WORKERS_TRACKED_MAX;

/// The row of workers past [`CRAWL_WORKERS_TRACKED_MAX`]. Not a valid
/// worker name of its own: it has spaces and parentheses, which the crawler
/// never gives a worker, so it reads as what it is.
pub const OTHER_WORKERS: &str = "(other workers)";

/// One worker's lifetime counts in a crawl.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerCounts {
    /// URLs leased.
    pub leased: u64,
    /// Leases completed as fetched.
    pub fetched: u64,
    /// Leases completed as permanent failures.
    pub failed: u64,
    /// Leases completed as retryable failures.
    pub retried: u64,
    /// Leases given back unfetched.
    pub released: u64,
    /// Leases that expired (the worker died, hung, or lost its way to the
    /// group for longer than the lease).
    pub expired: u64,
}

/// A worker as `CrawlWorkers` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// The worker's name (its leases carry it).
    pub worker: String,
    /// URLs it holds leased now.
    pub leased_now: u64,
    /// Its lifetime counts.
    pub counts: WorkerCounts,
}

/// The counts of every worker of one crawl.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workers(BTreeMap<String, WorkerCounts>);

impl Workers {
    /// The row of `worker`: its own, or the shared one once the table is
    /// full.
    pub(crate) fn of(&mut self, worker: &str) -> &mut WorkerCounts {
        let key = if self.0.contains_key(worker) || self.0.len() < CRAWL_WORKERS_TRACKED_MAX {
            worker
        } else {
            OTHER_WORKERS
        };
        // A name is copied only when its row is made: this runs for every
        // lease batch and completion.
        if !self.0.contains_key(key) {
            self.0.insert(key.to_owned(), WorkerCounts::default());
        }
        match self.0.get_mut(key) {
            Some(counts) => counts,
            None => unreachable!("the row of {key:?} was inserted above"),
        }
    }

    /// Every row, by name.
    pub(crate) fn rows(&self) -> impl Iterator<Item = (&String, &WorkerCounts)> {
        self.0.iter()
    }

    /// Rows in a restored snapshot: at most the table plus the shared row.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.0.len() > CRAWL_WORKERS_TRACKED_MAX + 1 {
            return Err(format!("a crawl tracks {} workers", self.0.len()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_table_new_names_share_one_row() {
        let mut workers = Workers::default();
        for n in 0..CRAWL_WORKERS_TRACKED_MAX {
            workers.of(&format!("w{n}")).leased += 1;
        }
        workers.of("late-1").leased += 1;
        workers.of("late-2").leased += 2;
        workers.of("w0").leased += 1;
        assert_eq!(workers.0.len(), CRAWL_WORKERS_TRACKED_MAX + 1);
        assert_eq!(workers.0[OTHER_WORKERS].leased, 3);
        assert_eq!(workers.0["w0"].leased, 2);
        assert!(!workers.0.contains_key("late-1"));
        assert!(workers.check().is_ok());
    }
}
