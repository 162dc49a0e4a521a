//! [`Builder`]: every knob of a [`Runtime`], with its default and why.
//!
//! The builder only records settings; [`Builder::build`] (in `runtime.rs`,
//! beside `Runtime::start`) turns them into the scheduler's `Config` and
//! starts the runtime.
//!
//! [`Runtime`]: crate::Runtime

use std::sync::Arc;
use std::time::Duration;

use crate::scheduler::handoff::{
    stderr_sink, HandoffConfig, HandoffSink, DEFAULT_HANDOFF_BLOCKED, DEFAULT_HANDOFF_RUNNING,
    DEFAULT_MAX_SPARE_WORKERS,
};
use crate::scheduler::Config;
use crate::HandoffReport;

/// Default usable bytes of a fiber stack (64 KiB).
///
/// Measured: the deepest path std commonly takes (formatting, then a panic
/// that captures and symbolises a full backtrace) uses well under half of
/// it, which leaves the rest to the user's own frames (`tests/stack.rs`
/// checks that those paths fit; the figures are in the repository's
/// `docs/decisions.md`). A parked fiber's RSS is the pages it touched, not
/// this size; the size only costs address space and page-table density.
/// (Go starts goroutines small and grows them by copying, which stackful
/// fibers in Rust cannot do: pointers into the stack may exist.)
pub const DEFAULT_STACK_SIZE: usize = 64 * 1024;

/// Default cap on blocking-pool threads: tokio's, enough for a burst of
/// blocking calls and far below the kernel's thread limit.
const DEFAULT_MAX_BLOCKING_THREADS: usize = 512;

/// Default keep-alive of an idle blocking-pool thread: tokio's, long enough
/// to serve bursts without restarting threads, short enough that an idle
/// program holds none.
const DEFAULT_BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// Configures and starts a [`Runtime`](crate::Runtime).
///
/// ```
/// let rt = spindle::Builder::new()
///     .workers(2)
///     .stack_size(128 * 1024)
///     .thread_name("my-worker")
///     .build()
///     .unwrap();
/// assert_eq!(rt.workers(), 2);
/// assert_eq!(rt.block_on(|| 1 + 1), 2);
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    workers: Option<usize>,
    stack_size: usize,
    max_fibers: usize,
    thread_name: String,
    force_mprotect: bool,
    max_blocking_threads: usize,
    blocking_keep_alive: std::time::Duration,
    trace: Option<std::path::PathBuf>,
    handoff_blocked_after: Duration,
    handoff_running_after: Duration,
    max_spare_workers: usize,
    on_handoff: Sink,
}

/// The hand-off sink, with a `Debug` the builder can derive through.
#[derive(Clone)]
struct Sink(HandoffSink);

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fn(&HandoffReport)")
    }
}

impl Default for Builder {
    fn default() -> Builder {
        Builder::new()
    }
}

impl Builder {
    /// A builder with the defaults below.
    pub fn new() -> Builder {
        Builder {
            workers: None,
            stack_size: DEFAULT_STACK_SIZE,
            max_fibers: usize::MAX,
            thread_name: "spindle-worker".to_owned(),
            force_mprotect: false,
            max_blocking_threads: DEFAULT_MAX_BLOCKING_THREADS,
            blocking_keep_alive: DEFAULT_BLOCKING_KEEP_ALIVE,
            trace: None,
            handoff_blocked_after: DEFAULT_HANDOFF_BLOCKED,
            handoff_running_after: DEFAULT_HANDOFF_RUNNING,
            max_spare_workers: DEFAULT_MAX_SPARE_WORKERS,
            on_handoff: Sink(stderr_sink()),
        }
    }

    /// Number of worker threads. Default: `std::thread::available_parallelism()`
    /// (one worker per core: more workers than cores only adds switching
    /// between OS threads, which is what fibers are there to avoid).
    ///
    /// # Panics
    /// If `count` is 0.
    pub fn workers(mut self, count: usize) -> Builder {
        assert!(count > 0, "a runtime needs at least one worker");
        self.workers = Some(count);
        self
    }

