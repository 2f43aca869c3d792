//! The libp2p node: a swarm driven by one task on the host's thread, and a
//! handle that the rest of the host uses to ask things of it.
//!
//! The swarm runs on the same thread as every capnp `RpcSystem` of the host:
//! a swarm on its own thread doubled the CPU of a host-to-host call in
//! our measurements, and capnp objects cannot leave their thread
//! anyway. Requests reach the swarm task over an unbounded channel whose
//! senders are all on this thread, so a request costs a wakeup, not a
//! thread hop.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, PublishError};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{
    connection_limits, identify, noise, ping, tcp, yamux, Multiaddr, PeerId, Swarm, Transport as _,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::inbound::{self, InboundStream};
use super::limits::{
    CONNECTIONS_MAX, CONNECTIONS_PENDING_INCOMING_MAX, CONNECTIONS_PENDING_OUTGOING_MAX,
    CONNECTIONS_PER_PEER_MAX, PENDING_PUBLISHES_BYTES_MAX, PENDING_PUBLISHES_MAX, PUBSUB_SEEN_MS,
};
use super::pubsub::{Hub, Membership};
use super::signed::{self, Sealer};
use super::view::{Admission, Heartbeat, View};

/// The protocol on which every host serves capnp-rpc (bootstrap: `Host`).
pub const RPC_PROTOCOL: libp2p::StreamProtocol = libp2p::StreamProtocol::new("/ww/0.1.0/rpc");

/// The gossipsub topic carrying heartbeats.
pub const HEARTBEAT_TOPIC: &str = "/ww/0.1.0/heartbeat";

pub use crate::limits::{INBOUND_STREAMS_QUEUED_MAX, PUBSUB_MESSAGE_BYTES_MAX};

/// How long a publish may wait for a first subscriber before it fails.
/// Gossipsub drops a publication made before any peer's subscription has
/// arrived, which happens routinely right after connecting.
pub const PUBLISH_WAIT_MS: u64 = 5_000;

/// How long to wait for a dial to connect.
pub const DIAL_TIMEOUT_MS: u64 = 5_000;

/// How long an unused connection stays open.
const IDLE_CONNECTION_MS: u64 = 60_000;

/// Bytes of a gossipsub message id (a prefix of the BLAKE3 hash of the
/// message's bytes): 160 bits, so that no one finds two messages with one
/// id, which would let the first suppress the second.
const MESSAGE_ID_BYTES: usize = 20;

/// Inbound RPC streams, in the order they were negotiated. Poll it
/// continuously.
pub type IncomingStreams = mpsc::Receiver<(PeerId, libp2p::Stream)>;

/// Where the swarm task puts inbound RPC streams, once someone accepts.
type AcceptSlot = Rc<RefCell<Option<mpsc::Sender<(PeerId, libp2p::Stream)>>>>;

/// Heartbeat settings of a host. Clients (`ww run`, `ww ls`...) have none:
/// they never appear in the view.
#[derive(Clone, Copy, Debug)]
pub struct HeartbeatConfig {
    /// Time between heartbeats.
    pub interval_ms: u64,
    /// How long other hosts keep this one after its last heartbeat.
    pub ttl_ms: u32,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            interval_ms: 1_000,
            ttl_ms: 6_000,
        }
    }
}

/// How to start a node.
pub struct NodeConfig {
    /// The node's identity.
    pub keypair: Keypair,
    /// Addresses to listen on (none for clients).
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start and keep dialing until connected.
    pub bootstrap: Vec<Multiaddr>,
    /// `Some` for hosts.
    pub heartbeat: Option<HeartbeatConfig>,
    /// The cluster's pre-shared key, if it is a private network.
    pub psk: Option<PreSharedKey>,
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    /// First, so a connection past a limit is denied before any other
    /// behaviour sets up state for it.
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    gossipsub: gossipsub::Behaviour,
    /// Outbound streams (and inbound ones on protocols other than RPC).
    stream: libp2p_stream::Behaviour,
    /// Inbound RPC streams, queued rather than dropped (see `inbound`).
    inbound: inbound::Behaviour,
}

