@0xd6b8b2a1c3e4f509;
# The ROM API: every capability a host can give a process, and every
# capability hosts give each other. One schema, shared by `host/` and the
# guests in `rom/`.
#
# Authority: a ROM holds nothing but what it is handed. A full `Host`
# confers everything below it; a process spawned without `SpawnSpec.host`
# gets a `Host` that confers only its own grants and a few harmless calls.
# Hand a narrower capability (an `Anchor`, a `Sender`, a `Topic`) as a
# grant wherever one is enough.

interface Host {
  # A host of the cluster, or (for a ROM) the host it runs on.

  peerId @0 () -> (peerId :Text);
  # The libp2p peer id of this host, in its base58 text form.

  view @1 () -> (hosts :List(HostInfo));
  # The hosts this host has heard heartbeats from within their TTL, itself
  # included. A point-in-time snapshot with no consistency guarantee: a host
  # that stops leaves it within its TTL.

  root @2 () -> (anchor :Anchor);
  # The cluster's anchor root. `ls` lists the hosts in the view; the first
  # path component names a host by peer id (`/<peer id>/a/b`), and the rest
  # is walked on that host. Confers access to every anchor of the cluster.

  pubsub @3 () -> (pubsub :PubSub);
  # Publish/subscribe over the cluster's gossipsub mesh.

  executor @4 () -> (executor :Executor);
  # Spawns processes on this host.

  newChannel @5 (capacity :UInt32) -> (sender :Sender, receiver :Receiver);
  # A bounded channel hosted by this host. `capacity` messages may wait in
  # it (at least 1, at most the host's limit); a send to a full channel waits
  # until a receiver makes room.

  dial @6 (peerId :Text) -> (host :Host);
  # The `Host` of another host of the cluster, reached from this host (the
  # connection is this host's, so calls do not pass through the caller).
  # Fails fast if the peer is not in the view or cannot be reached.

  grants @7 () -> (grants :List(Grant));
  # The named grants this process was spawned with (empty for CLI and peer
  # connections).

  grantAnchor @8 (name :Text) -> (anchor :Anchor);
  # The read-only view of the `readPath` grant `name` (see `Grant`). Fails
  # if there is no such grant or it is not a `readPath`.

  metrics @9 () -> (metrics :Metrics);
  # Where this process reports its own metrics, which the host exports
  # (`ww start --http`) labelled with the process id and anchor. Allowed
  # to every process: it speaks only for itself.
}

struct Grant {
  # A named piece of authority a spawner hands the process it spawns.
  # A process spawned without `SpawnSpec.host` holds nothing else.

  name @0 :Text;
  # 1 to 64 of [A-Za-z0-9._-], unique within a spawn.

  union {
    data @1 :Data;
    # Bytes (e.g. a token). Persisted with the supervision record (a file
    # only the host's user can read), never shown by `ps`.

    cap @2 :Capability;
    # A live capability. A process holding one is restarted by its
    # supervisor, but not respawned after a host restart: the capability
    # does not survive it.

    readPath @3 :Text;
    # A read-only view of `/<any host>/<readPath>`: `Host.grantAnchor`
    # returns an anchor whose `ls` lists the hosts in the view and whose
    # `walk("<peer id>")` returns an anchor for `/<peer id>/<readPath>` on
    # which only `get` and `path` are permitted. Each `get` resolves the
    # path through the cluster root again, so it follows restarts.
  }
}

struct HostInfo {
  peerId @0 :Text;
  addrs @1 :List(Text);
  # Multiaddrs, each ending in `/p2p/<peer id>`.
  ttlMs @2 :UInt32;
  # How long after its last heartbeat the host leaves the view.
  ageMs @3 :UInt32;
  # Milliseconds since the last heartbeat from this host was seen.
}

# ---------------------------------------------------------------------------
# Anchors

