fn main() {
    println!("cargo:rerun-if-changed=schema/ww.capnp");
    if let Err(err) = capnpc::CompilerCommand::new()
        .src_prefix("schema")
        .file("schema/ww.capnp")
        .run()
    {
        // The `capnp` tool comes from apt; `make setup` installs it.
        panic!("compiling schema/ww.capnp failed (is `capnp` installed? run `make setup`): {err}");
    }
}
