//! The operator view of `ww start --http`: Prometheus metrics at
//! `/metrics`, a live status page at `/`, and the JSON it polls at
//! `/status.json`. Loopback only unless `--insecure`.

mod http;
pub use crate::limits::ops as limits;
mod metrics;
pub mod reported;
mod status;

pub use http::serve;
pub use reported::{MetricsServer, Reported};
