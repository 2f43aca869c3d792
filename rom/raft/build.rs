//! Embeds the inner replica ROM, which `make roms` builds first.

include!("../embed.rs");

fn main() {
    embed_rom("raft-replica", "RAFT_REPLICA_WASM");
}
