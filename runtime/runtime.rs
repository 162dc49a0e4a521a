//! [`Runtime`]: starting, using and shutting down a set of workers.
//!
//! Also here, beside `Runtime::start`, the two builder methods that take
//! or make a `Runtime`: [`Builder::build`] and
//! [`fiber::Builder::spawn_on`](FiberBuilder::spawn_on). The builders'
//! modules record settings only, so they depend on nothing above the
//! scheduler.

use std::io;
use std::sync::Arc;
use std::thread;

use crate::builder::Builder;
use crate::fiber::join::JoinHandle;
use crate::fiber::spawn::{Builder as FiberBuilder, SpawnError};
use crate::fiber::stack::StackStats;
use crate::scheduler::{on_worker_thread, Config, Shared};

/// A fiber runtime: worker threads that run fibers, M:N.
///
/// Dropping it shuts it down (see [`Runtime::shutdown`]).
///
/// ```
/// let rt = spindle::Runtime::new().unwrap();
/// let handle = rt.spawn(|| "spawned from a plain thread");
/// assert_eq!(handle.join().unwrap(), "spawned from a plain thread");
/// ```
pub struct Runtime {
    shared: Arc<Shared>,
    /// The worker threads and, last, the monitor thread.
    threads: Vec<thread::JoinHandle<()>>,
}

/// What [`Runtime::shutdown`] did.
///
/// Every fiber that had not finished is cancelled, and its joiner gets
/// `JoinError::is_cancelled`: a started one is unwound (its destructors
/// run, on its own stack; see [`Runtime::shutdown`]), an unstarted one has
/// its closure dropped. A fiber that cannot be unwound safely is *frozen*
/// instead, never to run again, and listed in [`frozen`](Self::frozen)
/// with the reason: too little stack left below its park point for an
/// unwind, a destructor that panicked during the unwind (which Rust
/// otherwise answers by aborting the process), or a destructor still
/// waiting when [`Builder::shutdown_grace`] ran out. A frozen fiber's stack
/// is left as it was and never freed (nor is the rest of the runtime's
/// stack memory), and the values on it are never dropped: a lock it held
/// stays held. Each freeze is also reported on stderr.
///
/// After a freeze for a panicking destructor, std's panic-hook lock stays
/// held by the frozen fiber: a later `std::panic::set_hook` or
/// `take_hook` blocks forever. That is the price of not aborting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Fibers that had not finished: `unwound + never_started +
    /// frozen.len()`.
    pub fibers_cancelled: usize,
    /// Started fibers unwound to their roots (their destructors ran).
    pub unwound: usize,
    /// Fibers that never started; their closures were dropped.
    pub never_started: usize,
    /// Fibers frozen instead of unwound, and why (see above).
    pub frozen: Vec<crate::fiber::FrozenFiber>,
    /// Worker threads joined.
    pub workers_joined: usize,
    /// The stack pool afterwards; `in_use` is the number of frozen fibers'
    /// stacks (0 without a freeze).
    pub stacks: StackStats,
    /// Sockets still registered with the reactor afterwards: 0 unless a
    /// socket outlives the runtime (one owned by a plain thread, say).
    /// Fibers unwound while waiting on a socket deregister it.
    pub io_registrations: usize,
}

/// The blocking pool's threads (see [`crate::blocking`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockingPoolStats {
    /// Threads alive now (busy or idle within their keep-alive).
    pub threads: usize,
    /// The most alive at once since the runtime started.
    pub peak_threads: usize,
}

/// Raw pointer that may cross to the worker running `block_on`'s fiber.
struct SendPtr<T>(*mut T);
// SAFETY: only dereferenced by the one fiber while `block_on` waits.
unsafe impl<T: Send> Send for SendPtr<T> {}

impl Runtime {
    /// A runtime with the default [`crate::Builder`] settings.
    ///
    /// # Errors
    /// If a worker thread cannot be started.
    pub fn new() -> io::Result<Runtime> {
        Builder::new().build()
    }

