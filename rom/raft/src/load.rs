//! `load`: closed-loop writers from this process, to see what the cluster
//! does for a client where this ROM runs, and which route its requests
//! take. Each writer has its own session and one `put` in flight; keys are
//! `load/<writer>/<n>`, values 256 bytes. Progress goes to stderr, the
//! summary to stdout.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::bail;

use raft_client::{Group, GuestRuntime};
use ww_guest::args::Args;

/// Most writers: each holds a session and one request.
const WRITERS_MAX: u32 = 1_024;

/// Longest run.
const DURATION_MS_MAX: u64 = 600_000;

/// How often progress goes to stderr.
const PROGRESS_MS: u64 = 500;

/// The width of the timeline's buckets.
const BUCKET_MS: u64 = 250;

const VALUE_BYTES: usize = 256;

pub async fn run(group: &Group<GuestRuntime>, args: &mut Args) -> anyhow::Result<()> {
    let writers: u32 = args.parsed("--writers")?.unwrap_or(4);
    let duration_ms: u64 = args.parsed("--duration-ms")?.unwrap_or(5_000);
    let json = args.flag("--json");
    if !(1..=WRITERS_MAX).contains(&writers) {
        bail!("--writers must be 1 to {WRITERS_MAX} (WRITERS_MAX)");
    }
    if !(1..=DURATION_MS_MAX).contains(&duration_ms) {
        bail!("--duration-ms must be 1 to {DURATION_MS_MAX} (DURATION_MS_MAX)");
    }
    let start = Instant::now();
    let duration = Duration::from_millis(duration_ms);
    let latencies_us = Rc::new(RefCell::new(Vec::new()));
    let buckets = usize::try_from(duration_ms.div_ceil(BUCKET_MS)).unwrap_or(usize::MAX);
    let timeline = Rc::new(RefCell::new(vec![0u64; buckets]));
    let errors = Rc::new(RefCell::new((0u64, String::new())));
    let value = vec![b'v'; VALUE_BYTES];
    let progress = &Progress::default();
    let writer = |index: u32| {
        let session = group.session();
        let latencies_us = latencies_us.clone();
        let timeline = timeline.clone();
        let errors = errors.clone();
        let value = value.clone();
        async move {
            let client = queue::Client::new(&session);
            for n in 0u64.. {
                let sent = Instant::now();
                if sent.duration_since(start) >= duration {
                    return;
                }
                let key = format!("load/{index}/{n}");
                match client.put(key.as_bytes(), value.as_slice()).await {
                    Ok(_) => {
                        let took = sent.elapsed();
                        latencies_us
                            .borrow_mut()
                            .push(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
                        let at_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                        let bucket = usize::try_from(at_ms / BUCKET_MS).unwrap_or(usize::MAX);
                        if let Some(count) = timeline.borrow_mut().get_mut(bucket) {
                            *count += 1;
                        }
                        progress.tick(group, latencies_us.borrow().len());
                    }
                    Err(err) => {
                        let mut errors = errors.borrow_mut();
                        errors.0 += 1;
                        errors.1 = err.to_string();
                    }
                }
            }
        }
    };
    futures::future::join_all((0..writers).map(writer)).await;
    let elapsed_ms = u64::try_from(start.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let mut latencies_us = latencies_us.take();
    latencies_us.sort_unstable();
    let percentile = |p: usize| {
        latencies_us
            .get((latencies_us.len() * p / 100).min(latencies_us.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let ops = latencies_us.len() as u64;
    let ops_per_s = ops * 1_000 / elapsed_ms;
    let (error_count, last_error) = errors.take();
    let direct = group.direct_replicas();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "writers": writers,
                "ops": ops,
                "ops_per_s": ops_per_s,
                "p50_us": percentile(50),
                "p99_us": percentile(99),
                "errors": error_count,
                "last_error": last_error,
                "direct_replicas": direct,
                "replicas": group.replicas().len(),
                "bucket_ms": BUCKET_MS,
                "timeline": *timeline.borrow(),
            })
        );
    } else {
        println!(
            "{ops} writes in {elapsed_ms} ms: {ops_per_s}/s, p50 {} µs, p99 {} µs, {error_count} errors; {direct} of {} replicas reached directly",
            percentile(50),
            percentile(99),
            group.replicas().len()
        );
        if error_count > 0 {
            eprintln!("last error: {last_error}");
        }
    }
    Ok(())
}

/// Progress lines on stderr, at most one per [`PROGRESS_MS`]:
/// `load: N writes, D of M replicas direct`.
#[derive(Default)]
struct Progress {
    last: std::cell::Cell<Option<Instant>>,
}

impl Progress {
    fn tick(&self, group: &Group<GuestRuntime>, writes: usize) {
        let due = self
            .last
            .get()
            .is_none_or(|last| last.elapsed() >= Duration::from_millis(PROGRESS_MS));
        if due {
            self.last.set(Some(Instant::now()));
            eprintln!(
                "load: {writes} writes, {} of {} replicas direct",
                group.direct_replicas(),
                group.replicas().len()
            );
        }
    }
}
