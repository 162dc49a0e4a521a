//! [`Semaphore`]: a counting semaphore that parks fibers (and blocks
//! threads), FIFO-fair.
//!
//! # Design
//! One atomic word holds the available permits (shifted left by one) and
//! QUEUED (someone waits). Taking permits when nobody waits, and returning
//! them, are one atomic operation each. A caller that cannot have its
//! permits now pushes a request for them on a [`GrantQueue`], sets QUEUED,
//! runs the grant step itself (permits may have come back meanwhile) and
//! parks. Whoever returns permits while QUEUED is set runs the grant step
//! under the queue lock: while the front request can be satisfied, its
//! permits are subtracted and it is granted, so a woken waiter holds its
//! permits before it runs.
//!
//! # Fairness
//! Strict FIFO while anyone waits: QUEUED turns the fast path off, so a
//! newcomer (even `try_acquire`) cannot take permits a queued waiter is
//! owed, and a request for many permits at the front holds back smaller
//! ones behind it (as tokio's semaphore does) rather than starve. Rejected:
//! letting small requests pass a large one, which starves the large one.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::grant::{GrantQueue, Granted, Requests, Withdraw};

const QUEUED: usize = 1;
/// Permits are counted above the QUEUED bit.
const SHIFT: u32 = 1;

/// A counting semaphore for fibers and threads alike.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use spindle::sync::Semaphore;
///
/// let rt = spindle::Runtime::new().unwrap();
/// let connections = Arc::new(Semaphore::new(3)); // at most 3 at a time
/// let open = Arc::new(AtomicUsize::new(0));
/// rt.block_on(|| {
///     let fibers: Vec<_> = (0..20)
///         .map(|_| {
///             let (connections, open) = (connections.clone(), open.clone());
///             spindle::spawn(move || {
///                 let _permit = connections.acquire(); // returned when dropped
///                 assert!(open.fetch_add(1, Ordering::SeqCst) < 3);
///                 spindle::yield_now();
///                 open.fetch_sub(1, Ordering::SeqCst);
///             })
///         })
///         .collect();
///     fibers.into_iter().for_each(|f| f.join().unwrap());
/// });
/// assert_eq!(connections.available_permits(), 3);
/// ```
///
/// # Invariants
/// QUEUED is set whenever the queue is not empty (set and cleared under
/// the queue lock); while it is set, permits are taken only by the grant
/// step, under the queue lock.
pub struct Semaphore {
    state: AtomicUsize,
    waiters: GrantQueue<usize>,
}

/// Permits taken from a [`Semaphore`]; returned when dropped.
#[must_use = "the permits are returned as soon as the permit is dropped"]
pub struct SemaphorePermit<'a> {
    semaphore: &'a Semaphore,
    permits: usize,
}

impl Semaphore {
    /// The most permits a semaphore can hold.
    pub const MAX_PERMITS: usize = usize::MAX >> SHIFT;

    /// A semaphore with `permits` available.
    ///
    /// # Panics
    /// If `permits` exceeds [`Semaphore::MAX_PERMITS`].
    pub fn new(permits: usize) -> Semaphore {
        assert!(
            permits <= Semaphore::MAX_PERMITS,
            "a semaphore holds at most {} permits",
            Semaphore::MAX_PERMITS
        );
        Semaphore {
            state: AtomicUsize::new(permits << SHIFT),
            waiters: GrantQueue::new(),
        }
    }

    /// Permits available now (a snapshot; 0 while waiters are owed them).
    pub fn available_permits(&self) -> usize {
        self.state.load(Ordering::Acquire) >> SHIFT
    }

