//! Starting a runtime: `Shared::start`, in named steps.
//!
//! 1. Install the stack-overflow handler and the panic hook (once per
//!    process), make the stack pool, and settle the live-fiber limit
//!    ([`fiber_limit`]).
//! 2. Make the reactor, then every worker slot in its two halves
//!    ([`Slots`]): the `Remote` other threads may touch, and the owner's
//!    side, which goes to a configured worker's thread or, for a spare
//!    slot, to `Spares` until a spare takes it.
//! 3. Make `Shared`.
//! 4. Start a thread per configured worker, then the monitor's
//!    ([`start_threads`]). If the OS refuses a thread, the runtime shuts
//!    down the threads started so far and `start` returns the error.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::thread;

use crossbeam_deque::Injector;

use super::handoff::{HandoffState, Spares};
use super::idle::Idle;
use super::park::Parker;
use super::queue::{Backlog, NextSlot};
use super::timers::TimerQueue;
use super::worker::Worker;
use super::{monitor, BlockingConfig, Config, OwnerSide, Remote, Shared};
use crate::fiber::record::RecordPool;
use crate::fiber::spawn::LimitKind;
use crate::fiber::stack::{StackCache, StackPool};
use crate::io::Reactor;
use crate::padded::CachePadded;

/// Stack of a worker thread. The worker loop itself is shallow (fibers run
/// on their own stacks); this leaves room for the panic machinery.
const WORKER_THREAD_STACK: usize = 256 * 1024;

/// Stack of the monitor thread, which runs no user code.
const MONITOR_THREAD_STACK: usize = 64 * 1024;

impl Shared {
    /// Builds the shared state and starts the worker threads and the
    /// monitor (the steps of the module docs). Returns the threads, the
    /// monitor's last.
    pub(crate) fn start(config: Config) -> io::Result<(Arc<Shared>, Vec<thread::JoinHandle<()>>)> {
        crate::sys::signal::install_overflow_handler(crate::fiber::fault::classify_fault);
        crate::sys::panic::install_panic_hook(crate::fiber::cancel::intercept_panic);
        #[cfg(feature = "interpose")]
        crate::io::interpose::install();
        let stacks = StackPool::new(config.stack_size, config.force_mprotect);
        let (fiber_limit, limit_kind) = fiber_limit(&stacks, config.max_fibers);

        let epoch = std::time::Instant::now();
        let reactor = Arc::new(Reactor::new(epoch)?);
        let (monitor_parker, monitor) = Parker::new();
        let slots = Slots::new(&config, &reactor);

        let shared = Arc::new(Shared {
            remotes: slots.remotes.into_boxed_slice(),
            num_workers: config.workers,
            slot_bound: AtomicUsize::new(config.workers),
            spares: Spares::new(
                slots.spare,
                config.handoff.clone(),
                config.blocking_keep_alive,
                format!("{}-spare", config.thread_name),
            ),
            injector: Injector::new(),
            backlog: Backlog::new(),
            idle: Idle::new(config.workers),
            stacks,
            records: RecordPool::new(),
            epoch,
            shutdown: AtomicBool::new(false),
            live: AtomicUsize::new(0),
            finished_elsewhere: AtomicU64::new(0),
            caught_panics: AtomicU64::new(0),
            fibers_without_stack: AtomicU64::new(0),
            frozen_fibers: AtomicU64::new(0),
            external_spawns: AtomicU64::new(0),
            fiber_limit,
            limit_kind,
            monitor,
            blocking: std::sync::OnceLock::new(),
            tracing: crate::trace::Tracing::new(config.trace.clone()),
            shutdown_grace: config.shutdown_grace,
            cancel_waker: std::sync::Mutex::new(None),
            blocking_config: BlockingConfig {
                max_threads: config.max_blocking_threads,
                keep_alive: config.blocking_keep_alive,
                thread_name: format!("{}-blocking", config.thread_name),
            },
            reactor,
        });
        let threads = start_threads(
            &shared,
            slots.configured,
            monitor_parker,
            &config.thread_name,
        )?;
        Ok((shared, threads))
    }
}

