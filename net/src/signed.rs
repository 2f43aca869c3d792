//! Signed pubsub envelopes: who published a message, checked by this host
//! when it chooses to, not by gossipsub before the host sees it.
//!
//! gossipsub's own signing checks every message's signature in the
//! connection's handler, before the behaviour or this host looks at it. A
//! peer flooding heartbeats of hosts it made up (each validly signed by a
//! key of its own) then costs a signature check per fake, even for fakes the
//! view refuses at once by a counter. So gossipsub carries messages
//! anonymously, and each message's data is an envelope signed here: the
//! host first applies its cheap bounds (the view's per-relay candidate
//! count) to what an envelope claims, and checks the signature only of what
//! it would keep. The signature covers the topic, so a message cannot be
//! replayed on another topic.
//!
//! Layout (integers big-endian):
//!
//! ```text
//! version u8 = 1 | from_len u8 | from (peer id bytes) | seqno u64
//!   | signature_len u8 | signature | payload
//! ```
//!
//! The signed bytes are [`DOMAIN`], the topic's length (u32) and the topic,
//! then the envelope from `from_len` through `seqno`, then the payload.
//!
//! `seqno` is the seal time, in microseconds since the Unix epoch (raised
//! by one where two seals fall in the same microsecond). gossipsub drops a
//! copy of a message it still remembers; [`Opened::check_age`] refuses one
//! sealed too long ago for it to be remembered, so a recorded envelope
//! cannot be replayed later. Hosts' clocks must agree to within
//! `PUBSUB_ENVELOPE_SKEW_MS_MAX`.

use libp2p::identity::{Keypair, PublicKey};
use libp2p::PeerId;

use std::time::{SystemTime, UNIX_EPOCH};

use crate::limits::{
    PUBSUB_ENVELOPE_FROM_BYTES_MAX as FROM_BYTES_MAX,
    PUBSUB_ENVELOPE_SIGNATURE_BYTES_MAX as SIGNATURE_BYTES_MAX,
    PUBSUB_ENVELOPE_SKEW_MS_MAX as SKEW_MS_MAX,
};

/// Separates these signatures from any other use of a host's key.
const DOMAIN: &[u8] = b"ww-pubsub-envelope/1\0";

const VERSION: u8 = 1;

/// Most bytes an envelope adds to its payload.
pub const ENVELOPE_OVERHEAD_BYTES_MAX: usize = 1 + 1 + FROM_BYTES_MAX + 8 + 1 + SIGNATURE_BYTES_MAX;

/// Seals `payload` for `topic`, signed by `key`. `seqno` makes each
/// publication distinct (gossipsub names a message by a hash of its bytes,
/// and drops a second one with the same name), and is its seal time in µs
/// since the Unix epoch ([`Opened::check_age`]).
///
/// # Errors
///
/// When `key` cannot sign (Ed25519 keys always can).
pub fn seal(key: &Keypair, topic: &str, seqno: u64, payload: &[u8]) -> Result<Vec<u8>, String> {
    let from = key.public().to_peer_id().to_bytes();
    let from_len = u8::try_from(from.len()).map_err(|_| "peer id too long".to_owned())?;
    let mut envelope = Vec::with_capacity(payload.len() + ENVELOPE_OVERHEAD_BYTES_MAX);
    envelope.push(VERSION);
    envelope.push(from_len);
    envelope.extend_from_slice(&from);
    envelope.extend_from_slice(&seqno.to_be_bytes());
    let signature = key
        .sign(&signed_bytes(topic, &envelope[1..], payload))
        .map_err(|err| format!("signing a pubsub envelope: {err}"))?;
    let signature_len =
        u8::try_from(signature.len()).map_err(|_| "signature too long".to_owned())?;
    envelope.push(signature_len);
    envelope.extend_from_slice(&signature);
    envelope.extend_from_slice(payload);
    Ok(envelope)
}

/// The wall clock, in µs since the Unix epoch (0 before it).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

/// A host's sealer: its key and the least next sequence number.
pub struct Sealer {
    key: Keypair,
    next_seqno: u64,
}

impl Sealer {
    /// A sealer for `key`.
    pub fn new(key: Keypair) -> Self {
        Self { key, next_seqno: 0 }
    }

