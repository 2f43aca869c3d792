//! Embeds the inner hello ROM, which `make roms` builds first.

include!("../embed.rs");

fn main() {
    embed_rom("hello-inner", "HELLO_INNER_WASM");
}
