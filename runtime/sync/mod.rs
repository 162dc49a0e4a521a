//! Fiber-aware synchronization: primitives that park a fiber (leaving its
//! worker free) or block a plain thread, whichever calls them.
//!
//! - [`Mutex`]: mutual exclusion, with a hand-off that bounds starvation
//!   and std's poisoning;
//! - [`Condvar`]: wait for a condition under a [`Mutex`];
//! - [`Latch`]: a count-down latch; waiters wake when it reaches zero.
//!
//! All of them are built on one idea, in `waiter.rs`: a waiter is either a
//! fiber or a thread, and waking it is `Fiber::unpark` or `Thread::unpark`;
//! `waitlist.rs` queues waiters for the Mutex and the Condvar.
//!
//! Unlike std's locks, spindle's guards may be held across a park or a
//! yield: the lock does not belong to an OS thread. (std's may not; see the
//! crate docs, "Fibers move between threads".)

mod condvar;
mod latch;
mod mutex;
pub(crate) mod waiter;
mod waitlist;

pub use condvar::{Condvar, WaitTimeoutResult};
pub use latch::Latch;
pub use mutex::{Mutex, MutexGuard, HAND_OFF_AFTER};