    /// Seals `payload` for `topic` (see [`seal`]), with the clock's time as
    /// its sequence number, or one past the last one if the clock has not
    /// moved on since (or went back): each of this host's envelopes is
    /// distinct, and one sealed after a restart is not a copy of one sealed
    /// before.
    ///
    /// # Errors
    ///
    /// As [`seal`].
    pub fn seal(&mut self, topic: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
        let seqno = now_us().max(self.next_seqno);
        self.next_seqno = seqno.saturating_add(1);
        seal(&self.key, topic, seqno, payload)
    }
}

fn signed_bytes(topic: &str, header: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut signed =
        Vec::with_capacity(DOMAIN.len() + 4 + topic.len() + header.len() + payload.len());
    signed.extend_from_slice(DOMAIN);
    signed.extend_from_slice(&(topic.len() as u32).to_be_bytes());
    signed.extend_from_slice(topic.as_bytes());
    signed.extend_from_slice(header);
    signed.extend_from_slice(payload);
    signed
}

/// An envelope parsed but not yet checked: [`Opened::from`] and
/// [`Opened::payload`] are only claims until [`Opened::verify`] passes.
#[derive(Debug)]
pub struct Opened<'a> {
    from: PeerId,
    seqno: u64,
    /// `from_len` through `seqno`, as signed.
    header: &'a [u8],
    signature: &'a [u8],
    payload: &'a [u8],
}

/// Parses an envelope, without checking its signature (cheap: no
/// cryptography, no copy of the payload).
///
/// # Errors
///
/// A readable reason when the bytes are not an envelope.
pub fn open(bytes: &[u8]) -> Result<Opened<'_>, String> {
    let mut reader = Reader(bytes);
    if reader.take(1)? != [VERSION] {
        return Err("not a version 1 pubsub envelope".to_owned());
    }
    let header_start = bytes.len() - reader.0.len();
    let from_len = usize::from(reader.take(1)?[0]);
    if from_len > FROM_BYTES_MAX {
        return Err(format!("a peer id of {from_len} bytes"));
    }
    let from = PeerId::from_bytes(reader.take(from_len)?)
        .map_err(|err| format!("envelope peer id: {err}"))?;
    let mut seqno = [0u8; 8];
    seqno.copy_from_slice(reader.take(8)?);
    let seqno = u64::from_be_bytes(seqno);
    let header = &bytes[header_start..bytes.len() - reader.0.len()];
    let signature_len = usize::from(reader.take(1)?[0]);
    if signature_len > SIGNATURE_BYTES_MAX {
        return Err(format!("a signature of {signature_len} bytes"));
    }
    let signature = reader.take(signature_len)?;
    Ok(Opened {
        from,
        seqno,
        header,
        signature,
        payload: reader.0,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], String> {
        if self.0.len() < count {
            return Err("a truncated pubsub envelope".to_owned());
        }
        let (taken, rest) = self.0.split_at(count);
        self.0 = rest;
        Ok(taken)
    }
}

impl Opened<'_> {
    /// The publisher the envelope claims.
    pub fn from(&self) -> PeerId {
        self.from
    }

    /// Refuses an envelope whose seal time (its sequence number) lies more
    /// than `PUBSUB_ENVELOPE_SKEW_MS_MAX` from `now_us` either way. Cheap:
    /// check it before [`Opened::verify`]. A forged time fails `verify`.
    ///
    /// # Errors
    ///
    /// A readable reason naming the age and the bound.
    pub fn check_age(&self, now_us: u64) -> Result<(), String> {
        let skew_us = SKEW_MS_MAX * 1_000;
        if self.seqno.abs_diff(now_us) <= skew_us {
            return Ok(());
        }
        let (ms, when) = if self.seqno < now_us {
            ((now_us - self.seqno) / 1_000, "ago")
        } else {
            ((self.seqno - now_us) / 1_000, "ahead of this host's clock")
        };
        Err(format!(
            "a pubsub envelope of {} sealed {ms} ms {when}, past PUBSUB_ENVELOPE_SKEW_MS_MAX \
             ({SKEW_MS_MAX} ms): a replay, or clocks that disagree",
            self.from
        ))
    }

    /// The payload, as the envelope carries it.
    pub fn payload(&self) -> &[u8] {
        self.payload
    }

    /// Checks that [`Opened::from`] signed this payload for `topic`.
    ///
    /// # Errors
    ///
    /// A readable reason when the peer id does not carry its public key or
    /// the signature does not match.
    pub fn verify(&self, topic: &str) -> Result<(), String> {
        let key = public_key(&self.from)?;
        if key.verify(
            &signed_bytes(topic, self.header, self.payload),
            self.signature,
        ) {
            Ok(())
        } else {
            Err(format!("a pubsub envelope not signed by {}", self.from))
        }
    }
}

