//! Each descriptor's wait state for the hooks: a `Socket<RawDescriptor>`
//! (the reactor registration, readiness and waiters of `io/socket.rs`)
//! made at the first time a fiber had to wait on the descriptor, and kept
//! until the number is closed (`close`, `dup2` or `dup3` call
//! [`forget`]), so later waits cost no registration.
//!
//! The table is chunks of slots by descriptor number, a chunk allocated
//! at the first wait in its range and kept for the life of the process;
//! a slot is an `occupied` flag and a short lock around an
//! `Arc<Waits>`. A fiber that waits holds its own `Arc`, so a `close`
//! racing with the wait drops only the table's.
//!
//! The registration is kept, not made and dropped around each wait: an
//! epoll `ADD` and `DEL` cost about 1.5 µs together on the development
//! machine against 0.4 µs for the probes a wait makes anyway
//! (`docs/decisions.md`, "Interposed waits keep their registration").
//! The price is that a descriptor number must be closed through one of
//! the hooked calls (std's and the C library's `close` are) for its
//! registration to go: one closed by a raw system call leaves its
//! registration behind, and a fiber waiting on a later file with the same
//! number would wait on the old one.

use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::super::fd::RawDescriptor;
use super::super::readiness::Direction;
use super::super::socket::Socket;
use super::super::Reactor;
use crate::fiber::CurrentFiber;
use crate::lock::MutexExt;
use crate::sys::interpose::TRACKED_DESCRIPTORS;

/// Slots per chunk: one allocation covers this many descriptor numbers
/// (a guess: 24 KiB, a few pages for the numbers a small program uses).
const CHUNK: usize = 1024;

/// A descriptor's waits: its registration with one runtime's reactor.
pub(super) struct Waits {
    /// The reactor `socket` registers with (its first wait's runtime);
    /// fibers of another runtime do not wait here.
    reactor: Arc<Reactor>,
    /// The wait loop over the descriptor number, which the program owns.
    pub(super) socket: Socket<RawDescriptor>,
    /// Per direction (read, write): whether the last stream transfer moved
    /// fewer bytes than asked. Any fiber using the descriptor; Relaxed, a
    /// hint that only decides whether to try before waiting.
    short: [AtomicBool; 2],
}

impl Waits {
    fn index(direction: Direction) -> usize {
        match direction {
            Direction::Read => 0,
            Direction::Write => 1,
        }
    }

    /// Whether the last stream transfer in `direction` came up short.
    pub(super) fn came_up_short(&self, direction: Direction) -> bool {
        self.short[Self::index(direction)].load(Ordering::Relaxed)
    }

    /// Records whether a stream transfer in `direction` came up short.
    pub(super) fn record(&self, direction: Direction, short: bool) {
        self.short[Self::index(direction)].store(short, Ordering::Relaxed);
    }

    /// When a wait in `direction` that starts now must end, from the
    /// socket's `SO_RCVTIMEO` / `SO_SNDTIMEO`.
    pub(super) fn deadline(&self, direction: Direction) -> Option<Instant> {
        let timeout = match direction {
            Direction::Read => self.socket.read_timeout(),
            Direction::Write => self.socket.write_timeout(),
        };
        timeout.and_then(|timeout| Instant::now().checked_add(timeout))
    }
}

struct Slot {
    /// Whether `waits` may hold something: lets `close` skip the lock
    /// for numbers no fiber waited on. Relaxed: the lock orders the rest.
    occupied: AtomicBool,
    waits: Mutex<Option<Arc<Waits>>>,
}

/// The chunks, by `fd / CHUNK`; each a leaked `[Slot; CHUNK]`, null until
/// first used. Published with Release, read with Acquire.
static CHUNKS: [AtomicPtr<Slot>; TRACKED_DESCRIPTORS / CHUNK] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; TRACKED_DESCRIPTORS / CHUNK];

