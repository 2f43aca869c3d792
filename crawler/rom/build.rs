//! Embeds the default worker ROM, which `make build` builds first.

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let inner = std::path::Path::new(&manifest).join("../../target/rom/worker.wasm");
    println!("cargo:rerun-if-changed={}", inner.display());
    assert!(
        inner.exists(),
        "the worker ROM {} is missing; build the ROMs in order with `make build`",
        inner.display()
    );
    println!("cargo:rustc-env=CRAWLER_WORKER_WASM={}", inner.display());
}
