//! The state every capability server of a host shares. It sits below
//! them all: the servers import it, it imports none of them.

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;

use ww_api::host;

use super::channel::Senders;
use super::executor::table::{Proc, Processes};
use super::peers::Peers;
use super::tree::Tree;
use crate::net::Node;

/// Everything a host's capabilities share.
pub struct HostContext {
    /// The libp2p node.
    pub node: Node,
    /// This host's anchor tree.
    pub tree: Tree,
    /// Connections to other hosts.
    pub peers: Rc<Peers>,
    /// The senders of this host's channels.
    pub senders: Senders,
    /// This host's processes.
    pub processes: Rc<Processes>,
    /// What its processes report through `Host.metrics`.
    pub reported: Rc<crate::ops::Reported>,
    /// What its subscriptions buffer, against the subscription budget.
    pub subscriptions: Rc<super::pubsub::Buffered>,
    /// Calls and bytes on the RPC connections other peers opened to it.
    pub rpc_meter: Rc<ww_api::meter::Meter>,
    /// Those connections' counts.
    pub rpc_connections: RpcConnections,
    /// Builds the `Host` an incarnation of a process gets. The executor
    /// calls it; it is [`super::host::HostServer::for_process`], passed in
    /// so that the executor does not import the `Host` server that
    /// contains it.
    pub process_host: ProcessHost,
}

/// The inbound RPC connections of a host, for `/metrics`.
#[derive(Debug, Default)]
pub struct RpcConnections {
    /// Open now.
    pub live: Cell<usize>,
    /// Accepted since the host started.
    pub accepted: Cell<u64>,
    /// Refused at a connection limit.
    pub refused: Cell<u64>,
    /// Closed, idle, to admit a newer one at a connection limit.
    pub evicted: Cell<u64>,
    /// Ended by an error other than a disconnect (a malformed or
    /// oversized message, for example).
    pub failed: Cell<u64>,
}

impl RpcConnections {
    pub(crate) fn count(cell: &Cell<u64>) {
        cell.set(cell.get().saturating_add(1));
    }
}

/// See [`HostContext::process_host`].
pub type ProcessHost = fn(Rc<HostContext>, &Proc) -> host::Client;

impl HostContext {
    /// The shared state of a host with `node`, keeping its files in
    /// `data_dir`.
    pub fn new(
        node: Node,
        data_dir: PathBuf,
        runtime: Rc<crate::runner::Runtime>,
        process_host: ProcessHost,
    ) -> Rc<Self> {
        Rc::new(Self {
            peers: Peers::new(node.clone()),
            node,
            tree: Tree::default(),
            senders: Senders::default(),
            processes: Processes::new(data_dir, runtime),
            reported: Rc::default(),
            subscriptions: Rc::default(),
            rpc_meter: Rc::default(),
            rpc_connections: RpcConnections::default(),
            process_host,
        })
    }
}