enum Command {
    Publish {
        topic: String,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<()>>,
    },
    Join(String),
    Leave(String),
    Connect {
        peer: PeerId,
        reply: oneshot::Sender<Result<()>>,
    },
    DialAddr {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId>>,
    },
    IsConnected {
        peer: PeerId,
        reply: oneshot::Sender<bool>,
    },
}

/// The handle to a running node. Cheap to clone; `!Send` (it lives on the
/// host's thread).
#[derive(Clone)]
pub struct Node {
    peer_id: PeerId,
    commands: mpsc::UnboundedSender<Command>,
    control: Rc<RefCell<libp2p_stream::Control>>,
    view: Rc<RefCell<View>>,
    hub: Rc<Hub>,
    listen_addrs: Rc<Vec<Multiaddr>>,
    /// Where the swarm task puts inbound RPC streams, once someone accepts.
    accepted: AcceptSlot,
}

struct Joiner(mpsc::UnboundedSender<Command>);

impl Membership for Joiner {
    fn join(&self, topic: &str) {
        let _ = self.0.send(Command::Join(topic.to_owned()));
    }
    fn leave(&self, topic: &str) {
        let _ = self.0.send(Command::Leave(topic.to_owned()));
    }
}

impl Node {
    /// Starts a node on the current `LocalSet` and waits until it listens
    /// on every address in `config.listen`.
    ///
    /// # Errors
    ///
    /// When the transport cannot be built or an address cannot be listened on.
    pub async fn start(config: NodeConfig) -> Result<Node> {
        let peer_id = config.keypair.public().to_peer_id();
        let sealer = Sealer::new(config.keypair.clone());
        let mut swarm = build_swarm(config.keypair, config.psk)?;
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .with_context(|| format!("listening on {addr}"))?;
        }
        let mut listen_addrs = Vec::new();
        while listen_addrs.len() < config.listen.len() {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { address, .. } => {
                    listen_addrs.push(address.with(Protocol::P2p(peer_id)));
                }
                SwarmEvent::ListenerError { error, .. } => {
                    return Err(anyhow!("listener failed: {error}"));
                }
                SwarmEvent::ListenerClosed {
                    reason, addresses, ..
                } => {
                    return Err(anyhow!("listener on {addresses:?} closed: {reason:?}"));
                }
                _ => {}
            }
        }
        let control = swarm.behaviour().stream.new_control();
        let (commands, receiver) = mpsc::unbounded_channel();
        let view = Rc::new(RefCell::new(View::default()));
        let hub = Rc::new(Hub::default());
        let accepted = Rc::new(RefCell::new(None));
        let task = SwarmTask {
            accepted: accepted.clone(),
            swarm,
            peer_id,
            receiver,
            view: view.clone(),
            hub: hub.clone(),
            heartbeat: config.heartbeat,
            listen_addrs: listen_addrs.clone(),
            bootstrap: config
                .bootstrap
                .into_iter()
                .map(|addr| (addr, None))
                .collect(),
            pending_publishes: Vec::new(),
            pending_connects: HashMap::new(),
            pending_dials: HashMap::new(),
            dialing: HashSet::new(),
            heartbeats_refused: 0,
            envelopes_out_of_window: 0,
            sealer,
        };
        tokio::task::spawn_local(task.run());
        Ok(Node {
            peer_id,
            commands,
            control: Rc::new(RefCell::new(control)),
            view,
            hub,
            listen_addrs: Rc::new(listen_addrs),
            accepted,
        })
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The addresses this node listens on, each ending in `/p2p/<peer id>`.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    /// The cluster view.
    pub fn view(&self) -> std::cell::Ref<'_, View> {
        self.view.borrow()
    }

    /// Publishes `data` on `topic`, to local and remote subscribers.
    ///
    /// # Errors
    ///
    /// When nobody subscribed to the topic within [`PUBLISH_WAIT_MS`], the
    /// message is too big, or the node has stopped.
    pub async fn publish(&self, topic: &str, data: Vec<u8>) -> Result<()> {
        let (reply, result) = oneshot::channel();
        self.send(Command::Publish {
            topic: topic.to_owned(),
            data,
            reply,
        })?;
        result.await.map_err(|_| anyhow!("the node has stopped"))?
    }

    /// Subscribes locally to `topic` with a buffer of `capacity` messages.
    pub fn subscribe(&self, topic: &str, capacity: usize) -> super::pubsub::Subscription {
        self.hub
            .subscribe(topic, capacity, Rc::new(Joiner(self.commands.clone())))
    }

    /// Makes sure this node is connected to `peer`, dialing the addresses the
    /// view knows for it.
    ///
    /// # Errors
    ///
    /// When the peer is unknown or cannot be reached within
    /// [`DIAL_TIMEOUT_MS`].
    pub async fn connect(&self, peer: PeerId) -> Result<()> {
        let (reply, result) = oneshot::channel();
        self.send(Command::Connect { peer, reply })?;
        timed(result).await?
    }

    /// Dials `addr` and returns the peer id that answered. When `addr`
    /// ends in the `/p2p/` id of a peer already connected, that
    /// connection is used instead.
    ///
    /// # Errors
    ///
    /// When nothing answers within [`DIAL_TIMEOUT_MS`].
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId> {
        let (reply, result) = oneshot::channel();
        self.send(Command::DialAddr {
            addr: addr.clone(),
            reply,
        })?;
        timed(result)
            .await
            .with_context(|| format!("dialing {addr}"))?
            .with_context(|| format!("dialing {addr}"))
    }

    /// Whether a connection to `peer` is open.
    pub async fn is_connected(&self, peer: PeerId) -> bool {
        let (reply, result) = oneshot::channel();
        if self.send(Command::IsConnected { peer, reply }).is_err() {
            return false;
        }
        result.await.unwrap_or(false)
    }

    /// Opens a stream to `peer` on `protocol`. The peer must be connected.
    ///
    /// # Errors
    ///
    /// When the peer does not speak the protocol or the connection fails.
    pub async fn open_stream(
        &self,
        peer: PeerId,
        protocol: libp2p::StreamProtocol,
    ) -> Result<libp2p::Stream> {
        let mut control = self.control.borrow().clone();
        let open = control.open_stream(peer, protocol.clone());
        match tokio::time::timeout(Duration::from_millis(DIAL_TIMEOUT_MS), open).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(err)) => Err(anyhow!("opening {protocol} to {peer}: {err}")),
            Err(_) => Err(anyhow!(
                "opening {protocol} to {peer}: timed out after {DIAL_TIMEOUT_MS} ms"
            )),
        }
    }

    /// Accepts inbound streams on [`RPC_PROTOCOL`]. Poll the result
    /// continuously: streams wait in it (up to
    /// [`INBOUND_STREAMS_QUEUED_MAX`]) until taken.
    ///
    /// # Errors
    ///
    /// When RPC streams are already being accepted.
    pub fn accept_rpc(&self) -> Result<IncomingStreams> {
        let mut accepted = self.accepted.borrow_mut();
        if accepted.as_ref().is_some_and(|sender| !sender.is_closed()) {
            return Err(anyhow!("accepting {RPC_PROTOCOL}: already accepted"));
        }
        let (sender, receiver) = mpsc::channel(INBOUND_STREAMS_QUEUED_MAX);
        *accepted = Some(sender);
        Ok(receiver)
    }

    fn send(&self, command: Command) -> Result<()> {
        self.commands
            .send(command)
            .map_err(|_| anyhow!("the node has stopped"))
    }
}

