//! [`Select`]: wait for the first of several channel operations (receives
//! and sends on [`mpsc`](super::mpsc) channels) to complete, Go's `select`
//! for fibers and threads.
//!
//! # Design
//! Each arm pairs an operation with a handler that turns its outcome into
//! the select's result `R`; arms are boxed trait objects, so one select
//! mixes channels of different message types. [`Select::wait`] runs Go's
//! `selectgo`:
//!
//! 1. **Lock** every arm's channel, in address order (so two selects
//!    never deadlock), and **poll** the arms in a random order (a fresh
//!    permutation each time, so that every ready arm is chosen equally
//!    often). The first operation that needs no waiting completes, under
//!    the locks: its handler runs and the select returns. All channels are
//!    locked at once, so the poll sees one instant: [`Select::try_select`]
//!    fails only if no arm was ready at that instant.
//! 2. **Register**, still under the locks: queue one entry per arm, all
//!    for one node (`mpsc/waiting.rs`), with the arm's message slot in its
//!    boxed arm. Then unlock.
//! 3. **Park** until a party on some arm's channel resolves the node: it
//!    claims the node first (so exactly one arm completes) and then moves
//!    the message, as it would for a plain waiter. Or, at the deadline,
//!    withdraw the node, unless a claim came first.
//! 4. **Deregister** every arm's entry (taking each lock in turn, which
//!    also waits out a claim in progress), and finish the arm that was
//!    resolved.
//!
//! A resolution is a completed operation, never a hint to try again, so a
//! woken select never finds its message gone and nothing needs passing
//! on. A select unwound while registered (runtime shutdown) withdraws and
//! deregisters in a drop guard; a message an arm was handed first is
//! dropped with it.
//!
//! A select holds its channels' locks while it polls and registers, which
//! is a few pushes and pops per arm; the locks never wait on anything but
//! each other, and are always taken in one order.
//!
//! Rejected: checking the arms one at a time, each under its own lock,
//! then queueing on each: a non-blocking select could then report nothing
//! ready while some arm was ready at every instant, and an arm that turns
//! ready between its check and its queueing needs a second round.
//!
//! # Limits
//! - Unbounded `Sender`s have no send arm: their sends never wait.
//! - The values of send arms that were not chosen are dropped.

use std::cell::{Cell, UnsafeCell};
use std::error::Error;
use std::fmt;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::mpsc::{
    Receiver, RecvError, Resolution, Resolved, SendError, Side, SyncSender, Waiting,
};
use super::spin_lock::RawSpinLock;
use super::waitlist::{Node, WaitList};

/// A set of channel operations to wait on; the first to complete wins.
///
/// Add arms with [`recv`](Select::recv) and [`send`](Select::send), each
/// with a handler that maps its outcome to the select's result, then run
/// it with [`wait`](Select::wait), [`wait_timeout`](Select::wait_timeout)
/// or [`try_select`](Select::try_select) (the non-blocking form). When
/// several arms are ready, one is chosen at random. A receive arm on a
/// channel whose senders are all gone is ready, with `Err(RecvError)`; a
/// send arm whose receivers are all gone is ready, with the value back in
/// `Err(SendError)`.
///
/// ```
/// use std::time::Duration;
/// use spindle::sync::{mpsc, Select};
///
/// let rt = spindle::Runtime::new().unwrap();
/// rt.block_on(|| {
///     let (numbers_tx, numbers) = mpsc::channel::<u32>();
///     let (words_tx, words) = mpsc::channel::<&str>();
///     spindle::spawn(move || words_tx.send("hello").unwrap());
///
///     // Parks until one arm completes: here, the word arrives.
///     let got = Select::new()
///         .recv(&numbers, |n| format!("number {}", n.unwrap()))
///         .recv(&words, |w| format!("word {}", w.unwrap()))
///         .wait();
///     assert_eq!(got, "word hello");
///
///     // Nothing is ready: the timeout passes (or, without waiting, the
///     // default form says so at once).
///     let got = Select::new()
///         .recv(&numbers, |n| n.unwrap())
///         .wait_timeout(Duration::from_millis(5));
///     assert!(got.is_err());
///     assert!(Select::new().recv(&numbers, |n| n.unwrap()).try_select().is_err());
///
///     // A send arm: room in a bounded channel makes it ready.
///     let (tx, rx) = mpsc::sync_channel(1);
///     let sent = Select::new()
///         .recv(&numbers, |_| "received")
///         .send(&tx, 7, |result| {
///             result.unwrap();
///             "sent"
///         })
///         .wait();
///     assert_eq!(sent, "sent");
///     assert_eq!(rx.recv(), Ok(7));
///     drop(numbers_tx);
/// });
/// ```
#[must_use = "a Select does nothing until `wait`, `wait_timeout` or `try_select` runs it"]
pub struct Select<'a, R> {
    arms: Vec<Box<dyn Arm<'a, R> + 'a>>,
}

