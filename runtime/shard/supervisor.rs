//! [`Supervisor`]: the user's handle on the shards, and the supervisor loop
//! that decides, on one thread, what happens when a shard starts or ends.
//!
//! Threads (see `incarnation.rs` for the per-incarnation keeper and reader):
//!
//! - the **loop** thread owns every decision: it receives [`Notice`]s from
//!   keepers (started, exited), readers (bad input), any thread whose write
//!   to a shard timed out (hung), the termination-signal watcher and the
//!   handle (shutdown); it watches heartbeats itself; it applies the
//!   restart policy, the intensity limit and the backoff, and starts new
//!   incarnations when their backoff is over (a `recv_timeout` up to the
//!   next deadline is its only timer). It never touches a socket, so a
//!   shard that stops reading cannot stall supervision.
//! - the user's threads call [`Supervisor::send`] (a write to the shard's
//!   socket) and [`Supervisor::recv`] (the [`Event`] stream).
//!
//! Shutdown, step by step ([`Supervisor::shutdown`], a termination signal
//! after [`Supervisor::watch_termination_signals`], or the intensity limit):
//!
//! 1. no more restarts; shards waiting out a backoff are not started;
//! 2. every running shard gets `SIGTERM` (one still starting gets it once
//!    it runs);
//! 3. the loop waits for their exits until the grace period
//!    ([`Config::shutdown_grace`]) is over, then sends `SIGKILL` to the rest;
//! 4. each keeper reaps its child (no zombies) and ends; the loop joins the
//!    keepers, sends [`Event::Stopped`] and returns the outcome, which
//!    [`Supervisor::shutdown`] / [`Supervisor::wait`] hand to the caller.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::frame::{FrameError, Kind, SUPERVISOR};
use super::incarnation::{self, LastHeard, Links};
use super::message::{Exit, SendError};
use super::policy::{Intensity, RestartHistory};
use super::Config;
use crate::signal::{Signals, SIGINT, SIGTERM};
use crate::sys::process::Pidfd;

/// What happened to the shards, in order, from [`Supervisor::recv`].
#[derive(Debug)]
pub enum Event {
    /// An incarnation's process is running.
    Started {
        /// Which shard.
        shard: usize,
        /// Its incarnation number (1 for the first start).
        generation: u64,
        /// Its process id.
        pid: u32,
    },
    /// Bytes a shard sent to the supervisor
    /// ([`Shard::send_to_supervisor`](super::Shard::send_to_supervisor)).
    Message {
        /// Which shard.
        from: usize,
        /// Which incarnation of it.
        generation: u64,
        /// The payload.
        bytes: Vec<u8>,
    },
    /// An incarnation ended.
    Exited {
        /// Which shard.
        shard: usize,
        /// Which incarnation.
        generation: u64,
        /// How it ended.
        exit: Exit,
        /// When it will be started again (the backoff), or `None` if it will
        /// not be (its policy, or the supervisor is stopping).
        restart_in: Option<Duration>,
    },
    /// A shard sent bytes that are not valid frames; it has been killed
    /// (and its `Exited` follows).
    Disconnected {
        /// Which shard.
        shard: usize,
        /// Which incarnation.
        generation: u64,
        /// What was wrong.
        error: FrameError,
    },
    /// A shard was silent for longer than its
    /// [`Heartbeat::timeout`](super::Heartbeat), or did not drain its socket
    /// within [`Config::write_timeout`](super::Config::write_timeout); it has
    /// been killed (and its `Exited` follows).
    Hung {
        /// Which shard.
        shard: usize,
        /// Which incarnation.
        generation: u64,
    },
    /// A shard's process could not be started (its `Exited` follows, with
    /// [`Exit::SpawnFailed`]).
    SpawnFailed {
        /// Which shard.
        shard: usize,
        /// Which incarnation.
        generation: u64,
        /// Why.
        error: io::Error,
    },
    /// The supervisor began shutting down.
    Stopping {
        /// Why.
        reason: StopReason,
    },
    /// Every shard has ended and been reaped; the last event.
    Stopped,
}

/// Why the supervisor is shutting down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// [`Supervisor::shutdown`] was called.
    Requested,
    /// `SIGTERM` or `SIGINT` arrived (after
    /// [`Supervisor::watch_termination_signals`]); the signal number.
    Signal(i32),
    /// Restarts exceeded the intensity limit.
    IntensityExceeded,
}

