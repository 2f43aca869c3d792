//! Scale curves (`raft -- scale`): how writes/s and CPU per write change
//! with the number of Raft groups sharing the same four hosts (each group's
//! replicas on hosts 1-3, so several replicas per host share its CPU and
//! its disk), and with the size of one group (3, 5 or 9 replicas on as
//! many hosts, plus the client's host). Each point is a fresh cluster;
//! every group gets `--clients` closed-loop writers of its own, through its
//! own native client, so the offered load grows with the groups.

use super::*;

/// One point of a curve.
struct Point {
    hosts: usize,
    groups: usize,
    replicas: usize,
}

pub(super) async fn scale(args: &Args) -> Result<()> {
    let mut points: Vec<Point> = args
        .groups
        .iter()
        .map(|&groups| Point {
            hosts: 4,
            groups,
            replicas: 3,
        })
        .collect();
    points.extend(args.replicas.iter().map(|&replicas| Point {
        hosts: replicas + 1,
        groups: 1,
        replicas,
    }));
    let mut reports = Vec::new();
    for point in &points {
        let report = measure(args, point).await?;
        eprintln!("{}", serde_json::to_string(&report)?);
        reports.push(report);
    }
    print_scale(args, &reports);
    Ok(())
}

async fn measure(args: &Args, point: &Point) -> Result<Value> {
    eprintln!(
        "raft bench: scale: {} group(s) of {} replicas on {} hosts",
        point.groups, point.replicas, point.hosts
    );
    let raft_rom = std::env::var_os("RAFT_BENCH_ROM").map_or_else(|| rom("raft"), PathBuf::from);
    let versions: Vec<String> = (1..=point.groups).map(|g| format!("v{g}")).collect();
    let version_refs: Vec<&str> = versions.iter().map(String::as_str).collect();
    let (hosts, dir) = ww_tests::raft_rom::deployed_for_bench_with(
        &raft_rom,
        point.hosts,
        &version_refs,
        point.replicas,
    )
    .map_err(anyhow::Error::msg)?;
    let cluster = Cluster { hosts, _dir: dir };
    let addr: libp2p::Multiaddr = cluster.hosts[0].addr.parse()?;
    let mut groups = Vec::new();
    for version in &versions {
        groups.push(raft_client::native::connect(std::slice::from_ref(&addr), version).await?);
    }
    let recorder = Rc::new(Recorder::default());
    let stop = Rc::new(Cell::new(false));
    let mut tasks = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        for index in 0..args.clients {
            let session = group.session();
            let (recorder, stop) = (recorder.clone(), stop.clone());
            tasks.push(tokio::task::spawn_local(async move {
                let client = queue::Client::new(&session);
                let mut rng = Rng((g * 10_007 + index) as u64 * 7919 + 1);
                while !stop.get() {
                    let key = key(rng.next() % WRITE_KEYS);
                    let started = Instant::now();
                    let result = client.put(key, rng.value()).await;
                    recorder.record(started, &result);
                }
            }));
        }
    }
    tokio::time::sleep(args.warmup).await;
    let cpu_before = cpu_sample(&cluster);
    recorder.on.set(true);
    let started = Instant::now();
    tokio::time::sleep(args.duration).await;
    recorder.on.set(false);
    let seconds = started.elapsed().as_secs_f64();
    let cpu_after = cpu_sample(&cluster);
    stop.set(true);
    for task in tasks {
        task.await?;
    }
    let latencies = recorder.latencies_us.borrow().clone();
    let ops = latencies.len() as u64;
    let cpu_ms: f64 = cpu_before
        .iter()
        .zip(&cpu_after)
        .map(|(b, a)| a.saturating_sub(*b) as f64 / 1e6)
        .sum();
    let mut report = json!({
        "hosts": point.hosts,
        "groups": point.groups,
        "replicas": point.replicas,
        "clients_per_group": args.clients,
        "duration_s": round2(seconds),
        "ops": ops,
        "ops_per_s": round2(ops as f64 / seconds),
        "errors": recorder.errors.get(),
        "last_error": recorder.last_error.borrow().clone(),
        "cpu_us_per_op": round2(if ops == 0 { 0.0 } else { cpu_ms * 1e3 / ops as f64 }),
        "cpu_share": round2(cpu_ms / 1e3 / seconds),
    });
    merge(&mut report, latency_json(&latencies));
    drop(groups);
    drop(cluster);
    Ok(report)
}

fn print_scale(args: &Args, reports: &[Value]) {
    println!(
        "Closed-loop writers (`put` of 256-byte values to random keys among 100,000), {} per group, each \
         group through its own native client attached to host 0 (which holds no replica); {}s warmup, \
         then {}s measured, one run per row on a fresh cluster. Several groups share hosts 1-3 (one \
         replica of each per host, each replica its own process with its own log and fsyncs). CPU is all \
         hosts and the driver, per write; the machine has 2 cores in all. `make bench-raft-scale`.\n",
        args.clients,
        args.warmup.as_secs_f64(),
        args.duration.as_secs_f64(),
    );
    println!("| hosts | groups × replicas | writes/s | p50 | p99 | p99.9 | CPU per write | CPU share | errors |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for report in reports {
        println!(
            "| {} | {} × {} | {:.0} | {} | {} | {} | {} | {:.2} | {} |",
            report["hosts"],
            report["groups"],
            report["replicas"],
            report["ops_per_s"].as_f64().unwrap_or(0.0),
            ms(report["p50_us"].as_f64().unwrap_or(0.0)),
            ms(report["p99_us"].as_f64().unwrap_or(0.0)),
            ms(report["p999_us"].as_f64().unwrap_or(0.0)),
            ms(report["cpu_us_per_op"].as_f64().unwrap_or(0.0)),
            report["cpu_share"].as_f64().unwrap_or(0.0),
            report["errors"],
        );
    }
}
