//! Who may do what to a group: the group key, access tokens and their
//! scopes.
//!
//! Every group has a 32-byte key, minted by `raft.wasm deploy` and handed
//! to each replica as a spawn grant (never an argument, an anchor or a
//! record anyone else can read). Two keys are derived from it:
//!
//! - the **token key** signs access tokens. A token is a [`Scope`] plus a
//!   keyed BLAKE3 MAC over it, so any replica verifies any token without a
//!   shared table, and tokens keep working across leader changes and
//!   restarts. A holder can mint a narrower token ([`Request::Mint`]),
//!   never a wider one.
//! - the **envelope key** authenticates Raft traffic: every inbox message
//!   between replicas carries a MAC, so a process that can reach an inbox
//!   but does not hold the key cannot get a message stepped, whatever
//!   hosts its call went through.
//!
//! Tokens are bearer capabilities: whoever holds the bytes holds the
//! authority. They cannot be revoked one by one; a new group key (a new
//! deployment) revokes them all. docs/security.md has the whole model.
//!
//! [`Request::Mint`]: crate::proto::Request::Mint

use serde::{Deserialize, Serialize};

use crate::proto::Request;

/// Bytes of a group key.
pub const GROUP_KEY_BYTES: usize = 32;

/// Bytes of a MAC (keyed BLAKE3).
pub const MAC_BYTES: usize = 32;

/// Most topics one token may name.
pub const TOKEN_TOPICS_MAX: usize = 64;

/// Longest topic name a token may name, in bytes.
pub const TOKEN_TOPIC_BYTES_MAX: usize = 256;

/// Largest encoded token, in bytes.
pub const TOKEN_BYTES_MAX: usize = MAC_BYTES + 16 + TOKEN_TOPICS_MAX * (TOKEN_TOPIC_BYTES_MAX + 2);

/// The name of the spawn grant that carries a replica's group key.
pub const GROUP_KEY_GRANT: &str = "raft-group-key";

/// The name of the spawn grant that carries a worker's access token.
pub const TOKEN_GRANT: &str = "raft-token";

/// The name of the spawn grant through which a worker reaches the
/// replicas' `request` anchors (a read-only path view).
pub const REPLICAS_GRANT: &str = "raft";

/// What a token allows, one bit per kind of operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verbs(pub u32);

impl Verbs {
    /// Enqueue messages (and offer URLs to a crawl frontier).
    pub const ENQUEUE: Self = Self(1);
    /// Lease, ack, nack and extend.
    pub const CONSUME: Self = Self(1 << 1);
    /// Peek at and count a topic's messages; list topics.
    pub const READ_TOPIC: Self = Self(1 << 2);
    /// Read KV keys.
    pub const KV_READ: Self = Self(1 << 3);
    /// Write and delete KV keys.
    pub const KV_WRITE: Self = Self(1 << 4);
    /// Create, configure, purge and delete topics.
    pub const TOPIC_ADMIN: Self = Self(1 << 5);
    /// Lifecycle and membership: init, join, add, promote, remove,
    /// transfer leadership, destroy, and reading the group key.
    pub const GROUP_ADMIN: Self = Self(1 << 6);
    /// Everything.
    pub const ALL: Self = Self((1 << 7) - 1);

    /// Whether every verb of `other` is in `self`.
    #[must_use]
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets.
    #[must_use]
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Parses a comma-separated list: `enqueue`, `consume`, `read`,
    /// `kv-read`, `kv-write`, `topic-admin`, `admin`, `all`.
    ///
    /// # Errors
    ///
    /// An unknown name, named in the message.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut verbs = Self::default();
        for name in list
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            verbs = verbs.union(match name {
                "enqueue" => Self::ENQUEUE,
                "consume" => Self::CONSUME,
                "read" => Self::READ_TOPIC,
                "kv-read" => Self::KV_READ,
                "kv-write" => Self::KV_WRITE,
                "topic-admin" => Self::TOPIC_ADMIN,
                "admin" => Self::GROUP_ADMIN,
                "all" => Self::ALL,
                other => {
                    return Err(format!(
                    "unknown verb {other:?}: use enqueue, consume, read, kv-read, kv-write, topic-admin, admin or all"
                ))
                }
            });
        }
        Ok(verbs)
    }

    fn name(self) -> &'static str {
        match self {
            Self::ENQUEUE => "enqueue",
            Self::CONSUME => "consume",
            Self::READ_TOPIC => "read",
            Self::KV_READ => "kv-read",
            Self::KV_WRITE => "kv-write",
            Self::TOPIC_ADMIN => "topic-admin",
            Self::GROUP_ADMIN => "admin",
            _ => "several verbs",
        }
    }
}