/// Why a supervisor stopped with an error.
#[derive(Debug)]
pub enum SupervisorError {
    /// More than `max_restarts` restarts within `period`: the supervisor
    /// shut every shard down instead of restarting again.
    IntensityExceeded {
        /// The limit that was exceeded.
        intensity: Intensity,
        /// The shard whose exit was one too many.
        shard: usize,
        /// How that exit happened.
        exit: Exit,
    },
    /// The supervisor loop itself failed (it could not start a thread).
    Io(io::Error),
}

impl std::fmt::Display for SupervisorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SupervisorError::IntensityExceeded {
                intensity,
                shard,
                exit,
            } => write!(
                f,
                "restart intensity exceeded: more than {} restarts in {:?} \
                 (the last: shard {shard} {exit}); all shards stopped",
                intensity.max_restarts, intensity.period
            ),
            SupervisorError::Io(error) => write!(f, "supervisor failed: {error}"),
        }
    }
}

impl std::error::Error for SupervisorError {}

/// What keepers, readers, the signal watcher and the handle tell the loop.
#[derive(Debug)]
pub(crate) enum Notice {
    Started {
        shard: usize,
        generation: u64,
        pid: u32,
        pidfd: Arc<Pidfd>,
        last_heard: Arc<LastHeard>,
    },
    Exited {
        shard: usize,
        generation: u64,
        exit: Exit,
        ran_for: Duration,
    },
    BadInput {
        shard: usize,
        generation: u64,
        error: FrameError,
    },
    Hung {
        shard: usize,
        generation: u64,
    },
    Stop(StopReason),
}

/// The running shards. Dropping it shuts them down (as
/// [`Supervisor::shutdown`], ignoring the outcome).
///
/// Its methods block the calling thread (a write to a socket, a wait for an
/// event); from a fiber, call them inside [`crate::blocking()`].
///
/// Events queue without bound until received: a program that stops calling
/// [`Supervisor::recv`] while its shards keep sending it messages grows.
pub struct Supervisor {
    /// Shared with the loop, keepers and readers; this handle writes to
    /// shards through it.
    links: Arc<Links>,
    /// The event stream; only this handle receives.
    events: crate::sync::mpsc::Receiver<Event>,
    /// The loop thread; `None` once joined.
    supervisor_loop: Option<JoinHandle<Result<(), SupervisorError>>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("shards", &self.links.config.shards)
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// Starts the loop, which starts every shard.
    pub(crate) fn start(config: Config) -> io::Result<Supervisor> {
        let (notices, notice_receiver) = mpsc::channel();
        let (events, event_receiver) = crate::sync::mpsc::channel();
        let links = Arc::new(Links::new(config, notices, events));
        let for_loop = links.clone();
        let supervisor_loop = std::thread::Builder::new()
            .name("shard-supervisor".into())
            .spawn(move || Loop::new(for_loop, notice_receiver).run())?;
        Ok(Supervisor {
            links,
            events: event_receiver,
            supervisor_loop: Some(supervisor_loop),
        })
    }

    /// How many shards.
    pub fn shards(&self) -> usize {
        self.links.config.shards
    }

    /// Sends `bytes` to shard `to`; it receives them as an
    /// [`Incoming::Message`](super::Incoming::Message) from
    /// [`Peer::Supervisor`](super::Peer::Supervisor).
    ///
    /// # Errors
    /// [`SendError::UnknownShard`], [`SendError::ShardDown`] (not running
    /// now: restarting or stopped), or [`SendError::TooLarge`].
    pub fn send(&self, to: usize, bytes: &[u8]) -> Result<(), SendError> {
        self.links.write(to, Kind::Deliver, SUPERVISOR, bytes)
    }

    /// The next event; `None` after [`Event::Stopped`].
    pub fn recv(&self) -> Option<Event> {
        self.events.recv().ok()
    }

