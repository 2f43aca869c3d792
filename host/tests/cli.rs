//! The `ww` binary's own commands that need no cluster.
//!
//! Having an integration test here also makes `cargo test` build the `ww`
//! binary (with the same features as every other test), which the
//! end-to-end tests in `tests/` run.

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
