//! Embeds the misbehave ROM, which `make roms` builds first.

include!("../embed.rs");

fn main() {
    embed_rom("misbehave", "MISBEHAVE_WASM");
}