/// What a token allows: verbs, on some topics or on all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// The verbs.
    pub verbs: Verbs,
    /// The topics the topic verbs apply to; `None`: every topic. (A
    /// topic's dead-letter topic `T.dlq` is a topic of its own.)
    pub topics: Option<Vec<String>>,
}

impl Scope {
    /// Everything: what the group's admin token carries.
    #[must_use]
    pub fn admin() -> Self {
        Self {
            verbs: Verbs::ALL,
            topics: None,
        }
    }

    /// Whether `self` allows everything `narrower` does.
    #[must_use]
    pub fn contains(&self, narrower: &Scope) -> bool {
        if !self.verbs.contains(narrower.verbs) {
            return false;
        }
        match (&self.topics, &narrower.topics) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(mine), Some(theirs)) => theirs.iter().all(|topic| mine.contains(topic)),
        }
    }

    /// Checks the scope's own limits.
    ///
    /// # Errors
    ///
    /// Too many topics, or a name too long or empty.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(topics) = &self.topics {
            if topics.len() > TOKEN_TOPICS_MAX {
                return Err(format!(
                    "{} topics; a token names at most {TOKEN_TOPICS_MAX}",
                    topics.len()
                ));
            }
            if let Some(bad) = topics
                .iter()
                .find(|topic| topic.is_empty() || topic.len() > TOKEN_TOPIC_BYTES_MAX)
            {
                return Err(format!(
                    "topic name {bad:?} is empty or over {TOKEN_TOPIC_BYTES_MAX} bytes"
                ));
            }
        }
        Ok(())
    }

    /// Whether `verb` is allowed on `topic` (`None`: not a topic
    /// operation).
    ///
    /// # Errors
    ///
    /// A "not permitted" message naming what was refused.
    pub fn allow(&self, verb: Verbs, topic: Option<&str>) -> Result<(), String> {
        if !self.verbs.contains(verb) {
            return Err(match topic {
                Some(topic) => format!(
                    "not permitted: this token does not grant {} (on topic {topic:?})",
                    verb.name()
                ),
                None => format!("not permitted: this token does not grant {}", verb.name()),
            });
        }
        match (topic, &self.topics) {
            (Some(topic), Some(topics)) if !topics.iter().any(|allowed| allowed == topic) => Err(
                format!("not permitted: this token is limited to topics {topics:?}, not {topic:?}"),
            ),
            _ => Ok(()),
        }
    }
}

/// A group key: the root of a group's authority.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupKey([u8; GROUP_KEY_BYTES]);

impl std::fmt::Debug for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key itself.
        f.write_str("GroupKey(..)")
    }
}

/// Why a token or a message was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// The bytes are not a token of this group (forged, garbled, or of
    /// another deployment).
    #[error("not permitted: the access token is not valid for this group ({0})")]
    BadToken(&'static str),
    /// The token is valid but does not allow the request.
    #[error("{0}")]
    NotPermitted(String),
}

