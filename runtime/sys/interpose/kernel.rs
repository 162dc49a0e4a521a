//! The system calls behind the hooks: each hooked call as its caller made
//! it ([`Call`], [`Accept`], [`Connect`], [`Poll`]), made as it is
//! (`kernel`) or without blocking (`attempt`), and the probes the fiber
//! side asks before it parks (blocking mode, readiness, socket timeouts,
//! a pending connect's error).
//!
//! The call types hold the caller's raw pointers and are made only by the
//! hooks, from their arguments (their fields are private to this
//! module), so their methods can be safe: every pointer was promised
//! valid by the C caller for the duration of the hooked call, during
//! which these values live. Every call goes through `libc::syscall`, never
//! the C library's wrapper of the same name, which would be the hook
//! itself.

use std::time::Duration;

use nix::errno::Errno;

use super::descriptor::Kind;

/// A system call's result as the kernel's wrapper reports it.
pub(super) fn check(result: libc::c_long) -> Result<usize, Errno> {
    if result < 0 {
        Err(Errno::last())
    } else {
        Ok(result as usize)
    }
}

/// Bytes a vector of `count` buffers at `iov` holds.
///
/// # Safety
/// `iov` must point to `count` readable `iovec`s (or `count` be 0).
unsafe fn total_len(iov: *const libc::iovec, count: usize) -> usize {
    if count == 0 || iov.is_null() {
        return 0;
    }
    // SAFETY: the caller's promise.
    let slices = unsafe { std::slice::from_raw_parts(iov, count) };
    slices.iter().map(|v| v.iov_len).sum()
}

/// The buffers at `iov` less their first `offset` bytes.
///
/// # Safety
/// As [`total_len`].
unsafe fn advanced(iov: *const libc::iovec, count: usize, offset: usize) -> Vec<libc::iovec> {
    if count == 0 || iov.is_null() {
        return Vec::new();
    }
    // SAFETY: the caller's promise.
    let slices = unsafe { std::slice::from_raw_parts(iov, count) };
    let mut skip = offset;
    let mut rest = Vec::with_capacity(count);
    for v in slices {
        if skip >= v.iov_len {
            skip -= v.iov_len;
            continue;
        }
        rest.push(libc::iovec {
            // SAFETY: `skip < iov_len`: still inside this buffer.
            iov_base: unsafe { v.iov_base.cast::<u8>().add(skip) }.cast(),
            iov_len: v.iov_len - skip,
        });
        skip = 0;
    }
    rest
}

/// A read or write family call, as its caller made it.
pub(crate) struct Call {
    op: Op,
    kind: Kind,
}

enum Op {
    Read {
        fd: i32,
        buf: *mut libc::c_void,
        len: usize,
    },
    Readv {
        fd: i32,
        iov: *const libc::iovec,
        count: i32,
    },
    Recv {
        fd: i32,
        buf: *mut libc::c_void,
        len: usize,
        flags: i32,
        from: *mut libc::sockaddr,
        from_len: *mut libc::socklen_t,
    },
    Recvmsg {
        fd: i32,
        msg: *mut libc::msghdr,
        flags: i32,
    },
    Write {
        fd: i32,
        buf: *const libc::c_void,
        len: usize,
    },
    Writev {
        fd: i32,
        iov: *const libc::iovec,
        count: i32,
    },
    Send {
        fd: i32,
        buf: *const libc::c_void,
        len: usize,
        flags: i32,
        to: *const libc::sockaddr,
        to_len: libc::socklen_t,
    },
    Sendmsg {
        fd: i32,
        msg: *const libc::msghdr,
        flags: i32,
    },
}

impl Call {
    pub(super) fn read(fd: i32, buf: *mut libc::c_void, len: usize) -> Call {
        Call::new(Op::Read { fd, buf, len })
    }

    pub(super) fn readv(fd: i32, iov: *const libc::iovec, count: i32) -> Call {
        Call::new(Op::Readv { fd, iov, count })
    }

