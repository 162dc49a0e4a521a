//! [`GrantQueue`]: a FIFO of waiters that are *granted* what they asked for
//! (a read or write lock, some permits, passage through a barrier) by
//! whoever makes it available, the queue under `RwLock`, `Semaphore`,
//! `Barrier` and `OnceCell`.
//!
//! # Design
//! [`WaitList`](super::waitlist) wakes a waiter to *compete* for what it
//! wants; here the releaser hands it over instead: under the queue's std
//! lock it takes what the front requests need from the primitive's state,
//! pops them, marks them granted, and wakes them after unlocking. A woken
//! waiter owns its grant before it runs, so it never loses a race to a
//! newcomer, which is what makes these primitives FIFO-fair. Each request
//! carries what it wants (`K`: read or write, a number of permits), which
//! the plain `WaitList` node does not.
//!
//! A waiter that stops waiting early (timeout, or unwound at shutdown)
//! *withdraws*: under the queue lock, if its request is still queued it is
//! removed and the primitive re-runs its grant step (the departed request
//! may have been the one blocking the front); if it was granted meanwhile,
//! a timed wait keeps the grant and an unwound waiter gives it back. The
//! request is on the heap (an `Arc` shared by the queue and the waiter), so
//! a waiter unwound mid-wait leaves nothing dangling. No std lock is held
//! across a park.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::fiber::waiter::Waiter;
use crate::lock::MutexExt;

/// One waiter's request.
pub(crate) struct Request<K> {
    waiter: Waiter,
    /// What the waiter asks for; read by the granting primitive.
    pub(crate) want: K,
    /// Set (Release) by a granter after popping the request, under the
    /// queue lock; never cleared.
    granted: AtomicBool,
}

impl<K> Request<K> {
    /// Whether the request was granted.
    pub(crate) fn is_granted(&self) -> bool {
        // Acquire: pairs with `grant`'s Release, so what the granter did
        // to hand over (and the previous holder's writes) is visible.
        self.granted.load(Ordering::Acquire)
    }
}

/// The queue under its lock.
pub(crate) type Requests<K> = VecDeque<Arc<Request<K>>>;

/// Granted requests, to be woken once the queue's lock is released.
pub(crate) type Granted<K> = Vec<Arc<Request<K>>>;

/// The primitive's side of a withdrawal; see the module docs.
pub(crate) trait Withdraw<K> {
    /// Called under the queue lock after a request left without being
    /// granted: grant what its departure made possible into `granted`.
    fn regrant(&self, queue: &mut Requests<K>, granted: &mut Granted<K>);
    /// Called (without the queue lock) by a waiter that was granted `want`
    /// but is unwound before it could use it: give it back.
    fn give_back(&self, want: &K);
}

/// A FIFO of requests; see the module docs.
pub(crate) struct GrantQueue<K> {
    queue: Mutex<Requests<K>>,
}

impl<K> GrantQueue<K> {
    pub(crate) const fn new() -> GrantQueue<K> {
        GrantQueue {
            queue: Mutex::new(VecDeque::new()),
        }
    }

