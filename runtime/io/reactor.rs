//! The reactor: one `mio::Poll` per runtime, the slab of registered
//! sockets, and the poll that turns readiness events into unparked fibers.
//!
//! # Who polls
//! Nobody owns the poller: whoever holds its lock polls, and only one
//! thread at a time can (`poller`, a `Mutex` taken with `try_lock`).
//! - **An idle worker** that is about to sleep takes the lock and sleeps in
//!   `epoll_wait` instead of on its condvar ([`Reactor::park`]), with its
//!   earliest timer as the timeout. Its `Unparker` then interrupts the
//!   poll through a `mio::Waker` (`scheduler/park.rs`, `park_in`), so a
//!   producer waking it, or shutdown, works as it does for a worker asleep
//!   on its condvar. Other idle workers
//!   find the lock taken and sleep on their condvars. This is Go's
//!   netpoller (one M blocks in `netpoll`) and tokio's driver lock.
//! - **A busy worker** polls without blocking every [`POLL_INTERVAL`]
//!   scheduling decisions ([`Reactor::poll_now`]), if nobody holds the
//!   lock, so readiness is seen while every worker runs fibers.
//! - **The monitor** polls without blocking if nobody has polled for
//!   [`STALE_AFTER`] ([`Reactor::poll_if_stale`]): the bound when every
//!   worker is stuck in a long fiber (Go's sysmon does the same).
//!
//! Fibers woken from a worker's poll go to that worker's own queues (as any
//! unpark on a worker does), and the usual `notify_one` spreads surplus to
//! sleeping workers; from the monitor they go to the injector.
//!
//! # Tokens
//! A registration is a slot in a slab. Its token is the slot index in the
//! low 32 bits and the slot's generation in the high bits; freeing a slot
//! bumps its generation. An event collected for a socket that was
//! deregistered meanwhile (a poll runs concurrently with a drop) then names
//! a generation the slot no longer has and is dropped, instead of waking
//! whatever socket reuses the slot.
//!
//! # Rejected
//! A dedicated reactor thread that hands every event to the workers: one
//! more thread switch per event, and a worker could not sleep in epoll.
//! Level-triggered registration: it would report a readable socket again
//! at every poll until read, so a poll could not ignore sockets nobody
//! waits on.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};

use super::readiness::{ScheduledIo, ERROR, READABLE, READ_CLOSED, WRITABLE, WRITE_CLOSED};
use crate::lock::MutexExt;
use crate::scheduler::park::{Interrupt, Parker};

/// A busy worker polls (without blocking) every this many scheduling
/// decisions: the same interval as `INJECTOR_INTERVAL` in
/// `scheduler/worker.rs` and tokio's `event_interval`, a prime that avoids
/// lockstep with periodic workloads. Each such poll is one `epoll_wait`
/// system call (none while no socket is registered). A guess awaiting a
/// measurement of readiness latency against that cost; what it costs the
/// echo example is in `docs/decisions.md`, `POLL_INTERVAL`.
pub(crate) const POLL_INTERVAL: u64 = 61;

/// The monitor polls when nobody has for this long: the bound Go's sysmon
/// keeps for the network poller.
pub(crate) const STALE_AFTER: Duration = Duration::from_millis(10);

/// `epoll_wait`'s timeout unit (mio rounds a `Duration` up to it).
const EPOLL_RESOLUTION: Duration = Duration::from_millis(1);

/// Events taken from the kernel per `epoll_wait`, as many as tokio's
/// driver takes; more wait for the next poll, nothing is lost.
const EVENTS_CAPACITY: usize = 1024;

/// The waker's token: no slab slot has it (a slot's generation is masked
/// by `GENERATION_MASK`, so a slot's token never has the top bit set).
const WAKER_TOKEN: Token = Token(usize::MAX);

/// Generations wrap within 31 bits, so that no token equals `WAKER_TOKEN`.
const GENERATION_MASK: u32 = (1 << 31) - 1;

/// The token of slot `index` at `generation` (module docs, "Tokens").
#[inline]
fn token_of(index: u32, generation: u32) -> Token {
    Token(((generation as usize) << 32) | index as usize)
}