    pub(super) fn recv(
        fd: i32,
        buf: *mut libc::c_void,
        len: usize,
        flags: i32,
        from: *mut libc::sockaddr,
        from_len: *mut libc::socklen_t,
    ) -> Call {
        Call::new(Op::Recv {
            fd,
            buf,
            len,
            flags,
            from,
            from_len,
        })
    }

    pub(super) fn recvmsg(fd: i32, msg: *mut libc::msghdr, flags: i32) -> Call {
        Call::new(Op::Recvmsg { fd, msg, flags })
    }

    pub(super) fn write(fd: i32, buf: *const libc::c_void, len: usize) -> Call {
        Call::new(Op::Write { fd, buf, len })
    }

    pub(super) fn writev(fd: i32, iov: *const libc::iovec, count: i32) -> Call {
        Call::new(Op::Writev { fd, iov, count })
    }

    pub(super) fn send(
        fd: i32,
        buf: *const libc::c_void,
        len: usize,
        flags: i32,
        to: *const libc::sockaddr,
        to_len: libc::socklen_t,
    ) -> Call {
        Call::new(Op::Send {
            fd,
            buf,
            len,
            flags,
            to,
            to_len,
        })
    }

    pub(super) fn sendmsg(fd: i32, msg: *const libc::msghdr, flags: i32) -> Call {
        Call::new(Op::Sendmsg { fd, msg, flags })
    }

    fn new(op: Op) -> Call {
        Call {
            op,
            kind: Kind::Unknown,
        }
    }

    /// Looks the descriptor's kind up (classifying it if need be) and
    /// says whether the call may block in a way the fiber side can wait
    /// out: false sends it to the kernel.
    pub(super) fn classify(&mut self) -> bool {
        let fd = self.fd();
        let stdio = matches!(
            self.op,
            Op::Read { .. } | Op::Readv { .. } | Op::Write { .. } | Op::Writev { .. }
        ) && (0..=2).contains(&fd);
        if stdio {
            return false;
        }
        self.kind = super::descriptor::kind(fd);
        // recvmsg with MSG_WAITALL fills its buffers across messages and
        // control data; not emulated.
        let wait_all_msg =
            matches!(self.op, Op::Recvmsg { flags, .. } if flags & libc::MSG_WAITALL != 0);
        self.kind != Kind::Plain && !wait_all_msg
    }

    pub(crate) fn fd(&self) -> i32 {
        match self.op {
            Op::Read { fd, .. }
            | Op::Readv { fd, .. }
            | Op::Recv { fd, .. }
            | Op::Recvmsg { fd, .. }
            | Op::Write { fd, .. }
            | Op::Writev { fd, .. }
            | Op::Send { fd, .. }
            | Op::Sendmsg { fd, .. } => fd,
        }
    }

    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    /// Whether the call writes (waits for writability).
    pub(crate) fn is_write(&self) -> bool {
        matches!(
            self.op,
            Op::Write { .. } | Op::Writev { .. } | Op::Send { .. } | Op::Sendmsg { .. }
        )
    }

    /// The bytes the call asks to move.
    pub(crate) fn len(&self) -> usize {
        match self.op {
            Op::Read { len, .. }
            | Op::Recv { len, .. }
            | Op::Write { len, .. }
            | Op::Send { len, .. } => len,
            // SAFETY: the caller's vector, valid for the hooked call.
            Op::Readv { iov, count, .. } | Op::Writev { iov, count, .. } => unsafe {
                total_len(iov, count.max(0) as usize)
            },
            // SAFETY: the caller's message, valid for the hooked call.
            Op::Recvmsg { msg, .. } => unsafe { total_len((*msg).msg_iov, (*msg).msg_iovlen) },
            // SAFETY: as above.
            Op::Sendmsg { msg, .. } => unsafe { total_len((*msg).msg_iov, (*msg).msg_iovlen) },
        }
    }

    /// Whether the caller asked this one call not to block
    /// (`MSG_DONTWAIT`).
    pub(crate) fn caller_nonblocking(&self) -> bool {
        match self.op {
            Op::Recv { flags, .. }
            | Op::Recvmsg { flags, .. }
            | Op::Send { flags, .. }
            | Op::Sendmsg { flags, .. } => flags & libc::MSG_DONTWAIT != 0,
            _ => false,
        }
    }

