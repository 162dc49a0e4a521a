//! [`Latch`]: a single-use count-down latch (Java's `CountDownLatch`, C++'s
//! `std::latch`), usable from fibers and threads alike.
//!
//! # Design
//! Waiters form a lock-free stack (a Treiber stack) whose nodes live on the
//! waiters' own stacks: waiting allocates nothing and takes no lock, which is
//! what lets a million fibers wait on one latch (`examples/million.rs`). The
//! last `count_down` swaps the whole stack out, replacing it with a
//! `RELEASED` marker so later waiters return at once, and wakes every node.
//!
//! A node must stay valid until its waker is done with it, so a waiter does
//! not leave when the count reaches zero but when *its own node* is marked
//! woken; the waker reads everything it needs from a node before marking it.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

use super::waiter::Waiter;

/// A waiter's entry in the latch's stack, on the waiter's own stack.
struct Node {
    waiter: Waiter,
    next: *mut Node,
    /// Set by the releaser after it is done reading the node.
    woken: AtomicBool,
}

/// The head's value once the latch is open.
const RELEASED: *mut Node = std::ptr::dangling_mut();

/// A latch that opens when counted down to zero.
///
/// ```
/// use std::sync::Arc;
/// use spindle::sync::Latch;
///
/// let rt = spindle::Runtime::new().unwrap();
/// let ready = Arc::new(Latch::new(3));
/// for _ in 0..3 {
///     let ready = ready.clone();
///     rt.spawn(move || ready.count_down());
/// }
/// ready.wait(); // a plain thread waits too
/// assert_eq!(ready.count(), 0);
/// ```
pub struct Latch {
    count: AtomicUsize,
    /// Top of the waiters' stack, or `RELEASED`.
    head: AtomicPtr<Node>,
}

// SAFETY: the raw node pointers are only followed by the releaser, after a
// successful swap of `head` made it their sole reader, and each node stays
// alive until its `woken` flag is set (see the module docs).
unsafe impl Sync for Latch {}
// SAFETY: as above; the latch owns no node.
unsafe impl Send for Latch {}

impl Latch {
    /// A latch that opens after `count` calls to [`Latch::count_down`]
    /// (at once if `count` is 0).
    pub fn new(count: usize) -> Latch {
        let head = if count == 0 {
            RELEASED
        } else {
            std::ptr::null_mut()
        };
        Latch {
            count: AtomicUsize::new(count),
            head: AtomicPtr::new(head),
        }
    }

    /// The remaining count.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Decrements the count; the call that brings it to zero wakes every
    /// waiter. Further calls do nothing.
    pub fn count_down(&self) {
        // AcqRel: Release publishes this party's work to the waiters; the
        // last one's Acquire sees every other party's.
        let previous = self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| c.checked_sub(1));
        if previous == Ok(1) {
            self.release();
        }
    }

    fn release(&self) {
        // Acquire: pairs with the waiters' Release push, so their nodes are
        // fully written.
        let mut node = self.head.swap(RELEASED, Ordering::AcqRel);
        while !node.is_null() && node != RELEASED {
            // SAFETY: a pushed node stays alive until we set its `woken`
            // flag; we read all we need before that.
            let (waiter, next) = unsafe { ((*node).waiter.clone(), (*node).next) };
            // SAFETY: as above; after this store the waiter may return and
            // its node be gone, so we do not touch it again.
            unsafe { (*node).woken.store(true, Ordering::Release) };
            waiter.unpark();
            node = next;
        }
    }

    /// Blocks (a thread) or parks (a fiber) until the count is zero.
    pub fn wait(&self) {
        if self.head.load(Ordering::Acquire) == RELEASED {
            return;
        }
        let mut node = Node {
            waiter: Waiter::current(),
            next: std::ptr::null_mut(),
            woken: AtomicBool::new(false),
        };
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            if head == RELEASED {
                return;
            }
            node.next = head;
            // Release: publishes the node's contents to the releaser.
            match self.head.compare_exchange_weak(
                head,
                &mut node,
                Ordering::Release,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(current) => head = current,
            }
        }
        // Acquire: pairs with the releaser's Release on `woken`.
        while !node.woken.load(Ordering::Acquire) {
            crate::park();
        }
    }
}

impl std::fmt::Debug for Latch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Latch")
            .field("count", &self.count())
            .finish()
    }
}
