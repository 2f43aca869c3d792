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

pub use crate::limits::{ADDRS_PER_HOST_MAX, HEARTBEAT_BYTES_MAX, HOSTS_MAX};
use crate::limits::{VIEW_CANDIDATES_MAX, VIEW_CANDIDATES_PER_RELAY_MAX};

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

impl Entry {
    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_seen) > self.ttl
    }
}

/// A host heard of through a relay and not connected to yet.
#[derive(Debug)]
struct Candidate {
    entry: Entry,
    /// The peer that passed its heartbeat on, charged for the slot.
    relay: PeerId,
}

/// What [`View::observe`] did with a heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// The host entered the view.
    Joined,
    /// The host was in the view; its entry is refreshed.
    Refreshed,
    /// The host is kept as a candidate: dial it; it joins once connected.
    Candidate,
    /// The host was already a candidate; its entry is refreshed.
    CandidateRefreshed,
    /// Not kept: the limit named is reached.
    Refused(&'static str),
}

/// The TTL table, and the candidates waiting to join it.
///
/// A host joins only while it is directly connected: the connection's
/// Noise handshake proved it holds the key its heartbeats are signed with,
/// and [`crate::limits::CONNECTIONS_MAX`] bounds how many such hosts there
/// can be. A heartbeat can also arrive relayed by another peer for a host
/// this one never connected to; anyone can sign those with keys of their
/// own making, so such a host is only a candidate, charged to the relaying
/// peer (at most [`VIEW_CANDIDATES_PER_RELAY_MAX`] each), until a dial
/// reaches it. Candidates are never listed and never displace a host.
#[derive(Debug, Default)]
pub struct View {
    hosts: HashMap<PeerId, Entry>,
    candidates: HashMap<PeerId, Candidate>,
    candidates_per_relay: HashMap<PeerId, usize>,
}

