//! The shard side: recognising that this process is a shard (its identity
//! is in the environment), adopting the inherited socket, running the entry
//! function on a fresh spindle runtime, and [`Shard`], the handle the entry
//! uses to send and receive.
//!
//! The environment a supervisor gives each shard process (names are stable;
//! tests read `SPINDLE_SHARD_FD` to write deliberately bad frames):
//!
//! | variable | meaning |
//! |---|---|
//! | `SPINDLE_SHARD_ID` | this shard's id, `0..count` |
//! | `SPINDLE_SHARD_COUNT` | how many shards the supervisor runs |
//! | `SPINDLE_SHARD_GENERATION` | incarnation number, 1 for the first start |
//! | `SPINDLE_SHARD_FD` | descriptor number of the inherited socket |
//! | `SPINDLE_SHARD_MAX_FRAME` | largest frame payload, bytes |
//! | `SPINDLE_SUPERVISOR_PID` | the supervisor's pid |
//! | `SPINDLE_SHARD_HEARTBEAT_MS` | heartbeat interval, 0 for none |
//!
//! Processes a shard starts inherit these variables (the socket itself is
//! close-on-exec). A spindle shard program started from a shard would see
//! them, find that its parent is not the supervisor named there, and exit
//! with [`EXIT_BAD_ENVIRONMENT`]: remove them (`Command::env_remove`) when a shard starts
//! such a program.
//!
//! When the entry function returns the process exits with code 0 at once,
//! without unwinding fibers that are still running (as a std program's
//! threads end when `main` returns); when it panics, with
//! [`EXIT_PANICKED`] (std's code for a panicking `main`).

use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::frame::{Kind, SUPERVISOR};
use super::message::{Incoming, Peer, RecvError, SendError, Undeliverable};
use super::transport::Transport;
use super::Config;
use crate::sys::process;

pub(crate) const ENV_ID: &str = "SPINDLE_SHARD_ID";
pub(crate) const ENV_COUNT: &str = "SPINDLE_SHARD_COUNT";
pub(crate) const ENV_GENERATION: &str = "SPINDLE_SHARD_GENERATION";
pub(crate) const ENV_FD: &str = "SPINDLE_SHARD_FD";
pub(crate) const ENV_MAX_FRAME: &str = "SPINDLE_SHARD_MAX_FRAME";
pub(crate) const ENV_SUPERVISOR_PID: &str = "SPINDLE_SUPERVISOR_PID";
pub(crate) const ENV_HEARTBEAT_MS: &str = "SPINDLE_SHARD_HEARTBEAT_MS";

/// Exit code of a shard whose environment is unusable (a usage error, as in
/// `sysexits.h`'s `EX_USAGE`).
const EXIT_BAD_ENVIRONMENT: i32 = 64;

/// Exit code of a shard whose entry panicked: std's for a panicking `main`.
const EXIT_PANICKED: i32 = 101;

/// Who this shard process is, read from its environment.
/// Read once at start-up, owned by `run_if_shard`; the fields are the
/// variables in the module comment's table, in order.
#[derive(Debug)]
struct Identity {
    id: usize,
    count: usize,
    generation: u64,
    fd: i32,
    max_frame: usize,
    supervisor_pid: u32,
    heartbeat_ms: u64,
}

fn identity_from_env() -> Option<Result<Identity, String>> {
    std::env::var_os(ENV_ID)?;
    fn number<T: std::str::FromStr>(name: &str) -> Result<T, String> {
        std::env::var(name)
            .ok()
            .and_then(|value| value.parse().ok())
            .ok_or_else(|| format!("{name} is missing or not a number"))
    }
    Some((|| {
        Ok(Identity {
            id: number(ENV_ID)?,
            count: number(ENV_COUNT)?,
            generation: number(ENV_GENERATION)?,
            fd: number(ENV_FD)?,
            max_frame: number(ENV_MAX_FRAME)?,
            supervisor_pid: number(ENV_SUPERVISOR_PID)?,
            heartbeat_ms: number(ENV_HEARTBEAT_MS)?,
        })
    })())
}

/// If this process is a shard, runs `entry` and exits; otherwise returns.
pub(crate) fn run_if_shard<F: FnOnce(Shard) + Send>(config: &Config, entry: F) {
    let identity = match identity_from_env() {
        None => return,
        Some(Ok(identity)) => identity,
        Some(Err(problem)) => fail(&problem),
    };
    // PR_SET_PDEATHSIG was set before exec; if the supervisor died before
    // that, nothing will kill us, so check who our parent is now.
    if process::parent_pid() != identity.supervisor_pid {
        fail("the supervisor is gone");
    }
    if identity.id >= identity.count || !process::is_socket(identity.fd) {
        fail("the shard id or socket descriptor is not valid");
    }
    // Processes this shard starts must not inherit the supervisor socket.
    if let Err(error) = process::set_close_on_exec(identity.fd) {
        fail(&format!("cannot set close-on-exec on the socket: {error}"));
    }
    // The descriptor was created by the supervisor for this process alone
    // and inherited across exec; it is an open socket (checked above).
    // SAFETY: nothing else in this process owns it, so the stream may take it.
    let stream = unsafe { UnixStream::from_raw_fd(identity.fd) };
    let transport = match Transport::new(stream, identity.max_frame) {
        Ok(transport) => transport,
        Err(error) => fail(&format!("cannot use the socket: {error}")),
    };
    let shard = Shard {
        inner: Arc::new(Inner {
            id: identity.id,
            count: identity.count,
            generation: identity.generation,
            transport,
        }),
    };
    let mut builder = crate::Builder::new().thread_name(format!("shard{}-worker", identity.id));
    if let Some(workers) = config.workers {
        builder = builder.workers(workers);
    }
    let runtime = match builder.build() {
        Ok(runtime) => runtime,
        Err(error) => fail(&format!("cannot start the runtime: {error}")),
    };
    let heartbeat = std::time::Duration::from_millis(identity.heartbeat_ms);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        runtime.block_on(move || {
            if !heartbeat.is_zero() {
                let beating = shard.clone();
                // Never joined: the process exits when `entry` returns.
                drop(crate::spawn(move || loop {
                    crate::time::sleep(heartbeat);
                    let beat = beating
                        .inner
                        .transport
                        .send_frame(Kind::Heartbeat, SUPERVISOR, &[]);
                    if beat.is_err() {
                        return; // the supervisor is gone
                    }
                }));
            }
            entry(shard)
        })
    }));
    // Exit without shutting the runtime down: fibers still parked in
    // `recv` would hold the shutdown until the supervisor closed the socket.
    std::mem::forget(runtime);
    std::process::exit(if outcome.is_ok() { 0 } else { EXIT_PANICKED });
}