    /// Whether the kernel's blocking call would move every byte before
    /// returning: a send on a stream socket, and a `recv` / `recvfrom`
    /// with `MSG_WAITALL` on one.
    pub(crate) fn moves_all(&self) -> bool {
        if self.kind != Kind::Stream {
            return false;
        }
        match self.op {
            Op::Recv { flags, .. } => flags & libc::MSG_WAITALL != 0,
            _ => self.is_write(),
        }
    }

    /// The call as its caller made it (it may block).
    pub(crate) fn kernel(&self) -> Result<usize, Errno> {
        // SAFETY: in each arm, the caller's arguments, passed on
        // unchanged, valid for the hooked call.
        let result = unsafe {
            match self.op {
                Op::Read { fd, buf, len } => libc::syscall(libc::SYS_read, fd, buf, len),
                Op::Readv { fd, iov, count } => libc::syscall(libc::SYS_readv, fd, iov, count),
                Op::Recv {
                    fd,
                    buf,
                    len,
                    flags,
                    from,
                    from_len,
                } => libc::syscall(libc::SYS_recvfrom, fd, buf, len, flags, from, from_len),
                Op::Recvmsg { fd, msg, flags } => libc::syscall(libc::SYS_recvmsg, fd, msg, flags),
                Op::Write { fd, buf, len } => libc::syscall(libc::SYS_write, fd, buf, len),
                Op::Writev { fd, iov, count } => libc::syscall(libc::SYS_writev, fd, iov, count),
                Op::Send {
                    fd,
                    buf,
                    len,
                    flags,
                    to,
                    to_len,
                } => libc::syscall(libc::SYS_sendto, fd, buf, len, flags, to, to_len),
                Op::Sendmsg { fd, msg, flags } => libc::syscall(libc::SYS_sendmsg, fd, msg, flags),
            }
        };
        check(result)
    }