interface Anchor {
  # A node of the cluster's path tree. An anchor reaches only its own
  # descendants, never its parent: holding `/<peer>/raft` confers nothing
  # about `/<peer>`.

  ls @0 () -> (children :List(Text));
  # The names of the direct children. At the cluster root: the peer ids of
  # the hosts in the view.

  walk @1 (path :Text) -> (anchor :Anchor);
  # The descendant at `path`, relative to this anchor ("a/b", or "/a/b": a
  # leading slash still means "below this anchor"). Missing nodes are
  # created. At the cluster root the first component must be a peer id;
  # walking to a peer that cannot be reached fails fast.

  set @2 (value :Value) -> ();
  # Stores a value (bytes or a capability) at this node, replacing any
  # previous one.

  get @3 () -> (value :Value);
  # The value stored here; `none` if nothing is.

  remove @4 (name :Text) -> (removed :Bool);
  # Removes the child `name` and its whole subtree, dropping the values and
  # capabilities held there.

  path @5 () -> (path :Text);
  # The absolute path of this node, e.g. `/<peer id>/raft/v1`.
}

struct Value {
  union {
    none @0 :Void;
    data @1 :Data;
    cap @2 :Capability;
  }
}

# ---------------------------------------------------------------------------
# PubSub

interface PubSub {
  join @0 (topic :Text) -> (topic :Topic);
  # Joins a gossipsub topic. Topic names are 1 to 256 printable ASCII bytes.
}

interface Topic {
  name @0 () -> (name :Text);

  publish @1 (data :Data) -> ();
  # Publishes to every subscriber in the cluster, this host's included.
  # Delivery is best effort (gossipsub): a message published before any
  # peer subscribes is lost.

  subscribe @2 (buffer :UInt32) -> (subscription :Subscription);
  # Starts receiving. Up to `buffer` messages (at least 1, at most the
  # host's limit) wait for `next`; beyond that the oldest are dropped and
  # counted. Dropping the subscription unsubscribes.
}

interface Subscription {
  next @0 () -> (message :PubSubMessage);
  # Waits for the next message. Several `next` calls may be in flight; they
  # are answered in order.
}

struct PubSubMessage {
  data @0 :Data;
  from @1 :Text;
  # The peer id of the host that published it.
  dropped @2 :UInt64;
  # Messages dropped from this subscription's buffer since the previous
  # `next`, because the subscriber was too slow.
}

# ---------------------------------------------------------------------------
# Channels

struct Message {
  data @0 :Data;
  caps @1 :List(CapEntry);
  # Capabilities carried with the message, e.g. a reply `Sender`.
}

struct CapEntry {
  cap @0 :Capability;
}

interface Sender {
  send @0 (message :Message) -> ();
  # Returns once the message is queued in the channel. Waits while the
  # channel is full (backpressure). Fails once the channel is closed.

  close @1 () -> ();
  # No more messages: later sends fail; receivers drain what is queued,
  # then see `closed`.
}

interface Receiver {
  recv @0 () -> (message :Message, closed :Bool, origin :Text);
  # The next message, in send order. Waits while the channel is empty.
  # `closed` is true (and `message` empty) once the channel is closed and
  # drained. `origin` is the authenticated libp2p peer id of the host whose
  # connection the sender capability came through (this host's own id for
  # local senders), so a receiver can tell who may have sent the message.

  close @1 () -> ();

  recvBatch @2 (max :UInt32) -> (messages :List(Received), closed :Bool);
  # Like `recv`, but takes every queued message up to `max` (at least one:
  # waits while the channel is empty) in one call. `closed` is true once
  # the channel is closed and drained. One call instead of one per
  # message: the way to drain a busy channel.
}

struct Received {
  message @0 :Message;
  origin @1 :Text;
}

# ---------------------------------------------------------------------------
# Executor and processes

interface Executor {
  spawn @0 (spec :SpawnSpec) -> (process :Process);
  # Starts a process on this host. ROM bytes are content-addressed: pass
  # the bytes once, then the blake3 hash.