    /// The next event, waiting at most `timeout`; `None` on timeout or after
    /// [`Event::Stopped`].
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        self.events.recv_timeout(timeout).ok()
    }

    /// The pid of shard `shard`'s running incarnation.
    pub fn pid(&self, shard: usize) -> Option<u32> {
        self.links.with_link(shard, |link| link.pid)
    }

    /// Sends signal number `signal` (that of `SIGKILL`, ...) to shard `shard`'s running
    /// incarnation, through its pidfd (never to a recycled pid). `Ok(false)`
    /// if it is not running.
    ///
    /// # Errors
    /// If the kernel refuses the signal.
    pub fn signal(&self, shard: usize, signal: i32) -> io::Result<bool> {
        self.links
            .with_link(shard, |link| link.pidfd.signal(signal))
            .unwrap_or(Ok(false))
    }

    /// Turns `SIGTERM` and `SIGINT` (Ctrl-C) into a clean shutdown: the event
    /// stream shows [`Event::Stopping`] with [`StopReason::Signal`], then the
    /// shards are stopped as in [`Supervisor::shutdown`]. Replaces the default
    /// action of both signals for the whole process; once per process.
    ///
    /// # Errors
    /// If the handlers cannot be installed, or were installed before.
    pub fn watch_termination_signals(&self) -> io::Result<()> {
        // A `spindle::signal` subscription, so the program's own `Signals`
        // for these signals see them too.
        static WATCHING: AtomicBool = AtomicBool::new(false);
        if WATCHING.swap(true, Ordering::AcqRel) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "termination signals are already being watched in this process",
            ));
        }
        let watch = || -> io::Result<()> {
            let signals = Signals::new(&[SIGTERM, SIGINT])?;
            let notices = self.links.notices.clone();
            std::thread::Builder::new()
                .name("shard-signals".into())
                .spawn(move || {
                    for signal in &signals {
                        let stop = Notice::Stop(StopReason::Signal(signal.as_raw()));
                        if notices.send(stop).is_err() {
                            return;
                        }
                    }
                })?;
            Ok(())
        };
        watch().inspect_err(|_| WATCHING.store(false, Ordering::Release))
    }

    /// Waits until the supervisor stops by itself (a termination signal, or
    /// the intensity limit) and returns the outcome. Events not received are
    /// dropped.
    ///
    /// # Errors
    /// [`SupervisorError::IntensityExceeded`] if it gave up.
    pub fn wait(mut self) -> Result<(), SupervisorError> {
        self.join()
    }

    /// Stops every shard (`SIGTERM`, the grace period, `SIGKILL`), reaps them
    /// and returns the outcome.
    ///
    /// # Errors
    /// [`SupervisorError::IntensityExceeded`] if the supervisor had already
    /// given up.
    pub fn shutdown(mut self) -> Result<(), SupervisorError> {
        let _ = self.links.notices.send(Notice::Stop(StopReason::Requested));
        self.join()
    }

    fn join(&mut self) -> Result<(), SupervisorError> {
        match self.supervisor_loop.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            None => Ok(()),
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.supervisor_loop.is_some() {
            let _ = self.links.notices.send(Notice::Stop(StopReason::Requested));
            let _ = self.join();
        }
    }
}

/// Where one shard is in its life, as the loop sees it.
#[derive(Debug)]
enum ShardLife {
    /// A keeper is starting incarnation `generation`.
    Starting,
    /// Incarnation `generation` runs; `hung` once it has been killed for
    /// missing its heartbeats (so it is killed once).
    Running {
        pidfd: Arc<Pidfd>,
        last_heard: Arc<LastHeard>,
        hung: bool,
    },
    /// Down; to be started again at `until`.
    Waiting { until: Instant },
    /// Down for good (its policy, or the supervisor is stopping), or not
    /// started yet: every shard is `Stopped` until the loop starts it.
    Stopped,
}

/// The loop's record of one shard. Owned by the loop thread.
#[derive(Debug)]
struct ShardRecord {
    /// Where it is in its life.
    life: ShardLife,
    /// The newest incarnation started (or being started).
    generation: u64,
    /// Restarts since it last ran for [`Backoff::reset_after`](super::Backoff).
    attempts: u32,
    /// Keeper threads not yet joined, by generation (normally one).
    keepers: Vec<(u64, JoinHandle<()>)>,
}

/// The supervisor loop's state; lives on the loop thread.
struct Loop {
    /// Shared with every supervisor thread; the loop reads the config and
    /// sends events through it, and never writes to a socket.
    links: Arc<Links>,
    /// Everything the loop reacts to arrives here.
    notices: mpsc::Receiver<Notice>,
    /// One record per shard id.
    shards: Vec<ShardRecord>,
    /// Recent restarts, for the intensity limit.
    history: RestartHistory,
    /// Set once shutdown began: when to escalate to `SIGKILL`, whether it
    /// has, and the outcome to return.
    stopping: Option<Stopping>,
    /// xorshift64 state for the backoff jitter.
    random: u64,
}

