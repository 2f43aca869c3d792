//! `put`, `get`, `delete`, `cas`.

use anyhow::{bail, Context};
use raft_client::{Group, GuestRuntime};

use ww_guest::args::Args;

pub async fn run(
    group: &Group<GuestRuntime>,
    command: &str,
    args: &mut Args,
) -> anyhow::Result<()> {
    let session = group.session();
    let client = queue::Client::new(&session);
    let key = args.required("KEY")?;
    match command {
        "put" => {
            let value = args.required("VALUE")?;
            let version = client.put(key.as_bytes(), value.as_bytes()).await?;
            println!("ok {key} version {version}");
        }
        "get" => match client.get(key.as_bytes()).await? {
            Some(found) => println!("{}", String::from_utf8_lossy(&found.value)),
            None => bail!("{key} not found"),
        },
        "delete" => {
            let version = client.delete(key.as_bytes()).await?;
            println!("deleted {key} (was version {version})");
        }
        "cas" => {
            let old = args.required("OLD")?;
            let new = args.required("NEW")?;
            let current = client
                .get(key.as_bytes())
                .await?
                .context("no such key; cas needs the current value")?;
            if current.value != old.as_bytes() {
                bail!(
                    "cas refused: {key} is {:?}, not {old:?}",
                    String::from_utf8_lossy(&current.value)
                );
            }
            // The version makes it atomic: a write in between fails it.
            let version = client
                .cas(key.as_bytes(), current.version, Some(new.into_bytes()))
                .await?;
            println!("ok {key} version {version}");
        }
        other => bail!("unknown KV command {other}"),
    }
    Ok(())
}
