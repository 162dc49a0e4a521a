//! [`WaitList`]: a FIFO of parked fibers and blocked threads, the queue
//! under the Mutex, the Condvar and the I/O readiness waits. (The channels
//! keep their waiters in queues of their own, under their state lock:
//! `mpsc/waiting.rs`.)
//!
//! # Design
//! A waiter takes a [`Node`] (an `Arc`: the list and the waiter each
//! hold it), pushes it at the back under a short std lock that is never held
//! across a park, and parks until its node is notified. A notifier pops from
//! the front, marks the node, and wakes its waiter after releasing the lock.
//!
//! A waiter that stops waiting without being notified (timeout, or unwound
//! at shutdown) removes its node; if it finds it was notified in the
//! meantime, it passes the notification on to the next waiter, so a
//! `notify_one` is never swallowed by a waiter that left. The node is on the
//! heap, not the waiter's stack, so a waiter unwound mid-wait leaves nothing
//! dangling (`Latch`'s design comment records the stack-node design as
//! rejected).
//!
//! A wait allocates nothing in the common case: a waiter's node is kept
//! for its next wait and reused when nobody else holds it any more
//! ([`WaitList::recycle`]; the node and its cache are per-fiber state, in
//! `fiber/wait_node.rs`).
//!
//! Removal is O(n) in the list's length; it only happens on timeouts and
//! shutdown. A notification can carry a payload bit (`handed_off`): the
//! Mutex uses it to hand the lock itself to a waiter that waited too long.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

pub(crate) use crate::fiber::wait_node::Node;
use crate::loom::sync::{Mutex, MutexExt, MutexGuard};

/// A FIFO of waiters; see the module docs.
#[derive(Default)]
pub(crate) struct WaitList {
    queue: Mutex<VecDeque<Arc<Node>>>,
}

/// A popped node, to be woken after the list's lock is released.
pub(crate) struct Wake(Arc<Node>);

impl Wake {
    #[inline]
    pub(crate) fn wake(self) {
        self.0.wake();
    }
}

impl WaitList {
    /// Keeps the caller's node for its next wait, once its wait is over
    /// (notified, removed, or timed out): callers on hot paths hand it back
    /// here instead of dropping it. A node a notifier still holds (it has
    /// popped it and not yet woken us) is simply dropped.
    #[inline]
    pub(crate) fn recycle(node: Arc<Node>) {
        Node::recycle(node);
    }

    pub(crate) fn new() -> WaitList {
        WaitList::default()
    }

    /// The list under its lock, for callers that must update their own
    /// state atomically with it (the Mutex's "waiters queued" bit).
    pub(crate) fn lock(&self) -> MutexGuard<'_, VecDeque<Arc<Node>>> {
        self.queue.lock_unpoisoned()
    }

    /// A node for the calling fiber or thread, pushed at the back of a
    /// locked list.
    pub(crate) fn push(queue: &mut VecDeque<Arc<Node>>) -> Arc<Node> {
        WaitList::push_node(queue, None, false)
    }

    /// A node for a caller that has been waiting since `since`, at the
    /// front (a waiter woken to compete that lost keeps its place, as in
    /// Go's mutex) or the back.
    pub(crate) fn push_waiting_since(
        queue: &mut VecDeque<Arc<Node>>,
        since: Instant,
        front: bool,
    ) -> Arc<Node> {
        WaitList::push_node(queue, Some(since), front)
    }

    fn push_node(
        queue: &mut VecDeque<Arc<Node>>,
        since: Option<Instant>,
        front: bool,
    ) -> Arc<Node> {
        let node = Node::for_current(since);
        if front {
            queue.push_front(node.clone());
        } else {
            queue.push_back(node.clone());
        }
        node
    }

    /// Pops the front node of a locked list and marks it notified (or
    /// handed off); the caller wakes it after unlocking.
    pub(crate) fn pop(queue: &mut VecDeque<Arc<Node>>, hand_off: bool) -> Option<Wake> {
        let node = queue.pop_front()?;
        node.notify(hand_off);
        Some(Wake(node))
    }

    /// Pops every node of a locked list, marked notified; the caller wakes
    /// them after unlocking.
    pub(crate) fn pop_all(queue: &mut VecDeque<Arc<Node>>) -> Vec<Wake> {
        std::iter::from_fn(|| WaitList::pop(queue, false)).collect()
    }

    /// Wakes the first waiter, if any. Returns whether there was one.
    pub(crate) fn notify_one(&self) -> bool {
        let wake = WaitList::pop(&mut self.lock(), false);
        let woke = wake.is_some();
        if let Some(wake) = wake {
            wake.wake();
        }
        woke
    }

    /// Wakes every waiter queued now. Returns how many.
    pub(crate) fn notify_all(&self) -> usize {
        let all: Vec<Wake> = {
            let mut queue = self.lock();
            if queue.is_empty() {
                return 0;
            }
            WaitList::pop_all(&mut queue)
        };
        let count = all.len();
        for wake in all {
            wake.wake();
        }
        count
    }

    /// Parks until `node` is notified (true) or `deadline` passes (false;
    /// the node is removed). If the caller is unwound while waiting, the
    /// node is removed too, and a notification it had received is passed
    /// on.
    pub(crate) fn wait(&self, node: &Arc<Node>, deadline: Option<Instant>) -> bool {
        let leave = Leave { list: self, node };
        loop {
            if node.is_notified() {
                std::mem::forget(leave);
                return true;
            }
            // Timed out, unless notified meanwhile (then the loop takes the
            // notification).
            if !crate::time::park_until(deadline) && self.remove(node) {
                std::mem::forget(leave);
                return false;
            }
        }
    }

    /// Removes `node` if still queued. Returns false if a notifier had
    /// already popped it.
    pub(crate) fn remove(&self, node: &Arc<Node>) -> bool {
        WaitList::remove_from(&mut self.lock(), node)
    }

    /// Removes `node` from a locked list if it is there. Returns false if a
    /// notifier had already popped it.
    pub(crate) fn remove_from(queue: &mut VecDeque<Arc<Node>>, node: &Arc<Node>) -> bool {
        match queue.iter().position(|n| Arc::ptr_eq(n, node)) {
            Some(index) => {
                queue.remove(index);
                true
            }
            None => false,
        }
    }
}

