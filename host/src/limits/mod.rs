//! Every limit of the host in one place, each with its unit in its name.
//! `docs/architecture.md`'s limits table lists them, with the limits of
//! the wire (`ww_api::limits`) and of networking (`ww_net::limits`).
//!
//! What they protect: one thread serves the swarm, every capnp connection,
//! every process and the Raft replicas, so anything a process, a peer or a
//! client could make the host hold without bound would slow or stop the
//! whole cluster. A request past a limit fails with an error that names
//! it; the host stays up.

pub mod http;
pub mod ops;

// --- Processes: what one guest may hold (`runner`)

/// Linear memory of one process by default, summed over all of its
/// memories (`ww run --memory-limit-mb`; `runner::Limits`).
pub const MEMORY_BYTES_MAX_DEFAULT: usize = 512 * 1024 * 1024;

/// Linear memory of all of a host's processes together, by default (`ww
/// start --guest-memory-limit-mb`; `runner::limits::GuestMemory`). A
/// growth past it traps the process that asked, naming the budget; the
/// others keep what they hold. A Raft replica holds tens of MiB.
pub const GUEST_MEMORY_BYTES_MAX_DEFAULT: usize = 4 * 1024 * 1024 * 1024;

/// The longest a guest may compute without calling its host, by default
/// (`ww run --busy-limit-ms`): past it, it is in a loop that never yields,
/// and is killed.
pub const BUSY_MS_MAX_DEFAULT: u64 = 10_000;

/// Instances, tables and memories a component may create. ROMs built from
/// Rust need a handful; the caps stop a hostile component from creating
/// thousands.
pub const INSTANCES_MAX: usize = 64;
/// See [`INSTANCES_MAX`].
pub const TABLES_MAX: usize = 64;
/// See [`INSTANCES_MAX`].
pub const MEMORIES_MAX: usize = 16;
/// Elements of one table; see [`INSTANCES_MAX`].
pub const TABLE_ELEMENTS_MAX: usize = 1_000_000;

/// WASI resources one process may hold at once: open files and directory
/// handles, streams, pollables, clocks' subscriptions. Each open file is a
/// host descriptor too, so this also caps the descriptors a process takes
/// from its host. A Rust ROM holds tens (its stdio, its capnp streams, the
/// pollables of one poll); past the cap, the WASI call that asked for one
/// more traps the process, which ends "killed by the descriptor limit".
pub const RESOURCES_MAX: usize = 1_024;

/// What a host keeps of its soft limit of open files for itself (its
/// connections, its own files): guests' opens are refused past the rest
/// (`ww start --descriptors-max`, `runner/descriptors.rs`), in percent,
/// and at least [`DESCRIPTORS_RESERVED_MIN`] descriptors.
pub const DESCRIPTORS_RESERVED_PERCENT: usize = 25;

/// See [`DESCRIPTORS_RESERVED_PERCENT`].
pub const DESCRIPTORS_RESERVED_MIN: usize = 256;

// --- Processes: CPU shares (`runner/cpu.rs`)

/// The part of a host's event loop that computing guests (those the epoch
/// tick preempts) get together by default (`ww start
/// --guests-cpu-percent`), in equal parts; the rest stays for the swarm,
/// the RPC and the guests that only answer. See `runner/cpu.rs`. Every
/// computing slice may delay a Raft write's crossing of the loop, so the
/// default is what keeps a write's p99 near twice its idle value beside 32
/// spinners (measured: median 1.80 times at 12%, 12 of 16 runs under 2 on a
/// noisy day, 1.56 and 17 of 20 on a quieter one; 1.7 to 2.4 times at 25%;
/// see docs/architecture.md).
pub const GUESTS_CPU_PERCENT_DEFAULT: u32 = 12;

/// Slices cut short by the tick, one after the other, that make a process
/// count as computing (see `runner/cpu.rs`).
pub const PREEMPTED_SLICES_MIN: u32 = 4;

/// How long a process counts as computing after the tick last preempted
/// it, in ms.
pub const CPU_WINDOW_MS: u64 = 1_000;

