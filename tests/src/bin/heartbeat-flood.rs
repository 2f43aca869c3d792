//! A peer that floods a host with signed fake heartbeats, for the
//! end-to-end tests of the cluster view's budget.
//!
//! Usage: `heartbeat-flood ADDR COUNT VICTIM`. Connects to the host at
//! `ADDR` and, once a second until killed, publishes on the heartbeat topic
//! `COUNT` heartbeats of hosts that do not exist, each correctly signed by
//! a key of its own (made up here: anyone can), naming a closed loopback
//! port; then a forged heartbeat of the real host `VICTIM` (a peer id),
//! signed by this peer's key under the victim's name, naming
//! `/dns4/forged-N.invalid/tcp/9`; then this peer's own heartbeat, which
//! names the round in an address (`/dns4/round-N.invalid/tcp/9`); and last
//! its own heartbeat again, correctly signed but sealed two minutes ago, as
//! a recording replayed after gossipsub forgot it would be, naming
//! `/dns4/stale-N.invalid/tcp/9`. Prints `peer ID` (its own), then
//! `round N` after each round.
//!
//! A host's node seals only with its own key, so this peer speaks gossipsub
//! by hand: one `/meshsub/1.1.0` stream, length-prefixed protobuf RPC
//! frames (the wire format of `libp2p-gossipsub`'s `rpc.proto`), each
//! message's data an envelope sealed by a fake's key. It also accepts the host's gossipsub streams and drains
//! them: a peer that refused them would have its gossipsub disabled by
//! the host, which would then ignore what it sends.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol};

const GOSSIPSUB: StreamProtocol = StreamProtocol::new("/meshsub/1.1.0");
const HEARTBEAT_TOPIC: &str = "/ww/0.1.0/heartbeat";
/// The longest TTL a host accepts, so that fakes would stay as long as
/// possible.
const FAKE_TTL_MS: u32 = 600_000;
/// Publications per frame, well under gossipsub's 5,000 per RPC.
const MESSAGES_PER_FRAME: usize = 64;
const ROUND_PAUSE_MS: u64 = 1_000;
/// How long ago the replayed heartbeat claims to have been sealed: past a
/// host's clock window (`PUBSUB_ENVELOPE_SKEW_MS_MAX`).
const STALE_AGE_US: u64 = 120_000_000;

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A length-delimited protobuf field.
fn field(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    varint(out, (number << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A gossipsub `Message` carrying `data` sealed by `key` (the host's
/// envelope, `ww_net::signed`): fields `data` (2) and `topic` (4), anonymous
/// as hosts send them.
fn signed_message(key: &Keypair, data: &[u8], seqno: u64) -> Result<Vec<u8>> {
    let sealed =
        ww_net::signed::seal(key, HEARTBEAT_TOPIC, seqno, data).map_err(|err| anyhow!(err))?;
    let mut message = Vec::new();
    field(&mut message, 2, &sealed);
    field(&mut message, 4, HEARTBEAT_TOPIC.as_bytes());
    Ok(message)
}

/// A message sealed by `key` under `victim`'s name: the envelope's peer id
/// replaced by the victim's, the signature left as `key` made it.
fn forged_message(key: &Keypair, victim: &PeerId, data: &[u8], seqno: u64) -> Result<Vec<u8>> {
    let mut sealed =
        ww_net::signed::seal(key, HEARTBEAT_TOPIC, seqno, data).map_err(|err| anyhow!(err))?;
    let (mine, theirs) = (key.public().to_peer_id().to_bytes(), victim.to_bytes());
    // Layout: version, the peer id's length, the peer id.
    if mine.len() != theirs.len() || sealed.get(2..2 + mine.len()) != Some(&mine[..]) {
        anyhow::bail!(
            "cannot put {victim}'s name on an envelope of {}",
            key.public().to_peer_id()
        );
    }
    sealed[2..2 + theirs.len()].copy_from_slice(&theirs);
    let mut message = Vec::new();
    field(&mut message, 2, &sealed);
    field(&mut message, 4, HEARTBEAT_TOPIC.as_bytes());
    Ok(message)
}

fn heartbeat(peer: &PeerId, addrs: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "peer_id": peer.to_base58(),
        "addrs": addrs,
        "ttl_ms": FAKE_TTL_MS,
    }))
    .unwrap_or_default()
}

/// A frame: the RPC's length, then the RPC (`subscriptions` 1, `publish` 2).
fn frame(subscribe: bool, messages: &[Vec<u8>]) -> Vec<u8> {
    let mut rpc = Vec::new();
    if subscribe {
        let mut sub = vec![0x08, 0x01];
        field(&mut sub, 2, HEARTBEAT_TOPIC.as_bytes());
        field(&mut rpc, 1, &sub);
    }
    for message in messages {
        field(&mut rpc, 2, message);
    }
    let mut out = Vec::new();
    varint(&mut out, rpc.len() as u64);
    out.extend_from_slice(&rpc);
    out
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, count, victim] = args.as_slice() else {
        anyhow::bail!("usage: heartbeat-flood ADDR COUNT VICTIM");
    };
    let addr: Multiaddr = addr.parse().context("ADDR")?;
    let count: usize = count.parse().context("COUNT")?;
    let victim: PeerId = victim.parse().context("VICTIM")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio::task::LocalSet::new().block_on(&runtime, flood(addr, count, victim))
}

