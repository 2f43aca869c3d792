//! `ww pub` and `ww sub`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args as ClapArgs;

use super::connect::PeerArgs;

#[derive(ClapArgs, Debug)]
pub struct PubArgs {
    #[command(flatten)]
    peers: PeerArgs,
    /// Read the message from this file instead of the command line.
    #[arg(long, conflicts_with = "message")]
    file: Option<std::path::PathBuf>,
    /// The topic.
    topic: String,
    /// The message.
    #[arg(required_unless_present = "file")]
    message: Option<String>,
}

#[derive(ClapArgs, Debug)]
pub struct SubArgs {
    #[command(flatten)]
    peers: PeerArgs,
    /// Print each message as a JSON object with its sender.
    #[arg(long)]
    json: bool,
    /// Exit after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Messages buffered on the host while this command is slow to print.
    #[arg(long, default_value_t = 1024)]
    buffer: u32,
    /// The topic.
    topic: String,
}

async fn join(session: &super::connect::Session, topic: &str) -> Result<ww_api::topic::Client> {
    let pubsub = session.host.pubsub_request().send().pipeline.get_pubsub();
    let mut request = pubsub.join_request();
    request.get().set_topic(topic);
    let response = request
        .send()
        .promise
        .await
        .with_context(|| format!("joining topic {topic:?}"))?;
    Ok(response.get()?.get_topic()?)
}

pub async fn publish(args: PubArgs) -> Result<ExitCode> {
    let message = match (&args.file, args.message) {
        (Some(path), _) => {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
        }
        (None, Some(message)) => message.into_bytes(),
        (None, None) => anyhow::bail!("give a MESSAGE or --file PATH"),
    };
    let session = args.peers.connect().await?;
    let topic = join(&session, &args.topic).await?;
    let mut request = topic.publish_request();
    request.get().set_data(&message);
    request
        .send()
        .promise
        .await
        .with_context(|| format!("publishing to {:?}", args.topic))?;
    Ok(ExitCode::SUCCESS)
}

pub async fn subscribe(args: SubArgs) -> Result<ExitCode> {
    let session = args.peers.connect().await?;
    let topic = join(&session, &args.topic).await?;
    let mut request = topic.subscribe_request();
    request.get().set_buffer(args.buffer);
    let subscription = request
        .send()
        .promise
        .await
        .with_context(|| format!("subscribing to {:?}", args.topic))?
        .get()?
        .get_subscription()?;
    // Scripts and tests wait for this line before publishing.
    eprintln!("subscribed to {} on {}", args.topic, session.peer);
    let mut stdout = std::io::stdout().lock();
    let mut received = 0u64;
    while args.count.is_none_or(|count| received < count) {
        let response = subscription
            .next_request()
            .send()
            .promise
            .await
            .context("the host ended the subscription")?;
        let message = response.get()?.get_message()?;
        let data = message.get_data()?;
        let dropped = message.get_dropped();
        if dropped > 0 {
            eprintln!("ww: {dropped} messages dropped: this subscriber is too slow");
        }
        if args.json {
            let line = serde_json::json!({
                "data": String::from_utf8_lossy(data),
                "from": message.get_from()?.to_str()?,
            });
            writeln!(stdout, "{line}")?;
        } else {
            stdout.write_all(data)?;
            stdout.write_all(b"\n")?;
        }
        stdout.flush()?;
        received += 1;
    }
    Ok(ExitCode::SUCCESS)
}
