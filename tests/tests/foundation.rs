//! The foundation, end to end: real `ww` hosts on loopback, real ROMs.
//!
//! - hello crosses three hosts: a subscriber on host 3 receives what a ROM
//!   run against host 1 publishes;
//! - bad input (garbage ROM files, ROMs that trap, spin or hog memory,
//!   garbage and oversized bytes on the RPC protocol) gets a clear error,
//!   and the host keeps serving other clients.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/native.rs"]
mod support;

use std::time::Duration;

use ww_tests::{rom, wait_until, ww, Cluster, Host, Spawned};

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// `ww run` against `addr` with the misbehave ROM's `peer-id` command:
/// proves the host at `addr` still serves capnp calls.
fn assert_host_serves(addr: &str, peer_id: &str) {
    let rom = rom("misbehave");
    let out = ww(&["run", "--peer", addr, rom.to_str().unwrap(), "peer-id"]);
    out.assert_ok();
    assert!(
        out.stdout.contains(&format!("peer id: {peer_id}")),
        "{out:#?}"
    );
}

/// Everything after the ROM is the ROM's, `--help` included; before the
/// ROM, `--help` is ww's.
#[test]
fn every_rom_prints_its_usage_on_help_and_ww_keeps_its_own() {
    let ww_help = ww(&["run", "--help"]);
    ww_help.assert_ok();
    assert!(ww_help.stdout.contains("--memory-limit-mb"), "{ww_help:#?}");
    for name in ["raft", "hello", "probe", "bench", "misbehave"] {
        let rom = rom(name);
        let out = ww(&["run", "--dial=false", rom.to_str().unwrap(), "--help"]);
        out.assert_ok();
        let usage = format!("usage: ww run {name}.wasm");
        assert!(out.stdout.starts_with(&usage), "{name}: {out:#?}");
        assert!(
            !out.stdout.contains("--memory-limit-mb"),
            "{name}: {out:#?}"
        );
    }
    // Options that look like ww's go to the ROM too.
    let misbehave = rom("misbehave");
    let out = ww(&[
        "run",
        "--dial=false",
        misbehave.to_str().unwrap(),
        "--peer",
        "x",
    ]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("--peer"), "{out:#?}");
}

#[test]
fn hello_crosses_three_hosts() {
    let cluster = Cluster::start(3);
    let subscriber = Spawned::start(&[
        "sub",
        "--peer",
        &cluster.hosts[2].addr,
        "test",
        "--count",
        "1",
    ]);
    subscriber.wait_stderr("subscribed to test", DELIVERY_TIMEOUT);

    let hello = rom("hello");
    ww(&[
        "run",
        "--peer",
        &cluster.hosts[0].addr,
        hello.to_str().unwrap(),
    ])
    .assert_ok();

    subscriber.wait_stdout_line("Hello, World", DELIVERY_TIMEOUT);
}

#[test]
fn pub_and_sub_from_the_shell() {
    let cluster = Cluster::start(2);
    let subscriber = Spawned::start(&["sub", "--json", "--peer", &cluster.hosts[1].addr, "shell"]);
    subscriber.wait_stderr("subscribed to shell", DELIVERY_TIMEOUT);
    ww(&["pub", "--peer", &cluster.hosts[0].addr, "shell", "one"]).assert_ok();
    ww(&["pub", "--peer", &cluster.hosts[0].addr, "shell", "two"]).assert_ok();
    let expected = |data: &str| {
        format!(
            r#"{{"data":"{data}","from":"{}"}}"#,
            cluster.hosts[0].peer_id
        )
    };
    subscriber.wait_stdout_line(&expected("one"), DELIVERY_TIMEOUT);
    subscriber.wait_stdout_line(&expected("two"), DELIVERY_TIMEOUT);
    let lines = subscriber.stdout_lines();
    assert_eq!(
        lines,
        vec![expected("one"), expected("two")],
        "one line per message, in order"
    );
}