  ps @1 () -> (processes :List(ProcessInfo));
  # The processes of this host.

  kill @2 (id :UInt64) -> ();
  # Kills process `id` of this host, as `Process.kill` does.
}

struct SpawnSpec {
  rom :union {
    bytes @0 :Data;
    hash @1 :Data;
    # blake3 of ROM bytes this host already has.
  }
  args @2 :List(Text);
  env @3 :List(Text);
  # `KEY=VALUE` entries.
  volume @4 :Text;
  # Grants a storage volume: a directory under the host's data dir, named
  # by this (1 to 64 of [A-Za-z0-9._-]), preopened in the guest as
  # `/data`, and kept across restarts. Empty: no volume.
  restart @5 :RestartPolicy;
  anchor @6 :Text;
  # If set, a path below this host (`raft/v1`) where the host anchors the
  # process's exported capability once it exports one. Killing the process
  # clears it; a supervised restart anchors the new incarnation.
  name @7 :Text;
  # A label shown by `ww ps`.
  host @8 :Bool;
  # True: the process gets this host's full `Host` (root, view, pubsub,
  # executor, dial), as the spawner has. False (the default): it gets only
  # `peerId`, `newChannel` and its `grants`.
  grants @9 :List(Grant);
  # What the process is handed by name; see `Grant`.
  volumeKey @10 :Data;
  # The key of an existing `volume` (from `Process.volumeKey` of the process
  # that created it). Required when the volume exists; a new volume gets a
  # random key, or this one if given (32 bytes).
}

enum RestartPolicy {
  never @0;
  onFailure @1;
  # Restart with backoff when the process traps or exits non-zero, and
  # respawn it when the host restarts with the same data dir.
  always @2;
  # Like onFailure, but also after a clean exit.
}

interface Process {
  id @0 () -> (id :UInt64);

  wait @1 () -> (exit :ExitStatus);
  # Waits until the process (and, if supervised, its supervision) ends.

  kill @2 () -> ();
  # Ends the process, stops its supervision and clears its anchor.

  status @3 () -> (info :ProcessInfo);

  bootstrap @4 () -> (cap :Capability);
  # The capability the process exports to its parent (its side of the
  # capnp bootstrap). Waits until the process has started.

  volumeKey @5 () -> (key :Data);
  # The 32-byte key of the process's volume: pass it as
  # `SpawnSpec.volumeKey` to spawn another process on the same volume.
  # Fails if the process has no volume.
}

struct ExitStatus {
  code @0 :Int32;
  # The guest's exit code; -1 when it trapped or was killed.
  message @1 :Text;
  # Why it ended, for people: "exited with 0", "trapped: ...".
}

struct ProcessInfo {
  id @0 :UInt64;
  peerId @1 :Text;
  name @2 :Text;
  romHash @3 :Text;
  # blake3 of the ROM, hex.
  args @4 :List(Text);
  state @5 :Text;
  # starting, running, restarting, exited, trapped, killed.
  uptimeMs @6 :UInt64;
  restarts @7 :UInt32;
  anchor @8 :Text;
  exit @9 :ExitStatus;
}

# ---------------------------------------------------------------------------
# Metrics a process reports about itself

interface Metrics {
  set @0 (samples :List(MetricSample)) -> ();
  # Replaces every sample this process reported before. The host bounds
  # how many series and how long names and labels may be, and refuses
  # the call when they are exceeded.
}

struct MetricSample {
  name @0 :Text;
  # A Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), not starting
  # with `ww_` (the host's own).
  labels @1 :List(MetricLabel);
  value @2 :Float64;
  counter @3 :Bool;
  # True: a monotonic counter (exported with a `_total` suffix); false: a
  # gauge.
}

struct MetricLabel {
  name @0 :Text;
  value @1 :Text;
}
