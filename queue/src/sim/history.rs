//! The queue checker: records what clients saw and checks the queue oracles
//! after a final drain (Jepsen's total-queue, plus lease exclusivity).
//!
//! - **lost**: a value whose enqueue was acknowledged, never acked by a
//!   consumer (in its topic or its dead-letter topic).
//! - **unexpected**: a delivered value that no producer tried to enqueue.
//! - **exclusive leases**: a message is never leased while an earlier lease
//!   on it is still valid: a redelivery comes only after that lease's
//!   deadline (extensions included) or after a nack/release/reject of it.
//! - **acked stays acked**: a message acked with a lease is never leased again.
//! - **counts grow**: each lease of a message reports a higher `acquired`.
//! - duplicates (deliveries of a value after its first) are counted and
//!   reported as a rate: at-least-once delivery makes them legal.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::types::{AckOutcome, Delivery, Receipt};

/// One lease as a consumer saw it.
#[derive(Clone, Debug)]
struct Lease {
    consumer: String,
    token: u64,
    leased_at_ms: u64,
    deadline_ms: u64,
    acquired: u32,
    value: Vec<u8>,
}

/// What became of a lease, as far as its consumer knows.
#[derive(Clone, Copy, Debug, Default)]
struct Settlement {
    /// An ack applied (Acked or AlreadyAcked came back).
    acked: bool,
    /// A nack, release or reject was sent (whatever came back: a lost reply
    /// may hide an applied nack).
    returned: bool,
    /// The latest deadline an applied extend reported.
    extended_to_ms: Option<u64>,
}

/// Everything the clients saw.
#[derive(Debug, Default)]
pub struct History {
    attempted: BTreeSet<Vec<u8>>,
    enqueued: BTreeSet<Vec<u8>>,
    /// Message ids each acknowledged value got, per topic.
    enqueued_ids: BTreeMap<Vec<u8>, BTreeSet<u64>>,
    leases: BTreeMap<(String, u64), Vec<Lease>>,
    settlements: BTreeMap<(String, u64, u64), Settlement>,
    done: BTreeSet<Vec<u8>>,
    /// Values whose ack was sent but whose reply was lost.
    maybe_done: BTreeSet<Vec<u8>>,
}

/// The checker's findings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Values a producer tried to enqueue.
    pub attempted: usize,
    /// Values whose enqueue was acknowledged.
    pub enqueued: usize,
    /// Acknowledged values never acked by a consumer.
    pub lost: usize,
    /// Acknowledged values whose only ack lost its reply (Jepsen's
    /// "recovered": they may have been acked).
    pub recovered: usize,
    /// Delivered values nobody enqueued.
    pub unexpected: usize,
    /// Leases seen.
    pub deliveries: usize,
    /// Leases of a value after its first.
    pub duplicates: usize,
    /// Values acknowledged as enqueued under more than one message id
    /// (a producer retry after the dedupe window).
    pub double_enqueued: usize,
    /// Broken lease rules, one line each.
    pub violations: Vec<String>,
}

impl Report {
    /// True when every oracle holds.
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.unexpected == 0 && self.violations.is_empty()
    }

    /// Duplicate deliveries per delivery, in percent.
    pub fn duplicate_percent(&self) -> f64 {
        if self.deliveries == 0 {
            return 0.0;
        }
        self.duplicates as f64 * 100.0 / self.deliveries as f64
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "enqueued={} (attempted {}) lost={} recovered={} unexpected={} deliveries={} duplicates={} ({:.2}%) double_enqueued={} violations={}",
            self.enqueued,
            self.attempted,
            self.lost,
            self.recovered,
            self.unexpected,
            self.deliveries,
            self.duplicates,
            self.duplicate_percent(),
            self.double_enqueued,
            self.violations.len()
        )?;
        for violation in self.violations.iter().take(5) {
            write!(f, "\n  {violation}")?;
        }
        Ok(())
    }
}

impl History {
    /// A producer is about to try to enqueue `value`.
    pub fn enqueue_attempted(&mut self, value: &[u8]) {
        self.attempted.insert(value.to_vec());
    }

    /// The group acknowledged the enqueue of `value` as message `id`.
    pub fn enqueue_acknowledged(&mut self, value: &[u8], id: u64) {
        self.enqueued.insert(value.to_vec());
        self.enqueued_ids
            .entry(value.to_vec())
            .or_default()
            .insert(id);
    }

    /// `consumer` received `deliveries` from `topic`.
    pub fn leased(&mut self, topic: &str, consumer: &str, deliveries: &[Delivery]) {
        for delivery in deliveries {
            self.leases
                .entry((topic.to_owned(), delivery.id))
                .or_default()
                .push(Lease {
                    consumer: consumer.to_owned(),
                    token: delivery.token,
                    leased_at_ms: delivery.leased_at_ms,
                    deadline_ms: delivery.deadline_ms,
                    acquired: delivery.acquired,
                    value: delivery.body.clone(),
                });
        }
    }

    /// An ack of `receipt` came back with `outcome`.
    pub fn acked(&mut self, topic: &str, receipt: Receipt, value: &[u8], outcome: AckOutcome) {
        let _ = outcome;
        self.settlement(topic, receipt).acked = true;
        self.done.insert(value.to_vec());
    }

    /// An ack of `value` was sent but its reply was lost: it may have applied.
    pub fn ack_unknown(&mut self, value: &[u8]) {
        self.maybe_done.insert(value.to_vec());
    }

