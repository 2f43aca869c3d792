//! Checksummed frames: the unit of every write to a log segment.
//!
//! Each Ready is written as exactly one frame (one buffer, one write, one
//! `sync_data`), so a crash can tear at most the last frame of the last
//! segment. Layout, little-endian:
//!
//! ```text
//! magic u32 | payload_len u32 | crc32c(payload_len ++ payload) u32 | payload | payload_len u32 | crc u32
//! ```
//!
//! The checksum covers the length too, so a flipped length bit cannot make
//! the reader skip or swallow frames unnoticed.
//!
//! The trailer repeats the length and checksum. It is never needed to read
//! a good frame; it tells a torn write from a bit flip. A crash keeps a
//! prefix of an unsynced write, possibly garbled at its end, so a torn
//! frame always lacks an intact trailer. A frame whose trailer checks out
//! (it agrees with the header, or it matches the payload) was written
//! whole, so a checksum failure there is damage to stored data, which
//! recovery must not cut.
//!
//! Frames written before the trailer existed (magic "RCW1") are still read.

/// Marks the start of a frame ("RCW2"). A zero-filled or garbage tail never
/// starts with it, which makes torn tails easy to tell from frames.
pub(crate) const FRAME_MAGIC: u32 = 0x3257_4352;
/// The first format's magic ("RCW1"): no trailer. Read, never written.
const FRAME_MAGIC_V1: u32 = 0x3157_4352;
/// Bytes before the payload.
pub(crate) const FRAME_HEADER_BYTES: usize = 12;
/// Bytes after the payload (a frame with [`FRAME_MAGIC`]).
pub(crate) const FRAME_TRAILER_BYTES: usize = 8;
/// Largest payload a frame may carry. Bounds what a garbled length can make
/// the reader consider (a Ready is far smaller: entries are bounded by
/// `max_uncommitted_bytes`).
pub(crate) const FRAME_PAYLOAD_MAX_BYTES: usize = 1 << 30;

fn frame_crc(len: u32, payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&len.to_le_bytes());
    crc32c::crc32c_append(crc, payload)
}

/// Appends one frame holding `payload` to `out`.
pub(crate) fn encode_frame(out: &mut Vec<u8>, payload: &[u8]) {
    assert!(
        payload.len() <= FRAME_PAYLOAD_MAX_BYTES,
        "frame payload too large"
    );
    let len = payload.len() as u32;
    let crc = frame_crc(len, payload);
    out.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Why the bytes at some offset are not a frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BadFrame {
    ShortHeader,
    BadMagic,
    LengthBeyondEnd,
    ChecksumMismatch,
}

impl BadFrame {
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            BadFrame::ShortHeader => "incomplete frame header",
            BadFrame::BadMagic => "no frame magic",
            BadFrame::LengthBeyondEnd => "frame length runs past the end of the file",
            BadFrame::ChecksumMismatch => "frame checksum mismatch",
        }
    }
}

fn word(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// One frame found in a file: its payload range and where it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Found {
    payload_start: usize,
    payload_end: usize,
    end: usize,
}

/// Tries to read one frame at `offset`.
fn frame_at(bytes: &[u8], offset: usize) -> Result<Found, BadFrame> {
    let rest = &bytes[offset..];
    if rest.len() < FRAME_HEADER_BYTES {
        return Err(BadFrame::ShortHeader);
    }
    let trailer_bytes = match word(rest, 0) {
        FRAME_MAGIC => FRAME_TRAILER_BYTES,
        FRAME_MAGIC_V1 => 0,
        _ => return Err(BadFrame::BadMagic),
    };
    let len = word(rest, 4) as usize;
    if len > FRAME_PAYLOAD_MAX_BYTES || len + trailer_bytes > rest.len() - FRAME_HEADER_BYTES {
        return Err(BadFrame::LengthBeyondEnd);
    }
    let start = FRAME_HEADER_BYTES;
    if frame_crc(len as u32, &rest[start..start + len]) != word(rest, 8) {
        return Err(BadFrame::ChecksumMismatch);
    }
    Ok(Found {
        payload_start: offset + start,
        payload_end: offset + start + len,
        end: offset + start + len + trailer_bytes,
    })
}

