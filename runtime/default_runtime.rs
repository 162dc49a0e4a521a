//! The process-wide default runtime: what [`spawn`] uses on a plain
//! thread, and [`run`], the one-line `main`. [`spawn`], [`try_spawn`] and
//! `fiber::Builder::spawn`, which choose the runtime a spawn goes to (the
//! calling fiber's, or this one), are defined here, above `fiber/`.
//!
//! # Design
//! Like Go's scheduler, which every program has without asking, and
//! `may`'s `go!`, a program may spawn fibers without building a
//! [`Runtime`] first. The first [`spawn`](crate::spawn) (or [`run`],
//! [`default_runtime`], [`scope`](crate::scope())) outside a fiber starts a
//! runtime kept in a process-wide `OnceLock`; later ones find it there.
//! A fiber always spawns on its own runtime, so explicit runtimes work as
//! before, side by side with the default one.
//!
//! **Settings.** The default runtime takes [`Builder`]'s defaults, and its
//! worker count from the `SPINDLE_WORKERS` environment variable when that
//! is set (as `GOMAXPROCS` does for Go). A value that is not a whole
//! number in the builder's range is refused with a message naming the
//! variable and its range, at the first use, which panics (there is
//! nothing to return an error to). A program that wants other settings
//! gives them once, before the first use, with
//! [`Builder::build_default`]; its own worker count wins over the
//! variable. A second setting, or one after the lazy start, is refused:
//! the runtime already running cannot change.
//!
//! **Lifetime.** The default runtime is never shut down or dropped: a
//! `static` is not dropped at process exit, and a runtime that other
//! threads may still be spawning on cannot be shut down under them. When
//! `main` returns the process exits with the default runtime's fibers
//! still where they were, unwound by nobody, as a std program's threads
//! end with `main`. So what only shutdown does is not done for it: no
//! [`ShutdownReport`](crate::ShutdownReport), no trace file
//! (`SPINDLE_TRACE`, [`Builder::trace`]). A program that needs those
//! builds its own [`Runtime`].
//!
//! **Processes.** A shard ([`crate::shard`]) is a new program (fork and
//! exec), with a default runtime of its own if it uses one. A process
//! forked *without* exec after the default runtime started would find the
//! runtime's state copied but none of its worker threads (fork copies only
//! the calling thread); the default runtime remembers the process that
//! started it and refuses, with a clear panic, to be used from another.
//!
//! Rejected: starting the default runtime from a static initializer
//! before `main` (Rust has none, and a runtime nobody uses would cost its
//! threads); making `spawn` on a plain thread an error (every port of a
//! `go!`-style program then needs its own `OnceLock<Runtime>`); a
//! thread-local "current runtime" entered with a guard, tokio's design
//! (it answers which of several runtimes, which a fiber already knows;
//! for plain threads one process-wide default is the common case).

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use crate::builder::{Builder, MAX_WORKERS};
use crate::fiber::join::JoinHandle;
use crate::fiber::spawn::{Builder as FiberBuilder, SpawnError};
use crate::runtime::Runtime;
use crate::scheduler::Shared;

/// The environment variable that sets the default runtime's workers.
pub(crate) const WORKERS_VARIABLE: &str = "SPINDLE_WORKERS";

/// The default runtime, once started; never dropped (module docs).
static DEFAULT: OnceLock<Runtime> = OnceLock::new();

/// The id of the process that started [`DEFAULT`]: a fork's child has
/// another (module docs, "Processes"). Written before `DEFAULT` is set;
/// read after it was found set (the `OnceLock` orders the two).
static STARTED_BY: AtomicU32 = AtomicU32::new(0);

