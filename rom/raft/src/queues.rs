//! Queue subcommands.

use anyhow::{bail, Context};
use queue::{Nack, NewMessage, Receipt};
use raft_client::{Group, GuestRuntime};
use serde_json::json;

use crate::args::Args;

fn receipt(text: &str) -> anyhow::Result<Receipt> {
    let (id, token) = text
        .split_once(':')
        .with_context(|| format!("receipt {text:?} is not ID:TOKEN (as `lease` prints it)"))?;
    Ok(Receipt {
        id: id.parse().with_context(|| format!("receipt id {id:?}"))?,
        token: token
            .parse()
            .with_context(|| format!("receipt token {token:?}"))?,
    })
}

fn receipts(args: &mut Args) -> anyhow::Result<Vec<Receipt>> {
    let all: Vec<Receipt> = args
        .rest()
        .iter()
        .map(|text| receipt(text))
        .collect::<anyhow::Result<_>>()?;
    if all.is_empty() {
        bail!("give at least one RECEIPT (ID:TOKEN, as `lease` prints it)");
    }
    Ok(all)
}

pub async fn run(
    group: &Group<GuestRuntime>,
    command: &str,
    args: &mut Args,
) -> anyhow::Result<()> {
    let session = group.session();
    let client = queue::Client::new(&session);
    let json = args.flag("--json");
    match command {
        "enqueue" => {
            let topic = args.required("TOPIC")?;
            let messages: Vec<NewMessage> = args.rest().into_iter().map(NewMessage::new).collect();
            if messages.is_empty() {
                bail!("give at least one MSG");
            }
            let enqueued = client.enqueue_batch(&topic, messages).await?;
            let ids: Vec<u64> = enqueued.iter().map(|message| message.id).collect();
            if json {
                println!("{}", json!({ "topic": topic, "ids": ids }));
            } else {
                println!("enqueued {} on {topic}: ids {ids:?}", ids.len());
            }
        }
        "lease" => {
            let n: u32 = args.parsed("--n")?.unwrap_or(1);
            let lease_ms: Option<u64> = args.parsed("--lease-ms")?;
            let consumer = match args.option("--consumer") {
                Some(consumer) => consumer,
                None => format!("cli-{:x}", session.client_id().await?),
            };
            let topic = args.required("TOPIC")?;
            let deliveries = client.lease(&topic, &consumer, n, lease_ms).await?;
            if json {
                let messages: Vec<_> = deliveries
                    .iter()
                    .map(|delivery| {
                        json!({
                            "id": delivery.id,
                            "receipt": format!("{}:{}", delivery.id, delivery.token),
                            "delivery_count": delivery.acquired,
                            "failed": delivery.failed,
                            "deadline_ms": delivery.deadline_ms,
                            "body": String::from_utf8_lossy(&delivery.body),
                        })
                    })
                    .collect();
                println!("{}", json!({ "topic": topic, "messages": messages }));
            } else {
                for delivery in &deliveries {
                    println!(
                        "{}:{} delivery {} {}",
                        delivery.id,
                        delivery.token,
                        delivery.acquired,
                        String::from_utf8_lossy(&delivery.body)
                    );
                }
                if deliveries.is_empty() {
                    eprintln!("(no message ready on {topic})");
                }
            }
        }
        "ack" => {
            let topic = args.required("TOPIC")?;
            let outcomes = client.ack_batch(&topic, &receipts(args)?).await?;
            for outcome in outcomes {
                match outcome {
                    Ok(outcome) => println!("{outcome:?}"),
                    Err(err) => bail!("ack refused: {err}"),
                }
            }
        }
        "nack" => {
            let delay_ms: u64 = args.parsed("--delay-ms")?.unwrap_or(0);
            let topic = args.required("TOPIC")?;
            let outcomes = client
                .nack_batch(&topic, &receipts(args)?, Nack::Retry { delay_ms })
                .await?;
            for outcome in outcomes {
                outcome.map_err(|err| anyhow::anyhow!("nack refused: {err}"))?;
            }
            println!("nacked");
        }
        "extend" => {
            let lease_ms: Option<u64> = args.parsed("--lease-ms")?;
            let topic = args.required("TOPIC")?;
            let outcomes = client
                .extend_batch(&topic, &receipts(args)?, lease_ms)
                .await?;
            for outcome in outcomes {
                let deadline = outcome.map_err(|err| anyhow::anyhow!("extend refused: {err}"))?;
                println!("extended to {deadline:?}");
            }
        }
        "stats" => match args.next() {
            Some(topic) => {
                let stats = client.stats(&topic).await?;
                println!(
                    "{}",
                    json!({
                        "topic": stats.topic,
                        "ready": stats.ready,
                        "leased": stats.leased,
                        "delayed": stats.delayed,
                        "dead": stats.dead,
                        "oldest_ready_age_ms": stats.oldest_ready_age_ms,
                    })
                );
            }
            None => {
                for topic in client.topics().await? {
                    println!("{topic:?}");
                }
            }
        },
        "peek" => {
            let n: u32 = args.parsed("--n")?.unwrap_or(10);
            let topic = args.required("TOPIC")?;
            for message in client.peek(&topic, None, n).await? {
                println!(
                    "{} {:?} acquired {} failed {} {}",
                    message.id,
                    message.state,
                    message.acquired,
                    message.failed,
                    String::from_utf8_lossy(&message.body)
                );
            }
        }
        "purge" => {
            let topic = args.required("TOPIC")?;
            let purged = client.purge(&topic).await?;
            println!("purged {purged} messages from {topic}");
        }
        other => bail!("unknown queue command {other}"),
    }
    Ok(())
}