/// Whether the bad frame at `offset` was nevertheless written whole: its
/// trailer is intact and agrees with the header (the damage is in the
/// payload), or it matches the payload (the damage is in the header). A
/// torn write cannot produce either: it loses or garbles the trailer.
///
/// Candidate trailer positions are the header's length and that length
/// with any one bit flipped, so a flipped length bit is recognized too.
fn written_whole(bytes: &[u8], offset: usize) -> bool {
    let rest = &bytes[offset..];
    if rest.len() < FRAME_HEADER_BYTES + FRAME_TRAILER_BYTES {
        return false;
    }
    let (magic, header_len, header_crc) = (word(rest, 0), word(rest, 4), word(rest, 8));
    let candidates = std::iter::once(header_len).chain((0..32).map(|bit| header_len ^ (1 << bit)));
    for len in candidates {
        let at = FRAME_HEADER_BYTES + len as usize;
        if len as usize > FRAME_PAYLOAD_MAX_BYTES || at + FRAME_TRAILER_BYTES > rest.len() {
            continue;
        }
        let (trailer_len, trailer_crc) = (word(rest, at), word(rest, at + 4));
        if trailer_len != len {
            continue;
        }
        let agrees = magic == FRAME_MAGIC && len == header_len && trailer_crc == header_crc;
        if agrees || frame_crc(len, &rest[FRAME_HEADER_BYTES..at]) == trailer_crc {
            return true;
        }
    }
    false
}

/// The frames of one segment file.
#[derive(Debug)]
pub(crate) struct Scan<'a> {
    /// Frame payloads in file order.
    pub(crate) payloads: Vec<&'a [u8]>,
    /// The offset of each frame, in the same order.
    pub(crate) offsets: Vec<usize>,
    /// Bytes of the file that hold whole, valid frames. Anything past it is
    /// a torn tail that recovery cuts.
    pub(crate) valid_len_bytes: usize,
}

/// A frame that is damaged where a crash cannot have torn it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Corrupt {
    pub(crate) offset: usize,
    pub(crate) reason: String,
}

/// Reads every frame of a segment.
///
/// In the last segment, a bad frame followed by nothing valid is a torn
/// tail: a crash interrupted the last write, whose frame was therefore never
/// synced nor acknowledged, so it is cut off. A bad frame anywhere else,
/// followed by a valid frame, or written whole (see [`written_whole`])
/// cannot come from a crash and is corruption.
///
/// # Errors
///
/// [`Corrupt`] with the offset of the damaged frame.
pub(crate) fn scan_frames(bytes: &[u8], is_last_segment: bool) -> Result<Scan<'_>, Corrupt> {
    let mut payloads = Vec::new();
    let mut offsets = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        match frame_at(bytes, offset) {
            Ok(found) => {
                payloads.push(&bytes[found.payload_start..found.payload_end]);
                offsets.push(offset);
                offset = found.end;
            }
            Err(bad) => {
                if !is_last_segment {
                    return Err(Corrupt {
                        offset,
                        reason: bad.describe().to_owned(),
                    });
                }
                if let Some(later) = find_valid_frame(bytes, offset + 1) {
                    return Err(Corrupt {
                        offset,
                        reason: format!(
                            "{} but a valid frame follows at offset {later}, so this is not a torn write",
                            bad.describe()
                        ),
                    });
                }
                if written_whole(bytes, offset) {
                    return Err(Corrupt {
                        offset,
                        reason: format!(
                            "{} in the last frame, but its trailer shows the frame was written whole: stored data was damaged (a bit flip), this is not a torn write",
                            bad.describe()
                        ),
                    });
                }
                return Ok(Scan {
                    payloads,
                    offsets,
                    valid_len_bytes: offset,
                });
            }
        }
    }
    Ok(Scan {
        payloads,
        offsets,
        valid_len_bytes: offset,
    })
}

