//! Reservations: one large mapping of address space, cut into equal slots
//! of guard page plus stack, with the registry's owner cells beside it.
//!
//! A reservation is mapped `MAP_NORESERVE`: it commits no memory until a
//! stack's pages are touched, so its size costs address space, of which a
//! process has plenty, and one memory mapping, of which it has few. Slots are
//! carved from the start of the newest reservation of a size class in order
//! (`SizeClass::carve`), and a reservation is never unmapped while its
//! runtime lives: stacks go back to free lists, not to the kernel's map.
//!
//! Rejected: growing one mapping with `mremap` instead of mapping more. A
//! move would invalidate every live stack's addresses, and growing in place
//! can fail once something else is mapped above it.

use std::io;
use std::ptr::NonNull;

use super::registry::OwnerCells;
use super::Stack;
use crate::sys::memory;

/// Address space mapped per reservation. Address space is plentiful, the
/// count of mappings is not: at this size a million default-size stacks
/// take a few dozen mappings (worked out in docs/decisions.md).
pub(crate) const RESERVATION_BYTES: usize = 1 << 30;

/// A mapping cut into equal slots, with one owner cell per slot.
///
/// Its memory is touched only through the [`Stack`]s carved from it; the
/// size class that mapped it owns the description.
pub(super) struct Reservation {
    base: NonNull<u8>,
    len: usize,
    /// Bytes per slot: a guard page plus the stack.
    slot_len: usize,
    owners: OwnerCells,
}

// `base` is only the address of a mapping of ours.
// SAFETY: its memory is touched through unique `Stack` handles, the owner
// cells are atomics: sharing the description between threads is sound.
unsafe impl Send for Reservation {}
// SAFETY: as above.
unsafe impl Sync for Reservation {}

impl Reservation {
    /// How many slots of `slot_len` bytes a reservation holds.
    pub(super) fn slots_for(slot_len: usize) -> usize {
        RESERVATION_BYTES / slot_len
    }

    /// Maps a reservation of as many `slot_len`-byte slots as fit in
    /// [`RESERVATION_BYTES`]. No guard is installed yet.
    pub(super) fn map(slot_len: usize) -> io::Result<Reservation> {
        let slots = Reservation::slots_for(slot_len);
        let len = slots * slot_len;
        let base = memory::reserve(len)?;
        Ok(Reservation {
            base,
            len,
            slot_len,
            owners: OwnerCells::new(slots),
        })
    }

    /// Bytes of address space mapped.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The owner cells of this reservation's slots.
    pub(super) fn owners(&self) -> &OwnerCells {
        &self.owners
    }

    /// A handle on slot `index`, with `stack_size` usable bytes above its
    /// guard page (not installed yet). The caller carves each slot once.
    pub(super) fn stack(&self, index: usize, stack_size: usize) -> Stack {
        debug_assert_eq!(stack_size + memory::page_size(), self.slot_len);
        // Indexing the cells panics unless `index < slots`.
        let owner = self.owners.cell(index);
        Stack {
            // SAFETY: `index < slots` (checked just above), so the slot lies
            // inside the reservation's `slots * slot_len` bytes.
            slot: unsafe { self.base.add(index * self.slot_len) },
            size: stack_size,
            owner,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // A reservation is dropped only with its size class, a class only
        // with its pool, and the pool only when no Stack is alive (every
        // fiber holds the runtime, which holds the pool).
        // SAFETY: so nothing uses this mapping any more.
        unsafe { memory::release(self.base, self.len) };
    }
}
