//! `make sim`: runs raft-core's deterministic simulator over a range of
//! seeds and exits non-zero if any seed fails.
//!
//! ```text
//! sim --start S --seeds N --nodes 3|5 --workload kv [--jobs J] [--trace]
//! ```
//!
//! Seeds run on `--jobs` threads (default: all cores); each seed is
//! single-threaded and deterministic, so the thread count never changes a
//! result. Every failure prints `seed=N` and the command that replays it.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use raft_core::sim::{self, KvWorkload, SimFailure, SimOptions, SimReport};

/// Runs one seed of the named workload. To add a workload, add its arm
/// here (one line), e.g. `"queue" => sim::run::<queue::sim::QueueSim>(options)`.
fn run_workload(workload: &str, options: &SimOptions) -> Option<Result<SimReport, SimFailure>> {
    match workload {
        "kv" => Some(sim::run::<KvWorkload>(options)),
        "queue" => Some(sim::run::<queue::sim::QueueSim>(options)),
        "crawl" => Some(sim::run::<queue::sim::CrawlSim>(options)),
        _ => None,
    }
}

/// The workloads `run_workload` knows, space-separated.
const WORKLOADS: &str = "kv queue crawl";

struct Args {
    start: u64,
    seeds: u64,
    nodes: usize,
    workload: String,
    jobs: usize,
    trace: bool,
    /// `--disk-fault ignore-log-sync`: the disks lie about fsync on log
    /// segments, which is what deleting the fsync would do. Runs are then
    /// expected to fail; this shows that the simulator notices.
    ignore_log_sync: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        start: 1,
        seeds: 1,
        nodes: 3,
        workload: "kv".into(),
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        trace: false,
        ignore_log_sync: false,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let mut value = |name: &str| iter.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--start" => {
                args.start = value("--start")?
                    .parse()
                    .map_err(|e| format!("--start: {e}"))?
            }
            "--seeds" => {
                args.seeds = value("--seeds")?
                    .parse()
                    .map_err(|e| format!("--seeds: {e}"))?
            }
            "--nodes" => {
                args.nodes = value("--nodes")?
                    .parse()
                    .map_err(|e| format!("--nodes: {e}"))?
            }
            "--workload" => args.workload = value("--workload")?,
            "--jobs" => {
                args.jobs = value("--jobs")?
                    .parse()
                    .map_err(|e| format!("--jobs: {e}"))?
            }
            "--trace" => args.trace = true,
            "--disk-fault" => match value("--disk-fault")?.as_str() {
                "ignore-log-sync" => args.ignore_log_sync = true,
                other => {
                    return Err(format!(
                        "unknown disk fault {other}; known: ignore-log-sync"
                    ))
                }
            },
            "--help" | "-h" => return Err(
                "usage: sim --start S --seeds N --nodes 3|5 --workload NAME [--jobs J] [--trace] \
                 [--disk-fault ignore-log-sync]"
                    .into(),
            ),
            other => return Err(format!("unknown argument {other}; see --help")),
        }
    }
    if args.nodes == 0 || args.nodes > 9 {
        return Err(format!("--nodes {} must be between 1 and 9", args.nodes));
    }
    if args.jobs == 0 {
        return Err("--jobs must be at least 1".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("sim: {message}");
            return ExitCode::from(2);
        }
    };
    if !WORKLOADS.split(' ').any(|w| w == args.workload) {
        eprintln!(
            "sim: unknown workload {:?}; known: {WORKLOADS}",
            args.workload
        );
        return ExitCode::from(2);
    }
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(args.start));
    let end = args.start + args.seeds;
    let failures: Arc<Mutex<Vec<SimFailure>>> = Arc::default();
    let totals: Arc<Mutex<SimReport>> = Arc::default();
    let jobs = args.jobs.min(args.seeds.max(1) as usize);
    let threads: Vec<_> = (0..jobs)
        .map(|_| {
            let (next, failures, totals) = (next.clone(), failures.clone(), totals.clone());
            let (nodes, workload, trace) = (args.nodes, args.workload.clone(), args.trace);
            let ignore_log_sync = args.ignore_log_sync;
            std::thread::spawn(move || loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    break;
                }
                let mut options = SimOptions::new(seed, nodes, &workload);
                options.trace = trace;
                options.disk_faults.ignore_log_sync = ignore_log_sync;
                match run_workload(&workload, &options) {
                    Some(Ok(report)) => {
                        if trace {
                            eprintln!("seed={seed}: ok: {report:?}");
                        }
                        let mut totals = totals.lock().unwrap_or_else(|p| p.into_inner());
                        totals.completed_count += report.completed_count;
                        totals.crash_count += report.crash_count;
                        totals.partition_count += report.partition_count;
                        totals.membership_change_count += report.membership_change_count;
                        totals.snapshots_installed_count += report.snapshots_installed_count;
                        totals.torn_tail_count += report.torn_tail_count;
                        totals.io_fault_count += report.io_fault_count;
                        totals.bitflip_count += report.bitflip_count;
                        totals.corrupt_refusal_count += report.corrupt_refusal_count;
                        totals.bitflips_in_removed_files_count +=
                            report.bitflips_in_removed_files_count;
                        totals.forged_count += report.forged_count;
                        totals.early_rounds_count += report.early_rounds_count;
                        totals.elapsed_ms += report.elapsed_ms;
                        add_summary(&mut totals.workload_summary, &report.workload_summary);
                    }
                    Some(Err(failure)) => {
                        eprintln!("{failure}\n");
                        failures
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(failure);
                    }
                    None => break,
                }
            })
        })
        .collect();
    for thread in threads {
        if thread.join().is_err() {
            eprintln!("sim: a worker thread panicked outside a seed");
            return ExitCode::FAILURE;
        }
    }
    let failures = failures.lock().unwrap_or_else(|p| p.into_inner());
    let totals = totals.lock().unwrap_or_else(|p| p.into_inner());
    let wall = started.elapsed();
    println!(
        "sim: workload={} nodes={} seeds {}..{}: {} passed, {} failed in {:.1} s ({} jobs); \
         {} requests, {} crashes, {} partitions, {} membership changes, {} snapshot installs, {} torn tails, {} I/O faults, {} bit flips ({} replicas refused to start, {} in files already removed), {} forged messages, {} rounds split by send_early, {:.0} s simulated",
        args.workload,
        args.nodes,
        args.start,
        end.saturating_sub(1),
        args.seeds - failures.len() as u64,
        failures.len(),
        wall.as_secs_f64(),
        jobs,
        totals.completed_count,
        totals.crash_count,
        totals.partition_count,
        totals.membership_change_count,
        totals.snapshots_installed_count,
        totals.torn_tail_count,
        totals.io_fault_count,
        totals.bitflip_count,
        totals.corrupt_refusal_count,
        totals.bitflips_in_removed_files_count,
        totals.forged_count,
        totals.early_rounds_count,
        totals.elapsed_ms as f64 / 1000.0,
    );
    if !totals.workload_summary.is_empty() {
        println!(
            "sim: workload totals over passed seeds: {}",
            describe_totals(&totals.workload_summary)
        );
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        let mut seeds: Vec<u64> = failures.iter().map(|f| f.seed).collect();
        seeds.sort_unstable();
        println!("sim: failing seeds: {seeds:?}");
        ExitCode::FAILURE
    }
}

