//! `ww start`: run a host until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use serde::Serialize;
use tracing::{info, warn};

use super::connect::DEFAULT_ADDR;
use crate::cap::host::HostServer;
use crate::net::{identity, HeartbeatConfig, Node, NodeConfig};

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Address to listen on. Repeatable.
    #[arg(long = "listen", default_value = DEFAULT_ADDR)]
    listen: Vec<Multiaddr>,
    /// A peer to join. Repeatable, or a comma-separated list in WW_PEERS.
    #[arg(long = "peer", env = "WW_PEERS", value_delimiter = ',')]
    peers: Vec<Multiaddr>,
    /// Where the host keeps its identity key, compiled ROMs and volumes.
    #[arg(long, env = "WW_DATA_DIR", default_value = ".ww")]
    data_dir: PathBuf,
    /// Where compiled ROMs are cached (default: DATA_DIR/cache).
    #[arg(long, env = "WW_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// The cluster's pre-shared key file (`ww keygen`): only peers with the
    /// same key can connect.
    #[arg(long = "key", env = "WW_KEY")]
    key: Option<PathBuf>,
    /// Listen on addresses other than loopback without a cluster key. Then
    /// anyone who can reach the host can join the cluster and run code on
    /// it: only for a network you control end to end.
    #[arg(long)]
    insecure: bool,
    /// Serve the operator view on this address (`127.0.0.1:9100`; port 0
    /// picks one): Prometheus metrics at /metrics, a live status page at /.
    /// Loopback only unless --insecure: the view has no authentication.
    #[arg(long = "http")]
    http: Option<std::net::SocketAddr>,
    /// Print the peer id and addresses as one JSON line.
    #[arg(long)]
    json: bool,
    /// Most a process's volume may hold on disk, in MiB: a file write past
    /// it fails in the guest, as on a full disk.
    #[arg(long, default_value_t = crate::limits::VOLUME_BYTES_MAX_DEFAULT / (1024 * 1024))]
    volume_limit_mb: u64,
    /// Most linear memory the host's processes may hold together, in MiB:
    /// a growth past it traps the process that asked.
    #[arg(long, default_value_t = crate::limits::GUEST_MEMORY_BYTES_MAX_DEFAULT / (1024 * 1024))]
    guest_memory_limit_mb: usize,
    /// Refuse a process's file open while the host holds this many
    /// descriptors (sockets and files), so that its processes cannot take
    /// the ones it needs to serve. Default: its open files limit, raised
    /// to the hard limit at start, less a quarter.
    #[arg(long)]
    descriptors_max: Option<usize>,
    /// The part of the host's event loop its computing processes get
    /// together, in percent (1 to 100). Every computing slice can delay
    /// the host's replicas and RPC; raise it on a host that only computes.
    #[arg(long, default_value_t = crate::limits::GUESTS_CPU_PERCENT_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    guests_cpu_percent: u32,
    /// Time between heartbeats.
    #[arg(long, default_value_t = HeartbeatConfig::default().interval_ms)]
    heartbeat_ms: u64,
    /// How long peers keep this host in their view after a heartbeat.
    #[arg(long, default_value_t = HeartbeatConfig::default().ttl_ms)]
    ttl_ms: u32,
}

#[derive(Serialize)]
struct Started {
    peer_id: String,
    addrs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<String>,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    // Refused before anything is created or bound: a host on a shared
    // network without a key is open to anyone who can reach it.
    let exposed: Vec<&Multiaddr> = args.listen.iter().filter(|a| !is_loopback(a)).collect();
    if args.key.is_none() && !exposed.is_empty() {
        if !args.insecure {
            bail!(
                "refusing to listen on {} without a cluster key: anyone who can reach it could \
                 join the cluster and run code. Create a key with `ww keygen > cluster.key` and \
                 pass `--key cluster.key` to every host, or pass --insecure on a network you control",
                exposed.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            );
        }
        warn!(
            "--insecure: listening on {} with no cluster key: anyone who can reach it can join \
             and run code",
            exposed
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(http) = args.http {
        if !http.ip().is_loopback() && !args.insecure {
            bail!(
                "refusing to serve the operator view on {http}: it has no authentication and shows \
                 the whole host; use a loopback address (127.0.0.1:PORT), or pass --insecure on a \
                 network you control"
            );
        }
    }
    crate::private::create_dir(&args.data_dir)
        .and_then(|()| crate::private::tighten(&args.data_dir))
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let keypair = identity::load_or_create(&args.data_dir.join(identity::KEY_FILE))?;
    let psk = args.key.as_deref().map(identity::load_psk).transpose()?;
    let node = Node::start(NodeConfig {
        keypair,
        listen: args.listen.clone(),
        bootstrap: args.peers.clone(),
        psk,
        heartbeat: Some(HeartbeatConfig {
            interval_ms: args.heartbeat_ms.max(1),
            ttl_ms: args.ttl_ms.max(1),
        }),
    })
    .await?;
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| args.data_dir.join("cache"));
    let open_files_limit = crate::runner::raise_open_files_limit();
    let descriptors_max = args
        .descriptors_max
        .unwrap_or_else(|| crate::runner::default_descriptors_max(open_files_limit));
    tracing::info!(
        "open files limit {open_files_limit}; processes' opens are refused at {descriptors_max} descriptors"
    );
    let runtime = crate::runner::Runtime::new(
        Some(cache_dir),
        crate::runner::Budgets {
            guest_memory_bytes_max: args.guest_memory_limit_mb.saturating_mul(1024 * 1024),
            descriptors_max,
            guests_cpu_percent: args.guests_cpu_percent,
        },
    )?;
    let ctx = HostServer::context(node.clone(), args.data_dir.clone(), runtime);
    ctx.processes
        .set_volume_bytes_max(args.volume_limit_mb.saturating_mul(1024 * 1024));
    crate::rpc::serve(ctx.clone())?;
    let http = match args.http {
        Some(addr) => Some(crate::ops::serve(ctx.clone(), addr).await?),
        None => None,
    };
    // Respawn in the background: the JSON line below must not wait for
    // ROMs to compile.
    let respawn = ctx.clone();
    tokio::task::spawn_local(
        async move { crate::cap::executor::respawn_supervised(&respawn).await },
    );

    let started = Started {
        peer_id: node.peer_id().to_base58(),
        addrs: node
            .listen_addrs()
            .iter()
            .map(ToString::to_string)
            .collect(),
        http: http.map(|addr| addr.to_string()),
    };
    if args.json {
        println!("{}", serde_json::to_string(&started)?);
    } else {
        println!("peer id: {}", started.peer_id);
        for addr in &started.addrs {
            println!("listening on {addr}");
        }
        if let Some(http) = &started.http {
            println!("operator view on http://{http}/");
        }
    }
    info!(peer_id = %started.peer_id, "host started");

    wait_for_shutdown().await?;
    info!("shutting down");
    Ok(ExitCode::SUCCESS)
}

fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|protocol| match protocol {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

async fn wait_for_shutdown() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = interrupt.recv() => info!("SIGINT"),
        _ = terminate.recv() => info!("SIGTERM"),
    }
    Ok(())
}