async fn timed<T>(result: oneshot::Receiver<T>) -> Result<T> {
    match tokio::time::timeout(Duration::from_millis(DIAL_TIMEOUT_MS), result).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(anyhow!("the node has stopped")),
        Err(_) => Err(anyhow!("timed out after {DIAL_TIMEOUT_MS} ms")),
    }
}

fn build_swarm(keypair: Keypair, psk: Option<PreSharedKey>) -> Result<Swarm<Behaviour>> {
    let builder = libp2p::SwarmBuilder::with_existing_identity(keypair).with_tokio();
    let swarm_config = |config: libp2p::swarm::Config| {
        config.with_idle_connection_timeout(Duration::from_millis(IDLE_CONNECTION_MS))
    };
    // Two branches because the builder's transport type differs; both end
    // in the same behaviour.
    let swarm = match psk {
        None => builder
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .context("building the TCP transport")?
            .with_behaviour(new_behaviour)
            .map_err(|err| anyhow!("building behaviour: {err}"))?
            .with_swarm_config(swarm_config)
            .build(),
        Some(psk) => builder
            .with_other_transport(
                |key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
                    // A private network: every connection starts with a
                    // handshake on the pre-shared key, before Noise; a peer
                    // without the key cannot even negotiate.
                    Ok(
                        tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                            .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
                            .upgrade(libp2p::core::upgrade::Version::V1Lazy)
                            .authenticate(noise::Config::new(key)?)
                            .multiplex(yamux::Config::default())
                            .timeout(Duration::from_millis(DIAL_TIMEOUT_MS)),
                    )
                },
            )
            .context("building the private-network transport")?
            .with_behaviour(new_behaviour)
            .map_err(|err| anyhow!("building behaviour: {err}"))?
            .with_swarm_config(swarm_config)
            .build(),
    };
    Ok(swarm)
}

