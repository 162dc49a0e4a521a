//! Any catchable signal turned into a bit in a pending set and a byte on a
//! pipe (the self-pipe trick), for `spindle::signal`.
//!
//! [`install`] gives a signal our handler, once per process, after saving
//! the action that was there. The handler, which may run on any thread at
//! any moment, does only async-signal-safe things: it sets the signal's bit
//! in [`PENDING`] (a lock-free `fetch_or`), writes one byte to the pipe's
//! non-blocking write end (dropped if the pipe is full: a full pipe already
//! holds a wake-up), calls the previous handler if that was a function (so
//! a handler installed before ours, by a library or by the program, still
//! runs), and leaves `errno` as it found it. One thread, the dispatcher in
//! `signal.rs`, sleeps in [`wait`] on the pipe's blocking read end and
//! takes the whole pending set at each wake-up. The set is one bit per
//! signal, so deliveries of one signal between two wake-ups count as one,
//! as the kernel itself merges a pending standard signal.
//!
//! A previous action of `SIG_DFL` or `SIG_IGN` is not chained: once
//! installed, our handler replaces the default action (terminating, for
//! `SIGINT` and `SIGTERM`) for the rest of the process.
//!
//! Rejected: `signalfd`, and a thread in `sigwaitinfo`. Both need the
//! signal blocked in *every* thread, or a thread that has it unblocked
//! takes it with the default action; threads the user, the test harness or
//! a library started before us cannot be made to block it.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::unistd;

use crate::lock::MutexExt;

pub(crate) const SIGHUP: i32 = libc::SIGHUP;
pub(crate) const SIGINT: i32 = libc::SIGINT;
pub(crate) const SIGQUIT: i32 = libc::SIGQUIT;
pub(crate) const SIGTERM: i32 = libc::SIGTERM;
pub(crate) const SIGUSR1: i32 = libc::SIGUSR1;
pub(crate) const SIGUSR2: i32 = libc::SIGUSR2;
pub(crate) const SIGCHLD: i32 = libc::SIGCHLD;
pub(crate) const SIGPIPE: i32 = libc::SIGPIPE;
pub(crate) const SIGALRM: i32 = libc::SIGALRM;
pub(crate) const SIGWINCH: i32 = libc::SIGWINCH;
pub(crate) const SIGCONT: i32 = libc::SIGCONT;

/// The highest signal number the pending set holds (Linux's last
/// real-time signal); signal `n` is bit `n - 1`.
const MAX_SIGNAL: i32 = 64;

/// Signals that arrived and the dispatcher has not taken yet. Set by the
/// handler (Release: pairs with the dispatcher's Acquire swap, nothing else
/// rides on it), taken by [`wait`].
static PENDING: AtomicU64 = AtomicU64::new(0);

/// The pipe's write end for the handler; -1 until the pipe exists. Written
/// once (Release) before any handler is installed; read (Acquire) by it.
static WAKE_WRITE: AtomicI32 = AtomicI32::new(-1);

/// The pipe's read end, for [`wait`]. Both ends live as long as the
/// process: a handler may run at any time.
static WAKE_READ: OnceLock<OwnedFd> = OnceLock::new();

/// The action each signal had before ours, by number. Written once, under
/// `INSTALLED`'s lock, before our handler is installed for that signal;
/// read by the handler (a `OnceLock::get`: one atomic load, no lock).
static PREVIOUS: [OnceLock<Previous>; MAX_SIGNAL as usize + 1] =
    [const { OnceLock::new() }; MAX_SIGNAL as usize + 1];

/// Which signals have our handler (bit `n - 1`); under the lock, which
/// also serializes installing.
static INSTALLED: Mutex<u64> = Mutex::new(0);

/// A saved `sigaction`: integers and function addresses, read-only once
/// published.
struct Previous(libc::sigaction);

// SAFETY: `libc::sigaction` is plain data (a handler address, a mask,
// flags); it is written once before it is published through the
// `OnceLock` and only read after.
unsafe impl Sync for Previous {}
// SAFETY: as above; moving the plain data between threads is harmless.
unsafe impl Send for Previous {}

/// Whether a program may wait for `signal` here: a number the kernel lets
/// a handler catch, and not one that reports a fault in the thread that
/// raised it (`SIGSEGV`, `SIGBUS`, `SIGILL`, `SIGFPE`, `SIGTRAP`, `SIGSYS`:
/// returning from their handler re-runs the faulting instruction, and
/// `SIGSEGV` is the stack-overflow handler's, `signal.rs`).
pub(crate) fn is_catchable(signal: i32) -> bool {
    (1..=MAX_SIGNAL).contains(&signal)
        && ![
            libc::SIGKILL,
            libc::SIGSTOP,
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGILL,
            libc::SIGFPE,
            libc::SIGTRAP,
            libc::SIGSYS,
        ]
        .contains(&signal)
        && !(32..libc::SIGRTMIN()).contains(&signal) // glibc's own
}