/// [`Select::wait_timeout`]: no arm completed in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelectTimeoutError;

/// [`Select::try_select`]: no arm could complete without waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrySelectError;

/// One operation of a select, type-erased over its message type.
///
/// Between `register` and the end of `settle`'s caller's deregistration,
/// a party on another thread may move a message through the arm's slot:
/// the select touches its arms only through `&self` then, and keeps the
/// boxes (whose contents do not move) alive.
trait Arm<'a, R> {
    /// The lock of the arm's channel.
    fn lock(&self) -> &'a RawSpinLock;
    /// Completes the operation if it needs no waiting (or fails for good,
    /// disconnected); true if so, and the outcome is kept for `finish`.
    /// Parties to wake once the locks are released go to `wakes`.
    ///
    /// # Safety
    /// The caller holds `self.lock()`.
    unsafe fn try_complete(&mut self, wakes: &mut Vec<Resolution>) -> bool;
    /// Queues the arm's entry, for `node` as arm `index`.
    ///
    /// # Safety
    /// The caller holds `self.lock()`, found the arm would wait, and keeps
    /// this arm in place, touching it only through `&self`, until it has
    /// deregistered the entry.
    unsafe fn register(&self, node: &Node, index: u32);
    /// Removes the arm's entry if it is still queued (takes the lock).
    fn deregister(&self, node: &Node, index: u32);
    /// Takes the outcome of the arm's resolution (`closed`: the other side
    /// had gone) from its slot, for `finish`.
    ///
    /// # Safety
    /// The arm's entry was resolved so, and has been deregistered since.
    unsafe fn settle(&mut self, closed: bool);
    /// Runs the handler on the outcome kept.
    fn finish(self: Box<Self>) -> R;
}

struct RecvArm<'a, T, F> {
    receiver: &'a Receiver<T>,
    /// Where a sender puts the message while the arm is registered.
    slot: UnsafeCell<MaybeUninit<T>>,
    outcome: Option<Result<T, RecvError>>,
    handler: F,
}

struct SendArm<'a, T, F> {
    sender: &'a SyncSender<T>,
    message: Message<T>,
    outcome: Option<Result<(), SendError<T>>>,
    handler: F,
}

/// A send arm's message, until it is sent (or handed back by a
/// disconnection); while the arm is registered, the slot a receiver takes
/// it from. Dropped holding it (an arm not chosen), it drops the message.
struct Message<T> {
    slot: UnsafeCell<MaybeUninit<T>>,
    /// Whether `slot` holds the message. Changed only through `&mut self`.
    holds: bool,
}

impl<T> Message<T> {
    fn new(value: T) -> Message<T> {
        Message {
            slot: UnsafeCell::new(MaybeUninit::new(value)),
            holds: true,
        }
    }

    /// Takes the message out.
    fn take(&mut self) -> T {
        assert!(self.holds, "a send arm without its message");
        self.holds = false;
        // SAFETY: `holds` said the slot holds the message, and `&mut self`
        // means the arm is not registered (see `Arm`), so nobody else
        // touches it.
        unsafe { self.slot.get_mut().assume_init_read() }
    }

    /// Puts the message back (a send that would have waited).
    fn put(&mut self, value: T) {
        debug_assert!(!self.holds, "a send arm with two messages");
        self.slot.get_mut().write(value);
        self.holds = true;
    }
}

impl<T> Drop for Message<T> {
    fn drop(&mut self) {
        if self.holds {
            drop(self.take());
        }
    }
}

