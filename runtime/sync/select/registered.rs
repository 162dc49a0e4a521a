//! A select's arms while they are registered (steps 3 to 5 of the module
//! docs of `select/mod.rs`): the park, the deregistration, and the drop
//! guard that undoes a registration when the select is unwound.

use std::sync::Arc;
use std::time::Instant;

use super::arms::Arm;
use crate::sync::mpsc::Resolved;
use crate::sync::waitlist::{Node, WaitList};

/// How step 4 ended.
#[derive(Clone, Copy)]
pub(super) enum Ending {
    /// A party claimed the node; its resolution is final once step 5 has
    /// taken every lock.
    Resolved,
    /// This signal arm's event came, and the select withdrew its node.
    Signalled(u32),
    /// The deadline passed, and the select withdrew its node.
    TimedOut,
}

/// A select's arms while they are registered, and its node. Dropped before
/// `deregister` (the select was unwound while parked), it withdraws,
/// deregisters, and salvages what an arm resolved meanwhile was handed.
pub(super) struct Registered<'s, 'a, R> {
    /// Touched only through `&` until every arm is deregistered.
    arms: &'s mut Vec<Box<dyn Arm<'a, R> + 'a>>,
    /// The arms registered (all that take part in this wait).
    order: &'s [u32],
    /// Taken (to be kept for the next wait) when this is dropped.
    node: Option<Arc<Node>>,
    /// Set once every arm is deregistered.
    done: bool,
}

impl<'s, 'a, R> Registered<'s, 'a, R> {
    /// Step 3's end: takes over the arms, whose channel arms are queued,
    /// and registers the signal arms (unlocked: a readiness arm takes its
    /// socket's lock).
    pub(super) fn new(
        arms: &'s mut Vec<Box<dyn Arm<'a, R> + 'a>>,
        order: &'s [u32],
        node: Arc<Node>,
    ) -> Registered<'s, 'a, R> {
        let registered = Registered {
            arms,
            order,
            node: Some(node),
            done: false,
        };
        for &index in registered.order {
            let arm = &registered.arms[index as usize];
            if arm.lock().is_none() {
                // SAFETY: a signal arm holds no lock, and would wait (it
                // was polled); `Registered` deregisters it.
                unsafe { arm.register(registered.node(), index) };
            }
        }
        registered
    }

    fn node(&self) -> &Arc<Node> {
        self.node.as_ref().expect("the node is taken only on drop")
    }

    /// Step 4: parks until a party resolves the node, a signal arm's event
    /// comes, or `deadline` passes; with a timeout, until the earliest of
    /// that and the timer arms' deadlines.
    pub(super) fn park(&self, deadline: Option<Instant>) -> Ending {
        // The earliest timer arm; the park's deadline is its or the
        // select's own, whichever comes first.
        let timer = self
            .order
            .iter()
            .filter_map(|&index| Some((self.arms[index as usize].deadline()?, index)))
            .min();
        let park_deadline = timer.map(|(at, _)| at).into_iter().chain(deadline).min();
        loop {
            let node = self.node();
            if node.resolution().is_some() {
                return Ending::Resolved;
            }
            let signalled = self
                .order
                .iter()
                .copied()
                .find(|&index| self.arms[index as usize].signalled());
            let ending = match signalled {
                Some(index) => Ending::Signalled(index),
                None if crate::time::park_until(park_deadline) => continue,
                // The park's deadline came: the timer arm's, or the
                // select's own. (Where no timer can run, in a destructor
                // at shutdown, a park with a deadline returns false at
                // once, and that too is taken as the deadline.)
                None => match timer {
                    Some((at, index)) if deadline.is_none_or(|own| at <= own) => {
                        Ending::Signalled(index)
                    }
                    _ => Ending::TimedOut,
                },
            };
            // Ours unless a party claimed the node first; then its
            // resolution is final once step 5 has taken its lock.
            return if node.try_withdraw() {
                ending
            } else {
                Ending::Resolved
            };
        }
    }

    /// Step 5: deregisters every arm; the index of the arm chosen, if any
    /// (a resolved arm settled, its outcome taken from its slot).
    pub(super) fn deregister(mut self, ending: Ending) -> Option<u32> {
        let chosen = self.deregister_arms(ending);
        self.done = true;
        chosen
    }

    fn deregister_arms(&mut self, ending: Ending) -> Option<u32> {
        let node = self.node.as_ref().expect("the node is taken only on drop");
        for &index in self.order {
            self.arms[index as usize].deregister(node, index);
        }
        match ending {
            Ending::Signalled(index) => Some(index),
            Ending::TimedOut => None,
            Ending::Resolved => {
                // A claimant resolves under the lock of the channel it
                // claimed on, which deregistering has taken since.
                let code = node
                    .resolution()
                    .expect("a claimed select is resolved under a lock it has since taken");
                node.wait_released();
                let resolved = Resolved::from_code(code);
                // SAFETY: the node was resolved for this arm (the code says
                // which), and every entry is deregistered.
                unsafe { self.arms[resolved.arm as usize].settle(resolved.closed) };
                Some(resolved.arm)
            }
        }
    }
}

impl<R> Drop for Registered<'_, '_, R> {
    fn drop(&mut self) {
        if !self.done {
            let withdrawn = self.node().try_withdraw();
            let ending = if withdrawn {
                Ending::TimedOut
            } else {
                Ending::Resolved
            };
            if let Some(index) = self.deregister_arms(ending) {
                self.arms[index as usize].salvage();
            }
        }
        let node = self.node.take().expect("the node is taken only on drop");
        // Kept for the next wait, unless a resolver still holds it.
        WaitList::recycle(node);
    }
}
