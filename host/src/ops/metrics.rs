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
    let cpu = Family::<Labels, CounterF>::default();
    let slices = Family::<Labels, CounterF>::default();
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
        cpu.get_or_create(&labels).inc_by(proc.cpu_ns as f64 / 1e9);
        slices.get_or_create(&labels).inc_by(proc.cpu_slices as f64);
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
    registry.register(
        "ww_process_cpu_seconds",
        "Time each process's guest ran on the host's thread, host calls included, summed over its incarnations",
        cpu,
    );
    registry.register(
        "ww_process_cpu_slices",
        "Polls of each process's guest on the host's thread, summed over its incarnations (cpu seconds over slices: the mean time others wait behind one)",
        slices,
    );
    let runtime = ctx.processes.runtime();
    let cpu_wait = Family::<Labels, CounterF>::default();
    for (pid, wait_ns) in runtime.cpu_waits_ns() {
        let name = processes
            .iter()
            .find(|proc| proc.id == pid)
            .map_or_else(String::new, |proc| proc.name.clone());
        let labels = vec![
            ("pid".to_owned(), pid.to_string()),
            ("name".to_owned(), name),
        ];
        cpu_wait.get_or_create(&labels).inc_by(wait_ns as f64 / 1e9);
    }
    registry.register(
        "ww_process_cpu_wait_seconds",
        "Time each running process's current incarnation waited for its CPU share",
        cpu_wait,
    );
    register_rpc(&mut registry, ctx);
    register_budgets(&mut registry, ctx);
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

fn labelled(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// Connections, calls and bytes: `from="peer"` sums the connections other
/// peers opened (hosts, CLIs, native clients), `from="process"` those of
/// this host's processes.
fn register_rpc(registry: &mut Registry, ctx: &HostContext) {
    let connections = &ctx.rpc_connections;
    gauge(
        registry,
        "ww_rpc_connections",
        "Inbound RPC connections open now",
        connections.live.get() as f64,
    );
    let outcomes = Family::<Labels, CounterF>::default();
    for (outcome, count) in [
        ("accepted", connections.accepted.get()),
        ("refused", connections.refused.get()),
        ("evicted", connections.evicted.get()),
        ("failed", connections.failed.get()),
    ] {
        outcomes
            .get_or_create(&labelled(&[("outcome", outcome)]))
            .inc_by(count as f64);
    }
    registry.register(
        "ww_rpc_connections_opened",
        "Inbound RPC connections by outcome: accepted, refused at a connection limit, evicted (idle, to make room), or ended by an error other than a disconnect",
        outcomes,
    );
    let calls = Family::<Labels, CounterF>::default();
    let errors = Family::<Labels, CounterF>::default();
    let in_flight = Family::<Labels, GaugeF>::default();
    let refused = Family::<Labels, CounterF>::default();
    let bytes = Family::<Labels, CounterF>::default();
    let runtime = ctx.processes.runtime();
    for (from, meter) in [("peer", &ctx.rpc_meter), ("process", &runtime.rpc_meter)] {
        let reading = meter.reading();
        let from_label = labelled(&[("from", from)]);
        calls
            .get_or_create(&from_label)
            .inc_by(reading.calls_received as f64);
        errors
            .get_or_create(&from_label)
            .inc_by(reading.exceptions_sent as f64);
        in_flight
            .get_or_create(&from_label)
            .set(reading.calls_in_flight as f64);
        refused
            .get_or_create(&from_label)
            .inc_by(reading.calls_refused as f64);
        for (direction, count) in [("in", reading.bytes_received), ("out", reading.bytes_sent)] {
            bytes
                .get_or_create(&labelled(&[("from", from), ("direction", direction)]))
                .inc_by(count as f64);
        }
    }
    registry.register(
        "ww_rpc_calls",
        "Calls received on this host's capabilities",
        calls,
    );
    registry.register(
        "ww_rpc_errors",
        "Received calls answered with an error (refused, failed or cancelled)",
        errors,
    );
    registry.register(
        "ww_rpc_calls_in_flight",
        "Received calls not answered yet",
        in_flight,
    );
    registry.register(
        "ww_rpc_calls_refused",
        "Calls refused as overloaded: their connection had CALLS_IN_FLIGHT_PER_CONNECTION_MAX unanswered",
        refused,
    );
    registry.register(
        "ww_rpc_bytes",
        "Bytes on RPC connections, by direction as this host sees it",
        bytes,
    );
}

/// Each host-wide memory budget: what is used of it, and its limit.
fn register_budgets(registry: &mut Registry, ctx: &HostContext) {
    let used = Family::<Labels, GaugeF>::default();
    let limit = Family::<Labels, GaugeF>::default();
    let (guest_bytes, guest_bytes_max) = ctx.processes.runtime().guest_memory_bytes();
    for (budget, used_bytes, limit_bytes) in [
        ("guest_memory", guest_bytes, guest_bytes_max),
        (
            "channels",
            ctx.senders.usage().bytes,
            crate::limits::CHANNEL_HOST_BYTES_MAX,
        ),
        (
            "subscriptions",
            ctx.subscriptions.total_bytes(),
            crate::limits::SUBSCRIPTION_HOST_BYTES_MAX,
        ),
        (
            "anchor_data",
            ctx.tree.data_bytes(),
            crate::limits::TREE_DATA_BYTES_MAX,
        ),
    ] {
        let labels = labelled(&[("budget", budget)]);
        used.get_or_create(&labels).set(used_bytes as f64);
        limit.get_or_create(&labels).set(limit_bytes as f64);
    }
    registry.register(
        "ww_budget_used_bytes",
        "Bytes held against each host-wide memory budget",
        used,
    );
    registry.register(
        "ww_budget_limit_bytes",
        "Each host-wide memory budget",
        limit,
    );
    let refusals = Family::<Labels, CounterF>::default();
    for (budget, refused) in ctx.processes.runtime().budget_refusals() {
        refusals
            .get_or_create(&labelled(&[("budget", budget)]))
            .inc_by(refused as f64);
    }
    registry.register(
        "ww_budget_refusals",
        "Requests of the host's processes refused by a host-wide budget: growths of linear memory (guest_memory), file opens (descriptors)",
        refusals,
    );
    let channels = ctx.senders.usage().channels;
    gauge(
        registry,
        "ww_channels",
        "Live channels hosted here",
        channels as f64,
    );
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
