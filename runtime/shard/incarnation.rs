//! One incarnation of a shard, seen from the supervisor: starting its
//! process, reading and routing its frames, waiting for it to end. Also the
//! table of live connections ([`Links`]) every supervisor thread writes
//! through.
//!
//! Each incarnation has two threads:
//!
//! - the **keeper** creates the socketpair, re-executes the current program
//!   as the shard (`/proc/self/exe`, the shard's identity in the
//!   environment), starts the reader, installs the connection in [`Links`],
//!   waits for the process to end (`Child::wait`, i.e. `waitpid` on that one
//!   pid), lets the reader drain, removes the connection, tells the other
//!   shards, and reports the exit to the supervisor loop. It is the thread
//!   that spawned the child, and the kernel's `PR_SET_PDEATHSIG` fires when
//!   the *spawning thread* ends, so the keeper must outlive its child: it
//!   does, by construction (it ends only after the reap).
//! - the **reader** reads frames from the shard and routes each one: to the
//!   supervisor's event channel, or to another shard's socket. The first bad
//!   frame (malformed, truncated, oversized) ends it, and the supervisor loop
//!   kills the shard: a stream that lost its framing cannot be resynchronised.
//!
//! `Command::pre_exec` makes std start the child with `fork` + `exec`
//! rather than `posix_spawn` (a `vfork`-like clone), which costs page-table
//! copying in a large supervisor. Rejected alternative: leave the shard's
//! end without close-on-exec during the spawn and skip `pre_exec`. Any
//! other `Command` spawned meanwhile by another thread of the program would
//! inherit that end too and keep it open for its whole life, and the
//! reader would never see the end of the stream after the shard died.
//!
//! Because the keeper joins the reader before it reports the exit, every
//! frame an incarnation wrote is routed before the supervisor starts the
//! next incarnation: nothing from generation N arrives after generation N+1
//! exists.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::child;
use super::frame::{self, Direction, Kind, SUPERVISOR};
use super::message::{Exit, SendError, Undeliverable};
use super::supervisor::{Event, Notice};
use super::Config;
use crate::lock::MutexExt;
use crate::sys::process::{self, Pidfd};

/// The live connection to one shard incarnation.
#[derive(Debug)]
pub(crate) struct Link {
    /// Which incarnation.
    pub(crate) generation: u64,
    /// Its process id (for reports only; signals use `pidfd`).
    pub(crate) pid: u32,
    /// Signals to the process.
    pub(crate) pidfd: Arc<Pidfd>,
    /// The supervisor's end of the socket, for writing (the reader thread
    /// has its own handle on the same socket).
    writer: UnixStream,
}

/// What every supervisor thread shares: the configuration, a connection slot
/// per shard, and the channels to the loop and to the user.
#[derive(Debug)]
pub(crate) struct Links {
    /// Read-only after start.
    pub(crate) config: Config,
    /// Slot `i` is shard `i`'s live connection, `None` while it is down.
    /// Written by its keeper (install, remove) and by any writer that finds
    /// the stream broken (remove); each slot under its own lock, held for
    /// the whole of a frame's write so frames never interleave.
    slots: Vec<Mutex<Option<Link>>>,
    /// To the supervisor loop (any thread).
    pub(crate) notices: mpsc::Sender<Notice>,
    /// To the user's [`Supervisor`](super::Supervisor) (any thread).
    pub(crate) events: crate::sync::mpsc::Sender<Event>,
    /// This process's pid, given to shards so they can check their parent.
    supervisor_pid: u32,
    /// The zero of [`LastHeard`] timestamps.
    epoch: Instant,
}

/// When the supervisor last heard from one incarnation (any frame, heartbeat
/// or message), in milliseconds since [`Links`]' epoch. Written by its
/// reader thread, read by the loop; Relaxed both ways: it is a lone
/// timestamp that publishes no other data.
#[derive(Debug)]
pub(crate) struct LastHeard(AtomicU64);

impl LastHeard {
    /// When it was last heard from.
    pub(crate) fn get(&self, links: &Links) -> Instant {
        links.epoch + Duration::from_millis(self.0.load(Ordering::Relaxed))
    }

    fn touch(&self, links: &Links) {
        let now = links.epoch.elapsed().as_millis() as u64;
        self.0.store(now, Ordering::Relaxed);
    }
}

