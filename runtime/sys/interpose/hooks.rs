//! The `#[no_mangle]` definitions: each builds the call it was given,
//! hands it to the fiber side when a fiber runs and the descriptor may
//! block, and otherwise makes the system call itself (module docs of
//! `sys/interpose/mod.rs`).
//!
//! Every hook is an `unsafe extern "C" fn` with the C library's signature;
//! its safety contract is the C function's own, which the caller has
//! accepted by calling it (valid buffers and lengths, a valid
//! `timespec`, ...). Nothing here unwinds: the fiber side catches what
//! its parks raise before returning (`io/interpose/mod.rs`).

use std::time::Duration;

use libc::{c_int, c_uint, c_void, size_t, sockaddr, socklen_t, ssize_t};
use nix::errno::Errno;

use super::descriptor;
use super::kernel::{check, timeval_duration, Accept, Call, Connect, Poll};
use super::{fiber_side, on_fiber, FiberSide};

/// `SO_RCVTIMEO_NEW` and `SO_SNDTIMEO_NEW`, the 64-bit-time names of the
/// two options (the same `timeval` layout on x86-64).
const SO_RCVTIMEO_NEW: c_int = 66;
const SO_SNDTIMEO_NEW: c_int = 67;

/// A result as the C function reports it: the value, or -1 with `errno`.
fn report(result: Result<usize, Errno>) -> ssize_t {
    match result {
        Ok(value) => value as ssize_t,
        Err(errno) => {
            errno.set();
            -1
        }
    }
}

/// Runs the fiber side's handling of a call, leaving `errno` as the
/// caller had it if the call succeeds.
fn keeping_errno<T>(f: impl FnOnce() -> Result<T, Errno>) -> Result<T, Errno> {
    let saved = Errno::last_raw();
    let result = f();
    if result.is_ok() {
        Errno::set_raw(saved);
    }
    result
}

/// A read or write family call: to the fiber side, or to the kernel.
fn transfer(mut call: Call) -> ssize_t {
    if let Some(side) = on_fiber() {
        if call.classify() {
            return report(keeping_errno(|| (side.transfer)(&call)));
        }
    }
    report(call.kernel())
}

/// # Safety
/// As the C library's `read`.
#[no_mangle]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t {
    transfer(Call::read(fd, buf, count))
}

/// # Safety
/// As the C library's `readv`.
#[no_mangle]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const libc::iovec, count: c_int) -> ssize_t {
    transfer(Call::readv(fd, iov, count))
}

/// # Safety
/// As the C library's `recv`.
#[no_mangle]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    transfer(Call::recv(
        fd,
        buf,
        len,
        flags,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    ))
}

/// # Safety
/// As the C library's `recvfrom`.
#[no_mangle]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    from: *mut sockaddr,
    from_len: *mut socklen_t,
) -> ssize_t {
    transfer(Call::recv(fd, buf, len, flags, from, from_len))
}

/// # Safety
/// As the C library's `recvmsg`.
#[no_mangle]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> ssize_t {
    transfer(Call::recvmsg(fd, msg, flags))
}

/// # Safety
/// As the C library's `write`.
#[no_mangle]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
    transfer(Call::write(fd, buf, count))
}

/// # Safety
/// As the C library's `writev`.
#[no_mangle]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const libc::iovec, count: c_int) -> ssize_t {
    transfer(Call::writev(fd, iov, count))
}

/// # Safety
/// As the C library's `send`.
#[no_mangle]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t {
    transfer(Call::send(fd, buf, len, flags, std::ptr::null(), 0))
}

/// # Safety
/// As the C library's `sendto`.
#[no_mangle]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    to: *const sockaddr,
    to_len: socklen_t,
) -> ssize_t {
    transfer(Call::send(fd, buf, len, flags, to, to_len))
}

/// # Safety
/// As the C library's `sendmsg`.
#[no_mangle]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> ssize_t {
    transfer(Call::sendmsg(fd, msg, flags))
}

fn accept_call(call: Accept) -> c_int {
    let side = on_fiber().filter(|_| descriptor::kind(call.fd).is_socket());
    let result = match side {
        Some(side) => keeping_errno(|| (side.accept)(&call)),
        None => call.kernel(),
    };
    report(result) as c_int
}

/// # Safety
/// As the C library's `accept`.
#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, addr_len: *mut socklen_t) -> c_int {
    accept_call(Accept {
        fd,
        addr,
        addr_len,
        flags: None,
    })
}