impl<'a, T, R, F: FnOnce(Result<T, RecvError>) -> R> Arm<'a, R> for RecvArm<'a, T, F> {
    fn lock(&self) -> &'a RawSpinLock {
        let receiver: &'a Receiver<T> = self.receiver;
        receiver.channel().raw_lock()
    }

    unsafe fn try_complete(&mut self, wakes: &mut Vec<Resolution>) -> bool {
        debug_assert!(self.outcome.is_none(), "an arm completed twice");
        // SAFETY: the caller holds the channel's lock.
        self.outcome = unsafe { self.receiver.channel().recv_locked(wakes) };
        self.outcome.is_some()
    }

    unsafe fn register(&self, node: &Node, index: u32) {
        let slot = NonNull::new(self.slot.get().cast::<T>()).expect("a field is not null");
        // SAFETY: the slot is in this arm's box, which the caller keeps in
        // place and does not touch mutably until it has deregistered the
        // entry (or seen it resolved: `settle`'s contract); it is a
        // receiver's, so it holds nothing yet.
        let entry = unsafe { Waiting::new(node, slot, index, true) };
        // SAFETY: the caller holds the channel's lock.
        unsafe {
            self.receiver
                .channel()
                .register_locked(Side::Receiving, entry)
        };
    }

    fn deregister(&self, node: &Node, index: u32) {
        self.receiver
            .channel()
            .deregister(Side::Receiving, node, index);
    }

    unsafe fn settle(&mut self, closed: bool) {
        self.outcome = Some(if closed {
            Err(RecvError)
        } else {
            // SAFETY: resolved as done: a sender wrote a message into the
            // slot before resolving, and, deregistered, nobody touches the
            // slot any more (the caller's promise).
            Ok(unsafe { self.slot.get_mut().assume_init_read() })
        });
    }

    fn finish(self: Box<Self>) -> R {
        let outcome = self.outcome.expect("finish after try_complete");
        (self.handler)(outcome)
    }
}

impl<'a, T, R, F: FnOnce(Result<(), SendError<T>>) -> R> Arm<'a, R> for SendArm<'a, T, F> {
    fn lock(&self) -> &'a RawSpinLock {
        let sender: &'a SyncSender<T> = self.sender;
        sender.channel().raw_lock()
    }

    unsafe fn try_complete(&mut self, wakes: &mut Vec<Resolution>) -> bool {
        debug_assert!(self.outcome.is_none(), "an arm completed twice");
        let value = self.message.take();
        // SAFETY: the caller holds the channel's lock.
        match unsafe { self.sender.channel().send_locked(value, wakes) } {
            Ok(outcome) => {
                self.outcome = Some(outcome);
                true
            }
            Err(value) => {
                self.message.put(value);
                false
            }
        }
    }

    unsafe fn register(&self, node: &Node, index: u32) {
        debug_assert!(
            self.message.holds,
            "a send arm registered without its message"
        );
        let slot = NonNull::new(self.message.slot.get().cast::<T>()).expect("a field is not null");
        // SAFETY: as for a receive arm; the slot holds the message.
        let entry = unsafe { Waiting::new(node, slot, index, true) };
        // SAFETY: the caller holds the channel's lock.
        unsafe { self.sender.channel().register_locked(Side::Sending, entry) };
    }

    fn deregister(&self, node: &Node, index: u32) {
        self.sender.channel().deregister(Side::Sending, node, index);
    }

    unsafe fn settle(&mut self, closed: bool) {
        self.outcome = Some(if closed {
            // The receivers went; the message is still ours.
            Err(SendError(self.message.take()))
        } else {
            // A receiver took it out of the slot.
            self.message.holds = false;
            Ok(())
        });
    }

    fn finish(self: Box<Self>) -> R {
        let SendArm {
            outcome, handler, ..
        } = *self;
        handler(outcome.expect("finish after try_complete"))
    }
}

