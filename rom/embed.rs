// Shared by the build scripts of the ROMs that embed another ROM
// (`include!`d, since build scripts cannot share a crate cheaply).
//
// `make roms` builds ROMs in order and copies each to `<target dir>/rom/`,
// only when its bytes changed: an unchanged inner ROM keeps its mtime, so
// the outer ROM's build script does not rerun and a no-op `make` compiles
// nothing.

/// Points the env var `var` at `<target dir>/rom/<name>.wasm` for
/// `include_bytes!`, and reruns the build when that file changes.
///
/// # Panics
///
/// When the inner ROM was not built first (a build script reports errors
/// by panicking).
fn embed_rom(name: &str, var: &str) {
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
    };
    let inner = target.join("rom").join(format!("{name}.wasm"));
    println!("cargo:rerun-if-changed={}", inner.display());
    assert!(
        inner.exists(),
        "the inner ROM {} is missing; build the ROMs in order with `make roms`",
        inner.display()
    );
    println!("cargo:rustc-env={var}={}", inner.display());
}
