//! Process control for shards: pidfds, signals, inherited descriptors and
//! the parent-death signal.
//!
//! Everything `shard/` asks of the kernel about processes is here, so the
//! shard code reads as policy and this file as mechanism:
//!
//! - [`Pidfd`]: a descriptor for one child process (`pidfd_open`, Linux 5.3),
//!   which `process::Child` also waits on in the reactor (it becomes
//!   readable when the child exits).
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
//!
//! Rejected: `SIGCHLD` + `waitpid(-1)`. A process-wide `SIGCHLD` handler and
//! a wildcard reap would steal exit statuses from any other code in the
//! program that spawns children (`std::process::Command` users, the test
//! harness); waiting on each child by its own pid (`Child::wait`) does not.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{self, FcntlArg, FdFlag};
use nix::sys::signal::Signal;
use nix::unistd;

/// A descriptor referring to one child process; readable once the child
/// has exited.
///
/// Owned by whoever spawned the child: the shard keeper thread (dropped
/// after the child has been reaped), or a `process::Child` (which waits for
/// readability in the reactor).
#[derive(Debug)]
pub(crate) struct Pidfd {
    fd: OwnedFd,
}

impl AsRawFd for Pidfd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Pidfd {
    /// Opens a pidfd for `pid`, which must be a child this process has not
    /// reaped yet (so the pid cannot have been recycled).
    pub(crate) fn open(pid: u32) -> io::Result<Pidfd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new
        // descriptor or -1; no memory is passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        let fd = Errno::result(fd)?;
        // SAFETY: `fd` was just returned by the kernel and nobody else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        Ok(Pidfd { fd })
    }

    /// Asks the process to end: `SIGTERM`. `Ok(false)` as for
    /// [`Pidfd::signal`].
    pub(crate) fn terminate(&self) -> io::Result<bool> {
        self.signal(Signal::SIGTERM as i32)
    }

    /// Ends the process at once: `SIGKILL`. `Ok(false)` as for
    /// [`Pidfd::signal`].
    pub(crate) fn kill(&self) -> io::Result<bool> {
        self.signal(Signal::SIGKILL as i32)
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
        match Errno::result(result) {
            Ok(_) => Ok(true),
            Err(Errno::ESRCH) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }
}

/// Runs in the child between `fork` and `exec`: lets `keep_fd` survive the
/// `exec` (clears its close-on-exec flag) and asks the kernel to `SIGKILL`
/// this process when the thread that spawned it exits (`PR_SET_PDEATHSIG`).
///
/// Only async-signal-safe system calls, no allocation, no locks: nix's
/// `fcntl` and `set_pdeathsig` are each one system call and a check of its
/// result, and turning an `Errno` into an `io::Error` allocates nothing.
pub(crate) fn prepare_child(keep_fd: RawFd) -> io::Result<()> {
    // SAFETY: `keep_fd` is this child's copy of the shard's socket (the
    // parent keeps its own end open across the spawn), and the borrow ends
    // with this function, before `exec`.
    let keep = unsafe { BorrowedFd::borrow_raw(keep_fd) };
    fcntl::fcntl(keep, FcntlArg::F_SETFD(FdFlag::empty()))?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    Ok(())
}

/// Sets the close-on-exec flag on `fd` again (a shard does this to its
/// inherited socket at once, so processes it spawns do not inherit it).
/// `fd` must be open: the shard checked it with [`is_socket`].
pub(crate) fn set_close_on_exec(fd: RawFd) -> io::Result<()> {
    // SAFETY: the caller passes a descriptor it checked is open and that
    // nothing closes meanwhile; the borrow ends with this call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    fcntl::fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    Ok(())
}

/// Whether `fd` is an open socket (checked before a shard adopts the
/// descriptor number it was given in its environment).
///
/// A raw `libc::fstat`: the number may name no open descriptor at all,
/// so it cannot be lent to nix's `fstat` as a `BorrowedFd`.
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
    unistd::getppid().as_raw() as u32
}

/// The conventional name of a signal number (`SIGSEGV`), or `None` for a
/// number with no name (a real-time signal, or no signal at all).
pub(crate) fn signal_name(signal: i32) -> Option<&'static str> {
    Signal::try_from(signal).ok().map(Signal::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_have_their_conventional_names() {
        assert_eq!(signal_name(libc::SIGSEGV), Some("SIGSEGV"));
        assert_eq!(signal_name(libc::SIGKILL), Some("SIGKILL"));
        assert_eq!(signal_name(libc::SIGSTKFLT), Some("SIGSTKFLT"));
        assert_eq!(signal_name(libc::SIGIO), Some("SIGIO"));
        assert_eq!(signal_name(libc::SIGSYS), Some("SIGSYS"));
        let named = (1..=31).filter(|&n| signal_name(n).is_some()).count();
        assert_eq!(named, 31, "every standard Linux signal has a name");
        assert_eq!(signal_name(0), None);
        assert_eq!(signal_name(libc::SIGRTMIN()), None);
    }
}
