//! `PubSub`, `Topic` and `Subscription` over the node's gossipsub.

use capnp::capability::Rc as CapRc;
use ww_api::limits::{SUBSCRIPTION_BUFFER_MAX, TOPIC_BYTES_MAX};
use ww_api::{pub_sub, subscription, topic};

use super::{invalid, text};
use crate::net::node::HEARTBEAT_TOPIC;
use crate::net::pubsub::Subscription;
use crate::net::Node;

/// `PubSub`.
pub struct PubSubServer {
    node: Node,
}

impl PubSubServer {
    /// A `PubSub` capability over `node`.
    pub fn client(node: Node) -> pub_sub::Client {
        capnp_rpc::new_client(Self { node })
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
            name,
        }));
        Ok(())
    }
}

struct TopicServer {
    node: Node,
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
    use super::validate_topic;

    #[test]
    fn topic_names_are_validated() {
        assert!(validate_topic("test").is_ok());
        assert!(validate_topic("").is_err());
        assert!(validate_topic("has space").is_err());
        assert!(validate_topic(&"x".repeat(257)).is_err());
        assert!(validate_topic("/ww/0.1.0/heartbeat").is_err());
    }
}
