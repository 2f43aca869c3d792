//! A ROM client's route (`raft -- rom-client`): `ww run raft.wasm load`
//! against the four-host cluster, attached to host 0 (which holds no
//! replica), once relayed (`--relayed`: every request and reply crosses
//! host 0) and once with its own connections to the replicas' hosts
//! (`Host.connect`, the default after 16 requests), in interleaved pairs
//! on one cluster so that the machine's drift hits both alike.

use std::process::Command;

use super::*;

pub(super) async fn rom_client(args: &Args) -> Result<()> {
    let cluster = start_cluster()?;
    let raft_rom = std::env::var_os("RAFT_BENCH_ROM").map_or_else(|| rom("raft"), PathBuf::from);
    let mut reports = Vec::new();
    for run in 0..args.runs {
        for relayed in [true, false] {
            let report = measure(args, &cluster, &raft_rom, relayed)?;
            eprintln!("raft bench: rom-client run {run}: {report}");
            reports.push(report);
        }
    }
    print_rom_client(args, &reports);
    Ok(())
}

fn measure(args: &Args, cluster: &Cluster, raft_rom: &Path, relayed: bool) -> Result<Value> {
    let duration_ms = u64::try_from(args.duration.as_millis()).unwrap_or(u64::MAX);
    let mut command = Command::new(ww_tests::ww_bin());
    command.args(["run", "--peer", &cluster.hosts[0].addr]);
    command.arg(raft_rom);
    if relayed {
        command.arg("--relayed");
    }
    command.args([
        "load",
        "--writers",
        &args.clients.to_string(),
        "--duration-ms",
        &duration_ms.to_string(),
        "--json",
    ]);
    let cpu_before = cpu_sample(cluster);
    let output = command.output().context("running ww run raft.wasm load")?;
    let cpu_after = cpu_sample(cluster);
    if !output.status.success() {
        bail!(
            "ww run raft.wasm load failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .with_context(|| format!("load printed no summary: {stdout}"))?;
    // The hosts only: the driver here just waits for `ww run`, whose own
    // CPU (the ROM, its libp2p node) is the client's, not the cluster's.
    let cpu_ms: f64 = cpu_before[..cluster.hosts.len()]
        .iter()
        .zip(&cpu_after)
        .map(|(b, a)| a.saturating_sub(*b) as f64 / 1e6)
        .sum();
    let ops = report["ops"].as_f64().unwrap_or(0.0);
    merge(
        &mut report,
        json!({
            "route": if relayed { "relayed" } else { "direct" },
            "hosts_cpu_us_per_op": round2(if ops == 0.0 { 0.0 } else { cpu_ms * 1e3 / ops }),
        }),
    );
    if let Some(object) = report.as_object_mut() {
        object.remove("timeline");
    }
    Ok(report)
}

fn print_rom_client(args: &Args, reports: &[Value]) {
    println!(
        "`ww run raft.wasm load --writers {}` (closed-loop `put`s of 256-byte values from one ROM, \
         {} ms each) attached to host 0 of four release hosts; replicas on hosts 1-3. `relayed`: every \
         request and reply crosses host 0; `direct`: after 16 requests the ROM reaches each replica's \
         host over `ww run`'s own connection (`Host.connect`), and the replies come back on a channel \
         on that host. Runs alternate on one cluster. CPU is the four hosts', per write (the `ww run` \
         process is the client's own). `make bench-raft-rom-client`.\n",
        args.clients,
        args.duration.as_millis(),
    );
    println!(
        "| run | route | writes/s | p50 | p99 | hosts' CPU per write | direct replicas | errors |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for (index, report) in reports.iter().enumerate() {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            index / 2 + 1,
            report["route"].as_str().unwrap_or("?"),
            report["ops_per_s"],
            ms(report["p50_us"].as_f64().unwrap_or(0.0)),
            ms(report["p99_us"].as_f64().unwrap_or(0.0)),
            ms(report["hosts_cpu_us_per_op"].as_f64().unwrap_or(0.0)),
            report["direct_replicas"],
            report["errors"],
        );
    }
}