/// The least a slice of a process held to its share runs before a tick or
/// its next host call ends it, in µs: long past a stale deadline's callback
/// (which comes within microseconds of a resume after a wait), short
/// against a tick.
pub const HELD_SLICE_US_MIN: u64 = 100;

/// The CPU time a computing process may use at once before it waits for
/// its part, in ms.
pub const CPU_BURST_MS: u64 = 20;

// --- Processes: stdio and the capnp pipe (`runner/process.rs`)

/// Bytes buffered in each direction of the guest's capnp connection, and
/// of a logged stdout or stderr.
pub const PIPE_BYTES: usize = 256 * 1024;

/// Longest stdout or stderr line forwarded to the log, in bytes; longer
/// lines are cut.
pub const OUTPUT_LINE_BYTES_MAX: usize = 8 * 1024;

// --- ROMs: size, compiling and the compiled cache (`runner/cache.rs`)

/// Largest ROM accepted, in bytes.
pub const ROM_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Most ROMs kept compiled in memory.
pub const ROMS_IN_MEMORY_MAX: usize = 64;

/// Most ROMs compiled at once. Cranelift already spreads one compile over
/// every core, so more at once only adds memory (hundreds of MiB for a
/// large ROM) and steals the cores the event loop needs.
pub const COMPILES_AT_ONCE_MAX: usize = 2;

/// Most loads waiting for a compile slot. Past it a load is refused at
/// once: each waiter holds its ROM's bytes, up to [`ROM_BYTES_MAX`].
pub const COMPILES_WAITING_MAX: usize = 64;

/// Bytes of compiled ROMs kept in the disk cache. Past it, the artifacts
/// used longest ago are removed: it is only a cache, so a removed ROM costs
/// one compile the next time it starts, whoever uses it.
pub const COMPILED_CACHE_BYTES_MAX: u64 = 2 * 1024 * 1024 * 1024;

// --- The executor: processes, stored ROMs, volumes, restarts, arguments (`cap/executor`)

/// Most processes (live or ended, not yet reaped) per host.
pub const PROCESSES_MAX: usize = 256;

/// Bytes of ROMs the host stores for its supervised processes (it needs
/// them to respawn them after a restart). A ROM no record names is removed
/// before each store; past the bound a supervised spawn is refused.
pub const ROM_STORE_BYTES_MAX: u64 = 1024 * 1024 * 1024;

/// Bytes a volume may take on disk by default (`ww start
/// --volume-limit-mb`), counted in allocated blocks so a sparse file costs
/// what it really holds.
pub const VOLUME_BYTES_MAX_DEFAULT: u64 = 1024 * 1024 * 1024;

/// What a volume may hold on disk past its quota before its process is
/// killed: writes are counted in bytes, the disk in blocks, and the file
/// system adds its own (extent blocks, preallocation), so a volume written
/// up to its quota holds a little more.
pub const VOLUME_OVERHEAD_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// Files and directories a volume may hold: each costs an inode, and the
/// check below walks them all.
pub const VOLUME_ENTRIES_MAX: u64 = 100_000;

/// How often a running process's volume is measured against its quota.
pub const VOLUME_CHECK_MS: u64 = 250;

/// First restart delay; doubles up to [`RESTART_BACKOFF_MAX_MS`].
pub const RESTART_BACKOFF_MIN_MS: u64 = 250;

pub const RESTART_BACKOFF_MAX_MS: u64 = 30_000;

/// An incarnation that ran this long resets the backoff.
pub const RESTART_BACKOFF_RESET_MS: u64 = 60_000;

/// Most arguments and environment entries, and their total bytes.
pub const ARGS_MAX: u32 = 256;

pub const ARG_BYTES_MAX: usize = 64 * 1024;

// --- Channels (`cap/channel.rs`)

/// Most bytes queued in one channel. A send that would exceed it waits
/// (unless the channel is empty: one message of any accepted size fits).
pub const CHANNEL_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Most messages one `recvBatch` returns.
pub const RECV_BATCH_MAX: u32 = 4096;

/// Most capabilities carried by one message.
pub const CAPS_PER_MESSAGE_MAX: u32 = 64;

