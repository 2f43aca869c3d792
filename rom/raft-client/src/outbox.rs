//! The one outbox of the group's client and of its replicas: per
//! destination, a queue of encoded items, at most one channel message in
//! flight, and what queues meanwhile leaving together in the next message.
//!
//! The client sends request batches to replicas through it
//! ([`crate::group`]); a replica sends Raft envelopes to its peers through
//! it. Both take the same limits, in the same units, and give an
//! unanswered message the same deadline ([`send_within`]).
//!
//! Sans-IO: [`Outbox`] only keeps the queues. Its caller's obligations:
//! - call [`Outbox::claim`] before sending to a destination, and send only
//!   if it returned `true`;
//! - after a claim, [`Outbox::release`] it exactly once, when the message
//!   it sent has been answered or has failed (or when it sent nothing),
//!   and then try to claim again: items may have queued meanwhile.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::time::Duration;

use futures::future::{select, Either};

use crate::Runtime;

/// Most bytes of items in one message. Soft: one item larger than this
/// still travels, alone.
pub const MESSAGE_BYTES_SOFT_MAX: usize = 4 * 1024 * 1024;

/// Longest a message may stay unanswered. With one message in flight per
/// destination, a send that never answers (a wedged connection, a peer that
/// stopped draining its channel) would otherwise hold back everything
/// queued behind it for good. Past the deadline the send counts as failed.
/// A send normally takes well under a millisecond (docs/benchmarks.md).
pub const SEND_TIMEOUT_MS: u64 = 3_000;

/// An outbox's bounds.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most items in one message.
    pub message_items_max: usize,
    /// Most bytes queued for one destination. Past it the oldest items are
    /// dropped and handed back to the caller ([`Outbox::push`]); the newest
    /// is always kept.
    pub queued_bytes_max: usize,
}

struct Queue<T> {
    items: VecDeque<(T, usize)>,
    bytes: usize,
    claimed: bool,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self {
            items: VecDeque::new(),
            bytes: 0,
            claimed: false,
        }
    }
}

/// Queues per destination `K` of items `T`.
pub struct Outbox<K, T> {
    limits: Limits,
    queues: HashMap<K, Queue<T>>,
    dropped_count: u64,
}

impl<K: Hash + Eq + Clone, T> Outbox<K, T> {
    /// An empty outbox.
    ///
    /// # Panics
    ///
    /// When a limit is zero.
    pub fn new(limits: Limits) -> Self {
        assert!(limits.message_items_max > 0);
        assert!(limits.queued_bytes_max > 0);
        Self {
            limits,
            queues: HashMap::new(),
            dropped_count: 0,
        }
    }

    /// Queues `item` (of `bytes` bytes) for `to`. Returns the oldest items
    /// dropped to keep the queue within [`Limits::queued_bytes_max`]; the
    /// caller answers for them (a client fails their calls, a replica lets
    /// Raft resend).
    pub fn push(&mut self, to: K, item: T, bytes: usize) -> Vec<T> {
        let queue = self.queues.entry(to).or_default();
        queue.bytes += bytes;
        queue.items.push_back((item, bytes));
        let mut dropped = Vec::new();
        while queue.bytes > self.limits.queued_bytes_max && queue.items.len() > 1 {
            let Some((old, old_bytes)) = queue.items.pop_front() else {
                break;
            };
            queue.bytes -= old_bytes;
            dropped.push(old);
        }
        self.dropped_count += dropped.len() as u64;
        dropped
    }

    /// Claims `to` for one message: `true` when nothing is in flight to it
    /// and something is queued. See the module's caller obligations.
    pub fn claim<Q: Hash + Eq + ?Sized>(&mut self, to: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        match self.queues.get_mut(to) {
            Some(queue) if !queue.claimed && !queue.items.is_empty() => {
                queue.claimed = true;
                true
            }
            _ => false,
        }
    }

