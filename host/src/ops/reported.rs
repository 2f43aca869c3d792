//! Metrics processes report about themselves (`Host.metrics`), kept per
//! process and exported by `/metrics` with the process's id and anchor.
//! The host knows nothing of what they mean (a Raft replica's term is just
//! a gauge here).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use capnp::capability::Rc as CapRc;
use ww_api::metrics;

use super::limits::{
    LABELS_PER_SAMPLE_MAX, LABEL_BYTES_MAX, METRIC_NAME_BYTES_MAX, REPORTING_PROCESSES_MAX,
    SERIES_PER_PROCESS_MAX,
};
use crate::cap::{invalid, text};

/// One reported sample.
#[derive(Clone, Debug)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub counter: bool,
}

/// The latest report of every process, by pid.
#[derive(Default)]
pub struct Reported {
    by_pid: RefCell<BTreeMap<u64, Vec<Sample>>>,
}

impl Reported {
    /// The reports of processes in `live`; the others' are forgotten.
    pub fn live(&self, live: &[u64]) -> BTreeMap<u64, Vec<Sample>> {
        let mut by_pid = self.by_pid.borrow_mut();
        by_pid.retain(|pid, _| live.contains(pid));
        by_pid.clone()
    }

    fn set(&self, pid: u64, samples: Vec<Sample>) -> Result<(), capnp::Error> {
        let mut by_pid = self.by_pid.borrow_mut();
        if !by_pid.contains_key(&pid) && by_pid.len() >= REPORTING_PROCESSES_MAX {
            return Err(invalid(format!(
                "{REPORTING_PROCESSES_MAX} processes already report metrics on this host"
            )));
        }
        by_pid.insert(pid, samples);
        Ok(())
    }
}

/// Whether `name` is a Prometheus metric (or label) name.
pub fn valid_name(name: &str, colons: bool) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':'));
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':'))
}

/// `Metrics`, as served to process `pid`.
pub struct MetricsServer {
    reported: Rc<Reported>,
    pid: u64,
}

impl MetricsServer {
    /// The `Metrics` of process `pid`.
    pub fn client(reported: Rc<Reported>, pid: u64) -> metrics::Client {
        capnp_rpc::new_client(Self { reported, pid })
    }
}

impl metrics::Server for MetricsServer {
    async fn set(
        self: CapRc<Self>,
        params: metrics::SetParams,
        _: metrics::SetResults,
    ) -> Result<(), capnp::Error> {
        let list = params.get()?.get_samples()?;
        if list.len() as usize > SERIES_PER_PROCESS_MAX {
            return Err(invalid(format!(
                "{} samples; a process may report at most {SERIES_PER_PROCESS_MAX}",
                list.len()
            )));
        }
        let mut samples = Vec::with_capacity(list.len() as usize);
        for sample in list.iter() {
            samples.push(read_sample(sample)?);
        }
        self.reported.set(self.pid, samples)
    }
}

fn read_sample(
    sample: ww_api::ww_capnp::metric_sample::Reader<'_>,
) -> Result<Sample, capnp::Error> {
    let name = text(sample.get_name(), "metric name")?;
    if name.len() > METRIC_NAME_BYTES_MAX || !valid_name(&name, true) {
        return Err(invalid(format!(
            "{name:?} is not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*, at most {METRIC_NAME_BYTES_MAX} bytes)"
        )));
    }
    if name.starts_with("ww_") {
        return Err(invalid(format!(
            "{name:?}: names starting with ww_ are the host's own"
        )));
    }
    let labels = sample.get_labels()?;
    if labels.len() as usize > LABELS_PER_SAMPLE_MAX {
        return Err(invalid(format!(
            "{name}: {} labels; at most {LABELS_PER_SAMPLE_MAX}",
            labels.len()
        )));
    }
    let mut out = Vec::with_capacity(labels.len() as usize);
    for label in labels.iter() {
        let key = text(label.get_name(), "label name")?;
        let value = text(label.get_value(), "label value")?;
        if key.len() > LABEL_BYTES_MAX || !valid_name(&key, false) || key.starts_with("__") {
            return Err(invalid(format!("{name}: {key:?} is not a label name")));
        }
        if key == "pid" || key == "anchor" {
            return Err(invalid(format!(
                "{name}: the host sets the {key:?} label itself"
            )));
        }
        if value.len() > LABEL_BYTES_MAX {
            return Err(invalid(format!(
                "{name}: label {key} is longer than {LABEL_BYTES_MAX} bytes"
            )));
        }
        out.push((key, value));
    }
    let value = sample.get_value();
    let counter = sample.get_counter();
    if counter && !(value.is_finite() && value >= 0.0) {
        return Err(invalid(format!(
            "{name}: a counter must be finite and not negative, not {value}"
        )));
    }
    Ok(Sample {
        name,
        labels: out,
        value,
        counter,
    })
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn metric_names_follow_prometheus() {
        assert!(valid_name("raft_term", true));
        assert!(valid_name("ns:raft_term", true));
        assert!(!valid_name("ns:raft_term", false));
        assert!(!valid_name("1abc", true));
        assert!(!valid_name("", true));
        assert!(!valid_name("raft-term", true));
        assert!(!valid_name("raft term", true));
    }
}
