//! [`StackPool`]: where a runtime's stacks come from and go back to.
//!
//! The pool holds one size class for the runtime's default stack size (the
//! fast path, reached through the workers' caches) and creates one for each
//! other size a fiber asks for. It decides how to guard a page
//! (`MADV_GUARD_INSTALL`, or `mprotect` on kernels before 6.13) and, on the
//! `mprotect` path, how many stacks it may ever carve: each such guard costs
//! two memory mappings out of `vm.max_map_count`, so the budget is half of
//! what the process leaves free, minus [`MAPPING_HEADROOM`].
//!
//! When a default-size stack is wanted and none is free, the pool carves
//! [`CARVE_BATCH`] fresh slots at once and installs their guards in one
//! system call (`memory::install_guards`), outside the class lock, so
//! workers carve in parallel; the slots not wanted now go on the cold list
//! (guarded, no memory committed), lowest addresses to be handed out first.
//! A stack is handed out only after its guard is in place. Other sizes, and
//! the budgeted `mprotect` path (whose guards cannot be batched), carve
//! only what is asked for.
//!
//! Rejected: guarding a whole reservation when it is mapped. Its thousands
//! of guards cost milliseconds and the page tables of the whole
//! reservation before the first fiber runs, in a program that may never
//! need a second batch.
//!
//! The trims of decay run outside the lock too, except on the budgeted
//! path, where a stack that is on no list could make a spawn fail for want
//! of a stack that exists; `trim_all`, an explicit request, always trims
//! outside it.
//!
//! When fresh stacks cannot be had (the reservation's `mmap` or a guard
//! fails: out of memory, or address space under `RLIMIT_AS`), the pool
//! remembers it until a stack comes back ([`StackPool::cannot_grow`]), so
//! that spawns are refused while no free stack is left instead of
//! admitted to fibers that could never run.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::class::{trim, ClassSlots, SizeClass};
use super::Stack;
use crate::lock::MutexExt;
use crate::sys::memory::{self, GuardKind};

/// Mappings left for the rest of the program when guards are `mprotect`ed:
/// the heap, libraries, thread stacks, sockets' buffers, the user's own maps.
/// A guess awaiting measurement.
const MAPPING_HEADROOM: usize = 4096;

/// Default-size slots carved, and guarded in one system call, when no free
/// stack is left: the most ranges one `process_madvise` takes. Measured:
/// a million guards cost less in calls of this many than one call each
/// (see docs/decisions.md).
const CARVE_BATCH: usize = memory::GUARDS_PER_CALL;

/// Where stacks come from and go back to; one per runtime.
pub(crate) struct StackPool {
    guard_kind: GuardKind,
    /// Stacks the pool may carve in all, `usize::MAX` when guards cost no
    /// mappings; see [`StackPool::stack_budget`].
    budget: usize,
    /// The runtime's default stack size class (the fast path).
    pub(super) default: SizeClass,
    /// Classes for fibers that asked for another size.
    other_sizes: Mutex<Vec<Arc<SizeClass>>>,
    /// Stacks carved so far (all classes). Relaxed: a statistic and the
    /// budget check, both under a class lock when written.
    carved: AtomicUsize,
    /// Stacks on the global free lists. Relaxed: statistics.
    free_global: AtomicUsize,
    /// Bytes of address space reserved. Relaxed: statistics.
    reserved_bytes: AtomicUsize,
    /// Whether the pool can grow: 0, or why carving or guarding fresh
    /// stacks last failed ([`GROWTH_FAILED_NO_ERRNO`] or an OS error
    /// number), sticky until a stack comes back to a free list. While set,
    /// spawns are refused once no free stack is left
    /// (`Shared::admit_fiber`), rather than admitted to fail at their first
    /// run. Relaxed: a hint read before each spawn; a spawn that misses a
    /// change only fails (or succeeds) at its first run instead.
    growth_failed: AtomicI32,
}

/// `StackPool::growth_failed` for a failure that has no OS error number
/// (the `mprotect` budget).
const GROWTH_FAILED_NO_ERRNO: i32 = -1;