/// The offset of the first valid frame at or after `from`, if any.
fn find_valid_frame(bytes: &[u8], from: usize) -> Option<usize> {
    let magics = [FRAME_MAGIC.to_le_bytes(), FRAME_MAGIC_V1.to_le_bytes()];
    let mut at = from;
    while at + FRAME_HEADER_BYTES <= bytes.len() {
        let window = &bytes[at..];
        let next = window
            .windows(4)
            .position(|w| magics.iter().any(|m| w == m))?;
        at += next;
        if frame_at(bytes, at).is_ok() {
            return Some(at);
        }
        at += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode_frame(&mut out, p);
        }
        out
    }

    #[test]
    fn round_trip() {
        let bytes = frames(&[b"one", b"", b"three"]);
        let scan = scan_frames(&bytes, false).expect("valid");
        assert_eq!(scan.payloads, vec![&b"one"[..], b"", b"three"]);
        assert_eq!(scan.valid_len_bytes, bytes.len());
    }

    #[test]
    fn torn_tail_of_last_segment_is_cut() {
        // Goal: every prefix of a write, garbled at its end as a crash may
        // leave it, reads as a torn tail. Method: cut the last frame at each
        // byte and garble the last 1..=16 bytes of what is left.
        let whole = frames(&[b"first frame", b"second frame"]);
        let first_len = FRAME_HEADER_BYTES + b"first frame".len() + FRAME_TRAILER_BYTES;
        for cut in first_len + 1..=whole.len() {
            if cut < whole.len() {
                let scan = scan_frames(&whole[..cut], true).expect("torn tail is not corruption");
                assert_eq!(scan.payloads.len(), 1);
                assert_eq!(scan.valid_len_bytes, first_len);
            }
            for garbled_count in 1..=16.min(cut - first_len) {
                let mut garbled = whole[..cut].to_vec();
                for byte in &mut garbled[cut - garbled_count..] {
                    *byte ^= 0x40;
                }
                let scan = scan_frames(&garbled, true).expect("garbled end is a torn tail");
                let only_trailer = cut == whole.len() && garbled_count <= FRAME_TRAILER_BYTES;
                // A garbled trailer alone leaves the payload intact: the
                // frame is whole and kept.
                let expected = if only_trailer { 2 } else { 1 };
                assert_eq!(
                    scan.payloads.len(),
                    expected,
                    "cut {cut} garbled {garbled_count}"
                );
            }
        }
        // A zero-filled tail (the file grew but its data never landed).
        let mut zeros = whole.clone();
        zeros.extend_from_slice(&[0; 100]);
        assert_eq!(scan_frames(&zeros, true).expect("zeros").payloads.len(), 2);
    }

    #[test]
    fn a_bit_flip_in_a_whole_last_frame_is_corruption() {
        // Goal: a frame that was written whole (and so possibly synced and
        // acknowledged) is never cut as a torn tail. Method: flip every
        // bit of the last frame's header and payload; each must be
        // corruption. A flip in its trailer leaves the frame readable.
        let whole = frames(&[b"first frame", b"second frame"]);
        let first_len = FRAME_HEADER_BYTES + b"first frame".len() + FRAME_TRAILER_BYTES;
        let trailer_at = whole.len() - FRAME_TRAILER_BYTES;
        for at in first_len..whole.len() {
            for bit in 0..8 {
                let mut flipped = whole.clone();
                flipped[at] ^= 1 << bit;
                let result = scan_frames(&flipped, true);
                if at >= trailer_at {
                    assert_eq!(result.expect("trailer flip").payloads.len(), 2);
                    continue;
                }
                let error = result.expect_err("a flip in a whole frame is corruption");
                assert_eq!(error.offset, first_len, "byte {at} bit {bit}");
                assert!(error.reason.contains("written whole"), "{}", error.reason);
            }
        }
        // The same frame followed by a torn (unsynced) tail.
        let mut followed = whole.clone();
        followed[first_len + FRAME_HEADER_BYTES + 3] ^= 0x08;
        followed.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
        followed.extend_from_slice(&[9, 9, 9]);
        assert!(scan_frames(&followed, true).is_err());
    }

    #[test]
    fn first_format_frames_are_read() {
        let mut bytes = Vec::new();
        for payload in [&b"old one"[..], b"old two"] {
            let len = payload.len() as u32;
            bytes.extend_from_slice(&FRAME_MAGIC_V1.to_le_bytes());
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(&frame_crc(len, payload).to_le_bytes());
            bytes.extend_from_slice(payload);
        }
        encode_frame(&mut bytes, b"new");
        let scan = scan_frames(&bytes, false).expect("mixed formats");
        assert_eq!(scan.payloads, vec![&b"old one"[..], b"old two", b"new"]);
    }

    #[test]
    fn damage_elsewhere_is_corruption() {
        let mut bytes = frames(&[b"first frame", b"second frame"]);
        bytes[FRAME_HEADER_BYTES + 2] ^= 1;
        // Middle of the last segment: a valid frame follows.
        let error = scan_frames(&bytes, true).expect_err("followed by a valid frame");
        assert_eq!(error.offset, 0);
        assert!(
            error.reason.contains("valid frame follows"),
            "{}",
            error.reason
        );
        // Any damage in an earlier segment.
        let whole = frames(&[b"first frame", b"second frame"]);
        let error = scan_frames(&whole[..whole.len() - 1], false).expect_err("not last");
        assert_eq!(
            error.offset,
            FRAME_HEADER_BYTES + b"first frame".len() + FRAME_TRAILER_BYTES
        );
    }
}