impl<'a, R> Select<'a, R> {
    /// A select with no arms.
    pub fn new() -> Select<'a, R> {
        Select { arms: Vec::new() }
    }

    /// Adds an arm that receives from `receiver`; if chosen, `handler` gets
    /// the message, or `Err(RecvError)` if every sender is gone.
    pub fn recv<T: 'a>(
        mut self,
        receiver: &'a Receiver<T>,
        handler: impl FnOnce(Result<T, RecvError>) -> R + 'a,
    ) -> Select<'a, R> {
        self.arms.push(Box::new(RecvArm {
            receiver,
            slot: UnsafeCell::new(MaybeUninit::uninit()),
            outcome: None,
            handler,
        }));
        self
    }

    /// Adds an arm that sends `value` on `sender`; if chosen, `handler` gets
    /// `Ok(())`, or the value back in `Err(SendError)` if every receiver is
    /// gone. If another arm is chosen, `value` is dropped.
    pub fn send<T: 'a>(
        mut self,
        sender: &'a SyncSender<T>,
        value: T,
        handler: impl FnOnce(Result<(), SendError<T>>) -> R + 'a,
    ) -> Select<'a, R> {
        self.arms.push(Box::new(SendArm {
            sender,
            message: Message::new(value),
            outcome: None,
            handler,
        }));
        self
    }

    /// The number of arms.
    pub fn len(&self) -> usize {
        self.arms.len()
    }

    /// Whether there are no arms.
    pub fn is_empty(&self) -> bool {
        self.arms.is_empty()
    }

    /// Parks the calling fiber (or blocks the thread) until an arm
    /// completes, and returns its handler's result.
    ///
    /// # Panics
    /// If there are no arms (it would wait forever).
    pub fn wait(self) -> R {
        assert!(
            !self.arms.is_empty(),
            "Select::wait with no arms would wait forever"
        );
        self.run(None, true)
            .expect("a select without deadline completes")
    }

    /// Like [`Select::wait`], giving up after `timeout`.
    pub fn wait_timeout(self, timeout: Duration) -> Result<R, SelectTimeoutError> {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.wait_deadline(deadline),
            None if self.arms.is_empty() => {
                crate::time::sleep(timeout); // "forever"
                Err(SelectTimeoutError)
            }
            None => Ok(self.wait()),
        }
    }

    /// Like [`Select::wait`], giving up at `deadline`. With no arms, waits
    /// for the deadline.
    pub fn wait_deadline(self, deadline: Instant) -> Result<R, SelectTimeoutError> {
        if self.arms.is_empty() {
            crate::time::sleep_until(deadline);
            return Err(SelectTimeoutError);
        }
        self.run(Some(deadline), true).ok_or(SelectTimeoutError)
    }

    /// Completes an arm that is ready now, if any; never waits (a select
    /// with a default case).
    pub fn try_select(self) -> Result<R, TrySelectError> {
        self.run(None, false).ok_or(TrySelectError)
    }

    /// Steps 1 to 4 of the module docs. `None`: the deadline passed, or
    /// nothing was ready and `block` is false.
    fn run(self, deadline: Option<Instant>, block: bool) -> Option<R> {
        let mut arms = self.arms;
        let count = arms.len();
        if count == 0 {
            return None;
        }
        let index_limit = u32::try_from(count).expect("a select of over 4 billion arms");
        let order = random_permutation(count);
        let locks = Locks::of(&arms);
        let block = block && deadline.is_none_or(|deadline| Instant::now() < deadline);
        let node = block.then(|| Node::for_current(None));
        let mut wakes = Vec::new();
        // 1. Poll, with every channel locked.
        locks.lock_all();
        let chosen = order.into_iter().find(|&index| {
            // SAFETY: we hold every arm's lock.
            unsafe { arms[index].try_complete(&mut wakes) }
        });
        let node = match (chosen, node) {
            (None, Some(node)) => node,
            (chosen, node) => {
                // SAFETY: we took these locks above; no reference into the
                // channels' states outlives the arms' calls.
                unsafe { locks.unlock_all() };
                wakes.into_iter().for_each(Resolution::wake);
                if let Some(node) = node {
                    WaitList::recycle(node);
                }
                // The other arms' unsent values are dropped with `arms`.
                return chosen.map(|index| arms.swap_remove(index).finish());
            }
        };
        debug_assert!(wakes.is_empty(), "nothing completed, yet parties to wake");
        // 2. Register, under the same locks.
        for (index, arm) in (0..index_limit).zip(&arms) {
            // SAFETY: we hold the arm's lock, and it would wait (it was
            // polled under the same locks); `Registered` keeps the arms in
            // place and touches them only through `&` until every entry is
            // deregistered.
            unsafe { arm.register(&node, index) };
        }
        // SAFETY: as above.
        unsafe { locks.unlock_all() };
        let registered = Registered {
            arms,
            node: Some(node),
        };
        // 3. Park.
        let withdrawn = loop {
            if registered.node().resolution().is_some() {
                break false;
            }
            if !crate::time::park_until(deadline) {
                // At the deadline, unless a party claimed us first; then
                // its resolution is final once step 4 has taken its lock.
                break registered.node().try_withdraw();
            }
        };
        // 4. Deregister, and finish the arm that was resolved.
        let (mut arms, resolved) = registered.deregister(withdrawn);
        resolved.map(|index| arms.swap_remove(index).finish())
    }
}

/// The locks of a select's channels, each once, in address order.
struct Locks<'a>(Vec<&'a RawSpinLock>);

