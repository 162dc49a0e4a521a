//! Shutting a runtime down: the steps of "Shutdown, in order" in
//! `scheduler/mod.rs`, as `Shared` methods that `Runtime::shutdown` calls
//! in turn: `begin_shutdown` (steps 1–2; the workers then exit and are
//! joined), `spares_running` (waited out), `cancel_remaining` (step 3),
//! `write_trace` (step 4).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::queue::steal_settled;
use super::Shared;
use crate::fiber::context::Resume;
use crate::fiber::stack::StackCache;
use crate::fiber::state::Unparked;
use crate::fiber::{run_slice, FiberInner, Outcome};

impl Shared {
    /// Step 1–2 of shutdown: set the flag, wake every worker.
    pub(crate) fn begin_shutdown(&self) {
        // Release: pairs with the workers' Acquire load after they wake.
        self.shutdown.store(true, Ordering::Release);
        for remote in self.remotes.iter() {
            remote.unparker.unpark();
        }
        self.monitor.unpark();
        if let Some(pool) = self.blocking.get() {
            pool.shutdown();
        }
        self.spares.shutdown();
    }

    /// Whether a spare worker still holds a slot (shutdown waits for none).
    pub(crate) fn spares_running(&self) -> bool {
        self.used_remotes()[self.num_workers..]
            .iter()
            .any(|r| r.handoff.has_thread())
    }

    /// Shutdown step 3: unwinds every fiber left, on the calling thread,
    /// after the workers have exited. Returns how many were cancelled.
    pub(crate) fn cancel_remaining(&self) -> usize {
        debug_assert!(self.is_shutdown());
        // Their fibers are unwound below; the handles would keep the
        // runtime alive (a fiber holds the runtime that holds its timer).
        for remote in self.remotes.iter() {
            remote.timers.clear();
        }
        let _alt_stack = crate::sys::signal::AltStack::ensure().ok().flatten();
        let mut cache = StackCache::new();
        let mut cancelled = 0;
        loop {
            let mut batch = Vec::new();
            self.take_queued(&mut batch);
            self.take_parked(&mut batch);
            if batch.is_empty() {
                if self.stacks.owners().is_empty() && self.globals_are_empty() {
                    break;
                }
                // A started fiber is SCHEDULED yet in no queue: a foreign
                // thread won its PARKED -> SCHEDULED transition and has not
                // pushed it into the injector yet. Wait for the push rather
                // than miss the fiber (it would never be unwound, and its
                // joiner would wait forever).
                std::thread::yield_now();
                continue;
            }
            for fiber in batch {
                cancel(&fiber, &mut cache);
                self.fiber_finished();
                cancelled += 1;
            }
        }
        cache.drain_into(&self.stacks);
        cancelled
    }

    /// Takes every queued fiber into `batch`: from the global queues, and
    /// from the slots' deques and next slots (a spare retires without
    /// emptying its deque; the others' are taken for safety).
    fn take_queued(&self, batch: &mut Vec<Arc<FiberInner>>) {
        for global in [&self.injector, &self.backlog] {
            while let Some(fiber) = steal_settled(|| global.steal()) {
                batch.push(fiber);
            }
        }
        for remote in self.remotes.iter() {
            if let Some(fiber) = remote.next.take() {
                batch.push(fiber);
            }
            while let Some(fiber) = steal_settled(|| remote.stealer.steal()) {
                batch.push(fiber);
            }
        }
    }

    /// Takes every parked fiber into `batch`, from the stack pool's slot
    /// registry: parked fibers are in no queue.
    fn take_parked(&self, batch: &mut Vec<Arc<FiberInner>>) {
        for owner in self.stacks.owners() {
            let fiber = owner.as_ptr() as *const FiberInner;
            // Each is kept alive by its scheduling reference (in a queue,
            // or in the fiber itself while PARKED; no worker runs now).
            // SAFETY: so the registry's started, unfinished fibers live.
            let state = unsafe { &(*fiber).state };
            // Parked fibers are in no queue: take them. Scheduled ones
            // are in the batch already (from the injector).
            if state.unpark() == Unparked::MustSchedule {
                // ("Ownership" on FiberInner.)
                // SAFETY: we won PARKED → SCHEDULED: the parked fiber's
                // scheduling reference is ours.
                batch.push(unsafe { Arc::from_raw(fiber) });
            }
        }
    }

    /// Writes the timeline trace, if on (at shutdown, once every worker
    /// has handed its buffer in); a failure is reported on stderr.
    pub(crate) fn write_trace(&self) {
        if let Err(error) = self.tracing.write(self.num_workers) {
            let path = self
                .tracing
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            eprintln!("spindle: cannot write the trace to {path}: {error}");
        }
    }
}

/// Resumes a SCHEDULED fiber with `Resume::Cancel` until it has unwound.
fn cancel(fiber: &Arc<FiberInner>, cache: &mut StackCache) {
    fiber.state.begin_run();
    loop {
        match run_slice(fiber, Resume::Cancel, cache, &AtomicBool::new(false)) {
            Outcome::Finished => return,
            // A destructor yielded or parked while the fiber unwound: run it
            // again (its park returns at once, spuriously).
            Outcome::Yielded => {
                fiber.state.yielded();
                fiber.state.begin_run();
            }
            Outcome::Parked => {
                // Parking would leave our scheduling reference in the fiber
                // and unparking would take it back: ours stays as it is.
                if fiber.state.finish_park() {
                    let scheduled = fiber.state.unpark();
                    debug_assert_eq!(scheduled, Unparked::MustSchedule);
                    fiber.state.begin_run();
                }
            }
        }
    }
}