    /// The queue under its lock. Never held across a park; nothing user
    /// code runs under it can panic, but a poisoned lock is recovered
    /// anyway (the queue's own invariants hold between statements).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Requests<K>> {
        self.queue.lock_unpoisoned()
    }

    /// A request for the calling fiber or thread, pushed at the back of a
    /// locked queue.
    pub(crate) fn push(queue: &mut Requests<K>, want: K) -> Arc<Request<K>> {
        let request = Arc::new(Request {
            waiter: Waiter::current(),
            want,
            granted: AtomicBool::new(false),
        });
        queue.push_back(request.clone());
        request
    }

    /// Pushes a request for the caller and, still under the queue lock,
    /// runs `then` (the primitive marks itself queued and runs its grant
    /// step, which may grant the new request at once); then wakes whom
    /// `then` granted, except the caller.
    pub(crate) fn enqueue(
        &self,
        want: K,
        then: impl FnOnce(&mut Requests<K>, &mut Granted<K>),
    ) -> Arc<Request<K>> {
        let mut granted = Vec::new();
        let request = {
            let mut queue = self.lock();
            let request = GrantQueue::push(&mut queue, want);
            then(&mut queue, &mut granted);
            request
        };
        GrantQueue::wake(granted, Some(&request));
        request
    }

    /// Runs a grant step under the queue lock, then wakes whom it granted.
    pub(crate) fn grant_with(&self, step: impl FnOnce(&mut Requests<K>, &mut Granted<K>)) {
        let mut granted = Vec::new();
        step(&mut self.lock(), &mut granted);
        GrantQueue::wake(granted, None);
    }

    /// Grants every request of a locked queue, front first.
    pub(crate) fn grant_all(queue: &mut Requests<K>, granted: &mut Granted<K>) {
        while !queue.is_empty() {
            GrantQueue::grant_front(queue, granted);
        }
    }

    /// Pops the front request of a locked queue, marks it granted and adds
    /// it to `granted`, to be woken after unlocking.
    pub(crate) fn grant_front(queue: &mut Requests<K>, granted: &mut Granted<K>) {
        let request = queue.pop_front().expect("grant_front on an empty queue");
        debug_assert!(!request.granted.load(Ordering::Relaxed), "granted twice");
        // Release: what the granter did (taking the lock for the waiter,
        // subtracting its permits) is visible to the waiter.
        request.granted.store(true, Ordering::Release);
        granted.push(request);
    }

    /// Wakes granted waiters, except `me` (the caller, which granted itself
    /// and is not parked: an unpark would linger as a spurious wake-up).
    pub(crate) fn wake(granted: Granted<K>, me: Option<&Arc<Request<K>>>) {
        for request in granted {
            if me.is_some_and(|me| Arc::ptr_eq(me, &request)) {
                continue;
            }
            request.waiter.clone().wake();
        }
    }

    /// Parks until `request` is granted (true) or `deadline` passes (false:
    /// the request was withdrawn). If the caller is unwound while waiting,
    /// the request is withdrawn, or its grant given back.
    pub(crate) fn wait<P: Withdraw<K> + ?Sized>(
        &self,
        request: &Arc<Request<K>>,
        deadline: Option<Instant>,
        primitive: &P,
    ) -> bool {
        /// Runs if the waiter is unwound inside `wait`.
        struct Unwound<'a, K, P: Withdraw<K> + ?Sized> {
            queue: &'a GrantQueue<K>,
            request: &'a Arc<Request<K>>,
            primitive: &'a P,
        }
        impl<K, P: Withdraw<K> + ?Sized> Drop for Unwound<'_, K, P> {
            fn drop(&mut self) {
                if !self.queue.withdraw(self.request, self.primitive) {
                    self.primitive.give_back(&self.request.want);
                }
            }
        }
        let unwound = Unwound {
            queue: self,
            request,
            primitive,
        };
        loop {
            if request.is_granted() {
                std::mem::forget(unwound);
                return true;
            }
            if !crate::time::park_until(deadline) {
                std::mem::forget(unwound);
                // Granted while timing out: keep the grant.
                return !self.withdraw(request, primitive);
            }
        }
    }

    /// Removes `request` if still queued and lets the primitive grant what
    /// that made possible. Returns false if it had been granted already.
    fn withdraw<P: Withdraw<K> + ?Sized>(&self, request: &Arc<Request<K>>, primitive: &P) -> bool {
        let mut granted = Vec::new();
        let removed = {
            let mut queue = self.lock();
            match queue.iter().position(|r| Arc::ptr_eq(r, request)) {
                Some(index) => {
                    queue.remove(index);
                    primitive.regrant(&mut queue, &mut granted);
                    true
                }
                None => {
                    // Only granters pop, and they mark under this lock.
                    debug_assert!(request.is_granted());
                    false
                }
            }
        };
        GrantQueue::wake(granted, None);
        removed
    }
}
