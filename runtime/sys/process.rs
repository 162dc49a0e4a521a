//! Process control for shards: pidfds, signals, inherited descriptors, the
//! parent-death signal and a termination-signal pipe.
//!
//! Everything `shard/` asks of the kernel about processes is here, so the
//! shard code reads as policy and this file as mechanism:
//!
//! - [`Pidfd`]: a descriptor for one child process (`pidfd_open`, Linux 5.3).
//!   Signals go through it (`pidfd_send_signal`), never through a bare pid: a
//!   pid is recycled once its process has been reaped, so `kill(pid)` after
//!   the reap could hit an unrelated process; a pidfd keeps naming the dead
//!   one and the signal fails harmlessly with `ESRCH`.
//! - [`prepare_child`]: the two calls a freshly spawned child makes between
//!   `fork` and `exec` (inside `std::process::Command`'s `pre_exec`): keep the
//!   shard's socket across `exec` and ask for `SIGKILL` when the parent dies.
//!   Both are single async-signal-safe system calls, the only kind of code
//!   allowed in the child of a threaded process before `exec`.
//! - [`signal_name`]: `SIGSEGV` rather than `11` in crash reports.
//! - [`TerminationPipe`]: `SIGTERM`/`SIGINT` turned into a byte on a pipe, so
//!   a plain thread can wait for them with a blocking `read`.
//!
//! Rejected: `SIGCHLD` + `waitpid(-1)`. A process-wide `SIGCHLD` handler and
//! a wildcard reap would steal exit statuses from any other code in the
//! program that spawns children (`std::process::Command` users, the test
//! harness); waiting on each child by its own pid (`Child::wait`) does not.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// A descriptor referring to one child process.
///
/// Owned by the supervisor thread that spawned the child; dropped after the
/// child has been reaped.
#[derive(Debug)]
pub(crate) struct Pidfd {
    fd: OwnedFd,
}

impl Pidfd {
    /// Opens a pidfd for `pid`, which must be a child this process has not
    /// reaped yet (so the pid cannot have been recycled).
    pub(crate) fn open(pid: u32) -> io::Result<Pidfd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new
        // descriptor or -1; no memory is passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by the kernel and nobody else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        Ok(Pidfd { fd })
    }

    /// Sends `signal` to the process. `Ok(false)` when it has already exited
    /// and been reaped (`ESRCH`).
    pub(crate) fn signal(&self, signal: i32) -> io::Result<bool> {
        // SAFETY: pidfd_send_signal with a null siginfo and no flags reads no
        // memory; the descriptor is open for as long as `self` lives.
        let result = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if result == 0 {
            return Ok(true);
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::ESRCH) {
            Ok(false)
        } else {
            Err(error)
        }
    }
}

/// Runs in the child between `fork` and `exec`: lets `keep_fd` survive the
/// `exec` (clears its close-on-exec flag) and asks the kernel to `SIGKILL`
/// this process when the thread that spawned it exits (`PR_SET_PDEATHSIG`).
///
/// Only async-signal-safe system calls: no allocation, no locks.
pub(crate) fn prepare_child(keep_fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor number passes no memory; if the number
    // were not open it would fail with EBADF, which we report.
    if unsafe { libc::fcntl(keep_fd, libc::F_SETFD, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: prctl(PR_SET_PDEATHSIG, signal) passes only integers.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the close-on-exec flag on `fd` again (a shard does this to its
/// inherited socket at once, so processes it spawns do not inherit it).
pub(crate) fn set_close_on_exec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor number passes no memory.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `fd` is an open socket (checked before a shard adopts the
/// descriptor number it was given in its environment).
pub(crate) fn is_socket(fd: RawFd) -> bool {
    // SAFETY: a zeroed `stat` is a valid value for fstat to overwrite.
    let mut status: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes into `status`, which lives across the call.
    let result = unsafe { libc::fstat(fd, &mut status) };
    result == 0 && (status.st_mode & libc::S_IFMT) == libc::S_IFSOCK
}

/// The pid of this process's parent (0 once the parent has died and the
/// process was re-parented to a subreaper outside our namespace, or init).
pub(crate) fn parent_pid() -> u32 {
    // SAFETY: getppid has no arguments and cannot fail.
    unsafe { libc::getppid() as u32 }
}

/// The conventional name of a signal number, or `"signal N"`'s `N` unknown.
pub(crate) fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSTKFLT => "SIGSTKFLT",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGURG => "SIGURG",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGVTALRM => "SIGVTALRM",
        libc::SIGPROF => "SIGPROF",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGIO => "SIGIO",
        libc::SIGPWR => "SIGPWR",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    })
}

/// Write end of the termination pipe, for the signal handler. -1 until
/// [`TerminationPipe::install`] ran. Written once (Release) before the handler
/// is installed; read (Acquire) by the handler.
static TERMINATION_WRITE_FD: AtomicI32 = AtomicI32::new(-1);

/// `SIGTERM` and `SIGINT` delivered as bytes on a pipe: the read end is
/// blocking, so one thread can sleep in [`TerminationPipe::wait`] until a
/// signal arrives. Installing it replaces the default action (terminate) for
/// both signals for the whole process; there is one per process.
#[derive(Debug)]
pub(crate) struct TerminationPipe {
    read: OwnedFd,
}

impl TerminationPipe {
    /// Creates the pipe and installs the handlers. A second call fails with
    /// `AlreadyExists`.
    pub(crate) fn install() -> io::Result<TerminationPipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 writes two descriptors into `fds`, which has room for two.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Release: the descriptor is published before a handler can read it.
        if TERMINATION_WRITE_FD
            .compare_exchange(-1, write.as_raw_fd(), Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "termination signals are already being watched in this process",
            ));
        }
        // The write end lives as long as the process: the handler may run at
        // any time from now on.
        std::mem::forget(write);
        for signal in [libc::SIGTERM, libc::SIGINT] {
            // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value.
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction = on_termination_signal as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            // SAFETY: installs a handler that only calls write(2) (async-signal-
            // safe) on a descriptor that is never closed; `action` is valid.
            if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(TerminationPipe { read })
    }

    /// Blocks until `SIGTERM` or `SIGINT` arrives; returns its number.
    pub(crate) fn wait(&self) -> io::Result<i32> {
        let mut byte = 0u8;
        loop {
            // SAFETY: reads one byte into `byte`, which lives across the call.
            let read =
                unsafe { libc::read(self.read.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) };
            if read == 1 {
                return Ok(i32::from(byte));
            }
            let error = io::Error::last_os_error();
            if read < 0 && error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
    }
}

extern "C" fn on_termination_signal(signal: libc::c_int) {
    // Acquire: pairs with the Release store in `install`.
    let fd = TERMINATION_WRITE_FD.load(Ordering::Acquire);
    let byte = signal as u8;
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: reading this thread's errno, which the interrupted code may need.
    let saved = unsafe { *errno };
    // SAFETY: write(2) is async-signal-safe; `byte` lives across the call and
    // `fd` is the pipe's write end, which is never closed.
    unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    // SAFETY: restores errno for the interrupted code, as handlers must.
    unsafe { *errno = saved };
}