    fn start(config: Config) -> io::Result<Runtime> {
        let (shared, threads) = Shared::start(config)?;
        Ok(Runtime { shared, threads })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Runs `f` as a fiber and blocks the calling thread until it returns,
    /// returning its value; a panic in `f` resumes on the caller. Like
    /// `std::thread::scope`, `f` may borrow from the caller's stack.
    ///
    /// ```
    /// let rt = spindle::Runtime::new().unwrap();
    /// let words = vec!["fibers", "are", "cheap"];
    /// let total = rt.block_on(|| words.iter().map(|w| w.len()).sum::<usize>());
    /// assert_eq!(total, 14);
    /// ```
    ///
    /// # Panics
    /// When called from inside a fiber (it would block a worker thread: call
    /// the function directly, or spawn a fiber and join it), when `f`
    /// panics, or when the fiber cannot be spawned (the fiber limit).
    #[track_caller]
    pub fn block_on<'a, F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'a,
        T: Send + 'a,
    {
        assert!(
            !on_worker_thread(),
            "Runtime::block_on called from inside a fiber: it would block a worker thread; \
             call the function directly, or spawn a fiber and join it"
        );
        let mut slot: Option<T> = None;
        let out = SendPtr(&mut slot);
        let body: Box<dyn FnOnce() + Send + 'a> = Box::new(move || {
            let out = out;
            let value = f();
            // SAFETY: `slot` outlives the fiber (see below) and nothing else
            // touches it until the join returns.
            unsafe { *out.0 = Some(value) };
        });
        // Only the lifetime changes. This call does not return (nor unwind:
        // `join` cannot panic) until the fiber has finished: the join sees
        // the completion the fiber publishes after `body` ran and dropped its
        // captures, or, if it never ran, after `body` was dropped (spawn.rs).
        // The runtime cannot shut down meanwhile: `&self` is held.
        // SAFETY: hence `body` may borrow `'a` data though typed `'static`.
        let body: Box<dyn FnOnce() + Send + 'static> = unsafe { std::mem::transmute(body) };
        let handle = FiberBuilder::new()
            .spawn_in(&self.shared, body)
            .unwrap_or_else(|error| panic!("Runtime::block_on cannot spawn its fiber: {error}"));
        match handle.join() {
            Ok(()) => slot.expect("the fiber stored its result"),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => panic!("Runtime::block_on: {error}"),
        }
    }

    /// Spawns a fiber from any thread.
    ///
    /// # Panics
    /// When the fiber cannot be spawned (see [`Runtime::try_spawn`]).
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.try_spawn(f)
            .unwrap_or_else(|error| panic!("Runtime::spawn failed: {error}"))
    }

    /// Spawns a fiber from any thread, or says why it cannot.
    #[track_caller]
    pub fn try_spawn<F, T>(&self, f: F) -> Result<JoinHandle<T>, SpawnError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        FiberBuilder::new().spawn_in(&self.shared, f)
    }

    /// A list of the runtime's started, unfinished fibers: id, name, state,
    /// spawn location, and for each parked fiber a backtrace taken on its
    /// own stack (the fiber stays parked; `park` does not return). Fibers
    /// spawned and not yet started are only counted. May be called from any
    /// thread or fiber while fibers run; `Display` prints it. See
    /// [`FiberDump`](crate::fiber::FiberDump) for an example.
    ///
    /// The backtraces are taken on the calling thread, one parked fiber at a
    /// time, so a dump takes time in proportion to the parked fibers (the
    /// repository's `docs/decisions.md` has the figure). Called from a
    /// fiber, that time is taken from its worker. Symbols are resolved only
    /// when a backtrace is printed.
    pub fn dump(&self) -> crate::fiber::FiberDump {
        crate::fiber::dump::dump(&self.shared)
    }

    /// Number of worker threads (the runtime also runs one monitor thread).
    pub fn workers(&self) -> usize {
        self.shared.num_workers()
    }

    /// Fibers spawned and not yet finished. A fiber stops counting just
    /// after its `JoinHandle` can see its result (once its stack is back in
    /// the pool), so right after a `join` the count may lag by a moment.
    pub fn live_fibers(&self) -> usize {
        self.shared.live_fibers()
    }

    /// A snapshot of the runtime's counters: per worker (fibers run, next
    /// slot hits, injector pops, steals and attempts, parks and time
    /// parked, spawns and spawns sent to the backlog, hand-offs) and
    /// runtime-wide (spawned total, live fibers, the stack pool, mappings,
    /// blocking threads, pending timers, hand-off episodes and spare
    /// workers, I/O polls, events and registrations). See [`crate::Metrics`].
    ///
    /// ```
    /// let rt = spindle::Builder::new().workers(2).build().unwrap();
    /// rt.block_on(|| {
    ///     let fibers: Vec<_> = (0..10).map(|i| spindle::spawn(move || i)).collect();
    ///     fibers.into_iter().for_each(|f| { f.join().unwrap(); });
    /// });
    /// let metrics = rt.metrics();
    /// assert_eq!(metrics.spawned_total, 11); // the ten, and block_on's fiber
    /// assert_eq!(metrics.workers.len(), 2);
    /// ```
    pub fn metrics(&self) -> crate::Metrics {
        self.shared.metrics()
    }

    /// The blocking pool's thread counts now.
    pub fn blocking_pool_stats(&self) -> BlockingPoolStats {
        let (threads, peak_threads) = self.shared.blocking_threads();
        BlockingPoolStats {
            threads,
            peak_threads,
        }
    }

    /// Timers pending now (fibers parked with a deadline that has not
    /// passed and that were not woken earlier).
    pub fn pending_timers(&self) -> usize {
        self.shared.pending_timers()
    }

    /// The stack pool's counters now.
    pub fn stack_stats(&self) -> StackStats {
        self.shared.stack_stats()
    }

    /// Gives the memory of every free stack on the global lists back to the
    /// kernel now (worker caches keep theirs). The pool trims stacks idle
    /// for about a second on its own; call this after a burst to drop RSS
    /// to the floor at once.
    pub fn trim_stacks(&self) {
        self.shared.stacks.trim_all();
    }

    /// Shuts the runtime down and reports what it did. In order: new spawns
    /// fail; each worker finishes the slice it is running (fibers are not
    /// preempted, so a fiber that never yields delays this) and exits; then
    /// every fiber left (queued or parked mid-stack) is unwound, on a
    /// thread of the runtime's, so its destructors run, and its joiner gets
    /// `JoinError::is_cancelled`; every stack returns to the pool. A
    /// destructor may wait meanwhile: an untimed wait parks until it is
    /// woken, for at most [`Builder::shutdown_grace`], and a timed one
    /// times out at once. A fiber that cannot be unwound safely is frozen
    /// instead (see [`ShutdownReport`]). Dropping the runtime does the
    /// same.
    ///
    /// # Panics
    /// When called from one of this runtime's own fibers (it would wait for
    /// its own worker).
    pub fn shutdown(mut self) -> ShutdownReport {
        self.shutdown_now()
    }

    fn shutdown_now(&mut self) -> ShutdownReport {
        let on_own_worker = self.shared.is_own_worker_thread();
        assert!(
            !on_own_worker,
            "a spindle Runtime was dropped or shut down from inside one of its own fibers"
        );
        self.shared.begin_shutdown();
        // The last thread is the monitor, not a worker.
        let workers_joined = self.threads.len() - 1;
        for handle in self.threads.drain(..) {
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
        // Spare workers (`scheduler/handoff.rs`) run on pool threads, which
        // are not joined: wait until each has retired. No new one starts:
        // the monitor, which starts them, has been joined. A spare whose
        // fiber sits in a blocking call retires when the call returns, just
        // as a configured worker would be joined only then.
        while self.shared.spares_running() {
            thread::sleep(std::time::Duration::from_micros(100));
        }
        let cancelled = self.shared.cancel_remaining();
        self.shared.write_trace();
        if !cancelled.frozen.is_empty() {
            // Their stacks stay as they are; the free ones' memory can go.
            self.shared.stacks.trim_all();
        }
        ShutdownReport {
            fibers_cancelled: cancelled.unwound + cancelled.never_started + cancelled.frozen.len(),
            unwound: cancelled.unwound,
            never_started: cancelled.never_started,
            frozen: cancelled.frozen,
            workers_joined,
            stacks: self.shared.stack_stats(),
            io_registrations: self.shared.reactor.registrations(),
        }
    }
}

impl Builder {
    /// Starts the worker threads.
    ///
    /// # Errors
    /// `InvalidInput`, naming the knob and its range, if a setting is out
    /// of range (see the table in [`Builder`]); the OS's error if a worker
    /// thread cannot be started.
    pub fn build(self) -> io::Result<Runtime> {
        Runtime::start(self.into_config()?)
    }
}

impl FiberBuilder {
    /// Spawns the fiber on `runtime`, from any thread.
    #[track_caller]
    pub fn spawn_on<F, T>(self, runtime: &Runtime, f: F) -> Result<JoinHandle<T>, SpawnError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_in(runtime.shared(), f)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shutdown_now();
        }
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.workers())
            .field("live_fibers", &self.live_fibers())
            .finish_non_exhaustive()
    }
}
