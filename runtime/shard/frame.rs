//! The wire format between a shard and its supervisor: length-prefixed
//! frames with a bounded size.
//!
//! ```text
//! +----------------+--------+----------------+------------------+
//! | length: u32 LE | kind   | peer: u32 LE   | payload          |
//! |  (of the rest) | 1 byte | shard id or ~0 | length - 5 bytes |
//! +----------------+--------+----------------+------------------+
//! ```
//!
//! `peer` is the destination on the way up (shard to supervisor) and the
//! source on the way down; [`SUPERVISOR`] (`u32::MAX`) names the supervisor.
//! A stream socket has no message boundaries, so the length comes first; it
//! is checked against the receiver's maximum **before** anything is
//! allocated, so a shard that lies about a length costs the supervisor at
//! most one maximum-sized buffer, never gigabytes.
//!
//! Decoding is total: every byte string either decodes, is an orderly end
//! of stream, or is one [`FrameError`]; nothing here panics on input (the
//! unit tests below feed it many thousands of random and garbled streams).
//!
//! Rejected: a serialisation crate (serde + bincode). Shards exchange opaque
//! bytes; the envelope is three fields, and hand-written decoding keeps the
//! "never panics on hostile input" argument on one screen.

use std::fmt;
use std::io::{self, Read, Write};

/// The `peer` value that means "the supervisor" rather than a shard id.
pub(crate) const SUPERVISOR: u32 = u32::MAX;

/// Bytes of `kind` + `peer`, counted in `length`.
pub(crate) const ENVELOPE: usize = 5;

/// Bytes before the payload: `length`, `kind`, `peer`.
pub(crate) const HEADER: usize = 4 + ENVELOPE;

/// Payloads below this are copied behind their header and written with one
/// `write` call rather than two. A guess: below a page the copy is cheaper
/// than the second system call.
const COALESCE_BELOW: usize = 4096;

/// What a frame is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Shard to supervisor: route `payload` to shard `peer` (or to the
    /// supervisor itself when `peer` is [`SUPERVISOR`]).
    Send = 1,
    /// Supervisor to shard: `payload` from `peer`.
    Deliver = 2,
    /// Supervisor to shard: a message you sent to `peer` was not delivered;
    /// `payload` is one byte, the [`Undeliverable`](super::Undeliverable) code.
    Undeliverable = 3,
    /// Supervisor to shard: shard `peer` went down (its incarnation ended).
    ShardDown = 4,
    /// Shard to supervisor: "my runtime still schedules fibers" (no payload,
    /// `peer` is [`SUPERVISOR`]).
    Heartbeat = 5,
}

/// Which side is reading, so which kinds it accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// The supervisor reading what a shard wrote: [`Kind::Send`] and
    /// [`Kind::Heartbeat`].
    FromShard,
    /// A shard reading what the supervisor wrote: `Deliver`, `Undeliverable`
    /// and `ShardDown`.
    FromSupervisor,
}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    /// What it is for.
    pub(crate) kind: Kind,
    /// Destination (upwards) or source (downwards).
    pub(crate) peer: u32,
    /// The bytes carried.
    pub(crate) payload: Vec<u8>,
}