/// The slot of `fd`, if its chunk exists (or is made, with `make`).
fn slot(fd: i32, make: bool) -> Option<&'static Slot> {
    let fd = usize::try_from(fd)
        .ok()
        .filter(|&fd| fd < TRACKED_DESCRIPTORS)?;
    let chunk = &CHUNKS[fd / CHUNK];
    let mut slots = chunk.load(Ordering::Acquire);
    if slots.is_null() {
        if !make {
            return None;
        }
        let fresh: Box<[Slot]> = (0..CHUNK)
            .map(|_| Slot {
                occupied: AtomicBool::new(false),
                waits: Mutex::new(None),
            })
            .collect();
        let fresh = Box::into_raw(fresh).cast::<Slot>();
        slots = match chunk.compare_exchange(
            std::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(theirs) => {
                // SAFETY: `fresh` came from `Box::into_raw` of a boxed
                // slice of `CHUNK` slots just above and was never shared.
                drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(fresh, CHUNK)) });
                theirs
            }
        };
    }
    // SAFETY: a published chunk is `CHUNK` slots that are never freed,
    // and `fd % CHUNK` is inside it.
    Some(unsafe { &*slots.add(fd % CHUNK) })
}

/// The waits of `fd` for the calling fiber's runtime, made (with the
/// socket timeouts read from the kernel, for a socket) if there are none.
/// `None` if another runtime's fibers are waiting on it, or it is beyond
/// the table: the caller then blocks in the kernel.
pub(super) fn get(fd: i32, fiber: CurrentFiber, socket: bool) -> Option<Arc<Waits>> {
    let slot = slot(fd, true)?;
    let reactor = &fiber.shared().reactor;
    let mut waits = slot.waits.lock_unpoisoned();
    if let Some(existing) = waits.as_ref() {
        if Arc::ptr_eq(&existing.reactor, reactor) {
            return Some(existing.clone());
        }
        if Arc::strong_count(existing) > 1 {
            return None; // in use by a fiber of its own runtime
        }
    }
    let fresh = Arc::new(Waits {
        reactor: reactor.clone(),
        socket: Socket::new(RawDescriptor(fd)),
        short: [AtomicBool::new(false), AtomicBool::new(false)],
    });
    if socket {
        let (read, write) = crate::sys::interpose::socket_timeouts(fd);
        set_timeouts(&fresh.socket, Some(read), Some(write));
    }
    slot.occupied.store(true, Ordering::Relaxed);
    // The one it replaces (another runtime's, unused) deregisters here,
    // under the lock, while the number is still open.
    *waits = Some(fresh.clone());
    Some(fresh)
}

/// The waits of `fd` for the calling fiber's runtime, if it has some;
/// makes none (one relaxed load for a number no fiber waited on).
pub(super) fn existing(fd: i32, fiber: CurrentFiber) -> Option<Arc<Waits>> {
    let slot = slot(fd, false)?;
    if !slot.occupied.load(Ordering::Relaxed) {
        return None;
    }
    let waits = slot.waits.lock_unpoisoned();
    let waits = waits.as_ref()?;
    Arc::ptr_eq(&waits.reactor, &fiber.shared().reactor).then(|| waits.clone())
}

/// Drops the table's waits of `fd`, deregistering them (the number is
/// still open: the hooks call this before closing it). Allocates nothing,
/// and takes the slot's lock only if a fiber ever waited on the number.
pub(crate) fn forget(fd: i32) {
    let Some(slot) = slot(fd, false) else { return };
    if !slot.occupied.load(Ordering::Relaxed) {
        return;
    }
    let waits = {
        let mut waits = slot.waits.lock_unpoisoned();
        slot.occupied.store(false, Ordering::Relaxed);
        waits.take()
    };
    drop(waits);
}

/// Records a socket timeout the program set, for the waits of `fd` if it
/// has any (others read the timeouts when they are made).
pub(crate) fn timeout_set(fd: i32, write: bool, timeout: Option<Duration>) {
    let Some(slot) = slot(fd, false) else { return };
    if !slot.occupied.load(Ordering::Relaxed) {
        return;
    }
    if let Some(waits) = slot.waits.lock_unpoisoned().as_ref() {
        let (read, write) = if write {
            (None, Some(timeout))
        } else {
            (Some(timeout), None)
        };
        set_timeouts(&waits.socket, read, write);
    }
}

fn set_timeouts(
    socket: &Socket<RawDescriptor>,
    read: Option<Option<Duration>>,
    write: Option<Option<Duration>>,
) {
    // `None` and non-zero durations are never refused.
    if let Some(read) = read {
        let _ = socket.set_timeout(Direction::Read, read);
    }
    if let Some(write) = write {
        let _ = socket.set_timeout(Direction::Write, write);
    }
}