impl Links {
    pub(crate) fn new(
        config: Config,
        notices: mpsc::Sender<Notice>,
        events: crate::sync::mpsc::Sender<Event>,
    ) -> Links {
        let slots = (0..config.shards).map(|_| Mutex::new(None)).collect();
        Links {
            config,
            slots,
            notices,
            events,
            supervisor_pid: std::process::id(),
            epoch: Instant::now(),
        }
    }

    fn slot(&self, shard: usize) -> Option<std::sync::MutexGuard<'_, Option<Link>>> {
        let slot = self.slots.get(shard)?;
        Some(slot.lock_unpoisoned())
    }

    /// Runs `f` on shard `shard`'s live link, if there is one.
    pub(crate) fn with_link<T>(&self, shard: usize, f: impl FnOnce(&Link) -> T) -> Option<T> {
        self.slot(shard)?.as_ref().map(f)
    }

    /// Writes one frame to shard `to`. A write that fails (the shard died,
    /// or did not drain its socket within the write timeout) may have left
    /// half a frame on the stream, so the link is removed; a timeout also
    /// asks the loop to kill the shard as hung.
    pub(crate) fn write(
        &self,
        to: usize,
        kind: Kind,
        peer: u32,
        payload: &[u8],
    ) -> Result<(), SendError> {
        if payload.len() > self.config.max_frame {
            return Err(SendError::TooLarge {
                length: payload.len(),
                max: self.config.max_frame,
            });
        }
        let mut slot = self.slot(to).ok_or(SendError::UnknownShard(to))?;
        let link = slot.as_mut().ok_or(SendError::ShardDown(to))?;
        match frame::write_frame(&mut link.writer, kind, peer, payload) {
            Ok(()) => Ok(()),
            Err(error) => {
                let generation = link.generation;
                *slot = None;
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) {
                    let _ = self.notices.send(Notice::Hung {
                        shard: to,
                        generation,
                    });
                }
                Err(SendError::ShardDown(to))
            }
        }
    }

    fn install(&self, shard: usize, link: Link) {
        if let Some(mut slot) = self.slot(shard) {
            *slot = Some(link);
        }
    }

    fn remove(&self, shard: usize, generation: u64) {
        if let Some(mut slot) = self.slot(shard) {
            if slot
                .as_ref()
                .is_some_and(|link| link.generation == generation)
            {
                *slot = None;
            }
        }
    }
}

/// Starts incarnation `generation` of `shard` on a new keeper thread.
pub(crate) fn start(
    links: &Arc<Links>,
    shard: usize,
    generation: u64,
) -> io::Result<std::thread::JoinHandle<()>> {
    let links = links.clone();
    std::thread::Builder::new()
        .name(format!("shard{shard}-keeper"))
        .spawn(move || keep(&links, shard, generation))
}

/// The keeper thread: see the module comment.
fn keep(links: &Arc<Links>, shard: usize, generation: u64) {
    let started = Instant::now();
    let SpawnedShard {
        mut child,
        pidfd,
        reader_stream,
        writer,
    } = match spawn(links, shard, generation) {
        Ok(spawned) => spawned,
        Err(error) => {
            let _ = links.events.send(Event::SpawnFailed {
                shard,
                generation,
                error,
            });
            let _ = links.notices.send(Notice::Exited {
                shard,
                generation,
                exit: Exit::SpawnFailed,
                ran_for: started.elapsed(),
            });
            return;
        }
    };
    let pid = child.id();
    let last_heard = Arc::new(LastHeard(AtomicU64::new(0)));
    last_heard.touch(links);
    let reader = {
        let links = links.clone();
        let last_heard = last_heard.clone();
        std::thread::Builder::new()
            .name(format!("shard{shard}-reader"))
            .spawn(move || read(&links, shard, generation, reader_stream, &last_heard))
    };
    links.install(
        shard,
        Link {
            generation,
            pid,
            pidfd: pidfd.clone(),
            writer,
        },
    );
    let _ = links.notices.send(Notice::Started {
        shard,
        generation,
        pid,
        pidfd,
        last_heard,
    });
    if reader.is_err() {
        // No thread to read it: the incarnation is useless. Kill it; the
        // wait below reports the exit and the policy decides what follows.
        let _ = child.kill();
    }
    let exit = match child.wait() {
        Ok(status) => Exit::from_status(status),
        // Only possible if someone else reaped our child (a SIGCHLD
        // handler with waitpid(-1) elsewhere in the program).
        Err(_) => Exit::Code(-1),
    };
    if let Ok(reader) = reader {
        let _ = reader.join();
    }
    links.remove(shard, generation);
    for other in (0..links.config.shards).filter(|&other| other != shard) {
        let _ = links.write(other, Kind::ShardDown, shard as u32, &[]);
    }
    let _ = links.notices.send(Notice::Exited {
        shard,
        generation,
        exit,
        ran_for: started.elapsed(),
    });
}

