//! [`Builder`]: every knob of a [`Runtime`], with its default and why.
//!
//! The builder only records settings; [`Builder::build`] (in `runtime.rs`,
//! beside `Runtime::start`) checks them against their ranges
//! (`Builder::into_config`), turns them into the scheduler's `Config` and
//! starts the runtime. A setting out of range is an `InvalidInput` error
//! from `build` that names the knob and its range, never an overflow, a
//! panic or a failure later on a worker. The ranges bound what the
//! runtime computes from the settings (slot counts, stack slots inside a
//! reservation, deadlines from durations), so no arithmetic on them can
//! overflow.
//!
//! [`Runtime`]: crate::Runtime

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::fiber::stack::StackPool;
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

/// Default shutdown grace period (`Builder::shutdown_grace`): a guess,
/// long enough for a plain thread that a destructor waits for to answer,
/// short enough that a wait nobody answers does not hold shutdown up for
/// long.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// The most worker threads a runtime may have: a guess, far above the cores
/// of any machine it is built for (more workers than cores only add
/// switching), and far below the limit of `Idle`'s packed counts.
pub(crate) const MAX_WORKERS: usize = 1024;

/// The most blocking-pool threads a runtime may allow: a guess, above the
/// kernel's default thread limits, so the cap binds before the OS does only
/// when the user means it to.
const MAX_BLOCKING_THREADS: usize = 1 << 16;

/// The most spare-worker slots a runtime may have. Each costs a `Remote`
/// and a deque buffer at start, a few KiB each, so this bounds that memory;
/// a guess, eight times the default.
const MAX_SPARE_WORKERS: usize = 4096;

/// The shortest hand-off threshold: a shorter one would make the monitor
/// check without pause.
const MIN_HANDOFF_THRESHOLD: Duration = Duration::from_micros(1);

