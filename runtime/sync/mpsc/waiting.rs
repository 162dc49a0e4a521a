//! How a party waits on a channel: its entry ([`Waiting`]) in one of the
//! channel's two wait queues ([`WaitQueue`]), the place its message waits
//! in, how the party on the other side resolves the entry, and how a plain
//! (non-select) waiter waits for that (`Channel::wait_resolved`).
//!
//! # The hand-off
//! An entry carries a pointer to its waiter's message *slot*: where a
//! waiting receiver's message is to be written, or where a waiting
//! sender's message already is. The party that pops the entry (under the
//! channel's lock) moves the message through the slot, resolves the node
//! ([`Node::resolve`]) and wakes the waiter after unlocking: the waiter
//! finds its operation done and never takes the lock again. This is Go's
//! `sendDirect`/`recvDirect`, with the slot on the heap instead of the
//! waiter's stack: in the node's payload ([`Node::payload`]) for a message
//! that fits there, else in a heap cell the waiter allocates; for a select,
//! in its boxed arm.
//!
//! # Why the slot and the node stay valid
//! An entry holds plain pointers to its waiter's node and slot, no
//! reference count: the waiter owns both. It frees (or reuses) them only
//! after its entry has left the queue *and* no resolver can still be using
//! them: once it has seen the node released (`Node::wait_released`,
//! Acquire, after the resolver's Release in `Node::release`, which follows
//! its last touch of the slot and the node), or once it has removed the
//! entry itself under the channel's lock (nobody had popped it, and nobody
//! can now). A waiter unwound mid-wait does one or the other in a drop
//! guard. A waiter that is never resumed (its stack abandoned) never frees
//! them, so the pointers stay valid. Neither is ever on a stack. Without
//! the count, a hand-off costs two read-modify-writes fewer (the clone into
//! the queue and its drop after the wake).
//!
//! # Claims
//! A plain waiter's entry is in one queue, so the party that pops it is
//! its only resolver. A select queues one node on every arm's channel; a
//! party that pops one of those entries must first claim the node
//! (`Node::try_claim`), and skips the entry if that fails (another arm
//! won, or the select withdrew). That is Go's `selectDone`.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

use crate::sync::waitlist::Node;

/// The arm number of a plain waiter's entry.
pub(crate) const PLAIN: u32 = 0;

/// How a waiting entry was resolved, as its node's resolution code says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The select arm whose entry it was ([`PLAIN`] for a plain waiter).
    pub(crate) arm: u32,
    /// The operation completed (the message went through the slot), or, if
    /// true, the other side of the channel has gone (a receiver's slot is
    /// empty; a sender's still holds its message).
    pub(crate) closed: bool,
}

impl Resolved {
    fn code(self) -> u32 {
        (self.arm << 1) | u32::from(self.closed)
    }

    /// Decodes a node's resolution code.
    pub(crate) fn from_code(code: u32) -> Resolved {
        Resolved {
            arm: code >> 1,
            closed: code & 1 == 1,
        }
    }
}

/// One waiting party's entry in a channel's wait queue.
///
/// # Invariants
/// `node` points to the waiter's live node, and `slot` is valid for reads
/// and writes of a `T` (aligned, and unused by anyone but the waiter and
/// the entry's resolver), from the entry's push until the waiter has seen
/// the node released or removed the entry under the channel's lock; for a
/// sender's entry the slot holds the sender's message while queued. See
/// the module docs.
pub(crate) struct Waiting<T> {
    node: NonNull<Node>,
    slot: NonNull<T>,
    arm: u32,
    /// Whether other queues hold the same node (a select's): then a popper
    /// must claim it first.
    shared: bool,
}

// SAFETY: an entry is a handle to a node (which is Sync) and to a slot of
// a `T` that its resolver moves a `T` through, possibly on another thread:
// hence T: Send. Nothing in it is tied to the thread that made it.
unsafe impl<T: Send> Send for Waiting<T> {}

