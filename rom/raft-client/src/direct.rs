//! Reaching replicas without a relay. Through the cluster root, a replica's
//! `request` sender lives on the replica's host but is reached through the
//! host the client dialed: every request and every reply crosses that host
//! too (capnp-rpc in Rust has no three-party handoff), two libp2p hops and
//! a relay's work each way. A client that can dial hosts itself (the native
//! client, or a ROM under `ww run`, whose `Host::connect` the `ww run`
//! process answers from its own node) opens its own connection to each replica's
//! host instead, looks the `request` anchor up there, and gets replies on a
//! channel on that same host, which the replica reaches without leaving its
//! host.
//!
//! Best effort: a host that cannot be dialed within [`DIAL_TIMEOUT`] keeps
//! the relayed route, and a route whose send fails is forgotten and dialed
//! again at the next lookup.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use futures::future::{select, Either};
use ww_api::ops::get_cap;
use ww_api::{host, receiver, sender};

use crate::Runtime;

/// Longest a dial and lookup of one replica's host may take before the
/// relayed route is used instead. A live host on the same network answers
/// in milliseconds; a dead one must not hold up finding the others.
pub const DIAL_TIMEOUT: Duration = Duration::from_millis(1_000);

/// Dials a host given its peer id and its multiaddrs (from the dialed
/// host's `view`); `None` when it cannot be reached.
pub type Dial =
    Rc<dyn Fn(String, Vec<String>) -> Pin<Box<dyn Future<Output = Option<host::Client>>>>>;

/// Dials with `host`'s `connect`: for a ROM on a host, the connection is
/// its host's. Under `ww run` it is the `ww run` process's own, so calls
/// skip the host it dialed.
pub fn through(host: host::Client) -> Dial {
    Rc::new(move |peer: String, _addrs: Vec<String>| {
        let host = host.clone();
        Box::pin(async move {
            let mut request = host.connect_request();
            request.get().set_peer_id(&peer);
            let response = request.send().promise.await.ok()?;
            response.get().ok()?.get_host().ok()
        })
    })
}

/// A replica reached over the client's own connection to its host.
#[derive(Clone)]
pub struct Route {
    /// The replica's `request` sender, looked up on its own host.
    pub request: sender::Client,
    /// A channel on the same host, for the replica's replies.
    pub reply: sender::Client,
}

/// The dialer and the routes found so far, by the replica's peer id.
#[derive(Default)]
pub struct Direct {
    dial: RefCell<Option<Dial>>,
    routes: RefCell<HashMap<String, Route>>,
}

impl Direct {
    /// Uses `dial` for replicas found from now on.
    pub fn set_dial(&self, dial: Dial) {
        *self.dial.borrow_mut() = Some(dial);
    }

    /// Whether a dialer is set.
    pub fn enabled(&self) -> bool {
        self.dial.borrow().is_some()
    }

    /// Forgets the route to `peer` (its send failed): the next lookup dials
    /// again.
    pub fn forget(&self, peer: &str) {
        self.routes.borrow_mut().remove(peer);
    }

    /// The route to each of `peers` (group `version`), dialing the hosts
    /// not reached yet; `via` is the host the client dialed, whose view
    /// gives the others' addresses. Each new route's reply channel is
    /// handed to `serve_replies`. Peers without a route are left out.
    pub async fn routes<R: Runtime>(
        &self,
        runtime: &R,
        via: &host::Client,
        version: &str,
        peers: &[String],
        reply_capacity: u32,
        serve_replies: impl Fn(receiver::Client),
    ) -> HashMap<String, Route> {
        let Some(dial) = self.dial.borrow().clone() else {
            return HashMap::new();
        };
        let missing: Vec<&String> = peers
            .iter()
            .filter(|peer| !self.routes.borrow().contains_key(*peer))
            .collect();
        if !missing.is_empty() {
            let addrs = view_addrs(via).await;
            let dials = missing.into_iter().filter_map(|peer| {
                let addrs = addrs.get(peer)?.clone();
                let dial = dial.clone();
                let path = format!("{peer}/raft/{version}/request");
                Some(async move {
                    let lookup = async {
                        let host = dial(peer.clone(), addrs).await?;
                        open_route(&host, &path, reply_capacity).await
                    };
                    match select(Box::pin(lookup), runtime.sleep(DIAL_TIMEOUT)).await {
                        Either::Left((Some(found), _)) => Some((peer.clone(), found)),
                        _ => None,
                    }
                })
            });
            for (peer, (route, receiver)) in
                futures::future::join_all(dials).await.into_iter().flatten()
            {
                serve_replies(receiver);
                self.routes.borrow_mut().insert(peer, route);
            }
        }
        let routes = self.routes.borrow();
        peers
            .iter()
            .filter_map(|peer| Some((peer.clone(), routes.get(peer)?.clone())))
            .collect()
    }
}

/// Each host's multiaddrs in `via`'s view.
async fn view_addrs(via: &host::Client) -> HashMap<String, Vec<String>> {
    let mut addrs = HashMap::new();
    let Ok(response) = via.view_request().send().promise.await else {
        return addrs;
    };
    let Ok(hosts) = response.get().and_then(|view| view.get_hosts()) else {
        return addrs;
    };
    for info in hosts.iter() {
        let Ok(peer) = info.get_peer_id().and_then(|p| Ok(p.to_str()?.to_owned())) else {
            continue;
        };
        let Ok(list) = info.get_addrs() else { continue };
        let list: Vec<String> = list
            .iter()
            .filter_map(|addr| Some(addr.ok()?.to_str().ok()?.to_owned()))
            .collect();
        addrs.insert(peer, list);
    }
    addrs
}

/// Looks `path` (`<peer>/raft/<version>/request`) up on `host` itself and
/// opens a reply channel there.
async fn open_route(
    host: &host::Client,
    path: &str,
    reply_capacity: u32,
) -> Option<(Route, receiver::Client)> {
    let root = host.root_request().send().pipeline.get_anchor();
    let request = get_cap::<sender::Client>(&root, path).await.ok()??;
    let mut channel = host.new_channel_request();
    channel.get().set_capacity(reply_capacity);
    let channel = channel.send().promise.await.ok()?;
    let channel = channel.get().ok()?;
    let route = Route {
        request,
        reply: channel.get_sender().ok()?,
    };
    Some((route, channel.get_receiver().ok()?))
}