/// The public key inlined in `peer` (an identity multihash, as for every
/// Ed25519 peer id).
fn public_key(peer: &PeerId) -> Result<PublicKey, String> {
    // A multihash: code (varint; identity is 0), digest length (varint;
    // a protobuf-encoded key is under 128 bytes), digest.
    let bytes = peer.to_bytes();
    match bytes.as_slice() {
        [0, len, digest @ ..] if usize::from(*len) == digest.len() => {
            PublicKey::try_decode_protobuf(digest)
                .map_err(|err| format!("peer id {peer} carries no public key: {err}"))
        }
        _ => Err(format!("peer id {peer} does not inline its public key")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "t";

    #[test]
    fn a_sealed_envelope_opens_and_verifies_for_its_topic_only() {
        let key = Keypair::generate_ed25519();
        let envelope = seal(&key, TOPIC, 7, b"hello").unwrap();
        assert!(envelope.len() <= 5 + ENVELOPE_OVERHEAD_BYTES_MAX);
        let opened = open(&envelope).unwrap();
        assert_eq!(opened.from(), key.public().to_peer_id());
        assert_eq!(opened.payload(), b"hello");
        opened.verify(TOPIC).unwrap();
        assert!(opened.verify("another topic").is_err());
    }

    #[test]
    fn a_changed_byte_or_a_borrowed_name_fails_verification() {
        let key = Keypair::generate_ed25519();
        let envelope = seal(&key, TOPIC, 7, b"hello").unwrap();
        // Every byte flipped: either it no longer parses, or it no longer
        // verifies. Nothing panics.
        for at in 0..envelope.len() {
            let mut garbled = envelope.clone();
            garbled[at] ^= 0x01;
            if let Ok(opened) = open(&garbled) {
                assert!(opened.verify(TOPIC).is_err(), "byte {at} flipped");
            }
        }
        // Another peer's name on this signature.
        let other = Keypair::generate_ed25519();
        let mut forged = seal(&other, TOPIC, 7, b"hello").unwrap();
        let from = key.public().to_peer_id().to_bytes();
        forged[2..2 + from.len()].copy_from_slice(&from);
        assert!(open(&forged).unwrap().verify(TOPIC).is_err());
    }

    #[test]
    fn truncated_or_oversized_fields_are_refused_without_panicking() {
        let key = Keypair::generate_ed25519();
        let envelope = seal(&key, TOPIC, 7, b"").unwrap();
        // Every prefix short of the signature's end is truncated.
        for len in 0..envelope.len() {
            assert!(open(&envelope[..len]).is_err(), "prefix of {len} bytes");
        }
        assert!(open(&[VERSION, 200]).unwrap_err().contains("200 bytes"));
        assert!(open(&[2]).is_err());
    }

    #[test]
    fn an_envelope_sealed_outside_the_clock_window_is_refused() {
        let key = Keypair::generate_ed25519();
        let now = 1_700_000_000_000_000;
        let skew_us = SKEW_MS_MAX * 1_000;
        for (sealed_at, fresh) in [
            (now, true),
            (now - skew_us, true),
            (now + skew_us, true),
            (now - skew_us - 1, false),
            (now + skew_us + 1, false),
            (1, false),
            (u64::MAX, false),
        ] {
            let envelope = seal(&key, TOPIC, sealed_at, b"x").unwrap();
            let opened = open(&envelope).unwrap();
            assert_eq!(
                opened.check_age(now).is_ok(),
                fresh,
                "sealed at {sealed_at}"
            );
        }
        let stale = seal(&key, TOPIC, now - 60_000_000, b"x").unwrap();
        let reason = open(&stale).unwrap().check_age(now).unwrap_err();
        assert!(reason.contains("sealed 60000 ms ago"), "{reason}");
    }

    #[test]
    fn a_sealer_stamps_the_clock_and_never_repeats() {
        let mut sealer = Sealer::new(Keypair::generate_ed25519());
        let before = now_us();
        let seqnos: Vec<u64> = (0..1_000)
            .map(|_| open(&sealer.seal(TOPIC, b"x").unwrap()).unwrap().seqno)
            .collect();
        let after = now_us();
        assert!(seqnos.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(seqnos[0] >= before && seqnos[999] <= after + 1_000);
        let sealed_now = sealer.seal(TOPIC, b"x").unwrap();
        assert!(open(&sealed_now).unwrap().check_age(now_us()).is_ok());
    }
}