#[test]
fn a_garbage_rom_file_is_refused_by_name() {
    let mut cluster = Cluster::start(1);
    let garbage = cluster.dir().join("garbage.wasm");
    std::fs::write(&garbage, b"this is not WebAssembly at all").unwrap();
    let core_module = cluster.dir().join("core.wasm");
    std::fs::write(&core_module, b"\0asm\x01\0\0\0").unwrap();
    let truncated = cluster.dir().join("truncated.wasm");
    let hello = std::fs::read(rom("hello")).unwrap();
    std::fs::write(&truncated, &hello[..hello.len() / 2]).unwrap();

    for (path, reason) in [
        (&garbage, "not a WebAssembly component"),
        (&core_module, "core WebAssembly module, not a component"),
        (&truncated, "not a valid WebAssembly component"),
    ] {
        let out = ww(&[
            "run",
            "--peer",
            &cluster.hosts[0].addr,
            path.to_str().unwrap(),
        ]);
        assert_ne!(out.code, Some(0), "{out:#?}");
        assert!(
            out.stderr.contains(path.to_str().unwrap()),
            "the error names the file: {out:#?}"
        );
        assert!(out.stderr.contains(reason), "the error says why: {out:#?}");
    }
    let missing = ww(&["run", "--dial=false", "/nonexistent/rom.wasm"]);
    assert_eq!(missing.code, Some(1), "{missing:#?}");
    assert!(
        missing
            .stderr
            .contains("cannot read ROM /nonexistent/rom.wasm"),
        "{missing:#?}"
    );

    cluster.assert_all_running();
    assert_host_serves(&cluster.hosts[0].addr, &cluster.hosts[0].peer_id);
}

#[test]
fn roms_that_trap_spin_or_hog_end_with_a_clear_error() {
    let mut cluster = Cluster::start(1);
    let addr = cluster.hosts[0].addr.clone();
    let misbehave = rom("misbehave");
    let misbehave = misbehave.to_str().unwrap();
    // Another client stays attached to the host through all of it.
    let watcher = Spawned::start(&["sub", "--peer", &addr, "still-alive"]);
    watcher.wait_stderr("subscribed to still-alive", DELIVERY_TIMEOUT);

    let trap = ww(&["run", "--peer", &addr, misbehave, "trap"]);
    assert_eq!(trap.code, Some(70), "{trap:#?}");
    assert!(
        trap.stderr
            .contains("trapped: wasm trap: wasm `unreachable` instruction executed"),
        "{trap:#?}"
    );

    let spin = ww(&[
        "run",
        "--peer",
        &addr,
        "--busy-limit-ms",
        "500",
        misbehave,
        "spin",
    ]);
    assert_eq!(spin.code, Some(70), "{spin:#?}");
    assert!(spin.stderr.contains("killed by the CPU limit"), "{spin:#?}");

    let hog = ww(&[
        "run",
        "--peer",
        &addr,
        "--memory-limit-mb",
        "64",
        misbehave,
        "hog",
    ]);
    assert_eq!(hog.code, Some(70), "{hog:#?}");
    assert!(
        hog.stderr.contains("killed by the memory limit"),
        "{hog:#?}"
    );
    assert!(hog.stderr.contains("64 MiB"), "{hog:#?}");

    for code in [0, 1, 2, 3, 42, 255] {
        let arg = code.to_string();
        let exit = ww(&["run", "--peer", &addr, misbehave, "exit", &arg]);
        assert_eq!(
            exit.code,
            Some(code),
            "a ROM's exit code is passed through: {exit:#?}"
        );
        assert!(!exit.stderr.contains("error"), "{exit:#?}");
    }

    cluster.assert_all_running();
    ww(&["pub", "--peer", &addr, "still-alive", "yes"]).assert_ok();
    watcher.wait_stdout_line("yes", DELIVERY_TIMEOUT);
    assert_host_serves(&addr, &cluster.hosts[0].peer_id);
}

#[test]
fn without_a_cluster_every_host_call_says_not_connected() {
    let misbehave = rom("misbehave");
    let out = ww(&[
        "run",
        "--dial=false",
        misbehave.to_str().unwrap(),
        "peer-id",
    ]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("not connected"), "{out:#?}");
    assert!(
        out.stderr.contains("--dial=false"),
        "the error says what to do: {out:#?}"
    );
}