impl<T> Waiting<T> {
    /// An entry for `node`'s waiter, its message slot at `slot`, for select
    /// arm `arm` ([`PLAIN`] for a plain waiter; then `shared` is false).
    ///
    /// # Safety
    /// `node` and `slot` satisfy the invariant on [`Waiting`] for as long
    /// as the entry may be in a queue: the caller keeps the node alive, and
    /// waits for its release (or removes the entry under the channel's
    /// lock) before it frees or reuses the node or the slot, or reads the
    /// slot; and, for a sender's entry, has written its message there.
    pub(crate) unsafe fn new(node: &Node, slot: NonNull<T>, arm: u32, shared: bool) -> Self {
        debug_assert!(
            shared || arm == PLAIN,
            "a plain waiter's entry is for no arm"
        );
        Waiting {
            node: NonNull::from(node),
            slot,
            arm,
            shared,
        }
    }

    fn node(&self) -> &Node {
        // SAFETY: the node lives while its entry is queued, and while a
        // party that popped it has not released it (invariant).
        unsafe { self.node.as_ref() }
    }

    /// Whether this is `node`'s entry for `arm`.
    fn is(&self, node: &Node, arm: u32) -> bool {
        self.arm == arm && std::ptr::eq(self.node.as_ptr(), node)
    }
}

/// An entry popped and claimed by the caller, who holds the channel's
/// lock: the caller resolves it exactly once (the methods consume it).
pub(crate) struct Claimed<T>(Waiting<T>);

impl<T> Claimed<T> {
    fn resolve(self, closed: bool) -> Resolution {
        let Waiting { node, arm, .. } = self.0;
        let resolution = Resolution(node);
        resolution.node().resolve(Resolved { arm, closed }.code());
        resolution
    }

    /// Hands `value` to the waiting receiver whose entry this is.
    pub(crate) fn deliver(self, value: T) -> Resolution {
        // SAFETY: the slot is valid for a write of a T and only we touch it
        // until the resolution below (invariant on `Waiting`; we popped and
        // claimed the entry under the lock, so we are its one resolver),
        // and a receiver's slot holds no message yet, so nothing is
        // overwritten.
        unsafe { self.0.slot.as_ptr().write(value) };
        self.resolve(false)
    }

    /// Takes the message of the waiting sender whose entry this is.
    pub(crate) fn take(self) -> (T, Resolution) {
        // SAFETY: as in `deliver`; a sender's slot holds its message while
        // queued, and after this read it is ours (the sender, seeing the
        // resolution, knows its slot is empty).
        let value = unsafe { self.0.slot.as_ptr().read() };
        (value, self.resolve(false))
    }

    /// Tells the waiter that the other side of the channel has gone; a
    /// sender's message stays in its slot, for it to take back.
    pub(crate) fn close(self) -> Resolution {
        self.resolve(true)
    }
}

/// A resolved node whose waiter is still to be woken, once the channel's
/// lock is released: [`Resolution::wake`] wakes it and releases the node
/// (the resolver's last touch of it). Dropped, it does the same.
pub(crate) struct Resolution(NonNull<Node>);

impl Resolution {
    fn node(&self) -> &Node {
        // SAFETY: a resolved node stays alive until it is released, which
        // only this resolution does (invariant on `Waiting`).
        unsafe { self.0.as_ref() }
    }

    /// Wakes the waiter and releases the node.
    #[inline]
    pub(crate) fn wake(self) {
        drop(self);
    }
}

impl Drop for Resolution {
    #[inline]
    fn drop(&mut self) {
        let node = self.node();
        node.wake();
        // The last touch: after it the waiter may free the node.
        node.release();
    }
}

/// A FIFO of waiting entries: the receivers, or the senders, of a channel.
/// Under the channel's lock.
pub(crate) struct WaitQueue<T>(VecDeque<Waiting<T>>);

