//! Hosts, CLI commands and deadlines.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a host may take to print its address.
const HOST_START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a CLI command may take unless a test says otherwise. Generous:
/// CI compiles ROMs on 2 cores while other tests run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The repository root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `ww` binary of the same build as this test.
///
/// # Panics
///
/// If it has not been built.
pub fn ww_bin() -> PathBuf {
    // target/<profile>/deps/<test binary> -> target/<profile>/ww
    let exe = std::env::current_exe().expect("the test binary has a path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps");
    let ww = profile_dir.join("ww");
    assert!(
        ww.exists(),
        "the ww binary is missing at {}; build it with `make build` (or `cargo build -p ww`)",
        ww.display()
    );
    ww
}

/// The ROM artifact `<target dir>/rom/<name>.wasm` (`$CARGO_TARGET_DIR`,
/// else `target/`, as `make roms` writes it).
///
/// # Panics
///
/// If it has not been built: a test never skips for a missing ROM.
pub fn rom(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from);
    let path = target.join("rom").join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "ROM artifact {} is missing; build the ROMs with `make build`",
        path.display()
    );
    path
}

/// The compiled-ROM cache shared by every test, so each ROM compiles once.
fn cache_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps")
        .join("ww-test-cache")
}

/// Polls `check` until it returns `Some`, or panics after `timeout` with
/// `what` and the last observation.
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

impl Output {
    /// Panics with the output unless the command exited with 0.
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.code, Some(0), "command failed: {self:#?}");
        self
    }
}

fn base_command() -> Command {
    let mut command = Command::new(ww_bin());
    command
        .env("WW_CACHE_DIR", cache_dir())
        .env_remove("WW_PEERS")
        .stdin(Stdio::null());
    command
}

/// Runs `ww ARGS...` to completion, killing it after `timeout`.
pub fn ww_with_timeout(args: &[&str], timeout: Duration) -> Output {
    let child = base_command()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ww");
    let spawned = Spawned::new(child);
    let deadline = Instant::now() + timeout;
    let mut spawned = spawned;
    loop {
        if let Some(status) = spawned.child.try_wait().expect("waiting for ww") {
            spawned.join_readers();
            return Output {
                code: status.code(),
                stdout: spawned.stdout(),
                stderr: spawned.stderr(),
            };
        }
        if Instant::now() >= deadline {
            let _ = spawned.child.kill();
            let _ = spawned.child.wait();
            spawned.join_readers();
            panic!(
                "`ww {}` did not finish within {timeout:?}\nstdout: {}\nstderr: {}",
                args.join(" "),
                spawned.stdout(),
                spawned.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `ww ARGS...` to completion within [`COMMAND_TIMEOUT`].
pub fn ww(args: &[&str]) -> Output {
    ww_with_timeout(args, COMMAND_TIMEOUT)
}

/// A running `ww` command whose output is collected line by line.
pub struct Spawned {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn collect(
    stream: impl Read + Send + 'static,
    lines: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            lines.lock().expect("lines lock").push(line);
        }
    })
}

impl Spawned {
    /// Starts `ww ARGS...` in the background.
    pub fn start(args: &[&str]) -> Self {
        let child = base_command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting ww");
        Self::new(child)
    }

    /// Starts `program ARGS...` (another of this crate's binaries) in the
    /// background.
    pub fn start_program(program: &Path, args: &[&str]) -> Self {
        let child = std::process::Command::new(program)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("starting {}: {err}", program.display()));
        Self::new(child)
    }

    fn new(mut child: Child) -> Self {
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().expect("piped stdout"), stdout.clone()),
            collect(child.stderr.take().expect("piped stderr"), stderr.clone()),
        ];
        Self {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    /// The stdout lines so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().expect("lines lock").clone()
    }

    /// Stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout_lines().join("\n")
    }

    /// The stderr lines so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().expect("lines lock").clone()
    }

    /// Stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr_lines().join("\n")
    }

    /// Waits until a stderr line contains `needle`.
    pub fn wait_stderr(&self, needle: &str, timeout: Duration) {
        wait_until(&format!("{needle:?} on stderr"), timeout, || {
            self.stderr
                .lock()
                .expect("lines lock")
                .iter()
                .any(|line| line.contains(needle))
                .then_some(())
        });
    }

    /// Waits until stdout has a line equal to `line`.
    pub fn wait_stdout_line(&self, line: &str, timeout: Duration) {
        wait_until(
            &format!("stdout line {line:?} (stdout so far: {:?})", self.stdout()),
            timeout,
            || {
                self.stdout
                    .lock()
                    .expect("lines lock")
                    .iter()
                    .any(|l| l == line)
                    .then_some(())
            },
        );
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `ww start` process.
pub struct Host {
    /// Its peer id.
    pub peer_id: String,
    /// Its listen address, with `/p2p/<peer id>`.
    pub addr: String,
    /// Its data dir.
    pub data_dir: PathBuf,
    /// Its operator view's address (`--http`), if it serves one.
    pub http: Option<String>,
    process: Option<Spawned>,
    listen: String,
    peers: Vec<String>,
}

impl Host {
    /// Starts a host with `data_dir`, joining `peers`. `listen` is an
    /// address such as `/ip4/127.0.0.1/tcp/0`.
    pub fn start(data_dir: &Path, listen: &str, peers: &[String]) -> Host {
        Self::start_with(data_dir, listen, peers, &[])
    }

    /// Like [`Host::start`], with extra `ww start` arguments.
    pub fn start_with(data_dir: &Path, listen: &str, peers: &[String], extra: &[&str]) -> Host {
        let mut args = vec![
            "start".to_owned(),
            "--json".to_owned(),
            "--listen".to_owned(),
            listen.to_owned(),
            "--data-dir".to_owned(),
            data_dir.display().to_string(),
        ];
        for peer in peers {
            args.push("--peer".to_owned());
            args.push(peer.clone());
        }
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = Spawned::start(&arg_refs);
        let line = wait_until("the host's JSON line", HOST_START_TIMEOUT, || {
            process.stdout_lines().into_iter().next()
        });
        let started: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|err| panic!("ww start printed {line:?}, not JSON: {err}"));
        let peer_id = started["peer_id"].as_str().expect("peer_id").to_owned();
        let addr = started["addrs"][0].as_str().expect("addrs[0]").to_owned();
        let http = started["http"].as_str().map(str::to_owned);
        Host {
            peer_id,
            addr,
            http,
            data_dir: data_dir.to_path_buf(),
            process: Some(process),
            listen: listen.to_owned(),
            peers: peers.to_vec(),
        }
    }

    /// Kills the host with SIGKILL: no shutdown, unsynced writes lost to it.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.child.kill();
            let _ = process.child.wait();
        }
    }

    /// Starts the host again with the same data dir and listen address
    /// (pass the old port to keep its address).
    pub fn restart(&mut self) {
        self.kill();
        let listen = self
            .addr
            .split("/p2p/")
            .next()
            .unwrap_or(&self.listen)
            .to_owned();
        let mut restarted = Host::start(&self.data_dir, &listen, &self.peers);
        restarted.listen = self.listen.clone();
        *self = restarted;
    }

    /// Starts a host on an ephemeral loopback port with its own compile
    /// cache dir (benchmarks: a shared or a fresh cache).
    pub fn start_cached(data_dir: &Path, cache_dir: &Path, peers: &[&str]) -> Host {
        let peers: Vec<String> = peers.iter().map(|peer| (*peer).to_owned()).collect();
        let cache_dir = cache_dir.display().to_string();
        Self::start_with(
            data_dir,
            "/ip4/127.0.0.1/tcp/0",
            &peers,
            &["--cache-dir", &cache_dir],
        )
    }

    /// The host process's pid (0 once killed).
    pub fn pid(&self) -> u32 {
        self.process.as_ref().map_or(0, Spawned::pid)
    }

    /// Whether the host process is still running.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(Spawned::is_running)
    }

    /// Checks that the host still runs a new process: `ww run` of the
    /// misbehave ROM's `peer-id` through it prints the host's peer id.
    ///
    /// # Panics
    ///
    /// When the run fails or prints another peer id.
    pub fn assert_runs_a_new_process(&self) {
        let misbehave = rom("misbehave");
        let out = ww(&[
            "run",
            "--peer",
            &self.addr,
            misbehave.to_str().expect("a UTF-8 path"),
            "peer-id",
        ]);
        out.assert_ok();
        assert!(out.stdout.contains(&self.peer_id), "{out:#?}");
    }

    /// What the host logged so far.
    pub fn log(&self) -> String {
        self.process
            .as_ref()
            .map(Spawned::stderr)
            .unwrap_or_default()
    }
}