/// A point-in-time view of the pool, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackStats {
    /// Stacks ever carved out of reservations (each has its guard).
    pub carved: usize,
    /// Stacks held by fibers that started and have not finished.
    pub in_use: usize,
    /// Free stacks in worker caches and the global lists.
    pub cached: usize,
    /// Address space reserved for stacks, in bytes.
    pub reserved_bytes: usize,
}

/// A size class as `StackPool::classes` lists it: the default one is
/// borrowed, the others shared.
enum ClassRef<'a> {
    Default(&'a SizeClass),
    Other(Arc<SizeClass>),
}

impl std::ops::Deref for ClassRef<'_> {
    type Target = SizeClass;

    fn deref(&self) -> &SizeClass {
        match self {
            ClassRef::Default(class) => class,
            ClassRef::Other(class) => class,
        }
    }
}

impl StackPool {
    /// A pool whose default stacks hold `default_size` usable bytes.
    /// `force_mprotect` takes the pre-6.13 path on any kernel (for tests).
    pub(crate) fn new(default_size: usize, force_mprotect: bool) -> StackPool {
        let guard_kind = if force_mprotect {
            GuardKind::Mprotect
        } else {
            memory::probe_guard_kind()
        };
        let budget = match guard_kind {
            GuardKind::Madvise => usize::MAX,
            GuardKind::Mprotect => mprotect_budget(),
        };
        StackPool::with_guard_kind(default_size, guard_kind, budget)
    }

    /// A pool with an explicit guard method and budget.
    fn with_guard_kind(default_size: usize, guard_kind: GuardKind, budget: usize) -> StackPool {
        StackPool {
            guard_kind,
            budget,
            default: SizeClass::new(default_size),
            other_sizes: Mutex::new(Vec::new()),
            carved: AtomicUsize::new(0),
            free_global: AtomicUsize::new(0),
            reserved_bytes: AtomicUsize::new(0),
            growth_failed: AtomicI32::new(0),
        }
    }

    /// The most stacks this pool can ever hand out at once: unlimited with
    /// `MADV_GUARD_INSTALL`; with `mprotect` guards, half of the mappings
    /// `vm.max_map_count` leaves after the process's own and a headroom.
    pub(crate) fn stack_budget(&self) -> usize {
        self.budget
    }

    /// Whether the pool can run out of stacks (the mprotect path). Then
    /// worker caches are bypassed: a stack idle in one worker's cache must
    /// not make another worker's fiber fail for want of one, since the
    /// live-fiber limit (checked at spawn) equals the budget.
    #[inline]
    pub(super) fn is_budgeted(&self) -> bool {
        self.budget != usize::MAX
    }

    /// Usable bytes of a default stack.
    pub(crate) fn default_size(&self) -> usize {
        self.default.stack_size
    }

    /// The usable sizes a stack may ask for: up to what fits one
    /// reservation with its guard page (a larger slot could never be
    /// carved). `(smallest, largest)`; smaller requests are rounded up.
    /// Sizes are checked against it before they are rounded.
    pub(crate) fn size_range() -> (usize, usize) {
        let page = memory::page_size();
        (
            StackPool::round_size(0),
            super::reservation::RESERVATION_BYTES - page,
        )
    }

    /// Rounds a requested stack size up to whole pages (at least one). The
    /// size is at most [`StackPool::size_range`]'s largest.
    pub(crate) fn round_size(size: usize) -> usize {
        let page = memory::page_size();
        size.max(corosensei::stack::MIN_STACK_SIZE).div_ceil(page) * page
    }

    /// Takes a stack of `size` usable bytes (rounded to pages), for a fiber
    /// that asked for a non-default size. Default-size stacks go through a
    /// worker's [`StackCache`](super::StackCache) instead.
    pub(crate) fn acquire_sized(&self, size: usize) -> io::Result<Stack> {
        let size = StackPool::round_size(size);
        if size == self.default.stack_size {
            return self.acquire_from(&self.default);
        }
        let class = self.class_for(size);
        self.acquire_from(&class)
    }