/// A shutdown in progress. Owned by the loop.
struct Stopping {
    /// When the grace period ends and `SIGKILL` follows.
    kill_at: Instant,
    /// Whether `SIGKILL` has been sent.
    killed: bool,
    /// What `shutdown`/`wait` will return.
    outcome: Result<(), SupervisorError>,
}

impl Loop {
    fn new(links: Arc<Links>, notices: mpsc::Receiver<Notice>) -> Loop {
        let shards = (0..links.config.shards)
            .map(|_| ShardRecord {
                life: ShardLife::Stopped,
                generation: 0,
                attempts: 0,
                keepers: Vec::new(),
            })
            .collect();
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        let seed = clock ^ (u64::from(std::process::id()) << 32);
        Loop {
            links,
            notices,
            shards,
            history: RestartHistory::default(),
            stopping: None,
            random: seed | 1,
        }
    }

    fn run(mut self) -> Result<(), SupervisorError> {
        for shard in 0..self.shards.len() {
            if let Err(error) = self.start(shard) {
                self.begin_stop(StopReason::Requested, Err(SupervisorError::Io(error)));
                break;
            }
        }
        loop {
            if self.stopping.is_some() && self.all_down() {
                break;
            }
            let notice = match self.next_deadline() {
                Some(deadline) => {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    match self.notices.recv_timeout(wait) {
                        Ok(notice) => Some(notice),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                None => match self.notices.recv() {
                    Ok(notice) => Some(notice),
                    Err(_) => break,
                },
            };
            match notice {
                Some(notice) => self.handle(notice),
                None => self.on_deadlines(),
            }
        }
        for record in &mut self.shards {
            for (_, keeper) in record.keepers.drain(..) {
                let _ = keeper.join();
            }
        }
        let _ = self.links.events.send(Event::Stopped);
        self.stopping
            .take()
            .map_or(Ok(()), |stopping| stopping.outcome)
    }

    fn all_down(&self) -> bool {
        self.shards
            .iter()
            .all(|record| matches!(record.life, ShardLife::Stopped))
    }

    fn next_deadline(&self) -> Option<Instant> {
        let restarts = self.shards.iter().filter_map(|record| match record.life {
            ShardLife::Waiting { until } => Some(until),
            _ => None,
        });
        let kill = self
            .stopping
            .as_ref()
            .filter(|stopping| !stopping.killed)
            .map(|stopping| stopping.kill_at);
        restarts.chain(kill).chain(self.heartbeat_deadlines()).min()
    }

    /// When each running shard becomes hung unless heard from.
    fn heartbeat_deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        let timeout = self.links.config.heartbeat.map(|beat| beat.timeout);
        self.shards
            .iter()
            .filter_map(move |record| match (&record.life, timeout) {
                (
                    ShardLife::Running {
                        last_heard,
                        hung: false,
                        ..
                    },
                    Some(timeout),
                ) if self.stopping.is_none() => Some(last_heard.get(&self.links) + timeout),
                _ => None,
            })
    }

    fn start(&mut self, shard: usize) -> io::Result<()> {
        let record = &mut self.shards[shard];
        record.generation += 1;
        record.life = ShardLife::Starting;
        let keeper = incarnation::start(&self.links, shard, record.generation)?;
        record.keepers.push((record.generation, keeper));
        Ok(())
    }

    fn handle(&mut self, notice: Notice) {
        match notice {
            Notice::Started {
                shard,
                generation,
                pid,
                pidfd,
                last_heard,
            } => {
                if self.stopping.is_some() {
                    let _ = pidfd.terminate();
                }
                self.shards[shard].life = ShardLife::Running {
                    pidfd,
                    last_heard,
                    hung: false,
                };
                let _ = self.links.events.send(Event::Started {
                    shard,
                    generation,
                    pid,
                });
            }
            Notice::Exited {
                shard,
                generation,
                exit,
                ran_for,
            } => self.on_exit(shard, generation, exit, ran_for),
            Notice::BadInput {
                shard,
                generation,
                error,
            } => {
                self.kill(shard, generation);
                let _ = self.links.events.send(Event::Disconnected {
                    shard,
                    generation,
                    error,
                });
            }
            Notice::Hung { shard, generation } => {
                self.kill(shard, generation);
                let _ = self.links.events.send(Event::Hung { shard, generation });
            }
            Notice::Stop(reason) => self.begin_stop(reason, Ok(())),
        }
    }

    /// `SIGKILL` to incarnation `generation` of `shard`, if it is the one
    /// running.
    fn kill(&self, shard: usize, generation: u64) {
        let record = &self.shards[shard];
        if let (ShardLife::Running { pidfd, .. }, true) =
            (&record.life, record.generation == generation)
        {
            let _ = pidfd.kill();
        }
    }

    fn on_exit(&mut self, shard: usize, generation: u64, exit: Exit, ran_for: Duration) {
        let now = Instant::now();
        let links = self.links.clone();
        let config = &links.config;
        let keepers = &mut self.shards[shard].keepers;
        // The keeper sent this notice as its last act: the join is immediate.
        if let Some(position) = keepers.iter().position(|(of, _)| *of == generation) {
            let _ = keepers.swap_remove(position).1.join();
        }
        let mut restart_in = None;
        let mut gave_up = false;
        if self.stopping.is_none() && config.restart_of(shard).wants_restart(&exit) {
            if config.intensity.admit(&mut self.history, now) {
                let random = self.next_random();
                let record = &mut self.shards[shard];
                record.attempts = if ran_for >= config.backoff.reset_after {
                    1
                } else {
                    record.attempts + 1
                };
                let delay = config.backoff.delay(record.attempts, random);
                record.life = ShardLife::Waiting { until: now + delay };
                restart_in = Some(delay);
            } else {
                gave_up = true;
            }
        }
        if restart_in.is_none() {
            self.shards[shard].life = ShardLife::Stopped;
        }
        let _ = links.events.send(Event::Exited {
            shard,
            generation,
            exit,
            restart_in,
        });
        if gave_up {
            let error = SupervisorError::IntensityExceeded {
                intensity: config.intensity,
                shard,
                exit,
            };
            self.begin_stop(StopReason::IntensityExceeded, Err(error));
        }
    }

    fn on_deadlines(&mut self) {
        let now = Instant::now();
        if let (Some(beat), None) = (self.links.config.heartbeat, &self.stopping) {
            for (shard, record) in self.shards.iter_mut().enumerate() {
                if let ShardLife::Running {
                    pidfd,
                    last_heard,
                    hung: hung @ false,
                } = &mut record.life
                {
                    if now >= last_heard.get(&self.links) + beat.timeout {
                        *hung = true;
                        let _ = pidfd.kill();
                        let _ = self.links.events.send(Event::Hung {
                            shard,
                            generation: record.generation,
                        });
                    }
                }
            }
        }
        if let Some(stopping) = &mut self.stopping {
            if !stopping.killed && now >= stopping.kill_at {
                stopping.killed = true;
                for record in &self.shards {
                    if let ShardLife::Running { pidfd, .. } = &record.life {
                        let _ = pidfd.kill();
                    }
                }
            }
        }
        for shard in 0..self.shards.len() {
            if matches!(self.shards[shard].life, ShardLife::Waiting { until } if until <= now) {
                if let Err(error) = self.start(shard) {
                    self.shards[shard].life = ShardLife::Stopped;
                    self.begin_stop(StopReason::Requested, Err(SupervisorError::Io(error)));
                }
            }
        }
    }

    fn begin_stop(&mut self, reason: StopReason, outcome: Result<(), SupervisorError>) {
        if self.stopping.is_some() {
            return;
        }
        let _ = self.links.events.send(Event::Stopping { reason });
        self.stopping = Some(Stopping {
            kill_at: Instant::now() + self.links.config.shutdown_grace,
            killed: false,
            outcome,
        });
        for record in &mut self.shards {
            match &record.life {
                ShardLife::Running { pidfd, .. } => {
                    let _ = pidfd.terminate();
                }
                ShardLife::Waiting { .. } => record.life = ShardLife::Stopped,
                ShardLife::Starting | ShardLife::Stopped => {}
            }
        }
    }

    fn next_random(&mut self) -> u64 {
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        self.random
    }
}
