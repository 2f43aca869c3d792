//! The hello ROM: `ww run hello.wasm` publishes `Hello, World` to the topic
//! `test` through the host it runs against.

fn main() {
    ww_guest::run(|env| async move {
        let pubsub = env.host.pubsub_request().send().pipeline.get_pubsub();
        let mut join = pubsub.join_request();
        join.get().set_topic("test");
        // Pipelined: join and publish go out together, one round trip.
        let topic = join.send().pipeline.get_topic();
        let mut publish = topic.publish_request();
        publish.get().set_data(b"Hello, World");
        publish.send().promise.await?;
        Ok(())
    })
}