    /// Returns a stack taken with [`StackPool::acquire_sized`] (or any stack).
    pub(crate) fn release(&self, stack: Stack) {
        if stack.size == self.default.stack_size {
            self.give_back(&self.default, vec![stack]);
        } else {
            let class = self.class_for(stack.size);
            self.give_back(&class, vec![stack]);
        }
    }

    fn class_for(&self, size: usize) -> Arc<SizeClass> {
        let mut others = self.other_sizes.lock_unpoisoned();
        if let Some(class) = others.iter().find(|c| c.stack_size == size) {
            return class.clone();
        }
        let class = Arc::new(SizeClass::new(size));
        others.push(class.clone());
        class
    }

    /// One stack of `class`.
    pub(super) fn acquire_from(&self, class: &SizeClass) -> io::Result<Stack> {
        let mut one = Vec::with_capacity(1);
        self.refill(class, &mut one, 1)?;
        Ok(one.pop().expect("refill returned a stack"))
    }

    /// Moves up to `want` free stacks of `class` into `into`: warm ones
    /// first, then cold, then freshly carved (module docs: a batch of
    /// default-size ones, guarded outside the lock, so workers carve in
    /// parallel).
    pub(super) fn refill(
        &self,
        class: &SizeClass,
        into: &mut Vec<Stack>,
        want: usize,
    ) -> io::Result<()> {
        let bulk = std::ptr::eq(class, &self.default) && !self.is_budgeted();
        let mut fresh = {
            let mut slots = class.slots.lock_unpoisoned();
            let taken = slots.take_free(into, want);
            self.free_global.fetch_sub(taken, Ordering::Relaxed);
            if taken > 0 {
                return Ok(());
            }
            let carve = if bulk { want.max(CARVE_BATCH) } else { want };
            self.carve(class, &mut slots, carve)
                .inspect_err(|error| self.note_growth_failure(error))?
        };
        let guards: Vec<NonNull<u8>> = fresh.iter().map(|stack| stack.slot).collect();
        // SAFETY: each guard page is the first page of a fresh slot that
        // nothing uses yet.
        let (guarded, result) =
            unsafe { memory::install_guards(&guards, memory::page_size(), self.guard_kind) };
        // A guard failed: the slots from there on stay unguarded on no
        // list; they are never handed out (their slots are simply lost).
        if let Err(error) = &result {
            self.note_growth_failure(error);
        }
        fresh.truncate(guarded);
        if fresh.len() > want {
            // Lowest addresses at the back of the cold list, where refills
            // take from.
            let mut spare: Vec<Stack> = fresh.drain(want..).rev().collect();
            let count = spare.len();
            class.slots.lock_unpoisoned().add_cold(&mut spare);
            self.free_global.fetch_add(count, Ordering::Relaxed);
        }
        into.append(&mut fresh);
        result
    }

    /// Records that fresh stacks could not be had (see `growth_failed`).
    #[cold]
    fn note_growth_failure(&self, error: &io::Error) {
        let code = error.raw_os_error().unwrap_or(GROWTH_FAILED_NO_ERRNO);
        self.growth_failed.store(code, Ordering::Relaxed);
    }

    /// Why the pool cannot grow, if the last attempt to carve or guard
    /// fresh stacks failed and no stack has come back since.
    #[inline]
    pub(crate) fn cannot_grow(&self) -> Option<io::Error> {
        match self.growth_failed.load(Ordering::Relaxed) {
            0 => None,
            GROWTH_FAILED_NO_ERRNO => Some(io::ErrorKind::OutOfMemory.into()),
            code => Some(io::Error::from_raw_os_error(code)),
        }
    }