fn new_behaviour(key: &Keypair) -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
    let gossipsub_config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_millis(500))
        // gossipsub carries envelopes this host signs and checks itself
        // (`signed`): its own signing would check every message's
        // signature before the host could refuse it by a cheap bound.
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        // Anonymous messages have no source and sequence number to be
        // named by; an envelope's bytes name it (its sequence number makes
        // each publication distinct).
        .message_id_fn(|message: &gossipsub::Message| {
            gossipsub::MessageId::new(&blake3::hash(&message.data).as_bytes()[..MESSAGE_ID_BYTES])
        })
        // Nothing is forwarded before this host has looked at it (see
        // `on_gossipsub`): a heartbeat the view refuses goes no further, so
        // one peer's flood of fakes costs the hosts it reaches directly,
        // not the whole cluster.
        .validate_messages()
        // An envelope sealed outside the clock window is refused
        // (`signed`); inside it, a copy is dropped as seen.
        .duplicate_cache_time(Duration::from_millis(PUBSUB_SEEN_MS))
        .max_transmit_size(PUBSUB_MESSAGE_BYTES_MAX + signed::ENVELOPE_OVERHEAD_BYTES_MAX + 4096)
        .build()
        .map_err(|err| format!("gossipsub config: {err}"))?;
    let gossipsub =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gossipsub_config)
            .map_err(|err| format!("gossipsub: {err}"))?;
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(CONNECTIONS_MAX))
        .with_max_established_per_peer(Some(CONNECTIONS_PER_PEER_MAX))
        .with_max_pending_incoming(Some(CONNECTIONS_PENDING_INCOMING_MAX))
        .with_max_pending_outgoing(Some(CONNECTIONS_PENDING_OUTGOING_MAX));
    Ok(Behaviour {
        limits: connection_limits::Behaviour::new(limits),
        identify: identify::Behaviour::new(identify::Config::new(
            "/ww/0.1.0".to_owned(),
            key.public(),
        )),
        ping: ping::Behaviour::default(),
        gossipsub,
        stream: libp2p_stream::Behaviour::new(),
        inbound: inbound::Behaviour::new(RPC_PROTOCOL),
    })
}

struct PendingPublish {
    topic: String,
    data: Vec<u8>,
    deadline: Instant,
    reply: oneshot::Sender<Result<()>>,
}

struct SwarmTask {
    swarm: Swarm<Behaviour>,
    accepted: AcceptSlot,
    peer_id: PeerId,
    receiver: mpsc::UnboundedReceiver<Command>,
    view: Rc<RefCell<View>>,
    hub: Rc<Hub>,
    heartbeat: Option<HeartbeatConfig>,
    listen_addrs: Vec<Multiaddr>,
    /// Bootstrap addresses, with the peer each one turned out to be.
    bootstrap: Vec<(Multiaddr, Option<PeerId>)>,
    pending_publishes: Vec<PendingPublish>,
    pending_connects: HashMap<PeerId, Vec<oneshot::Sender<Result<()>>>>,
    pending_dials: HashMap<ConnectionId, (Multiaddr, oneshot::Sender<Result<PeerId>>)>,
    /// Peers being dialed because of a heartbeat, so they are dialed once.
    dialing: HashSet<PeerId>,
    /// Heartbeats whose host the view did not admit, since the start.
    heartbeats_refused: u64,
    /// Envelopes refused for a seal time outside the clock window.
    envelopes_out_of_window: u64,
    /// Signs what this host publishes (see `signed`).
    sealer: Sealer,
}