    /// Takes the next message's items for claimed `to`: the oldest queued,
    /// up to [`Limits::message_items_max`] and [`MESSAGE_BYTES_SOFT_MAX`],
    /// at least one. Empty when nothing is queued (the claim stays; release
    /// it).
    pub fn take<Q: Hash + Eq + ?Sized>(&mut self, to: &Q) -> Vec<T>
    where
        K: Borrow<Q>,
    {
        debug_assert!(
            self.queues.get(to).is_none_or(|queue| queue.claimed),
            "take without a claim"
        );
        self.take_next(to)
    }

    /// Takes the next message's items for `to` as [`Outbox::take`] does,
    /// claimed or not: for an answer to a call from `to`, which travels in
    /// that call's return, not in a message of this outbox's own.
    pub fn take_answer<Q: Hash + Eq + ?Sized>(&mut self, to: &Q) -> Vec<T>
    where
        K: Borrow<Q>,
    {
        self.take_next(to)
    }

    fn take_next<Q: Hash + Eq + ?Sized>(&mut self, to: &Q) -> Vec<T>
    where
        K: Borrow<Q>,
    {
        let Some(queue) = self.queues.get_mut(to) else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        let mut bytes = 0;
        while let Some((_, next_bytes)) = queue.items.front() {
            if !taken.is_empty()
                && (taken.len() >= self.limits.message_items_max
                    || bytes + next_bytes > MESSAGE_BYTES_SOFT_MAX)
            {
                break;
            }
            bytes += next_bytes;
            let Some((item, _)) = queue.items.pop_front() else {
                break;
            };
            taken.push(item);
        }
        queue.bytes -= bytes;
        taken
    }

    /// Ends `to`'s claim.
    pub fn release<Q: Hash + Eq + ?Sized>(&mut self, to: &Q)
    where
        K: Borrow<Q>,
    {
        if let Some(queue) = self.queues.get_mut(to) {
            debug_assert!(queue.claimed, "release without a claim");
            queue.claimed = false;
        }
    }

    /// Takes everything queued for `to` (its claim, if any, stays).
    pub fn drain<Q: Hash + Eq + ?Sized>(&mut self, to: &Q) -> Vec<T>
    where
        K: Borrow<Q>,
    {
        let Some(queue) = self.queues.get_mut(to) else {
            return Vec::new();
        };
        queue.bytes = 0;
        queue.items.drain(..).map(|(item, _)| item).collect()
    }

    /// Destinations with something queued and nothing in flight.
    pub fn ready(&self) -> Vec<K> {
        self.queues
            .iter()
            .filter(|(_, queue)| !queue.claimed && !queue.items.is_empty())
            .map(|(to, _)| to.clone())
            .collect()
    }

    /// Forgets destinations for which `keep` is false, and what was queued
    /// for them.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.queues.retain(|to, _| keep(to));
    }

    /// Items dropped by [`Outbox::push`] so far.
    pub fn dropped_count(&self) -> u64 {
        self.dropped_count
    }

    /// Bytes queued for `to`.
    pub fn queued_bytes<Q: Hash + Eq + ?Sized>(&self, to: &Q) -> usize
    where
        K: Borrow<Q>,
    {
        self.queues.get(to).map_or(0, |queue| queue.bytes)
    }
}

