//! Floods of the host's memory budgets. Each floods until the host refuses
//! and prints `refused after N MiB: ERROR`, so a test can check that the
//! refusal came at the budget and names it.
//!
//! - `channel-flood [hold]`: creates channels until the host refuses one
//!   (prints `channels refused after N: ERROR`), drops them, then sends
//!   1 MiB messages into a channel of capacity 1 that nobody reads: all
//!   but the first wait for room, holding their copies in the host. With
//!   `hold`, it then keeps everything until killed.
//! - `subscribe-hold TOPIC`: subscribes to TOPIC with the largest buffer,
//!   prints `subscribed to TOPIC`, and reads nothing until
//!   `/<its host>/TOPIC-done` is set; then prints the first message's
//!   number and how many were dropped before it, and holds on. Needs the
//!   full host.
//! - `pubsub-flood TOPIC MIB`: publishes MIB messages of 1 MiB, numbered in
//!   their first 8 bytes, on TOPIC; prints `published MIB MiB`.
//! - `call-flood N SECONDS`: pipelines N `recv` calls on an empty channel
//!   of its host (none returns: nothing is ever sent), prints `sent N
//!   calls`, holds them SECONDS, then exits 0.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use anyhow::bail;
use ww_guest::ww_api::limits::SUBSCRIPTION_BUFFER_MAX;
use ww_guest::ww_api::{host, ops, receiver, sender, topic};

const MIB: usize = 1024 * 1024;

/// Sends in flight before the flooder checks for a refusal: bounds its own
/// memory (each is a 1 MiB message until the host has read it).
const WINDOW: usize = 8;

/// Four times a writer's share of the host's channels: a host without a
/// budget would hold it all.
const FLOOD_MIB: usize = 256;

/// Most channels the flood creates; far above any host's budget.
const CHANNELS_TRIED_MAX: usize = 100_000;

/// The output of `future` if it is already complete.
fn ready<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
    match Pin::new(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

async fn new_channel(
    host: &host::Client,
    capacity: u32,
) -> capnp::Result<(sender::Client, receiver::Client)> {
    let mut request = host.new_channel_request();
    request.get().set_capacity(capacity);
    let response = request.send().promise.await?;
    let response = response.get()?;
    Ok((response.get_sender()?, response.get_receiver()?))
}

/// `channel-flood [hold]`.
pub async fn channel_flood(host: &host::Client, hold: bool) -> anyhow::Result<()> {
    let mut channels = Vec::new();
    let refusal = loop {
        match new_channel(host, 1).await {
            Ok(channel) => channels.push(channel),
            Err(err) => break err,
        }
        if channels.len() >= CHANNELS_TRIED_MAX {
            bail!("created {CHANNELS_TRIED_MAX} channels and was never refused");
        }
    };
    println!("channels refused after {}: {refusal}", channels.len());
    // Dropped, they are given back: the next channel is admitted.
    channels.clear();
    let (sender, receiver) = new_channel(host, 1).await?;

    let data = vec![7u8; MIB];
    let mut sends = Vec::new();
    let mut refused = None;
    'flood: while sends.len() < FLOOD_MIB {
        for _ in 0..WINDOW {
            let mut request = sender.send_request();
            request.get().init_message().set_data(&data);
            sends.push(Some(request.send().promise));
        }
        // Answered only after the host has read the sends before it.
        ops::peer_id(host).await?;
        for (mib, slot) in sends.iter_mut().enumerate() {
            // A completed promise must not be polled again.
            let Some(result) = slot.as_mut().and_then(ready) else {
                continue;
            };
            *slot = None;
            if let Err(err) = result {
                refused = Some((mib, err));
                break 'flood;
            }
        }
    }
    let Some((mib, err)) = refused else {
        bail!("sent {FLOOD_MIB} MiB that nobody reads and was never refused");
    };
    println!("refused after {mib} MiB: {err}");
    if hold {
        let _held = (sends, receiver);
        loop {
            ww_guest::sleep(Duration::from_secs(3600)).await;
        }
    }
    Ok(())
}

