//! [`ScheduledIo`]: one registered socket's readiness and the parties
//! waiting on it.
//!
//! # Design
//! The reactor registers sockets edge-triggered: epoll reports a change of
//! readiness once, not for as long as it lasts. So readiness is remembered
//! here, in one atomic word, until an operation proves it stale by failing
//! with `WouldBlock`; only then is it cleared, and the party waits for the
//! next edge.
//!
//! The race that rule must survive: a fiber reads readiness, tries `read`,
//! gets `WouldBlock`; meanwhile data arrives and the reactor sets READABLE;
//! then the fiber clears READABLE and waits forever for an edge that has
//! already come. So the word also holds a **tick**, bumped by every
//! readiness event, and a clear only takes effect if the tick is still the
//! one the fiber read before its operation (tokio's `ScheduledIo` does the
//! same). An event in between leaves the bit set and the fiber retries.
//!
//! Waiting parties (fibers or plain threads) queue on a [`WaitList`] per
//! direction. A waiter checks readiness *under the list's lock* before
//! queuing, and the reactor sets readiness *before* taking that lock to
//! wake the list, so either the waiter sees the bit or the reactor sees the
//! waiter: no lost wake-up. The reactor wakes every waiter of a direction
//! once per event (each node is popped once: no fiber is woken twice by
//! one event); several fibers reading one socket race for the data and the
//! losers wait again.
//!
//! Closed states (READ_CLOSED, WRITE_CLOSED) are never cleared: after a
//! peer's FIN, `read` returns 0 at once, forever.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::sync::waitlist::{Node, WaitList};

/// Readiness bits in the low byte of the word.
pub(crate) const READABLE: usize = 1 << 0;
pub(crate) const WRITABLE: usize = 1 << 1;
pub(crate) const READ_CLOSED: usize = 1 << 2;
pub(crate) const WRITE_CLOSED: usize = 1 << 3;
pub(crate) const ERROR: usize = 1 << 4;
const READY_MASK: usize = 0xff;
/// The tick occupies the bits above the readiness byte.
const TICK_SHIFT: u32 = 8;

/// Which way an operation goes: what it waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// read, recv, accept: waits for READABLE (or closed, or an error).
    Read,
    /// write, send, connect: waits for WRITABLE (or closed, or an error).
    Write,
}

impl Direction {
    /// The bits that let an operation of this direction proceed.
    fn ready_mask(self) -> usize {
        match self {
            Direction::Read => READABLE | READ_CLOSED | ERROR,
            Direction::Write => WRITABLE | WRITE_CLOSED | ERROR,
        }
    }

    /// The bits a `WouldBlock` proves stale (closed states stay).
    fn clear_mask(self) -> usize {
        match self {
            Direction::Read => READABLE | ERROR,
            Direction::Write => WRITABLE | ERROR,
        }
    }
}

/// What a party saw before its operation: the whole word, tick included.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Observed(usize);

impl Observed {
    /// Whether `direction` was ready then.
    pub(crate) fn is_ready(self, direction: Direction) -> bool {
        self.0 & direction.ready_mask() != 0
    }
}

/// One registered socket's readiness and waiters.
///
/// # Invariants
/// The tick only grows (wrapping); the readiness bits are set only by the
/// reactor (`set`) and cleared only by `clear` with a matching tick.
pub(crate) struct ScheduledIo {
    /// `tick << TICK_SHIFT | readiness bits`. Set by the reactor thread
    /// (whichever worker or the monitor is polling), cleared by any party
    /// whose operation returned `WouldBlock`; read by everyone. AcqRel on
    /// updates: a waiter that sees the bit also sees what the event
    /// published (nothing else rides on it; the wait list's lock orders
    /// the wake-up itself).
    readiness: AtomicUsize,
    /// Parties waiting to read (or accept, or recv). Any thread, under the
    /// list's own lock.
    readers: WaitList,
    /// Parties waiting to write (or connect, or send).
    writers: WaitList,
}

impl ScheduledIo {
    pub(crate) fn new() -> ScheduledIo {
        ScheduledIo {
            readiness: AtomicUsize::new(0),
            readers: WaitList::new(),
            writers: WaitList::new(),
        }
    }

