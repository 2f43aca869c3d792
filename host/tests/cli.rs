//! The `ww` binary's own commands that need no cluster.
//!
//! Having an integration test here also makes `cargo test` build the `ww`
//! binary (with the same features as every other test), which the
//! end-to-end tests in `tests/` run.

// Test code: a failed expectation fails the test, with its message.
#![allow(clippy::expect_used)]

use std::process::Command;

fn ww(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ww"))
        .args(args)
        .env_remove("WW_PEERS")
        .env_remove("WW_KEY")
        .output()
        .expect("running ww")
}

#[test]
fn keygen_prints_a_cluster_key_that_start_accepts() {
    let out = ww(&["keygen"]);
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(key.starts_with("/key/swarm/psk/1.0.0/"), "{key}");
    assert!(key.parse::<libp2p::pnet::PreSharedKey>().is_ok(), "{key}");
    let again = String::from_utf8(ww(&["keygen"]).stdout).expect("UTF-8");
    assert_ne!(key, again, "each key is new");
}

#[test]
fn start_refuses_a_garbage_identity_key_and_says_what_to_do() {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("identity.key"), b"garbage").expect("writing");
    let out = ww(&[
        "start",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--data-dir",
        dir.path().to_str().expect("UTF-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a valid identity key"), "{stderr}");
    assert!(stderr.contains("move it away"), "{stderr}");
}

#[test]
fn run_names_a_missing_rom() {
    let out = ww(&["run", "--dial=false", "/nonexistent/x.wasm"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read ROM /nonexistent/x.wasm"));
}

#[test]
fn start_refuses_a_non_loopback_address_without_a_key() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let data_dir = dir.path().join("host");
    let out = ww(&[
        "start",
        "--listen",
        "/ip4/0.0.0.0/tcp/0",
        "--data-dir",
        data_dir.to_str().expect("UTF-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("without a cluster key"), "{stderr}");
    assert!(stderr.contains("--insecure"), "{stderr}");
    assert!(stderr.contains("ww keygen"), "{stderr}");
    assert!(!data_dir.exists(), "refused before creating anything");
}

#[cfg(unix)]
#[test]
fn the_data_dir_and_identity_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("a temp dir");
    let data_dir = dir.path().join("host");
    std::fs::create_dir(&data_dir).expect("create");
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // A garbage cluster key stops the start after the data dir and the
    // identity are set up, before anything binds.
    let key = dir.path().join("bad.key");
    std::fs::write(&key, b"not a key").expect("write");
    let out = ww(&[
        "start",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--data-dir",
        data_dir.to_str().expect("UTF-8 path"),
        "--key",
        key.to_str().expect("UTF-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&data_dir), 0o700);
    assert_eq!(mode(&data_dir.join("identity.key")), 0o600);
}
