//! The replicated client session table: at-most-once application of
//! retried commands (Raft dissertation, section 6.3).
//!
//! A client first registers: a register entry goes through the log, and the
//! client's id is the log index of that entry. Ids are unique by
//! construction (no two entries share an index), so two clients can never
//! share a session, however alike their clocks or their random sources.
//!
//! Every command then carries `(client_id, seq)`. A client has at most one
//! command outstanding and numbers them with increasing `seq`. The table
//! keeps, per client, the last applied `seq`, a digest of its command bytes
//! and its result: a retry of that `seq` with the same bytes gets the
//! cached result instead of applying again; the same `seq` with other bytes
//! is a conflict (a client bug, or ids shared by mistake) and is refused
//! loudly; an older `seq` is refused as stale; an id the table does not hold
//! (never registered, expired, evicted) is refused as expired.
//!
//! The table is part of the replicated state (it is in every snapshot) and
//! changes only in `apply`, so every replica holds the same table. Sessions
//! expire by log time: a session whose last entry is more than
//! `session_timeout_ms` of log time older than the entry being applied is
//! dropped. The table is also bounded: past `max_sessions_count` clients,
//! the least recently used session (by log index, the same on every replica)
//! is dropped. Either way the client's next command gets
//! [`SessionCheck::Expired`], never a silent second application.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One client's session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Session {
    /// The last applied `seq`; 0 right after registration.
    pub(crate) last_seq: u64,
    /// Log index of the last entry of this session: the eviction order.
    pub(crate) last_index: u64,
    /// Log time of that entry: the expiry clock.
    pub(crate) last_time_ms: u64,
    /// [`command_digest`] of the last applied command.
    pub(crate) digest: u64,
    pub(crate) result: Vec<u8>,
}

/// What to do with an incoming command.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SessionCheck {
    /// New: apply it.
    Apply,
    /// A retry of the last command: answer with its cached result.
    Duplicate(Vec<u8>),
    /// Older than the last command: refuse.
    Stale { last_seq: u64 },
    /// The last command's `seq` with other bytes: refuse.
    Conflict,
    /// No such session (never registered, expired or evicted): refuse.
    Expired,
}

/// The client id that opts out of sessions (no deduplication). For
/// commands that are never retried, such as a replica's own clock ticks.
pub(crate) const NO_SESSION_CLIENT_ID: u64 = 0;

/// A digest of a command's bytes, to tell a retry from a different command
/// that reuses its `(client_id, seq)`. CRC-32C and the length: this guards
/// against mistakes, not adversaries (clients are authenticated elsewhere).
pub(crate) fn command_digest(command: &[u8]) -> u64 {
    (u64::from(crc32c::crc32c(command)) << 32) | (command.len() as u64 & 0xFFFF_FFFF)
}

/// The session table. See the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sessions {
    max_sessions_count: u64,
    session_timeout_ms: u64,
    by_client: BTreeMap<u64, Session>,
    /// `(last_index, client_id)`, oldest first. Log time never decreases
    /// along the log, so this is also oldest `last_time_ms` first.
    lru: BTreeSet<(u64, u64)>,
}

impl Sessions {
    pub(crate) fn new(max_sessions_count: u64, session_timeout_ms: u64) -> Self {
        Self {
            max_sessions_count,
            session_timeout_ms,
            by_client: BTreeMap::new(),
            lru: BTreeSet::new(),
        }
    }

    pub(crate) fn max_sessions_count(&self) -> u64 {
        self.max_sessions_count
    }

    pub(crate) fn session_timeout_ms(&self) -> u64 {
        self.session_timeout_ms
    }

    pub(crate) fn len(&self) -> usize {
        self.by_client.len()
    }

    pub(crate) fn check(&self, client_id: u64, seq: u64, digest: u64) -> SessionCheck {
        if client_id == NO_SESSION_CLIENT_ID {
            return SessionCheck::Apply;
        }
        match self.by_client.get(&client_id) {
            None => SessionCheck::Expired,
            Some(session) if seq > session.last_seq => SessionCheck::Apply,
            Some(session) if seq == session.last_seq && digest == session.digest => {
                SessionCheck::Duplicate(session.result.clone())
            }
            Some(session) if seq == session.last_seq => SessionCheck::Conflict,
            Some(session) => SessionCheck::Stale {
                last_seq: session.last_seq,
            },
        }
    }

    /// Drops the sessions idle for more than the timeout at log time
    /// `now_ms`. Call before checking each entry.
    pub(crate) fn expire(&mut self, now_ms: u64) {
        while let Some(&(index, client_id)) = self.lru.first() {
            let Some(session) = self.by_client.get(&client_id) else {
                // The two indexes are kept in step; heal rather than loop.
                self.lru.remove(&(index, client_id));
                continue;
            };
            if session.last_time_ms.saturating_add(self.session_timeout_ms) >= now_ms {
                break;
            }
            self.lru.remove(&(index, client_id));
            self.by_client.remove(&client_id);
        }
    }

