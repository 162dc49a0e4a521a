//! The C library's blocking entry points, defined by spindle (the
//! `interpose` Cargo feature): the OS half of transparent blocking calls.
//!
//! With the feature on, this module defines `read`, `write`, `readv`,
//! `writev`, `recv`, `recvfrom`, `recvmsg`, `send`, `sendto`, `sendmsg`,
//! `accept`, `accept4`, `connect`, `poll`, `nanosleep`, `clock_nanosleep`,
//! `usleep` and `sleep` (`hooks.rs`), plus `close`, `dup2`, `dup3` and
//! `setsockopt`, which only keep the descriptor state below true. Each is
//! `#[no_mangle] extern "C"`, so a final executable that links spindle
//! resolves its own calls to these names (std's, the `libc` crate's, any
//! C code linked in) to them instead of the C library's.
//!
//! # How the definitions get into the link
//! rustc links every `#[no_mangle]` function of every crate in the
//! dependency graph: it writes an object (`symbols.o`) that refers to all
//! of them, so the archive member holding them is always pulled in, and
//! the static linker binds std's undefined `recv` to this definition
//! before it reaches `libc.so`. [`install`], which `Shared::start` calls,
//! refers to every hook as well, so the member is pulled even by a linker
//! that ignored that object. The executable also exports the names in its
//! dynamic symbol table, so shared libraries the program loads call them
//! too. The C library's calls to itself use private aliases and are *not*
//! captured (`getaddrinfo`'s own sockets, `fclose`, `system`). Linked
//! into a `cdylib` the hooks capture only what the dynamic linker binds to
//! them: calls from a library loaded with `dlopen` go to the C library,
//! so that use is not supported; `LD_PRELOAD` binds them, but no runtime
//! then runs the program's code on fibers, so every call goes straight to
//! the kernel.
//!
//! # Who decides what
//! A hook first asks the fiber side (`io/interpose/`, installed by
//! [`install`] as a table of function pointers, so this module imports
//! nothing above `sys/`) whether the calling thread runs a fiber. If it
//! does not (a plain thread, a worker between fibers, the monitor, a pool
//! thread), or nothing is installed, or the process is a child forked
//! after [`install`], the hook makes the system call itself, through
//! `libc::syscall`: the same call the C library's wrapper makes, with
//! `errno` set the same way. On a fiber the hook asks the descriptor's
//! kind (`descriptor.rs`, cached per descriptor number) and hands sockets,
//! pipes and other pollable descriptors to the fiber side, which tries
//! the call without blocking, parks the fiber when it would block and the
//! *caller* did not make the descriptor non-blocking, and retries; regular
//! files, directories and block devices (which never report "would
//! block") go straight to the kernel.
//!
//! `errno` is left as the caller found it when the call succeeds (a
//! parked call makes other system calls on the way), and set from the
//! call's result when it fails. `read`, `write`, `readv` and `writev` on
//! descriptors 0, 1 and 2 always go to the kernel: std's `Stdout` and
//! `Stderr` hold a thread-owned reentrant lock across the write, and a
//! fiber parked inside one would resume on another thread still holding
//! it.
//!
//! # Rejected
//! - Finding the C library's own functions with `dlsym(RTLD_NEXT)` and
//!   calling them: a look-up that can allocate on the first call of every
//!   hook, and an ordering problem for calls made before it ran, to get
//!   what `libc::syscall` does in one instruction sequence. The wrappers
//!   add nothing the hooks need (thread cancellation points only).
//! - Setting `O_NONBLOCK` on a descriptor the first time a fiber touches
//!   it and hiding the flag from the program (libco's and libgo's way):
//!   the flag belongs to the open file description, so a child process or
//!   a `dup` would see it, and `fcntl` and `ioctl(FIONBIO)`, both
//!   variadic, would have to be interposed too. Sockets get a per-call
//!   `MSG_DONTWAIT` instead; other descriptors are asked with a
//!   zero-timeout `poll`.