impl<T> WaitQueue<T> {
    pub(crate) fn new() -> WaitQueue<T> {
        WaitQueue(VecDeque::new())
    }

    pub(crate) fn push(&mut self, entry: Waiting<T>) {
        self.0.push_back(entry);
    }

    /// Pops the first entry the caller can resolve: a plain one, or a
    /// select's it claimed; entries of selects resolved elsewhere (or
    /// withdrawn) are dropped on the way.
    #[inline]
    pub(crate) fn pop_claimed(&mut self) -> Option<Claimed<T>> {
        while let Some(entry) = self.0.pop_front() {
            if !entry.shared || entry.node().try_claim() {
                return Some(Claimed(entry));
            }
        }
        None
    }

    /// Resolves every entry as closed (the other side has gone); the
    /// caller wakes them after unlocking.
    pub(crate) fn close_all(&mut self) -> Vec<Resolution> {
        std::iter::from_fn(|| self.pop_claimed())
            .map(Claimed::close)
            .collect()
    }

    /// Removes `node`'s entry for `arm`, if it is still queued. False if a
    /// party popped it (a plain entry: and resolved it).
    pub(crate) fn remove(&mut self, node: &Node, arm: u32) -> bool {
        let found = self.0.iter().position(|entry| entry.is(node, arm));
        match found {
            Some(index) => {
                self.0.remove(index);
                true
            }
            None => false,
        }
    }
}

/// Where a plain waiter's message waits: in its node's payload if a `T`
/// fits there, else in a heap cell of its own, freed on drop. Never holds a
/// `T` when dropped (its owner reads the message out first); it only frees
/// the memory.
pub(crate) struct PlainSlot<T> {
    slot: NonNull<T>,
    /// Whether `slot` is a cell of ours on the heap (from `Box::into_raw`).
    heap: bool,
    _owns: PhantomData<T>,
}

impl<T> PlainSlot<T> {
    /// A slot for a waiter whose node is `node`; valid as long as `node`
    /// lives.
    pub(crate) fn new(node: &Node) -> PlainSlot<T> {
        match node.payload::<T>() {
            Some(slot) => PlainSlot {
                slot,
                heap: false,
                _owns: PhantomData,
            },
            None => PlainSlot {
                slot: NonNull::from(Box::leak(Box::new(MaybeUninit::<T>::uninit()))).cast(),
                heap: true,
                _owns: PhantomData,
            },
        }
    }

    pub(crate) fn as_ptr(&self) -> NonNull<T> {
        self.slot
    }

    /// Puts the waiter's message in the slot (a sender, before queueing).
    ///
    /// # Safety
    /// The slot is in no queue (nobody else can touch it).
    pub(crate) unsafe fn put(&self, value: T) {
        // SAFETY: the slot is valid for a T (from the node's payload, which
        // `Node::payload` sized and aligned for one, or our own cell), and
        // the caller promises that only we touch it.
        unsafe { self.slot.as_ptr().write(value) };
    }

    /// Reads the message out of the slot.
    ///
    /// # Safety
    /// The slot holds a message (the waiter's own, not taken; or one a
    /// resolver delivered), and no resolver can touch the slot any more:
    /// the caller has seen the entry's resolution or removed the entry
    /// under the channel's lock.
    pub(crate) unsafe fn take(&self) -> T {
        // SAFETY: the caller's promise.
        unsafe { self.slot.as_ptr().read() }
    }
}

impl<T> Drop for PlainSlot<T> {
    fn drop(&mut self) {
        if self.heap {
            // SAFETY: the cell came from `Box::leak` in `new`, and its owner
            // drops the slot only after its wait is over, when no resolver
            // can touch it; the cell holds no T (a `MaybeUninit` drops
            // nothing).
            drop(unsafe { Box::from_raw(self.slot.cast::<MaybeUninit<T>>().as_ptr()) });
        }
    }
}
