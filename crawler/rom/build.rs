//! Embeds the default worker ROM, which `make roms` builds first.

include!("../../rom/embed.rs");

fn main() {
    embed_rom("worker", "CRAWLER_WORKER_WASM");
}