impl SwarmTask {
    async fn run(mut self) {
        let heartbeat_topic = IdentTopic::new(HEARTBEAT_TOPIC);
        if self.heartbeat.is_some() {
            if let Err(err) = self
                .swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(&heartbeat_topic)
            {
                warn!("subscribing to heartbeats: {err}");
            }
        }
        let tick_ms = self.heartbeat.map_or(1_000, |config| config.interval_ms);
        let mut tick = tokio::time::interval(Duration::from_millis(tick_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweep = tokio::time::interval(Duration::from_millis(100));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_event(event),
                command = self.receiver.recv() => match command {
                    Some(command) => self.on_command(command),
                    // Every handle is gone: the host is shutting down.
                    None => break,
                },
                _ = tick.tick() => self.on_tick(&heartbeat_topic),
                _ = sweep.tick() => self.on_sweep(),
            }
        }
        debug!("swarm task stopped");
    }

    fn on_tick(&mut self, heartbeat_topic: &IdentTopic) {
        self.publish_heartbeat(heartbeat_topic);
        // Keep dialing bootstrap peers we are not connected to, so hosts may
        // start in any order and reconnect after a peer restarts.
        for index in 0..self.bootstrap.len() {
            let (addr, peer) = self.bootstrap[index].clone();
            let connected = peer.is_some_and(|peer| self.swarm.is_connected(&peer));
            if !connected {
                let opts = DialOpts::unknown_peer_id().address(addr.clone()).build();
                if let Err(err) = self.swarm.dial(opts) {
                    debug!("dialing bootstrap peer {addr}: {err}");
                }
            }
        }
    }

    /// Publishes this host's heartbeat (hosts only) and refreshes its own
    /// entry in the view.
    fn publish_heartbeat(&mut self, heartbeat_topic: &IdentTopic) {
        let Some(config) = self.heartbeat else {
            return;
        };
        let heartbeat = Heartbeat {
            peer_id: self.peer_id.to_base58(),
            addrs: self.listen_addrs.iter().map(ToString::to_string).collect(),
            ttl_ms: config.ttl_ms,
        };
        self.view.borrow_mut().observe(
            self.peer_id,
            self.listen_addrs.clone(),
            Duration::from_millis(u64::from(config.ttl_ms)),
            Instant::now(),
            true,
            self.peer_id,
        );
        let sealed = serde_json::to_vec(&heartbeat)
            .map_err(|err| err.to_string())
            .and_then(|bytes| self.sealer.seal(HEARTBEAT_TOPIC, &bytes));
        if let Ok(sealed) = sealed {
            match self
                .swarm
                .behaviour_mut()
                .gossipsub
                .publish(heartbeat_topic.clone(), sealed)
            {
                Ok(_) | Err(PublishError::NoPeersSubscribedToTopic) => {}
                Err(err) => debug!("heartbeat not published: {err}"),
            }
        }
    }

