//! `PubSub`, `Topic` and `Subscription` over the node's gossipsub.
//!
//! # Budget
//!
//! A subscription buffers up to the number of messages its subscriber asked
//! for, and its messages count against its writer's share of the host's
//! subscription budget: [`SUBSCRIBER_BYTES_MAX`] for each local process,
//! and one for all other subscribers together, within
//! [`SUBSCRIPTION_HOST_BYTES_MAX`] for the host; each message counts
//! [`DELIVERY_OVERHEAD_BYTES`] more than its data. A message that does not
//! fit drops the oldest messages of the subscription it is delivered to
//! (and itself if that is not enough); the subscriber sees how many in the
//! `dropped` count of its next message, and the host logs the first drop of
//! each subscription, naming the budget.
//!
//! Drop, not refuse: a delivery comes from gossip, often from another host,
//! with no caller to refuse, and refusing local publishes would let one
//! subscriber that never reads stop every publisher of its topic. A full
//! buffer in messages already behaves this way; so only the subscriber that
//! does not keep up loses messages.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use capnp::capability::Rc as CapRc;
use tracing::warn;
use ww_api::limits::{SUBSCRIPTION_BUFFER_MAX, TOPIC_BYTES_MAX};
use ww_api::{pub_sub, subscription, topic};

use super::channel::Writer;
use super::{invalid, text};
use crate::limits::{DELIVERY_OVERHEAD_BYTES, SUBSCRIBER_BYTES_MAX, SUBSCRIPTION_HOST_BYTES_MAX};
use crate::net::node::HEARTBEAT_TOPIC;
use crate::net::pubsub::{Budget, Subscription};
use crate::net::Node;

/// What the subscriptions of a host buffer, in all and per writer.
#[derive(Default)]
pub struct Buffered {
    total_bytes: Cell<usize>,
    writer_bytes: RefCell<HashMap<Writer, usize>>,
}

impl Buffered {
    /// Bytes buffered by all subscriptions of the host.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes.get()
    }

    /// Bytes buffered by `writer`'s subscriptions.
    pub fn writer_bytes(&self, writer: &Writer) -> usize {
        self.writer_bytes.borrow().get(writer).copied().unwrap_or(0)
    }

    /// Which budget `bytes` more for `writer` would exceed, if any.
    fn refusal(&self, writer: &Writer, bytes: usize) -> Option<&'static str> {
        if self.total_bytes.get() + bytes > SUBSCRIPTION_HOST_BYTES_MAX {
            Some("SUBSCRIPTION_HOST_BYTES_MAX")
        } else if self.writer_bytes(writer) + bytes > SUBSCRIBER_BYTES_MAX {
            Some("SUBSCRIBER_BYTES_MAX")
        } else {
            None
        }
    }
}

/// One subscription's charges against its host's budget.
struct Charges {
    buffered: Rc<Buffered>,
    writer: Writer,
    topic: String,
    /// Whether a drop was logged already: once per subscription.
    warned: Cell<bool>,
}

impl Budget for Charges {
    fn charge(&self, bytes: usize) -> bool {
        let bytes = bytes + DELIVERY_OVERHEAD_BYTES;
        if let Some(budget) = self.buffered.refusal(&self.writer, bytes) {
            if !self.warned.replace(true) {
                warn!(
                    topic = %self.topic,
                    "a subscription of {} is full: its messages would exceed \
                     the host's subscription budget ({budget}); dropping its \
                     oldest messages (counted in `dropped`)",
                    self.writer
                );
            }
            return false;
        }
        self.buffered
            .total_bytes
            .set(self.buffered.total_bytes.get() + bytes);
        *self
            .buffered
            .writer_bytes
            .borrow_mut()
            .entry(self.writer.clone())
            .or_default() += bytes;
        true
    }

    fn release(&self, bytes: usize) {
        let bytes = bytes + DELIVERY_OVERHEAD_BYTES;
        let mut writers = self.buffered.writer_bytes.borrow_mut();
        // Paired with `charge`: an invariant of the counters, not input.
        let Some(held) = writers.get_mut(&self.writer) else {
            panic!("a writer is charged until its messages are released");
        };
        assert!(*held >= bytes && self.buffered.total_bytes.get() >= bytes);
        *held -= bytes;
        if *held == 0 {
            writers.remove(&self.writer);
        }
        self.buffered
            .total_bytes
            .set(self.buffered.total_bytes.get() - bytes);
    }
}

/// `PubSub`.
pub struct PubSubServer {
    node: Node,
    buffered: Rc<Buffered>,
}

impl PubSubServer {
    /// A `PubSub` capability over `node`, whose subscriptions count
    /// against the host's subscription budget `buffered`.
    pub fn client(node: Node, buffered: Rc<Buffered>) -> pub_sub::Client {
        capnp_rpc::new_client(Self { node, buffered })
    }
}

/// Checks a topic name: 1 to [`TOPIC_BYTES_MAX`] printable ASCII bytes, and
/// not one of the host's own topics.
///
/// # Errors
///
/// A message that says what is wrong with the name.
pub fn validate_topic(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > TOPIC_BYTES_MAX {
        return Err(format!(
            "topic names are 1 to {TOPIC_BYTES_MAX} bytes; got {}",
            name.len()
        ));
    }
    if !name.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(format!(
            "topic name {name:?} must be printable ASCII without spaces"
        ));
    }
    if name == HEARTBEAT_TOPIC {
        return Err(format!("topic {name:?} is reserved for host heartbeats"));
    }
    Ok(())
}

