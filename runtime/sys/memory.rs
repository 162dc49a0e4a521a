//! Address-space reservations, guard pages and the mapping budget.
//!
//! A fiber stack is a slice of a large reservation (see `fiber/stack/`).
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
//!
//! [`install_guards`] installs many guards at once: with `MADV_GUARD_INSTALL`
//! through `process_madvise` on the calling process itself, which takes up
//! to [`GUARDS_PER_CALL`] ranges per call (Linux 6.13 accepts any advice
//! for the caller's own address space). One call takes the address-space
//! lock once for the whole vector, where one `madvise` per guard takes it
//! once per guard, against the page faults of every other thread (measured:
//! see `CARVE_BATCH` in docs/decisions.md). Where the kernel or a sandbox
//! refuses `process_madvise`, guards are installed one `madvise` each.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::sys::mman::{self, MapFlags, MmapAdvise, ProtFlags};
use nix::unistd::{self, SysconfVar};

/// `MADV_GUARD_INSTALL` from `<linux/mman.h>` (Linux 6.13). Neither `nix`'s
/// `MmapAdvise` nor the `libc` crate names it, so it is passed to
/// `libc::madvise` by number (see [`madvise_guard`]).
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// `PIDFD_SELF_PROCESS` from `<linux/pidfd.h>` (Linux 6.14): a pidfd
/// argument naming the calling process without opening a descriptor. Older
/// kernels answer `EBADF`; then a pidfd of our own is opened per call.
const PIDFD_SELF_PROCESS: libc::c_int = -10001;

/// The most ranges one `process_madvise` call takes: the kernel's limit on
/// an I/O vector (`UIO_MAXIOV`), not a tuning choice.
pub(crate) const GUARDS_PER_CALL: usize = 1024;