    /// Opens the session registered by the entry at `index`: its client id
    /// is `index`.
    pub(crate) fn register(&mut self, index: u64, time_ms: u64) -> u64 {
        assert_ne!(index, NO_SESSION_CLIENT_ID, "log indexes start at 1");
        assert!(
            !self.by_client.contains_key(&index),
            "a log index registers one session"
        );
        self.insert(
            index,
            Session {
                last_seq: 0,
                last_index: index,
                last_time_ms: time_ms,
                digest: command_digest(&[]),
                result: Vec::new(),
            },
        );
        index
    }

    /// Records the result of a command applied at `index`.
    pub(crate) fn record(
        &mut self,
        client_id: u64,
        seq: u64,
        index: u64,
        time_ms: u64,
        digest: u64,
        result: Vec<u8>,
    ) {
        if client_id == NO_SESSION_CLIENT_ID {
            return;
        }
        self.insert(
            client_id,
            Session {
                last_seq: seq,
                last_index: index,
                last_time_ms: time_ms,
                digest,
                result,
            },
        );
    }

    fn insert(&mut self, client_id: u64, session: Session) {
        if let Some(old) = self.by_client.get(&client_id) {
            self.lru.remove(&(old.last_index, client_id));
        }
        self.lru.insert((session.last_index, client_id));
        self.by_client.insert(client_id, session);
        while self.by_client.len() as u64 > self.max_sessions_count {
            let Some((_, evicted)) = self.lru.pop_first() else {
                break;
            };
            self.by_client.remove(&evicted);
        }
        debug_assert_eq!(self.by_client.len(), self.lru.len());
    }

    /// The sessions in client order, for a snapshot.
    pub(crate) fn to_entries(&self) -> Vec<(u64, Session)> {
        self.by_client
            .iter()
            .map(|(id, s)| (*id, s.clone()))
            .collect()
    }

    /// Rebuilds the table from a snapshot's entries.
    pub(crate) fn from_entries(
        max_sessions_count: u64,
        session_timeout_ms: u64,
        entries: Vec<(u64, Session)>,
    ) -> Self {
        let mut sessions = Self::new(max_sessions_count, session_timeout_ms);
        for (client_id, session) in entries {
            sessions.lru.insert((session.last_index, client_id));
            sessions.by_client.insert(client_id, session);
        }
        sessions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: u64 = 3_600_000;

    #[test]
    fn retry_gets_first_result_and_older_is_stale() {
        let mut sessions = Sessions::new(10, HOUR_MS);
        let id = sessions.register(7, 0);
        assert_eq!(id, 7);
        let first = command_digest(b"put a");
        assert_eq!(sessions.check(id, 1, first), SessionCheck::Apply);
        sessions.record(id, 1, 100, 0, first, b"first".to_vec());
        assert_eq!(
            sessions.check(id, 1, first),
            SessionCheck::Duplicate(b"first".to_vec())
        );
        assert_eq!(
            sessions.check(id, 1, command_digest(b"put b")),
            SessionCheck::Conflict,
            "the same seq with other bytes is refused, never answered from the cache"
        );
        assert_eq!(sessions.check(id, 2, first), SessionCheck::Apply);
        sessions.record(id, 2, 101, 0, first, b"second".to_vec());
        assert_eq!(
            sessions.check(id, 1, first),
            SessionCheck::Stale { last_seq: 2 }
        );
        // Client 0 opts out: always applies, never recorded.
        sessions.record(0, 5, 102, 0, first, b"x".to_vec());
        assert_eq!(sessions.check(0, 5, first), SessionCheck::Apply);
    }

    #[test]
    fn unregistered_ids_are_expired() {
        let sessions = Sessions::new(10, HOUR_MS);
        assert_eq!(sessions.check(12345, 1, 0), SessionCheck::Expired);
    }

    #[test]
    fn sessions_expire_by_log_time() {
        let mut sessions = Sessions::new(10, 1_000);
        let old = sessions.register(1, 10_000);
        let young = sessions.register(2, 10_500);
        sessions.expire(11_000);
        assert_eq!(
            sessions.check(old, 1, 0),
            SessionCheck::Apply,
            "exactly at the timeout: kept"
        );
        sessions.expire(11_001);
        assert_eq!(sessions.check(old, 1, 0), SessionCheck::Expired);
        assert_eq!(sessions.check(young, 1, 0), SessionCheck::Apply);
        sessions.record(young, 1, 3, 11_400, 0, vec![]);
        sessions.expire(12_000);
        assert_eq!(
            sessions.check(young, 2, 0),
            SessionCheck::Apply,
            "activity renews"
        );
        assert_eq!(sessions.len(), 1);
    }

    #[test]
    fn eviction_is_least_recently_used_by_log_index() {
        let mut sessions = Sessions::new(2, HOUR_MS);
        sessions.register(1, 0);
        sessions.register(2, 0);
        sessions.record(1, 1, 12, 0, 0, vec![]);
        sessions.register(13, 0);
        assert_eq!(sessions.len(), 2);
        assert_eq!(
            sessions.check(2, 1, 0),
            SessionCheck::Expired,
            "client 2 was evicted"
        );
        assert_eq!(sessions.check(1, 1, 0), SessionCheck::Duplicate(vec![]));
        let rebuilt = Sessions::from_entries(2, HOUR_MS, sessions.to_entries());
        assert_eq!(rebuilt, sessions);
    }
}
