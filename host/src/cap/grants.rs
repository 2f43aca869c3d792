//! Grants: the named authority a spawner hands a process. The read-only
//! anchors that serve `readPath` grants are [`super::read_view`]'s.
//!
//! A process spawned without `SpawnSpec.host` holds its grants and nothing
//! else (see [`super::host`]). `data` and `readPath` grants are plain values
//! and persist in the supervision record, and so does an `http` grant's
//! scope (its server is rebuilt on respawn); a `cap` grant is a live capability
//! that lives only in memory, so a process holding one is not respawned
//! after a host restart (see [`super::executor`]).

use std::fmt;

use serde::{Deserialize, Serialize};
use ww_api::host;
use ww_api::limits::{GRANTS_MAX, GRANT_DATA_BYTES_MAX, GRANT_NAME_BYTES_MAX};
use ww_api::ww_capnp::grant;

use super::{invalid, path, text};

/// One named grant.
#[derive(Clone, Serialize, Deserialize)]
pub struct Grant {
    /// 1 to [`GRANT_NAME_BYTES_MAX`] of `[A-Za-z0-9._-]`.
    pub name: String,
    /// What it grants.
    pub value: GrantValue,
}

/// What a grant holds.
#[derive(Clone, Serialize, Deserialize)]
pub enum GrantValue {
    /// Bytes.
    Data(Vec<u8>),
    /// A live capability; `None` once read back from a record, where only
    /// the grant's name survives.
    Cap(#[serde(skip)] Option<capnp::capability::Client>),
    /// Components of the path below every host that the grant may read.
    ReadPath(Vec<String>),
    /// An HTTP fetch grant: its scope, and the capability serving it
    /// (`None` in a record just read back, until [`revive`]).
    Http(
        super::http::HttpScope,
        #[serde(skip)] Option<ww_api::http::Client>,
    ),
}

/// Rebuilds what a record cannot hold: the servers of `http` grants.
///
/// # Errors
///
/// A recorded scope the host no longer accepts.
pub fn revive(grants: &mut [Grant]) -> Result<(), String> {
    for grant in grants {
        if let GrantValue::Http(scope, client @ None) = &mut grant.value {
            *client = Some(super::http::client(scope.clone())?);
        }
    }
    Ok(())
}

impl fmt::Debug for Grant {
    /// Names the grant and its kind, never its bytes: grant data may be a
    /// secret and debug output ends up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.value {
            GrantValue::Data(data) => format!("data ({} bytes)", data.len()),
            GrantValue::Cap(_) => "cap".to_owned(),
            GrantValue::ReadPath(components) => format!("readPath {}", path::join(components)),
            GrantValue::Http(..) => "http".to_owned(),
        };
        write!(f, "{}: {kind}", self.name)
    }
}

/// The names of `grants`, comma separated, for messages.
pub fn names(grants: &[Grant]) -> String {
    if grants.is_empty() {
        return "none".to_owned();
    }
    grants
        .iter()
        .map(|grant| grant.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > GRANT_NAME_BYTES_MAX
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(format!(
            "grant name {name:?} must be 1 to {GRANT_NAME_BYTES_MAX} of [A-Za-z0-9._-]"
        ));
    }
    Ok(())
}

/// Reads and validates the grants of a spawn.
///
/// # Errors
///
/// Too many grants or data bytes, a bad or repeated name, a bad path.
pub fn parse(
    list: capnp::struct_list::Reader<'_, grant::Owned>,
) -> Result<Vec<Grant>, capnp::Error> {
    use ww_api::ww_capnp::grant::Which;
    if list.len() > GRANTS_MAX {
        return Err(invalid(format!(
            "at most {GRANTS_MAX} grants; got {}",
            list.len()
        )));
    }
    let mut grants: Vec<Grant> = Vec::with_capacity(list.len() as usize);
    let mut data_bytes = 0;
    for reader in list.iter() {
        let name = text(reader.get_name(), "grant name")?;
        validate_name(&name).map_err(invalid)?;
        if grants.iter().any(|grant| grant.name == name) {
            return Err(invalid(format!("grant {name:?} is given twice")));
        }
        let value = match reader.which()? {
            Which::Data(data) => {
                let data = data?;
                data_bytes += data.len();
                if data_bytes > GRANT_DATA_BYTES_MAX {
                    return Err(invalid(format!(
                        "grant data exceeds {GRANT_DATA_BYTES_MAX} bytes in total"
                    )));
                }
                GrantValue::Data(data.to_vec())
            }
            Which::Cap(cap) => GrantValue::Cap(Some(cap.get_as_capability()?)),
            Which::ReadPath(raw) => {
                let raw = text(raw, "readPath")?;
                let components =
                    path::parse(&raw).map_err(|err| invalid(format!("grant {name:?}: {err}")))?;
                if components.is_empty() {
                    return Err(invalid(format!(
                        "grant {name:?}: readPath must name a path below the hosts, e.g. \"raft/v1/request\""
                    )));
                }
                GrantValue::ReadPath(components)
            }
            Which::Http(scope) => {
                let scope = super::http::HttpScope::read(scope?)?;
                let client = super::http::client(scope.clone())
                    .map_err(|err| invalid(format!("grant {name:?}: {err}")))?;
                GrantValue::Http(scope, Some(client))
            }
        };
        grants.push(Grant { name, value });
    }
    Ok(grants)
}

/// Writes `grants` into a `Host.grants` answer.
pub fn fill(grants: &[Grant], mut results: host::GrantsResults) {
    let mut list = results
        .get()
        .init_grants(u32::try_from(grants.len()).unwrap_or(0));
    for (index, grant) in grants.iter().enumerate() {
        let Ok(index) = u32::try_from(index) else {
            break;
        };
        let mut out = list.reborrow().get(index);
        out.set_name(&grant.name);
        match &grant.value {
            GrantValue::Data(data) => out.set_data(data),
            GrantValue::Cap(Some(cap)) => out.init_cap().set_as_capability(cap.hook.add_ref()),
            // A respawned process never holds a dead cap grant (it is not
            // respawned), so this arm is unreachable in practice; answer a
            // null capability rather than fail the whole list.
            GrantValue::Cap(None) => out.init_cap().clear(),
            GrantValue::ReadPath(components) => out.set_read_path(path::join(components)),
            GrantValue::Http(_, Some(client)) => out
                .init_cap()
                .set_as_capability(client.client.hook.add_ref()),
            // `revive` runs before a recorded process starts.
            GrantValue::Http(_, None) => out.init_cap().clear(),
        }
    }
}

/// The error for anything a grant-only process tries beyond its grants.
pub fn not_permitted(pid: u64, what: &str, grants: &[Grant]) -> capnp::Error {
    capnp::Error::failed(format!(
        "not permitted: process {pid} holds grants only ({}), not {what}; its spawner can grant more or spawn it with `host`",
        names(grants)
    ))
}
