//! Fiber stacks: carved out of large reservations, each guarded, pooled for
//! reuse, and trimmed when the pool grows past a watermark.
//!
//! # Why not one `mmap` per stack
//! corosensei's `DefaultStack` maps every stack separately and `mprotect`s a
//! guard page into it: two memory mappings per stack. Linux caps a process at
//! `vm.max_map_count` mappings (65530 by default), so that design stops near
//! 32,000 live fibers. Here a *reservation* of [`RESERVATION_BYTES`] of address
//! space is mapped once (`MAP_NORESERVE | MAP_STACK`, no memory committed) and
//! cut into equal *slots*, each a guard page followed by the stack:
//!
//! ```text
//!  reservation (one mapping)
//!  | guard | stack 0 ......... | guard | stack 1 ......... | guard | ...
//!  ^ slot 0 = Stack::limit()   ^ Stack::base() of stack 0 (stacks grow down)
//! ```
//!
//! The guard is installed with `madvise(MADV_GUARD_INSTALL)`, which does not
//! split the mapping, so a million stacks cost a few dozen mappings. Kernels
//! older than 6.13 refuse that call; then guards are `mprotect`ed, each
//! costing two mappings, and the pool hands out at most
//! [`StackPool::stack_budget`] stacks, computed from `vm.max_map_count`.
//! Past it, spawning fails with an error naming the limit (see
//! `SpawnError`). A fiber never runs on an unguarded stack: a slot is handed
//! out only after its guard was installed successfully.
//!
//! # Reuse and trimming
//! Creating a stack costs a guard install (~0.6 µs measured) and a page fault
//! on first touch (1.6–3.8 µs in DESIGN-NOTES; 1.5–11 µs in a noisy probe
//! during development); reusing one costs neither.
//! So a finished fiber's stack goes back to its worker's [`StackCache`]
//! (up to [`LOCAL_CACHE`] stacks, no locking), overflowing in batches of
//! [`BATCH`] into the pool's global *warm* list. Stacks that stay on it
//! longer than [`DECAY_AGE`] are trimmed with `MADV_DONTNEED` (one call per
//! run of adjacent slots) by the monitor, down to [`WARM_FLOOR`], and moved
//! to the *cold* list: their address space and guards stay, their memory
//! goes back to the kernel, so RSS falls after a burst of fibers. When the
//! warm list reaches twice [`WARM_WATERMARK`] its oldest half is trimmed at
//! once, which bounds the memory kept meanwhile.
//!
//! Stacks are handed out warm-first, then cold, then freshly carved, lowest
//! addresses reused first within a batch, which keeps live stacks dense (fewer
//! page-table pages per live fiber).
//!
//! # The slot registry
//! Every slot has an owner cell. The fiber layer stores a plain pointer to
//! the fiber running on a stack there while the fiber is started but not
//! finished (the fiber's scheduling reference keeps it alive, see
//! `fiber/mod.rs`); at shutdown, [`StackPool::owners`] finds every fiber
//! still suspended mid-stack (parked fibers sit in no queue) so it can be
//! unwound. A fiber dump (`fiber/dump.rs`) reads it while the runtime
//! runs, claiming each cell around taking a reference of its own
//! ([`StackPool::for_each_started`]), so the fiber it names cannot finish and
//! be freed in between. That costs one store when a fiber starts and one
//! compare-and-swap when it ends (it must not overwrite a claim), instead of
//! a locked list of live fibers.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::lock::MutexExt;
use crate::sys::memory::{self, GuardKind};

/// Address space mapped per reservation: 1 GiB holds 15,420 slots of the
/// default 64 KiB stack + 4 KiB guard, so a million fibers take 65 mappings.
/// Address space is free (47 bits of it); the count of mappings is not.
pub(crate) const RESERVATION_BYTES: usize = 1 << 30;

/// Stacks a worker keeps for itself. 64 covers the spawn/finish churn of a
/// busy worker without touching the global lists (a guess, sized so that the
/// cache holds at most 4 MiB of warm default stacks).
pub(crate) const LOCAL_CACHE: usize = 64;

/// Stacks moved between a worker cache and the global lists at a time, so
/// the global lock is taken once per `BATCH` spawns at most.
pub(crate) const BATCH: usize = 32;