    fn on_sweep(&mut self) {
        let now = Instant::now();
        for peer in self.view.borrow_mut().prune(now) {
            info!(%peer, "host left the view (TTL passed)");
        }
        let (expired, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_publishes)
            .into_iter()
            .partition(|pending| pending.deadline <= now);
        self.pending_publishes = waiting;
        for pending in expired {
            let _ = pending.reply.send(Err(anyhow!(
                "no subscriber to topic {:?} appeared within {PUBLISH_WAIT_MS} ms; start a subscriber first",
                pending.topic
            )));
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { topic, data, reply } => {
                if data.len() > PUBSUB_MESSAGE_BYTES_MAX {
                    let _ = reply.send(Err(anyhow!(
                        "message of {} bytes exceeds the {PUBSUB_MESSAGE_BYTES_MAX}-byte pubsub limit",
                        data.len()
                    )));
                    return;
                }
                let local = self.hub.deliver(&topic, &data, &self.peer_id.to_base58());
                self.publish(
                    PendingPublish {
                        topic,
                        data,
                        deadline: Instant::now() + Duration::from_millis(PUBLISH_WAIT_MS),
                        reply,
                    },
                    local > 0,
                );
            }
            Command::Join(topic) => {
                if let Err(err) = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .subscribe(&IdentTopic::new(&topic))
                {
                    warn!(%topic, "gossipsub subscribe failed: {err}");
                }
            }
            Command::Leave(topic) => {
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .unsubscribe(&IdentTopic::new(&topic));
            }
            Command::Connect { peer, reply } => {
                if self.swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(()));
                    return;
                }
                let addrs = self
                    .view
                    .borrow()
                    .get(&peer)
                    .map(|entry| entry.addrs.clone());
                let Some(addrs) = addrs else {
                    let _ = reply.send(Err(anyhow!(
                        "host {peer} is not in the cluster view (unknown, or it stopped more than a TTL ago)"
                    )));
                    return;
                };
                let opts = DialOpts::peer_id(peer)
                    .addresses(addrs)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                if let Err(err) = self.swarm.dial(opts) {
                    if !matches!(err, libp2p::swarm::DialError::DialPeerConditionFalse(_)) {
                        let _ = reply.send(Err(anyhow!("dialing {peer}: {err}")));
                        return;
                    }
                }
                self.pending_connects.entry(peer).or_default().push(reply);
            }
            Command::DialAddr { addr, reply } => {
                // A connection to the peer the address names serves as
                // well as a new one; dialing again anyway would pile up
                // connections to a host a client reconnects to, up to
                // CONNECTIONS_PER_PEER_MAX, where dials are denied.
                if let Some(Protocol::P2p(peer)) = addr.iter().last() {
                    if self.swarm.is_connected(&peer) {
                        let _ = reply.send(Ok(peer));
                        return;
                    }
                }
                let opts = DialOpts::unknown_peer_id().address(addr.clone()).build();
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.pending_dials.insert(id, (addr, reply));
                    }
                    Err(err) => {
                        let _ = reply.send(Err(anyhow!("{err}")));
                    }
                }
            }
            Command::IsConnected { peer, reply } => {
                let _ = reply.send(self.swarm.is_connected(&peer));
            }
        }
    }

    fn publish(&mut self, pending: PendingPublish, delivered_locally: bool) {
        let topic = IdentTopic::new(&pending.topic);
        let sealed = match self.sealer.seal(&pending.topic, &pending.data) {
            Ok(sealed) => sealed,
            Err(err) => {
                let _ = pending.reply.send(Err(anyhow!(err)));
                return;
            }
        };
        match self.swarm.behaviour_mut().gossipsub.publish(topic, sealed) {
            Ok(_) => {
                let _ = pending.reply.send(Ok(()));
            }
            Err(PublishError::NoPeersSubscribedToTopic) if delivered_locally => {
                let _ = pending.reply.send(Ok(()));
            }
            Err(PublishError::NoPeersSubscribedToTopic) => {
                // Wait for a subscription to arrive (see PUBLISH_WAIT_MS),
                // within the host's budget for waiting publishes.
                let held_bytes: usize = self.pending_publishes.iter().map(|p| p.data.len()).sum();
                let waiting = self.pending_publishes.len();
                if waiting >= PENDING_PUBLISHES_MAX
                    || held_bytes + pending.data.len() > PENDING_PUBLISHES_BYTES_MAX
                {
                    let _ = pending.reply.send(Err(anyhow!(
                        "{waiting} publishes of {held_bytes} bytes in all already wait for a first subscriber on this host (at most {PENDING_PUBLISHES_MAX}, PENDING_PUBLISHES_MAX, and {PENDING_PUBLISHES_BYTES_MAX} bytes, PENDING_PUBLISHES_BYTES_MAX); publish once {:?} has a subscriber",
                        pending.topic
                    )));
                    return;
                }
                self.pending_publishes.push(pending);
            }
            Err(PublishError::Duplicate) => {
                let _ = pending.reply.send(Ok(()));
            }
            Err(err) => {
                let _ = pending
                    .reply
                    .send(Err(anyhow!("publishing to {:?}: {err}", pending.topic)));
            }
        }
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.on_gossipsub(event),
            SwarmEvent::Behaviour(BehaviourEvent::Inbound(InboundStream { peer, stream })) => {
                self.on_inbound(peer, stream);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                for addr in info.listen_addrs {
                    if is_dialable(&addr) {
                        self.swarm.add_peer_address(peer_id, addr);
                    }
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                debug!(%peer_id, "connected");
                self.dialing.remove(&peer_id);
                if self.view.borrow_mut().connected(&peer_id) {
                    info!(peer = %peer_id, "host joined the view");
                }
                if let Some((_, reply)) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                if let Some(replies) = self.pending_connects.remove(&peer_id) {
                    for reply in replies {
                        let _ = reply.send(Ok(()));
                    }
                }
                if let ConnectedPoint::Dialer { address, .. } = endpoint {
                    for (addr, peer) in &mut self.bootstrap {
                        if same_transport_addr(addr, &address) {
                            *peer = Some(peer_id);
                        }
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id,
                connection_id,
                error,
            } => {
                if let Some((addr, reply)) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Err(anyhow!("could not connect to {addr}: {error}")));
                }
                if let Some(peer) = peer_id {
                    self.dialing.remove(&peer);
                    if !self.swarm.is_connected(&peer) {
                        self.view.borrow_mut().forget_candidate(&peer);
                        if let Some(replies) = self.pending_connects.remove(&peer) {
                            for reply in replies {
                                let _ = reply
                                    .send(Err(anyhow!("could not connect to {peer}: {error}")));
                            }
                        }
                    }
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                debug!(%peer_id, "disconnected");
            }
            _ => {}
        }
    }

    /// Hands an inbound RPC stream to the accept loop. Dropping it (nobody
    /// accepts: a client node) resets it, so its opener gets an error.
    fn on_inbound(&mut self, peer: PeerId, stream: libp2p::Stream) {
        let accepted = self.accepted.borrow();
        let Some(sender) = accepted.as_ref() else {
            debug!(%peer, "dropping an inbound RPC stream: this node serves none");
            return;
        };
        if let Err(err) = sender.try_send((peer, stream)) {
            warn!(%peer, "refusing an inbound RPC stream: {err}");
        }
    }

    fn on_gossipsub(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                message,
                propagation_source,
                message_id,
            } => {
                let topic = message.topic.as_str();
                let heartbeat = topic == HEARTBEAT_TOPIC;
                // A heartbeat's signature is checked in `on_heartbeat`,
                // after the view's bounds; any other message's here.
                let opened = match signed::open(&message.data) {
                    Ok(opened) => opened,
                    Err(reason) => {
                        debug!(%propagation_source, %topic, "dropping a pubsub message: {reason}");
                        self.reject(&message_id, &propagation_source);
                        return;
                    }
                };
                // Too old for gossipsub to remember as seen: a replay.
                if let Err(reason) = opened.check_age(signed::now_us()) {
                    self.envelopes_out_of_window += 1;
                    // Logged at 1, 2, 4, 8... refusals.
                    if self.envelopes_out_of_window.is_power_of_two() {
                        warn!(%propagation_source, %topic, refused = self.envelopes_out_of_window, "dropping a pubsub message: {reason}");
                    }
                    self.reject(&message_id, &propagation_source);
                    return;
                }
                let checked = if heartbeat {
                    Ok(opened)
                } else {
                    opened.verify(topic).map(|()| opened)
                };
                let acceptance = match checked {
                    Err(reason) => {
                        debug!(%propagation_source, %topic, "dropping a pubsub message: {reason}");
                        MessageAcceptance::Reject
                    }
                    Ok(opened) if heartbeat => self.on_heartbeat(&opened, propagation_source),
                    Ok(opened) => {
                        let origin = opened.from().to_base58();
                        self.hub.deliver(topic, opened.payload(), &origin);
                        MessageAcceptance::Accept
                    }
                };
                // Forwards it to the mesh, or drops it from the cache.
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
            }
            gossipsub::Event::Subscribed { topic, .. } => {
                if topic == IdentTopic::new(HEARTBEAT_TOPIC).hash() {
                    // A host that just (re)started has an empty view, and
                    // cannot resolve its peers' anchors until heartbeats
                    // arrive; the next tick is up to a second away, and a
                    // heartbeat published before its first subscriber was
                    // lost. Tell every newly subscribed peer at once who we
                    // are: both sides do, so a restarted host and its
                    // neighbours know each other within a round trip.
                    self.publish_heartbeat(&IdentTopic::new(HEARTBEAT_TOPIC));
                }
                let (ready, waiting): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut self.pending_publishes)
                        .into_iter()
                        .partition(|pending| IdentTopic::new(&pending.topic).hash() == topic);
                self.pending_publishes = waiting;
                for pending in ready {
                    self.publish(pending, false);
                }
            }
            _ => {}
        }
    }

    /// Tells gossipsub not to forward the message `id`, and to count it
    /// against `source`.
    fn reject(&mut self, id: &gossipsub::MessageId, source: &PeerId) {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, source, MessageAcceptance::Reject);
    }

    /// Takes a heartbeat into the view, and says whether gossipsub should
    /// forward it: only what the view admitted (a host or a candidate)
    /// goes further.
    fn on_heartbeat(&mut self, opened: &signed::Opened<'_>, relay: PeerId) -> MessageAcceptance {
        let source = opened.from();
        let (peer, addrs, ttl_ms) = match Heartbeat::decode(opened.payload(), &source) {
            Ok(decoded) => decoded,
            Err(reason) => {
                warn!(%source, %relay, "dropping heartbeat: {reason}");
                return MessageAcceptance::Reject;
            }
        };
        if peer == self.peer_id {
            return MessageAcceptance::Ignore;
        }
        let addrs: Vec<Multiaddr> = addrs.into_iter().filter(is_dialable).collect();
        let ttl = Duration::from_millis(u64::from(ttl_ms.clamp(1_000, 600_000)));
        let connected = self.swarm.is_connected(&peer);
        // The view's bounds first, its signature only if they let it in: a
        // flood of fakes past a relay's bound costs a parse and a few
        // lookups each, not a signature check.
        let refusal = self.view.borrow().refusal(&peer, connected, &relay);
        let admission = match refusal {
            Some(limit) => Admission::Refused(limit),
            None => {
                if let Err(reason) = opened.verify(HEARTBEAT_TOPIC) {
                    warn!(%source, %relay, "dropping heartbeat: {reason}");
                    return MessageAcceptance::Reject;
                }
                self.view.borrow_mut().observe(
                    peer,
                    addrs.clone(),
                    ttl,
                    Instant::now(),
                    connected,
                    relay,
                )
            }
        };
        match admission {
            Admission::Joined => info!(%peer, "host joined the view"),
            Admission::Refused(limit) => {
                self.heartbeats_refused += 1;
                // Logged at 1, 2, 4, 8... refusals: a flood is named
                // without the log becoming one.
                if self.heartbeats_refused.is_power_of_two() {
                    warn!(%peer, %relay, refused = self.heartbeats_refused, "not admitting a host to the view: {limit} reached");
                }
                return MessageAcceptance::Ignore;
            }
            Admission::Refreshed | Admission::Candidate | Admission::CandidateRefreshed => {}
        }
        // Connect every pair of hosts directly: gossipsub only forwards
        // through peers subscribed to a topic, anchors dial hosts by id,
        // and a candidate joins the view only once connected.
        if connected || self.dialing.contains(&peer) {
            return MessageAcceptance::Accept;
        }
        let dialed = !addrs.is_empty() && {
            let opts = DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            match self.swarm.dial(opts) {
                Ok(()) => true,
                Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => true,
                Err(err) => {
                    debug!(%peer, "not dialing a host heard of: {err}");
                    false
                }
            }
        };
        if dialed {
            self.dialing.insert(peer);
            MessageAcceptance::Accept
        } else {
            // Nothing to dial, or no room to: it cannot join, so it does
            // not keep its relay's slot.
            self.view.borrow_mut().forget_candidate(&peer);
            MessageAcceptance::Ignore
        }
    }
}

fn is_dialable(addr: &Multiaddr) -> bool {
    !addr
        .iter()
        .any(|protocol| matches!(protocol, Protocol::Ip4(ip) if ip.is_unspecified()))
}

/// Whether two addresses name the same transport endpoint, ignoring a
/// trailing `/p2p/<peer id>`.
fn same_transport_addr(a: &Multiaddr, b: &Multiaddr) -> bool {
    let strip = |addr: &Multiaddr| -> Multiaddr {
        addr.iter()
            .filter(|protocol| !matches!(protocol, Protocol::P2p(_)))
            .collect()
    };
    strip(a) == strip(b)
}
