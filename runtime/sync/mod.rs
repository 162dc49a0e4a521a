//! Fiber-aware synchronization: primitives that park a fiber (leaving its
//! worker free) or block a plain thread, whichever calls them.
//!
//! - [`Latch`]: a count-down latch; waiters wake when it reaches zero.
//!
//! All of them are built on one idea, in `waiter.rs`: a waiter is either a
//! fiber or a thread, and waking it is `Fiber::unpark` or `Thread::unpark`.

mod latch;
pub(crate) mod waiter;

pub use latch::Latch;