    /// A nack, release or reject of `receipt` was sent.
    pub fn returned(&mut self, topic: &str, receipt: Receipt) {
        self.settlement(topic, receipt).returned = true;
    }

    /// An extend of `receipt` applied with the new deadline.
    pub fn extended(&mut self, topic: &str, receipt: Receipt, deadline_ms: u64) {
        let settlement = self.settlement(topic, receipt);
        settlement.extended_to_ms = Some(settlement.extended_to_ms.unwrap_or(0).max(deadline_ms));
    }

    fn settlement(&mut self, topic: &str, receipt: Receipt) -> &mut Settlement {
        self.settlements
            .entry((topic.to_owned(), receipt.id, receipt.token))
            .or_default()
    }

    /// Checks every oracle.
    pub fn check(&self) -> Report {
        let mut report = Report {
            attempted: self.attempted.len(),
            enqueued: self.enqueued.len(),
            lost: self
                .enqueued
                .iter()
                .filter(|v| !self.done.contains(*v) && !self.maybe_done.contains(*v))
                .count(),
            recovered: self
                .enqueued
                .iter()
                .filter(|v| !self.done.contains(*v) && self.maybe_done.contains(*v))
                .count(),
            double_enqueued: self
                .enqueued_ids
                .values()
                .filter(|ids| ids.len() > 1)
                .count(),
            ..Report::default()
        };
        let mut seen_values = BTreeSet::new();
        for ((topic, id), leases) in &self.leases {
            let mut leases: Vec<&Lease> = leases.iter().collect();
            leases.sort_by_key(|lease| (lease.leased_at_ms, lease.acquired));
            for lease in &leases {
                report.deliveries += 1;
                if !self.attempted.contains(&lease.value) {
                    report.unexpected += 1;
                }
                if !seen_values.insert(lease.value.clone()) {
                    report.duplicates += 1;
                }
            }
            for pair in leases.windows(2) {
                let (first, second) = (pair[0], pair[1]);
                let settlement = self
                    .settlements
                    .get(&(topic.clone(), *id, first.token))
                    .copied()
                    .unwrap_or_default();
                let deadline_ms = first
                    .deadline_ms
                    .max(settlement.extended_to_ms.unwrap_or(0));
                if second.acquired <= first.acquired {
                    report.violations.push(format!(
                        "{topic}/{id}: lease to {} has acquired={} after lease to {} with acquired={}",
                        second.consumer, second.acquired, first.consumer, first.acquired
                    ));
                }
                if settlement.acked {
                    report.violations.push(format!(
                        "{topic}/{id}: leased to {} at {} ms after {} acked it",
                        second.consumer, second.leased_at_ms, first.consumer
                    ));
                } else if !settlement.returned && second.leased_at_ms < deadline_ms {
                    report.violations.push(format!(
                        "{topic}/{id}: leased to {} at {} ms while {}'s lease held until {} ms",
                        second.consumer, second.leased_at_ms, first.consumer, deadline_ms
                    ));
                }
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: u64, token: u64, at: u64, deadline: u64, acquired: u32) -> Delivery {
        Delivery {
            id,
            token,
            leased_at_ms: at,
            deadline_ms: deadline,
            acquired,
            failed: 0,
            enqueued_at_ms: 0,
            body: b"v".to_vec(),
            dead_letter: None,
        }
    }

    #[test]
    fn clean_history_passes() {
        let mut history = History::default();
        history.enqueue_attempted(b"v");
        history.enqueue_acknowledged(b"v", 1);
        history.leased("t", "a", &[delivery(1, 10, 0, 100, 1)]);
        history.leased("t", "b", &[delivery(1, 20, 100, 200, 2)]);
        history.acked("t", Receipt { id: 1, token: 20 }, b"v", AckOutcome::Acked);
        let report = history.check();
        assert!(report.passed(), "{report}");
        assert_eq!((report.deliveries, report.duplicates), (2, 1));
    }

    #[test]
    fn early_redelivery_and_loss_are_caught() {
        let mut history = History::default();
        history.enqueue_attempted(b"v");
        history.enqueue_acknowledged(b"v", 1);
        history.leased("t", "a", &[delivery(1, 10, 0, 100, 1)]);
        history.leased("t", "b", &[delivery(1, 20, 50, 150, 2)]);
        let report = history.check();
        assert_eq!(report.lost, 1);
        assert_eq!(report.violations.len(), 1, "{report}");
    }

    #[test]
    fn extension_is_respected_and_nack_allows_early_redelivery() {
        let mut history = History::default();
        history.enqueue_attempted(b"v");
        history.leased("t", "a", &[delivery(1, 10, 0, 100, 1)]);
        history.extended("t", Receipt { id: 1, token: 10 }, 300);
        history.leased("t", "b", &[delivery(1, 20, 200, 300, 2)]);
        assert_eq!(history.check().violations.len(), 1);
        history.returned("t", Receipt { id: 1, token: 10 });
        assert!(history.check().violations.is_empty());
    }

    #[test]
    fn lease_after_ack_is_caught() {
        let mut history = History::default();
        history.enqueue_attempted(b"v");
        history.leased("t", "a", &[delivery(1, 10, 0, 100, 1)]);
        history.acked("t", Receipt { id: 1, token: 10 }, b"v", AckOutcome::Acked);
        history.leased("t", "b", &[delivery(1, 20, 500, 600, 2)]);
        assert_eq!(history.check().violations.len(), 1);
    }
}