    /// Usable stack bytes of every fiber that does not ask for its own
    /// size (rounded up to whole pages). Default: [`DEFAULT_STACK_SIZE`].
    /// Each stack also has a guard page below it.
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = bytes;
        self
    }

    /// The most fibers that may be alive (spawned and not finished) at once;
    /// `try_spawn` returns an error past it. Default: no limit of the
    /// runtime's own (memory is the limit). On kernels before 6.13 the
    /// guarded-stack budget (see [`crate::LimitKind::MappingBudget`]) may
    /// be smaller, and then it applies.
    ///
    /// # Panics
    /// If `count` is 0.
    pub fn max_fibers(mut self, count: usize) -> Builder {
        assert!(count > 0, "max_fibers must allow at least one fiber");
        self.max_fibers = count;
        self
    }

    /// Prefix of worker thread names; workers are named `<prefix>-<index>`.
    /// Default: `spindle-worker`.
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Builder {
        self.thread_name = prefix.into();
        self
    }

    /// The most threads the blocking pool ([`crate::blocking`]) may run at
    /// once; further calls wait for one to finish. Default: 512, as tokio
    /// (enough for a burst of blocking calls, far below `threads-max`).
    ///
    /// # Panics
    /// If `count` is 0.
    pub fn max_blocking_threads(mut self, count: usize) -> Builder {
        assert!(count > 0, "the blocking pool needs at least one thread");
        self.max_blocking_threads = count;
        self
    }

    /// How long an idle blocking-pool thread waits for work before it
    /// exits. Default: 10 s, as tokio: long enough to serve bursts without
    /// restarting threads, short enough that an idle program holds none.
    pub fn blocking_keep_alive(mut self, keep_alive: std::time::Duration) -> Builder {
        self.blocking_keep_alive = keep_alive;
        self
    }

    /// Records a timeline of what the workers do (fiber runs, worker
    /// sleeps, steals, spawns, hand-off episodes) and writes it to `path` as
    /// Chrome trace-event JSON when the runtime shuts down; open it in
    /// Perfetto. Default: off, unless the `SPINDLE_TRACE` environment
    /// variable names a file. Off, it costs one branch per recording site.
    pub fn trace(mut self, path: impl Into<std::path::PathBuf>) -> Builder {
        self.trace = Some(path.into());
        self
    }

    /// How long a worker may be held by one fiber that is **blocked in the
    /// kernel** (a raw blocking system call) while other fibers wait,
    /// before the monitor hands its queued fibers to a spare worker thread.
    /// Default: 20 µs. See `scheduler/handoff.rs` for the whole mechanism.
    pub fn handoff_blocked_after(mut self, threshold: Duration) -> Builder {
        self.handoff_blocked_after = threshold;
        self
    }

    /// The same for a fiber that is **computing** without yielding.
    /// Default: 10 ms (Go's preemption slice), so ordinary slices never
    /// cause a hand-off.
    pub fn handoff_running_after(mut self, threshold: Duration) -> Builder {
        self.handoff_running_after = threshold;
        self
    }

    /// The most spare worker threads that hand-offs may run at once (and
    /// so the most workers that may be stuck at once with their queues
    /// rescued). Default: 512, above the threads Go starts for the
    /// blocking-call workload of `examples/blocking.rs`. 0 turns hand-offs
    /// off. Each spare slot costs a small deque buffer at start.
    pub fn max_spare_workers(mut self, count: usize) -> Builder {
        self.max_spare_workers = count;
        self
    }

    /// Where hand-off reports go: called once per episode, when the fiber
    /// that held a worker gives it back, on that worker's thread (keep it
    /// short; a panic in it is caught and printed, the worker carries on).
    /// Default: one line on stderr.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// let reports = Arc::new(Mutex::new(Vec::new()));
    /// let sink = reports.clone();
    /// let rt = spindle::Builder::new()
    ///     .workers(1)
    ///     .on_handoff(move |report| sink.lock().unwrap().push(report.clone()))
    ///     .build()
    ///     .unwrap();
    /// rt.block_on(|| {
    ///     let waiting = spindle::spawn(|| ()); // queued behind the spinner
    ///     // Computes without yielding (as a raw blocking call would hold
    ///     // the worker too).
    ///     let start = std::time::Instant::now();
    ///     while start.elapsed() < std::time::Duration::from_millis(50) {}
    ///     waiting.join().unwrap();
    /// });
    /// // The report comes as the fiber hands its worker back, a moment
    /// // after `block_on` has its result.
    /// while reports.lock().unwrap().is_empty() {
    ///     std::thread::sleep(std::time::Duration::from_millis(1));
    /// }
    /// let reports = reports.lock().unwrap();
    /// assert_eq!(reports.len(), 1);
    /// assert!(reports[0].held_for >= std::time::Duration::from_millis(10));
    /// ```
    pub fn on_handoff(mut self, sink: impl Fn(&HandoffReport) + Send + Sync + 'static) -> Builder {
        self.on_handoff = Sink(Arc::new(sink));
        self
    }

    /// Guards stacks with `mprotect`, as on kernels before 6.13, with the
    /// budget computed from `vm.max_map_count` as there. For testing that
    /// path on a newer kernel; not part of the stable API.
    #[doc(hidden)]
    pub fn force_mprotect_guards(mut self) -> Builder {
        self.force_mprotect = true;
        self
    }

    /// The settings as the scheduler takes them (`Builder::build`).
    pub(crate) fn into_config(self) -> Config {
        let workers = self
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        Config {
            workers,
            stack_size: self.stack_size,
            max_fibers: self.max_fibers,
            thread_name: self.thread_name,
            force_mprotect: self.force_mprotect,
            max_blocking_threads: self.max_blocking_threads,
            blocking_keep_alive: self.blocking_keep_alive,
            trace: self.trace,
            handoff: HandoffConfig {
                blocked_after: self.handoff_blocked_after,
                running_after: self.handoff_running_after,
                max_spares: self.max_spare_workers,
                sink: self.on_handoff.0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The knobs' docs state their defaults in words for users; these are
    /// the words, so that a change of a default fails here until its doc
    /// says the new value too.
    #[test]
    fn the_documented_defaults_are_the_defaults() {
        let builder = Builder::new();
        assert_eq!(builder.stack_size, 64 * 1024);
        assert_eq!(builder.max_blocking_threads, 512);
        assert_eq!(builder.blocking_keep_alive, Duration::from_secs(10));
        assert_eq!(builder.handoff_blocked_after, Duration::from_micros(20));
        assert_eq!(builder.handoff_running_after, Duration::from_millis(10));
        assert_eq!(builder.max_spare_workers, 512);
    }
}