/// Sums the `name=N` counters of a workload summary into `totals` (kept in
/// the same `name=N` form), so every run prints e.g. the queue workload's
/// lost, unexpected and duplicate counts over all seeds.
fn add_summary(totals: &mut String, summary: &str) {
    let mut sums: Vec<(String, u64)> = parse_counters(totals);
    for (name, value) in parse_counters(summary) {
        match sums.iter_mut().find(|(existing, _)| *existing == name) {
            Some((_, sum)) => *sum += value,
            None => sums.push((name, value)),
        }
    }
    *totals = sums
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(" ");
}

fn parse_counters(summary: &str) -> Vec<(String, u64)> {
    summary
        .split_whitespace()
        .filter_map(|item| {
            let (name, value) = item.split_once('=')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The totals, with the duplicate-delivery rate when the workload counts
/// deliveries and duplicates.
fn describe_totals(totals: &str) -> String {
    let counters = parse_counters(totals);
    let get = |name: &str| counters.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    match (get("deliveries"), get("duplicates")) {
        (Some(deliveries), Some(duplicates)) if deliveries > 0 => format!(
            "{totals} duplicate_delivery_rate={:.2}%",
            duplicates as f64 * 100.0 / deliveries as f64
        ),
        _ => totals.to_owned(),
    }
}