/// CPU time used so far by every live thread of process `pid`, in ns
/// (`/proc/<pid>/task/*/schedstat`; a host's guests run on its threads, so
/// they are included). 0 once the process is gone.
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

impl Drop for Host {
    fn drop(&mut self) {
        // `WW_TEST_HOST_LOGS=1`: show what the host logged (warnings and up;
        // with WW_LOG set, everything), to see why a run failed.
        if std::env::var_os("WW_TEST_HOST_LOGS").is_none() {
            return;
        }
        let tag = &self.peer_id[self.peer_id.len().saturating_sub(6)..];
        for line in self.log().lines() {
            if !line.contains(" INFO ") || std::env::var_os("WW_LOG").is_some() {
                eprintln!("host {tag}: {line}");
            }
        }
    }
}

/// A cluster of hosts on loopback, in a temporary directory removed on drop.
pub struct Cluster {
    /// The hosts; host 0 is the one the others joined.
    pub hosts: Vec<Host>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` hosts on ephemeral ports; hosts 1.. join host 0.
    pub fn start(n: usize) -> Cluster {
        Self::start_with(n, &[])
    }

    /// Like [`Cluster::start`], with extra `ww start` arguments for every
    /// host.
    pub fn start_with(n: usize, extra: &[&str]) -> Cluster {
        assert!(n >= 1);
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut hosts = Vec::with_capacity(n);
        let first = Host::start_with(
            &dir.path().join("host0"),
            "/ip4/127.0.0.1/tcp/0",
            &[],
            extra,
        );
        let bootstrap = vec![first.addr.clone()];
        hosts.push(first);
        for index in 1..n {
            hosts.push(Host::start_with(
                &dir.path().join(format!("host{index}")),
                "/ip4/127.0.0.1/tcp/0",
                &bootstrap,
                extra,
            ));
        }
        Cluster { hosts, dir }
    }

    /// The cluster's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Panics with every host's log unless all hosts are still running.
    #[track_caller]
    pub fn assert_all_running(&mut self) {
        for (index, host) in self.hosts.iter_mut().enumerate() {
            assert!(
                host.is_running(),
                "host {index} died; its log:\n{}",
                host.log()
            );
        }
    }
}

/// Sends signal `name` (`STOP`, `CONT`, `KILL`) to process `pid`, as a
/// shell's `kill -NAME` does.
///
/// # Panics
///
/// When `kill` fails (no such process, say).
pub fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}