/// The slot index and generation `token` names; `token_of` reversed.
#[inline]
fn slot_of(token: Token) -> (u32, u32) {
    ((token.0 & 0xffff_ffff) as u32, (token.0 >> 32) as u32)
}

/// One runtime's reactor; see the module docs.
pub(crate) struct Reactor {
    /// The poller and its event buffer; whoever holds the lock polls.
    poller: Mutex<Poller>,
    /// Registers and deregisters without the poller's lock (a clone of
    /// the poll's epoll descriptor). Any thread.
    registry: Registry,
    /// Interrupts a poll (an eventfd). Any thread.
    waker: Arc<Waker>,
    /// Slots of registered sockets, under a short lock (never held while
    /// polling or waking).
    slab: Mutex<Slab>,
    /// When the last poll ended, as nanoseconds since `epoch`. Written by
    /// the polling thread, read by the monitor; Relaxed: a hint.
    last_poll: AtomicU64,
    /// The runtime's epoch (`Shared::epoch`); immutable.
    epoch: Instant,
    /// Polls made, for `Runtime::metrics`. Bumped by the polling thread
    /// (one at a time, under the poller's lock); Relaxed: a statistic.
    polls: AtomicU64,
    /// Readiness events delivered; as `polls`.
    events: AtomicU64,
    /// Live registrations (slab slots in use); Relaxed, a statistic that
    /// tests assert on after shutdown.
    registrations: AtomicUsize,
}

/// The part only the polling thread touches (under `Reactor::poller`).
struct Poller {
    /// The epoll instance.
    poll: Poll,
    /// Where `epoll_wait` puts events; reused by every poll.
    events: Events,
}

/// Registration slots, under `Reactor::slab`.
#[derive(Default)]
struct Slab {
    /// By index (the token's low 32 bits); never shrinks.
    slots: Vec<Slot>,
    /// Indices of free slots, reused last-freed first.
    free: Vec<u32>,
}

/// One slot of the slab.
struct Slot {
    /// Bumped (within 31 bits) each time the slot is freed; the token's
    /// high bits. An event whose generation differs is stale.
    generation: u32,
    /// The registered socket's readiness, or `None` while free.
    io: Option<Arc<ScheduledIo>>,
}

/// A socket's place in the reactor. Dropping it deregisters the socket
/// (the descriptor must still be open: `io/socket.rs` drops this first).
///
/// Owned by one `io/socket.rs` `Socket` (shared by its handles); all
/// fields are immutable after registration.
pub(crate) struct Registration {
    /// The reactor it is registered with (kept alive by it).
    reactor: Arc<Reactor>,
    /// The registered descriptor, owned by the socket, open while this
    /// lives.
    fd: RawFd,
    /// Slot index and generation.
    token: Token,
    /// Readiness and waiters; the slab holds the other reference.
    pub(crate) io: Arc<ScheduledIo>,
}

