//! A waiter's [`Node`]: its entry in a wait list (`sync/waitlist.rs`,
//! the channels' queues), and the [`NodeCache`] that keeps it between
//! waits.
//!
//! A node is shared by the list and its waiter (an `Arc`): the notifier
//! pops it and marks it, the waiter reads the mark when it wakes. It lives
//! on the heap, not the waiter's stack, so a waiter unwound mid-wait leaves
//! nothing dangling.
//!
//! Two protocols use the mark. A wait list's notifier pops the node under
//! the list's lock and stores NOTIFIED (or HANDED_OFF); a waiter that
//! leaves early removes its node under the same lock, so the two never
//! race on the mark. A channel (`sync/mpsc/`) *resolves* a node: it stores
//! a final word of its own ([`Node::resolve`]), and, where several queues
//! hold one node (a select's), first *claims* it with a compare-and-swap
//! ([`Node::try_claim`]), which the select's own withdrawal
//! ([`Node::try_withdraw`]) races; the first to move it off WAITING wins.
//! A channel's queues hold no count on the node (its waiter keeps it), so
//! a resolution is BUSY until the resolver has woken the waiter
//! ([`Node::release`]): the waiter keeps its node until then
//! ([`Node::wait_released`]).
//! A node also has room for one small message ([`Node::payload`]), so that
//! a channel can hand a value straight to a waiting receiver, or take it
//! from a waiting sender, without an allocation.
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

use crate::loom::sync::atomic::{AtomicU32, Ordering};
use std::cell::{Cell, UnsafeCell};
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Instant;

use super::waiter::Waiter;
use crate::loom::thread_local;

const WAITING: u32 = 0;
const NOTIFIED: u32 = 1;
/// Notified, and ownership of something (the Mutex's lock) came with it.
const HANDED_OFF: u32 = 2;
/// Claimed by a party that will resolve it (a select's node, which several
/// queues hold); not final yet.
const CLAIMED: u32 = 3;
/// Withdrawn by its own waiter (a select that gave up); final.
const WITHDRAWN: u32 = 4;
/// Words from here up are resolutions: `RESOLVED + code`, final, with
/// `BUSY` set until the resolver is done with the node.
const RESOLVED: u32 = 8;
/// Set with a resolution while its resolver may still touch the node (to
/// wake its waiter): the waiter keeps the node until it clears.
const BUSY: u32 = 1 << 31;

/// Bytes of message a node carries inline ([`Node::payload`]): four
/// machine words, enough for a `String`, a `Vec` or a pair of pointers.
/// A guess: bigger messages go through a heap cell of the waiter's.
const PAYLOAD_BYTES: usize = 32;

/// Pauses a waiter spins for a busy resolver before it yields its thread
/// each round. A guess: a wake-up is well under a microsecond.
const BUSY_SPINS: u32 = 100;

/// Room for one message, of any type that fits. Its contents are untyped
/// bytes to the node; the channel that writes a `T` there reads a `T`.
#[repr(C, align(16))]
struct Payload(UnsafeCell<MaybeUninit<[u8; PAYLOAD_BYTES]>>);

/// One waiter's entry.
pub(crate) struct Node {
    waiter: Waiter,
    /// WAITING until a notifier pops it, or a channel resolves it; see the
    /// module docs for the two protocols and their words.
    state: AtomicU32,
    /// When the waiter started waiting, for the Mutex's hand-off rule; only
    /// the Mutex reads the clock for it (`None` elsewhere: a clock read per
    /// wait is a measurable share of a channel round trip,
    /// `docs/decisions.md`, "Node::since"). Written only while the node is
    /// unique (before it is queued), read through [`Node::since`].
    since: UnsafeCell<Option<Instant>>,
    /// A message in transit; see [`Node::payload`].
    payload: Payload,
}

// SAFETY: all fields but `since` and `payload` are Sync. `since` is
// written only while the node is unique and read only while shared (see
// `for_current` and `Node::since`). `payload` is only reached through the
// raw pointer `Node::payload` returns, and its users (the channels) hand
// its contents from one party to the other under the protocol argued at
// their `unsafe` blocks: one party at a time touches it, ordered by the
// channel's lock or by the Release store and Acquire load of `state`.
unsafe impl Sync for Node {}

