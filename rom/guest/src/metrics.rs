//! Reporting metrics about this process to its host (`Host.metrics`): the
//! host exports them at `/metrics` labelled with the process's id and
//! anchor, and gives them no meaning of its own.

use std::cell::Cell;
use std::rc::Rc;

use ww_api::{host, metrics};

/// One sample: a name, labels, a value, and whether it is a counter (the
/// host exports counters with a `_total` suffix).
#[derive(Clone, Debug)]
pub struct Sample {
    /// A Prometheus name, not starting with `ww_` (the host's own).
    pub name: &'static str,
    /// Label names and values.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
    /// A counter (monotonic) rather than a gauge.
    pub counter: bool,
}

impl Sample {
    /// A gauge.
    pub fn gauge(name: &'static str, value: f64) -> Self {
        Self {
            name,
            labels: Vec::new(),
            value,
            counter: false,
        }
    }

    /// A counter.
    pub fn counter(name: &'static str, value: f64) -> Self {
        Self {
            counter: true,
            ..Self::gauge(name, value)
        }
    }

    /// With label `name` set to `value`.
    #[must_use]
    pub fn label(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.labels.push((name, value.into()));
        self
    }
}

/// Sends reports, one `Metrics.set` in flight at most: a host slow to
/// answer costs a skipped report, never a queue of them.
pub struct Reporter {
    metrics: metrics::Client,
    in_flight: Rc<Cell<bool>>,
}

impl Reporter {
    /// A reporter through `host`'s `metrics` (pipelined: no round trip).
    pub fn new(host: &host::Client) -> Self {
        Self {
            metrics: host.metrics_request().send().pipeline.get_metrics(),
            in_flight: Rc::new(Cell::new(false)),
        }
    }

    /// Whether the last report is still unanswered.
    pub fn busy(&self) -> bool {
        self.in_flight.get()
    }

    /// Replaces what this process reported with `samples`, without waiting
    /// for the host; a failure is logged on stderr, prefixed with `who`.
    pub fn send(&self, who: &'static str, samples: &[Sample]) {
        let mut request = self.metrics.set_request();
        let mut list = request
            .get()
            .init_samples(u32::try_from(samples.len()).unwrap_or(0));
        for (index, sample) in samples.iter().enumerate() {
            let Ok(index) = u32::try_from(index) else {
                break;
            };
            let mut built = list.reborrow().get(index);
            built.set_name(sample.name);
            built.set_value(sample.value);
            built.set_counter(sample.counter);
            let mut labels = built.init_labels(u32::try_from(sample.labels.len()).unwrap_or(0));
            for (at, (name, value)) in sample.labels.iter().enumerate() {
                let Ok(at) = u32::try_from(at) else { break };
                let mut label = labels.reborrow().get(at);
                label.set_name(name);
                label.set_value(value);
            }
        }
        let promise = request.send().promise;
        let in_flight = self.in_flight.clone();
        in_flight.set(true);
        crate::spawn(async move {
            if let Err(err) = promise.await {
                eprintln!("{who}: reporting metrics: {err}");
            }
            in_flight.set(false);
        });
    }
}
