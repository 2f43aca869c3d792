//! The inner hello ROM. `hello deploy` spawns it, supervised, on a host of
//! the cluster. It exports the `test` topic it publishes on (the host
//! anchors that at `/<peer id>/hello`) and publishes
//! `Hello, World from <peer id>` every second until it is killed.

use std::time::Duration;

/// Time between greetings. Gossipsub drops a publication that no peer is
/// subscribed to yet, so the greeting repeats rather than going out once.
const GREETING_INTERVAL: Duration = Duration::from_secs(1);

fn main() {
    ww_guest::run(|env| async move {
        let response = env.host.peer_id_request().send().promise.await?;
        let peer_id = response.get()?.get_peer_id()?.to_string()?;
        let pubsub = env.host.pubsub_request().send().pipeline.get_pubsub();
        let mut join = pubsub.join_request();
        join.get().set_topic("test");
        let topic = join.send().pipeline.get_topic();
        env.export(topic.clone());
        let greeting = format!("Hello, World from {peer_id}");
        eprintln!(
            "hello: greeting every {} ms as {peer_id}",
            GREETING_INTERVAL.as_millis()
        );
        loop {
            let mut publish = topic.publish_request();
            publish.get().set_data(greeting.as_bytes());
            if let Err(err) = publish.send().promise.await {
                // Nobody listening yet is not a failure worth a restart.
                eprintln!("hello: not delivered: {err}");
            }
            ww_guest::sleep(GREETING_INTERVAL).await;
        }
    })
}
