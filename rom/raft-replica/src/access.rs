//! The replica's side of access control: its group key, and the check of
//! every request against the token its batch carries (see
//! `raft_client::access` for the model).

use anyhow::Context;
use raft_client::access::{self, AccessError, GroupKey, Scope};
use raft_client::proto::{Request, Response};
use ww_guest::ww_api::{host, ops};

/// The group key this replica was granted at spawn.
///
/// # Errors
///
/// When the replica holds no key grant (it was spawned by something other
/// than `raft.wasm deploy` or `add-replica`), or the grant is malformed:
/// without a key it could neither check a token nor authenticate a peer.
pub async fn granted_key(host: &host::Client) -> anyhow::Result<GroupKey> {
    let bytes = ops::grant_data(host, access::GROUP_KEY_GRANT)
        .await
        .context("reading this replica's grants")?
        .with_context(|| {
            format!(
                "this replica holds no {:?} grant; replicas are spawned by `raft.wasm deploy` and `add-replica`, which grant the group's key",
                access::GROUP_KEY_GRANT
            )
        })?;
    GroupKey::from_bytes(&bytes).map_err(anyhow::Error::msg)
}

/// Whether `scope` allows `request`. `Ok(Some(response))`: answered here
/// (minting, the key).
///
/// # Errors
///
/// The refusal to send back.
pub fn check(scope: &Scope, key: &GroupKey, request: &Request) -> Result<Option<Response>, String> {
    match request {
        Request::Mint { scope: wanted } => {
            wanted.validate()?;
            if !scope.contains(wanted) {
                return Err(
                    "not permitted: a token can only mint a token within its own scope".to_owned(),
                );
            }
            Ok(Some(Response::Token(key.mint(wanted))))
        }
        Request::GroupKey => {
            scope.allow(access::Verbs::GROUP_ADMIN, None)?;
            Ok(Some(Response::Key(key.as_bytes().to_vec())))
        }
        other => {
            if let Some((verb, topic)) = access::needs(other) {
                scope.allow(verb, topic.as_deref())?;
            }
            Ok(None)
        }
    }
}

/// The answer to every request of a batch whose token failed.
pub fn refusal(err: &AccessError) -> Response {
    Response::Error {
        retryable: false,
        message: err.to_string(),
    }
}