/// Warm (untrimmed) stacks the global list keeps at most: 16,384
/// one-page-deep stacks hold 64 MiB. The list may grow to twice this; then
/// the oldest `WARM_WATERMARK` are trimmed at once. Trimming many at a time
/// instead of each batch of 32 as it arrives cut the `madvise` calls (each
/// a TLB shootdown across the workers' CPUs) of `million`'s join phase from
/// ~31,000 to ~1,000, because stacks freed close together in time sit next
/// to each other and coalesce into a few ranges. Past a size, though, the
/// count must not be what trims: `examples/timers` (a million fibers each
/// sleeping 10 ms, ~20,000 alive at a time) spent 40% of its time in the
/// TLB shootdowns of trimming stacks it reused a few milliseconds later,
/// with a watermark of 1,024 (3.4 s); at 8,192 it took 2.0 s, at 32,768
/// 1.7 s (no decay). So stacks are trimmed by age ([`DECAY_AGE`], by the
/// monitor) and this count is only the bound on memory kept meanwhile.
/// Measured with decay and the spawn backlog rule (`SPAWN_BACKLOG` in
/// `scheduler/worker.rs`), four alternating runs each: 8,192 gave
/// 1.46–1.72 s, 16,384 1.33–1.46 s.
///
/// Warm stacks never raise the peak: a stack is carved only when no free
/// one is left, so live plus warm stacks never exceed the most that were
/// live at once. The watermark only decides how soon memory goes back.
pub(crate) const WARM_WATERMARK: usize = 16_384;

/// Warm stacks idle on the global list for longer than this are trimmed by
/// the monitor (`StackPool::decay`), down to [`WARM_FLOOR`]: RSS falls
/// after a burst without trimming stacks a steady churn is about to reuse.
/// Measured with `examples/timers`: at 100 ms decay still trimmed ~20,000
/// stacks (1.8 per `madvise` call, each a TLB shootdown) as the live set
/// rose and fell, and the run took 2.1–2.3 s; at 1 s, 1.86–2.0 s. Go's
/// scavenger waits far longer; 1 s keeps RSS after a burst falling within
/// a second.
pub(crate) const DECAY_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// Warm stacks decay leaves alone: 1,024 one-page-deep stacks, 4 MiB, for
/// the next burst of spawns.
pub(crate) const WARM_FLOOR: usize = 1024;

/// Mappings left for the rest of the program when guards are `mprotect`ed:
/// the heap, libraries, thread stacks, sockets' buffers, the user's own maps.
const MAPPING_HEADROOM: usize = 4096;

/// One fiber stack: a guard page and `size` usable bytes above it, inside a
/// reservation of a [`StackPool`].
///
/// # Invariants
/// - the guard page at `slot` is installed;
/// - the stack is owned by exactly one holder: a worker cache, a pool free
///   list, or the fiber running on it.
pub(crate) struct Stack {
    /// Lowest address of the slot; the guard page starts here.
    slot: NonNull<u8>,
    /// Usable bytes above the guard page.
    size: usize,
    /// This slot's owner cell in its reservation's registry.
    owner: NonNull<AtomicPtr<()>>,
}

// The owner cell is an atomic that outlives every Stack (reservations are
// unmapped only after all stacks came back).
// SAFETY: a Stack is a unique handle to memory nobody else touches: moving
// it to another thread moves that exclusive right.
unsafe impl Send for Stack {}

impl Stack {
    /// The guard page: `[start, start + page_size)`.
    pub(crate) fn guard(&self) -> (usize, usize) {
        let start = self.slot.as_ptr() as usize;
        (start, start + memory::page_size())
    }

    /// Records which fiber is started on this stack (the cell is null).
    pub(crate) fn set_owner(&self, fiber: *mut ()) {
        debug_assert_eq!(fiber as usize & CLAIMED, 0, "fiber pointers are aligned");
        // SAFETY: the owner cell lives in a reservation that outlives stacks.
        let cell = unsafe { self.owner.as_ref() };
        // Release: a fiber dump's Acquire claim (`for_each_started`) then
        // sees the fiber as its first runner saw it. A plain store on x86.
        cell.store(fiber, Ordering::Release);
    }