impl GroupKey {
    /// A key from its bytes (a grant's data).
    ///
    /// # Errors
    ///
    /// Bytes of the wrong length.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let array: [u8; GROUP_KEY_BYTES] = bytes.try_into().map_err(|_| {
            format!(
                "a group key is {GROUP_KEY_BYTES} bytes, not {}",
                bytes.len()
            )
        })?;
        Ok(Self(array))
    }

    /// A new key from `entropy` (hashed, so any bytes with enough entropy
    /// will do).
    #[must_use]
    pub fn generate(entropy: &[u8]) -> Self {
        Self(blake3::derive_key("ww raft group key v1", entropy))
    }

    /// The key's bytes, to grant to a replica.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; GROUP_KEY_BYTES] {
        &self.0
    }

    fn derived(&self, purpose: &str) -> [u8; 32] {
        blake3::derive_key(purpose, &self.0)
    }

    /// A token for `scope`.
    #[must_use]
    pub fn mint(&self, scope: &Scope) -> Vec<u8> {
        let body = postcard::to_stdvec(scope).unwrap_or_default();
        let mac = blake3::keyed_hash(&self.derived("ww raft token v1"), &body);
        let mut token = mac.as_bytes().to_vec();
        token.extend_from_slice(&body);
        token
    }

    /// The scope of `token`, if this key signed it.
    ///
    /// # Errors
    ///
    /// [`AccessError::BadToken`] for anything else.
    pub fn verify(&self, token: &[u8]) -> Result<Scope, AccessError> {
        if token.is_empty() {
            return Err(AccessError::BadToken("no token"));
        }
        if token.len() > TOKEN_BYTES_MAX {
            return Err(AccessError::BadToken("too long"));
        }
        let Some((mac, body)) = token.split_first_chunk::<MAC_BYTES>() else {
            return Err(AccessError::BadToken("too short"));
        };
        let expected = blake3::keyed_hash(&self.derived("ww raft token v1"), body);
        // blake3::Hash compares in constant time.
        if expected != blake3::Hash::from_bytes(*mac) {
            return Err(AccessError::BadToken("bad signature"));
        }
        let scope: Scope =
            postcard::from_bytes(body).map_err(|_| AccessError::BadToken("garbled scope"))?;
        scope
            .validate()
            .map_err(|_| AccessError::BadToken("scope over limits"))?;
        Ok(scope)
    }

    /// Appends the envelope MAC to an inbox message.
    #[must_use]
    pub fn seal(&self, mut message: Vec<u8>) -> Vec<u8> {
        let mac = blake3::keyed_hash(&self.derived("ww raft envelope v1"), &message);
        message.extend_from_slice(mac.as_bytes());
        message
    }

    /// The message without its MAC, if the MAC is this group's.
    ///
    /// # Errors
    ///
    /// A message too short to carry a MAC, or with another key's MAC.
    pub fn open<'a>(&self, sealed: &'a [u8]) -> Result<&'a [u8], &'static str> {
        let Some(split) = sealed.len().checked_sub(MAC_BYTES) else {
            return Err("too short to carry a MAC");
        };
        let (message, mac) = sealed.split_at(split);
        let Ok(mac) = <[u8; MAC_BYTES]>::try_from(mac) else {
            return Err("too short to carry a MAC");
        };
        let expected = blake3::keyed_hash(&self.derived("ww raft envelope v1"), message);
        if expected != blake3::Hash::from_bytes(mac) {
            return Err("bad MAC: not from a replica of this group");
        }
        Ok(message)
    }
}

/// What a request needs, as (verb, topic).
///
/// A command or query that does not decode needs nothing here: the state
/// machine refuses it with its own error.
#[must_use]
pub fn needs(request: &Request) -> Option<(Verbs, Option<String>)> {
    match request {
        // Any holder of a valid token may see the replica's status and open
        // a session (a session alone changes nothing).
        Request::Status | Request::Register => None,
        Request::Init { .. }
        | Request::Join { .. }
        | Request::AddLearner { .. }
        | Request::Promote { .. }
        | Request::Remove { .. }
        | Request::TransferLeader { .. }
        | Request::Destroy { .. }
        | Request::GroupKey => Some((Verbs::GROUP_ADMIN, None)),
        // Checked against the token's scope by the replica.
        Request::Mint { .. } => None,
        Request::Command { command, .. } => {
            let command = queue::decode_command(command).ok()?;
            Some(command_needs(&command))
        }
        Request::Query { query } => {
            let query = queue::decode_query(query).ok()?;
            Some(query_needs(&query))
        }
    }
}

fn command_needs(command: &queue::Command) -> (Verbs, Option<String>) {
    use queue::Command;
    let topic = |name: &String| Some(name.clone());
    match command {
        Command::CreateTopic { topic: name, .. }
        | Command::ConfigureTopic { topic: name, .. }
        | Command::DeleteTopic { topic: name }
        | Command::Purge { topic: name } => (Verbs::TOPIC_ADMIN, topic(name)),
        Command::Enqueue { topic: name, .. } => (Verbs::ENQUEUE, topic(name)),
        Command::Lease { topic: name, .. }
        | Command::Ack { topic: name, .. }
        | Command::Nack { topic: name, .. }
        | Command::Extend { topic: name, .. } => (Verbs::CONSUME, topic(name)),
        Command::Put { .. } | Command::Delete { .. } | Command::Cas { .. } => {
            (Verbs::KV_WRITE, None)
        }
        // A crawl's name shares the token's topic list with topic names.
        Command::CreateCrawl { crawl, .. }
        | Command::ConfigureCrawl { crawl, .. }
        | Command::ControlCrawl { crawl, .. }
        | Command::DeleteCrawl { crawl } => (Verbs::TOPIC_ADMIN, topic(crawl)),
        Command::Offer { crawl, .. } => (Verbs::ENQUEUE, topic(crawl)),
        Command::LeaseUrls { crawl, .. }
        | Command::CompleteUrls { crawl, .. }
        | Command::ExtendUrls { crawl, .. }
        | Command::SetOriginDelay { crawl, .. } => (Verbs::CONSUME, topic(crawl)),
        // Clients never need to tick; the leader does it on its own.
        Command::Tick => (Verbs::GROUP_ADMIN, None),
    }
}

