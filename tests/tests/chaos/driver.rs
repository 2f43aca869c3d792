//! One chaos run: hosts, group, clients, nemesis, drain, checks, report.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use ww_tests::chaos::{FaultKind, Recorder, Schedule};
use ww_tests::cluster::workspace_root;
use ww_tests::{rom, wait_until, ww, ww_with_timeout, Cluster};

/// Hosts in the cluster: host 0 deploys and serves clients, 1-3 hold the
/// replicas and take the faults.
pub const HOST_COUNT: usize = 4;
/// The keys the KV clients share (few, so operations contend).
pub const KEYS: [&str; 3] = ["k0", "k1", "k2"];
/// The topics the queue clients share.
pub const TOPICS: [&str; 2] = ["t0", "t1"];
/// How long setup (view, deploy) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Drives the nemesis and the clients' choices.
    pub seed: u64,
    /// How long the workload runs.
    pub duration: Duration,
    /// `ww run` client loops (each op a separate process).
    pub cli_clients: usize,
    /// Native sessions in this process.
    pub native_clients: usize,
}

/// What the clients, the nemesis and the driver share.
pub struct Shared {
    /// Every operation and fault.
    pub recorder: Mutex<Recorder>,
    /// Time zero of the history.
    pub start: Instant,
    /// Set when the workload ends.
    pub stop: AtomicBool,
    /// Each host's address (ports are kept across restarts).
    pub addrs: Vec<String>,
    /// Which hosts are neither killed nor paused right now.
    pub healthy: Mutex<Vec<bool>>,
    /// target/rom/raft.wasm.
    pub rom: PathBuf,
}

impl Shared {
    /// Milliseconds since the run began.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether the workload should end.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The recorder (a poisoned lock means a client panicked: go on, the
    /// join reports it).
    pub fn recorder(&self) -> std::sync::MutexGuard<'_, Recorder> {
        self.recorder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The last JSON object a ROM printed on stdout.
pub fn last_json(stdout: &str) -> Option<Value> {
    let line = stdout.lines().rev().find(|line| line.starts_with('{'))?;
    serde_json::from_str(line).ok()
}

fn deploy(cluster: &Cluster, rom: &std::path::Path) {
    let client = cluster.hosts[0].addr.clone();
    wait_until("every host in host 0's view", SETUP_TIMEOUT, || {
        let out = ww(&["ls", "--json", "--peer", &client, "/"]);
        let listing: Value = serde_json::from_str(out.stdout.trim()).ok()?;
        (listing["children"].as_array()?.len() == HOST_COUNT).then_some(())
    });
    let out = ww_with_timeout(
        &["run", "--peer", &client, rom.to_str().unwrap(), "deploy"],
        SETUP_TIMEOUT,
    );
    out.assert_ok();
    assert!(out.stdout.contains("leader elected"), "{out:#?}");
}

/// Runs the whole thing; panics with the seed and the history's path
/// unless every check passes.
pub fn run(config: &Config) {
    let duration_ms = u64::try_from(config.duration.as_millis()).unwrap();
    let schedule = Schedule::new(config.seed, duration_ms);
    let out_dir = workspace_root()
        .join("target/chaos")
        .join(format!("seed-{}", config.seed));
    std::fs::create_dir_all(&out_dir).unwrap();
    let history_path = out_dir.join("history.jsonl");
    eprintln!(
        "chaos: seed={} duration={}s cli_clients={} native_clients={} faults={} (history: {})",
        config.seed,
        config.duration.as_secs(),
        config.cli_clients,
        config.native_clients,
        schedule.faults.len(),
        history_path.display()
    );

    let rom = rom("raft");
    let mut cluster = Cluster::start(HOST_COUNT);
    deploy(&cluster, &rom);
    let shared = Arc::new(Shared {
        recorder: Mutex::new(Recorder::default()),
        start: Instant::now(),
        stop: AtomicBool::new(false),
        addrs: cluster.hosts.iter().map(|host| host.addr.clone()).collect(),
        healthy: Mutex::new(vec![true; HOST_COUNT]),
        rom,
    });

    let start_ms = shared.now_ms();
    let mut clients = Vec::new();
    for index in 0..config.cli_clients {
        let shared = shared.clone();
        let seed = config.seed;
        clients.push(std::thread::spawn(move || {
            crate::cli::client_loop(&shared, index, seed);
        }));
    }
    let native = {
        let shared = shared.clone();
        let (count, seed) = (config.native_clients, config.seed);
        std::thread::spawn(move || crate::native::clients(&shared, count, seed))
    };
    let nemesis = {
        let shared = shared.clone();
        std::thread::spawn(move || {
            crate::nemesis::run(&shared, &mut cluster, &schedule, start_ms);
            cluster
        })
    };

    // The workload's length is the point here, not a stand-in for a
    // condition.
    std::thread::sleep(config.duration);
    shared.stop.store(true, Ordering::Relaxed);
    let end_ms = shared.now_ms();
    let mut cluster = nemesis.join().expect("the nemesis panicked");
    for client in clients {
        client.join().expect("a CLI client panicked");
    }
    native.join().expect("the native clients panicked");
    cluster.assert_all_running();

    let drained = crate::native::drain_and_read(&shared);
    let recorder = shared.recorder();
    let verdicts = recorder.check();
    let summary = recorder.summary(start_ms, end_ms);
    // Both a kill -9 and a SIGSTOP, however short the run.
    let enough_faults =
        recorder.faults_of(FaultKind::Kill) >= 1 && recorder.faults_of(FaultKind::Pause) >= 1;
    recorder.write_jsonl(&history_path).unwrap();
    eprintln!(
        "chaos: seed={} ops={}\n{summary}\n{verdicts}",
        config.seed,
        recorder.len()
    );
    assert!(
        verdicts.passed() && drained.is_ok() && enough_faults,
        "chaos run FAILED: seed={} history={}\n{verdicts}\ndrain: {drained:?}\nkill -9 and SIGSTOP both injected: {enough_faults}\nreplay: make chaos SEED={} DURATION={}",
        config.seed,
        history_path.display(),
        config.seed,
        config.duration.as_secs()
    );
}
