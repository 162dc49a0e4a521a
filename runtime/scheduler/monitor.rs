//! The monitor: a thread that watches the workers' progress, so that a
//! fiber queued on a busy worker is not trapped there while another worker
//! sleeps (Go's `sysmon`, reduced to that one duty so far).
//!
//! # Why
//! Filling an empty next slot wakes nobody: waking a sleeping worker on
//! every message of a ping-pong would cost a futex wake per message (see
//! `queue.rs`). And fibers are not preempted. So a fiber that computes, or
//! spins polling, without yielding keeps whatever sits in its worker's next
//! slot or deque from running, even though another worker is idle. Found by
//! `tests/time.rs`: a joiner polling `join_timeout(0)` in a loop starved
//! the very fiber it was waiting for.
//!
//! # How
//! Every [`BUSY_INTERVAL`] the monitor reads each worker's tick counter
//! (`Remote::ticks`, bumped at every scheduling decision). A worker whose
//! counter has not moved for a whole interval while fibers wait in its next
//! slot or deque is stuck in one fiber; the monitor then wakes a sleeping
//! worker (the usual `notify_one`), which searches and steals them (next
//! slots included). When no worker has anything queued, the interval
//! doubles up to [`IDLE_INTERVAL`], so an idle runtime costs ~100 wake-ups
//! a second: measured, an idle 2-worker runtime used 8 ms of CPU over 2 s
//! (0.40% of one core), monitor included.
//!
//! It also polls the I/O reactor, without blocking, when no worker has for
//! `io::reactor::STALE_AFTER` (Go's sysmon does the same with `netpoll`).
//!
//! Handing a stuck worker's queue to a *spare* thread when every worker is
//! busy (a fiber blocked in a raw system call while others wait) is the
//! next step (issue 5); the tick counter is already the signal it needs.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::park::Parker;
use super::Shared;

/// Check period while some worker has fibers queued. 1 ms: a trapped fiber
/// waits at most about two periods; Go's sysmon starts at 20 µs, but each
/// check here costs a wake-up of this thread (~2–5 µs of CPU on this VM),
/// so 1 ms keeps the monitor under 0.5% of a core on a busy runtime. A
/// guess pending measurement of trapped-fiber latency against that cost.
pub(crate) const BUSY_INTERVAL: Duration = Duration::from_millis(1);

/// The longest period, reached by doubling while nothing is queued
/// anywhere (Go's sysmon backs off to 10 ms as well).
pub(crate) const IDLE_INTERVAL: Duration = Duration::from_millis(10);

/// The monitor thread's body.
pub(crate) fn run(shared: Arc<Shared>, parker: Parker) {
    let mut last_ticks: Vec<u64> = shared
        .remotes
        .iter()
        .map(|r| r.ticks.load(Ordering::Relaxed))
        .collect();
    let mut interval = BUSY_INTERVAL;
    while !shared.is_shutdown() {
        parker.park(Some(interval));
        if shared.is_shutdown() {
            return;
        }
        // Readiness nobody has collected for a while (every worker busy in
        // long slices): collect it (`io/reactor.rs`).
        shared.reactor.poll_if_stale();
        let mut anything_queued = false;
        for (index, remote) in shared.remotes.iter().enumerate() {
            // Relaxed: a progress hint; a stale read only delays a rescue
            // by one period.
            let ticks = remote.ticks.load(Ordering::Relaxed);
            let queued = !remote.next.is_empty() || !remote.stealer.is_empty();
            anything_queued |= queued;
            if queued && ticks == last_ticks[index] && !shared.idle.is_parked(index) {
                // Stuck in one fiber with others waiting behind it.
                shared.notify_one();
            }
            last_ticks[index] = ticks;
        }
        interval = if anything_queued {
            BUSY_INTERVAL
        } else {
            (interval * 2).min(IDLE_INTERVAL)
        };
    }
}