/// Awaits a send's answer for at most [`SEND_TIMEOUT_MS`].
///
/// # Errors
///
/// The send's own error, or that no answer came in time.
pub async fn send_within<R: Runtime, T>(
    runtime: &R,
    send: impl Future<Output = capnp::Result<T>>,
) -> Result<T, String> {
    let send = std::pin::pin!(send);
    match select(send, runtime.sleep(Duration::from_millis(SEND_TIMEOUT_MS))).await {
        Either::Left((Ok(answer), _)) => Ok(answer),
        Either::Left((Err(err), _)) => Err(err.to_string()),
        Either::Right(_) => Err(format!("no answer within {SEND_TIMEOUT_MS} ms")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_outbox(items: usize, bytes: usize) -> Outbox<u64, u32> {
        Outbox::new(Limits {
            message_items_max: items,
            queued_bytes_max: bytes,
        })
    }

    #[test]
    fn one_message_in_flight_and_what_queues_meanwhile_travels_together() {
        let mut outbox = new_outbox(100, 1 << 20);
        assert!(!outbox.claim(&1), "nothing queued");
        outbox.push(1, 10, 8);
        assert!(outbox.claim(&1));
        assert_eq!(outbox.take(&1), vec![10]);
        outbox.push(1, 11, 8);
        outbox.push(1, 12, 8);
        assert!(!outbox.claim(&1), "a message is in flight");
        assert!(outbox.ready().is_empty());
        outbox.release(&1);
        assert_eq!(outbox.ready(), vec![1]);
        assert!(outbox.claim(&1));
        assert_eq!(outbox.take(&1), vec![11, 12]);
        assert_eq!(outbox.queued_bytes(&1), 0);
    }

    #[test]
    fn a_message_stops_at_its_item_and_byte_limits_but_carries_at_least_one() {
        let mut outbox = new_outbox(2, usize::MAX);
        for item in 0..5 {
            outbox.push(7, item, 1);
        }
        assert!(outbox.claim(&7));
        assert_eq!(outbox.take(&7), vec![0, 1]);
        assert_eq!(outbox.queued_bytes(&7), 3);

        let mut outbox = new_outbox(100, usize::MAX);
        outbox.push(7, 0, MESSAGE_BYTES_SOFT_MAX + 1);
        outbox.push(7, 1, 1);
        assert!(outbox.claim(&7));
        assert_eq!(outbox.take(&7), vec![0], "an oversized item goes alone");
        assert_eq!(outbox.take(&7), vec![1]);
    }

    #[test]
    fn past_the_byte_bound_the_oldest_are_handed_back_and_the_newest_kept() {
        let mut outbox = new_outbox(100, 20);
        assert!(outbox.push(3, 0, 8).is_empty());
        assert!(outbox.push(3, 1, 8).is_empty());
        assert_eq!(outbox.push(3, 2, 8), vec![0]);
        assert_eq!(outbox.queued_bytes(&3), 16);
        assert_eq!(outbox.push(3, 3, 64), vec![1, 2], "the newest stays");
        assert_eq!(outbox.queued_bytes(&3), 64);
        assert_eq!(outbox.dropped_count(), 3);
        assert!(
            outbox.push(4, 9, 8).is_empty(),
            "bounds are per destination"
        );
    }

    #[test]
    fn an_answer_takes_what_is_queued_while_a_message_is_in_flight() {
        let mut outbox = new_outbox(100, 1 << 20);
        assert!(outbox.take_answer(&1).is_empty());
        outbox.push(1, 10, 8);
        assert!(outbox.claim(&1));
        assert_eq!(outbox.take(&1), vec![10]);
        outbox.push(1, 11, 8);
        assert_eq!(outbox.take_answer(&1), vec![11], "in flight or not");
        assert_eq!(outbox.queued_bytes(&1), 0);
        assert!(!outbox.claim(&1), "the claim stays");
        outbox.release(&1);
        assert!(!outbox.claim(&1), "nothing left to send");
    }

    #[test]
    fn a_drained_queue_is_empty_and_keeps_its_claim() {
        let mut outbox = new_outbox(1, 1 << 20);
        outbox.push(5, 1, 4);
        outbox.push(5, 2, 4);
        assert!(outbox.claim(&5));
        assert_eq!(outbox.take(&5), vec![1]);
        assert_eq!(outbox.drain(&5), vec![2]);
        assert_eq!(outbox.queued_bytes(&5), 0);
        outbox.push(5, 3, 4);
        assert!(!outbox.claim(&5), "still in flight");
    }

    #[test]
    fn forgotten_destinations_lose_their_queues() {
        let mut outbox = new_outbox(100, 1 << 20);
        outbox.push(1, 1, 1);
        outbox.push(2, 2, 1);
        outbox.retain(|to| *to == 2);
        assert!(!outbox.claim(&1));
        assert!(outbox.claim(&2));
    }
}