impl Reactor {
    pub(crate) fn new(epoch: Instant) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER_TOKEN)?);
        Ok(Reactor {
            poller: Mutex::new(Poller {
                poll,
                events: Events::with_capacity(EVENTS_CAPACITY),
            }),
            registry,
            waker,
            slab: Mutex::new(Slab::default()),
            last_poll: AtomicU64::new(0),
            epoch,
            polls: AtomicU64::new(0),
            events: AtomicU64::new(0),
            registrations: AtomicUsize::new(0),
        })
    }

    /// What a worker's `Unparker` calls to end a poll it sleeps in.
    pub(crate) fn interrupt(&self) -> Interrupt {
        let waker = self.waker.clone();
        Box::new(move || {
            // An error means the eventfd is unusable; the worker then
            // wakes at its timeout or the next event, as from a lost
            // futex wake. Nothing better to do from inside an unpark.
            let _ = waker.wake();
        })
    }

    /// Registers `fd` for read and write readiness, edge-triggered.
    pub(crate) fn register(self: &Arc<Self>, fd: RawFd) -> io::Result<Registration> {
        let io = Arc::new(ScheduledIo::new());
        let token = {
            let mut slab = self.slab.lock_unpoisoned();
            let index = match slab.free.pop() {
                Some(index) => index,
                None => {
                    let index = u32::try_from(slab.slots.len())
                        .map_err(|_| io::Error::other("too many registered sockets"))?;
                    slab.slots.push(Slot {
                        generation: 0,
                        io: None,
                    });
                    index
                }
            };
            let slot = &mut slab.slots[index as usize];
            slot.io = Some(io.clone());
            token_of(index, slot.generation)
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(error) = self.registry.register(&mut SourceFd(&fd), token, interest) {
            self.free_slot(token);
            return Err(error);
        }
        self.registrations.fetch_add(1, Ordering::Relaxed);
        Ok(Registration {
            reactor: self.clone(),
            fd,
            token,
            io,
        })
    }

    fn free_slot(&self, token: Token) {
        let (index, generation) = slot_of(token);
        let mut slab = self.slab.lock_unpoisoned();
        let slot = &mut slab.slots[index as usize];
        debug_assert!(slot.io.is_some(), "slot {index} freed twice");
        debug_assert_eq!(
            slot.generation, generation,
            "slot {index} freed under a stale token"
        );
        slot.io = None;
        slot.generation = slot.generation.wrapping_add(1) & GENERATION_MASK;
        slab.free.push(index);
    }

    /// Registered sockets now.
    pub(crate) fn registrations(&self) -> usize {
        self.registrations.load(Ordering::Relaxed)
    }

    /// The counters, for `Runtime::metrics`.
    pub(crate) fn metrics(&self) -> crate::metrics::IoMetrics {
        crate::metrics::IoMetrics {
            polls: self.polls.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            registrations: self.registrations(),
        }
    }

    /// An idle worker's sleep: in the poller if nobody else is in it, else
    /// on the worker's condvar. Returns how many parties the poll woke
    /// (0 if it slept on the condvar or was interrupted).
    ///
    /// With no socket registered the worker sleeps on its condvar, as if
    /// there were no reactor: a runtime that does no I/O pays nothing for
    /// it. The first registration happens on a running worker, whose next
    /// sleep then goes to the poller.
    ///
    /// A timeout under [`EPOLL_RESOLUTION`] also sleeps on the condvar:
    /// `epoll_wait` counts in whole milliseconds (mio rounds up), which
    /// would make a timer due sooner than that fire up to
    /// `EPOLL_RESOLUTION` late. Readiness that arrives meanwhile waits at
    /// most that long, until the worker's next scheduling decision or
    /// sleep.
    pub(crate) fn park(&self, parker: &Parker, timeout: Option<Duration>) -> usize {
        if self.registrations() == 0 || timeout.is_some_and(|t| t < EPOLL_RESOLUTION) {
            parker.park(timeout);
            return 0;
        }
        match self.poller.try_lock() {
            Ok(mut poller) => parker
                .park_in(timeout, |timeout| self.poll_locked(&mut poller, timeout))
                .unwrap_or(0),
            Err(TryLockError::Poisoned(poisoned)) => {
                let mut poller = poisoned.into_inner();
                parker
                    .park_in(timeout, |timeout| self.poll_locked(&mut poller, timeout))
                    .unwrap_or(0)
            }
            Err(TryLockError::WouldBlock) => {
                parker.park(timeout);
                0
            }
        }
    }

    /// A non-blocking poll, unless another thread holds the poller (it will
    /// dispatch what comes). Returns how many parties were woken.
    /// Free when no socket is registered (one relaxed load), so busy
    /// runtimes without I/O pay no system call.
    pub(crate) fn poll_now(&self) -> usize {
        if self.registrations() == 0 {
            return 0;
        }
        match self.poller.try_lock() {
            Ok(mut poller) => self.poll_locked(&mut poller, Some(Duration::ZERO)),
            Err(_) => 0,
        }
    }

    /// The monitor's check: a non-blocking poll if nobody polled for
    /// [`STALE_AFTER`].
    pub(crate) fn poll_if_stale(&self) -> usize {
        let last = Duration::from_nanos(self.last_poll.load(Ordering::Relaxed));
        if self.epoch.elapsed().saturating_sub(last) < STALE_AFTER {
            return 0;
        }
        self.poll_now()
    }

    /// Polls (blocking up to `timeout`) and wakes the waiters of every
    /// event. Runs with the poller's lock held.
    fn poll_locked(&self, poller: &mut Poller, timeout: Option<Duration>) -> usize {
        let Poller { poll, events } = poller;
        if let Err(error) = poll.poll(events, timeout) {
            // EINTR (a signal) is a spurious wake-up; anything else means
            // the epoll descriptor is broken, and spinning on it would not
            // help: say so once per poll and carry on as if woken.
            if error.kind() != io::ErrorKind::Interrupted {
                eprintln!("spindle: epoll_wait failed: {error}");
            }
            return 0;
        }
        self.polls.fetch_add(1, Ordering::Relaxed);
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_poll.store(now, Ordering::Relaxed);
        // Look every token up under one short slab lock, then wake with
        // no lock held (a wake can schedule a fiber, which may notify a
        // worker).
        let mut ready: Vec<(Arc<ScheduledIo>, usize)> = Vec::new();
        {
            let slab = self.slab.lock_unpoisoned();
            for event in events.iter() {
                let token = event.token();
                if token == WAKER_TOKEN {
                    continue;
                }
                let (index, generation) = slot_of(token);
                let Some(slot) = slab.slots.get(index as usize) else {
                    continue;
                };
                if slot.generation != generation {
                    continue; // a stale event for a freed slot
                }
                let Some(io) = &slot.io else { continue };
                ready.push((io.clone(), readiness_bits(event)));
            }
        }
        self.events.fetch_add(ready.len() as u64, Ordering::Relaxed);
        ready.into_iter().map(|(io, bits)| io.set(bits)).sum()
    }
}

