//! Reading a host's `/metrics` (`ww start --http`) through a real
//! Prometheus parser.

pub use prometheus_parse::Sample;

use crate::web::get;

/// The parsed samples of `/metrics` on `addr`.
///
/// # Panics
///
/// When the GET fails or the exposition does not parse.
pub fn scrape(addr: &str) -> Vec<Sample> {
    let text = get(addr, "/metrics");
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    prometheus_parse::Scrape::parse(lines)
        .unwrap_or_else(|err| panic!("/metrics does not parse: {err}\n{text}"))
        .samples
}

/// A counter's, gauge's or untyped sample's value (NaN for the others).
pub fn value(sample: &Sample) -> f64 {
    match sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => f64::NAN,
    }
}

fn matches(sample: &Sample, name: &str, labels: &[(&str, &str)]) -> bool {
    sample.metric == name
        && labels
            .iter()
            .all(|(label, text)| sample.labels.get(label) == Some(*text))
}

/// The value of the first sample of `name` with all of `labels`.
pub fn find(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|sample| matches(sample, name, labels))
        .map(value)
}

/// The sum of every sample of `name` with all of `labels` (0 if none).
pub fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|sample| matches(sample, name, labels))
        .map(value)
        .sum()
}