impl<'a> Locks<'a> {
    fn of<R>(arms: &[Box<dyn Arm<'a, R> + 'a>]) -> Locks<'a> {
        let mut locks: Vec<&'a RawSpinLock> = arms.iter().map(|arm| arm.lock()).collect();
        locks.sort_unstable_by_key(|lock| std::ptr::from_ref(*lock) as usize);
        locks.dedup_by(|a, b| std::ptr::eq(*a, *b));
        Locks(locks)
    }

    fn lock_all(&self) {
        for lock in &self.0 {
            lock.lock();
        }
    }

    /// # Safety
    /// The caller took every lock with `lock_all`, and no reference into
    /// the states they guard outlives this call.
    unsafe fn unlock_all(&self) {
        for lock in self.0.iter().rev() {
            // SAFETY: the caller's promise.
            unsafe { lock.unlock() };
        }
    }
}

/// A select's arms while their entries are queued, and its node. Dropped
/// without `deregister` (the select was unwound while parked), it
/// withdraws, deregisters, and settles an arm that was resolved meanwhile,
/// so that a message handed to it is dropped with it.
struct Registered<'a, R> {
    /// Empty once `deregister` has taken them.
    arms: Vec<Box<dyn Arm<'a, R> + 'a>>,
    /// Taken (to be kept for the next wait) when this is dropped.
    node: Option<Arc<Node>>,
}

impl<'a, R> Registered<'a, R> {
    /// Step 4: removes every arm's entry. Unless `withdrawn`, the node has
    /// a resolution by then (a claimant resolves under the lock of the
    /// channel it claimed on, which this takes): that arm is settled and
    /// its index returned with the arms.
    fn deregister(mut self, withdrawn: bool) -> (Vec<Box<dyn Arm<'a, R> + 'a>>, Option<usize>) {
        let mut arms = std::mem::take(&mut self.arms);
        let resolved = Registered::deregister_arms(&mut arms, self.node(), withdrawn);
        (arms, resolved)
    }

    fn node(&self) -> &Arc<Node> {
        self.node.as_ref().expect("the node is taken only on drop")
    }

    fn deregister_arms(
        arms: &mut [Box<dyn Arm<'a, R> + 'a>],
        node: &Arc<Node>,
        withdrawn: bool,
    ) -> Option<usize> {
        for (index, arm) in (0..).zip(arms.iter()) {
            arm.deregister(node, index);
        }
        if withdrawn {
            return None;
        }
        let code = node
            .resolution()
            .expect("a claimed select is resolved under a lock it has since taken");
        node.wait_released();
        let resolved = Resolved::from_code(code);
        let index = resolved.arm as usize;
        // SAFETY: the node was resolved for this arm (the code says which),
        // and every entry is deregistered.
        unsafe { arms[index].settle(resolved.closed) };
        Some(index)
    }
}

impl<R> Drop for Registered<'_, R> {
    fn drop(&mut self) {
        let node = self.node.take().expect("the node is taken only on drop");
        if !self.arms.is_empty() {
            let withdrawn = node.try_withdraw();
            Registered::deregister_arms(&mut self.arms, &node, withdrawn);
        }
        // Kept for the next wait, unless a resolver still holds it.
        WaitList::recycle(node);
    }
}

impl<R> Default for Select<'_, R> {
    fn default() -> Self {
        Select::new()
    }
}

impl<R> fmt::Debug for Select<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Select")
            .field("arms", &self.arms.len())
            .finish()
    }
}

impl fmt::Display for SelectTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out waiting on select")
    }
}

impl fmt::Display for TrySelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no operation of the select was ready")
    }
}

impl Error for SelectTimeoutError {}
impl Error for TrySelectError {}

/// The numbers below `count` in a random order (Fisher-Yates), the order in
/// which a select polls its arms.
fn random_permutation(count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..count).collect();
    for last in (1..count).rev() {
        order.swap(last, random_below(last + 1));
    }
    order
}

/// A pseudo-random number below `bound` (> 0), for the select's poll
/// order: xorshift64* on a per-thread seed. Not inlined: a fiber may change
/// threads between calls, and an inlined thread-local access could reuse
/// another call's thread-local address (see `fiber::current_ptr`).
#[inline(never)]
fn random_below(bound: usize) -> usize {
    thread_local! {
        static SEED: Cell<u64> = const { Cell::new(0) };
    }
    SEED.with(|seed| {
        let mut x = seed.get();
        if x == 0 {
            // First use on this thread: seed from the cell's address, which
            // differs between threads, mixed (splitmix64's finaliser).
            x = std::ptr::from_ref(seed) as usize as u64;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x = (x ^ (x >> 31)) | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        seed.set(x);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as usize % bound
    })
}