    /// The call on a socket with `MSG_DONTWAIT`, from byte `offset` on
    /// (`offset` is 0 except where [`Call::moves_all`] continues a call
    /// the kernel moved part of). `read`, `readv`, `write` and `writev`
    /// become the socket calls the kernel turns them into (`write` on a
    /// `SOCK_SEQPACKET` socket ends a record, so it adds `MSG_EOR`).
    pub(crate) fn attempt(&self, offset: usize) -> Result<usize, Errno> {
        let dontwait = libc::MSG_DONTWAIT;
        let eor = if self.kind == Kind::SeqPacket {
            libc::MSG_EOR
        } else {
            0
        };
        let null_from = std::ptr::null_mut::<libc::sockaddr>();
        let null_len = std::ptr::null_mut::<libc::socklen_t>();
        match self.op {
            Op::Read { fd, buf, len } => {
                // SAFETY: the caller's buffer, less `offset <= len` bytes.
                let result = unsafe {
                    libc::syscall(
                        libc::SYS_recvfrom,
                        fd,
                        buf.cast::<u8>().add(offset),
                        len - offset,
                        dontwait,
                        null_from,
                        null_len,
                    )
                };
                check(result)
            }
            Op::Recv {
                fd,
                buf,
                len,
                flags,
                from,
                from_len,
            } => {
                // SAFETY: as above.
                let result = unsafe {
                    libc::syscall(
                        libc::SYS_recvfrom,
                        fd,
                        buf.cast::<u8>().add(offset),
                        len - offset,
                        flags | dontwait,
                        from,
                        from_len,
                    )
                };
                check(result)
            }
            Op::Write { fd, buf, len } => {
                // SAFETY: the caller's buffer, less `offset <= len` bytes.
                let result = unsafe {
                    libc::syscall(
                        libc::SYS_sendto,
                        fd,
                        buf.cast::<u8>().add(offset),
                        len - offset,
                        dontwait | eor,
                        std::ptr::null::<libc::sockaddr>(),
                        0,
                    )
                };
                check(result)
            }
            Op::Send {
                fd,
                buf,
                len,
                flags,
                to,
                to_len,
            } => {
                // SAFETY: as above.
                let result = unsafe {
                    libc::syscall(
                        libc::SYS_sendto,
                        fd,
                        buf.cast::<u8>().add(offset),
                        len - offset,
                        flags | dontwait,
                        to,
                        to_len,
                    )
                };
                check(result)
            }
            Op::Readv { fd, iov, count } => {
                // SAFETY: the caller's vector.
                let mut rest = unsafe { advanced(iov, count.max(0) as usize, offset) };
                // SAFETY: an all-zero msghdr is a valid empty message.
                let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
                msg.msg_iov = rest.as_mut_ptr();
                msg.msg_iovlen = rest.len();
                // SAFETY: `msg` and `rest` live across the call.
                check(unsafe {
                    libc::syscall(
                        libc::SYS_recvmsg,
                        fd,
                        &mut msg as *mut libc::msghdr,
                        dontwait,
                    )
                })
            }
            Op::Writev { fd, iov, count } => {
                // SAFETY: the caller's vector.
                let mut rest = unsafe { advanced(iov, count.max(0) as usize, offset) };
                // SAFETY: an all-zero msghdr is a valid empty message.
                let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
                msg.msg_iov = rest.as_mut_ptr();
                msg.msg_iovlen = rest.len();
                // SAFETY: `msg` and `rest` live across the call.
                check(unsafe {
                    libc::syscall(
                        libc::SYS_sendmsg,
                        fd,
                        &msg as *const libc::msghdr,
                        dontwait | eor,
                    )
                })
            }
            Op::Recvmsg { fd, msg, flags } => {
                // Never continued (`moves_all` is false for it): the
                // caller's own message, which the kernel updates.
                // SAFETY: the caller's message.
                let result = unsafe { libc::syscall(libc::SYS_recvmsg, fd, msg, flags | dontwait) };
                check(result)
            }
            Op::Sendmsg { fd, msg, flags } if offset == 0 => {
                // SAFETY: the caller's message.
                check(unsafe { libc::syscall(libc::SYS_sendmsg, fd, msg, flags | dontwait) })
            }
            Op::Sendmsg { fd, msg, flags } => {
                // The rest of a stream send: the control data went with
                // the first bytes, as the kernel sends it.
                // SAFETY: the caller's message and its vector.
                let (mut rest, mut copy) =
                    unsafe { (advanced((*msg).msg_iov, (*msg).msg_iovlen, offset), *msg) };
                copy.msg_iov = rest.as_mut_ptr();
                copy.msg_iovlen = rest.len();
                copy.msg_control = std::ptr::null_mut();
                copy.msg_controllen = 0;
                // SAFETY: `copy` and `rest` live across the call.
                check(unsafe {
                    libc::syscall(
                        libc::SYS_sendmsg,
                        fd,
                        &copy as *const libc::msghdr,
                        flags | dontwait,
                    )
                })
            }
        }
    }
}

/// An `accept` or `accept4` call, as its caller made it.
pub(crate) struct Accept {
    pub(super) fd: i32,
    pub(super) addr: *mut libc::sockaddr,
    pub(super) addr_len: *mut libc::socklen_t,
    /// `accept4`'s flags; `None` for `accept`.
    pub(super) flags: Option<i32>,
}

impl Accept {
    pub(crate) fn fd(&self) -> i32 {
        self.fd
    }

    /// The call as made (it may block).
    pub(crate) fn kernel(&self) -> Result<usize, Errno> {
        // SAFETY: the caller's arguments, unchanged.
        check(unsafe {
            match self.flags {
                Some(flags) => {
                    libc::syscall(libc::SYS_accept4, self.fd, self.addr, self.addr_len, flags)
                }
                None => libc::syscall(libc::SYS_accept, self.fd, self.addr, self.addr_len),
            }
        })
    }
}

/// A `connect` call, as its caller made it.
pub(crate) struct Connect {
    pub(super) fd: i32,
    pub(super) addr: *const libc::sockaddr,
    pub(super) len: libc::socklen_t,
}

impl Connect {
    pub(crate) fn fd(&self) -> i32 {
        self.fd
    }