fn fail(problem: &str) -> ! {
    eprintln!("spindle shard: {problem}; exiting");
    std::process::exit(EXIT_BAD_ENVIRONMENT)
}

/// A shard's handle on itself and its connection: who it is, and sending
/// and receiving messages. Cheap to clone; every fiber of the shard may
/// hold one. `send` and `recv` park the calling fiber, not its worker.
///
/// ```no_run
/// use spindle::shard::{self, Config, Incoming, Peer};
/// let supervisor = shard::start(Config::new(2), |me| {
///     // An echo shard: sends each message back where it came from, and
///     // skips the notices (a shard went down, a message was undeliverable).
///     // `recv` fails once the supervisor has closed the connection.
///     while let Ok(incoming) = me.recv() {
///         if let Incoming::Message { from, bytes } = incoming {
///             let sent = match from {
///                 Peer::Supervisor => me.send_to_supervisor(&bytes),
///                 Peer::Shard(shard) => me.send(shard, &bytes),
///             };
///             if sent.is_err() {
///                 return; // the supervisor is gone
///             }
///         }
///     }
/// })
/// .unwrap();
/// # drop(supervisor);
/// ```
#[derive(Clone, Debug)]
pub struct Shard {
    inner: Arc<Inner>,
}

/// Immutable after construction and shared by the clones (and the
/// heartbeat fiber); the transport serialises its own use.
#[derive(Debug)]
struct Inner {
    id: usize,
    count: usize,
    generation: u64,
    transport: Transport,
}

impl Shard {
    /// This shard's id, in `0..count()`.
    pub fn id(&self) -> usize {
        self.inner.id
    }

    /// How many shards the supervisor runs.
    pub fn count(&self) -> usize {
        self.inner.count
    }

    /// Which incarnation this is: 1 for the first start, +1 per restart.
    pub fn generation(&self) -> u64 {
        self.inner.generation
    }

    /// Sends `bytes` to shard `to` through the supervisor. Returns once the
    /// frame is written to the socket; delivery failures (the shard is down)
    /// come back later as [`Incoming::Undeliverable`].
    ///
    /// # Errors
    /// [`SendError::UnknownShard`] for an id outside `0..count()`,
    /// [`SendError::TooLarge`], or [`SendError::Io`] if the supervisor is
    /// gone.
    pub fn send(&self, to: usize, bytes: &[u8]) -> Result<(), SendError> {
        if to >= self.inner.count {
            return Err(SendError::UnknownShard(to));
        }
        self.send_frame(to as u32, bytes)
    }

    /// Sends `bytes` to the supervisor (it receives them as
    /// [`Event::Message`](super::Event::Message)).
    ///
    /// # Errors
    /// As [`Shard::send`].
    pub fn send_to_supervisor(&self, bytes: &[u8]) -> Result<(), SendError> {
        self.send_frame(SUPERVISOR, bytes)
    }

    fn send_frame(&self, peer: u32, bytes: &[u8]) -> Result<(), SendError> {
        let max = self.inner.transport.max_frame();
        if bytes.len() > max {
            return Err(SendError::TooLarge {
                length: bytes.len(),
                max,
            });
        }
        self.inner
            .transport
            .send_frame(Kind::Send, peer, bytes)
            .map_err(SendError::Io)
    }

    /// Waits for the next message or notice. One fiber at a time receives;
    /// others calling `recv` meanwhile wait their turn.
    ///
    /// # Errors
    /// [`RecvError::Closed`] when the supervisor closed the connection (it is
    /// shutting down or gone: return from the entry function), or
    /// [`RecvError::Frame`] if the supervisor sent garbage.
    pub fn recv(&self) -> Result<Incoming, RecvError> {
        let frame = match self.inner.transport.recv_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => return Err(RecvError::Closed),
            Err(error) => return Err(RecvError::Frame(error)),
        };
        let peer = frame.peer as usize;
        Ok(match frame.kind {
            Kind::Deliver if frame.peer == SUPERVISOR => Incoming::Message {
                from: Peer::Supervisor,
                bytes: frame.payload,
            },
            Kind::Deliver => Incoming::Message {
                from: Peer::Shard(peer),
                bytes: frame.payload,
            },
            Kind::Undeliverable => Incoming::Undeliverable {
                to: peer,
                // read_frame accepted only valid codes.
                reason: Undeliverable::from_code(frame.payload[0])
                    .unwrap_or(Undeliverable::ShardDown),
            },
            Kind::ShardDown => Incoming::ShardDown { shard: peer },
            // read_frame rejects Send and Heartbeat frames coming down.
            Kind::Send | Kind::Heartbeat => {
                unreachable!("Direction::FromSupervisor yields neither Send nor Heartbeat")
            }
        })
    }
}
