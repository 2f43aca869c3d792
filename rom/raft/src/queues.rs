//! Queue subcommands.

use anyhow::{bail, Context};
use queue::limits::BATCH_MESSAGES_MAX;
use queue::{ClientError, Delivery, Nack, NewMessage, QueueError, Receipt};
use raft_client::{Group, GuestRuntime};
use serde_json::json;
use ww_guest::progress::{self, Progress};

use ww_guest::args::Args;

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

fn print_delivery(delivery: &Delivery) {
    println!(
        "{}:{} delivery {} {}",
        delivery.id,
        delivery.token,
        delivery.acquired,
        String::from_utf8_lossy(&delivery.body)
    );
}

/// Leases up to `n` messages in batches of at most
/// [`BATCH_MESSAGES_MAX`] (the most one lease may take), showing progress
/// when it takes more than one, until `n` are leased or the topic has no
/// more ready (or the consumer holds its in-flight limit). Without `json` each batch is printed as it arrives.
async fn lease_many<T: queue::Transport>(
    client: &queue::Client<T>,
    topic: &str,
    consumer: &str,
    n: u32,
    lease_ms: Option<u64>,
    json: bool,
) -> anyhow::Result<Vec<Delivery>> {
    if n == 0 {
        bail!("--n must be at least 1");
    }
    let batch_max = BATCH_MESSAGES_MAX as u32;
    let mut progress = (n > batch_max).then(Progress::stderr);
    let mut all = Vec::new();
    let mut leased = 0;
    while leased < n {
        if let Some(progress) = &mut progress {
            let live = progress.is_live();
            progress.update(&progress::count("leased", leased.into(), n.into(), live));
        }
        let want = (n - leased).min(batch_max);
        let batch = match client.lease(topic, consumer, want, lease_ms).await {
            Ok(batch) => batch,
            // The first batches took all this consumer may hold: keep them.
            Err(ClientError::Queue(QueueError::InFlightLimit { max, .. })) if leased > 0 => {
                let note = format!("stopped at the consumer's in-flight limit ({max} leases)");
                match &mut progress {
                    Some(progress) => progress.println(&note),
                    None => eprintln!("{note}"),
                }
                break;
            }
            Err(err) => return Err(err.into()),
        };
        leased += batch.len() as u32;
        // A short batch may be cut by size or by the in-flight limit; only an
        // empty one says there is nothing more to lease.
        let drained = batch.is_empty();
        if !json {
            if let Some(progress) = &mut progress {
                progress.hide();
            }
            batch.iter().for_each(print_delivery);
        }
        all.extend(batch);
        if drained {
            break;
        }
    }
    if let Some(progress) = progress {
        let live = progress.is_live();
        progress.finish_with(&progress::count("leased", leased.into(), n.into(), live));
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
            let deliveries = lease_many(&client, &topic, &consumer, n, lease_ms, json).await?;
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
            } else if deliveries.is_empty() {
                eprintln!("(no message ready on {topic})");
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