async fn flood(addr: Multiaddr, count: usize, victim: PeerId) -> Result<()> {
    let key = Keypair::generate_ed25519();
    let me = key.public().to_peer_id();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .map_err(|err| anyhow!("behaviour: {err}"))?
        .with_swarm_config(|config| config.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    let mut control = swarm.behaviour().new_control();
    let mut incoming = control
        .accept(GOSSIPSUB)
        .map_err(|err| anyhow!("accepting gossipsub: {err}"))?;
    swarm.dial(addr.clone())?;
    let host = loop {
        match swarm.select_next_some().await {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => break peer_id,
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                anyhow::bail!("dialing {addr}: {error}")
            }
            _ => {}
        }
    };
    tokio::task::spawn_local(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    tokio::task::spawn_local(async move {
        while let Some((_, mut stream)) = incoming.next().await {
            tokio::task::spawn_local(async move {
                let mut sink = [0u8; 16 * 1024];
                while matches!(stream.read(&mut sink).await, Ok(read) if read > 0) {}
            });
        }
    });
    let mut stream = control
        .open_stream(host, GOSSIPSUB)
        .await
        .map_err(|err| anyhow!("opening gossipsub to {host}: {err}"))?;
    stream.write_all(&frame(true, &[])).await?;

    // A port nothing listens on, so a host that dials a fake fails at once.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let fake_addrs = vec![format!("/ip4/127.0.0.1/tcp/{closed_port}")];
    let fakes: Vec<Keypair> = (0..count).map(|_| Keypair::generate_ed25519()).collect();
    let mut out = std::io::stdout();
    writeln!(out, "peer {me}")?;
    for round in 1u64.. {
        let mut messages = Vec::with_capacity(count + 3);
        // Seal times, as a host's sealer stamps them.
        let now_us = ww_net::signed::now_us();
        for fake in &fakes {
            let data = heartbeat(&fake.public().to_peer_id(), &fake_addrs);
            messages.push(signed_message(fake, &data, now_us)?);
        }
        // Last, on the same stream: once the host lists this peer, it has
        // processed every fake before it.
        // It names the round in an address the host keeps (never dials:
        // it is connected, and has no DNS transport).
        let forged = heartbeat(&victim, &[format!("/dns4/forged-{round}.invalid/tcp/9")]);
        messages.push(forged_message(&key, &victim, &forged, now_us)?);
        let mine = heartbeat(&me, &[format!("/dns4/round-{round}.invalid/tcp/9")]);
        messages.push(signed_message(&key, &mine, now_us + 1)?);
        let stale = heartbeat(&me, &[format!("/dns4/stale-{round}.invalid/tcp/9")]);
        messages.push(signed_message(&key, &stale, now_us - STALE_AGE_US)?);
        for chunk in messages.chunks(MESSAGES_PER_FRAME) {
            stream.write_all(&frame(false, chunk)).await?;
        }
        stream.flush().await?;
        writeln!(out, "round {round}")?;
        out.flush()?;
        tokio::time::sleep(Duration::from_millis(ROUND_PAUSE_MS)).await;
    }
    Ok(())
}
