//! [`Builder`]: every knob of a [`Runtime`], with its default and why.

use std::io;

use crate::scheduler::Config;
use crate::Runtime;

/// Default usable bytes of a fiber stack: **64 KiB**.
///
/// Chosen by measurement (see `tests/stack.rs`, `deep_std_paths_fit_the_default_stack`):
/// a fiber that formats with `format!`/`println!` and panics with
/// `RUST_BACKTRACE=full` (capture and symbolise a backtrace, the deepest
/// thing std commonly does) needs less than 48 KiB here, so 64 KiB leaves a
/// margin while a parked fiber still touches only the pages it used (RSS
/// does not depend on this size; address space and page-table density do).
/// Go starts goroutines at 8 KiB and grows them by copying, which stackful
/// fibers in Rust cannot do (pointers into the stack may exist).
pub const DEFAULT_STACK_SIZE: usize = 64 * 1024;

/// Configures and starts a [`Runtime`].
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
    mprotect_budget: Option<usize>,
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
            mprotect_budget: None,
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
    /// Each stack also has a 4 KiB guard page below it.
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

    /// Guards stacks with `mprotect` as on kernels before 6.13, with a
    /// budget of `stacks` guarded stacks. For testing that path on a newer
    /// kernel; not part of the stable API.
    #[doc(hidden)]
    pub fn mprotect_guards_with_budget(mut self, stacks: usize) -> Builder {
        self.mprotect_budget = Some(stacks);
        self
    }

    /// Starts the worker threads.
    ///
    /// # Errors
    /// If a worker thread cannot be started.
    pub fn build(self) -> io::Result<Runtime> {
        let workers = self
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        Runtime::start(Config {
            workers,
            stack_size: self.stack_size,
            max_fibers: self.max_fibers,
            thread_name: self.thread_name,
            mprotect_budget: self.mprotect_budget,
        })
    }
}
