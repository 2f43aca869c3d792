//! The ROM API: the Cap'n Proto schema shared by hosts and guests
//! (`schema/ww.capnp`), and the one way this project starts an `RpcSystem`
//! ([`vat::connect`]).

pub mod limits;
pub mod meter;
pub mod ops;
pub mod vat;

/// Code generated from `schema/ww.capnp`.
#[allow(
    clippy::all,
    clippy::unwrap_used,
    missing_docs,
    unused,
    rust_2018_idioms
)]
pub mod ww_capnp {
    include!(concat!(env!("OUT_DIR"), "/ww_capnp.rs"));
}

pub use ww_capnp::{
    anchor, executor, host, http, metrics, process, pub_sub, receiver, reply, sender, subscription,
    topic,
};