    /// Takes one permit, parking the calling fiber (or blocking the calling
    /// thread) until one is available and the waiters before it are
    /// served.
    pub fn acquire(&self) -> SemaphorePermit<'_> {
        self.acquire_many(1)
    }

    /// Takes `permits` permits at once, waiting in FIFO order as
    /// [`Semaphore::acquire`]. Waits forever if the semaphore never holds
    /// that many.
    pub fn acquire_many(&self, permits: usize) -> SemaphorePermit<'_> {
        if !self.try_take(permits) {
            let acquired = self.acquire_contended(permits, None);
            debug_assert!(acquired, "an untimed wait ends granted");
        }
        self.permit(permits)
    }

    /// Takes one permit if one is available now and nobody is waiting;
    /// never waits.
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_>> {
        self.try_acquire_many(1)
    }

    /// Takes `permits` permits if they are available now and nobody is
    /// waiting; never waits.
    pub fn try_acquire_many(&self, permits: usize) -> Option<SemaphorePermit<'_>> {
        self.try_take(permits).then(|| self.permit(permits))
    }

    /// Like [`Semaphore::acquire`], giving up (`None`) after `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphorePermit<'_>> {
        if self.try_take(1) {
            return Some(self.permit(1));
        }
        // No deadline this far away: wait without one.
        let deadline = Instant::now().checked_add(timeout);
        self.acquire_contended(1, deadline).then(|| self.permit(1))
    }

    /// Adds `permits` permits, waking the waiters they satisfy, in order.
    /// This is how permits given up with [`SemaphorePermit::forget`] come
    /// back, and how a semaphore grows; a dropped permit calls it itself.
    /// It is the one way to add permits (tokio calls it `add_permits`,
    /// Java `release`).
    ///
    /// ```
    /// use spindle::sync::Semaphore;
    ///
    /// let semaphore = Semaphore::new(1);
    /// semaphore.acquire().forget(); // kept out: none left
    /// assert_eq!(semaphore.available_permits(), 0);
    /// semaphore.release(2); // back, and one more
    /// assert_eq!(semaphore.available_permits(), 2);
    /// ```
    ///
    /// # Panics
    /// If the total would exceed [`Semaphore::MAX_PERMITS`].
    pub fn release(&self, permits: usize) {
        if permits == 0 {
            return;
        }
        let added = shifted(permits).expect("a semaphore holds at most MAX_PERMITS permits");
        // Release: what the holder did is visible to the next taker (which
        // acquires, on the fast path or in the grant step).
        let previous = self
            .state
            .fetch_update(Ordering::Release, Ordering::Relaxed, |state| {
                state.checked_add(added)
            })
            .expect("a semaphore holds at most MAX_PERMITS permits");
        if previous & QUEUED != 0 {
            self.waiters
                .grant_with(|queue, granted| self.grant(queue, granted));
        }
    }

    fn permit(&self, permits: usize) -> SemaphorePermit<'_> {
        SemaphorePermit {
            semaphore: self,
            permits,
        }
    }

    /// The fast path: takes `permits` if nobody waits and they are there.
    fn try_take(&self, permits: usize) -> bool {
        let Some(wanted) = shifted(permits) else {
            return false; // more than a semaphore can hold
        };
        // Acquire: pairs with `release`'s Release.
        self.state
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |state| {
                if state & QUEUED != 0 {
                    return None;
                }
                state.checked_sub(wanted)
            })
            .is_ok()
    }

    #[cold]
    fn acquire_contended(&self, permits: usize, deadline: Option<Instant>) -> bool {
        let request = self.waiters.enqueue(permits, |queue, granted| {
            // Under the queue lock, so a `release` that sees no QUEUED bit
            // added its permits before this point, and the grant step below
            // sees them.
            self.state.fetch_or(QUEUED, Ordering::Relaxed);
            self.grant(queue, granted);
        });
        self.waiters.wait(&request, deadline, self)
    }

    /// The grant step (module docs), under the queue lock.
    fn grant(&self, queue: &mut Requests<usize>, granted: &mut Granted<usize>) {
        while let Some(front) = queue.front() {
            let Some(wanted) = shifted(front.want) else {
                break; // more than a semaphore can hold: waits forever
            };
            // Acquire: pairs with `release`'s Release; the grant passes it
            // on to the woken waiter. While QUEUED is set only `release`
            // changes the word outside the queue lock, and only upwards.
            let taken = self
                .state
                .fetch_update(Ordering::Acquire, Ordering::Relaxed, |state| {
                    debug_assert!(state & QUEUED != 0, "a waiter queued without QUEUED");
                    (state >> SHIFT >= front.want).then(|| state - wanted)
                })
                .is_ok();
            if !taken {
                break;
            }
            GrantQueue::grant_front(queue, granted);
        }
        if queue.is_empty() {
            self.state.fetch_and(!QUEUED, Ordering::Relaxed);
        }
    }
}

/// `permits` as counted in the state word, if a semaphore can hold them.
fn shifted(permits: usize) -> Option<usize> {
    (permits <= Semaphore::MAX_PERMITS).then_some(permits << SHIFT)
}

impl Withdraw<usize> for Semaphore {
    fn regrant(&self, queue: &mut Requests<usize>, granted: &mut Granted<usize>) {
        // The request that left may have been a large one holding back
        // smaller ones behind it.
        self.grant(queue, granted);
    }

    fn give_back(&self, want: &usize) {
        self.release(*want);
    }
}

impl SemaphorePermit<'_> {
    /// How many permits this holds.
    pub fn permits(&self) -> usize {
        self.permits
    }

    /// Keeps the permits out of the semaphore: dropping does not return
    /// them (a later [`Semaphore::release`] can).
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        self.semaphore.release(self.permits);
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("available_permits", &self.available_permits())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit")
            .field("permits", &self.permits)
            .finish_non_exhaustive()
    }
}