/// The longest duration any knob takes: long enough for every use we know
/// of, short enough that a deadline computed from it never overflows.
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Configures and starts a [`Runtime`](crate::Runtime).
///
/// # Ranges
/// [`Builder::build`] checks every setting and refuses one out of range
/// with an `InvalidInput` error naming the knob and its range:
///
/// | knob | range |
/// |---|---|
/// | [`workers`](Builder::workers) | 1 to 1,024 |
/// | [`stack_size`](Builder::stack_size) | up to 1 GiB − 4 KiB (a stack and its guard page fit one reservation); rounded up to whole pages, at least 4 KiB |
/// | [`max_fibers`](Builder::max_fibers) | 1 and up |
/// | [`thread_name`](Builder::thread_name) | no NUL byte |
/// | [`max_blocking_threads`](Builder::max_blocking_threads) | 1 to 65,536 |
/// | [`blocking_keep_alive`](Builder::blocking_keep_alive) | up to 24 h |
/// | [`handoff_blocked_after`](Builder::handoff_blocked_after), [`handoff_running_after`](Builder::handoff_running_after) | 1 µs to 24 h |
/// | [`max_spare_workers`](Builder::max_spare_workers) | 0 to 4,096 |
/// | [`shutdown_grace`](Builder::shutdown_grace) | up to 24 h |
///
/// ```
/// let error = spindle::Builder::new().workers(0).build().unwrap_err();
/// assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
/// assert!(error.to_string().contains("Builder::workers"), "{error}");
/// ```
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
    shutdown_grace: Duration,
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
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }

    /// Number of worker threads, 1 to 1,024. Default:
    /// `std::thread::available_parallelism()` (one worker per core: more
    /// workers than cores only adds switching between OS threads, which is
    /// what fibers are there to avoid).
    pub fn workers(mut self, count: usize) -> Builder {
        self.workers = Some(count);
        self
    }

    /// Usable stack bytes of every fiber that does not ask for its own
    /// size (rounded up to whole pages), at most 1 GiB − 4 KiB. Default:
    /// [`DEFAULT_STACK_SIZE`]. Each stack also has a guard page below it.
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = bytes;
        self
    }

    /// The most fibers that may be alive (spawned and not finished) at once;
    /// `try_spawn` returns an error past it. Default: no limit of the
    /// runtime's own (memory is the limit). On kernels before 6.13 the
    /// guarded-stack budget (see [`crate::LimitKind::MappingBudget`]) may
    /// be smaller, and then it applies. At least 1.
    pub fn max_fibers(mut self, count: usize) -> Builder {
        self.max_fibers = count;
        self
    }

    /// Prefix of worker thread names; workers are named `<prefix>-<index>`.
    /// Default: `spindle-worker`. It may not contain a NUL byte.
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Builder {
        self.thread_name = prefix.into();
        self
    }

    /// The most threads the blocking pool ([`crate::blocking`]) may run at
    /// once, 1 to 65,536; further calls wait for one to finish. Default:
    /// 512, as tokio (enough for a burst of blocking calls, far below
    /// `threads-max`).
    pub fn max_blocking_threads(mut self, count: usize) -> Builder {
        self.max_blocking_threads = count;
        self
    }

    /// How long an idle blocking-pool thread waits for work before it
    /// exits, at most 24 h. Default: 10 s, as tokio: long enough to serve
    /// bursts without restarting threads, short enough that an idle program
    /// holds none.
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
    /// before the monitor hands its queued fibers to a spare worker thread;
    /// 1 µs to 24 h. Default: 20 µs. See `scheduler/handoff.rs` for the
    /// whole mechanism.
    pub fn handoff_blocked_after(mut self, threshold: Duration) -> Builder {
        self.handoff_blocked_after = threshold;
        self
    }

    /// The same for a fiber that is **computing** without yielding; 1 µs
    /// to 24 h. Default: 10 ms (Go's preemption slice), so ordinary slices
    /// never cause a hand-off.
    pub fn handoff_running_after(mut self, threshold: Duration) -> Builder {
        self.handoff_running_after = threshold;
        self
    }

    /// The most spare worker threads that hand-offs may run at once (and
    /// so the most workers that may be stuck at once with their queues
    /// rescued), 0 to 4,096. Default: 512, above the threads Go starts for
    /// the blocking-call workload of `examples/blocking.rs`. 0 turns
    /// hand-offs off. Each spare slot costs a small deque buffer at start.
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
    ///     // the worker too) until the queued fiber has run: with the one
    ///     // worker held, only a hand-off to a spare worker can run it.
    ///     while !waiting.is_finished() {
    ///         std::hint::spin_loop();
    ///     }
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

    /// How long shutdown waits for fibers that wait (untimed) inside a
    /// destructor while they are unwound: the wait is a real park, and the
    /// fiber carries on when something unparks it (another fiber being
    /// unwound, or a plain thread). Counted from the first such wait; once
    /// it is over, and nothing is left to run, every fiber still waiting
    /// is frozen and reported in [`ShutdownReport::frozen`]. At most 24 h.
    /// Default: 1 s ([`DEFAULT_SHUTDOWN_GRACE`]).
    ///
    /// [`ShutdownReport::frozen`]: crate::ShutdownReport::frozen
    pub fn shutdown_grace(mut self, grace: Duration) -> Builder {
        self.shutdown_grace = grace;
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

    /// The settings as the scheduler takes them (`Builder::build`), each
    /// checked against its range (the type docs' table).
    /// Whether [`Builder::workers`] was called: the default runtime takes
    /// `SPINDLE_WORKERS` only where it was not (`default_runtime.rs`).
    pub(crate) fn sets_workers(&self) -> bool {
        self.workers.is_some()
    }

    pub(crate) fn into_config(self) -> io::Result<Config> {
        let workers = match self.workers {
            Some(count) => count,
            // The default never fails: a machine with more cores than the
            // range allows gets the most it allows.
            None => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_WORKERS),
        };
        let (_, max_stack) = StackPool::size_range();
        Ok(Config {
            workers: in_range("workers", workers, 1, MAX_WORKERS)?,
            stack_size: in_range("stack_size", self.stack_size, 0, max_stack)?,
            max_fibers: in_range("max_fibers", self.max_fibers, 1, usize::MAX)?,
            thread_name: {
                if self.thread_name.contains('\0') {
                    return Err(out_of_range(
                        "thread_name",
                        format_args!("{:?}", self.thread_name),
                        "a name without a NUL byte",
                    ));
                }
                self.thread_name
            },
            force_mprotect: self.force_mprotect,
            max_blocking_threads: in_range(
                "max_blocking_threads",
                self.max_blocking_threads,
                1,
                MAX_BLOCKING_THREADS,
            )?,
            blocking_keep_alive: in_range(
                "blocking_keep_alive",
                self.blocking_keep_alive,
                Duration::ZERO,
                MAX_DURATION,
            )?,
            trace: self.trace,
            handoff: HandoffConfig {
                blocked_after: in_range(
                    "handoff_blocked_after",
                    self.handoff_blocked_after,
                    MIN_HANDOFF_THRESHOLD,
                    MAX_DURATION,
                )?,
                running_after: in_range(
                    "handoff_running_after",
                    self.handoff_running_after,
                    MIN_HANDOFF_THRESHOLD,
                    MAX_DURATION,
                )?,
                max_spares: in_range(
                    "max_spare_workers",
                    self.max_spare_workers,
                    0,
                    MAX_SPARE_WORKERS,
                )?,
                sink: self.on_handoff.0,
            },
            shutdown_grace: in_range(
                "shutdown_grace",
                self.shutdown_grace,
                Duration::ZERO,
                MAX_DURATION,
            )?,
        })
    }
}