    /// The word now, to pass to `clear` after a `WouldBlock`.
    pub(crate) fn observe(&self) -> Observed {
        Observed(self.readiness.load(Ordering::Acquire))
    }

    /// The reactor's half: adds `bits`, bumps the tick, wakes the waiters
    /// of each direction the bits make ready. Returns how many were woken.
    pub(crate) fn set(&self, bits: usize) -> usize {
        let _ = self
            .readiness
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                let tick = (word >> TICK_SHIFT).wrapping_add(1);
                Some((tick << TICK_SHIFT) | (word & READY_MASK) | bits)
            });
        let mut woken = 0;
        for direction in [Direction::Read, Direction::Write] {
            if bits & direction.ready_mask() != 0 {
                woken += self.list(direction).notify_all();
            }
        }
        woken
    }

    /// Clears `direction`'s readiness if no event came since `observed`.
    pub(crate) fn clear(&self, observed: Observed, direction: Direction) {
        let tick = observed.0 >> TICK_SHIFT;
        let _ = self
            .readiness
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                (word >> TICK_SHIFT == tick).then_some(word & !direction.clear_mask())
            });
    }

    pub(crate) fn is_ready(&self, direction: Direction) -> bool {
        self.readiness.load(Ordering::Acquire) & direction.ready_mask() != 0
    }

    fn list(&self, direction: Direction) -> &WaitList {
        match direction {
            Direction::Read => &self.readers,
            Direction::Write => &self.writers,
        }
    }

    /// Parks the caller (fiber or thread) until `direction` is ready or
    /// `deadline` passes. Returns false on the deadline. A true return
    /// means "try again", not a promise: another party may have taken the
    /// data first.
    pub(crate) fn wait(&self, direction: Direction, deadline: Option<Instant>) -> bool {
        let list = self.list(direction);
        let node = {
            let mut queue = list.lock();
            // Under the lock: pairs with `set`, which publishes readiness
            // before it locks the list to wake it.
            if self.is_ready(direction) {
                return true;
            }
            WaitList::push(&mut queue)
        };
        list.wait(&node, deadline)
    }

    /// Queues the caller to be woken by `direction`'s next event, unless
    /// that direction is ready now (then `None`): a select's readiness arm,
    /// which parks on its own and takes the node out with
    /// [`ScheduledIo::unqueue`]. The same check under the lock as `wait`.
    pub(crate) fn queue(&self, direction: Direction) -> Option<Arc<Node>> {
        let mut queue = self.list(direction).lock();
        (!self.is_ready(direction)).then(|| WaitList::push(&mut queue))
    }

    /// Takes out a node [`ScheduledIo::queue`] queued, if the reactor has
    /// not popped it (an event's wake-up is for every waiter of the
    /// direction: none is owed to anyone else).
    pub(crate) fn unqueue(&self, direction: Direction, node: &Arc<Node>) {
        self.list(direction).remove(node);
    }

    /// Parties queued in either direction.
    #[cfg(test)]
    fn waiters(&self) -> usize {
        self.readers.lock().len() + self.writers.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_is_skipped_when_an_event_came_in_between() {
        let io = ScheduledIo::new();
        io.set(READABLE);
        let before = io.observe();
        io.set(READABLE); // the edge that arrives during the operation
        io.clear(before, Direction::Read);
        assert!(io.is_ready(Direction::Read), "the newer event must survive");
        io.clear(io.observe(), Direction::Read);
        assert!(!io.is_ready(Direction::Read));
    }

    #[test]
    fn closed_states_are_sticky() {
        let io = ScheduledIo::new();
        io.set(READABLE | READ_CLOSED);
        io.clear(io.observe(), Direction::Read);
        assert!(io.is_ready(Direction::Read));
        assert!(!io.is_ready(Direction::Write));
    }

    #[test]
    fn a_thread_waiting_is_woken_by_set() {
        let io = std::sync::Arc::new(ScheduledIo::new());
        let setter = io.clone();
        let thread = std::thread::spawn(move || {
            while setter.waiters() == 0 {
                std::thread::yield_now();
            }
            setter.set(WRITABLE)
        });
        assert!(io.wait(Direction::Write, None));
        assert_eq!(thread.join().unwrap(), 1);
    }
}
