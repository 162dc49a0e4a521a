//! A size class: every stack of one size, with its reservations, its free
//! lists, and the rules that decide when a free stack is trimmed.
//!
//! # Warm and cold
//! A free stack is *warm* while its touched pages are still committed (fast
//! to reuse: no page fault) and *cold* once they were trimmed with
//! `MADV_DONTNEED` (its address space and guard stay; its memory is back
//! with the kernel). Creating a stack costs a guard install and a page
//! fault on first touch; reusing a warm one costs neither, and a cold one
//! only the fault. Stacks are handed out warm-first, then cold, then freshly
//! carved, lowest addresses reused first within a batch, which keeps live
//! stacks dense (fewer page-table pages per live fiber).
//!
//! # Trimming
//! Stacks that stay on the warm list longer than [`DECAY_AGE`] are trimmed
//! by the monitor (`StackPool::decay`), down to [`WARM_FLOOR`] and at most
//! [`DECAY_BATCH`] a pass, and moved to the cold list, so RSS falls after a
//! burst of fibers. Trimming sorts the
//! stacks by address and makes one `madvise` call per run of adjacent
//! slots ([`trim`]).
//!
//! Age is the only rule. Warm stacks never raise the peak: a stack is
//! carved only when no free one is left, so live plus warm stacks never
//! exceed the most that were live at once, and what a rule by count could
//! bound is only how long memory stays after a burst (at most `DECAY_AGE`
//! and a monitor pass here). Rejected: trimming the oldest warm stacks once
//! the warm list passes a watermark. As a million fibers finish at once,
//! it made the finishing workers themselves give the pages back (a TLB
//! shootdown each call, and the freeing of every page) while fibers waited
//! for them; the monitor's decay does the same work later, off the
//! workers (measured: see "Trimming by age only" in docs/decisions.md).
//!
//! This file owns the lists and the choice of which stacks to trim. The
//! pool (`pool.rs`) takes the class lock, keeps the counters, installs the
//! guards, and decides whether a trim runs under the lock.

use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::reservation::Reservation;
use super::{Stack, StackPool};
use crate::fiber::ages::Ages;
use crate::sys::memory;

/// Warm stacks idle on the global list for longer than this are trimmed by
/// the monitor (`StackPool::decay`), down to [`WARM_FLOOR`]. Measured with
/// `examples/timers`: a shorter age still trimmed stacks the churn was
/// about to reuse (see docs/decisions.md).
pub(crate) const DECAY_AGE: Duration = Duration::from_secs(1);

/// Warm stacks decay leaves alone, for the next burst of spawns. A guess
/// awaiting measurement: one touched page each, they hold little memory.
pub(crate) const WARM_FLOOR: usize = 1024;

/// Stacks one decay pass trims at most, so that the monitor, which makes
/// the pass, is back to watching the workers within milliseconds after a
/// million fibers finished at once; the rest wait for the next passes.
/// Measured: a trim of this many took under ten milliseconds (see
/// docs/decisions.md).
pub(crate) const DECAY_BATCH: usize = 16_384;

/// All stacks of one size.
pub(super) struct SizeClass {
    /// Usable bytes per stack (a multiple of the page size).
    pub(super) stack_size: usize,
    /// Guard page plus stack.
    pub(super) slot_len: usize,
    /// Where each slot of the class is; any thread, under this lock.
    pub(super) slots: Mutex<ClassSlots>,
}

/// Where every slot of a size class is: carved out of which reservation,
/// not carved yet, or free on the warm or the cold list (a slot on none of
/// them holds a live fiber's stack, or is being trimmed). Under the class
/// lock.
pub(super) struct ClassSlots {
    /// The class's mappings, oldest first; slots are carved from the last.
    reservations: Vec<Reservation>,
    /// Slots of the last reservation not yet carved into stacks.
    next_fresh: usize,
    /// Free stacks whose memory is still committed (fast to reuse); the
    /// newest at the back, where refills take from.
    warm: Vec<Stack>,
    /// How long each stack of `warm` has been free, in step with it.
    warm_since: Ages,
    /// Free stacks trimmed with `MADV_DONTNEED` (their pages fault in again).
    cold: Vec<Stack>,
}

impl SizeClass {
    /// An empty class of stacks of `stack_size` usable bytes (rounded up to
    /// whole pages).
    pub(super) fn new(stack_size: usize) -> SizeClass {
        let stack_size = StackPool::round_size(stack_size);
        SizeClass {
            stack_size,
            slot_len: stack_size + memory::page_size(),
            slots: Mutex::new(ClassSlots {
                reservations: Vec::new(),
                next_fresh: 0,
                warm: Vec::new(),
                warm_since: Ages::new(),
                cold: Vec::new(),
            }),
        }
    }

