//! Every operating-system call the runtime makes, behind one small surface.
//!
//! The rest of the crate never names `libc`; it asks this module for what a
//! platform must provide:
//!
//! - **guarded stack memory** ([`memory`]): large address-space reservations,
//!   a guard page installed inside a reservation, giving pages back, and the
//!   memory-mapping budget (`vm.max_map_count`);
//! - **stack-overflow reporting** ([`signal`]): an alternate signal stack per
//!   thread that runs fibers and a `SIGSEGV` handler that recognises a hit on a
//!   fiber's guard page;
//! - **per-thread CPU clocks** ([`thread`]): how the monitor tells a worker
//!   blocked in a system call from one computing;
//! - **waiting for a descriptor on a plain thread** ([`poll`]): `poll(2)`,
//!   for spindle sockets used outside fibers (fibers wait in the reactor,
//!   `io/`, which is mio's);
//! - **process control for shards** ([`process`]): pidfds, the parent-death
//!   signal, inherited descriptors, termination signals.
//!
//! Thread parking uses `std::sync` (see `scheduler/park.rs`) and needs nothing
//! from here. Linux is the one platform that must work; others are refused at
//! compile time below rather than half-supported.

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
compile_error!(
    "spindle supports Linux on x86-64 only: its stacks rely on Linux's \
     MADV_GUARD_INSTALL / mprotect guard pages and its stack-overflow handler \
     reads x86-64 Linux signal frames"
);

pub(crate) mod memory;
pub(crate) mod poll;
pub(crate) mod process;
pub(crate) mod signal;
pub(crate) mod thread;