impl Node {
    /// A WAITING node for the calling fiber or thread: its kept one if
    /// nobody else holds that any more, else a new one.
    pub(crate) fn for_current(since: Option<Instant>) -> Arc<Node> {
        if let Some(node) = NodeCache::with_current(|cache| cache.0.take()).flatten() {
            // Unique: no other holder, and none can appear (only its waiter
            // clones it, and no `Weak` is ever made). Checked with a load
            // rather than `Arc::get_mut`, whose guard against `Weak`s costs
            // a compare-and-swap per wait. The fence pairs with the Release
            // of the last other holder's drop, so its accesses come first.
            if Arc::strong_count(&node) == 1 {
                crate::loom::sync::atomic::fence(Ordering::Acquire);
                debug_assert!(node.waiter.is_current(), "a node kept by another waiter");
                node.state.store(WAITING, Ordering::Relaxed);
                // SAFETY: the node is unique (above), so nobody else reads
                // `since` now or until we publish the node in a queue, whose
                // lock orders this write before their reads.
                unsafe { *node.since.get() = since };
                return node;
            }
        }
        Arc::new(Node {
            waiter: Waiter::current(),
            state: AtomicU32::new(WAITING),
            since: UnsafeCell::new(since),
            payload: Payload(UnsafeCell::new(MaybeUninit::uninit())),
        })
    }

    /// When the waiter started waiting, if it said (the Mutex's waiters).
    #[inline]
    pub(crate) fn since(&self) -> Option<Instant> {
        // SAFETY: written only while the node is unique, before it is
        // queued (`for_current`); a reader reached it through a queue, so
        // that write happened before, and none comes while it is shared.
        unsafe { *self.since.get() }
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

    /// Claims a WAITING node for a resolution to come (the claimant then
    /// calls [`Node::resolve`]). False if another party moved it off
    /// WAITING first: it was claimed, resolved or withdrawn.
    #[inline]
    pub(crate) fn try_claim(&self) -> bool {
        // AcqRel: Acquire pairs with the waiter's queueing (what it put in
        // its message slot before publishing the node); Release orders
        // nothing the waiter needs (the resolution's store does that).
        self.state
            .compare_exchange(WAITING, CLAIMED, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// The waiter withdraws its WAITING node, so that nobody can claim it
    /// any more. False if a party claimed or resolved it first: then it
    /// will be (or is) resolved.
    pub(crate) fn try_withdraw(&self) -> bool {
        // Acquire on failure: the resolution's writes, if it is final.
        self.state
            .compare_exchange(WAITING, WITHDRAWN, Ordering::Relaxed, Ordering::Acquire)
            .is_ok()
    }

    /// Resolves the node with `code` (the channel's to interpret); final.
    /// By the party that popped it (and claimed it, where others might),
    /// which then wakes the waiter and calls [`Node::release`]; until then
    /// the node is BUSY.
    #[inline]
    pub(crate) fn resolve(&self, code: u32) {
        debug_assert!(code < BUSY - RESOLVED, "resolution code out of range");
        // Release: the resolver's writes (the message it put in the
        // waiter's slot, or its taking of the waiter's) are visible to the
        // waiter's Acquire load in `resolution`.
        self.state
            .store((RESOLVED + code) | BUSY, Ordering::Release);
    }

    /// The resolver is done with the node (it has woken the waiter): clears
    /// BUSY. Its last touch of the node.
    #[inline]
    pub(crate) fn release(&self) {
        let state = self.state.load(Ordering::Relaxed);
        debug_assert!(state & BUSY != 0, "release of a node not resolved");
        // Release: pairs with `wait_released`'s Acquire; everything the
        // resolver did to the node comes before the waiter frees it.
        self.state.store(state & !BUSY, Ordering::Release);
    }

    /// The code the node was resolved with, or `None` while it is not
    /// (waiting, claimed, or notified by a wait list).
    #[inline]
    pub(crate) fn resolution(&self) -> Option<u32> {
        // Acquire: pairs with `resolve`'s Release.
        let state = self.state.load(Ordering::Acquire);
        (state & !BUSY).checked_sub(RESOLVED)
    }

    /// Waits (spinning: it is the few instructions of a wake-up) until the
    /// resolver of this resolved node is done with it; then the waiter may
    /// reuse or drop it.
    #[inline]
    pub(crate) fn wait_released(&self) {
        // Acquire: pairs with `release`'s Release.
        if self.state.load(Ordering::Acquire) & BUSY != 0 {
            self.wait_released_slowly();
        }
    }

    #[cold]
    fn wait_released_slowly(&self) {
        let mut spins = 0u32;
        while self.state.load(Ordering::Acquire) & BUSY != 0 {
            if spins < BUSY_SPINS {
                spins += 1;
                std::hint::spin_loop();
            } else {
                // The resolver's thread was preempted mid-wake: let it run.
                std::thread::yield_now();
            }
        }
    }

    /// Where a message of type `T` can wait in this node: a pointer to
    /// [`PAYLOAD_BYTES`] of suitably aligned, untyped memory that lives as
    /// long as the node, or `None` if a `T` does not fit. Getting the
    /// pointer is safe; reading and writing through it is the caller's
    /// protocol (see the `unsafe impl Sync`).
    #[inline]
    pub(crate) fn payload<T>(&self) -> Option<NonNull<T>> {
        let fits = size_of::<T>() <= PAYLOAD_BYTES && align_of::<T>() <= align_of::<Payload>();
        fits.then(|| NonNull::new(self.payload.0.get().cast::<T>()).expect("a field is not null"))
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
