//! Capability servers: what a host hands to its processes and its peers.
//!
//! They form a tree with no import cycle: [`host`] at the top hands out
//! [`anchor`], [`executor`], [`read_view`], [`pubsub`] and the rest; those
//! share [`context`], which imports none of them but the state it holds
//! (`executor`'s process table, `pubsub`'s subscription budget); the leaves ([`tree`],
//! [`channel`], [`grants`], [`volume`], [`path`], [`http`]) import no
//! server at all.
//!
//! Every method validates its input and returns a capnp error on anything a
//! guest or peer got wrong; nothing reachable from the outside panics.

pub mod anchor;
pub mod channel;
pub mod context;
pub mod disconnected;
pub mod executor;
pub mod grants;
pub mod host;
pub mod http;
pub mod path;
pub mod peers;
pub mod pubsub;
pub mod read_view;
pub mod run_host;
pub mod tree;
pub mod volume;

use std::fmt::Display;

/// A capnp error for input the caller got wrong.
pub(crate) fn invalid(message: impl Display) -> capnp::Error {
    capnp::Error::failed(message.to_string())
}

/// Text from a capnp reader, as an owned UTF-8 string.
pub(crate) fn text(
    reader: capnp::Result<capnp::text::Reader<'_>>,
    what: &str,
) -> Result<String, capnp::Error> {
    let reader = reader?;
    reader
        .to_string()
        .map_err(|_| invalid(format!("{what} is not valid UTF-8")))
}

/// A peer id from the text a caller passed to `dial` or `connect`.
pub(crate) fn peer_id(raw: &str) -> Result<libp2p::PeerId, capnp::Error> {
    raw.parse().map_err(|err| {
        invalid(format!(
            "{raw:?} is not a peer id ({err}); `ww ls /` lists the hosts"
        ))
    })
}
