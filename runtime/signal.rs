//! Waiting for Unix signals from fibers and threads: [`Signals`] and
//! [`ctrl_c`].
//!
//! ```
//! use spindle::signal::{Signals, SIGUSR1};
//!
//! let rt = spindle::Runtime::new().unwrap();
//! rt.block_on(|| {
//!     let signals = Signals::new(&[SIGUSR1]).unwrap();
//!     // Anything may send it; here, another process.
//!     let me = std::process::id().to_string();
//!     spindle::process::Command::new("kill").args(["-USR1", &me]).status().unwrap();
//!     assert_eq!(signals.recv(), SIGUSR1); // the fiber parks until it arrives
//! });
//! ```
//!
//! # How
//! A signal interrupts whichever thread the kernel picks, and a handler
//! may do almost nothing there: no lock, no allocation, no waking of a
//! fiber. So the handler (`sys/signal_pipe.rs`) only sets the signal's bit
//! in a process-wide pending set and writes a byte to a pipe. One plain
//! thread, the **dispatcher** (`spindle-signals`, started by the first
//! [`Signals::new`]), sleeps reading that pipe; at each wake-up it takes
//! the pending set and hands each signal to every live [`Signals`] that
//! asked for it, setting the signal in its own pending set and waking its
//! waiters through a `sync::Condvar`, so fibers park and plain threads
//! block alike.
//!
//! Every [`Signals`] sees every delivery of its signals (each has its own
//! pending set); within one `Signals`, one [`recv`](Signals::recv) takes
//! each. Deliveries of the same signal before a `recv` takes it count as
//! one, as the kernel merges a pending signal.
//!
//! **Beside other handlers.** The handler calls the one that was installed
//! before it, if that was a function: a handler a library or the program
//! installed first keeps running. The shard supervisor's
//! `watch_termination_signals` is a `Signals` for `SIGTERM` and `SIGINT`
//! itself, so it and the program's own `Signals` see each such signal. A
//! handler installed *after* ours that does not call ours in turn hides the
//! signal from us: install through this module, or chain.
//!
//! **The default action is gone.** Once a `Signals` has asked for a signal,
//! its default action (ending the process, for `SIGINT`, `SIGTERM`,
//! `SIGHUP`) is replaced for the rest of the process, also after the
//! `Signals` is dropped; with no `Signals` for it, the signal is then
//! ignored (tokio's `signal` and Go's `signal.Notify` without `Reset` do
//! the same).
//!
//! # Rejected
//! `signalfd`, or a thread in `sigwaitinfo`: both need the signal blocked
//! in every thread of the process, or a thread that has it unblocked takes
//! it with its default action, and threads started before us (the user's,
//! a library's, the test harness's) cannot be made to block it. A pipe per
//! `Signals` written by the handler: the handler would walk a list that
//! other threads change, which needs a lock or hazard pointers in a signal
//! handler. The reactor instead of a dispatcher thread: a process may run
//! several runtimes or none, and plain threads wait too.

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex as StdMutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::lock::MutexExt;
use crate::sync::{Condvar, Mutex};
use crate::sys::signal_pipe;

/// A Unix signal number, such as [`SIGTERM`].
///
/// ```
/// use spindle::signal::{Signal, SIGTERM};
/// assert_eq!(SIGTERM.to_string(), "SIGTERM");
/// assert_eq!(Signal::from_raw(SIGTERM.as_raw()), SIGTERM);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(i32);

impl Signal {
    /// The signal numbered `number` (a real-time one, for example), checked
    /// when it is passed to [`Signals::new`].
    ///
    /// ```
    /// let first_realtime = spindle::signal::Signal::from_raw(34);
    /// assert_eq!(first_realtime.as_raw(), 34);
    /// ```
    pub const fn from_raw(number: i32) -> Signal {
        Signal(number)
    }

