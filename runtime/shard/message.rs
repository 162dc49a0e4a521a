//! The values that cross the shard API: who a message is from, what a shard
//! receives, why a send failed, and how a shard process ended.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use super::frame::FrameError;

/// The sender of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// Shard with this id.
    Shard(usize),
    /// The supervisor process.
    Supervisor,
}

/// What [`Shard::recv`](super::Shard::recv) returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// Bytes from a shard or the supervisor.
    Message {
        /// Who sent them.
        from: Peer,
        /// The payload, as sent.
        bytes: Vec<u8>,
    },
    /// A message this shard sent to `to` could not be delivered.
    Undeliverable {
        /// The destination named in the send.
        to: usize,
        /// Why.
        reason: Undeliverable,
    },
    /// Shard `shard` went down (crashed, exited or was killed); messages sent
    /// to it until it is back are returned as [`Incoming::Undeliverable`].
    ShardDown {
        /// Which shard.
        shard: usize,
    },
}

/// Why the supervisor could not deliver a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Undeliverable {
    /// No shard has that id.
    UnknownShard = 1,
    /// The shard exists but is not running now (it is restarting, or it has
    /// stopped for good).
    ShardDown = 2,
}

impl Undeliverable {
    pub(crate) fn from_code(code: u8) -> Option<Undeliverable> {
        match code {
            1 => Some(Undeliverable::UnknownShard),
            2 => Some(Undeliverable::ShardDown),
            _ => None,
        }
    }
}

/// Why a send failed.
#[derive(Debug)]
pub enum SendError {
    /// No shard has this id (the ids are `0..count`).
    UnknownShard(usize),
    /// The shard is not running now (supervisor side only: a shard learns
    /// this later, as [`Incoming::Undeliverable`]).
    ShardDown(usize),
    /// The payload exceeds the configured maximum frame size.
    TooLarge {
        /// Payload bytes given.
        length: usize,
        /// The maximum ([`Config::max_frame`](super::Config::max_frame)).
        max: usize,
    },
    /// The connection to the supervisor (or, on the supervisor side, to the
    /// shard) failed.
    Io(std::io::Error),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::UnknownShard(id) => write!(f, "no shard has id {id}"),
            SendError::ShardDown(id) => write!(f, "shard {id} is not running"),
            SendError::TooLarge { length, max } => {
                write!(
                    f,
                    "message of {length} bytes exceeds the {max}-byte frame limit"
                )
            }
            SendError::Io(error) => write!(f, "connection failed: {error}"),
        }
    }
}

impl std::error::Error for SendError {}

/// Why a receive failed.
#[derive(Debug)]
pub enum RecvError {
    /// The other side closed the connection (for a shard: the supervisor is
    /// gone or is shutting down; the shard should return).
    Closed,
    /// The bytes received are not valid frames.
    Frame(FrameError),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Closed => write!(f, "connection closed"),
            RecvError::Frame(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for RecvError {}

/// How a shard process ended.
///
/// ```
/// use spindle::shard::Exit;
/// let crash = Exit::Signal { signal: 11, core_dumped: true };
/// assert_eq!(crash.to_string(), "killed by SIGSEGV (core dumped)");
/// assert!(!crash.is_normal());
/// assert_eq!(Exit::Code(3).to_string(), "exited with code 3");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code (0: normal).
    Code(i32),
    /// A signal ended it.
    Signal {
        /// The signal number (that of `SIGSEGV`, ...).
        signal: i32,
        /// Whether the kernel wrote a core dump.
        core_dumped: bool,
    },
    /// Its process could not be started at all.
    SpawnFailed,
}

impl Exit {
    pub(crate) fn from_status(status: ExitStatus) -> Exit {
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(signal)) => Exit::Signal {
                signal,
                core_dumped: status.core_dumped(),
            },
            (None, None) => Exit::Code(-1),
        }
    }

    /// A normal exit is code 0; every other end is abnormal (what
    /// [`Restart::Transient`](super::Restart::Transient) restarts).
    pub fn is_normal(&self) -> bool {
        matches!(self, Exit::Code(0))
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(code) => write!(f, "exited with code {code}"),
            Exit::Signal {
                signal,
                core_dumped,
            } => {
                match crate::sys::process::signal_name(signal) {
                    Some(name) => write!(f, "killed by {name}")?,
                    None => write!(f, "killed by signal {signal}")?,
                }
                if core_dumped {
                    write!(f, " (core dumped)")?;
                }
                Ok(())
            }
            Exit::SpawnFailed => write!(f, "could not be started"),
        }
    }
}
