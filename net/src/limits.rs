//! Every limit of a host's networking, in one place, each with its unit in
//! its name. `docs/architecture.md`'s limits table lists them.
//!
//! What they protect: one thread serves the swarm, every capnp connection
//! and the Raft replicas, so a peer that could make the host hold an
//! unbounded amount of anything (connections, queued streams, view
//! entries) could slow or stop the whole cluster's queues.

/// Most connections established at once, inbound and outbound together.
/// A host needs one per other host (the cluster is fully connected) and
/// one per client; past this, new connections are denied at the
/// handshake. Each costs a descriptor and yamux buffers.
pub const CONNECTIONS_MAX: u32 = 2048;

/// Most connections established with one peer. A peer needs one; two
/// appear when two hosts dial each other at the same moment, and a client
/// that reconnects may briefly hold its old one too. More is a peer
/// trying to take slots from everyone else.
pub const CONNECTIONS_PER_PEER_MAX: u32 = 8;

/// Most inbound connections still in their handshake (TCP accepted, the
/// pre-shared key, Noise and yamux not done). Bounds what a crowd of
/// half-open dialers can make the host hold.
pub const CONNECTIONS_PENDING_INCOMING_MAX: u32 = 256;

/// Most outbound dials in progress. Heartbeats make a host dial the hosts
/// they name; this bounds what a flood of them can make it do at once.
pub const CONNECTIONS_PENDING_OUTGOING_MAX: u32 = 256;

/// Largest gossipsub message, in bytes.
pub const PUBSUB_MESSAGE_BYTES_MAX: usize = 1024 * 1024;

/// Longest publisher peer id a pubsub envelope may carry, in bytes
/// (`signed`). An Ed25519 peer id (the public key inlined in an identity
/// multihash) is 38.
pub const PUBSUB_ENVELOPE_FROM_BYTES_MAX: usize = 64;

/// Longest signature a pubsub envelope may carry, in bytes. Ed25519's is
/// 64.
pub const PUBSUB_ENVELOPE_SIGNATURE_BYTES_MAX: usize = 128;

/// Farthest a pubsub envelope's seal time (its sequence number, in µs
/// since the Unix epoch) may lie from this host's clock, either way, in
/// milliseconds. gossipsub drops a second copy of a message only while it
/// remembers the first ([`PUBSUB_SEEN_MS`]); an envelope replayed after
/// that would be taken again. Refusing what was sealed longer ago than this
/// closes the gap, at the price that hosts' clocks must agree to within it.
pub const PUBSUB_ENVELOPE_SKEW_MS_MAX: u64 = 20_000;

/// How long gossipsub remembers the id of a message it has seen, in
/// milliseconds. It must cover a copy accepted at one end of the window
/// [`PUBSUB_ENVELOPE_SKEW_MS_MAX`] allows and replayed at the other end.
pub const PUBSUB_SEEN_MS: u64 = 60_000;

const _: () = assert!(PUBSUB_SEEN_MS > 2 * PUBSUB_ENVELOPE_SKEW_MS_MAX);

/// Bytes of publishes waiting for a first subscriber to their topic, each
/// for up to `PUBLISH_WAIT_MS`, on one host. Past it (or past
/// [`PENDING_PUBLISHES_MAX`]) a publish that would wait is refused at once,
/// naming the bound; one that finds a subscriber is never refused. Without
/// it, a process pipelining publishes to a topic nobody reads would make the
/// host hold a copy of each for seconds: thousands of MiB.
pub const PENDING_PUBLISHES_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Most publishes waiting for a first subscriber, on one host.
pub const PENDING_PUBLISHES_MAX: usize = 4_096;

/// Most inbound RPC streams waiting for the accept loop. The loop runs on
/// the swarm's thread and only spawns a handler per stream, so it empties
/// this as fast as the swarm fills it; the bound only matters if it stops.
pub const INBOUND_STREAMS_QUEUED_MAX: usize = 1024;

/// Most negotiated streams one connection holds before the swarm takes
/// them (see `inbound`). The swarm takes them as fast as it polls, and
/// libp2p negotiates at most 128 inbound streams per connection at a time,
/// so this is only a bound against a peer that floods one connection.
pub const STREAMS_PER_CONNECTION_QUEUED_MAX: usize = 1024;

/// Most negotiated streams the behaviour holds before the swarm's owner
/// takes them (the owner takes one per swarm event, so this stays small).
pub const STREAMS_QUEUED_MAX: usize = 4096;

/// Largest heartbeat accepted, in bytes. A heartbeat names a peer and a
/// handful of addresses; anything bigger is garbage or an attack.
pub const HEARTBEAT_BYTES_MAX: usize = 4096;

/// Most addresses kept per host.
pub const ADDRS_PER_HOST_MAX: usize = 16;

/// Most hosts kept in the view. Only hosts this one is (or was) directly
/// connected to are admitted, so [`CONNECTIONS_MAX`] bounds how fast
/// it fills.
pub const HOSTS_MAX: usize = 4096;

/// Most hosts heard of through a relay (their heartbeat forwarded by
/// another peer) and not yet connected to, over all relays. They are
/// dialed, and enter the view only once connected; until then they are
/// not listed and cannot be resolved.
pub const VIEW_CANDIDATES_MAX: usize = 1024;

/// Most such candidates one relaying peer (gossipsub's propagation
/// source) can have introduced at once. Anyone can sign heartbeats with
/// keys of their own making; this keeps one peer's flood of them from
/// taking every candidate slot, and candidates never displace hosts
/// already in the view.
pub const VIEW_CANDIDATES_PER_RELAY_MAX: usize = 32;