    /// The signal's number.
    ///
    /// ```
    /// assert!(spindle::signal::SIGINT.as_raw() > 0);
    /// ```
    pub const fn as_raw(self) -> i32 {
        self.0
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match crate::sys::process::signal_name(self.0) {
            Some(name) => f.write_str(name),
            None => write!(f, "signal {}", self.0),
        }
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The terminal hung up, or, by convention, reload the configuration.
pub const SIGHUP: Signal = Signal(signal_pipe::SIGHUP);
/// Ctrl-C at the terminal (see [`ctrl_c`]).
pub const SIGINT: Signal = Signal(signal_pipe::SIGINT);
/// Ctrl-\ at the terminal.
pub const SIGQUIT: Signal = Signal(signal_pipe::SIGQUIT);
/// A polite request to end (`kill`'s default, a service manager stopping).
pub const SIGTERM: Signal = Signal(signal_pipe::SIGTERM);
/// For the program's own use.
pub const SIGUSR1: Signal = Signal(signal_pipe::SIGUSR1);
/// For the program's own use.
pub const SIGUSR2: Signal = Signal(signal_pipe::SIGUSR2);
/// A child process stopped or exited (`spindle::process` does not need it).
pub const SIGCHLD: Signal = Signal(signal_pipe::SIGCHLD);
/// A write to a pipe or socket with no reader (Rust programs ignore it
/// from the start, so writes fail with `BrokenPipe` instead).
pub const SIGPIPE: Signal = Signal(signal_pipe::SIGPIPE);
/// An `alarm` or interval timer ran out.
pub const SIGALRM: Signal = Signal(signal_pipe::SIGALRM);
/// The terminal's window changed size.
pub const SIGWINCH: Signal = Signal(signal_pipe::SIGWINCH);
/// The process continued after a stop.
pub const SIGCONT: Signal = Signal(signal_pipe::SIGCONT);

/// One [`Signals`]' share of the deliveries.
struct Subscriber {
    /// The signals it asked for (bit `n - 1` for signal `n`); immutable.
    wanted: u64,
    /// Signals delivered and not yet received, under a fiber-aware lock:
    /// the dispatcher sets bits, `recv` takes them.
    pending: Mutex<u64>,
    /// Notified (all waiters) by the dispatcher after it sets a bit.
    arrived: Condvar,
}

/// Every live subscriber, for the dispatcher; a short std lock, taken to
/// subscribe and once per dispatch (the dispatcher wakes nobody under it).
/// Dead entries are dropped at each dispatch and subscription.
static SUBSCRIBERS: StdMutex<Vec<Weak<Subscriber>>> = StdMutex::new(Vec::new());

/// Whether the dispatcher thread runs; under the lock, which serializes
/// starting it.
static DISPATCHER: StdMutex<bool> = StdMutex::new(false);

/// A subscription to some signals: every delivery of them after
/// [`Signals::new`] returned is kept until a `recv` takes it. Any number of
/// `Signals`, in any fibers and threads, may want the same signal; each
/// gets every delivery. Share one between waiters by reference (it is
/// `Sync`): then each delivery goes to one of them.
///
/// ```
/// use spindle::signal::{Signals, SIGUSR2};
///
/// let rt = spindle::Runtime::new().unwrap();
/// let received = rt.block_on(|| {
///     let waiters: Vec<_> = (0..3)
///         .map(|_| {
///             let signals = Signals::new(&[SIGUSR2]).unwrap(); // each its own
///             spindle::spawn(move || signals.recv())
///         })
///         .collect();
///     let me = std::process::id().to_string();
///     spindle::process::Command::new("kill").args(["-USR2", &me]).status().unwrap();
///     waiters.into_iter().map(|w| w.join().unwrap()).collect::<Vec<_>>()
/// });
/// assert_eq!(received, [SIGUSR2; 3]);
/// ```
pub struct Signals {
    subscriber: Arc<Subscriber>,
}

impl Signals {
    /// Subscribes to `signals`, installing spindle's handler for each the
    /// first time any `Signals` asks for it (which replaces its default
    /// action for the rest of the process; see the module docs).
    ///
    /// # Errors
    /// `InvalidInput` for a signal that cannot be waited for: `SIGKILL` and
    /// `SIGSTOP` (uncatchable), the fault signals (`SIGSEGV`, `SIGBUS`,
    /// `SIGILL`, `SIGFPE`, `SIGTRAP`, `SIGSYS`), the C library's own
    /// real-time signals, and numbers that are no signal. Otherwise
    /// `sigaction`'s, or a failure to start the dispatcher thread.
    ///
    /// ```
    /// use spindle::signal::{Signal, Signals, SIGHUP, SIGTERM};
    /// let signals = Signals::new(&[SIGHUP, SIGTERM]).unwrap();
    /// assert!(signals.try_recv().is_none());
    /// assert!(Signals::new(&[Signal::from_raw(9)]).is_err()); // SIGKILL
    /// ```
    pub fn new(signals: &[Signal]) -> io::Result<Signals> {
        let mut wanted = 0u64;
        for &signal in signals {
            if !signal_pipe::is_catchable(signal.0) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{signal} cannot be waited for"),
                ));
            }
            wanted |= 1 << (signal.0 - 1);
        }
        start_dispatcher()?;
        let subscriber = Arc::new(Subscriber {
            wanted,
            pending: Mutex::new(0),
            arrived: Condvar::new(),
        });
        {
            let mut subscribers = SUBSCRIBERS.lock_unpoisoned();
            subscribers.retain(|s| s.strong_count() > 0);
            subscribers.push(Arc::downgrade(&subscriber));
        }
        // Subscribed first: a signal that arrives once the handler is in
        // reaches this subscriber.
        for &signal in signals {
            signal_pipe::install(signal.0)?;
        }
        Ok(Signals { subscriber })
    }

    /// Waits for one of the signals and returns it: a fiber parks, a plain
    /// thread blocks. Of several pending, the lowest-numbered comes first.
    ///
    /// ```
    /// use spindle::signal::{Signals, SIGWINCH};
    /// let signals = Signals::new(&[SIGWINCH]).unwrap();
    /// let me = std::process::id().to_string();
    /// std::process::Command::new("kill").args(["-WINCH", &me]).status().unwrap();
    /// assert_eq!(signals.recv(), SIGWINCH);
    /// ```
    pub fn recv(&self) -> Signal {
        let mut pending = self.lock();
        loop {
            if let Some(signal) = take_lowest(&mut pending) {
                return signal;
            }
            pending = self
                .subscriber
                .arrived
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// A signal that has arrived, if any; never waits.
    ///
    /// ```
    /// let signals = spindle::signal::Signals::new(&[spindle::signal::SIGALRM]).unwrap();
    /// assert_eq!(signals.try_recv(), None);
    /// ```
    pub fn try_recv(&self) -> Option<Signal> {
        take_lowest(&mut self.lock())
    }

    /// Like [`Signals::recv`], giving up after `timeout` (then `None`).
    ///
    /// ```
    /// use std::time::Duration;
    /// let signals = spindle::signal::Signals::new(&[spindle::signal::SIGCONT]).unwrap();
    /// assert_eq!(signals.recv_timeout(Duration::from_millis(1)), None);
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Signal> {
        let deadline = Instant::now().checked_add(timeout);
        let mut pending = self.lock();
        loop {
            if let Some(signal) = take_lowest(&mut pending) {
                return Some(signal);
            }
            let left = match deadline {
                Some(deadline) => deadline.checked_duration_since(Instant::now())?,
                None => Duration::MAX,
            };
            pending = self
                .subscriber
                .arrived
                .wait_timeout(pending, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The signals as they arrive, forever ([`Signals::recv`] in a loop).
    ///
    /// ```
    /// use spindle::signal::{Signals, SIGUSR1};
    /// let signals = Signals::new(&[SIGUSR1]).unwrap();
    /// let me = std::process::id().to_string();
    /// std::process::Command::new("kill").args(["-USR1", &me]).status().unwrap();
    /// for signal in signals.iter() {
    ///     assert_eq!(signal, SIGUSR1);
    ///     break; // a server would shut down, or reload, here
    /// }
    /// ```
    pub fn iter(&self) -> Iter<'_> {
        Iter { signals: self }
    }

    fn lock(&self) -> crate::sync::MutexGuard<'_, u64> {
        self.subscriber
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Signals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wanted = self.subscriber.wanted;
        f.debug_set()
            .entries(
                (1..=64)
                    .filter(|n| wanted & (1 << (n - 1)) != 0)
                    .map(Signal),
            )
            .finish()
    }
}

/// Takes the lowest signal in `pending`.
fn take_lowest(pending: &mut u64) -> Option<Signal> {
    if *pending == 0 {
        return None;
    }
    let bit = pending.trailing_zeros();
    *pending &= !(1 << bit);
    Some(Signal(bit as i32 + 1))
}

/// The iterator of [`Signals::iter`] (and of `&Signals`); it never ends.
///
/// ```
/// use spindle::signal::{Signals, SIGUSR2};
/// let signals = Signals::new(&[SIGUSR2]).unwrap();
/// let me = std::process::id().to_string();
/// std::process::Command::new("kill").args(["-USR2", &me]).status().unwrap();
/// let first: Vec<_> = (&signals).into_iter().take(1).collect();
/// assert_eq!(first, [SIGUSR2]);
/// ```
pub struct Iter<'a> {
    signals: &'a Signals,
}

impl Iterator for Iter<'_> {
    type Item = Signal;

    fn next(&mut self) -> Option<Signal> {
        Some(self.signals.recv())
    }
}

