//! Waiting for one descriptor's readiness on a plain thread: `poll(2)`.
//!
//! A spindle socket used outside fibers blocks its thread like a std
//! socket would; the socket itself is non-blocking, so the thread waits
//! here and retries.

use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

/// Blocks until `fd` is readable (`write == false`) or writable, or has an
/// error or hang-up, or `deadline` passes. Returns false on the deadline.
pub(crate) fn wait_fd(fd: RawFd, write: bool, deadline: Option<Instant>) -> io::Result<bool> {
    let events = if write { libc::POLLOUT } else { libc::POLLIN };
    loop {
        let timeout_ms: libc::c_int = match deadline {
            None => -1,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                // Round up, so a sub-millisecond wait does not spin at 0.
                let ms = left.as_nanos().div_ceil(1_000_000);
                libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
            }
        };
        let mut pollfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: `pollfd` is a valid, writable array of one element for
        // the duration of the call.
        let result = unsafe { libc::poll(&mut pollfd, 1, timeout_ms) };
        match result {
            -1 => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
            0 => {} // timed out: the loop checks the deadline
            _ => return Ok(true),
        }
    }
}

/// Whether an `accept` failed for want of descriptors or kernel memory
/// (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`): conditions that pass when
/// other descriptors close, so the caller should back off and retry.
pub(crate) fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