/// Longest a `Sender.call` waits for its receiver's answer once queued.
/// The caller usually gives up sooner (the Raft ROM's sends: 3 s); this
/// bounds what a caller that never gives up holds on this host.
pub const CALL_REPLY_TIMEOUT_MS: u64 = 30_000;

/// Most bytes all of a host's channels hold, queued and waiting to be
/// queued, with [`MESSAGE_OVERHEAD_BYTES`] per message. Without it, a
/// caller creating channels holds [`CHANNEL_BYTES_MAX`] in each, with no
/// end.
pub const CHANNEL_HOST_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Most bytes of the host's channel budget one writer's sends may hold:
/// each local process, each remote host, and all other callers together.
/// So one flooder leaves three quarters of the budget to the rest.
pub const CHANNEL_WRITER_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Bytes of [`CHANNEL_HOST_BYTES_MAX`] that this host's processes together
/// cannot take, and that callers from elsewhere together cannot take:
/// always left to the other side. A quarter: a writer's share.
pub const CHANNEL_RESERVED_BYTES: usize = 64 * 1024 * 1024;

/// Channels of [`CHANNELS_MAX`] kept the same way for each side.
pub const CHANNELS_RESERVED: usize = 4096;

/// What a message costs beyond its data, in bytes: its entry in the queue,
/// its origin and its capability list. So a flood of empty messages is
/// bounded too.
pub const MESSAGE_OVERHEAD_BYTES: usize = 256;

/// Most live channels on one host.
pub const CHANNELS_MAX: usize = 16_384;

/// Most live channels one writer may have created (see
/// [`CHANNEL_WRITER_BYTES_MAX`] for who is a writer).
pub const WRITER_CHANNELS_MAX: usize = 4096;

// --- The anchor tree (`cap/tree.rs`)

/// Most nodes in one host's tree.
pub const NODES_MAX: usize = 100_000;

/// Largest data value, in bytes.
pub const VALUE_BYTES_MAX: usize = 1024 * 1024;

/// Most bytes of data values in one host's tree, all writers together.
/// Without it, [`NODES_MAX`] values of [`VALUE_BYTES_MAX`] would be 100 GB.
pub const TREE_DATA_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Most bytes of data values one writer may hold in the tree: each local
/// process, and all other callers (CLI clients, other hosts) together. So
/// one flooding process leaves three quarters of the budget to the rest.
pub const WRITER_DATA_BYTES_MAX: usize = 64 * 1024 * 1024;

// --- Subscriptions (`cap/pubsub.rs`)

/// Most bytes all subscriptions of a host buffer, with
/// [`DELIVERY_OVERHEAD_BYTES`] per message. Without it, each subscription
/// holds up to 65,536 messages of 1 MiB.
pub const SUBSCRIPTION_HOST_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Most bytes the subscriptions of one writer buffer: each local process,
/// and all other subscribers (CLI clients, other hosts) together. So one
/// subscriber that never reads leaves three quarters of the budget to the
/// rest.
pub const SUBSCRIBER_BYTES_MAX: usize = 64 * 1024 * 1024;

/// What a buffered message costs beyond its data, in bytes: its entry and
/// its sender's peer id.
pub const DELIVERY_OVERHEAD_BYTES: usize = 256;

// --- Inbound RPC connections (`rpc.rs`)

/// Most inbound RPC connections served at once. Past it, a new one takes
/// the slot of an idle one, or is refused (see the module's documentation).
pub const INBOUND_CONNECTIONS_MAX: usize = 1024;

/// Most inbound RPC connections from one peer. A host, a CLI or a native
/// client needs one or a few; the cap keeps one peer from holding every
/// slot of [`INBOUND_CONNECTIONS_MAX`] and locking the others out.
pub const INBOUND_CONNECTIONS_PER_PEER_MAX: usize = 64;

/// How long an inbound RPC connection must have been idle (no byte either
/// way, no call waiting) before a newcomer may take its slot. Long enough
/// that a client between two calls, or a host whose Raft replicas are
/// quiet for a few heartbeats, keeps its connection; short enough that a
/// locked-out client's retries (`ww` retries for 20 s) soon get in.
pub const INBOUND_CONNECTION_IDLE_MIN_MS: u64 = 30_000;
