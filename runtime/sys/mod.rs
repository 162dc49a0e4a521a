//! Every operating-system call the runtime makes, behind one small surface.
//!
//! The rest of the crate never names `libc` or `nix`; it asks this module
//! for what a platform must provide:
//!
//! - **guarded stack memory** ([`memory`]): large address-space reservations,
//!   a guard page installed inside a reservation, giving pages back, and the
//!   memory-mapping budget (`vm.max_map_count`);
//! - **stack-overflow reporting** ([`signal`]): an alternate signal stack per
//!   thread that runs fibers and a `SIGSEGV` handler that recognises a hit on a
//!   fiber's guard page;
//! - **the panic hook** ([`panic`]): process-wide like the signal handler,
//!   installed once in front of the previous hook (std's API, not the
//!   OS's, but the same kind of shared process state);
//! - **per-thread CPU clocks** ([`thread`]): how the monitor tells a worker
//!   blocked in a system call from one computing;
//! - **waiting for a descriptor on a plain thread** ([`poll`]): `poll(2)`,
//!   for spindle sockets used outside fibers (fibers wait in the reactor,
//!   `io/`, which is mio's);
//! - **any descriptor's blocking mode and readiness** ([`fd`]): `O_NONBLOCK`
//!   on and off, and a zero-timeout `poll(2)`, for `io::Fd`;
//! - **process control** ([`process`]): pidfds, the parent-death signal,
//!   inherited descriptors;
//! - **signals for waiting on** ([`signal_pipe`]): any catchable signal
//!   turned into a pending bit and a byte on a pipe, for `spindle::signal`;
//! - **the C library's blocking calls, defined by spindle** (`interpose`,
//!   with the `interpose` Cargo feature): `read`, `recv`, `accept`,
//!   `connect`, `poll`, `nanosleep`, ... as `#[no_mangle]` functions that
//!   hand calls made on a fiber to `io/interpose/` and make every other
//!   call themselves.
//!
//! Thread parking uses `std::sync` (see `scheduler/park.rs`) and needs nothing
//! from here. Linux is the one platform that must work; others are refused at
//! compile time below rather than half-supported.
//!
//! # `nix`, and the raw `libc` calls that remain
//! System calls go through `nix`, which checks their results
//! (`Result<_, Errno>`), types their flags and hands out owned descriptors.
//! `libc` is called directly only where `nix` has no such call, each in a
//! small `unsafe` block with its `SAFETY` argument:
//!
//! - `memory.rs`: `madvise(MADV_GUARD_INSTALL)`; nix's `MmapAdvise` does
//!   not name that advice. `process_madvise` and `pidfd_open`, which nix
//!   lacks, to install many guards in one call.
//! - `signal.rs`: `sigaction` with a null new action, to read the previous
//!   `SIGSEGV` action before ours is installed (nix's `sigaction` always
//!   installs one); `sigaltstack`, which nix lacks; and the signal path
//!   itself, the `SIGSEGV` handler's body (chaining to or restoring the
//!   previous action) and `write_stderr`, kept on raw async-signal-safe
//!   calls with nothing between them and the kernel.
//! - `thread.rs`: `pthread_getcpuclockid`; nix has only the per-process CPU
//!   clock.
//! - `process.rs`: `pidfd_open` and `pidfd_send_signal`, which nix lacks;
//!   `fstat` of a descriptor number that may not be open (nix's `fstat`
//!   takes a descriptor borrowed while open).
//! - `signal_pipe.rs`: `sigaction`, to read the previous action (a null new
//!   action) and to install ours for real-time signals too, which nix's
//!   `Signal` cannot name; and the handler's body (`write(2)`, the call to
//!   the previous handler, `errno` preserved).
//! - `interpose/`: every hooked call's system call, through
//!   `libc::syscall` (the C library's wrapper of the same name is the hook
//!   itself), and `pthread_atfork`, which nix lacks.

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
compile_error!(
    "spindle supports Linux on x86-64 only: its stacks rely on Linux's \
     MADV_GUARD_INSTALL / mprotect guard pages and its stack-overflow handler \
     reads x86-64 Linux signal frames"
);

pub(crate) mod fd;
#[cfg(feature = "interpose")]
pub(crate) mod interpose;
pub(crate) mod memory;
pub(crate) mod panic;
pub(crate) mod poll;
pub(crate) mod process;
pub(crate) mod signal;
pub(crate) mod signal_pipe;
pub(crate) mod thread;