async fn join(host: &host::Client, name: &str) -> topic::Client {
    let pubsub = host.pubsub_request().send().pipeline.get_pubsub();
    let mut join = pubsub.join_request();
    join.get().set_topic(name);
    join.send().pipeline.get_topic()
}

/// `subscribe-hold TOPIC`.
pub async fn subscribe_hold(host: &host::Client, name: &str) -> anyhow::Result<()> {
    let mut subscribe = join(host, name).await.subscribe_request();
    subscribe.get().set_buffer(SUBSCRIPTION_BUFFER_MAX);
    let response = subscribe.send().promise.await?;
    let subscription = response.get()?.get_subscription()?;
    println!("subscribed to {name}");
    let peer = ops::peer_id(host).await?;
    let root = host.root_request().send().pipeline.get_anchor();
    let done = format!("/{peer}/{name}-done");
    while ops::get_data(&root, &done).await?.is_none() {
        ww_guest::sleep(Duration::from_millis(100)).await;
    }
    let next = subscription.next_request().send().promise.await?;
    let message = next.get()?.get_message()?;
    let data = message.get_data()?;
    let number = u64::from_le_bytes(data.get(..8).unwrap_or(&[0; 8]).try_into()?);
    println!(
        "first message {number}, {} dropped before it",
        message.get_dropped()
    );
    loop {
        ww_guest::sleep(Duration::from_secs(3600)).await;
    }
}

/// `pubsub-flood TOPIC MIB`.
pub async fn pubsub_flood(host: &host::Client, name: &str, mib: u64) -> anyhow::Result<()> {
    let topic = join(host, name).await;
    let mut data = vec![7u8; MIB];
    for number in 0..mib {
        data[..8].copy_from_slice(&number.to_le_bytes());
        let mut publish = topic.publish_request();
        publish.get().set_data(&data);
        publish.send().promise.await?;
    }
    println!("published {mib} MiB");
    Ok(())
}

/// `publish-flood TOPIC N KIB`: N publishes of KIB KiB each, pipelined, to
/// a topic nobody subscribes to; prints how many were delivered, waited
/// and expired, or were refused, and the first refusal.
pub async fn publish_flood(
    host: &host::Client,
    name: &str,
    count: usize,
    kib: usize,
) -> anyhow::Result<()> {
    let topic = join(host, name).await;
    let data = vec![7u8; kib * 1024];
    let publishes: Vec<_> = (0..count)
        .map(|_| {
            let mut publish = topic.publish_request();
            publish.get().set_data(&data);
            publish.send().promise
        })
        .collect();
    // Taken publishes wait for a subscriber that never comes, then fail;
    // refused ones fail at once, naming the budget.
    let (mut delivered, mut expired, mut refused, mut first) = (0, 0, 0, String::new());
    for publish in publishes {
        match publish.await {
            Ok(_) => delivered += 1,
            Err(err) if err.to_string().contains("PENDING_PUBLISHES") => {
                refused += 1;
                if first.is_empty() {
                    first = err.to_string();
                }
            }
            Err(_) => expired += 1,
        }
    }
    println!("delivered {delivered}, waited and expired {expired}, refused {refused}: {first}");
    Ok(())
}

/// `call-flood N SECONDS`.
pub async fn call_flood(host: &host::Client, calls: usize, hold: Duration) -> anyhow::Result<()> {
    let mut request = host.new_channel_request();
    request.get().set_capacity(1);
    let channel = request.send().promise.await?;
    // Held, so the channel stays open and every `recv` keeps waiting.
    let _sender: sender::Client = channel.get()?.get_sender()?;
    let receiver: receiver::Client = channel.get()?.get_receiver()?;
    // Sent, never awaited: each stays in flight on the host until it
    // answers, which it never does.
    let pending: Vec<_> = (0..calls)
        .map(|_| receiver.recv_request().send().promise)
        .collect();
    println!("sent {calls} calls");
    ww_guest::sleep(hold).await;
    drop(pending);
    Ok(())
}