/// The size of a memory page, read once from the kernel.
pub(crate) fn page_size() -> usize {
    static PAGE_SIZE: OnceLock<usize> = OnceLock::new();
    *PAGE_SIZE.get_or_init(|| {
        let size = unistd::sysconf(SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .expect("sysconf(_SC_PAGESIZE) failed");
        usize::try_from(size).expect("sysconf(_SC_PAGESIZE) is positive")
    })
}

/// Reserves `len` bytes of readable, writable address space that commits no
/// memory until touched (`MAP_NORESERVE`). `MAP_STACK` keeps transparent huge
/// pages off it on recent kernels, so RSS grows a 4 KiB page at a time.
pub(crate) fn reserve(len: usize) -> io::Result<NonNull<u8>> {
    let len = NonZeroUsize::new(len).ok_or(Errno::EINVAL)?;
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing cannot alias any existing Rust object.
    let ptr = unsafe {
        mman::mmap_anonymous(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE | MapFlags::MAP_STACK,
        )
    }?;
    Ok(ptr.cast())
}

/// Unmaps a reservation made by [`reserve`].
///
/// # Safety
/// `ptr` and `len` must be exactly a reservation returned by [`reserve`], and
/// nothing may use the memory afterwards.
pub(crate) unsafe fn release(ptr: NonNull<u8>, len: usize) {
    // SAFETY: the caller passes a whole mapping that nothing uses any more.
    let result = unsafe { mman::munmap(ptr.cast(), len) };
    debug_assert!(result.is_ok(), "munmap failed: {result:?}");
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
        let installed = unsafe { madvise_guard(scratch, page) };
        // SAFETY: `scratch` is the whole mapping made just above.
        unsafe { release(scratch, page) };
        if installed.is_ok() {
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
    match kind {
        // SAFETY: the caller owns the range and it holds no live data.
        GuardKind::Madvise => unsafe { madvise_guard(ptr, len) },
        GuardKind::Mprotect => {
            // SAFETY: as above; PROT_NONE only removes access to unused memory.
            unsafe { mman::mprotect(ptr.cast(), len, ProtFlags::PROT_NONE) }.map_err(Into::into)
        }
    }
}

/// Makes `len` bytes at each of `pages` a guard region, as
/// [`install_guard`] does for one, in as few system calls as the kernel
/// allows (module docs). Returns how many of `pages`, from the first,
/// were guarded, with the error that stopped the rest, if any.
///
/// # Safety
/// As [`install_guard`], for every range.
pub(crate) unsafe fn install_guards(
    pages: &[NonNull<u8>],
    len: usize,
    kind: GuardKind,
) -> (usize, io::Result<()>) {
    let mut done = 0;
    if kind == GuardKind::Madvise && BATCHES_WORK.load(Ordering::Relaxed) {
        while done < pages.len() {
            let batch = &pages[done..pages.len().min(done + GUARDS_PER_CALL)];
            // SAFETY: the caller's promise, for each range of the batch.
            match unsafe { madvise_guard_batch(batch, len) } {
                Ok(guarded) if guarded > 0 => done += guarded,
                _ => {
                    // Refused (a kernel before 6.13, or a sandbox): one
                    // call per guard from now on. Relaxed: a hint; a
                    // racing batch that fails takes this path too.
                    BATCHES_WORK.store(false, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
    for &page in &pages[done..] {
        // SAFETY: the caller's promise, for this range.
        if let Err(error) = unsafe { install_guard(page, len, kind) } {
            return (done, Err(error));
        }
        done += 1;
    }
    (done, Ok(()))
}

/// Whether `process_madvise` installs guards here; cleared at its first
/// refusal.
static BATCHES_WORK: AtomicBool = AtomicBool::new(true);

/// One `process_madvise(self, pages, MADV_GUARD_INSTALL)` call over at most
/// [`GUARDS_PER_CALL`] ranges of `len` bytes; returns how many ranges,
/// from the first, it guarded.
///
/// # Safety
/// As [`install_guard`], for every range.
unsafe fn madvise_guard_batch(pages: &[NonNull<u8>], len: usize) -> io::Result<usize> {
    // SAFETY: the caller's promise.
    match unsafe { madvise_guard_batch_via(PIDFD_SELF_PROCESS, pages, len) } {
        Err(Errno::EBADF) => {
            // A kernel before 6.14: name ourselves with a pidfd, opened per
            // call (a cached one would name the parent after a fork).
            let pid = unistd::getpid().as_raw();
            // SAFETY: pidfd_open reads a pid and flags and returns a new
            // descriptor (or -1).
            let fd = Errno::result(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
            // SAFETY: `fd` is the descriptor just opened, ours alone; the
            // OwnedFd closes it.
            let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
            // SAFETY: the caller's promise.
            Ok(unsafe { madvise_guard_batch_via(fd.as_raw_fd(), pages, len) }?)
        }
        result => Ok(result?),
    }
}

/// [`madvise_guard_batch`] through `pidfd`, which names this process. Raw
/// `libc`: nix has no `process_madvise`.
///
/// # Safety
/// As [`install_guard`], for every range.
unsafe fn madvise_guard_batch_via(
    pidfd: RawFd,
    pages: &[NonNull<u8>],
    len: usize,
) -> Result<usize, Errno> {
    debug_assert!(pages.len() <= GUARDS_PER_CALL);
    let ranges: Vec<libc::iovec> = pages
        .iter()
        .map(|page| libc::iovec {
            iov_base: page.as_ptr().cast(),
            iov_len: len,
        })
        .collect();
    // SAFETY: the kernel reads `ranges` (live, `ranges.len()` entries) and
    // advises each range, which the caller owns and nothing uses.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_process_madvise,
            pidfd,
            ranges.as_ptr(),
            ranges.len(),
            MADV_GUARD_INSTALL,
            0,
        )
    };
    Errno::result(rc).map(|bytes| bytes as usize / len)
}

/// `madvise(ptr, len, MADV_GUARD_INSTALL)`: a raw `libc` call, since
/// `nix::sys::mman::madvise` takes only the advice values its `MmapAdvise`
/// enum names.
///
/// # Safety
/// As [`install_guard`]: a page-aligned range of ours that holds nothing
/// anybody uses.
unsafe fn madvise_guard(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller owns the range and it holds no live data; the call
    // only reads its arguments.
    let rc = unsafe { libc::madvise(ptr.as_ptr().cast(), len, MADV_GUARD_INSTALL) };
    Errno::result(rc).map(drop).map_err(Into::into)
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
    let result = unsafe { mman::madvise(ptr.cast(), len, MmapAdvise::MADV_DONTNEED) };
    debug_assert!(result.is_ok(), "madvise(MADV_DONTNEED) failed: {result:?}");
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ways of naming this process to `process_madvise` guard every
    /// range (where the kernel has the call at all).
    #[test]
    fn batched_guards_cover_every_range_through_either_pidfd() {
        if probe_guard_kind() != GuardKind::Madvise {
            return; // a kernel before 6.13: no guards to batch
        }
        let page = page_size();
        let pid = unistd::getpid().as_raw();
        // SAFETY: pidfd_open reads a pid and flags.
        let opened = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        assert!(opened >= 0, "pidfd_open of our own pid");
        // SAFETY: the descriptor just opened, ours alone; the OwnedFd closes it.
        let opened = unsafe { OwnedFd::from_raw_fd(opened as RawFd) };
        for pidfd in [PIDFD_SELF_PROCESS, opened.as_raw_fd()] {
            let slots = 64;
            let base = reserve(2 * slots * page).unwrap();
            // Every other page: ranges that no single madvise could cover.
            let pages: Vec<NonNull<u8>> = (0..slots)
                // SAFETY: inside the reservation just made.
                .map(|i| unsafe { base.add(2 * i * page) })
                .collect();
            // SAFETY: our own fresh reservation, which nothing uses.
            match unsafe { madvise_guard_batch_via(pidfd, &pages, page) } {
                Ok(guarded) => assert_eq!(guarded, slots, "pidfd {pidfd}"),
                // PIDFD_SELF_PROCESS on a kernel before 6.14.
                Err(Errno::EBADF) if pidfd == PIDFD_SELF_PROCESS => {}
                Err(error) => panic!("process_madvise through pidfd {pidfd}: {error}"),
            }
            // SAFETY: the whole reservation made above, unused from now on.
            unsafe { release(base, 2 * slots * page) };
        }
    }
}
