//! Connections from this host to the `Host`s of its peers, reused across
//! calls and dropped when they break.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use libp2p::PeerId;
use ww_api::host;

use crate::net::Node;

/// The connection cache.
pub struct Peers {
    node: Node,
    hosts: RefCell<HashMap<PeerId, (u64, host::Client)>>,
    generation: std::cell::Cell<u64>,
}

impl Peers {
    /// A cache over `node`.
    pub fn new(node: Node) -> Rc<Self> {
        Rc::new(Self {
            node,
            hosts: RefCell::new(HashMap::new()),
            generation: std::cell::Cell::new(0),
        })
    }

    /// The `Host` of `peer`, connecting if there is no live connection.
    ///
    /// # Errors
    ///
    /// A capnp error that names the peer and says why it cannot be reached
    /// (not in the view, dial failed, timed out).
    pub async fn host(self: &Rc<Self>, peer: PeerId) -> Result<host::Client, capnp::Error> {
        if let Some((_, client)) = self.hosts.borrow().get(&peer) {
            return Ok(client.clone());
        }
        let generation = self.generation.get() + 1;
        self.generation.set(generation);
        let weak: Weak<Self> = Rc::downgrade(self);
        let client = crate::net::dial::connect_host(&self.node, peer, move || {
            if let Some(peers) = weak.upgrade() {
                peers.forget(peer, generation);
            }
        })
        .await
        .map_err(|err| capnp::Error::disconnected(format!("cannot reach host {peer}: {err:#}")))?;
        self.hosts
            .borrow_mut()
            .insert(peer, (generation, client.clone()));
        Ok(client)
    }

    /// Drops the cached connection to `peer` if it is still `generation`.
    fn forget(&self, peer: PeerId, generation: u64) {
        let mut hosts = self.hosts.borrow_mut();
        if hosts
            .get(&peer)
            .is_some_and(|(current, _)| *current == generation)
        {
            hosts.remove(&peer);
        }
    }
}
