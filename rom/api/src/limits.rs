//! Limits shared by hosts and guests. Every queue, message and name has one.

/// The largest capnp message either side of a connection accepts, in bytes.
///
/// Large enough for a Raft snapshot of a busy queue and a batch of 1 MiB
/// Raft messages; small enough that a hostile peer cannot make a host
/// allocate without bound. A message over it ends the connection.
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// The capnp traversal limit that enforces [`MESSAGE_BYTES_MAX`]: a reader
/// refuses a message whose segments add up to more words than this.
pub const TRAVERSAL_WORDS_MAX: usize = MESSAGE_BYTES_MAX / 8;

/// Most calls one connection may have unanswered on the side that serves
/// them (a host's inbound and process connections: see `meter`). Past it
/// a new call is answered at once with an "overloaded" error that names
/// this limit, before anything is allocated for it, so a peer that
/// pipelines calls that never return (a `recv` on an empty channel, say)
/// holds at most this many. Generous: a replica's connection to its host
/// has a few hundred in flight at most.
pub const CALLS_IN_FLIGHT_PER_CONNECTION_MAX: usize = 4096;
/// The deepest struct/list nesting a reader accepts.
pub const NESTING_DEPTH_MAX: i32 = 64;

/// Longest path accepted by an anchor, in bytes.
pub const PATH_BYTES_MAX: usize = 1024;

/// Longest name of one anchor component, in bytes.
pub const NAME_BYTES_MAX: usize = 255;

/// Most messages a channel may buffer.
pub const CHANNEL_CAPACITY_MAX: u32 = 65_536;

/// Most messages a pubsub subscription may buffer.
pub const SUBSCRIPTION_BUFFER_MAX: u32 = 65_536;

/// Longest pubsub topic name, in bytes.
pub const TOPIC_BYTES_MAX: usize = 256;

/// Most grants one spawn may carry.
pub const GRANTS_MAX: u32 = 32;

/// Longest grant name, in bytes.
pub const GRANT_NAME_BYTES_MAX: usize = 64;

/// Most bytes of `data` across one spawn's grants (they are persisted with
/// its supervision record).
pub const GRANT_DATA_BYTES_MAX: usize = 64 * 1024;

/// Bytes of a volume key.
pub const VOLUME_KEY_BYTES: usize = 32;