/// # Safety
/// As the C library's `accept4`.
#[no_mangle]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    addr_len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    accept_call(Accept {
        fd,
        addr,
        addr_len,
        flags: Some(flags),
    })
}

/// # Safety
/// As the C library's `connect`.
#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let call = Connect { fd, addr, len };
    let side = on_fiber().filter(|_| {
        matches!(
            descriptor::kind(fd),
            descriptor::Kind::Stream | descriptor::Kind::SeqPacket
        )
    });
    let result = match side {
        Some(side) => keeping_errno(|| (side.connect)(&call)),
        None => call.kernel(),
    };
    report(result.map(|()| 0)) as c_int
}

/// # Safety
/// As the C library's `poll`.
#[no_mangle]
pub unsafe extern "C" fn poll(fds: *mut libc::pollfd, nfds: libc::nfds_t, timeout: c_int) -> c_int {
    let call = Poll {
        fds,
        nfds,
        timeout_ms: timeout,
    };
    let result = match on_fiber().filter(|_| timeout != 0) {
        Some(side) => keeping_errno(|| (side.poll)(&call)),
        None => call.kernel(),
    };
    report(result) as c_int
}

/// A valid relative sleep's length; `None` for what the kernel refuses
/// (left to it, for its error).
///
/// # Safety
/// `request` must be null or point to a readable `timespec`.
unsafe fn requested(request: *const libc::timespec) -> Option<Duration> {
    if request.is_null() {
        return None;
    }
    // SAFETY: the caller's promise.
    let request = unsafe { *request };
    let seconds = u64::try_from(request.tv_sec).ok()?;
    let nanos = u32::try_from(request.tv_nsec)
        .ok()
        .filter(|&n| n < 1_000_000_000)?;
    Some(Duration::new(seconds, nanos))
}

/// # Safety
/// As the C library's `nanosleep`.
#[no_mangle]
pub unsafe extern "C" fn nanosleep(
    request: *const libc::timespec,
    remain: *mut libc::timespec,
) -> c_int {
    if let Some(side) = on_fiber() {
        // SAFETY: the caller's `timespec`.
        if let Some(duration) = unsafe { requested(request) } {
            (side.sleep)(duration);
            return 0;
        }
    }
    // SAFETY: the caller's arguments, unchanged.
    report(check(unsafe {
        libc::syscall(libc::SYS_nanosleep, request, remain)
    })) as c_int
}

/// # Safety
/// As the C library's `clock_nanosleep` (which returns an error number
/// and leaves `errno` alone).
#[no_mangle]
pub unsafe extern "C" fn clock_nanosleep(
    clock: libc::clockid_t,
    flags: c_int,
    request: *const libc::timespec,
    remain: *mut libc::timespec,
) -> c_int {
    // The C library's rules: no sleeping on the calling thread's own CPU
    // clock, and the process CPU clock by its kernel name.
    if clock == libc::CLOCK_THREAD_CPUTIME_ID {
        return libc::EINVAL;
    }
    let clock = if clock == libc::CLOCK_PROCESS_CPUTIME_ID {
        // MAKE_PROCESS_CPUCLOCK(0, CPUCLOCK_SCHED).
        (!0 << 3) | 2
    } else {
        clock
    };
    let wall_clock = matches!(
        clock,
        libc::CLOCK_REALTIME | libc::CLOCK_MONOTONIC | libc::CLOCK_BOOTTIME | libc::CLOCK_TAI
    );
    if let Some(side) = on_fiber().filter(|_| wall_clock) {
        // SAFETY: the caller's `timespec`.
        if let Some(duration) = unsafe { requested(request) } {
            let duration = if flags & libc::TIMER_ABSTIME != 0 {
                until(clock, duration)
            } else {
                Some(duration)
            };
            if let Some(duration) = duration {
                (side.sleep)(duration);
                return 0;
            }
        }
    }
    let saved = Errno::last_raw();
    // SAFETY: the caller's arguments, unchanged.
    let result = unsafe { libc::syscall(libc::SYS_clock_nanosleep, clock, flags, request, remain) };
    let error = if result < 0 { Errno::last_raw() } else { 0 };
    Errno::set_raw(saved);
    error
}

/// How long until `clock` reads `deadline` (zero if it has), or `None`
/// if the clock cannot be read.
fn until(clock: libc::clockid_t, deadline: Duration) -> Option<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one `timespec`, which lives across the
    // call.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return None;
    }
    let now = Duration::new(
        u64::try_from(now.tv_sec).ok()?,
        u32::try_from(now.tv_nsec).ok()?,
    );
    Some(deadline.saturating_sub(now))
}

