//! Any descriptor's blocking mode and readiness, for `io::Fd`.
//!
//! - [`set_nonblocking`]: turns `O_NONBLOCK` on or off and says what it
//!   was, so a wrapper can put back what it found. The flag belongs to the
//!   *open file description*, not to the descriptor number: every
//!   duplicate (`dup`, a descriptor inherited across `fork`, the terminal a
//!   shell shares with its jobs) sees the change.
//! - [`is_ready`]: `poll(2)` with a zero timeout, the probe behind
//!   `Fd::readable` and `Fd::writable` (one system call that consumes
//!   nothing, where a read would take data).

use std::io;
use std::os::fd::{BorrowedFd, RawFd};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout};

/// Sets or clears `O_NONBLOCK` on `fd`'s open file description and returns
/// whether it was set before. Makes no change (and no second system call)
/// when the flag is already as asked. The caller keeps `fd` open.
pub(crate) fn set_nonblocking(fd: RawFd, nonblocking: bool) -> io::Result<bool> {
    // SAFETY: the caller keeps the descriptor open across this call, where
    // the borrow ends; a closed one gives `EBADF`, nothing worse.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    let was = flags.contains(OFlag::O_NONBLOCK);
    if was != nonblocking {
        let mut flags = flags;
        flags.set(OFlag::O_NONBLOCK, nonblocking);
        fcntl(fd, FcntlArg::F_SETFL(flags))?;
    }
    Ok(was)
}

/// Whether `fd` is readable (`write == false`) or writable now, or has an
/// error or hang-up (which the next operation reports). Never blocks.
pub(crate) fn is_ready(fd: RawFd, write: bool) -> io::Result<bool> {
    let events = match write {
        false => PollFlags::POLLIN,
        true => PollFlags::POLLOUT,
    };
    // SAFETY: the descriptor is only polled, and the borrow ends with this
    // call; the caller's `Fd` keeps it open meanwhile (a descriptor that is
    // not open would be reported as `POLLNVAL`, never touched).
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    // A zero timeout never sleeps, so no signal interrupts it (no EINTR).
    let ready = nix::poll::poll(&mut [PollFd::new(fd, events)], PollTimeout::ZERO)?;
    Ok(ready > 0)
}
