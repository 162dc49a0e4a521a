//! The fiber record's own parts that keep it small: the root closure kept
//! inside the record ([`Entry`]) and a one-word name ([`FiberName`]).
//!
//! A million parked fibers hold a million records, so every word of
//! `FiberInner` costs a megabyte there, and every allocation at spawn is
//! paid a million times. A fiber's root closure usually captures a few
//! handles (a channel end, an `Arc` or two): when it fits in
//! [`INLINE_ENTRY`] bytes it is moved into the record itself, with one
//! function pointer that knows its type, instead of into a box of its own
//! (one allocation and one free fewer per fiber, and the record's
//! allocation is the same size class either way). A larger closure is
//! boxed, and the record keeps the box.
//!
//! Rejected: a record generic over the closure type (`FiberInner<F>`
//! behind a `dyn` pointer): every queue and handle would carry a fat
//! pointer, and the record's size would vary with the closure, so no two
//! fibers could share a size class for reuse.

use std::mem::{align_of, size_of, ManuallyDrop, MaybeUninit};

use super::join::Output;
use super::Start;

/// Bytes of a root closure kept inside the fiber record; larger ones are
/// boxed. Two words: the record's allocation stays in the same malloc size
/// class as with none, and the usual closure (two captured handles) fits.
pub(crate) const INLINE_ENTRY: usize = 2 * size_of::<usize>();

/// Room for a closure of at most [`INLINE_ENTRY`] bytes and word alignment.
#[repr(C)]
struct Inline([MaybeUninit<usize>; INLINE_ENTRY / size_of::<usize>()]);

/// The root function of a fiber, type-erased: runs the user's closure (or
/// not, per [`Start`]) and returns the outcome for the `JoinHandle`. The
/// closure and everything it captured are gone when it returns.
///
/// # Invariants
/// `data` holds a live closure of the type `call` was made for (inline, or
/// a `Box` of it), until [`Entry::run`] or the drop consumes it.
pub(crate) struct Entry {
    /// Moves the closure out of `data` and runs it.
    call: unsafe fn(*mut Inline, Start) -> Output,
    data: Inline,
}

// The closure is `Send` (`Entry::new` requires it), and an `Entry` is
// touched by one thread at a time (the fiber's, or the runtime's before it
// starts).
// SAFETY: so moving it to another thread moves a `Send` value.
unsafe impl Send for Entry {}

impl Entry {
    /// The entry that runs `root`: inside the record if it fits, else boxed.
    pub(crate) fn new<F>(root: F) -> Entry
    where
        F: FnOnce(Start) -> Output + Send + 'static,
    {
        let mut data = Inline([MaybeUninit::uninit(); INLINE_ENTRY / size_of::<usize>()]);
        // Both branches are decided at compile time, per closure type.
        if size_of::<F>() <= size_of::<Inline>() && align_of::<F>() <= align_of::<Inline>() {
            // SAFETY: `data` has room and alignment for an `F` (checked).
            unsafe { data.0.as_mut_ptr().cast::<F>().write(root) };
            Entry {
                call: call_inline::<F>,
                data,
            }
        } else {
            // SAFETY: a `Box` is one word, which `data` has room for.
            unsafe { data.0.as_mut_ptr().cast::<Box<F>>().write(Box::new(root)) };
            Entry {
                call: call_boxed::<F>,
                data,
            }
        }
    }

    /// Runs the root function with `start`, consuming it.
    pub(crate) fn run(self, start: Start) -> Output {
        let mut entry = ManuallyDrop::new(self);
        // SAFETY: `data` holds the closure `call` was made for (invariant);
        // `ManuallyDrop` keeps our drop from consuming it a second time.
        unsafe { (entry.call)(&mut entry.data, start) }
    }
}

impl Drop for Entry {
    /// An entry dropped without running (its record is freed unstarted)
    /// drops its closure as a cancelled start does.
    fn drop(&mut self) {
        // SAFETY: not run yet (`run` forgets the entry), so `data` holds
        // the closure (invariant); it is consumed once, here.
        drop(unsafe { (self.call)(&mut self.data, Start::Cancelled) });
    }
}

/// Moves an inline `F` out of `data` and runs it.
///
/// # Safety
/// `data` holds a live `F`, which this consumes.
unsafe fn call_inline<F: FnOnce(Start) -> Output>(data: *mut Inline, start: Start) -> Output {
    // SAFETY: the caller's promise; the read moves the closure out.
    let root = unsafe { data.cast::<F>().read() };
    root(start)
}

/// Moves a boxed `F` out of `data` and runs it.
///
/// # Safety
/// `data` holds a live `Box<F>`, which this consumes.
unsafe fn call_boxed<F: FnOnce(Start) -> Output>(data: *mut Inline, start: Start) -> Output {
    // SAFETY: the caller's promise; the read moves the box out.
    let root = unsafe { data.cast::<Box<F>>().read() };
    root(start)
}

/// A fiber's name, in one word (most fibers have none).
#[derive(Default)]
pub(crate) struct FiberName(Option<Box<Box<str>>>);

impl FiberName {
    pub(crate) fn new(name: Option<Box<str>>) -> FiberName {
        FiberName(name.map(Box::new))
    }

    /// The name, if the fiber was given one.
    pub(crate) fn as_deref(&self) -> Option<&str> {
        self.0.as_deref().map(|name| &**name)
    }
}

impl std::fmt::Debug for FiberName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_deref().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// Counts its drops.
    struct Tracked(Arc<AtomicUsize>);

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn entry_of<const N: usize>(drops: &Arc<AtomicUsize>) -> Entry {
        let tracked = Tracked(drops.clone());
        let padding = [7u8; N];
        Entry::new(move |start| {
            let _keep = (&tracked, padding);
            match start {
                Start::Run => Ok(Box::new(padding.len())),
                _ => Err(super::super::join::JoinError::cancelled()),
            }
        })
    }

    #[test]
    fn small_and_large_closures_run_once_and_drop_once() {
        for inline in [true, false] {
            let drops = Arc::new(AtomicUsize::new(0));
            let entry = if inline {
                entry_of::<1>(&drops)
            } else {
                entry_of::<64>(&drops)
            };
            let output = entry.run(Start::Run).ok().unwrap();
            let len = *output.downcast::<usize>().unwrap();
            assert_eq!(len, if inline { 1 } else { 64 });
            assert_eq!(drops.load(Ordering::Relaxed), 1, "inline: {inline}");

            let unrun = if inline {
                entry_of::<1>(&drops)
            } else {
                entry_of::<64>(&drops)
            };
            drop(unrun);
            assert_eq!(drops.load(Ordering::Relaxed), 2, "inline: {inline}");
        }
    }

    #[test]
    fn names_read_back() {
        assert_eq!(FiberName::new(None).as_deref(), None);
        assert_eq!(FiberName::new(Some("io".into())).as_deref(), Some("io"));
        assert_eq!(size_of::<FiberName>(), size_of::<usize>());
    }
}
