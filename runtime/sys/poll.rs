//! Waiting for one descriptor's readiness on a plain thread: `poll(2)`.
//!
//! A spindle socket used outside fibers blocks its thread like a std
//! socket would; the socket itself is non-blocking, so the thread waits
//! here and retries.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};

/// Blocks until `fd` is readable (`write == false`) or writable, or has an
/// error or hang-up, or `deadline` passes. Returns false on the deadline.
pub(crate) fn wait_fd(fd: RawFd, write: bool, deadline: Option<Instant>) -> io::Result<bool> {
    let events = if write {
        PollFlags::POLLOUT
    } else {
        PollFlags::POLLIN
    };
    // SAFETY: the descriptor is only polled, and the borrow ends with this
    // call; the caller's socket keeps it open meanwhile (and a descriptor
    // that is not open would be reported by the kernel as `POLLNVAL`, never
    // touched).
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    loop {
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                // Round up, so a sub-millisecond wait does not spin at 0.
                let ms = left.as_nanos().div_ceil(1_000_000);
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        match nix::poll::poll(&mut [PollFd::new(fd, events)], timeout) {
            Err(Errno::EINTR) => {}
            Err(error) => return Err(error.into()),
            Ok(0) => {} // timed out: the loop checks the deadline
            Ok(_) => return Ok(true),
        }
    }
}

/// Whether `fd` is readable (`write == false`) or writable (or has an
/// error or hang-up) right now: a poll that does not wait. A select's
/// readiness arm asks it to prove remembered readiness still true.
pub(crate) fn is_ready_now(fd: RawFd, write: bool) -> io::Result<bool> {
    let events = if write {
        PollFlags::POLLOUT
    } else {
        PollFlags::POLLIN
    };
    // SAFETY: as in `wait_fd`.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    loop {
        match nix::poll::poll(&mut [PollFd::new(fd, events)], PollTimeout::ZERO) {
            Err(Errno::EINTR) => {}
            Err(errno) => return Err(errno.into()),
            Ok(ready) => return Ok(ready > 0),
        }
    }
}

/// Whether an `accept` failed for want of descriptors or kernel memory
/// (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`): conditions that pass when
/// other descriptors close, so the caller should back off and retry.
pub(crate) fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error().map(Errno::from_raw),
        Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)
    )
}