/// Why a byte stream is not a valid sequence of frames.
#[derive(Debug)]
pub enum FrameError {
    /// The stream ended inside a frame.
    Truncated {
        /// Bytes the frame (header included) should have had.
        expected: usize,
        /// Bytes that arrived before the end of the stream.
        received: usize,
    },
    /// The length field exceeds the receiver's maximum.
    Oversized {
        /// The payload length announced.
        length: usize,
        /// The largest payload accepted.
        max: usize,
    },
    /// A well-delimited frame whose contents make no sense (a length too
    /// small for the envelope, an unknown or misdirected kind, a bad code).
    Malformed(&'static str),
    /// The socket itself failed.
    Io(io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Truncated { expected, received } => write!(
                f,
                "truncated frame: stream ended after {received} of {expected} bytes"
            ),
            FrameError::Oversized { length, max } => {
                write!(
                    f,
                    "oversized frame: payload of {length} bytes, maximum {max}"
                )
            }
            FrameError::Malformed(what) => write!(f, "malformed frame: {what}"),
            FrameError::Io(error) => write!(f, "socket error: {error}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// The [`HEADER`] bytes for a frame of `kind` to or from `peer` carrying
/// `payload_length` bytes. The caller has checked `payload_length` against
/// the maximum (a frame the receiver would reject is never written).
fn header(kind: Kind, peer: u32, payload_length: usize) -> [u8; HEADER] {
    let length = u32::try_from(payload_length + ENVELOPE).expect("payload checked against max");
    let mut bytes = [0u8; HEADER];
    bytes[..4].copy_from_slice(&length.to_le_bytes());
    bytes[4] = kind as u8;
    bytes[5..].copy_from_slice(&peer.to_le_bytes());
    bytes
}

/// Writes one frame: header and payload in one `write` when the payload is
/// below [`COALESCE_BELOW`], else in two. The caller has checked `payload`
/// against the maximum, and serialises writers so frames never interleave.
pub(crate) fn write_frame(
    writer: &mut impl Write,
    kind: Kind,
    peer: u32,
    payload: &[u8],
) -> io::Result<()> {
    let header = header(kind, peer, payload.len());
    if payload.len() < COALESCE_BELOW {
        let mut whole = Vec::with_capacity(HEADER + payload.len());
        whole.extend_from_slice(&header);
        whole.extend_from_slice(payload);
        writer.write_all(&whole)
    } else {
        writer.write_all(&header)?;
        writer.write_all(payload)
    }
}

/// Reads one frame. `Ok(None)` is an orderly end of stream at a frame
/// boundary (the other side closed its end). `max_payload` bounds the
/// allocation.
pub(crate) fn read_frame(
    reader: &mut impl Read,
    direction: Direction,
    max_payload: usize,
) -> Result<Option<Frame>, FrameError> {
    // The length first, judged before anything else is read: a shard that
    // announces an oversized frame and then sends nothing is caught at once.
    let mut head = [0u8; HEADER];
    let got = read_full(reader, &mut head[..4])?;
    if got == 0 {
        return Ok(None);
    }
    if got < 4 {
        return Err(FrameError::Truncated {
            expected: HEADER,
            received: got,
        });
    }
    let length = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if length < ENVELOPE {
        return Err(FrameError::Malformed("length shorter than the envelope"));
    }
    if length - ENVELOPE > max_payload {
        return Err(FrameError::Oversized {
            length: length - ENVELOPE,
            max: max_payload,
        });
    }
    let got = 4 + read_full(reader, &mut head[4..])?;
    if got < HEADER {
        return Err(FrameError::Truncated {
            expected: 4 + length,
            received: got,
        });
    }
    let kind = match (head[4], direction) {
        (1, Direction::FromShard) => Kind::Send,
        (2, Direction::FromSupervisor) => Kind::Deliver,
        (3, Direction::FromSupervisor) => Kind::Undeliverable,
        (4, Direction::FromSupervisor) => Kind::ShardDown,
        (5, Direction::FromShard) => Kind::Heartbeat,
        (1..=5, _) => return Err(FrameError::Malformed("frame kind sent the wrong way")),
        _ => return Err(FrameError::Malformed("unknown frame kind")),
    };
    let peer = u32::from_le_bytes([head[5], head[6], head[7], head[8]]);
    let mut payload = vec![0u8; length - ENVELOPE];
    let got_payload = read_full(reader, &mut payload)?;
    if got_payload < payload.len() {
        return Err(FrameError::Truncated {
            expected: HEADER + payload.len(),
            received: HEADER + got_payload,
        });
    }
    let frame_ok = match kind {
        Kind::Undeliverable => payload.len() == 1 && matches!(payload[0], 1 | 2),
        Kind::ShardDown => payload.is_empty() && peer != SUPERVISOR,
        Kind::Heartbeat => payload.is_empty() && peer == SUPERVISOR,
        Kind::Send | Kind::Deliver => true,
    };
    if !frame_ok {
        return Err(FrameError::Malformed("bad payload for the frame kind"));
    }
    Ok(Some(Frame {
        kind,
        peer,
        payload,
    }))
}

/// Reads until `buffer` is full or the stream ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> Result<usize, FrameError> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(count) => filled += count,
            // A Unix socket reports ECONNRESET, not end of stream, when the
            // peer closed while bytes we sent it were still unread (a shard
            // that died with notices in its queue). Either way the peer is
            // gone: treat it as the end of the stream.
            Err(error) if error.kind() == io::ErrorKind::ConnectionReset => break,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(FrameError::Io(error)),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(kind: Kind, peer: u32, payload: &[u8]) -> Vec<u8> {
        let mut bytes = header(kind, peer, payload.len()).to_vec();
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn round_trip_and_orderly_end() {
        let mut stream = encode(Kind::Send, 3, b"hello");
        stream.extend(encode(Kind::Send, SUPERVISOR, b""));
        let mut reader = &stream[..];
        let first = read_frame(&mut reader, Direction::FromShard, 16)
            .unwrap()
            .unwrap();
        assert_eq!(
            (first.kind, first.peer, &first.payload[..]),
            (Kind::Send, 3, &b"hello"[..])
        );
        let second = read_frame(&mut reader, Direction::FromShard, 16)
            .unwrap()
            .unwrap();
        assert_eq!((second.peer, second.payload.len()), (SUPERVISOR, 0));
        assert!(read_frame(&mut reader, Direction::FromShard, 16)
            .unwrap()
            .is_none());
    }

    #[test]
    fn rejects_each_kind_of_bad_input() {
        let oversized = encode(Kind::Send, 0, &[0; 17]);
        assert!(matches!(
            read_frame(&mut &oversized[..], Direction::FromShard, 16),
            Err(FrameError::Oversized {
                length: 17,
                max: 16
            })
        ));
        let whole = encode(Kind::Send, 0, b"abcdef");
        assert!(matches!(
            read_frame(&mut &whole[..whole.len() - 2], Direction::FromShard, 16),
            Err(FrameError::Truncated {
                expected: 15,
                received: 13
            })
        ));
        assert!(matches!(
            read_frame(&mut &whole[..2], Direction::FromShard, 16),
            Err(FrameError::Truncated { .. })
        ));
        let mut unknown = whole.clone();
        unknown[4] = 9;
        assert!(matches!(
            read_frame(&mut &unknown[..], Direction::FromShard, 16),
            Err(FrameError::Malformed(_))
        ));
        let misdirected = encode(Kind::Deliver, 0, b"x");
        assert!(matches!(
            read_frame(&mut &misdirected[..], Direction::FromShard, 16),
            Err(FrameError::Malformed(_))
        ));
        let short = [2u8, 0, 0, 0, 1, 0];
        assert!(matches!(
            read_frame(&mut &short[..], Direction::FromShard, 16),
            Err(FrameError::Malformed(_))
        ));
        let bad_code = encode(Kind::Undeliverable, 1, &[7]);
        assert!(matches!(
            read_frame(&mut &bad_code[..], Direction::FromSupervisor, 16),
            Err(FrameError::Malformed(_))
        ));
    }

    /// 10,000 random streams and 10,000 garbled valid ones, both directions:
    /// every read ends in a frame, an orderly end or an error, never a panic,
    /// and never allocates past the maximum.
    #[test]
    fn random_and_garbled_streams_never_panic() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            // xorshift64*: deterministic, so a failure reproduces.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let mut outcomes = [0usize; 3];
        for round in 0..20_000 {
            let mut bytes = if round % 2 == 0 {
                let length = (next() % 64) as usize;
                (0..length).map(|_| next() as u8).collect::<Vec<u8>>()
            } else {
                let payload: Vec<u8> = (0..next() % 40).map(|_| next() as u8).collect();
                let kind = [
                    Kind::Send,
                    Kind::Deliver,
                    Kind::Undeliverable,
                    Kind::ShardDown,
                ][(next() % 4) as usize];
                let mut valid = encode(kind, (next() % 8) as u32, &payload);
                for _ in 0..1 + next() % 3 {
                    let at = (next() as usize) % valid.len();
                    valid[at] = next() as u8;
                }
                valid.truncate(valid.len() - (next() as usize % 3).min(valid.len()));
                valid
            };
            bytes.extend((0..next() % 4).map(|_| next() as u8));
            let direction = if next() % 2 == 0 {
                Direction::FromShard
            } else {
                Direction::FromSupervisor
            };
            let mut reader = &bytes[..];
            loop {
                match read_frame(&mut reader, direction, 32) {
                    Ok(Some(frame)) => {
                        assert!(frame.payload.len() <= 32);
                        outcomes[0] += 1;
                    }
                    Ok(None) => {
                        outcomes[1] += 1;
                        break;
                    }
                    Err(_) => {
                        outcomes[2] += 1;
                        break;
                    }
                }
            }
        }
        // All three outcomes were exercised.
        assert!(outcomes.iter().all(|&count| count > 100), "{outcomes:?}");
    }
}