impl fmt::Debug for Iter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Iter").field(self.signals).finish()
    }
}

impl<'a> IntoIterator for &'a Signals {
    type Item = Signal;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Waits for the next `SIGINT` (Ctrl-C at the terminal): a fiber parks, a
/// plain thread blocks. Only a `SIGINT` that arrives after the call began
/// counts; from the first call on, `SIGINT` no longer ends the process (see
/// the module docs), so the program decides what Ctrl-C does.
///
/// # Errors
/// As [`Signals::new`].
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
/// let rt = spindle::Runtime::new().unwrap();
/// # // Installed before the first `kill`, which could otherwise come
/// # // before `ctrl_c` has installed it and end this example.
/// # let _installed = spindle::signal::Signals::new(&[spindle::signal::SIGINT]).unwrap();
/// rt.block_on(|| {
///     // Someone presses Ctrl-C (here, `kill -INT` until it is seen).
///     let me = std::process::id().to_string();
///     let seen = Arc::new(AtomicBool::new(false));
///     let presser = {
///         let seen = seen.clone();
///         spindle::spawn(move || {
///             while !seen.load(Ordering::Relaxed) {
///                 spindle::process::Command::new("kill").args(["-INT", &me]).status().unwrap();
///                 spindle::time::sleep(Duration::from_millis(10));
///             }
///         })
///     };
///     spindle::signal::ctrl_c().unwrap();
///     seen.store(true, Ordering::Relaxed);
///     presser.join().unwrap();
/// });
/// ```
pub fn ctrl_c() -> io::Result<()> {
    Signals::new(&[SIGINT])?.recv();
    Ok(())
}

/// Starts the dispatcher thread unless it runs (making the pipe it reads
/// first).
fn start_dispatcher() -> io::Result<()> {
    let mut started = DISPATCHER.lock_unpoisoned();
    if !*started {
        signal_pipe::open()?;
        std::thread::Builder::new()
            .name("spindle-signals".into())
            .spawn(dispatch)?;
        *started = true;
    }
    Ok(())
}

/// The dispatcher: waits for the handler's bytes and hands each pending
/// signal to every subscriber that wants it. Runs for the rest of the
/// process.
fn dispatch() {
    loop {
        let arrived = match signal_pipe::wait() {
            Ok(arrived) => arrived,
            Err(error) => {
                // A read from a pipe this process never closes does not
                // fail; if it does, say so rather than spin.
                eprintln!("spindle: signal dispatcher stopped: {error}");
                return;
            }
        };
        if arrived == 0 {
            continue;
        }
        let wanting: Vec<Arc<Subscriber>> = {
            let mut subscribers = SUBSCRIBERS.lock_unpoisoned();
            subscribers.retain(|s| s.strong_count() > 0);
            subscribers
                .iter()
                .filter_map(Weak::upgrade)
                .filter(|s| s.wanted & arrived != 0)
                .collect()
        };
        for subscriber in wanting {
            let mut pending = subscriber
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *pending |= subscriber.wanted & arrived;
            drop(pending);
            subscriber.arrived.notify_all();
        }
    }
}