    /// The call as made (on a blocking socket it waits for the handshake).
    pub(crate) fn kernel(&self) -> Result<(), Errno> {
        // SAFETY: the caller's arguments, unchanged.
        check(unsafe { libc::syscall(libc::SYS_connect, self.fd, self.addr, self.len) }).map(drop)
    }
}

/// Starts `call`'s connection without waiting for it: `O_NONBLOCK` is set
/// for the one call and put back (the caller has checked it was off), as
/// std's `connect_timeout` does. `Err(EINPROGRESS)` means the handshake
/// goes on; [`pending_error`] says how it ended once the socket is
/// writable.
pub(crate) fn connect_nonblocking(call: &Connect) -> Result<(), Errno> {
    let flags = fcntl_flags(call.fd)?;
    // SAFETY: fcntl on a descriptor number; no memory is passed.
    check(unsafe {
        libc::syscall(
            libc::SYS_fcntl,
            call.fd,
            libc::F_SETFL,
            flags | libc::O_NONBLOCK,
        )
    })?;
    let result = call.kernel();
    // Back to blocking even if the connect failed. The errno of a failed
    // connect is what the caller sees, so keep it across this call.
    let errno = Errno::last_raw();
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_fcntl, call.fd, libc::F_SETFL, flags) };
    Errno::set_raw(errno);
    result
}

/// The error a finished non-blocking connect left (`SO_ERROR`), if any.
pub(crate) fn pending_error(fd: i32) -> Result<Option<Errno>, Errno> {
    let mut error: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `error`, which
    // lives across the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_getsockopt,
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut error as *mut libc::c_int,
            &mut len as *mut libc::socklen_t,
        )
    })?;
    Ok((error != 0).then(|| Errno::from_raw(error)))
}

/// A `poll` call, as its caller made it.
pub(crate) struct Poll {
    pub(super) fds: *mut libc::pollfd,
    pub(super) nfds: libc::nfds_t,
    pub(super) timeout_ms: i32,
}

// SAFETY: a `Poll` is a description of a call whose arguments stay valid
// until the hooked call returns; the fiber side may hand it to a pool
// thread (`spindle::blocking`) and waits for that thread to finish with
// it before the hook returns.
unsafe impl Send for Poll {}
// SAFETY: as above; shared references only read the description.
unsafe impl Sync for Poll {}

impl Poll {
    /// The timeout the caller gave; `None` for none (negative).
    pub(crate) fn timeout(&self) -> Option<Duration> {
        u64::try_from(self.timeout_ms)
            .ok()
            .map(Duration::from_millis)
    }

    /// Whether the call polls no descriptor (it is a sleep).
    pub(crate) fn is_empty(&self) -> bool {
        self.nfds == 0
    }

    /// The one descriptor and whether it waits for writing, if the call
    /// polls exactly one for exactly one direction.
    pub(crate) fn single(&self) -> Option<(i32, bool)> {
        if self.nfds != 1 || self.fds.is_null() {
            return None;
        }
        // SAFETY: the caller's array holds `nfds` = 1 entry.
        let entry = unsafe { *self.fds };
        let reading = entry.events & (libc::POLLIN | libc::POLLRDNORM) != 0;
        let writing = entry.events & (libc::POLLOUT | libc::POLLWRNORM) != 0;
        let other = entry.events
            & !(libc::POLLIN | libc::POLLRDNORM | libc::POLLOUT | libc::POLLWRNORM)
            != 0;
        match (reading, writing, other) {
            (true, false, false) => Some((entry.fd, false)),
            (false, true, false) => Some((entry.fd, true)),
            _ => None,
        }
    }

    /// Polls without waiting: the caller's array filled in, the count of
    /// ready entries returned.
    pub(crate) fn probe(&self) -> Result<usize, Errno> {
        self.with_timeout(0)
    }

    /// The call as made (it may block).
    pub(crate) fn kernel(&self) -> Result<usize, Errno> {
        self.with_timeout(self.timeout_ms)
    }

    fn with_timeout(&self, timeout_ms: i32) -> Result<usize, Errno> {
        // SAFETY: the caller's array of `nfds` entries, unchanged.
        check(unsafe { libc::syscall(libc::SYS_poll, self.fds, self.nfds, timeout_ms) })
    }
}

