//! Fiber-aware synchronization: primitives that park a fiber (leaving its
//! worker free) or block a plain thread, whichever calls them.
//!
//! - [`Mutex`]: mutual exclusion, with a hand-off that bounds starvation
//!   and std's poisoning;
//! - [`Condvar`]: wait for a condition under a [`Mutex`];
//! - [`RwLock`]: readers or one writer; a queued writer stops new readers;
//! - [`Semaphore`]: FIFO permits; [`Barrier`]: reusable, one leader per
//!   generation; [`Latch`]: a count-down latch; [`WaitGroup`]: Go's
//!   `Add`/`Done`/`Wait`, reusable;
//! - [`OnceCell`]: initialised once, other callers park meanwhile;
//! - [`mpsc`]: `channel`, `sync_channel` (bounded and rendezvous),
//!   multi-consumer, with std's errors; [`oneshot`]; [`Select`], the first
//!   of several receives, sends, fibers finishing, timeouts and socket
//!   readiness, reusable in a loop;
//! - [`FiberLocalKey`] and `spindle::fiber_local!`: per-fiber values, the
//!   replacement for `thread_local!` references held across a park.
//!
//! All of them are built on one idea, `Waiter` in `fiber/waiter.rs`: a
//! waiter is either a fiber or a thread, and waking it is `Fiber::unpark`
//! or `Thread::unpark`. `waitlist.rs` queues waiters for the Mutex, the
//! Condvar, the WaitGroup and the Latch's timed waits (and I/O readiness);
//! the channels queue theirs under their own state lock, a spin lock
//! (`spin_lock.rs`), and hand messages to them directly
//! (`mpsc/waiting.rs`); a select queues one node on all of its channels
//! (`select/`). `grant.rs` is a queue that grants ownership in FIFO order
//! for the RwLock, Semaphore, Barrier and OnceCell. `spin.rs` and
//! `poison.rs` are what the Mutex and the RwLock share: the short spin
//! before they queue, and std's poisoning.
//!
//! Unlike std's locks, spindle's guards may be held across a park or a
//! yield: the lock does not belong to an OS thread. (std's may not; see the
//! crate docs, "Fibers move between threads".)

mod barrier;
mod condvar;
mod grant;
mod latch;
pub(crate) mod local;
pub mod mpsc;
mod mutex;
mod once;
pub mod oneshot;
mod poison;
mod rwlock;
mod select;
mod semaphore;
mod spin;
mod spin_lock;
mod wait_group;
pub(crate) mod waitlist;

pub use barrier::{Barrier, BarrierWaitResult};
pub use condvar::{Condvar, WaitTimeoutResult};
pub use latch::Latch;
pub use local::{AccessError, FiberLocalKey};
pub use mutex::{Mutex, MutexGuard, HAND_OFF_AFTER};
pub use once::OnceCell;
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use select::{Select, SelectTimeoutError, TrySelectError};
pub use semaphore::{Semaphore, SemaphorePermit};
pub use wait_group::WaitGroup;
