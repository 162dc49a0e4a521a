//! A waiter's [`Node`]: its entry in a wait list (`sync/waitlist.rs`,
//! the channels' queues), and the [`NodeCache`] that keeps it between
//! waits.
//!
//! A node is shared by the list and its waiter (an `Arc`): the notifier
//! pops it and marks it, the waiter reads the mark when it wakes. It lives
//! on the heap, not the waiter's stack, so a waiter unwound mid-wait leaves
//! nothing dangling.
//!
//! A wait allocates nothing in the common case: a waiter's node is kept
//! for its next wait (a field of the fiber, or a thread-local for plain
//! threads), and reused when nobody else holds it any more
//! ([`Node::recycle`]). Without it, each wait costs an allocation, a free
//! and two reference-count updates of the `Waiter` handle, a measurable
//! share of a channel round trip (`docs/decisions.md`, "NodeCache").
//!
//! This is per-fiber state, so it lives with the fiber; the lists that
//! queue nodes are `sync`'s.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;

use super::waiter::Waiter;
use crate::loom::sync::atomic::{AtomicU8, Ordering};
use crate::loom::thread_local;

const WAITING: u8 = 0;
const NOTIFIED: u8 = 1;
/// Notified, and ownership of something (the Mutex's lock) came with it.
const HANDED_OFF: u8 = 2;

/// One waiter's entry.
pub(crate) struct Node {
    waiter: Waiter,
    /// WAITING until a notifier pops it; then NOTIFIED or HANDED_OFF.
    state: AtomicU8,
    /// When the waiter started waiting, for the Mutex's hand-off rule; only
    /// the Mutex reads the clock for it (`None` elsewhere: a clock read per
    /// wait is a measurable share of a channel round trip,
    /// `docs/decisions.md`, "Node::since").
    pub(crate) since: Option<Instant>,
}

impl Node {
    /// A WAITING node for the calling fiber or thread: its kept one if
    /// nobody else holds that any more, else a new one.
    pub(crate) fn for_current(since: Option<Instant>) -> Arc<Node> {
        if let Some(mut node) = NodeCache::with_current(|cache| cache.0.take()).flatten() {
            if let Some(reused) = Arc::get_mut(&mut node) {
                debug_assert!(reused.waiter.is_current(), "a node kept by another waiter");
                // A fresh atomic rather than `get_mut`, which loom's lack.
                reused.state = AtomicU8::new(WAITING);
                reused.since = since;
                return node;
            }
        }
        Arc::new(Node {
            waiter: Waiter::current(),
            state: AtomicU8::new(WAITING),
            since,
        })
    }

    /// Keeps the caller's node for its next wait, once its wait is over
    /// (notified, removed, or timed out). A node a notifier still holds (it
    /// has popped it and not yet woken us) is simply dropped.
    #[inline]
    pub(crate) fn recycle(node: Arc<Node>) {
        if Arc::strong_count(&node) == 1 {
            // Dropped instead if the thread's cache is gone already.
            NodeCache::with_current(|cache| cache.0.set(Some(node)));
        }
    }

    /// Marks the node notified (or handed off), by the notifier that popped
    /// it; the notifier wakes it afterwards.
    #[inline]
    pub(crate) fn notify(&self, hand_off: bool) {
        // Release: what the notifier did before is visible to the waiter.
        self.state.store(
            if hand_off { HANDED_OFF } else { NOTIFIED },
            Ordering::Release,
        );
    }

    /// Wakes the node's waiter.
    #[inline]
    pub(crate) fn wake(&self) {
        self.waiter.wake();
    }

    /// Whether the node was notified (or handed off).
    pub(crate) fn is_notified(&self) -> bool {
        self.state.load(Ordering::Acquire) != WAITING
    }

    /// Whether the notification handed ownership over.
    pub(crate) fn is_handed_off(&self) -> bool {
        self.state.load(Ordering::Acquire) == HANDED_OFF
    }
}

/// One spare node, kept by its waiter between waits (see the module docs).
/// Owned by one fiber (a field of its `FiberInner`) or one thread (a
/// thread-local); only the owner's code touches it.
pub(crate) struct NodeCache(Cell<Option<Arc<Node>>>);

thread_local! {
    /// The node cache of a plain thread (fibers have their own).
    static THREAD_NODE: NodeCache = const { NodeCache::new() };
}

impl NodeCache {
    pub(crate) const fn new() -> NodeCache {
        NodeCache(Cell::new(None))
    }

    /// Drops the kept node (a fiber's end: its node names the fiber).
    pub(crate) fn clear(&self) {
        drop(self.0.take());
    }

    /// Runs `f` with the caller's cache: its fiber's, or its thread's;
    /// `None` on a thread whose thread-locals are being destroyed (a
    /// destructor that locks a `Mutex` then simply gets a new node).
    fn with_current<R>(f: impl FnOnce(&NodeCache) -> R) -> Option<R> {
        match super::CurrentFiber::get() {
            // The fiber is alive while it runs, which includes all of `f`
            // (which does not park).
            Some(fiber) => Some(f(&fiber.inner().wait_node)),
            None => THREAD_NODE.try_with(|cache| f(cache)).ok(),
        }
    }
}
