//! The short spin a contended lock makes before it parks, shared by
//! `Mutex` and `RwLock`.
//!
//! # Design
//! A lock held by a fiber running on another worker is usually free again
//! within nanoseconds, sooner than a park and unpark. So a contended `lock`
//! tries again a few times before it queues. The tries back off
//! exponentially: 1, 2, 4, ... pause instructions between them, at most
//! `1 << MAX_BACKOFF_SHIFT`, [`SPIN_PROBES`] tries in all: a few
//! microseconds of spinning at most.
//!
//! The backoff is what makes the spin pay. With a try after every pause,
//! two workers contending for one lock moved its cache line between the
//! cores at every increment, and the fibers of the contended bench
//! (`benches/sync.rs`) lost to std threads on a std `Mutex`.
//! std's threads win by *sleeping* the loser, which lets the winner run
//! cache-hot. Backing off does the same without a sleep: between two tries
//! of the loser, the holder locks and unlocks many times with the line in
//! its own cache. The shapes measured (tries, largest backoff) are in
//! `docs/decisions.md`, `SPIN_PROBES`.
//!
//! Spinning is skipped where it cannot help (`spinning_can_help`): on one
//! core, and in a fiber of a one-worker runtime, where a holder that is a
//! fiber is parked, not running. The Mutex also skips it when waiters are
//! queued already (`mutex.rs` says why).

use std::sync::OnceLock;

/// How many times a contended lock tries again before it queues. With
/// `MAX_BACKOFF_SHIFT`, measured: the fastest shape on the contended bench
/// among those that spin for under ten microseconds.
const SPIN_PROBES: u32 = 10;
/// The wait between two tries grows to at most `1 << MAX_BACKOFF_SHIFT`
/// pauses. Measured with `SPIN_PROBES`, as one shape.
const MAX_BACKOFF_SHIFT: u32 = 6;

/// Tries `acquire` up to [`SPIN_PROBES`] times with exponential backoff in
/// between; returns whether it succeeded. Returns false at once where
/// spinning cannot help.
pub(crate) fn spin_to_acquire(mut acquire: impl FnMut() -> bool) -> bool {
    if !spinning_can_help() {
        return false;
    }
    for probe in 0..SPIN_PROBES {
        if acquire() {
            return true;
        }
        for _ in 0..1u32 << probe.min(MAX_BACKOFF_SHIFT) {
            std::hint::spin_loop();
        }
    }
    false
}

/// Whether the holder of a lock can be running at the same time as the
/// caller, on another core. Not on one core; not in a fiber of a
/// one-worker runtime (there a holder that is a fiber is parked: spinning
/// only delays our park).
fn spinning_can_help() -> bool {
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    cores > 1 && crate::fiber::current_runtime_workers().is_none_or(|workers| workers > 1)
}
