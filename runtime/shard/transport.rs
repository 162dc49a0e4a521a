//! The shard side of the socket to the supervisor: [`Transport`], with
//! `send_frame` and `recv_frame` that park the calling fiber.
//!
//! All of a shard's socket I/O is in this file, behind these two methods,
//! over a [`crate::net::UnixStream`]: a read or write that would block
//! parks the fiber, and its worker runs other fibers until the reactor
//! reports the socket ready (no thread per waiting fiber). On a plain
//! thread of the shard the same calls block that thread.
//!
//! Reading and writing are independent (two handles on one socket, each
//! under its own fiber-aware lock), so one fiber can wait in `recv_frame`
//! while others send; concurrent senders are serialised so frames never
//! interleave on the wire.

use std::io;

use crate::net::UnixStream;

use super::frame::{self, Direction, Frame, FrameError, Kind};
use crate::sync::Mutex;

/// A shard's connection to its supervisor.
///
/// Shared by every fiber of the shard (through `Arc` in [`super::Shard`]).
#[derive(Debug)]
pub(crate) struct Transport {
    /// The reading handle; one reader at a time, so a frame is read whole.
    reader: Mutex<UnixStream>,
    /// The writing handle (a `try_clone` of the same socket); one writer at
    /// a time, so frames are written whole.
    writer: Mutex<UnixStream>,
    /// Largest payload accepted or sent.
    max_frame: usize,
}

impl Transport {
    /// Wraps the socket the supervisor handed this shard.
    pub(crate) fn new(
        stream: std::os::unix::net::UnixStream,
        max_frame: usize,
    ) -> io::Result<Transport> {
        let stream = UnixStream::from_std(stream)?;
        let writer = stream.try_clone()?;
        Ok(Transport {
            reader: Mutex::new(stream),
            writer: Mutex::new(writer),
            max_frame,
        })
    }

    /// Largest payload this transport sends or accepts.
    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Writes one frame; parks the calling fiber while the socket is full.
    /// The caller has checked `payload` against [`Transport::max_frame`].
    pub(crate) fn send_frame(&self, kind: Kind, peer: u32, payload: &[u8]) -> io::Result<()> {
        debug_assert!(payload.len() <= self.max_frame);
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        frame::write_frame(&mut *writer, kind, peer, payload)
    }

    /// Reads one frame; parks the calling fiber until it has arrived.
    /// `Ok(None)`: the supervisor closed the socket.
    pub(crate) fn recv_frame(&self) -> Result<Option<Frame>, FrameError> {
        let mut reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        frame::read_frame(&mut *reader, Direction::FromSupervisor, self.max_frame)
    }
}
