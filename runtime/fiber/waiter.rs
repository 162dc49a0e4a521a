//! A party that waits: a fiber (parks, its worker runs others) or a plain
//! thread (blocks). Every primitive in `sync`, `JoinHandle::join` and
//! `blocking` park and wake through this.

use super::Fiber;
use crate::loom::thread;

/// Who to wake when a condition becomes true.
#[derive(Clone, Debug)]
pub(crate) enum Waiter {
    Fiber(Fiber),
    Thread(thread::Thread),
}

impl Waiter {
    /// The calling fiber, or the calling thread outside fibers.
    pub(crate) fn current() -> Waiter {
        match super::try_current() {
            Some(fiber) => Waiter::Fiber(fiber),
            None => Waiter::Thread(thread::current()),
        }
    }

    /// Whether this is the calling fiber, or the calling thread outside
    /// fibers (debug checks).
    pub(crate) fn is_current(&self) -> bool {
        match (self, super::try_current()) {
            (Waiter::Fiber(fiber), Some(current)) => fiber.id() == current.id(),
            (Waiter::Thread(thread), None) => thread.id() == thread::current().id(),
            _ => false,
        }
    }

    /// Wakes the waiter (its token is kept if it is not parked yet). By
    /// reference: waking costs no clone of the handle.
    pub(crate) fn wake(&self) {
        match self {
            Waiter::Fiber(fiber) => fiber.unpark(),
            Waiter::Thread(thread) => thread.unpark(),
        }
    }
}