impl pub_sub::Server for PubSubServer {
    async fn join(
        self: CapRc<Self>,
        params: pub_sub::JoinParams,
        mut results: pub_sub::JoinResults,
    ) -> Result<(), capnp::Error> {
        let name = text(params.get()?.get_topic(), "topic")?;
        validate_topic(&name).map_err(invalid)?;
        results.get().set_topic(capnp_rpc::new_client(TopicServer {
            node: self.node.clone(),
            buffered: self.buffered.clone(),
            name,
        }));
        Ok(())
    }
}

struct TopicServer {
    node: Node,
    buffered: Rc<Buffered>,
    name: String,
}

impl topic::Server for TopicServer {
    async fn name(
        self: CapRc<Self>,
        _: topic::NameParams,
        mut results: topic::NameResults,
    ) -> Result<(), capnp::Error> {
        results.get().set_name(&self.name);
        Ok(())
    }

    async fn publish(
        self: CapRc<Self>,
        params: topic::PublishParams,
        _: topic::PublishResults,
    ) -> Result<(), capnp::Error> {
        let data = params.get()?.get_data()?.to_vec();
        self.node
            .publish(&self.name, data)
            .await
            .map_err(|err| capnp::Error::failed(format!("{err:#}")))
    }

    async fn subscribe(
        self: CapRc<Self>,
        params: topic::SubscribeParams,
        mut results: topic::SubscribeResults,
    ) -> Result<(), capnp::Error> {
        let buffer = params.get()?.get_buffer();
        if buffer == 0 || buffer > SUBSCRIPTION_BUFFER_MAX {
            return Err(invalid(format!(
                "subscription buffer must be 1 to {SUBSCRIPTION_BUFFER_MAX} messages; got {buffer}"
            )));
        }
        let subscription = self.node.subscribe(&self.name, buffer as usize);
        subscription.buffer().set_budget(Box::new(Charges {
            buffered: self.buffered.clone(),
            writer: crate::runner::calling_process().map_or(Writer::Others, Writer::Process),
            topic: self.name.clone(),
            warned: Cell::new(false),
        }));
        results
            .get()
            .set_subscription(capnp_rpc::new_client(SubscriptionServer { subscription }));
        Ok(())
    }
}

struct SubscriptionServer {
    subscription: Subscription,
}

impl subscription::Server for SubscriptionServer {
    async fn next(
        self: CapRc<Self>,
        _: subscription::NextParams,
        mut results: subscription::NextResults,
    ) -> Result<(), capnp::Error> {
        let (delivery, dropped) = self.subscription.buffer().next().await;
        let mut message = results.get().init_message();
        message.set_data(&delivery.data);
        message.set_from(&delivery.from);
        message.set_dropped(dropped);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::pubsub::{Hub, Membership};

    struct Nobody;
    impl Membership for Nobody {
        fn join(&self, _: &str) {}
        fn leave(&self, _: &str) {}
    }

    fn subscribe(
        hub: &Rc<Hub>,
        buffered: &Rc<Buffered>,
        topic: &str,
        writer: Writer,
    ) -> Subscription {
        let subscription = hub.subscribe(topic, SUBSCRIPTION_BUFFER_MAX as usize, Rc::new(Nobody));
        subscription.buffer().set_budget(Box::new(Charges {
            buffered: buffered.clone(),
            writer,
            topic: topic.to_owned(),
            warned: Cell::new(false),
        }));
        subscription
    }

    #[tokio::test]
    async fn subscriptions_are_budgeted_in_bytes_per_writer_and_in_all() {
        const MIB: usize = 1024 * 1024;
        let cost = MIB + DELIVERY_OVERHEAD_BYTES;
        let share = SUBSCRIBER_BYTES_MAX / cost;
        let hub = Rc::new(Hub::default());
        let buffered = Rc::new(Buffered::default());
        let subscriptions: Vec<Subscription> = (1..=4)
            .map(|pid| subscribe(&hub, &buffered, &format!("t{pid}"), Writer::Process(pid)))
            .collect();
        // Nobody reads: twice a share arrives, the newest share stays.
        for pid in 1..=4 {
            for n in 0..2 * share {
                let mut data = vec![0; MIB];
                data[..8].copy_from_slice(&(n as u64).to_le_bytes());
                hub.deliver(&format!("t{pid}"), &data, "me");
            }
            assert_eq!(buffered.writer_bytes(&Writer::Process(pid)), share * cost);
        }
        let (first, dropped) = subscriptions[0].buffer().next().await;
        assert_eq!(dropped, share as u64);
        assert_eq!(first.data[..8], (share as u64).to_le_bytes());
        assert_eq!(
            buffered.writer_bytes(&Writer::Process(1)),
            (share - 1) * cost
        );
        // A fifth writer gets what the host's budget has left.
        let fifth = subscribe(&hub, &buffered, "t5", Writer::Others);
        for _ in 0..share {
            hub.deliver("t5", &vec![0; MIB], "me");
        }
        let left = (SUBSCRIPTION_HOST_BYTES_MAX - (4 * share - 1) * cost) / cost;
        assert!(left < share);
        assert_eq!(buffered.writer_bytes(&Writer::Others), left * cost);
        assert!(buffered.total_bytes() <= SUBSCRIPTION_HOST_BYTES_MAX);
        // A subscription that ends gives back what it buffered.
        drop(fifth);
        assert_eq!(buffered.writer_bytes(&Writer::Others), 0);
        drop(subscriptions);
        assert_eq!(buffered.total_bytes(), 0);
    }

    #[test]
    fn topic_names_are_validated() {
        assert!(validate_topic("test").is_ok());
        assert!(validate_topic("").is_err());
        assert!(validate_topic("has space").is_err());
        assert!(validate_topic(&"x".repeat(257)).is_err());
        assert!(validate_topic("/ww/0.1.0/heartbeat").is_err());
    }
}