/// The live-fiber limit: the smaller of `max_fibers` and the pool's
/// guarded-stack budget, and which of the two it is.
fn fiber_limit(stacks: &StackPool, max_fibers: usize) -> (usize, LimitKind) {
    if stacks.stack_budget() < max_fibers {
        let max_map_count = crate::sys::memory::max_map_count();
        (
            stacks.stack_budget(),
            LimitKind::MappingBudget { max_map_count },
        )
    } else {
        (max_fibers, LimitKind::MaxFibers)
    }
}

/// Every worker slot, in its two halves.
struct Slots {
    /// By slot index: the configured workers', then the spare slots'.
    remotes: Vec<CachePadded<Remote>>,
    /// The configured workers' owner sides, by index.
    configured: Vec<OwnerSide>,
    /// The spare slots' owner sides, with their indices.
    spare: Vec<(usize, OwnerSide)>,
}

impl Slots {
    /// `config.workers` configured slots and `config.handoff.max_spares`
    /// spare ones; every parker can be woken out of `reactor`'s poller.
    fn new(config: &Config, reactor: &Reactor) -> Slots {
        let count = config.workers + config.handoff.max_spares;
        let mut slots = Slots {
            remotes: Vec::with_capacity(count),
            configured: Vec::with_capacity(config.workers),
            spare: Vec::with_capacity(config.handoff.max_spares),
        };
        for index in 0..count {
            let local = crossbeam_deque::Worker::new_fifo();
            let (parker, unparker) = Parker::new();
            unparker.set_interrupt(reactor.interrupt());
            let stacks = StackCache::new();
            let configured = index < config.workers;
            slots.remotes.push(CachePadded(Remote {
                stealer: local.stealer(),
                next: NextSlot::new(),
                unparker,
                ticks: AtomicU64::new(0),
                finished: AtomicU64::new(0),
                cached_stacks: stacks.published(),
                timers: TimerQueue::new(),
                counters: Default::default(),
                handoff: HandoffState::new(configured),
            }));
            let owner = OwnerSide {
                local,
                parker,
                stacks,
            };
            if configured {
                slots.configured.push(owner);
            } else {
                slots.spare.push((index, owner));
            }
        }
        slots
    }
}

/// Starts a thread per configured worker, named `<thread_name>-<index>`,
/// then the monitor's.
fn start_threads(
    shared: &Arc<Shared>,
    configured: Vec<OwnerSide>,
    monitor_parker: Parker,
    thread_name: &str,
) -> io::Result<Vec<thread::JoinHandle<()>>> {
    let mut threads = Vec::with_capacity(configured.len() + 1);
    for (index, owner) in configured.into_iter().enumerate() {
        let worker = Worker::new(index, shared.clone(), owner);
        let name = format!("{thread_name}-{index}");
        start_thread(shared, &mut threads, name, WORKER_THREAD_STACK, move || {
            worker.run()
        })?;
    }
    let monitor_shared = shared.clone();
    let name = format!("{thread_name}-monitor");
    start_thread(
        shared,
        &mut threads,
        name,
        MONITOR_THREAD_STACK,
        move || {
            let _abort = crate::fiber::fault::AbortOnUnwind::new("monitor");
            monitor::run(monitor_shared, monitor_parker)
        },
    )?;
    Ok(threads)
}

/// Starts one of the runtime's threads. If the OS refuses, shuts down and
/// joins the threads started so far, and returns the error.
fn start_thread(
    shared: &Shared,
    threads: &mut Vec<thread::JoinHandle<()>>,
    name: String,
    stack_size: usize,
    body: impl FnOnce() + Send + 'static,
) -> io::Result<()> {
    match thread::Builder::new()
        .name(name)
        .stack_size(stack_size)
        .spawn(body)
    {
        Ok(handle) => {
            threads.push(handle);
            Ok(())
        }
        Err(error) => {
            shared.begin_shutdown();
            for handle in threads.drain(..) {
                let _ = handle.join();
            }
            Err(error)
        }
    }
}
