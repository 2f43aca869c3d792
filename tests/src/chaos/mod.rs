//! The chaos harness's pure parts: the history it records from real
//! clients and the checks run on it ([`history`]), and the seeded fault
//! schedule ([`nemesis`]). The driver that starts hosts, clients and the
//! nemesis lives in `tests/tests/chaos/` (it needs the native client, a
//! dev-dependency); see docs/chaos.md.

pub mod history;
pub mod nemesis;

pub use history::{FaultKind, KvInput, KvModel, KvOutput, Outcome, Recorder, Summary, Verdicts};
pub use nemesis::{Fault, Schedule, Target};
