//! [`Barrier`]: `n` parties wait until all have arrived, then go on
//! together; reusable, with std's API.
//!
//! # Design
//! The waiting parties *are* the count: each arrival that is not the last
//! pushes a request on a [`GrantQueue`] and parks; the `n`-th arrival (the
//! leader) finds `n - 1` queued, grants them all under the queue lock and
//! wakes them. The queue is then empty, ready for the next generation, and
//! a granted waiter of the old one has left it already, so generations
//! cannot mix and need no counter.
//!
//! A fiber unwound while waiting (runtime shutdown) withdraws its arrival:
//! the parties still waiting then need one more arrival, as they would if
//! that party had never come. (std's threads cannot be unwound from a
//! barrier; counting a party that will never pass would release the others
//! early.)

use std::fmt;

use super::grant::{GrantQueue, Granted, Requests, Withdraw};

/// A reusable barrier for fibers and threads alike.
///
/// ```
/// use std::sync::Arc;
/// use spindle::sync::Barrier;
///
/// let rt = spindle::Runtime::new().unwrap();
/// let barrier = Arc::new(Barrier::new(10));
/// let leaders = rt.block_on(|| {
///     let fibers: Vec<_> = (0..10)
///         .map(|_| {
///             let barrier = barrier.clone();
///             spindle::spawn(move || barrier.wait().is_leader())
///         })
///         .collect();
///     fibers.into_iter().map(|f| f.join().unwrap()).filter(|&l| l).count()
/// });
/// assert_eq!(leaders, 1);
/// ```
pub struct Barrier {
    parties: usize,
    waiters: GrantQueue<()>,
}

/// What [`Barrier::wait`] returns: whether this party was the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarrierWaitResult(bool);

impl BarrierWaitResult {
    /// True for exactly one party per generation: the last to arrive.
    pub fn is_leader(&self) -> bool {
        self.0
    }
}

impl Barrier {
    /// A barrier for `parties` parties. `Barrier::new(0)` behaves like
    /// `Barrier::new(1)`: every `wait` returns at once, as the leader.
    pub fn new(parties: usize) -> Barrier {
        Barrier {
            parties,
            waiters: GrantQueue::new(),
        }
    }

    /// Parks the calling fiber (or blocks the calling thread) until all
    /// parties have called `wait`, then lets them all go. The last to
    /// arrive is the leader.
    pub fn wait(&self) -> BarrierWaitResult {
        let mut granted = Vec::new();
        let request = {
            let mut queue = self.waiters.lock();
            if queue.len() + 1 >= self.parties {
                debug_assert!(
                    queue.len() + 1 == self.parties.max(1),
                    "a generation overfilled"
                );
                GrantQueue::grant_all(&mut queue, &mut granted);
                None
            } else {
                Some(GrantQueue::push(&mut queue, ()))
            }
        };
        match request {
            None => {
                GrantQueue::wake(granted, None);
                BarrierWaitResult(true)
            }
            Some(request) => {
                let released = self.waiters.wait(&request, None, self);
                debug_assert!(released, "an untimed wait ends granted");
                BarrierWaitResult(false)
            }
        }
    }
}

impl Withdraw<()> for Barrier {
    fn regrant(&self, _queue: &mut Requests<()>, _granted: &mut Granted<()>) {
        // One arrival fewer: nobody can go yet.
    }

    fn give_back(&self, _want: &()) {
        // Released already: the generation has passed without this party.
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties)
            .finish_non_exhaustive()
    }
}