fn fcntl_flags(fd: i32) -> Result<i32, Errno> {
    // SAFETY: fcntl(F_GETFL) takes no memory.
    check(unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_GETFL) }).map(|flags| flags as i32)
}

/// Whether `O_NONBLOCK` is set on `fd`'s open file description: the
/// program's (or a library's) choice that a hooked call must honour.
pub(crate) fn is_nonblocking(fd: i32) -> Result<bool, Errno> {
    Ok(fcntl_flags(fd)? & libc::O_NONBLOCK != 0)
}

/// Whether `fd` is readable (or writable), or has an error or hang-up,
/// now. A descriptor `poll` cannot judge counts as ready: the call then
/// reports what is wrong.
pub(crate) fn is_ready(fd: i32, write: bool) -> bool {
    let mut entry = libc::pollfd {
        fd,
        events: if write { libc::POLLOUT } else { libc::POLLIN },
        revents: 0,
    };
    // SAFETY: one entry that lives across the call; a zero timeout.
    let result = unsafe { libc::syscall(libc::SYS_poll, &mut entry as *mut libc::pollfd, 1, 0) };
    result != 0
}

/// Blocks the calling thread in `poll(2)` until `fd` is ready for
/// `write` (or reading), or has an error or hang-up, or `timeout` passes
/// (false then). For a descriptor that cannot be registered with the
/// reactor.
pub(crate) fn wait_blocking(fd: i32, write: bool, timeout: Option<Duration>) -> bool {
    let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
    loop {
        let mut entry = libc::pollfd {
            fd,
            events: if write { libc::POLLOUT } else { libc::POLLIN },
            revents: 0,
        };
        let timeout_ms = match deadline {
            None => -1,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return false;
                }
                i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX)
            }
        };
        // SAFETY: one entry that lives across the call.
        let result = unsafe {
            libc::syscall(
                libc::SYS_poll,
                &mut entry as *mut libc::pollfd,
                1,
                timeout_ms,
            )
        };
        match result {
            n if n > 0 => return true,
            0 => {}
            _ if Errno::last() == Errno::EINTR => {}
            // A descriptor poll cannot take: let the call report it.
            _ => return true,
        }
    }
}

/// Sleeps the calling thread in the kernel for `duration`, through
/// signals.
pub(crate) fn sleep_blocking(duration: Duration) {
    let mut request = libc::timespec {
        tv_sec: libc::time_t::try_from(duration.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(duration.subsec_nanos()),
    };
    loop {
        let mut remain = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: both `timespec`s live across the call.
        let result = unsafe {
            libc::syscall(
                libc::SYS_nanosleep,
                &request as *const libc::timespec,
                &mut remain as *mut libc::timespec,
            )
        };
        if result == 0 || Errno::last() != Errno::EINTR {
            return;
        }
        request = remain;
    }
}

/// A socket's receive and send timeouts (`SO_RCVTIMEO`, `SO_SNDTIMEO`),
/// `None` for none.
pub(crate) fn socket_timeouts(fd: i32) -> (Option<Duration>, Option<Duration>) {
    let read = |option: libc::c_int| {
        let mut value = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `value`, which
        // lives across the call.
        let result = unsafe {
            libc::syscall(
                libc::SYS_getsockopt,
                fd,
                libc::SOL_SOCKET,
                option,
                &mut value as *mut libc::timeval,
                &mut len as *mut libc::socklen_t,
            )
        };
        if result != 0 {
            return None;
        }
        timeval_duration(&value)
    };
    (read(libc::SO_RCVTIMEO), read(libc::SO_SNDTIMEO))
}

/// A socket timeout as the kernel reads it: zero is none.
pub(super) fn timeval_duration(value: &libc::timeval) -> Option<Duration> {
    let seconds = u64::try_from(value.tv_sec).ok()?;
    let micros = u32::try_from(value.tv_usec).ok()?;
    let duration = Duration::from_secs(seconds) + Duration::from_micros(u64::from(micros));
    (!duration.is_zero()).then_some(duration)
}