mod descriptor;
mod hooks;
mod kernel;

use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::time::Duration;

pub(crate) use descriptor::{forget as forget_kind, kind, Kind, TRACKED_DESCRIPTORS};
pub(crate) use kernel::{
    connect_nonblocking, is_nonblocking, is_ready, pending_error, sleep_blocking, socket_timeouts,
    wait_blocking, Accept, Call, Connect, Poll,
};

pub(crate) use nix::errno::Errno;

/// What the hooks ask the layers above, installed once by [`install`].
/// Each function runs on the calling thread, inside the hook.
pub(crate) struct FiberSide {
    /// Whether the calling thread is running a fiber now. Called by every
    /// hook on every call: a thread-local read.
    pub(crate) on_fiber: fn() -> bool,
    /// A read or write family call on a socket or pollable descriptor,
    /// made on a fiber.
    pub(crate) transfer: fn(&Call) -> Result<usize, Errno>,
    /// `accept` / `accept4` on a socket, on a fiber.
    pub(crate) accept: fn(&Accept) -> Result<usize, Errno>,
    /// `connect` on a stream socket, on a fiber.
    pub(crate) connect: fn(&Connect) -> Result<(), Errno>,
    /// `poll` with a non-zero timeout, on a fiber.
    pub(crate) poll: fn(&Poll) -> Result<usize, Errno>,
    /// Sleeps the calling fiber for the duration; the hook has checked
    /// that a fiber runs.
    pub(crate) sleep: fn(Duration),
    /// Forgets what the fiber side keeps about a descriptor number (its
    /// reactor registration), before the number is closed or reused. Any
    /// thread; must not allocate, and takes a lock only when there is
    /// something to drop.
    pub(crate) forget: fn(i32),
    /// A socket's `SO_RCVTIMEO` (`write` false) or `SO_SNDTIMEO` was set.
    pub(crate) timeout_set: fn(fd: i32, write: bool, timeout: Option<Duration>),
}

/// The installed fiber side; null until [`install`]. Written once
/// (Release, pairs with the hooks' Acquire load: the table is complete
/// when seen).
static FIBER_SIDE: AtomicPtr<FiberSide> = AtomicPtr::new(std::ptr::null_mut());

/// Set in a child process forked after [`install`]: its fibers' runtime
/// did not come along (only the forking thread did), so every call goes
/// to the kernel. Written by the `pthread_atfork` child handler, read by
/// every hook; Relaxed: the child is single-threaded when it is set.
static FORKED: AtomicBool = AtomicBool::new(false);

/// Installs the fiber side for every hook of the process. The first call
/// wins; later calls (every runtime's start calls it) do nothing.
pub(crate) fn install(side: &'static FiberSide) {
    let installed = FIBER_SIDE.compare_exchange(
        std::ptr::null_mut(),
        (side as *const FiberSide).cast_mut(),
        Ordering::AcqRel,
        Ordering::Acquire,
    );
    if installed.is_ok() {
        // SAFETY: `after_fork_in_child` is an `extern "C"` function that
        // only stores to an atomic, which is async-signal-safe, as a
        // handler run in a fork child must be.
        let _ = unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
        hooks::keep_linked();
    }
}

extern "C" fn after_fork_in_child() {
    FORKED.store(true, Ordering::Relaxed);
}

/// The fiber side, if installed and this is not a forked child.
#[inline]
fn fiber_side() -> Option<&'static FiberSide> {
    // Acquire: pairs with `install`'s Release.
    let side = FIBER_SIDE.load(Ordering::Acquire);
    if side.is_null() || FORKED.load(Ordering::Relaxed) {
        return None;
    }
    // SAFETY: a non-null pointer came from the `&'static FiberSide`
    // given to `install`.
    Some(unsafe { &*side })
}

/// The fiber side when the calling thread runs a fiber: the test every
/// hook starts with.
#[inline]
fn on_fiber() -> Option<&'static FiberSide> {
    fiber_side().filter(|side| (side.on_fiber)())
}
