//! Checksummed frames: the unit of every write to a log segment.
//!
//! Each Ready is written as exactly one frame (one buffer, one write, one
//! `sync_data`), so a crash can tear at most the last frame of the last
//! segment. Layout, little-endian:
//!
//! ```text
//! magic u32 | payload_len u32 | crc32c(payload_len ++ payload) u32 | payload
//! ```
//!
//! The checksum covers the length too, so a flipped length bit cannot make
//! the reader skip or swallow frames unnoticed.

/// Marks the start of a frame ("RCW1"). A zero-filled or garbage tail never
/// starts with it, which makes torn tails easy to tell from frames.
pub(crate) const FRAME_MAGIC: u32 = 0x3157_4352;
/// Bytes before the payload.
pub(crate) const FRAME_HEADER_BYTES: usize = 12;
/// Largest payload a frame may carry. Bounds what a garbled length can make
/// the reader consider (a Ready is far smaller: entries are bounded by
/// `max_uncommitted_bytes`).
pub(crate) const FRAME_PAYLOAD_MAX_BYTES: usize = 1 << 30;

/// Appends one frame holding `payload` to `out`.
pub(crate) fn encode_frame(out: &mut Vec<u8>, payload: &[u8]) {
    assert!(
        payload.len() <= FRAME_PAYLOAD_MAX_BYTES,
        "frame payload too large"
    );
    let len = (payload.len() as u32).to_le_bytes();
    let mut crc = crc32c::crc32c(&len);
    crc = crc32c::crc32c_append(crc, payload);
    out.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
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

/// Tries to read one frame at `offset`; returns its payload range.
fn frame_at(bytes: &[u8], offset: usize) -> Result<(usize, usize), BadFrame> {
    let rest = &bytes[offset..];
    if rest.len() < FRAME_HEADER_BYTES {
        return Err(BadFrame::ShortHeader);
    }
    let word = |at: usize| u32::from_le_bytes([rest[at], rest[at + 1], rest[at + 2], rest[at + 3]]);
    if word(0) != FRAME_MAGIC {
        return Err(BadFrame::BadMagic);
    }
    let len = word(4) as usize;
    if len > FRAME_PAYLOAD_MAX_BYTES || len > rest.len() - FRAME_HEADER_BYTES {
        return Err(BadFrame::LengthBeyondEnd);
    }
    let start = FRAME_HEADER_BYTES;
    let mut crc = crc32c::crc32c(&rest[4..8]);
    crc = crc32c::crc32c_append(crc, &rest[start..start + len]);
    if crc != word(8) {
        return Err(BadFrame::ChecksumMismatch);
    }
    Ok((offset + start, offset + start + len))
}

/// The frames of one segment file.
#[derive(Debug)]
pub(crate) struct Scan<'a> {
    /// Frame payloads in file order.
    pub(crate) payloads: Vec<&'a [u8]>,
    /// Bytes of the file that hold whole, valid frames. Anything past it is
    /// a torn tail that recovery truncates.
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
/// synced nor acknowledged, so it is cut off. A bad frame anywhere else, or
/// followed by a valid frame, cannot come from a crash and is corruption.
///
/// # Errors
///
/// [`Corrupt`] with the offset of the damaged frame.
pub(crate) fn scan_frames(bytes: &[u8], is_last_segment: bool) -> Result<Scan<'_>, Corrupt> {
    let mut payloads = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        match frame_at(bytes, offset) {
            Ok((start, end)) => {
                payloads.push(&bytes[start..end]);
                offset = end;
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
                return Ok(Scan {
                    payloads,
                    valid_len_bytes: offset,
                });
            }
        }
    }
    Ok(Scan {
        payloads,
        valid_len_bytes: offset,
    })
}

/// The offset of the first valid frame at or after `from`, if any.
fn find_valid_frame(bytes: &[u8], from: usize) -> Option<usize> {
    let magic = FRAME_MAGIC.to_le_bytes();
    let mut at = from;
    while at + FRAME_HEADER_BYTES <= bytes.len() {
        let window = &bytes[at..];
        let next = window.windows(4).position(|w| w == magic)?;
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
        // Goal: every prefix of a write, and a garbled last frame, reads as
        // a torn tail. Method: cut and garble the last frame at each byte.
        let whole = frames(&[b"first frame", b"second frame"]);
        let first_len = FRAME_HEADER_BYTES + b"first frame".len();
        for cut in first_len..whole.len() {
            let scan = scan_frames(&whole[..cut], true).expect("torn tail is not corruption");
            assert_eq!(scan.payloads.len(), 1);
            assert_eq!(scan.valid_len_bytes, first_len);
            let mut garbled = whole.clone();
            garbled[cut] ^= 0x40;
            let scan = scan_frames(&garbled, true).expect("garbled last frame is a torn tail");
            assert_eq!(scan.valid_len_bytes, first_len);
        }
        // A zero-filled tail (the file grew but its data never landed).
        let mut zeros = whole.clone();
        zeros.extend_from_slice(&[0; 100]);
        assert_eq!(scan_frames(&zeros, true).expect("zeros").payloads.len(), 2);
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
        assert_eq!(error.offset, FRAME_HEADER_BYTES + b"first frame".len());
    }
}
