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
  # included; a host joins only once directly connected (it proved its key),
  # so hosts heard of only through another peer are not listed. A point-in-time snapshot with no consistency guarantee: a host
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

  connect @10 (peerId :Text) -> (host :Host);
  # `dial`, over a connection of the caller's own where it has one. Under
  # `ww run` the `ww run` process dials the host itself, so the ROM's calls
  # to it skip the host `ww run` dialed; a host's own processes have no
  # connection of their own, so for them this is `dial`. What is reached
  # this way lives only as long as the caller's connection: a capability
  # from it stored on a third host depends on the caller staying up. Use it
  # for the caller's own traffic (a Raft client's routes to replicas), and
  # `dial` for what must outlive the caller.
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

    http @4 :HttpScope;
    # An `Http` fetch capability that the host serves with this scope (see
    # `Http`). The process finds it in `grants` as a `cap` of that name;
    # the scope is persisted with the record, so the grant survives a host
    # restart. The holder cannot widen it.
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

  call @2 (message :Message) -> (reply :Data);
  # Queues the message as `send` does, with a one-shot `Reply` that the
  # receiver gets beside it, and returns what the receiver answers
  # through it. One message each way across hosts, where a `send` and an
  # answering `send` back cost two calls and two returns. Fails when the
  # receiver drops the message or its `Reply` unanswered, when the channel
  # closes first, or after the host's reply deadline.
}

interface Reply {
  send @0 (data :Data) -> ();
  # Answers the `call` that queued the message. Once: a second answer
  # fails.
}

interface Receiver {
  recv @0 () -> (message :Message, closed :Bool, origin :Text, reply :Reply);
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
  reply @2 :Reply;
  # Set when the message came by `Sender.call`: answer through it.
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
# HTTP fetch grant

interface Http {
  # Fetches URLs on behalf of a process, inside a scope set by whoever
  # granted it. The scope is never widened: every redirect hop is checked
  # against it again, robots.txt is obeyed per origin, and names that
  # resolve to private or loopback addresses are refused unless the scope
  # allows them. Failures a crawler must act on (timeouts, robots, scope,
  # rate limits, ...) are typed results (`HttpResponse.error`), not capnp
  # errors; a capnp error means the call itself was malformed.

  fetch @0 (request :HttpRequest) -> (response :HttpResponse);
  # Fetches one URL, following redirects up to the scope's limit. Waits for
  # the origin's crawl-delay slot if it comes within `rateWaitMaxMs`;
  # otherwise answers `rateLimited` with `retryAfterMs` at once.

  scope @1 () -> (scope :HttpScope);
  # The scope this grant enforces, e.g. for a crawler's frontier to skip
  # URLs it would only get `outOfScope` for.
}

struct HttpScope {
  schemes @0 :List(Text);
  # Allowed URL schemes, lower case: "http", "https". Empty: none.
  domains @1 :List(Text);
  # Allowed hosts: "example.org" allows that host and its subdomains;
  # an IP literal ("127.0.0.1") allows exactly that address. A URL is in
  # scope if its host matches a domain OR the URL starts with a prefix.
  prefixes @2 :List(Text);
  # Allowed URL prefixes, compared with the normalised URL
  # ("http://127.0.0.1:8080/docs/").
  allowPrivate @3 :Bool;
  # Allow loopback, private, link-local and other non-public addresses
  # (checked on the resolved address, and on IP-literal URLs). False for
  # anything facing the internet; true for tests against 127.0.0.1.
  connectTimeoutMs @4 :UInt32;
  # TCP (and TLS) connect, per hop.
  firstByteTimeoutMs @5 :UInt32;
  # From sending the request to the response head, per hop.
  totalTimeoutMs @6 :UInt32;
  # The whole fetch: every hop, robots.txt and the body.
  bodyBytesMax @7 :UInt32;
  # Bodies are cut here (`ok.truncated` set), not refused.
  redirectsMax @8 :UInt32;
  # Redirect hops followed; one more is `tooManyRedirects`.
  contentTypes @9 :List(Text);
  # Accepted media types ("text/html"; "text/*" matches a family). A
  # response of another type is `contentTypeRefused` and its body is not
  # read. Empty: any type.
  userAgent @10 :Text;
  # Sent with every request, and the agent robots.txt groups are matched
  # against.
  obeyRobots @11 :Bool;
  # Fetch, cache and obey /robots.txt per origin (Disallow, Crawl-delay).
  crawlDelayMs @12 :UInt32;
  # Minimum spacing between requests to one origin when robots.txt sets no
  # (or a shorter) Crawl-delay. 0: none.
  rateWaitMaxMs @13 :UInt32;
  # The longest `fetch` waits for its origin's next slot; beyond that it
  # answers `rateLimited` without waiting.
}

enum HttpMethod {
  get @0;
  head @1;
}

struct HttpHeader {
  name @0 :Text;
  value @1 :Text;
}

struct HttpRequest {
  url @0 :Text;
  # Absolute http(s) URL; its fragment is dropped.
  method @1 :HttpMethod;
  headers @2 :List(HttpHeader);
  # Extra request headers. Hop-by-hop and host-controlled headers (Host,
  # User-Agent, Content-Length, Connection, ...) are refused.
}

struct HttpTiming {
  # Milliseconds since `fetch` was called. Connect time is not reported
  # separately: the client pools connections, and its timeout is enforced.
  waitedMs @0 :UInt32;
  # Spent waiting for the origin's crawl-delay slot(s) and robots.txt.
  firstByteMs @1 :UInt32;
  # Until the final response head arrived.
  totalMs @2 :UInt32;
  # Until the body was read (or cut).
}

enum HttpErrorKind {
  other @0;
  timeoutConnect @1;
  timeoutFirstByte @2;
  timeoutTotal @3;
  dns @4;
  refused @5;
  tls @6;
  tooLarge @7;
  # Reserved: bodies over the cap are cut, not refused.
  tooManyRedirects @8;
  outOfScope @9;
  privateAddress @10;
  disallowedByRobots @11;
  rateLimited @12;
  # By the grant (crawl-delay slot too far) or by the server (429/503 with
  # Retry-After); see `retryAfterMs`.
  badRequest @13;
  # The request itself is wrong: unparsable URL, forbidden header.
  contentTypeRefused @14;
  redirectLoop @15;
  # A redirect back to a URL already visited in this fetch.
}

struct HttpResponse {
  union {
    ok :group {
      status @0 :UInt16;
      finalUrl @1 :Text;
      # The URL after redirects.
      headers @2 :List(HttpHeader);
      contentType @3 :Text;
      # The media type, lower case, without parameters ("text/html").
      body @4 :Data;
      # At most the scope's `bodyBytesMax` bytes; empty for HEAD.
      truncated @5 :Bool;
      # The body was longer than `bodyBytesMax` and was cut.
      timing @6 :HttpTiming;
      redirects @7 :UInt32;
      # Redirect hops followed.
      crawlDelayMs @8 :UInt32;
      # The spacing this grant keeps for the final URL's origin (robots
      # Crawl-delay or the scope's floor), for the frontier to plan with.
    }
    error :group {
      kind @9 :HttpErrorKind;
      message @10 :Text;
      # For people: what failed, and for which URL.
      retryAfterMs @11 :UInt32;
      # For `rateLimited`: when the origin takes a request again. 0 otherwise.
      url @12 :Text;
      # The URL (hop) that failed.
      crawlDelayMs @13 :UInt32;
      # As in `ok`, when known.
    }
  }
}

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