    /// Carves up to `want` never-used slots of `class`, within the budget.
    /// Their guards are not installed yet.
    fn carve(
        &self,
        class: &SizeClass,
        slots: &mut ClassSlots,
        want: usize,
    ) -> io::Result<Vec<Stack>> {
        let carved = self.carved.load(Ordering::Relaxed);
        let want = want.min(self.budget.saturating_sub(carved));
        if want == 0 {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!(
                    "the stack budget of {} guarded stacks is used up",
                    self.budget
                ),
            ));
        }
        let (stacks, mapped) = class.carve(slots, want)?;
        self.reserved_bytes.fetch_add(mapped, Ordering::Relaxed);
        self.carved.fetch_add(stacks.len(), Ordering::Relaxed);
        Ok(stacks)
    }

    /// Puts free stacks on `class`'s warm list (decay trims them later).
    pub(super) fn give_back(&self, class: &SizeClass, stacks: Vec<Stack>) {
        // A stack is back: the pool may serve spawns again. (A load first:
        // this line is written only after a failure.)
        if self.growth_failed.load(Ordering::Relaxed) != 0 {
            self.growth_failed.store(0, Ordering::Relaxed);
        }
        let count = stacks.len();
        class.slots.lock_unpoisoned().give_back(stacks);
        self.free_global.fetch_add(count, Ordering::Relaxed);
    }

    /// Trims `stacks` (just taken off `class`'s warm list by decay, whose
    /// lock the caller passes in) and puts them on its cold list.
    fn trim_to_cold(
        &self,
        class: &SizeClass,
        mut slots: MutexGuard<'_, ClassSlots>,
        mut stacks: Vec<Stack>,
    ) {
        if self.is_budgeted() {
            // Trim under the lock: a stack must never be on no list while
            // the budget is used up, or a concurrent first run would find
            // none. (The mprotect fallback can afford the wait.)
            trim(&mut stacks, class.slot_len);
            slots.add_cold(&mut stacks);
        } else {
            // Trim outside the lock, so the other workers' refills do not
            // wait for the madvise calls; the stacks are briefly on no list,
            // and a refill meanwhile carves fresh ones instead.
            drop(slots);
            trim(&mut stacks, class.slot_len);
            class.slots.lock_unpoisoned().add_cold(&mut stacks);
        }
    }

    /// Every size class: the default, then the others (a snapshot; a class
    /// added meanwhile is not in it).
    fn classes(&self) -> Vec<ClassRef<'_>> {
        let others = self.other_sizes.lock_unpoisoned();
        std::iter::once(ClassRef::Default(&self.default))
            .chain(others.iter().cloned().map(ClassRef::Other))
            .collect()
    }

    /// Trims the warm stacks of every class that have been free for longer
    /// than `DECAY_AGE`, keeping `WARM_FLOOR` (the monitor calls this on
    /// its passes). Cheap when there is nothing to do: one lock per class.
    pub(crate) fn decay(&self) {
        for class in &self.classes() {
            let mut slots = class.slots.lock_unpoisoned();
            if let Some(oldest) = slots.take_decayed() {
                self.trim_to_cold(class, slots, oldest);
            }
        }
    }

    /// Trims every free stack on the global lists, so their memory goes back
    /// to the kernel now (`Runtime::trim_stacks`).
    pub(crate) fn trim_all(&self) {
        for class in &self.classes() {
            let mut warm = class.slots.lock_unpoisoned().take_all_warm();
            trim(&mut warm, class.slot_len);
            class.slots.lock_unpoisoned().add_cold(&mut warm);
        }
    }

    /// Every fiber pointer in the slot registry (fibers started and not
    /// finished). The registry keeps its own references. Called at shutdown
    /// once no worker runs.
    pub(crate) fn owners(&self) -> Vec<NonNull<()>> {
        let mut owners = Vec::new();
        for class in &self.classes() {
            let slots = class.slots.lock_unpoisoned();
            for reservation in slots.reservations() {
                reservation.owners().collect(&mut owners);
            }
        }
        owners
    }

    /// Calls `take` with each fiber pointer in the slot registry (fibers
    /// started and not finished), while the runtime runs. Each cell is
    /// *claimed* around the call, so the fiber cannot finish meanwhile (see
    /// `registry.rs`). `take` must be short and must not block (it is meant
    /// to take a reference count). A fiber starting or finishing meanwhile
    /// may be missed; the list is a snapshot.
    ///
    /// Holds each size class's lock while it walks that class's cells.
    pub(crate) fn for_each_started(&self, mut take: impl FnMut(NonNull<()>)) {
        for class in &self.classes() {
            let slots = class.slots.lock_unpoisoned();
            for reservation in slots.reservations() {
                reservation.owners().for_each_started(&mut take);
            }
        }
    }

    /// Counts, given how many stacks sit in worker caches right now.
    pub(crate) fn stats(&self, in_worker_caches: usize) -> StackStats {
        let carved = self.carved.load(Ordering::Relaxed);
        let cached = self.free_global.load(Ordering::Relaxed) + in_worker_caches;
        StackStats {
            carved,
            in_use: carved.saturating_sub(cached),
            cached,
            reserved_bytes: self.reserved_bytes.load(Ordering::Relaxed),
        }
    }
}