/// A shard process just started, with the supervisor's two handles on its
/// socket.
struct SpawnedShard {
    child: std::process::Child,
    /// Signals to the process.
    pidfd: Arc<Pidfd>,
    /// For the reader thread.
    reader_stream: UnixStream,
    /// For [`Link::writer`].
    writer: UnixStream,
}

/// Re-executes this program as incarnation `generation` of `shard`.
fn spawn(links: &Links, shard: usize, generation: u64) -> io::Result<SpawnedShard> {
    let config = &links.config;
    let (ours, theirs) = UnixStream::pair()?; // both ends close-on-exec
    ours.set_write_timeout(Some(config.write_timeout))?;
    let reader_stream = ours.try_clone()?;
    let theirs_fd = theirs.as_raw_fd();
    let mut command = Command::new("/proc/self/exe");
    match &config.args {
        Some(args) => {
            command.args(args);
        }
        None => {
            command.args(std::env::args_os().skip(1));
        }
    }
    command
        .envs(config.env.iter().map(|(key, value)| (key, value)))
        .env(child::ENV_ID, shard.to_string())
        .env(child::ENV_COUNT, config.shards.to_string())
        .env(child::ENV_GENERATION, generation.to_string())
        .env(child::ENV_FD, theirs_fd.to_string())
        .env(child::ENV_MAX_FRAME, config.max_frame.to_string())
        .env(child::ENV_SUPERVISOR_PID, links.supervisor_pid.to_string())
        .env(
            child::ENV_HEARTBEAT_MS,
            config
                .heartbeat
                .map_or(0, |beat| beat.interval.as_millis().max(1) as u64)
                .to_string(),
        )
        .stdin(Stdio::null());
    if config.quiet {
        command.stdout(Stdio::null()).stderr(Stdio::null());
    }
    // The closure runs in the forked child before exec: two async-signal-
    // safe system calls (fcntl, prctl) on a descriptor number it owns a copy of.
    // SAFETY: it allocates nothing and takes no locks, as pre_exec requires.
    unsafe {
        command.pre_exec(move || process::prepare_child(theirs_fd));
    }
    let mut child = command.spawn()?;
    drop(theirs); // the child has its copy; ours would hide its death (no EOF)
    let pidfd = match Pidfd::open(child.id()) {
        Ok(pidfd) => Arc::new(pidfd),
        Err(error) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(error);
        }
    };
    Ok(SpawnedShard {
        child,
        pidfd,
        reader_stream,
        writer: ours,
    })
}

/// The reader thread: see the module comment.
fn read(
    links: &Links,
    shard: usize,
    generation: u64,
    mut stream: UnixStream,
    last_heard: &LastHeard,
) {
    loop {
        let frame =
            match frame::read_frame(&mut stream, Direction::FromShard, links.config.max_frame) {
                Ok(Some(frame)) => frame,
                Ok(None) => return, // the shard closed its end (it is exiting)
                Err(error) => {
                    let _ = links.notices.send(Notice::BadInput {
                        shard,
                        generation,
                        error,
                    });
                    return;
                }
            };
        last_heard.touch(links);
        if frame.kind == Kind::Heartbeat {
            continue;
        }
        // read_frame accepts only Send and Heartbeat frames from a shard.
        debug_assert_eq!(frame.kind, Kind::Send);
        if frame.peer == SUPERVISOR {
            let _ = links.events.send(Event::Message {
                from: shard,
                generation,
                bytes: frame.payload,
            });
            continue;
        }
        let to = frame.peer as usize;
        let refused = match links.write(to, Kind::Deliver, shard as u32, &frame.payload) {
            Ok(()) => None,
            Err(SendError::UnknownShard(_)) => Some(Undeliverable::UnknownShard),
            Err(_) => Some(Undeliverable::ShardDown),
        };
        if let Some(reason) = refused {
            // The sender learns why; if it is gone too, there is no one to tell.
            let _ = links.write(shard, Kind::Undeliverable, frame.peer, &[reason as u8]);
        }
    }
}