/// `value` if it lies in `min..=max`, else the error `build` returns for
/// the knob.
fn in_range<T: PartialOrd + std::fmt::Debug>(
    knob: &str,
    value: T,
    min: T,
    max: T,
) -> io::Result<T> {
    if min <= value && value <= max {
        Ok(value)
    } else {
        Err(out_of_range(
            knob,
            format_args!("{value:?}"),
            format_args!("{min:?} ..= {max:?}"),
        ))
    }
}

/// The `InvalidInput` error for a knob set out of its range.
fn out_of_range(
    knob: &str,
    value: impl std::fmt::Display,
    range: impl std::fmt::Display,
) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("spindle::Builder::{knob}({value}) is out of range: it takes {range}"),
    )
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
        assert_eq!(builder.shutdown_grace, Duration::from_secs(1));
    }

    /// The ranges the type docs' table states in words.
    #[test]
    fn the_documented_ranges_are_the_ranges() {
        assert_eq!(MAX_WORKERS, 1024);
        assert_eq!(StackPool::size_range(), (4 * 1024, (1 << 30) - 4 * 1024));
        assert_eq!(MAX_BLOCKING_THREADS, 65_536);
        assert_eq!(MAX_DURATION, Duration::from_secs(24 * 3600));
        assert_eq!(MIN_HANDOFF_THRESHOLD, Duration::from_micros(1));
        assert_eq!(MAX_SPARE_WORKERS, 4096);
    }

    #[test]
    fn knobs_out_of_range_are_refused_by_name() {
        let refused = |builder: Builder, knob: &str| {
            let error = builder.into_config().err().expect("refused");
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
            let message = error.to_string();
            assert!(message.contains(&format!("Builder::{knob}(")), "{message}");
            assert!(message.contains("out of range"), "{message}");
        };
        refused(Builder::new().workers(0), "workers");
        refused(Builder::new().workers(usize::MAX), "workers");
        refused(Builder::new().stack_size(usize::MAX), "stack_size");
        refused(Builder::new().stack_size(usize::MAX - 4095), "stack_size");
        refused(Builder::new().stack_size(1 << 30), "stack_size");
        refused(Builder::new().max_fibers(0), "max_fibers");
        refused(Builder::new().thread_name("a\0b"), "thread_name");
        refused(
            Builder::new().max_blocking_threads(0),
            "max_blocking_threads",
        );
        refused(
            Builder::new().blocking_keep_alive(Duration::MAX),
            "blocking_keep_alive",
        );
        refused(
            Builder::new().handoff_blocked_after(Duration::ZERO),
            "handoff_blocked_after",
        );
        refused(
            Builder::new().handoff_running_after(Duration::MAX),
            "handoff_running_after",
        );
        refused(
            Builder::new().max_spare_workers(usize::MAX),
            "max_spare_workers",
        );
        refused(
            Builder::new().max_spare_workers(1 << 40),
            "max_spare_workers",
        );
        refused(
            Builder::new().shutdown_grace(Duration::MAX),
            "shutdown_grace",
        );
        // The edges of the ranges are accepted.
        let (smallest, largest) = StackPool::size_range();
        for builder in [
            Builder::new().workers(MAX_WORKERS).stack_size(largest),
            Builder::new().stack_size(0).stack_size(smallest),
            Builder::new().max_spare_workers(0).max_fibers(usize::MAX),
            Builder::new().max_spare_workers(MAX_SPARE_WORKERS),
        ] {
            builder.into_config().expect("in range");
        }
    }
}
