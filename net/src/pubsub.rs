//! Local pubsub subscriptions: bounded buffers fed by the swarm task.
//!
//! Gossipsub does not deliver a host's own publications back to it, so the
//! hub also delivers local publications to local subscribers directly.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};

use tokio::sync::Notify;

/// One delivered message.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The payload.
    pub data: Vec<u8>,
    /// The peer id of the publishing host.
    pub from: String,
}

/// What the messages of a buffer are charged against, in bytes; the
/// budget itself is the capability layer's (`cap::pubsub`).
pub trait Budget {
    /// Charges a message of `bytes`; false if it does not fit.
    fn charge(&self, bytes: usize) -> bool;
    /// Gives back a message of `bytes`.
    fn release(&self, bytes: usize);
}

/// A subscription's bounded buffer. When full (in messages, or in bytes
/// under its [`Budget`]), the oldest message is dropped and counted: a slow
/// subscriber loses old messages, never blocks the host.
pub struct Buffer {
    topic: String,
    capacity: usize,
    queue: RefCell<VecDeque<Delivery>>,
    dropped: Cell<u64>,
    notify: Notify,
    budget: RefCell<Option<Box<dyn Budget>>>,
}

impl Buffer {
    fn push(&self, delivery: Delivery) {
        let mut queue = self.queue.borrow_mut();
        if queue.len() >= self.capacity {
            if let Some(old) = queue.pop_front() {
                self.release(&old);
            }
            self.dropped.set(self.dropped.get() + 1);
        }
        if let Some(budget) = &*self.budget.borrow() {
            while !budget.charge(delivery.data.len()) {
                let Some(old) = queue.pop_front() else {
                    // Too big for what the budget has left, even alone.
                    self.dropped.set(self.dropped.get() + 1);
                    return;
                };
                budget.release(old.data.len());
                self.dropped.set(self.dropped.get() + 1);
            }
        }
        queue.push_back(delivery);
        assert!(queue.len() <= self.capacity);
        drop(queue);
        self.notify.notify_one();
    }

    fn release(&self, delivery: &Delivery) {
        if let Some(budget) = &*self.budget.borrow() {
            budget.release(delivery.data.len());
        }
    }

    /// Charges this buffer's messages, from now on, against `budget`.
    ///
    /// # Panics
    ///
    /// If the buffer already holds messages or has a budget.
    pub fn set_budget(&self, budget: Box<dyn Budget>) {
        assert!(self.queue.borrow().is_empty() && self.budget.borrow().is_none());
        *self.budget.borrow_mut() = Some(budget);
    }

    /// Waits for the next message; also returns how many were dropped since
    /// the previous call.
    pub async fn next(&self) -> (Delivery, u64) {
        loop {
            let notified = self.notify.notified();
            let next = self.queue.borrow_mut().pop_front();
            if let Some(delivery) = next {
                self.release(&delivery);
                return (delivery, self.dropped.replace(0));
            }
            notified.await;
        }
    }

    /// The topic this buffer subscribes to.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

/// What the hub asks of the swarm when a topic gains its first or loses its
/// last local subscriber.
pub trait Membership {
    /// Subscribe this host to `topic` on gossipsub.
    fn join(&self, topic: &str);
    /// Unsubscribe this host from `topic`.
    fn leave(&self, topic: &str);
}

/// Every local subscription, by topic.
#[derive(Default)]
pub struct Hub {
    topics: RefCell<HashMap<String, Vec<Weak<Buffer>>>>,
}

/// A live subscription. Dropping it unsubscribes.
pub struct Subscription {
    buffer: Rc<Buffer>,
    hub: Rc<Hub>,
    membership: Rc<dyn Membership>,
}

impl Subscription {
    /// The subscription's buffer.
    pub fn buffer(&self) -> &Rc<Buffer> {
        &self.buffer
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        for delivery in std::mem::take(&mut *self.queue.borrow_mut()) {
            self.release(&delivery);
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let topic = self.buffer.topic.clone();
        let now_empty = {
            let mut topics = self.hub.topics.borrow_mut();
            let Some(subs) = topics.get_mut(&topic) else {
                return;
            };
            let me = Rc::as_ptr(&self.buffer);
            subs.retain(|weak| weak.strong_count() > 0 && weak.as_ptr() != me);
            if subs.is_empty() {
                topics.remove(&topic);
                true
            } else {
                false
            }
        };
        if now_empty {
            self.membership.leave(&topic);
        }
    }
}

impl Hub {
    /// Subscribes locally to `topic` with a buffer of `capacity` messages.
    pub fn subscribe(
        self: &Rc<Self>,
        topic: &str,
        capacity: usize,
        membership: Rc<dyn Membership>,
    ) -> Subscription {
        assert!(
            capacity > 0,
            "a subscription buffer needs room for one message"
        );
        let buffer = Rc::new(Buffer {
            topic: topic.to_owned(),
            capacity,
            queue: RefCell::new(VecDeque::new()),
            dropped: Cell::new(0),
            notify: Notify::new(),
            budget: RefCell::new(None),
        });
        let first = {
            let mut topics = self.topics.borrow_mut();
            let subs = topics.entry(topic.to_owned()).or_default();
            subs.push(Rc::downgrade(&buffer));
            subs.len() == 1
        };
        if first {
            membership.join(topic);
        }
        Subscription {
            buffer,
            hub: self.clone(),
            membership,
        }
    }

    /// Delivers a message to every local subscriber of `topic`; returns how
    /// many there were.
    pub fn deliver(&self, topic: &str, data: &[u8], from: &str) -> usize {
        let topics = self.topics.borrow();
        let Some(subs) = topics.get(topic) else {
            return 0;
        };
        let mut delivered = 0;
        for buffer in subs.iter().filter_map(Weak::upgrade) {
            buffer.push(Delivery {
                data: data.to_vec(),
                from: from.to_owned(),
            });
            delivered += 1;
        }
        delivered
    }

    /// Whether any local subscriber listens on `topic`.
    pub fn has_subscribers(&self, topic: &str) -> bool {
        self.topics.borrow().contains_key(topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Record(RefCell<Vec<String>>);
    impl Membership for Record {
        fn join(&self, topic: &str) {
            self.0.borrow_mut().push(format!("join {topic}"));
        }
        fn leave(&self, topic: &str) {
            self.0.borrow_mut().push(format!("leave {topic}"));
        }
    }

    #[tokio::test]
    async fn a_full_buffer_drops_the_oldest_and_counts() {
        let hub = Rc::new(Hub::default());
        let record = Rc::new(Record::default());
        let sub = hub.subscribe("t", 2, record.clone());
        for n in 0..5u8 {
            assert_eq!(hub.deliver("t", &[n], "me"), 1);
        }
        let (first, dropped) = sub.buffer().next().await;
        assert_eq!((first.data, dropped), (vec![3], 3));
        let (second, dropped) = sub.buffer().next().await;
        assert_eq!((second.data, dropped), (vec![4], 0));
    }

    #[test]
    fn the_last_subscriber_leaving_leaves_the_topic() {
        let hub = Rc::new(Hub::default());
        let record = Rc::new(Record::default());
        let a = hub.subscribe("t", 1, record.clone());
        let b = hub.subscribe("t", 1, record.clone());
        drop(a);
        assert!(hub.has_subscribers("t"));
        drop(b);
        assert!(!hub.has_subscribers("t"));
        assert_eq!(*record.0.borrow(), vec!["join t", "leave t"]);
    }
}
