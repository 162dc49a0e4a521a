//! Fiber stacks: carved out of large reservations, each guarded, pooled for
//! reuse, and trimmed once idle.
//!
//! # Why not one `mmap` per stack
//! corosensei's `DefaultStack` maps every stack separately and `mprotect`s a
//! guard page into it: two memory mappings per stack. Linux caps a process at
//! `vm.max_map_count` mappings (65530 by default), so that design stops near
//! 32,000 live fibers. Here a *reservation* of
//! [`RESERVATION_BYTES`](reservation::RESERVATION_BYTES) of address
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
//! # Files
//! - `reservation.rs`: one mapping cut into equal slots;
//! - `registry.rs`: the slot registry (an owner cell per slot) and the claim
//!   protocol a fiber dump uses to read it while fibers run;
//! - `class.rs`: a size class: its reservations, its warm and cold free
//!   lists, and when stacks on them are trimmed;
//! - `pool.rs`: [`StackPool`], the size classes of one runtime, the
//!   `mprotect` budget, guard installation and statistics;
//! - `cache.rs`: [`StackCache`], a worker's private stock of free stacks.
//!
//! This file holds [`Stack`], the handle all of them pass around, and its
//! implementation of corosensei's `Stack` trait.

mod cache;
mod class;
mod pool;
mod registry;
mod reservation;

use std::ptr::NonNull;
use std::sync::atomic::AtomicPtr;

pub(crate) use self::cache::StackCache;
pub(crate) use self::class::DECAY_AGE;
pub(crate) use self::pool::StackPool;
pub use self::pool::StackStats;
use crate::sys::memory;

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

    /// The slot's address, the order stacks are handed out and trimmed in.
    fn address(&self) -> usize {
        self.slot.as_ptr() as usize
    }
}

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