fn query_needs(query: &queue::Query) -> (Verbs, Option<String>) {
    use queue::Query;
    match query {
        Query::Get { .. } => (Verbs::KV_READ, None),
        Query::Peek { topic, .. } | Query::Stats { topic } => {
            (Verbs::READ_TOPIC, Some(topic.clone()))
        }
        Query::Topics => (Verbs::READ_TOPIC, None),
        Query::CrawlStatus { crawl }
        | Query::DeadUrls { crawl, .. }
        | Query::CrawlWorkers { crawl } => (Verbs::READ_TOPIC, Some(crawl.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consume_urls() -> Scope {
        Scope {
            verbs: Verbs::CONSUME,
            topics: Some(vec!["urls".to_owned()]),
        }
    }

    #[test]
    fn tokens_verify_only_under_their_key_and_never_widen() {
        let key = GroupKey::generate(b"one");
        let other = GroupKey::generate(b"two");
        let token = key.mint(&consume_urls());
        assert_eq!(key.verify(&token).unwrap(), consume_urls());
        assert!(other.verify(&token).is_err());
        // Flip any byte: refused.
        for index in 0..token.len() {
            let mut bad = token.clone();
            bad[index] ^= 1;
            assert!(key.verify(&bad).is_err(), "flipped byte {index}");
        }
        assert!(key.verify(&[]).is_err());
        assert!(Scope::admin().contains(&consume_urls()));
        assert!(!consume_urls().contains(&Scope::admin()));
        let wider_topics = Scope {
            verbs: Verbs::CONSUME,
            topics: None,
        };
        assert!(!consume_urls().contains(&wider_topics));
    }

    #[test]
    fn a_crawls_counts_need_read_on_the_crawl() {
        // The results token of a crawler worker: enqueue on its topic only.
        let results_only = Scope {
            verbs: Verbs::ENQUEUE,
            topics: Some(vec!["crawl-results".to_owned()]),
        };
        let reader = Scope {
            verbs: Verbs::READ_TOPIC,
            topics: Some(vec!["crawl".to_owned()]),
        };
        for query in [
            queue::Query::CrawlWorkers {
                crawl: "crawl".to_owned(),
            },
            queue::Query::CrawlStatus {
                crawl: "crawl".to_owned(),
            },
        ] {
            let request = Request::Query {
                query: queue::encode_query(&query),
            };
            let (verbs, topic) = needs(&request).unwrap();
            assert!(
                results_only.allow(verbs, topic.as_deref()).is_err(),
                "{query:?}"
            );
            assert!(reader.allow(verbs, topic.as_deref()).is_ok(), "{query:?}");
        }
    }

    #[test]
    fn scopes_refuse_other_verbs_and_topics() {
        let scope = consume_urls();
        assert!(scope.allow(Verbs::CONSUME, Some("urls")).is_ok());
        let refused = scope.allow(Verbs::ENQUEUE, Some("urls")).unwrap_err();
        assert!(refused.starts_with("not permitted"), "{refused}");
        assert!(scope.allow(Verbs::CONSUME, Some("results")).is_err());
        assert!(scope.allow(Verbs::KV_READ, None).is_err());
        assert!(scope.allow(Verbs::GROUP_ADMIN, None).is_err());
    }

    #[test]
    fn sealed_messages_open_only_with_the_key() {
        let key = GroupKey::generate(b"one");
        let sealed = key.seal(b"envelopes".to_vec());
        assert_eq!(key.open(&sealed).unwrap(), b"envelopes");
        assert!(GroupKey::generate(b"two").open(&sealed).is_err());
        let mut bad = sealed.clone();
        bad[0] ^= 1;
        assert!(key.open(&bad).is_err());
        assert!(key.open(&sealed[..10]).is_err());
    }
}