/// An event's readiness, as `ScheduledIo`'s bits.
#[inline]
fn readiness_bits(event: &mio::event::Event) -> usize {
    let mut bits = 0;
    if event.is_readable() {
        bits |= READABLE;
    }
    if event.is_writable() {
        bits |= WRITABLE;
    }
    if event.is_read_closed() {
        bits |= READ_CLOSED;
    }
    if event.is_write_closed() {
        bits |= WRITE_CLOSED;
    }
    if event.is_error() {
        bits |= ERROR;
    }
    bits
}

impl Registration {
    /// Whether this registration belongs to `reactor`.
    pub(crate) fn is_in(&self, reactor: &Arc<Reactor>) -> bool {
        Arc::ptr_eq(&self.reactor, reactor)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Explicitly, not by closing: a duplicate of the descriptor
        // (`into_std` of a clone, a fork) would keep it in the epoll set.
        let _ = self.reactor.registry.deregister(&mut SourceFd(&self.fd));
        self.reactor.free_slot(self.token);
        self.reactor.registrations.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_token_names_its_slot_and_generation_and_is_never_the_wakers() {
        for (index, generation) in [(0, 0), (7, 3), (u32::MAX, GENERATION_MASK)] {
            let token = token_of(index, generation);
            assert_eq!(slot_of(token), (index, generation));
            assert_ne!(token, WAKER_TOKEN);
        }
    }

    #[test]
    fn a_reused_slot_gets_a_new_generation_and_stale_events_are_dropped() {
        let reactor = Arc::new(Reactor::new(Instant::now()).unwrap());
        let (first, second) = std::os::unix::net::UnixStream::pair().unwrap();
        let registration = reactor.register(first.as_raw_fd()).unwrap();
        let old_token = registration.token;
        assert_eq!(reactor.registrations(), 1);
        drop(registration);
        assert_eq!(reactor.registrations(), 0);
        let registration = reactor.register(second.as_raw_fd()).unwrap();
        assert_eq!(
            slot_of(registration.token).0,
            slot_of(old_token).0,
            "the slot is reused"
        );
        assert_ne!(registration.token, old_token, "with a new generation");
        // `second` is writable: the poll delivers that edge to the new
        // registration (an event under the old token would be dropped by
        // the generation check in `poll_locked`).
        let mut polls = 0;
        while !registration
            .io
            .observe()
            .is_ready(crate::io::readiness::Direction::Write)
        {
            reactor.poll_now();
            polls += 1;
            assert!(polls < 1000, "no event for the new registration");
        }
        assert_eq!(reactor.metrics().registrations, 1);
    }
}