/// Makes the pipe, unless it exists: before the first [`install`] and the
/// first [`wait`].
pub(crate) fn open() -> io::Result<()> {
    let _installed = INSTALLED.lock_unpoisoned();
    open_locked()
}

/// [`open`], under `INSTALLED`'s lock.
fn open_locked() -> io::Result<()> {
    if WAKE_READ.get().is_none() {
        let (read, write) = unistd::pipe2(OFlag::O_CLOEXEC)?;
        // The handler's end never blocks; the dispatcher's does.
        super::fd::set_nonblocking(write.as_raw_fd(), true)?;
        // Release: the descriptor is published before a handler can read it.
        WAKE_WRITE.store(write.as_raw_fd(), Ordering::Release);
        std::mem::forget(write);
        let _ = WAKE_READ.set(read);
    }
    Ok(())
}

/// Gives `signal` our handler, unless it has it already. `signal` must be
/// [`is_catchable`].
pub(crate) fn install(signal: i32) -> io::Result<()> {
    debug_assert!(is_catchable(signal));
    let bit = 1u64 << (signal - 1);
    let mut installed = INSTALLED.lock_unpoisoned();
    if *installed & bit != 0 {
        return Ok(());
    }
    open_locked()?;
    if PREVIOUS[signal as usize].get().is_none() {
        // SAFETY: a zeroed sigaction is a valid "default, no flags" value.
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a null new action only reads the current one into
        // `previous`, which lives across the call.
        Errno::result(unsafe { libc::sigaction(signal, std::ptr::null(), &mut previous) })?;
        let _ = PREVIOUS[signal as usize].set(Previous(previous));
    }
    // SAFETY: a zeroed sigaction is a valid value to fill in.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
    // SA_RESTART: the threads the signal interrupts resume their system
    // calls instead of failing with EINTR. SA_ONSTACK: a fiber's small
    // stack is not where a handler (and the one it chains to) should run
    // when the thread has an alternate stack.
    action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
    // SAFETY: an empty mask for the handler (`sa_mask` is ours to fill).
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: installs `on_signal`, which makes only async-signal-safe
    // calls and reads the statics set above; raw `libc`, since nix's
    // `Signal` cannot name real-time signals.
    Errno::result(unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) })?;
    *installed |= bit;
    Ok(())
}

/// Blocks until a signal with our handler has arrived, then returns the
/// set of those that arrived since the last call (bit `n - 1` for signal
/// `n`); may return an empty set (a byte whose signal an earlier call
/// took). Only one thread calls it, after [`open`].
pub(crate) fn wait() -> io::Result<u64> {
    let read = WAKE_READ
        .get()
        .ok_or_else(|| io::Error::other("the signal pipe is not open"))?;
    let mut bytes = [0u8; 64];
    loop {
        match unistd::read(read, &mut bytes) {
            Err(Errno::EINTR) => {}
            Err(error) => return Err(error.into()),
            // Acquire: pairs with the handler's Release `fetch_or`.
            Ok(_) => return Ok(PENDING.swap(0, Ordering::Acquire)),
        }
    }
}

/// The handler: raw `libc` calls only, async-signal-safe (no allocation,
/// no locks), and it leaves `errno` as it found it.
extern "C" fn on_signal(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: reading this thread's errno, which the interrupted code may need.
    let saved = unsafe { *errno };
    if (1..=MAX_SIGNAL).contains(&signal) {
        // Release: pairs with the Acquire swap in `wait`.
        PENDING.fetch_or(1 << (signal - 1), Ordering::Release);
        // Acquire: pairs with the Release store in `install`.
        let fd = WAKE_WRITE.load(Ordering::Acquire);
        let byte = 1u8;
        // SAFETY: write(2) is async-signal-safe; `byte` lives across the
        // call and `fd` is the pipe's write end, which is never closed. A
        // full pipe (EAGAIN) already holds a wake-up.
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
        if let Some(Previous(previous)) = PREVIOUS[signal as usize].get() {
            chain(previous, signal, info, context);
        }
    }
    // SAFETY: restores errno for the interrupted code, as handlers must.
    unsafe { *errno = saved };
}

/// Calls the handler that was installed before ours, if it was a function.
fn chain(
    previous: &libc::sigaction,
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        return;
    }
    if previous.sa_flags & libc::SA_SIGINFO != 0 {
        type Action = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);
        // SAFETY: installed with SA_SIGINFO, so it has this signature; it
        // gets the arguments the kernel gave us.
        let action: Action = unsafe { std::mem::transmute(handler) };
        action(signal, info, context);
    } else {
        type Handler = extern "C" fn(libc::c_int);
        // SAFETY: installed without SA_SIGINFO, so it is a plain handler.
        let handler: Handler = unsafe { std::mem::transmute(handler) };
        handler(signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_and_the_uncatchable_are_refused() {
        for signal in [SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGCHLD, libc::SIGRTMIN()] {
            assert!(is_catchable(signal), "{signal}");
        }
        for signal in [0, -1, 65, libc::SIGKILL, libc::SIGSTOP, libc::SIGSEGV, 32] {
            assert!(!is_catchable(signal), "{signal}");
        }
    }
}
