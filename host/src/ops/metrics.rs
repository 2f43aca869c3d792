//! `/metrics`: the host's own gauges and counters, then what its processes
//! reported, in the OpenMetrics text format (which Prometheus scrapes).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::cap::context::HostContext;

type Labels = Vec<(String, String)>;
type GaugeF = Gauge<f64, AtomicU64>;
type CounterF = Counter<f64, AtomicU64>;

fn gauge(registry: &mut Registry, name: &str, help: &str, value: f64) {
    let metric = GaugeF::default();
    metric.set(value);
    registry.register(name, help, metric);
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: f64) {
    let metric = CounterF::default();
    metric.inc_by(value);
    registry.register(name, help, metric);
}

/// The exposition text.
pub fn render(ctx: &HostContext) -> String {
    let mut registry = Registry::default();
    let processes = ctx.processes.summaries();

    gauge(
        &mut registry,
        "ww_hosts_in_view",
        "Hosts in this host's cluster view, itself included",
        ctx.node.view().hosts().len() as f64,
    );
    gauge(
        &mut registry,
        "ww_anchors",
        "Nodes of this host's anchor tree",
        ctx.tree.len() as f64,
    );
    let by_state = Family::<Labels, GaugeF>::default();
    for state in [
        "starting",
        "running",
        "restarting",
        "exited",
        "trapped",
        "killed",
    ] {
        let count = processes.iter().filter(|p| p.state == state).count();
        by_state
            .get_or_create(&vec![("state".to_owned(), state.to_owned())])
            .set(count as f64);
    }
    registry.register("ww_processes", "Processes of this host by state", by_state);
    let restarts = Family::<Labels, CounterF>::default();
    let uptime = Family::<Labels, GaugeF>::default();
    for proc in &processes {
        let labels = vec![
            ("pid".to_owned(), proc.id.to_string()),
            ("name".to_owned(), proc.name.clone()),
        ];
        restarts
            .get_or_create(&labels)
            .inc_by(f64::from(proc.restarts));
        uptime
            .get_or_create(&labels)
            .set(proc.uptime_ms as f64 / 1000.0);
    }
    registry.register(
        "ww_process_restarts",
        "Supervised restarts of each process",
        restarts,
    );
    registry.register(
        "ww_process_uptime_seconds",
        "Time since each running process's incarnation started",
        uptime,
    );
    let runtime = ctx.processes.runtime();
    counter(
        &mut registry,
        "ww_rom_compiles",
        "ROMs compiled or loaded from the disk cache",
        runtime.roms().compiles() as f64,
    );
    counter(
        &mut registry,
        "ww_rom_cache_hits",
        "ROM lookups answered from compiled ROMs in memory",
        runtime.roms().hits() as f64,
    );
    counter(
        &mut registry,
        "ww_process_traps",
        "Process incarnations that trapped or could not start",
        ctx.processes.traps() as f64,
    );

    if let Some(cpu_ns) = host_cpu_ns() {
        counter(
            &mut registry,
            "ww_host_cpu_seconds",
            "CPU time of the host process, its guests included (they run on its threads)",
            cpu_ns as f64 / 1e9,
        );
    }

    register_reported(&mut registry, ctx, &processes);
    let mut out = String::new();
    if let Err(err) = encode(&mut out, &registry) {
        tracing::warn!("cannot encode the metrics: {err}");
    }
    out
}

/// One family per reported name; a name reported as a gauge by one process
/// and a counter by another keeps the first kind, and the others' samples
/// of it are left out.
fn register_reported(
    registry: &mut Registry,
    ctx: &HostContext,
    processes: &[crate::cap::executor::ProcSummary],
) {
    let live: Vec<u64> = processes
        .iter()
        .filter(|p| p.state == "running")
        .map(|p| p.id)
        .collect();
    let mut gauges: BTreeMap<String, Family<Labels, GaugeF>> = BTreeMap::new();
    let mut counters: BTreeMap<String, Family<Labels, CounterF>> = BTreeMap::new();
    for (pid, samples) in ctx.reported.live(&live) {
        let anchor = processes
            .iter()
            .find(|p| p.id == pid)
            .map(|p| p.anchor.clone())
            .unwrap_or_default();
        for sample in samples {
            let mut labels = vec![
                ("pid".to_owned(), pid.to_string()),
                ("anchor".to_owned(), anchor.clone()),
            ];
            labels.extend(sample.labels.iter().cloned());
            if sample.counter && !gauges.contains_key(&sample.name) {
                counters
                    .entry(sample.name.clone())
                    .or_default()
                    .get_or_create(&labels)
                    .inc_by(sample.value);
            } else if !sample.counter && !counters.contains_key(&sample.name) {
                gauges
                    .entry(sample.name.clone())
                    .or_default()
                    .get_or_create(&labels)
                    .set(sample.value);
            }
        }
    }
    for (name, family) in gauges {
        registry.register(name, "Reported by a process", family);
    }
    for (name, family) in counters {
        registry.register(name, "Reported by a process", family);
    }
}

/// CPU time of every live thread of this process, from Linux's
/// `/proc/self/task/*/schedstat` (ns, exact). `None` elsewhere. Guests
/// share the host's threads, so this is not split per process.
fn host_cpu_ns() -> Option<u64> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    Some(
        tasks
            .filter_map(Result::ok)
            .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
            .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
            .sum(),
    )
}
