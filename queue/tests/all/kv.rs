//! Unit tests of the KV map.

use queue::{ClientError, QueueError};

use crate::harness::{client, ready};

#[test]
fn put_get_delete() {
    let client = client();
    assert_eq!(ready(client.get("k")).unwrap(), None);
    let v1 = ready(client.put("k", "one")).unwrap();
    let got = ready(client.get("k")).unwrap().unwrap();
    assert_eq!((got.value.as_slice(), got.version), (&b"one"[..], v1));
    let v2 = ready(client.put("k", "two")).unwrap();
    assert!(v2 > v1);
    assert_eq!(ready(client.delete("k")).unwrap(), v2);
    assert_eq!(ready(client.delete("k")).unwrap(), 0);
    assert_eq!(ready(client.get("k")).unwrap(), None);
}

#[test]
fn cas_on_version() {
    let client = client();
    let v1 = ready(client.cas("k", 0, Some(b"a".to_vec()))).unwrap();
    assert!(v1 > 0);
    let Err(ClientError::Queue(QueueError::VersionMismatch {
        expected, current, ..
    })) = ready(client.cas("k", 0, Some(b"b".to_vec())))
    else {
        panic!("cas on an existing key with version 0 must fail");
    };
    assert_eq!((expected, current), (0, v1));
    let v2 = ready(client.cas("k", v1, Some(b"b".to_vec()))).unwrap();
    assert_eq!(ready(client.cas("k", v2, None)).unwrap(), 0);
    assert_eq!(ready(client.get("k")).unwrap(), None);
    // A re-created key gets a fresh version, never an old one (no ABA).
    let v3 = ready(client.put("k", "c")).unwrap();
    assert!(v3 > v2);
}

#[test]
fn key_and_value_limits() {
    let client = client();
    assert!(matches!(
        ready(client.put("", "a")),
        Err(ClientError::Queue(QueueError::Invalid { .. }))
    ));
    let long_key = vec![b'k'; queue::limits::KEY_BYTES_MAX + 1];
    assert!(matches!(
        ready(client.get(long_key)),
        Err(ClientError::Queue(QueueError::Invalid { .. }))
    ));
    let big = vec![0; queue::limits::VALUE_BYTES_MAX + 1];
    assert!(matches!(
        ready(client.put("k", big)),
        Err(ClientError::Queue(QueueError::Invalid { .. }))
    ));
}