#[test]
fn an_unreachable_cluster_is_a_clear_error() {
    let hello = rom("hello");
    // Port 9 on loopback: nothing listens there.
    let out = ww(&[
        "run",
        "--peer",
        "/ip4/127.0.0.1/tcp/9",
        hello.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("no host answered"), "{out:#?}");
    assert!(
        out.stderr.contains("ww start"),
        "the error says what to do: {out:#?}"
    );
}

#[test]
fn an_oversized_publish_is_refused() {
    let cluster = Cluster::start(1);
    let big = cluster.dir().join("big");
    std::fs::write(&big, vec![b'x'; 1024 * 1024 + 1]).unwrap();
    let out = ww(&[
        "pub",
        "--peer",
        &cluster.hosts[0].addr,
        "--file",
        big.to_str().unwrap(),
        "big",
    ]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("exceeds the 1048576-byte pubsub limit"),
        "{}",
        out.stderr
    );
}

/// Writes `bytes` on a fresh RPC stream to `addr` and returns what the host
/// did: the number of bytes it answered with before closing the stream.
fn send_raw(addr: &str, bytes: Vec<u8>) -> usize {
    use futures::{AsyncReadExt, AsyncWriteExt};
    let addr: libp2p::Multiaddr = addr.parse().unwrap();
    support::native(async move {
        let node = support::client_node().await;
        let peer = node.dial(addr).await.unwrap();
        let mut stream = node.open_stream(peer, ww_net::RPC_PROTOCOL).await.unwrap();
        // The host may close the stream before we finish writing.
        let _ = stream.write_all(&bytes).await;
        let _ = stream.flush().await;
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
        assert!(
            read.is_ok(),
            "the host neither answered nor closed the stream within 20 s"
        );
        answer.len()
    })
}

#[test]
fn garbage_and_oversized_frames_on_the_rpc_protocol_end_only_that_connection() {
    let mut cluster = Cluster::start(1);
    let addr = cluster.hosts[0].addr.clone();
    let peer_id = cluster.hosts[0].peer_id.clone();
    let watcher = Spawned::start(&["sub", "--peer", &addr, "still-alive"]);
    watcher.wait_stderr("subscribed to still-alive", DELIVERY_TIMEOUT);

    // Random bytes: not a capnp frame.
    send_raw(
        &addr,
        (0..4096u32)
            .map(|n| (n.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect(),
    );
    // A frame header announcing one segment of 2^28 words (2 GiB): refused
    // from the header, before anything is allocated.
    let mut huge = Vec::new();
    huge.extend_from_slice(&0u32.to_le_bytes());
    huge.extend_from_slice(&(1u32 << 28).to_le_bytes());
    huge.extend_from_slice(&[0u8; 64]);
    send_raw(&addr, huge);
    // A frame just over the 64 MiB message limit, with its bytes sent.
    let words = (ww_api_limit_words() + 1) as u32;
    let mut over = Vec::with_capacity(8 + words as usize * 8);
    over.extend_from_slice(&0u32.to_le_bytes());
    over.extend_from_slice(&words.to_le_bytes());
    over.resize(8 + words as usize * 8, 0);
    send_raw(&addr, over);
    // 600 segments: more than a reader accepts.
    let mut segments = Vec::new();
    segments.extend_from_slice(&599u32.to_le_bytes());
    segments.extend(std::iter::repeat_n(1u32.to_le_bytes(), 600).flatten());
    send_raw(&addr, segments);

    cluster.assert_all_running();
    let log = cluster.hosts[0].log();
    assert!(
        log.contains("RPC connection failed"),
        "the host logs why it dropped them:\n{log}"
    );
    assert!(
        log.contains("too large"),
        "the oversized frame is named as such:\n{log}"
    );
    ww(&["pub", "--peer", &addr, "still-alive", "yes"]).assert_ok();
    watcher.wait_stdout_line("yes", DELIVERY_TIMEOUT);
    assert_host_serves(&addr, &peer_id);
}

fn ww_api_limit_words() -> usize {
    64 * 1024 * 1024 / 8
}

#[test]
fn a_private_cluster_admits_only_peers_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let keygen = ww(&["keygen"]);
    keygen.assert_ok();
    let key = dir.path().join("swarm.key");
    std::fs::write(&key, &keygen.stdout).unwrap();
    let other = dir.path().join("other.key");
    std::fs::write(&other, ww(&["keygen"]).stdout).unwrap();
    let key = key.to_str().unwrap();

    let first = Host::start_with(
        &dir.path().join("a"),
        "/ip4/127.0.0.1/tcp/0",
        &[],
        &["--key", key],
    );
    let second = Host::start_with(
        &dir.path().join("b"),
        "/ip4/127.0.0.1/tcp/0",
        std::slice::from_ref(&first.addr),
        &["--key", key],
    );
    wait_until("both keyed hosts in the view", DELIVERY_TIMEOUT, || {
        let out = ww(&["ls", "--key", key, "--peer", &first.addr, "/"]);
        (out.code == Some(0) && out.stdout.contains(&second.peer_id)).then_some(())
    });
    for (args, what) in [
        (vec!["ls", "--peer", &first.addr, "/"], "no key"),
        (
            vec![
                "ls",
                "--key",
                other.to_str().unwrap(),
                "--peer",
                &first.addr,
                "/",
            ],
            "another key",
        ),
    ] {
        let out = ww(&args);
        assert_eq!(out.code, Some(1), "{what}: {out:#?}");
        assert!(out.stderr.contains("no host answered"), "{what}: {out:#?}");
    }
    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "not a key").unwrap();
    let out = ww(&[
        "ls",
        "--key",
        garbage.to_str().unwrap(),
        "--peer",
        &first.addr,
        "/",
    ]);
    assert!(out.stderr.contains("is not a cluster key"), "{out:#?}");
}