/// The mprotect-mode budget: half the mappings `vm.max_map_count` leaves
/// after what the process already holds and [`MAPPING_HEADROOM`].
fn mprotect_budget() -> usize {
    memory::max_map_count().saturating_sub(memory::map_count() + MAPPING_HEADROOM) / 2
}

#[cfg(test)]
mod tests {
    use super::super::class::{DECAY_AGE, WARM_FLOOR};
    use super::*;

    #[test]
    fn sizes_round_up_to_pages() {
        let page = memory::page_size();
        assert_eq!(
            StackPool::round_size(1),
            corosensei::stack::MIN_STACK_SIZE.max(page)
        );
        assert_eq!(StackPool::round_size(page + 1), 2 * page);
        assert_eq!(StackPool::round_size(8 * page), 8 * page);
    }

    #[test]
    fn budget_is_enforced() {
        let pool = StackPool::with_guard_kind(16 * 1024, GuardKind::Mprotect, 3);
        let held: Vec<Stack> = (0..3)
            .map(|_| pool.acquire_sized(16 * 1024).unwrap())
            .collect();
        let error = pool
            .acquire_sized(16 * 1024)
            .err()
            .expect("budget of 3 is used up");
        assert!(error.to_string().contains("budget of 3"), "{error}");
        for stack in held {
            pool.release(stack);
        }
        // Released stacks are handed out again within the budget.
        pool.release(pool.acquire_sized(16 * 1024).unwrap());
    }

    #[test]
    fn stacks_idle_past_their_age_decay_down_to_the_floor() {
        let pool = StackPool::new(16 * 1024, false);
        let count = WARM_FLOOR + 500;
        let stacks: Vec<Stack> = (0..count)
            .map(|_| pool.acquire_sized(16 * 1024).unwrap())
            .collect();
        for stack in stacks {
            pool.release(stack);
        }
        let warm = |pool: &StackPool| pool.default.slots.lock().unwrap().warm_len();
        assert_eq!(warm(&pool), count);
        // Fresh slots carved in the same batches, never used, wait cold.
        let cold_before = pool.default.slots.lock().unwrap().cold_len();
        pool.decay();
        assert_eq!(warm(&pool), count, "nothing is old enough yet");
        std::thread::sleep(DECAY_AGE + DECAY_AGE / 2);
        // Take a few (the newest) and give them back: young again.
        let again: Vec<Stack> = (0..10)
            .map(|_| pool.acquire_sized(16 * 1024).unwrap())
            .collect();
        for stack in again {
            pool.release(stack);
        }
        pool.decay();
        assert_eq!(warm(&pool), WARM_FLOOR, "decayed down to the floor");
        let slots = pool.default.slots.lock().unwrap();
        assert_eq!(slots.cold_len() - cold_before, count - WARM_FLOOR);
    }

    #[test]
    fn fresh_default_stacks_are_carved_and_guarded_in_batches() {
        let pool = StackPool::new(16 * 1024, false);
        let first = pool.acquire_sized(16 * 1024).unwrap();
        let stats = pool.stats(0);
        assert_eq!(stats.carved, CARVE_BATCH, "{stats:?}");
        assert_eq!(stats.in_use, 1, "{stats:?}");
        // The next ones come from the batch, lowest address first.
        let second = pool.acquire_sized(16 * 1024).unwrap();
        assert_eq!(second.address(), first.address() + pool.default.slot_len);
        assert_eq!(pool.stats(0).carved, CARVE_BATCH);
        pool.release(first);
        pool.release(second);
    }
}