impl View {
    /// The bound that [`View::observe`] would refuse a heartbeat of `peer`
    /// by, passed on by `relay`, if any. It changes nothing and costs a few
    /// lookups: a host asks it before checking the heartbeat's signature,
    /// so a flood of fakes the view would refuse costs no cryptography.
    pub fn refusal(&self, peer: &PeerId, connected: bool, relay: &PeerId) -> Option<&'static str> {
        if self.hosts.contains_key(peer) {
            return None;
        }
        if connected {
            return (self.hosts.len() >= HOSTS_MAX).then_some("HOSTS_MAX");
        }
        if self.candidates.contains_key(peer) {
            return None;
        }
        if self.candidates.len() >= VIEW_CANDIDATES_MAX {
            return Some("VIEW_CANDIDATES_MAX");
        }
        let from_relay = self.candidates_per_relay.get(relay).copied().unwrap_or(0);
        (from_relay >= VIEW_CANDIDATES_PER_RELAY_MAX).then_some("VIEW_CANDIDATES_PER_RELAY_MAX")
    }

    /// Records a heartbeat from `peer`, passed on by `relay` (`peer`
    /// itself when it came directly). `connected` says whether `peer` is
    /// directly connected to this host now. Refuses by the bound that
    /// [`View::refusal`] names.
    pub fn observe(
        &mut self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        ttl: Duration,
        now: Instant,
        connected: bool,
        relay: PeerId,
    ) -> Admission {
        if let Some(limit) = self.refusal(&peer, connected, &relay) {
            return Admission::Refused(limit);
        }
        let entry = Entry {
            addrs,
            ttl,
            last_seen: now,
        };
        // A host admitted once proved its key; a later heartbeat (signed
        // by that key) may refresh it by any path.
        if let Some(known) = self.hosts.get_mut(&peer) {
            *known = entry;
            return Admission::Refreshed;
        }
        if connected {
            return self.admit(peer, entry);
        }
        if let Some(candidate) = self.candidates.get_mut(&peer) {
            candidate.entry = entry;
            return Admission::CandidateRefreshed;
        }
        let from_relay = self.candidates_per_relay.entry(relay).or_default();
        assert!(*from_relay < VIEW_CANDIDATES_PER_RELAY_MAX);
        assert!(self.candidates.len() < VIEW_CANDIDATES_MAX);
        *from_relay += 1;
        self.candidates.insert(peer, Candidate { entry, relay });
        Admission::Candidate
    }

    fn admit(&mut self, peer: PeerId, entry: Entry) -> Admission {
        self.forget_candidate(&peer);
        if self.hosts.len() >= HOSTS_MAX {
            return Admission::Refused("HOSTS_MAX");
        }
        self.hosts.insert(peer, entry);
        Admission::Joined
    }

    /// `peer` is now directly connected: a candidate joins the view.
    /// Returns whether it did.
    pub fn connected(&mut self, peer: &PeerId) -> bool {
        match self.candidates.get(peer) {
            Some(candidate) => {
                let entry = candidate.entry.clone();
                self.admit(*peer, entry) == Admission::Joined
            }
            None => false,
        }
    }

    /// Forgets the candidate `peer` (a dial to it failed, or cannot be
    /// made); returns whether there was one.
    pub fn forget_candidate(&mut self, peer: &PeerId) -> bool {
        let Some(candidate) = self.candidates.remove(peer) else {
            return false;
        };
        if let Some(count) = self.candidates_per_relay.get_mut(&candidate.relay) {
            *count -= 1;
            if *count == 0 {
                self.candidates_per_relay.remove(&candidate.relay);
            }
        }
        true
    }

    /// Drops the hosts (and candidates) whose TTL has passed; returns the
    /// hosts.
    pub fn prune(&mut self, now: Instant) -> Vec<PeerId> {
        let expired: Vec<PeerId> = self
            .hosts
            .iter()
            .filter(|(_, entry)| entry.expired(now))
            .map(|(peer, _)| *peer)
            .collect();
        for peer in &expired {
            self.hosts.remove(peer);
        }
        let stale: Vec<PeerId> = self
            .candidates
            .iter()
            .filter(|(_, candidate)| candidate.entry.expired(now))
            .map(|(peer, _)| *peer)
            .collect();
        for peer in &stale {
            self.forget_candidate(peer);
        }
        expired
    }

    /// The host `peer`, if it is in the view.
    pub fn get(&self, peer: &PeerId) -> Option<&Entry> {
        self.hosts.get(peer)
    }

    /// How many candidates wait to join.
    pub fn candidates(&self) -> usize {
        self.candidates.len()
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
        assert_eq!(
            view.observe(peer, vec![], Duration::from_millis(100), start, true, peer),
            Admission::Joined
        );
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

    #[test]
    fn one_relay_introduces_a_bounded_number_of_candidates_and_never_displaces_hosts() {
        let mut view = View::default();
        let now = Instant::now();
        let ttl = Duration::from_secs(600);
        let real = PeerId::random();
        assert_eq!(
            view.observe(real, vec![], ttl, now, true, real),
            Admission::Joined
        );
        let relay = PeerId::random();
        let mut fakes = Vec::new();
        for _ in 0..VIEW_CANDIDATES_PER_RELAY_MAX * 4 {
            let fake = PeerId::random();
            fakes.push(fake);
            view.observe(fake, vec![], ttl, now, false, relay);
        }
        assert_eq!(view.candidates(), VIEW_CANDIDATES_PER_RELAY_MAX);
        assert_eq!(
            view.observe(PeerId::random(), vec![], ttl, now, false, relay),
            Admission::Refused("VIEW_CANDIDATES_PER_RELAY_MAX")
        );
        assert_eq!(view.hosts().len(), 1, "candidates are not listed");
        assert!(view.get(&fakes[0]).is_none(), "nor resolved");
        // Another relay still has its own slots, and a connected host
        // joins whatever the relays did.
        let other = PeerId::random();
        assert_eq!(
            view.observe(PeerId::random(), vec![], ttl, now, false, other),
            Admission::Candidate
        );
        let second = PeerId::random();
        assert_eq!(
            view.observe(second, vec![], ttl, now, true, relay),
            Admission::Joined
        );
        // A candidate that turns out reachable joins and frees its slot.
        assert!(view.connected(&fakes[0]));
        assert!(view.get(&fakes[0]).is_some());
        assert_eq!(
            view.observe(PeerId::random(), vec![], ttl, now, false, relay),
            Admission::Candidate
        );
        // One whose dial failed frees its slot too.
        assert!(view.forget_candidate(&fakes[1]));
        assert!(!view.connected(&fakes[1]));
        assert_eq!(
            view.observe(PeerId::random(), vec![], ttl, now, false, relay),
            Admission::Candidate
        );
    }

    #[test]
    fn refusal_names_what_observe_would_refuse_and_changes_nothing() {
        let mut view = View::default();
        let now = Instant::now();
        let ttl = Duration::from_secs(600);
        let relay = PeerId::random();
        let mut candidates = Vec::new();
        // Every outcome observe can have, each asked first.
        for _ in 0..VIEW_CANDIDATES_PER_RELAY_MAX + 3 {
            let fake = PeerId::random();
            let asked = view.refusal(&fake, false, &relay);
            let before = view.candidates();
            let admission = view.observe(fake, vec![], ttl, now, false, relay);
            match asked {
                Some(limit) => {
                    assert_eq!(admission, Admission::Refused(limit));
                    assert_eq!(view.candidates(), before);
                }
                None => {
                    assert_eq!(admission, Admission::Candidate);
                    candidates.push(fake);
                }
            }
        }
        assert_eq!(candidates.len(), VIEW_CANDIDATES_PER_RELAY_MAX);
        // A known candidate is refreshed, and a connected peer joins, past
        // the relay's bound.
        assert_eq!(view.refusal(&candidates[0], false, &relay), None);
        assert_eq!(
            view.observe(candidates[0], vec![], ttl, now, false, relay),
            Admission::CandidateRefreshed
        );
        let connected = PeerId::random();
        assert_eq!(view.refusal(&connected, true, &relay), None);
        assert_eq!(
            view.observe(connected, vec![], ttl, now, true, relay),
            Admission::Joined
        );
        // Asking changed nothing.
        let candidates_now = view.candidates();
        for _ in 0..100 {
            assert!(view.refusal(&PeerId::random(), false, &relay).is_some());
        }
        assert_eq!(view.candidates(), candidates_now);
    }

    #[test]
    fn candidates_expire_and_give_their_relay_its_slots_back() {
        let mut view = View::default();
        let now = Instant::now();
        let relay = PeerId::random();
        for _ in 0..VIEW_CANDIDATES_PER_RELAY_MAX {
            view.observe(
                PeerId::random(),
                vec![],
                Duration::from_secs(1),
                now,
                false,
                relay,
            );
        }
        assert!(matches!(
            view.observe(
                PeerId::random(),
                vec![],
                Duration::from_secs(1),
                now,
                false,
                relay
            ),
            Admission::Refused(_)
        ));
        view.prune(now + Duration::from_secs(2));
        assert_eq!(view.candidates(), 0);
        assert_eq!(
            view.observe(
                PeerId::random(),
                vec![],
                Duration::from_secs(1),
                now,
                false,
                relay
            ),
            Admission::Candidate
        );
    }
}
