//! How long the items of a free list have been free: the clock that the
//! stack pool's warm lists and the record pool decay by.
//!
//! Items join a list in batches, the newest at the back, and are reused
//! from the back, newest first; a decay pass frees from the front, oldest
//! first. [`Ages`] keeps one run `(when it joined, how many are left)` per
//! batch, oldest first, so that a pass can count what has been free for
//! longer than an age without a timestamp per item. Its owner keeps the
//! runs in step with the list: every item added is pushed, every item
//! taken is forgotten from the same end.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The ages of a free list's items, as runs of items that joined together.
/// Owned by the list's owner, under the list's lock.
pub(crate) struct Ages {
    /// `(when the run joined, how many of it are left)`, oldest first.
    runs: VecDeque<(Instant, usize)>,
}

impl Ages {
    pub(crate) fn new() -> Ages {
        Ages {
            runs: VecDeque::new(),
        }
    }

    /// `count` items joined the list (at its back) at `now`.
    pub(crate) fn push(&mut self, now: Instant, count: usize) {
        if count > 0 {
            self.runs.push_back((now, count));
        }
    }

    /// How many of the oldest items had been free for at least `age` at
    /// `now` (runs are oldest first, so the count stops at the first
    /// younger one).
    pub(crate) fn older_than(&self, age: Duration, now: Instant) -> usize {
        self.runs
            .iter()
            .take_while(|&&(since, _)| now.saturating_duration_since(since) >= age)
            .map(|&(_, count)| count)
            .sum()
    }

    /// The `n` newest items left the list (taken for reuse).
    pub(crate) fn forget_newest(&mut self, n: usize) {
        self.forget(n, false);
    }

    /// The `n` oldest items left the list (freed or trimmed).
    pub(crate) fn forget_oldest(&mut self, n: usize) {
        self.forget(n, true);
    }

    /// Every item left the list.
    pub(crate) fn clear(&mut self) {
        self.runs.clear();
    }

    /// How many items the runs cover (for the owner's debug checks).
    pub(crate) fn len(&self) -> usize {
        self.runs.iter().map(|&(_, count)| count).sum()
    }

    fn forget(&mut self, mut n: usize, oldest: bool) {
        while n > 0 {
            let run = if oldest {
                self.runs.front_mut()
            } else {
                self.runs.back_mut()
            };
            let (_, count) = run.expect("the ages cover every item of the list");
            let gone = n.min(*count);
            *count -= gone;
            n -= gone;
            if *count == 0 {
                if oldest {
                    self.runs.pop_front();
                } else {
                    self.runs.pop_back();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_counted_by_age_and_forgotten_from_either_end() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut ages = Ages::new();
        ages.push(start, 3);
        ages.push(start + second, 0);
        ages.push(start + 2 * second, 4);
        assert_eq!(ages.len(), 7);
        assert_eq!(ages.older_than(second, start), 0);
        assert_eq!(ages.older_than(second, start + second), 3);
        assert_eq!(ages.older_than(second, start + 3 * second), 7);

        // Reuse takes the newest: the young run shrinks first.
        ages.forget_newest(5);
        assert_eq!(ages.len(), 2);
        assert_eq!(ages.older_than(second, start + 3 * second), 2);
        // Decay takes the oldest.
        ages.forget_oldest(1);
        assert_eq!(ages.older_than(second, start + second), 1);
        ages.clear();
        assert_eq!(ages.len(), 0);
    }
}
