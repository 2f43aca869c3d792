//! The group's membership as the driver exposes it.

use std::collections::BTreeMap;

use raft::eraftpb::ConfState;

/// Who is in the group, as of the last applied configuration change.
///
/// Every replica that applied the same log prefix reports the same value:
/// both the raft ids and their metadata are replicated through the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// Voters (of the incoming configuration during a joint change), sorted.
    pub voters: Vec<u64>,
    /// Learners (including learners-to-be of a joint change), sorted.
    pub learners: Vec<u64>,
    /// Voters of the outgoing configuration while a joint change is in
    /// progress; empty otherwise.
    pub outgoing_voters: Vec<u64>,
    /// The opaque metadata given when each node was added (for example its
    /// libp2p peer id), by raft id.
    pub metadata: BTreeMap<u64, Vec<u8>>,
}

impl Membership {
    pub(crate) fn from_conf_state(conf: &ConfState, metadata: &BTreeMap<u64, Vec<u8>>) -> Self {
        let sorted = |ids: &[u64]| {
            let mut ids = ids.to_vec();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let mut learners = conf.learners.clone();
        learners.extend_from_slice(&conf.learners_next);
        Membership {
            voters: sorted(&conf.voters),
            learners: sorted(&learners),
            outgoing_voters: sorted(&conf.voters_outgoing),
            metadata: metadata.clone(),
        }
    }

    /// Whether `id` is a voter or learner of either half of the
    /// configuration.
    pub fn contains(&self, id: u64) -> bool {
        self.voters.contains(&id)
            || self.learners.contains(&id)
            || self.outgoing_voters.contains(&id)
    }

    /// Whether `id` votes (in either half of a joint configuration).
    pub fn is_voter(&self, id: u64) -> bool {
        self.voters.contains(&id) || self.outgoing_voters.contains(&id)
    }

    /// Whether a joint configuration change is in progress.
    pub fn is_joint(&self) -> bool {
        !self.outgoing_voters.is_empty()
    }

    /// Every member id, sorted and without duplicates.
    pub fn ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .voters
            .iter()
            .chain(&self.learners)
            .chain(&self.outgoing_voters)
            .copied()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The metadata of `id`, if it has any.
    pub fn metadata_of(&self, id: u64) -> Option<&[u8]> {
        self.metadata.get(&id).map(Vec::as_slice)
    }
}
