//! A bounded, time-windowed memory of keys: the producer dedupe table and the
//! memory of recent acks.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Remembers `key → value` for a window of log time, and at most a given
/// number of entries (the oldest is forgotten first).
///
/// Log time never decreases, so insertion order is time order and expiry
/// pops from the front. Lookups check the window themselves, so the answer
/// does not depend on when pruning last ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Window<K: Ord, V> {
    /// `(inserted_at_ms, key)` in insertion order. A key re-inserted after
    /// its entry expired appears twice; the stale pair is skipped when popped.
    order: VecDeque<(u64, K)>,
    entries: BTreeMap<K, (u64, V)>,
}

impl<K: Ord, V> Default for Window<K, V> {
    fn default() -> Self {
        Self {
            order: VecDeque::new(),
            entries: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone, V> Window<K, V> {
    /// The value remembered for `key`, if it was inserted less than
    /// `window_ms` before `now_ms`.
    pub(crate) fn get(&self, key: &K, now_ms: u64, window_ms: u64) -> Option<&V> {
        let (inserted_at_ms, value) = self.entries.get(key)?;
        (now_ms.saturating_sub(*inserted_at_ms) < window_ms).then_some(value)
    }

    /// Remembers `key → value` from `now_ms`, first forgetting entries older
    /// than `window_ms`, then the oldest entries beyond `entries_max`.
    /// Returns how many entries were forgotten before their window ended.
    pub(crate) fn insert(
        &mut self,
        key: K,
        value: V,
        now_ms: u64,
        window_ms: u64,
        entries_max: usize,
    ) -> u64 {
        assert!(entries_max > 0);
        self.prune(now_ms, window_ms);
        let mut evicted = 0;
        while self.order.len() >= entries_max {
            if self.pop_front() {
                evicted += 1;
            }
        }
        self.order.push_back((now_ms, key.clone()));
        self.entries.insert(key, (now_ms, value));
        assert!(self.entries.len() <= self.order.len());
        evicted
    }

    /// Forgets entries inserted `window_ms` or more before `now_ms`.
    pub(crate) fn prune(&mut self, now_ms: u64, window_ms: u64) {
        while let Some((inserted_at_ms, _)) = self.order.front() {
            if now_ms.saturating_sub(*inserted_at_ms) < window_ms {
                break;
            }
            self.pop_front();
        }
    }

    /// Number of live entries (some may be past their window until pruned).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Pops the oldest pair; returns whether it removed a live entry.
    fn pop_front(&mut self) -> bool {
        let Some((inserted_at_ms, key)) = self.order.pop_front() else {
            return false;
        };
        match self.entries.get(&key) {
            Some((at, _)) if *at == inserted_at_ms => {
                self.entries.remove(&key);
                true
            }
            _ => false,
        }
    }

    /// Checks the structure after a restore: every live entry has its pair in
    /// `order`, and `order` is in time order.
    pub(crate) fn is_consistent(&self) -> bool {
        let sorted = self
            .order
            .iter()
            .zip(self.order.iter().skip(1))
            .all(|((a, _), (b, _))| a <= b);
        let pairs: std::collections::BTreeSet<(&K, u64)> =
            self.order.iter().map(|(at, key)| (key, *at)).collect();
        sorted
            && self.entries.len() <= self.order.len()
            && self
                .entries
                .iter()
                .all(|(key, (at, _))| pairs.contains(&(key, *at)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_window_only() {
        let mut window = Window::default();
        window.insert("a", 1, 1000, 100, 10);
        assert_eq!(window.get(&"a", 1099, 100), Some(&1));
        assert_eq!(window.get(&"a", 1100, 100), None);
        window.prune(1100, 100);
        assert_eq!(window.len(), 0);
    }

    #[test]
    fn evicts_oldest_beyond_cap() {
        let mut window = Window::default();
        assert_eq!(window.insert(1, (), 0, 1000, 2), 0);
        assert_eq!(window.insert(2, (), 1, 1000, 2), 0);
        assert_eq!(window.insert(3, (), 2, 1000, 2), 1);
        assert_eq!(window.get(&1, 2, 1000), None);
        assert!(window.get(&2, 2, 1000).is_some());
        assert!(window.is_consistent());
    }

    #[test]
    fn reinsert_after_expiry_keeps_the_new_entry() {
        let mut window = Window::default();
        window.insert("k", 1, 0, 10, 10);
        window.insert("k", 2, 20, 10, 10);
        assert_eq!(window.get(&"k", 25, 10), Some(&2));
        assert!(window.is_consistent());
    }
}