/// # Safety
/// As the C library's `usleep`.
#[no_mangle]
pub unsafe extern "C" fn usleep(micros: libc::useconds_t) -> c_int {
    let duration = Duration::from_micros(u64::from(micros));
    if let Some(side) = on_fiber() {
        (side.sleep)(duration);
        return 0;
    }
    let request = libc::timespec {
        tv_sec: duration.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(duration.subsec_nanos()),
    };
    // SAFETY: `request` lives across the call; no remainder is asked for.
    let result = unsafe {
        libc::syscall(
            libc::SYS_nanosleep,
            &request as *const libc::timespec,
            std::ptr::null_mut::<libc::timespec>(),
        )
    };
    report(check(result)) as c_int
}

/// # Safety
/// As the C library's `sleep` (which returns the seconds left when a
/// signal ends it early, and keeps `errno` when it does not).
#[no_mangle]
pub unsafe extern "C" fn sleep(seconds: c_uint) -> c_uint {
    if let Some(side) = on_fiber() {
        (side.sleep)(Duration::from_secs(u64::from(seconds)));
        return 0;
    }
    let saved = Errno::last_raw();
    let request = libc::timespec {
        tv_sec: libc::time_t::from(seconds),
        tv_nsec: 0,
    };
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
    if result < 0 {
        return remain.tv_sec as c_uint;
    }
    Errno::set_raw(saved);
    0
}

/// Drops what is known about descriptor `fd` before its number goes.
fn forget(side: &FiberSide, fd: c_int) {
    descriptor::forget(fd);
    (side.forget)(fd);
}

/// # Safety
/// As the C library's `close`.
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if let Some(side) = fiber_side() {
        forget(side, fd);
    }
    // SAFETY: closing a descriptor number, as asked.
    report(check(unsafe { libc::syscall(libc::SYS_close, fd) })) as c_int
}

/// # Safety
/// As the C library's `dup2`.
#[no_mangle]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    if let Some(side) = fiber_side().filter(|_| old != new) {
        forget(side, new);
    }
    // SAFETY: descriptor numbers only.
    report(check(unsafe { libc::syscall(libc::SYS_dup2, old, new) })) as c_int
}

/// # Safety
/// As the C library's `dup3`.
#[no_mangle]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    if let Some(side) = fiber_side().filter(|_| old != new) {
        forget(side, new);
    }
    // SAFETY: descriptor numbers and flags only.
    report(check(unsafe {
        libc::syscall(libc::SYS_dup3, old, new, flags)
    })) as c_int
}

/// # Safety
/// As the C library's `setsockopt`.
#[no_mangle]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    len: socklen_t,
) -> c_int {
    // SAFETY: the caller's arguments, unchanged.
    let result = check(unsafe { libc::syscall(libc::SYS_setsockopt, fd, level, name, value, len) });
    let timeout = level == libc::SOL_SOCKET
        && matches!(
            name,
            libc::SO_RCVTIMEO | libc::SO_SNDTIMEO | SO_RCVTIMEO_NEW | SO_SNDTIMEO_NEW
        );
    if result.is_ok() && timeout && len as usize >= std::mem::size_of::<libc::timeval>() {
        if let Some(side) = fiber_side() {
            // SAFETY: the kernel has just read a `timeval` from `value`.
            let timeval = unsafe { std::ptr::read_unaligned(value.cast::<libc::timeval>()) };
            let write = matches!(name, libc::SO_SNDTIMEO | SO_SNDTIMEO_NEW);
            (side.timeout_set)(fd, write, timeval_duration(&timeval));
        }
    }
    report(result) as c_int
}

/// Refers to every hook, so that the object holding them is part of any
/// link that reaches `install` (see the module docs of `mod.rs`).
pub(super) fn keep_linked() {
    let hooks: [*const (); 22] = [
        read as *const (),
        readv as *const (),
        recv as *const (),
        recvfrom as *const (),
        recvmsg as *const (),
        write as *const (),
        writev as *const (),
        send as *const (),
        sendto as *const (),
        sendmsg as *const (),
        accept as *const (),
        accept4 as *const (),
        connect as *const (),
        poll as *const (),
        nanosleep as *const (),
        clock_nanosleep as *const (),
        usleep as *const (),
        sleep as *const (),
        close as *const (),
        dup2 as *const (),
        dup3 as *const (),
        setsockopt as *const (),
    ];
    std::hint::black_box(hooks);
}