/// The process-wide default runtime, started now if it has not been (the
/// module's design: `SPINDLE_WORKERS` workers, or
/// [`Builder::build_default`]'s settings). It is never shut down.
///
/// ```
/// let rt = spindle::default_runtime();
/// assert!(rt.workers() >= 1);
/// // `spindle::spawn` on a plain thread spawns here.
/// assert_eq!(spindle::spawn(|| 6 * 7).join().unwrap(), 42);
/// ```
///
/// # Panics
/// When the default runtime cannot start: `SPINDLE_WORKERS` is not a whole
/// number from 1 to the builder's most workers (the message names the
/// variable and the range), or a worker thread cannot be started. And in a
/// process forked without exec from the one that started it.
pub fn default_runtime() -> &'static Runtime {
    let runtime = DEFAULT.get_or_init(|| {
        let builder = match from_environment(Builder::new()) {
            Ok(builder) => builder,
            Err(error) => panic!("spindle: the default runtime cannot start: {error}"),
        };
        start(builder)
            .unwrap_or_else(|error| panic!("spindle: the default runtime cannot start: {error}"))
    });
    let started_by = STARTED_BY.load(Ordering::Relaxed);
    assert!(
        started_by == std::process::id(),
        "spindle: the default runtime was started by process {started_by}, and this process \
         ({}) is a copy of it made by fork without exec: the runtime's worker threads did not \
         survive the fork; exec a new program, or build a Runtime in the child",
        std::process::id()
    );
    runtime
}

/// The default runtime's scheduler, for `spawn` on a plain thread.
pub(crate) fn default_shared() -> &'static Arc<Shared> {
    default_runtime().shared()
}

/// Whether `shared` is the default runtime's (reports to a caller are
/// kept to the default runtime: `test.rs`).
pub(crate) fn is_default(shared: &Arc<Shared>) -> bool {
    DEFAULT
        .get()
        .is_some_and(|runtime| Arc::ptr_eq(runtime.shared(), shared))
}

/// Starts `builder`'s runtime as the default one. (`DEFAULT` is set by the
/// caller, which alone knows whether it won.)
fn start(builder: Builder) -> io::Result<Runtime> {
    STARTED_BY.store(std::process::id(), Ordering::Relaxed);
    builder.build()
}

/// `builder` with its worker count from `SPINDLE_WORKERS` when the
/// variable is set and the builder has none of its own.
fn from_environment(builder: Builder) -> io::Result<Builder> {
    if builder.sets_workers() {
        return Ok(builder);
    }
    match std::env::var_os(WORKERS_VARIABLE) {
        None => Ok(builder),
        Some(value) => Ok(builder.workers(parse_workers(&value.to_string_lossy())?)),
    }
}

/// A `SPINDLE_WORKERS` value: a whole number in the builder's range.
fn parse_workers(value: &str) -> io::Result<usize> {
    match value.trim().parse::<usize>() {
        Ok(count) if (1..=MAX_WORKERS).contains(&count) => Ok(count),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{WORKERS_VARIABLE}={value:?} is not a worker count: it takes a whole number \
                 from 1 to {MAX_WORKERS}"
            ),
        )),
    }
}

impl Builder {
    /// Starts this builder's runtime as the process-wide default one (see
    /// [`default_runtime`]) and returns it. Call it once, before anything
    /// uses the default runtime; the worker count set here wins over
    /// `SPINDLE_WORKERS`, which applies where none is set.
    ///
    /// ```
    /// let rt = spindle::Builder::new().workers(2).build_default().unwrap();
    /// assert_eq!(rt.workers(), 2);
    /// // `spindle::spawn` on a plain thread, and `spindle::run`, use it.
    /// assert_eq!(spindle::default_runtime().workers(), 2);
    /// assert_eq!(spindle::run(|| spindle::spawn(|| 2 + 2).join().unwrap()), 4);
    /// // Once it runs, it cannot be set again.
    /// let again = spindle::Builder::new().build_default().unwrap_err();
    /// assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
    /// ```
    ///
    /// # Errors
    /// `AlreadyExists` if the default runtime has started (lazily, or by an
    /// earlier call); `InvalidInput` for a setting out of range, or a bad
    /// `SPINDLE_WORKERS`; the OS's error if a worker thread cannot start.
    pub fn build_default(self) -> io::Result<&'static Runtime> {
        let already = || {
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "Builder::build_default: the default runtime has already started (it starts \
                 at the first spawn outside a fiber, or an earlier build_default); set it up \
                 once, before anything uses it",
            )
        };
        if DEFAULT.get().is_some() {
            return Err(already());
        }
        let runtime = start(from_environment(self)?)?;
        match DEFAULT.set(runtime) {
            Ok(()) => Ok(default_runtime()),
            // Another thread started it meanwhile; this one goes again.
            Err(_runtime) => Err(already()),
        }
    }
}

