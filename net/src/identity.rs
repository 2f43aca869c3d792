//! The host's libp2p identity, kept in its data dir so a restart keeps the
//! peer id.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use libp2p::identity::Keypair;

/// Reads a pre-shared cluster key (the libp2p private-network key file
/// format that `ww keygen` writes).
///
/// # Errors
///
/// When the file cannot be read or is not such a key.
pub fn load_psk(path: &Path) -> Result<libp2p::pnet::PreSharedKey> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("reading cluster key {}", path.display()))?;
    text.parse().map_err(|err| {
        anyhow::anyhow!(
            "{} is not a cluster key ({err}); create one with `ww keygen`",
            path.display()
        )
    })
}

/// A new random pre-shared cluster key, in key-file form.
pub fn new_psk() -> String {
    libp2p::pnet::PreSharedKey::new(rand::random()).to_key_file()
}

/// File name of the identity key inside the data dir.
pub const KEY_FILE: &str = "identity.key";

/// Loads the Ed25519 keypair at `path`, or creates one there if the file
/// does not exist.
///
/// # Errors
///
/// When the file exists but is not a key this host wrote (it is never
/// overwritten: that would silently change the peer id), or on I/O errors.
pub fn load_or_create(path: &Path) -> Result<Keypair> {
    match fs::read(path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).with_context(|| {
            format!(
                "{} is not a valid identity key; move it away to start with a new peer id",
                path.display()
            )
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            let bytes = keypair
                .to_protobuf_encoding()
                .context("encoding the new identity key")?;
            // A crash without the directory sync could forget the new name, and
            // the next start would make another key: a new peer id for the
            // same data.
            crate::private::write_atomic(path, &bytes)
                .with_context(|| format!("writing identity key {}", path.display()))?;
            Ok(keypair)
        }
        Err(err) => Err(err).with_context(|| format!("reading identity key {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_keeps_the_peer_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let first = load_or_create(&path).unwrap();
        let second = load_or_create(&path).unwrap();
        assert_eq!(first.public().to_peer_id(), second.public().to_peer_id());
    }

    #[test]
    fn a_garbage_key_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        fs::write(&path, b"not a key").unwrap();
        let err = load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("not a valid identity key"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"not a key");
    }
}
