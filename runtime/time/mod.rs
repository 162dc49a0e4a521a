//! Time for fibers: [`sleep`], [`sleep_until`], [`park_timeout`] and
//! [`JoinHandle::join_timeout`].
//!
//! A fiber that waits with a deadline registers a timer with the worker it
//! runs on and parks (`timer.rs`); the worker unparks it when the deadline
//! passes (within one tick of its timing wheel, `scheduler/wheel.rs`).
//! Workers look for due timers at every scheduling decision, so a busy
//! worker fires them as soon as the fiber it is running yields or parks,
//! and an idle worker sleeps until its earliest deadline and no longer
//! (`scheduler/worker.rs`, `park_worker`). On plain threads these
//! functions are `std::thread`'s.
//!
//! A fiber that computes without yielding delays its worker's timers, as it
//! delays everything else on that worker.
//!
//! Every wait here is a cancellation point (`JoinHandle::cancel`): a
//! cancelled sleeper unwinds from its park, and the timer's guard removes
//! its entry on the way out (`timer.rs`).
//!
//! No timer runs while shutdown unwinds the fibers left
//! (`scheduler/shutdown.rs`): a timed wait in a destructor that runs then
//! times out at once (a `sleep` returns, a `join_timeout` gives the handle
//! back, a `recv_timeout` reports a timeout), so it neither spins nor holds
//! shutdown up.
//!
//! # Layering
//! The timer queues themselves belong to the scheduler
//! (`scheduler/timers.rs`): a worker fires its own timers and sleeps until
//! the earliest, so its queue sits in its `Remote`, beside its run queue.
//! This module registers and cancels timers through the scheduler's narrow
//! API (`Shared::insert_timer`, `Shared::remove_timer`) and parks through
//! the fiber's (`fiber::CurrentFiber`); neither `fiber/` nor `scheduler/`
//! knows of `time/`. Rejected: the queue here with the scheduler calling up
//! into it to fire and sleep, which tied the two into one import cycle.

mod timer;

use std::time::{Duration, Instant};

use crate::fiber::join::{JoinError, JoinHandle};

pub(crate) use self::timer::park_deadline;

/// Puts the calling fiber to sleep for at least `duration`; its worker runs
/// other fibers meanwhile. On a plain thread, `std::thread::sleep`.
///
/// ```
/// use std::time::{Duration, Instant};
/// let rt = spindle::Runtime::new().unwrap();
/// let slept = rt.block_on(|| {
///     let start = Instant::now();
///     spindle::time::sleep(Duration::from_millis(5));
///     start.elapsed()
/// });
/// assert!(slept >= Duration::from_millis(5));
/// ```
pub fn sleep(duration: Duration) {
    match Instant::now().checked_add(duration) {
        Some(deadline) => sleep_until(deadline),
        None => loop {
            crate::park(); // "forever": only an unpark-free eternity ends it
        },
    }
}

/// Puts the calling fiber to sleep until `deadline`. On a plain thread,
/// sleeps the thread.
pub fn sleep_until(deadline: Instant) {
    // Unparks that arrive meanwhile only end one park early; the loop
    // sleeps again for what is left.
    while park_until(Some(deadline)) {}
}

/// One step of a wait with an optional deadline, the loop under every
/// timed wait in the crate: parks (until unparked, spuriously, or until
/// `deadline`) and returns true; or, if `deadline` has passed, returns
/// false without parking. With no deadline it parks. Callers loop,
/// re-checking what they wait for, and take false as their timeout: in a
/// fiber being unwound at shutdown, where no timer runs, it comes at once
/// (`park_deadline`).
pub(crate) fn park_until(deadline: Option<Instant>) -> bool {
    let Some(deadline) = deadline else {
        crate::park();
        return true;
    };
    let now = Instant::now();
    if now >= deadline {
        return false;
    }
    park_deadline(deadline, now)
}

/// Like [`crate::park`], but returns after `timeout` at the latest, like
/// `std::thread::park_timeout`: the caller parks until unparked, until the
/// timeout passes, or spuriously. On a plain thread it is
/// `std::thread::park_timeout`. It is the same function as
/// `spindle::park_timeout`, at the crate root beside [`crate::park`], as
/// std has both in `std::thread`; it lives here, with the clock.
///
/// The timer is cancelled when the fiber is woken earlier, so waits that
/// usually end early cost nothing afterwards, however long their timeouts.
///
/// ```
/// use std::time::{Duration, Instant};
/// let rt = spindle::Runtime::new().unwrap();
/// rt.block_on(|| {
///     let start = Instant::now();
///     spindle::park_timeout(Duration::from_millis(2)); // nobody unparks us
///     assert!(start.elapsed() >= Duration::from_millis(2));
/// });
/// ```
pub fn park_timeout(timeout: Duration) {
    let now = Instant::now();
    match now.checked_add(timeout) {
        // Its false (timed out at once, in a fiber unwound at shutdown) is
        // a return like any other here.
        Some(deadline) => {
            park_deadline(deadline, now);
        }
        // Beyond the clock's range: no timer, a plain park.
        None => crate::park(),
    }
}

impl<T: 'static> JoinHandle<T> {
    /// Like [`JoinHandle::join`], giving up after `timeout`: then the
    /// handle comes back as `Err`, to wait again or to drop (detaching the
    /// fiber).
    ///
    /// ```
    /// use std::time::Duration;
    /// let rt = spindle::Runtime::new().unwrap();
    /// rt.block_on(|| {
    ///     let (release, released) = spindle::sync::mpsc::channel::<()>();
    ///     let slow = spindle::spawn(move || released.recv().unwrap());
    ///     let slow = slow.join_timeout(Duration::from_millis(1)).unwrap_err(); // still waiting
    ///     release.send(()).unwrap();
    ///     assert!(slow.join_timeout(Duration::from_secs(60)).unwrap().is_ok());
    /// });
    /// ```
    pub fn join_timeout(self, timeout: Duration) -> Result<Result<T, JoinError>, JoinHandle<T>> {
        let deadline = Instant::now().checked_add(timeout);
        self.join_with(|| park_until(deadline))
    }
}
