//! # spindle: stackful fibers on a work-stealing M:N scheduler
//!
//! A *fiber* is a function running on its own small stack, like a thread,
//! but scheduled by spindle onto a few OS *worker* threads instead of by the
//! kernel. Creating one costs two heap allocations and a queue push instead
//! of a new OS thread (its stack comes from a pool when it first runs),
//! switching between them costs a stack switch instead of a trip through
//! the kernel, and a parked one costs the stack
//! pages it touched, often a single page, so a program can keep a million
//! of them alive. The repository's `docs/benchmarks.md` has the figures
//! beside `std::thread`'s, with the commands that print them.
//!
//! ```
//! let rt = spindle::Runtime::new().unwrap();
//! let total: u64 = rt.block_on(|| {
//!     let fibers: Vec<_> = (1..=1000u64).map(|i| spindle::spawn(move || i)).collect();
//!     fibers.into_iter().map(|f| f.join().unwrap()).sum()
//! });
//! assert_eq!(total, 500_500);
//! ```
//!
//! The API follows `std::thread`: [`spawn`] returns a [`JoinHandle`] whose
//! [`join`](JoinHandle::join) returns the fiber's value or its panic;
//! [`park`], [`park_timeout`], [`Fiber::unpark`], [`yield_now`] and
//! [`current`] behave like their `std::thread` namesakes, and work from
//! plain threads too.
//! Unlike a thread, a fiber can be cancelled: [`JoinHandle::cancel`]
//! unwinds it from the wait it is parked in (or its next), running its
//! destructors; [`shield`] and [`is_cancelled`] let it protect a critical
//! section and notice.
//!
//! No `Runtime` is needed to start: [`spawn`] on a plain thread, and
//! [`run`] (the body of `main`), use a process-wide [`default_runtime`]
//! that starts at the first use. [`scope()`] runs fibers that may borrow
//! from the caller, and cancels them all at the first panic or at a
//! deadline; [`test::run`] shows a test's fiber panics in that test's
//! own output.
//!
//! # Fibers move between threads
//! A fiber that parks or yields may resume on a different worker thread
//! (that is how idle workers take work from busy ones). Rust cannot see
//! this, so one rule is yours to keep: **do not hold anything tied to the OS
//! thread across a call that can park or yield** (`park`, `yield_now`,
//! `JoinHandle::join`, waiting on a `spindle::sync` primitive):
//!
//! - a reference obtained from a `thread_local!` (`LOCAL.with(|v| ...)`
//!   whose closure parks): after the move it points at another thread's
//!   slot, which that thread may be using (use `spindle::fiber_local!` for
//!   values that must survive a park);
//! - a `std::sync::MutexGuard` or `RwLock` guard: it would be released from
//!   another thread, and while parked it blocks every fiber and thread that
//!   wants the lock, including, possibly, the one that would wake you;
//! - other thread-affine handles (`Rc` shared with thread-locals, OpenGL
//!   contexts, thread ids you compare later).
//!
//! Short critical sections with std locks that do not park inside are fine.
//! Use the fiber-aware primitives in [`sync`] to wait.
//!
//! # Stacks
//! Every fiber runs on a guarded stack (a write past its end hits a guard
//! page and the process aborts with `fiber '<name>' (id N) has overflowed its
//! stack of N KiB`, as std does for threads). Stacks are carved from large
//! address-space reservations with `MADV_GUARD_INSTALL` guards (Linux 6.13+),
//! so a million fibers fit under the kernel's default limit of 65530 memory
//! mappings; on older kernels spindle falls back to `mprotect` guards within
//! a budget and [`try_spawn`] reports when it is used up. The default size
//! is [`DEFAULT_STACK_SIZE`]; see [`Builder::stack_size`] and
//! [`fiber::Builder::stack_size`].
//!
//! # Where to read next
//! `ARCHITECTURE.md` at the repository root walks through the code; the
//! scheduler's design comment is in `runtime/scheduler/mod.rs`.

#![warn(
    missing_docs,
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks
)]

mod blocking;
mod builder;
mod default_runtime;
pub mod fiber;
pub mod io;
mod lock;
mod loom;
mod metrics;
mod padded;
mod runtime;
mod scheduler;
mod sys;
mod thread_pool;
mod trace;

pub mod fs;
pub mod future;
pub mod process;
pub mod scope;
pub mod shard;
pub mod signal;
pub mod sync;
pub mod test;
pub mod time;

pub use blocking::blocking;
pub use builder::{Builder, DEFAULT_SHUTDOWN_GRACE, DEFAULT_STACK_SIZE};
pub use default_runtime::{default_runtime, run, spawn, try_spawn};
pub use fiber::join::{JoinError, JoinHandle};
pub use fiber::spawn::{LimitKind, SpawnError};
pub use fiber::stack::StackStats;
pub use fiber::{
    current, is_cancelled, park, shield, try_current, yield_now, Fiber, FiberDump, FiberId,
};
#[doc(inline)]
pub use io::net;
pub use metrics::{IoMetrics, Metrics, WorkerMetrics};
pub use runtime::{BlockingPoolStats, Runtime, ShutdownReport};
pub use scheduler::handoff::{HandoffReport, HeldState};
pub use scope::scope;
pub use time::park_timeout;

/// Process-wide facts the examples and tests print.
pub mod os {
    /// How many memory mappings this process holds now (the kernel limits
    /// it to `vm.max_map_count`).
    pub fn map_count() -> usize {
        crate::sys::memory::map_count()
    }
}
