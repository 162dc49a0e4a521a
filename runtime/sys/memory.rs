//! Address-space reservations, guard pages and the mapping budget.
//!
//! A fiber stack is a slice of a large reservation (see `fiber/stack.rs`).
//! The calls here are the only ones that create, guard, trim and release that
//! memory. Two ways to guard a page exist, chosen once per process by
//! [`probe_guard_kind`]:
//!
//! - `madvise(MADV_GUARD_INSTALL)` (Linux 6.13+) marks pages inside an
//!   existing mapping as guards **without splitting it**: one reservation
//!   stays one memory mapping however many stacks it holds (measured: see
//!   `MADV_GUARD_INSTALL` in docs/decisions.md).
//! - `mprotect(PROT_NONE)` on older kernels splits the mapping around every
//!   guard, costing two mappings (VMAs) per stack out of the kernel's
//!   `vm.max_map_count` (65530 by default), so the stack pool budgets them.

use std::io;
use std::ptr::NonNull;
use std::sync::OnceLock;

/// `MADV_GUARD_INSTALL` from `<linux/mman.h>` (Linux 6.13); the `libc`
/// crate does not name it yet.
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// The size of a memory page, read once from the kernel.
pub(crate) fn page_size() -> usize {
    static PAGE_SIZE: OnceLock<usize> = OnceLock::new();
    *PAGE_SIZE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions; _SC_PAGESIZE always succeeds.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size).expect("sysconf(_SC_PAGESIZE) failed")
    })
}

/// Reserves `len` bytes of readable, writable address space that commits no
/// memory until touched (`MAP_NORESERVE`). `MAP_STACK` keeps transparent huge
/// pages off it on recent kernels, so RSS grows a 4 KiB page at a time.
pub(crate) fn reserve(len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing cannot alias any existing Rust object.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(NonNull::new(ptr.cast()).expect("mmap returned null"))
}

/// Unmaps a reservation made by [`reserve`].
///
/// # Safety
/// `ptr` and `len` must be exactly a reservation returned by [`reserve`], and
/// nothing may use the memory afterwards.
pub(crate) unsafe fn release(ptr: NonNull<u8>, len: usize) {
    // SAFETY: the caller passes a whole mapping that nothing uses any more.
    let rc = unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
    debug_assert_eq!(rc, 0, "munmap failed: {}", io::Error::last_os_error());
}

/// How guard pages are installed in this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GuardKind {
    /// `madvise(MADV_GUARD_INSTALL)`: no extra mappings.
    Madvise,
    /// `mprotect(PROT_NONE)`: two extra mappings per guard.
    Mprotect,
}

/// Finds out, once, whether this kernel accepts `MADV_GUARD_INSTALL`, by
/// trying it on a scratch mapping. `EINVAL` means the kernel predates 6.13.
pub(crate) fn probe_guard_kind() -> GuardKind {
    static KIND: OnceLock<GuardKind> = OnceLock::new();
    *KIND.get_or_init(|| {
        let page = page_size();
        let Ok(scratch) = reserve(page) else {
            return GuardKind::Mprotect;
        };
        // SAFETY: the scratch page is our own fresh mapping.
        let rc = unsafe { libc::madvise(scratch.as_ptr().cast(), page, MADV_GUARD_INSTALL) };
        // SAFETY: `scratch` is the whole mapping made just above.
        unsafe { release(scratch, page) };
        if rc == 0 {
            GuardKind::Madvise
        } else {
            GuardKind::Mprotect
        }
    })
}

/// Makes `[ptr, ptr + len)` a guard region: any access raises `SIGSEGV`.
///
/// # Safety
/// The range must be page-aligned, lie inside a reservation of ours, and hold
/// nothing anybody uses.
pub(crate) unsafe fn install_guard(
    ptr: NonNull<u8>,
    len: usize,
    kind: GuardKind,
) -> io::Result<()> {
    let rc = match kind {
        // SAFETY: the caller owns the range and it holds no live data.
        GuardKind::Madvise => unsafe {
            libc::madvise(ptr.as_ptr().cast(), len, MADV_GUARD_INSTALL)
        },
        // SAFETY: as above; PROT_NONE only removes access to unused memory.
        GuardKind::Mprotect => unsafe { libc::mprotect(ptr.as_ptr().cast(), len, libc::PROT_NONE) },
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Gives the physical pages of `[ptr, ptr + len)` back to the kernel; the
/// range reads as zeroes afterwards. Guard markers installed with
/// `MADV_GUARD_INSTALL` survive this (a write into a guard page after
/// `MADV_DONTNEED` of the whole range still faults; `tests/stack.rs`
/// checks it), so a run of whole stack slots, guards included, is trimmed
/// with one call.
///
/// # Safety
/// The range must be page-aligned, inside a reservation of ours, and hold no
/// data anybody will read.
pub(crate) unsafe fn discard(ptr: NonNull<u8>, len: usize) {
    // SAFETY: the caller guarantees nobody uses the contents of the range.
    let rc = unsafe { libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_DONTNEED) };
    debug_assert_eq!(
        rc,
        0,
        "madvise(MADV_DONTNEED) failed: {}",
        io::Error::last_os_error()
    );
}

/// The kernel's per-process limit on memory mappings, `vm.max_map_count`
/// (65530 unless an administrator changed it).
pub(crate) fn max_map_count() -> usize {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(65530)
}

/// How many memory mappings this process holds now (lines of
/// `/proc/self/maps`).
pub fn map_count() -> usize {
    std::fs::read("/proc/self/maps")
        .map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count())
        .unwrap_or(0)
}
