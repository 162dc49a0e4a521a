//! The slot registry: one owner cell per slot, naming the fiber started on
//! that slot's stack, and the claim protocol that lets a fiber dump read it
//! while the runtime runs.
//!
//! The fiber layer stores a plain pointer to the fiber running on a stack in
//! the stack's cell while the fiber is started but not finished (the fiber's
//! scheduling reference keeps it alive, see `fiber/mod.rs`). At shutdown,
//! [`StackPool::owners`](super::StackPool::owners) finds every fiber still
//! suspended mid-stack (parked fibers sit in no queue) so it can be unwound.
//! A fiber dump (`fiber/dump.rs`) reads the cells while the runtime runs,
//! claiming each cell around taking a reference of its own
//! ([`OwnerCells::for_each_started`]), so the fiber it names cannot finish
//! and be freed in between.
//!
//! # The claim protocol
//! A claim sets the cell's [`CLAIMED`] bit by compare-and-swap, takes the
//! reference, and stores the plain pointer back. A finishing fiber clears
//! its cell by compare-and-swap ([`Stack::clear_owner`]) and, finding the
//! bit set, waits for the claim to end: a few instructions.
//!
//! That costs one store when a fiber starts and one compare-and-swap when it
//! ends. Rejected: a locked list of live fibers, which costs a lock on every
//! start and finish to serve a rare dump.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, Ordering};

use super::Stack;

/// Set in an owner cell while a fiber dump claims it (pointers to fibers are
/// at least 8-byte aligned, so bit 0 is free).
const CLAIMED: usize = 1;

/// The owner cells of one reservation, one per slot; boxed so their
/// addresses never move while stacks point at them.
pub(super) struct OwnerCells(Box<[AtomicPtr<()>]>);

impl OwnerCells {
    /// `slots` empty cells.
    pub(super) fn new(slots: usize) -> OwnerCells {
        OwnerCells(
            (0..slots)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
        )
    }

    /// Slot `index`'s cell, for the [`Stack`] carved from that slot.
    pub(super) fn cell(&self, index: usize) -> NonNull<AtomicPtr<()>> {
        NonNull::from(&self.0[index])
    }

    /// Appends every fiber pointer in these cells to `owners`. Called at
    /// shutdown once no worker runs, so no claim can be in progress.
    pub(super) fn collect(&self, owners: &mut Vec<NonNull<()>>) {
        owners.extend(
            self.0
                .iter()
                .filter_map(|cell| NonNull::new(cell.load(Ordering::Relaxed))),
        );
    }

    /// Calls `take` with each fiber pointer in these cells, each cell
    /// claimed around the call, so the fiber cannot finish meanwhile: its
    /// worker waits in [`Stack::clear_owner`]. `take` must be short and must
    /// not block (it is meant to take a reference count). A fiber starting or
    /// finishing meanwhile may be missed; the walk is a snapshot.
    pub(super) fn for_each_started(&self, take: &mut impl FnMut(NonNull<()>)) {
        for cell in self.0.iter() {
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

impl Stack {
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
