//! Every bound of the operator view in one place.

/// Series one process may report in one `Metrics.set`.
pub const SERIES_PER_PROCESS_MAX: usize = 64;
/// Processes whose reports are kept; more are refused.
pub const REPORTING_PROCESSES_MAX: usize = 256;
/// Length of a metric name a process reports.
pub const METRIC_NAME_BYTES_MAX: usize = 64;
/// Labels on one reported sample (the host adds `pid` and `anchor`).
pub const LABELS_PER_SAMPLE_MAX: usize = 8;
/// Length of a label name or value a process reports.
pub const LABEL_BYTES_MAX: usize = 128;
/// Anchor paths listed by `/status.json`.
pub const ANCHORS_SHOWN_MAX: usize = 200;
/// Depth to which `/status.json` walks the anchor tree.
pub const ANCHOR_DEPTH_MAX: usize = 8;
/// Bytes of an HTTP request head the listener reads before refusing it.
pub const HTTP_REQUEST_BYTES_MAX: usize = 8 * 1024;
/// How long a client may take to send its request head.
pub const HTTP_REQUEST_TIMEOUT_MS: u64 = 5_000;
/// HTTP connections served at once; more wait in the kernel's backlog.
pub const HTTP_CONNECTIONS_MAX: usize = 32;