/// Runs `f` as a fiber on the default runtime and returns its value: the
/// one-line `main` of a fiber program. The calling thread blocks until
/// `f` returns; a panic in `f` is re-raised on it, with its own payload
/// (so a panicking `main` exits as std's does). Like
/// [`Runtime::block_on`], `f` may borrow from the caller. Called on a
/// fiber, it simply calls `f`.
///
/// ```
/// // The whole of a program's `main`:
/// let mut words = vec!["fibers", "from"];
/// let count = spindle::run(|| {
///     words.push("main"); // `run`'s closure may borrow
///     let fibers: Vec<_> = words.iter().map(|&w| spindle::spawn(move || w.len())).collect();
///     fibers.into_iter().map(|f| f.join().unwrap()).sum::<usize>()
/// });
/// assert_eq!((count, words.len()), (14, 3));
/// ```
///
/// # Panics
/// When `f` panics, and when the default runtime cannot start (see
/// [`default_runtime`]).
#[track_caller]
pub fn run<'a, F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'a,
    T: Send + 'a,
{
    if crate::fiber::CurrentFiber::get().is_some() {
        return f();
    }
    default_runtime().block_on(f)
}

/// Spawns a fiber on the current runtime and returns its [`JoinHandle`],
/// like `std::thread::spawn`.
///
/// The fiber runs `f` on its own stack; a panic inside it is caught and
/// handed to the joiner, and the worker thread carries on. Called from a
/// fiber, it spawns on that fiber's runtime; from a plain thread, on the
/// process-wide [`default_runtime`], which starts
/// then if it has not.
///
/// # Panics
/// When the fiber cannot be spawned (see [`try_spawn`]), or the default
/// runtime cannot start.
///
/// ```
/// // From a plain thread: the default runtime.
/// assert_eq!(spindle::spawn(|| "anywhere").join().unwrap(), "anywhere");
///
/// let rt = spindle::Runtime::new().unwrap();
/// let sum = rt.block_on(|| {
///     let handles: Vec<_> = (0..10u64).map(|i| spindle::spawn(move || i * i)).collect();
///     handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
/// });
/// assert_eq!(sum, 285);
/// ```
#[track_caller]
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    FiberBuilder::new()
        .spawn(f)
        .unwrap_or_else(|error| panic!("spindle::spawn failed: {error}"))
}

/// Like [`spawn`], but returns an error instead of panicking when the fiber
/// cannot be spawned: the runtime's fiber limit is reached (or, on kernels
/// before 6.13, its budget of guarded stacks), no stack can be had (the OS
/// refuses memory for more and every one is in use), its stack size is out
/// of range, or the runtime is shutting down.
///
/// ```
/// let rt = spindle::Builder::new().max_fibers(1).build().unwrap();
/// rt.block_on(|| {
///     // The fiber running this closure is the one live fiber allowed.
///     let error = spindle::try_spawn(|| ()).unwrap_err();
///     assert!(error.to_string().contains("max_fibers"), "{error}");
/// });
/// ```
#[track_caller]
pub fn try_spawn<F, T>(f: F) -> Result<JoinHandle<T>, SpawnError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    FiberBuilder::new().spawn(f)
}

impl FiberBuilder {
    /// Spawns the fiber on the current runtime: the one whose fiber calls
    /// this, or on a plain thread the
    /// [`default_runtime`] ([`FiberBuilder::spawn_on`]
    /// names another).
    ///
    /// # Panics
    /// On a plain thread, when the default runtime cannot start.
    #[track_caller]
    pub fn spawn<F, T>(self, f: F) -> Result<JoinHandle<T>, SpawnError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match crate::fiber::CurrentFiber::get() {
            Some(fiber) => self.spawn_in(fiber.shared(), f),
            None => self.spawn_in(default_shared(), f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_counts_in_range_are_taken() {
        assert_eq!(parse_workers("1").unwrap(), 1);
        assert_eq!(parse_workers(" 8 ").unwrap(), 8);
        assert_eq!(
            parse_workers(&MAX_WORKERS.to_string()).unwrap(),
            MAX_WORKERS
        );
    }

    #[test]
    fn bad_worker_counts_are_refused_naming_the_variable_and_range() {
        for bad in ["0", "-1", "two", "", "1.5", &(MAX_WORKERS + 1).to_string()] {
            let error = parse_workers(bad).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
            let message = error.to_string();
            assert!(message.contains(WORKERS_VARIABLE), "{message}");
            assert!(
                message.contains(&format!("1 to {MAX_WORKERS}")),
                "{message}"
            );
        }
    }
}