    /// Clears the owner cell as the fiber finishes, before anything lets
    /// its `FiberInner` go. If a fiber dump has claimed the cell
    /// (`for_each_started`), waits for it to let go: the dump is taking a
    /// reference of its own, a few instructions.
    pub(crate) fn clear_owner(&self) {
        // SAFETY: the owner cell lives in a reservation that outlives stacks.
        let cell = unsafe { self.owner.as_ref() };
        let mut spins = 0u32;
        loop {
            let owner = cell.load(Ordering::Relaxed);
            if owner as usize & CLAIMED == 0 {
                // A compare-and-swap, not a store: a store could overwrite a
                // dump's claim unseen. Acquire: pairs with the dump's
                // Release when it lets go, so its reference count increment
                // is ordered before whatever drop of ours follows.
                if cell
                    .compare_exchange(
                        owner,
                        std::ptr::null_mut(),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            // Claimed: the dumper holds it for a reference count increment;
            // if its thread was preempted meanwhile, let it run.
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// Set in an owner cell while a fiber dump claims it (pointers to fibers are
/// at least 8-byte aligned, so bit 0 is free).
const CLAIMED: usize = 1;

// Both addresses are page-aligned, so aligned to STACK_ALIGNMENT.
// SAFETY: `base` tops `size` writable bytes, `limit` is the bottom of the
// guard page below them, installed before a Stack is handed out.
unsafe impl corosensei::stack::Stack for Stack {
    fn base(&self) -> corosensei::stack::StackPointer {
        let top = self.slot.as_ptr() as usize + memory::page_size() + self.size;
        corosensei::stack::StackPointer::new(top).expect("stack top is not null")
    }

    fn limit(&self) -> corosensei::stack::StackPointer {
        corosensei::stack::StackPointer::new(self.slot.as_ptr() as usize).expect("slot is not null")
    }
}

/// A mapping cut into equal slots, with one owner cell per slot.
struct Reservation {
    base: NonNull<u8>,
    len: usize,
    /// Owner cells, one per slot; boxed so their addresses never move.
    owners: Box<[AtomicPtr<()>]>,
}

// `base` is only the address of a mapping of ours.
// SAFETY: its memory is touched through unique `Stack` handles, the owner
// cells are atomics: sharing the description between threads is sound.
unsafe impl Send for Reservation {}
// SAFETY: as above.
unsafe impl Sync for Reservation {}

/// All stacks of one size.
struct SizeClass {
    /// Usable bytes per stack (a multiple of the page size).
    stack_size: usize,
    /// Guard page plus stack.
    slot_len: usize,
    lists: Mutex<Lists>,
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

/// A size class's mutable state, under its lock.
struct Lists {
    reservations: Vec<Reservation>,
    /// Slots of the last reservation not yet carved into stacks.
    next_fresh: usize,
    /// Free stacks whose memory is still committed (fast to reuse); the
    /// newest at the back, where refills take from.
    warm: Vec<Stack>,
    /// When each run of `warm` was given back, oldest first: `(when,
    /// count)` runs that add up to `warm.len()`.
    warm_since: std::collections::VecDeque<(std::time::Instant, usize)>,
    /// Free stacks trimmed with `MADV_DONTNEED` (their pages fault in again).
    cold: Vec<Stack>,
}

/// Where stacks come from and go back to; one per runtime.
pub(crate) struct StackPool {
    guard_kind: GuardKind,
    /// Stacks the pool may carve in all, `usize::MAX` when guards cost no
    /// mappings; see [`StackPool::stack_budget`].
    budget: usize,
    /// The runtime's default stack size class (the fast path).
    default: SizeClass,
    /// Classes for fibers that asked for another size.
    others: Mutex<Vec<Arc<SizeClass>>>,
    /// Stacks carved so far (all classes). Relaxed: a statistic and the
    /// budget check, both under a class lock when written.
    carved: AtomicUsize,
    /// Stacks on the global free lists. Relaxed: statistics.
    free_global: AtomicUsize,
    /// Bytes of address space reserved. Relaxed: statistics.
    reserved_bytes: AtomicUsize,
}

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
            others: Mutex::new(Vec::new()),
            carved: AtomicUsize::new(0),
            free_global: AtomicUsize::new(0),
            reserved_bytes: AtomicUsize::new(0),
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
    fn is_budgeted(&self) -> bool {
        self.budget != usize::MAX
    }

    /// Usable bytes of a default stack.
    pub(crate) fn default_size(&self) -> usize {
        self.default.stack_size
    }

    /// Rounds a requested stack size up to whole pages (at least one).
    pub(crate) fn round_size(size: usize) -> usize {
        let page = memory::page_size();
        size.max(corosensei::stack::MIN_STACK_SIZE).div_ceil(page) * page
    }

    /// Takes a stack of `size` usable bytes (rounded to pages), for a fiber
    /// that asked for a non-default size. Default-size stacks go through a
    /// worker's [`StackCache`] instead.
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
        let mut others = self.others.lock_unpoisoned();
        if let Some(class) = others.iter().find(|c| c.stack_size == size) {
            return class.clone();
        }
        let class = Arc::new(SizeClass::new(size));
        others.push(class.clone());
        class
    }

    fn acquire_from(&self, class: &SizeClass) -> io::Result<Stack> {
        let mut one = Vec::with_capacity(1);
        self.refill(class, &mut one, 1)?;
        Ok(one.pop().expect("refill returned a stack"))
    }

    /// Moves up to `want` free stacks of `class` into `into`: warm ones
    /// first, then cold, then freshly carved (guards installed outside the
    /// lock, so workers carve in parallel).
    fn refill(&self, class: &SizeClass, into: &mut Vec<Stack>, want: usize) -> io::Result<()> {
        let fresh = {
            let mut lists = class.lists.lock_unpoisoned();
            let lists = &mut *lists;
            let from_warm = want.min(lists.warm.len());
            lists.forget_warm_ages(from_warm, false);
            let mut taken = 0;
            for list in [&mut lists.warm, &mut lists.cold] {
                let n = (want - taken).min(list.len());
                into.extend(list.drain(list.len() - n..).rev());
                taken += n;
            }
            self.free_global.fetch_sub(taken, Ordering::Relaxed);
            if taken > 0 {
                return Ok(());
            }
            self.carve(class, lists, want)?
        };
        let page = memory::page_size();
        let mut result = Ok(());
        for stack in fresh {
            if result.is_err() {
                // A guard failed: keep the rest unguarded on no list; they
                // are never handed out (their slots are simply lost).
                continue;
            }
            // SAFETY: the guard page is the first page of a fresh slot that
            // nothing uses yet.
            match unsafe { memory::install_guard(stack.slot, page, self.guard_kind) } {
                Ok(()) => into.push(stack),
                Err(error) => result = Err(error),
            }
        }
        result
    }

    /// Carves up to `want` never-used slots (mapping a new reservation when
    /// the current one is used up). Their guards are not installed yet.
    fn carve(&self, class: &SizeClass, lists: &mut Lists, want: usize) -> io::Result<Vec<Stack>> {
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
        let slots_per = RESERVATION_BYTES / class.slot_len;
        if lists.reservations.is_empty() || lists.next_fresh == slots_per {
            let base = memory::reserve(slots_per * class.slot_len)?;
            let owners = (0..slots_per)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect();
            lists.reservations.push(Reservation {
                base,
                len: slots_per * class.slot_len,
                owners,
            });
            lists.next_fresh = 0;
            self.reserved_bytes
                .fetch_add(slots_per * class.slot_len, Ordering::Relaxed);
        }
        let reservation = lists.reservations.last().expect("a reservation exists");
        let n = want.min(slots_per - lists.next_fresh);
        let stacks = (lists.next_fresh..lists.next_fresh + n)
            .map(|index| Stack {
                // SAFETY: `index < slots_per`, so the slot lies inside the
                // reservation's `slots_per * slot_len` bytes.
                slot: unsafe { reservation.base.add(index * class.slot_len) },
                size: class.stack_size,
                owner: NonNull::from(&reservation.owners[index]),
            })
            .collect();
        lists.next_fresh += n;
        self.carved.fetch_add(n, Ordering::Relaxed);
        Ok(stacks)
    }

    /// Puts free stacks on the warm list; when it holds twice the
    /// watermark, trims its oldest `WARM_WATERMARK` stacks onto the cold list.
    fn give_back(&self, class: &SizeClass, mut stacks: Vec<Stack>) {
        let count = stacks.len();
        let mut lists = class.lists.lock_unpoisoned();
        lists.warm.append(&mut stacks);
        lists
            .warm_since
            .push_back((std::time::Instant::now(), count));
        lists.debug_check();
        self.free_global.fetch_add(count, Ordering::Relaxed);
        if lists.warm.len() < 2 * WARM_WATERMARK {
            return;
        }
        // The front of the warm list is its oldest (least recently freed).
        let oldest = lists.take_oldest_warm(WARM_WATERMARK);
        self.trim_to_cold(class, lists, oldest);
    }

    /// Trims `stacks` (just taken off `class`'s warm list, whose lock the
    /// caller passes in) and puts them on its cold list.
    fn trim_to_cold(
        &self,
        class: &SizeClass,
        mut lists: std::sync::MutexGuard<'_, Lists>,
        mut stacks: Vec<Stack>,
    ) {
        if self.is_budgeted() {
            // Trim under the lock: a stack must never be on no list while
            // the budget is used up, or a concurrent first run would find
            // none. (The mprotect fallback can afford the wait.)
            trim(&mut stacks, class.slot_len);
            lists.cold.append(&mut stacks);
        } else {
            // Trim outside the lock, so the other workers' refills do not
            // wait for the madvise calls; the stacks are briefly on no list,
            // and a refill meanwhile carves fresh ones instead.
            drop(lists);
            trim(&mut stacks, class.slot_len);
            class.lists.lock_unpoisoned().cold.append(&mut stacks);
        }
    }

    /// Every size class: the default, then the others (a snapshot; a class
    /// added meanwhile is not in it).
    fn classes(&self) -> Vec<ClassRef<'_>> {
        let others = self.others.lock_unpoisoned();
        std::iter::once(ClassRef::Default(&self.default))
            .chain(others.iter().cloned().map(ClassRef::Other))
            .collect()
    }

    /// Trims the warm stacks of every class that have been free for longer
    /// than [`DECAY_AGE`], keeping [`WARM_FLOOR`] (the monitor calls this on
    /// its passes). Cheap when there is nothing to do: one lock per class.
    pub(crate) fn decay(&self) {
        for class in &self.classes() {
            let mut lists = class.lists.lock_unpoisoned();
            let now = std::time::Instant::now();
            let mut old = 0;
            for &(since, count) in &lists.warm_since {
                if now.duration_since(since) < DECAY_AGE {
                    break;
                }
                old += count;
            }
            let n = old.min(lists.warm.len().saturating_sub(WARM_FLOOR));
            if n == 0 {
                continue;
            }
            let oldest = lists.take_oldest_warm(n);
            self.trim_to_cold(class, lists, oldest);
        }
    }

    /// Trims every free stack on the global lists, so their memory goes back
    /// to the kernel now (`Runtime::trim_stacks`).
    pub(crate) fn trim_all(&self) {
        for class in &self.classes() {
            let mut warm = {
                let mut lists = class.lists.lock_unpoisoned();
                lists.warm_since.clear();
                std::mem::take(&mut lists.warm)
            };
            trim(&mut warm, class.slot_len);
            class.lists.lock_unpoisoned().cold.append(&mut warm);
        }
    }

    /// Every fiber pointer in the slot registry (fibers started and not
    /// finished). The registry keeps its own references. Called at shutdown
    /// once no worker runs.
    pub(crate) fn owners(&self) -> Vec<NonNull<()>> {
        let mut owners = Vec::new();
        for class in &self.classes() {
            let lists = class.lists.lock_unpoisoned();
            for reservation in &lists.reservations {
                owners.extend(
                    reservation
                        .owners
                        .iter()
                        .filter_map(|cell| NonNull::new(cell.load(Ordering::Relaxed))),
                );
            }
        }
        owners
    }

    /// Calls `take` with each fiber pointer in the slot registry (fibers
    /// started and not finished), while the runtime runs. Each cell is
    /// *claimed* (its `CLAIMED` bit set by compare-and-swap) around the
    /// call, so the fiber cannot finish meanwhile: its worker waits in
    /// [`Stack::clear_owner`]. `take` must be short and must not block (it
    /// is meant to take a reference count). A fiber starting or finishing
    /// meanwhile may be missed; the list is a snapshot.
    ///
    /// Holds each size class's lock while it walks that class's cells.
    pub(crate) fn for_each_started(&self, mut take: impl FnMut(NonNull<()>)) {
        for class in &self.classes() {
            let lists = class.lists.lock_unpoisoned();
            for reservation in &lists.reservations {
                for cell in reservation.owners.iter() {
                    let owner = cell.load(Ordering::Relaxed);
                    if owner.is_null() || owner as usize & CLAIMED != 0 {
                        continue;
                    }
                    let claimed = (owner as usize | CLAIMED) as *mut ();
                    // Acquire: pairs with `set_owner`'s Release, so the fiber
                    // is seen as its first runner saw it.
                    if cell
                        .compare_exchange(owner, claimed, Ordering::Acquire, Ordering::Relaxed)
                        .is_err()
                    {
                        continue; // it finished (or another fiber started) just now
                    }
                    take(NonNull::new(owner).expect("checked non-null"));
                    // Release: pairs with `clear_owner`'s Acquire (see there).
                    cell.store(owner, Ordering::Release);
                }
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

impl Drop for SizeClass {
    fn drop(&mut self) {
        let lists = self.lists.get_mut().unwrap_or_else(|e| e.into_inner());
        // Free stacks only point into the reservations; forget them first.
        lists.warm.clear();
        lists.warm_since.clear();
        lists.cold.clear();
        for reservation in lists.reservations.drain(..) {
            // A class is dropped with its pool, the pool only when no Stack
            // is alive (every fiber holds the runtime, which holds the pool).
            // SAFETY: so nothing uses this mapping any more.
            unsafe { memory::release(reservation.base, reservation.len) };
        }
    }
}

impl Lists {
    /// Removes the `n` oldest warm stacks (the front) and their ages.
    fn take_oldest_warm(&mut self, n: usize) -> Vec<Stack> {
        self.forget_warm_ages(n, true);
        let oldest: Vec<Stack> = self.warm.drain(..n).collect();
        self.debug_check();
        oldest
    }

    /// Drops the ages of `n` warm stacks, at the oldest end (the front) or
    /// the newest (the back, which refills take from).
    fn forget_warm_ages(&mut self, n: usize, oldest: bool) {
        let mut left = n;
        while left > 0 {
            let run = if oldest {
                self.warm_since.front_mut()
            } else {
                self.warm_since.back_mut()
            };
            let run = run.expect("warm_since covers warm");
            if run.1 > left {
                run.1 -= left;
                return;
            }
            left -= run.1;
            if oldest {
                self.warm_since.pop_front();
            } else {
                self.warm_since.pop_back();
            }
        }
    }

    /// `warm_since` counts exactly the warm stacks.
    fn debug_check(&self) {
        debug_assert_eq!(
            self.warm_since
                .iter()
                .map(|&(_, count)| count)
                .sum::<usize>(),
            self.warm.len(),
            "warm_since out of step with warm"
        );
    }
}

impl SizeClass {
    fn new(stack_size: usize) -> SizeClass {
        let stack_size = StackPool::round_size(stack_size);
        SizeClass {
            stack_size,
            slot_len: stack_size + memory::page_size(),
            lists: Mutex::new(Lists {
                reservations: Vec::new(),
                next_fresh: 0,
                warm: Vec::new(),
                warm_since: std::collections::VecDeque::new(),
                cold: Vec::new(),
            }),
        }
    }
}

/// Gives the memory of free stacks back to the kernel: sorted by address,
/// each run of adjacent slots is trimmed with one `madvise` call.
fn trim(stacks: &mut [Stack], slot_len: usize) {
    stacks.sort_unstable_by_key(|s| s.slot.as_ptr() as usize);
    let mut i = 0;
    while i < stacks.len() {
        let start = stacks[i].slot;
        let mut end = start.as_ptr() as usize + slot_len;
        let mut j = i + 1;
        while j < stacks.len() && stacks[j].slot.as_ptr() as usize == end {
            end += slot_len;
            j += 1;
        }
        // SAFETY: a run of whole free slots of ours; nothing reads them, and
        // their guard markers survive MADV_DONTNEED (see memory::discard).
        unsafe { memory::discard(start, end - start.as_ptr() as usize) };
        i = j;
    }
}

/// The mprotect-mode budget: half the mappings `vm.max_map_count` leaves
/// after what the process already holds and [`MAPPING_HEADROOM`].
fn mprotect_budget() -> usize {
    memory::max_map_count().saturating_sub(memory::map_count() + MAPPING_HEADROOM) / 2
}

/// A worker's private stock of free default-size stacks: no locking.
/// (Bypassed when the pool has a budget; see `StackPool::is_budgeted`.)
///
/// Owned by one worker thread; only `published` is read by others.
pub(crate) struct StackCache {
    stacks: Vec<Stack>,
    /// `stacks.len()`, for statistics. Written by the owner only; Relaxed.
    published: Arc<AtomicUsize>,
}

impl StackCache {
    pub(crate) fn new() -> StackCache {
        StackCache {
            stacks: Vec::with_capacity(LOCAL_CACHE),
            published: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The counter others read to know how many stacks this cache holds.
    pub(crate) fn published(&self) -> Arc<AtomicUsize> {
        self.published.clone()
    }

    /// A default-size stack, from the cache or a batch from the pool.
    pub(crate) fn acquire(&mut self, pool: &StackPool) -> io::Result<Stack> {
        if pool.is_budgeted() {
            return pool.acquire_from(&pool.default);
        }
        if self.stacks.is_empty() {
            let result = pool.refill(&pool.default, &mut self.stacks, BATCH);
            if self.stacks.is_empty() {
                result?;
            }
            // Hand out the lowest address first (the batch came highest
            // first off the lists' ends), which keeps live stacks dense.
            self.stacks
                .sort_unstable_by_key(|s| std::cmp::Reverse(s.slot.as_ptr() as usize));
        }
        let stack = self.stacks.pop().expect("cache refilled");
        self.published.store(self.stacks.len(), Ordering::Relaxed);
        Ok(stack)
    }

    /// Keeps a finished fiber's default-size stack, spilling a batch to the
    /// pool when the cache is full.
    pub(crate) fn release(&mut self, pool: &StackPool, stack: Stack) {
        if stack.size != pool.default.stack_size || pool.is_budgeted() {
            pool.release(stack);
            return;
        }
        if self.stacks.len() >= LOCAL_CACHE {
            let spill: Vec<Stack> = self.stacks.drain(..BATCH).collect();
            pool.give_back(&pool.default, spill);
        }
        self.stacks.push(stack);
        self.published.store(self.stacks.len(), Ordering::Relaxed);
    }

    /// Returns every cached stack to the pool (a worker does this on exit).
    pub(crate) fn drain_into(&mut self, pool: &StackPool) {
        if !self.stacks.is_empty() {
            pool.give_back(&pool.default, std::mem::take(&mut self.stacks));
        }
        self.published.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
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
    fn stacks_are_reused_and_accounted() {
        let pool = StackPool::new(16 * 1024, false);
        let mut cache = StackCache::new();
        let first = cache.acquire(&pool).unwrap();
        let first_addr = first.slot.as_ptr() as usize;
        assert_eq!(pool.stats(cache.stacks.len()).in_use, 1);
        cache.release(&pool, first);
        let again = cache.acquire(&pool).unwrap();
        assert_eq!(
            again.slot.as_ptr() as usize,
            first_addr,
            "a released stack is reused first"
        );
        cache.release(&pool, again);
        cache.drain_into(&pool);
        let stats = pool.stats(0);
        assert_eq!(stats.in_use, 0);
        assert_eq!(stats.cached, stats.carved);
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
    fn trimming_keeps_stacks_usable() {
        let pool = StackPool::new(16 * 1024, false);
        let stacks: Vec<Stack> = (0..8)
            .map(|_| pool.acquire_sized(16 * 1024).unwrap())
            .collect();
        for stack in &stacks {
            let top = corosensei::stack::Stack::base(stack).get() as *mut u8;
            // SAFETY: the last byte below the top of a stack we hold.
            unsafe { top.sub(1).write(7) };
        }
        let mut stacks = stacks;
        trim(&mut stacks, pool.default.slot_len);
        for stack in &stacks {
            let top = corosensei::stack::Stack::base(stack).get() as *mut u8;
            // SAFETY: as above; trimmed memory reads back as zero.
            assert_eq!(unsafe { top.sub(1).read() }, 0);
        }
        for stack in stacks {
            pool.release(stack);
        }
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
        let warm = |pool: &StackPool| {
            let lists = pool.default.lists.lock().unwrap();
            lists.debug_check();
            lists.warm.len()
        };
        assert_eq!(warm(&pool), count);
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
        let lists = pool.default.lists.lock().unwrap();
        assert_eq!(lists.cold.len(), count - WARM_FLOOR);
    }
}
