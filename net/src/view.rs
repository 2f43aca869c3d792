//! The cluster view: a TTL table built from heartbeats.
//!
//! Each host publishes a [`Heartbeat`] every `interval_ms` on the heartbeat
//! topic. A host stays in every other host's view until `ttl_ms` after its
//! last heartbeat. The view is a point-in-time snapshot with no consistency
//! promise: two hosts may disagree for up to a TTL.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

/// Largest heartbeat accepted, in bytes. A heartbeat names a peer and a
/// handful of addresses; anything bigger is garbage or an attack.
pub const HEARTBEAT_BYTES_MAX: usize = 4096;

/// Most addresses kept per host.
pub const ADDRS_PER_HOST_MAX: usize = 16;

/// Most hosts kept in the view.
pub const HOSTS_MAX: usize = 4096;

/// What a host announces about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The announcing host.
    pub peer_id: String,
    /// Where to dial it.
    pub addrs: Vec<String>,
    /// How long to keep it in the view after this heartbeat.
    pub ttl_ms: u32,
}

impl Heartbeat {
    /// Decodes a heartbeat published by `source`.
    ///
    /// # Errors
    ///
    /// A readable reason when the bytes are too big, not a heartbeat, or
    /// claim to come from a peer other than the authenticated `source`.
    pub fn decode(bytes: &[u8], source: &PeerId) -> Result<(PeerId, Vec<Multiaddr>, u32), String> {
        if bytes.len() > HEARTBEAT_BYTES_MAX {
            return Err(format!("heartbeat of {} bytes is too big", bytes.len()));
        }
        let heartbeat: Heartbeat =
            serde_json::from_slice(bytes).map_err(|err| format!("malformed heartbeat: {err}"))?;
        let peer: PeerId = heartbeat
            .peer_id
            .parse()
            .map_err(|err| format!("heartbeat peer id: {err}"))?;
        if &peer != source {
            return Err(format!("heartbeat for {peer} was signed by {source}"));
        }
        let addrs = heartbeat
            .addrs
            .iter()
            .take(ADDRS_PER_HOST_MAX)
            .filter_map(|addr| addr.parse().ok())
            .collect();
        Ok((peer, addrs, heartbeat.ttl_ms))
    }
}

/// One host in the view.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Where to dial it.
    pub addrs: Vec<Multiaddr>,
    /// How long after `last_seen` it stays.
    pub ttl: Duration,
    /// When its last heartbeat arrived.
    pub last_seen: Instant,
}

/// The TTL table.
#[derive(Debug, Default)]
pub struct View {
    hosts: HashMap<PeerId, Entry>,
}

impl View {
    /// Records a heartbeat from `peer`. Returns true if the peer is new.
    pub fn observe(
        &mut self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        ttl: Duration,
        now: Instant,
    ) -> bool {
        if !self.hosts.contains_key(&peer) && self.hosts.len() >= HOSTS_MAX {
            return false;
        }
        self.hosts
            .insert(
                peer,
                Entry {
                    addrs,
                    ttl,
                    last_seen: now,
                },
            )
            .is_none()
    }

    /// Drops the hosts whose TTL has passed; returns them.
    pub fn prune(&mut self, now: Instant) -> Vec<PeerId> {
        let expired: Vec<PeerId> = self
            .hosts
            .iter()
            .filter(|(_, entry)| now.saturating_duration_since(entry.last_seen) > entry.ttl)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in &expired {
            self.hosts.remove(peer);
        }
        expired
    }

    /// The host `peer`, if it is in the view.
    pub fn get(&self, peer: &PeerId) -> Option<&Entry> {
        self.hosts.get(peer)
    }

    /// Every host, sorted by peer id so listings are stable.
    pub fn hosts(&self) -> Vec<(PeerId, Entry)> {
        let mut hosts: Vec<(PeerId, Entry)> = self
            .hosts
            .iter()
            .map(|(peer, entry)| (*peer, entry.clone()))
            .collect();
        hosts.sort_by_key(|(peer, _)| peer.to_base58());
        hosts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_leaves_the_view_after_its_ttl() {
        let mut view = View::default();
        let peer = PeerId::random();
        let start = Instant::now();
        assert!(view.observe(peer, vec![], Duration::from_millis(100), start));
        assert!(view.prune(start + Duration::from_millis(100)).is_empty());
        assert_eq!(view.prune(start + Duration::from_millis(101)), vec![peer]);
        assert!(view.get(&peer).is_none());
    }

    #[test]
    fn a_heartbeat_signed_by_another_peer_is_refused() {
        let claimed = PeerId::random();
        let signer = PeerId::random();
        let bytes = serde_json::to_vec(&Heartbeat {
            peer_id: claimed.to_base58(),
            addrs: vec![],
            ttl_ms: 1000,
        })
        .unwrap();
        let err = Heartbeat::decode(&bytes, &signer).unwrap_err();
        assert!(err.contains("signed by"), "{err}");
        assert!(Heartbeat::decode(&bytes, &claimed).is_ok());
        assert!(Heartbeat::decode(b"\xff garbage", &claimed).is_err());
    }
}
