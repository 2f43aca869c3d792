//! The replicated client session table: at-most-once application of
//! retried commands (Raft thesis 6.3).
//!
//! Every command carries `(client_id, seq)`. A client has at most one
//! command outstanding and numbers them with increasing `seq`. The table
//! keeps, per client, the last applied `seq` and its result: a retry of that
//! `seq` gets the cached result instead of applying again, and an older
//! `seq` is refused as stale.
//!
//! The table is part of the replicated state (it is in every snapshot) and
//! changes only in `apply`, so every replica holds the same table. It is
//! bounded: past `max_sessions_count` clients, the least recently used
//! session (by log index, the same on every replica) is evicted. A client
//! whose session was evicted loses its protection against double
//! application of a retry; size the bound above the number of clients.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One client's last applied command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Session {
    pub(crate) last_seq: u64,
    /// Log index of the last command: the eviction order.
    pub(crate) last_index: u64,
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
}

/// The client id that opts out of sessions (no deduplication).
pub(crate) const NO_SESSION_CLIENT_ID: u64 = 0;

/// The session table. See the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sessions {
    max_sessions_count: u64,
    by_client: BTreeMap<u64, Session>,
    /// `(last_index, client_id)`, oldest first.
    lru: BTreeSet<(u64, u64)>,
}

impl Sessions {
    pub(crate) fn new(max_sessions_count: u64) -> Self {
        Self {
            max_sessions_count,
            by_client: BTreeMap::new(),
            lru: BTreeSet::new(),
        }
    }

    pub(crate) fn max_sessions_count(&self) -> u64 {
        self.max_sessions_count
    }

    pub(crate) fn len(&self) -> usize {
        self.by_client.len()
    }

    pub(crate) fn check(&self, client_id: u64, seq: u64) -> SessionCheck {
        if client_id == NO_SESSION_CLIENT_ID {
            return SessionCheck::Apply;
        }
        match self.by_client.get(&client_id) {
            None => SessionCheck::Apply,
            Some(session) if seq > session.last_seq => SessionCheck::Apply,
            Some(session) if seq == session.last_seq => {
                SessionCheck::Duplicate(session.result.clone())
            }
            Some(session) => SessionCheck::Stale {
                last_seq: session.last_seq,
            },
        }
    }

    /// Records the result of a command applied at `index`.
    pub(crate) fn record(&mut self, client_id: u64, seq: u64, index: u64, result: Vec<u8>) {
        if client_id == NO_SESSION_CLIENT_ID {
            return;
        }
        if let Some(old) = self.by_client.get(&client_id) {
            self.lru.remove(&(old.last_index, client_id));
        }
        self.by_client.insert(
            client_id,
            Session {
                last_seq: seq,
                last_index: index,
                result,
            },
        );
        self.lru.insert((index, client_id));
        while self.by_client.len() as u64 > self.max_sessions_count {
            let Some((_, evicted)) = self.lru.pop_first() else {
                break;
            };
            self.by_client.remove(&evicted);
        }
    }

    /// The sessions in client order, for a snapshot.
    pub(crate) fn to_entries(&self) -> Vec<(u64, Session)> {
        self.by_client
            .iter()
            .map(|(id, s)| (*id, s.clone()))
            .collect()
    }

    /// Rebuilds the table from a snapshot's entries.
    pub(crate) fn from_entries(max_sessions_count: u64, entries: Vec<(u64, Session)>) -> Self {
        let mut sessions = Self::new(max_sessions_count);
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

    #[test]
    fn retry_gets_first_result_and_older_is_stale() {
        let mut sessions = Sessions::new(10);
        assert_eq!(sessions.check(7, 1), SessionCheck::Apply);
        sessions.record(7, 1, 100, b"first".to_vec());
        assert_eq!(
            sessions.check(7, 1),
            SessionCheck::Duplicate(b"first".to_vec())
        );
        assert_eq!(sessions.check(7, 2), SessionCheck::Apply);
        sessions.record(7, 2, 101, b"second".to_vec());
        assert_eq!(sessions.check(7, 1), SessionCheck::Stale { last_seq: 2 });
        // Client 0 opts out: always applies, never recorded.
        sessions.record(0, 5, 102, b"x".to_vec());
        assert_eq!(sessions.check(0, 5), SessionCheck::Apply);
    }

    #[test]
    fn eviction_is_least_recently_used_by_log_index() {
        let mut sessions = Sessions::new(2);
        sessions.record(1, 1, 10, vec![]);
        sessions.record(2, 1, 11, vec![]);
        sessions.record(1, 2, 12, vec![]);
        sessions.record(3, 1, 13, vec![]);
        assert_eq!(sessions.len(), 2);
        assert_eq!(
            sessions.check(2, 1),
            SessionCheck::Apply,
            "client 2 was evicted"
        );
        assert_eq!(sessions.check(1, 2), SessionCheck::Duplicate(vec![]));
        let rebuilt = Sessions::from_entries(2, sessions.to_entries());
        assert_eq!(rebuilt, sessions);
    }
}
