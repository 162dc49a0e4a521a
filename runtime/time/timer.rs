//! A fiber's park with a deadline: the timer it registers with its worker,
//! and the guard that cancels it.
//!
//! The timer goes to the queue of the worker the fiber parks on (an
//! uncontended lock), which fires it. When the fiber wakes earlier, or is
//! unwound while parked, the guard removes the entry (from that worker's
//! queue, wherever the fiber runs by then), so a timer never outlives the
//! wait it belongs to.

use std::time::Instant;

use crate::fiber::CurrentFiber;
use crate::scheduler::timers::TimerKey;
use crate::scheduler::Shared;

/// `time::park_until`'s park: parks the running fiber with a timer for
/// `deadline` on its worker; on a plain thread,
/// `std::thread::park_timeout` for what is left. `now` is the caller's
/// reading of the clock, passed on rather than read again (a second read
/// shows in a million sleepers' profile: `docs/decisions.md`,
/// "park_deadline").
///
/// Returns false, without parking, where no timer can run: in a fiber
/// being cancelled at shutdown, on the thread that unwinds it, a timed
/// wait times out at once (`fiber/cancel.rs`), so a destructor that waits
/// with a timeout neither spins nor holds shutdown up.
pub(crate) fn park_deadline(deadline: Instant, now: Instant) -> bool {
    let Some(fiber) = CurrentFiber::get() else {
        std::thread::park_timeout(deadline.saturating_duration_since(now));
        return true;
    };
    if fiber.take_token() {
        return true;
    }
    let shared = fiber.shared();
    // The timer gets a handle of its own.
    let Some(key) = shared.insert_timer(deadline, || fiber.handle()) else {
        // Not on one of our workers: the shutdown pass unwinding us.
        return false;
    };
    let _cancel = CancelTimer { shared, key };
    fiber.park_after_token_check();
    true
}

/// Cancels the timer when the fiber wakes early, and if it is unwound
/// instead.
struct CancelTimer<'a> {
    shared: &'a Shared,
    key: TimerKey,
}

impl Drop for CancelTimer<'_> {
    fn drop(&mut self) {
        self.shared.remove_timer(self.key);
    }
}