/// Runs if a waiter is unwound inside [`WaitList::wait`].
struct Leave<'a> {
    list: &'a WaitList,
    node: &'a Arc<Node>,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        if !self.list.remove(self.node) && !self.node.is_handed_off() {
            // Notified, but leaving: pass the notification on. (A hand-off
            // is the Mutex's to undo; its own guard does that.)
            self.list.notify_one();
        }
    }
}

/// The wait list's hand-over, model-checked (`crate::loom` says how to run
/// them): a notifier pops a node while its waiter leaves (its timeout
/// passed, or it is unwound). The waiters are threads, parking with
/// loom's `park`; loom reports a waiter left parked after a notification
/// as a deadlock.
#[cfg(all(test, spindle_loom))]
mod loom_models {
    use super::{Leave, WaitList};
    use crate::loom::cell::UnsafeCell;
    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::thread;
    use std::sync::Arc;
    use std::time::Instant;

    /// A list, and what the notifier wrote before notifying.
    struct Model {
        list: WaitList,
        message: UnsafeCell<u32>,
        /// Waiters queued so far.
        queued: AtomicUsize,
    }

    // SAFETY: `message` is written by the notifier before it notifies and
    // read by a waiter only once notified (which is what the models check).
    unsafe impl Sync for Model {}

    impl Model {
        fn new() -> Arc<Model> {
            Arc::new(Model {
                list: WaitList::new(),
                message: UnsafeCell::new(0),
                queued: AtomicUsize::new(0),
            })
        }

        /// The notifier: writes the message, then wakes one waiter.
        fn notify_one(&self) -> bool {
            // SAFETY: only the notifier writes it, before notifying.
            self.message.with_mut(|message| unsafe { *message = 1 });
            self.list.notify_one()
        }

        /// A waiter that was notified reads the message.
        fn read_message(&self) {
            // SAFETY: the notification orders the notifier's write first.
            let message = self.message.with(|message| unsafe { *message });
            assert_eq!(message, 1, "the notifier's write is visible");
        }
    }

    /// A waiter whose deadline has passed races a `notify_one`: if the
    /// notifier found it (and so woke nobody else), its wait reports the
    /// notification; a timeout never swallows one.
    #[test]
    fn loom_timeout_races_notify_one() {
        crate::loom::model(|| {
            let model = Model::new();
            let waiter = {
                let model = model.clone();
                thread::spawn(move || {
                    let node = WaitList::push(&mut model.list.lock());
                    let notified = model.list.wait(&node, Some(Instant::now()));
                    if notified {
                        model.read_message();
                    }
                    WaitList::recycle(node);
                    notified
                })
            };
            let woke = model.notify_one();
            let notified = waiter.join().unwrap();
            assert_eq!(woke, notified, "the notification reached the waiter");
        });
    }

    /// Two waiters queue; one is unwound out of its wait (its `Leave`
    /// guard runs) while a `notify_one` comes: if the notification went to
    /// the one leaving, it is passed on, and the other wakes.
    #[test]
    fn loom_leaving_waiter_passes_notification_on() {
        crate::loom::model(|| {
            let model = Model::new();
            let leaving = {
                let model = model.clone();
                thread::spawn(move || {
                    let node = WaitList::push(&mut model.list.lock());
                    model.queued.fetch_add(1, Ordering::Release);
                    drop(Leave {
                        list: &model.list,
                        node: &node,
                    });
                })
            };
            let staying = {
                let model = model.clone();
                thread::spawn(move || {
                    let node = WaitList::push(&mut model.list.lock());
                    model.queued.fetch_add(1, Ordering::Release);
                    while !node.is_notified() {
                        thread::park();
                    }
                    model.read_message();
                })
            };
            while model.queued.load(Ordering::Acquire) < 2 {
                thread::yield_now();
            }
            assert!(model.notify_one(), "two waiters were queued");
            leaving.join().unwrap();
            staying.join().unwrap();
        });
    }
}