    /// Carves up to `want` never-used slots (mapping a new reservation when
    /// the current one is used up); `slots` is this class's, locked. Their
    /// guards are not installed yet. Returns them with the bytes of address
    /// space newly reserved (0 unless a reservation was mapped).
    pub(super) fn carve(
        &self,
        slots: &mut ClassSlots,
        want: usize,
    ) -> io::Result<(Vec<Stack>, usize)> {
        let slots_per = Reservation::slots_for(self.slot_len);
        let mut mapped = 0;
        if slots.reservations.is_empty() || slots.next_fresh == slots_per {
            let reservation = Reservation::map(self.slot_len)?;
            mapped = reservation.len();
            slots.reservations.push(reservation);
            slots.next_fresh = 0;
        }
        let reservation = slots.reservations.last().expect("a reservation exists");
        let n = want.min(slots_per - slots.next_fresh);
        let stacks = (slots.next_fresh..slots.next_fresh + n)
            .map(|index| reservation.stack(index, self.stack_size))
            .collect();
        slots.next_fresh += n;
        Ok((stacks, mapped))
    }
}

impl ClassSlots {
    /// Every reservation of the class, oldest first.
    pub(super) fn reservations(&self) -> &[Reservation] {
        &self.reservations
    }

    /// Moves up to `want` free stacks into `into`, warm ones first (newest
    /// first), then cold; returns how many.
    pub(super) fn take_free(&mut self, into: &mut Vec<Stack>, want: usize) -> usize {
        let from_warm = want.min(self.warm.len());
        self.warm_since.forget_newest(from_warm);
        let mut taken = 0;
        for list in [&mut self.warm, &mut self.cold] {
            let n = (want - taken).min(list.len());
            into.extend(list.drain(list.len() - n..).rev());
            taken += n;
        }
        taken
    }

    /// Puts free stacks on the warm list (the newest at the back).
    pub(super) fn give_back(&mut self, mut stacks: Vec<Stack>) {
        let count = stacks.len();
        self.warm.append(&mut stacks);
        self.warm_since.push(Instant::now(), count);
        self.debug_check();
    }

    /// Takes off the warm stacks that have been free for longer than
    /// [`DECAY_AGE`], keeping [`WARM_FLOOR`], at most [`DECAY_BATCH`] of
    /// them (the oldest); `None` when there are none.
    pub(super) fn take_decayed(&mut self) -> Option<Vec<Stack>> {
        let old = self.warm_since.older_than(DECAY_AGE, Instant::now());
        let n = old
            .min(self.warm.len().saturating_sub(WARM_FLOOR))
            .min(DECAY_BATCH);
        if n == 0 {
            return None;
        }
        Some(self.take_oldest_warm(n))
    }

    /// Takes off every warm stack.
    pub(super) fn take_all_warm(&mut self) -> Vec<Stack> {
        self.warm_since.clear();
        std::mem::take(&mut self.warm)
    }

    /// Puts trimmed stacks on the cold list.
    pub(super) fn add_cold(&mut self, stacks: &mut Vec<Stack>) {
        self.cold.append(stacks);
    }

    /// Removes the `n` oldest warm stacks (the front, the least recently
    /// freed) and their ages.
    fn take_oldest_warm(&mut self, n: usize) -> Vec<Stack> {
        self.warm_since.forget_oldest(n);
        let oldest: Vec<Stack> = self.warm.drain(..n).collect();
        self.debug_check();
        oldest
    }

    /// `warm_since` counts exactly the warm stacks.
    fn debug_check(&self) {
        debug_assert_eq!(
            self.warm_since.len(),
            self.warm.len(),
            "warm_since out of step with warm"
        );
    }

    /// How many warm stacks there are, checking their ages' bookkeeping.
    #[cfg(test)]
    pub(super) fn warm_len(&self) -> usize {
        self.debug_check();
        self.warm.len()
    }

    /// How many cold stacks there are.
    #[cfg(test)]
    pub(super) fn cold_len(&self) -> usize {
        self.cold.len()
    }
}

/// Gives the memory of free stacks back to the kernel: sorted by address,
/// each run of adjacent slots is trimmed with one `madvise` call.
pub(super) fn trim(stacks: &mut [Stack], slot_len: usize) {
    stacks.sort_unstable_by_key(Stack::address);
    let mut i = 0;
    while i < stacks.len() {
        let start = stacks[i].slot;
        let mut end = start.as_ptr() as usize + slot_len;
        let mut j = i + 1;
        while j < stacks.len() && stacks[j].address() == end {
            end += slot_len;
            j += 1;
        }
        // SAFETY: a run of whole free slots of ours; nothing reads them, and
        // their guard markers survive MADV_DONTNEED (see memory::discard).
        unsafe { memory::discard(start, end - start.as_ptr() as usize) };
        i = j;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_keeps_stacks_usable() {
        let class = SizeClass::new(16 * 1024);
        let (mut stacks, _) = class.carve(&mut class.slots.lock().unwrap(), 8).unwrap();
        for stack in &stacks {
            let top = corosensei::stack::Stack::base(stack).get() as *mut u8;
            // SAFETY: the last byte below the top of a stack we hold.
            unsafe { top.sub(1).write(7) };
        }
        trim(&mut stacks, class.slot_len);
        for stack in &stacks {
            let top = corosensei::stack::Stack::base(stack).get() as *mut u8;
            // SAFETY: as above; trimmed memory reads back as zero.
            assert_eq!(unsafe { top.sub(1).read() }, 0);
        }
    }
}
