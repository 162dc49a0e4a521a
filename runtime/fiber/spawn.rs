//! Starting fibers: [`spawn`], [`try_spawn`], the fiber [`Builder`] and
//! [`SpawnError`].
//!
//! Spawning allocates the fiber's bookkeeping and queues it; it does **not**
//! allocate a stack. The stack is taken when a worker first runs the fiber
//! (`fiber::run_slice`), so a million queued-but-unstarted fibers cost no
//! stack memory. What spawn does check is the runtime's limit on live fibers
//! (each will need a stack), so that running out is an error at the spawn
//! call, not an abort later; and, once the stack pool could not grow, that
//! a free stack is left (`SpawnError::OutOfStacks`).

use std::fmt;
use std::mem::ManuallyDrop;
use std::num::NonZeroUsize;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::join::{JoinError, JoinHandle, Output};
use super::{Entry, Fiber, FiberInner, Start};
use crate::scheduler::Shared;

/// Spawns a fiber on the current runtime and returns its [`JoinHandle`],
/// like `std::thread::spawn`.
///
/// The fiber runs `f` on its own stack; a panic inside it is caught and
/// handed to the joiner, and the worker thread carries on. Called from a
/// fiber, it spawns on that fiber's runtime; from a plain thread, on the
/// process-wide [`default_runtime`](crate::default_runtime), which starts
/// then if it has not.
///
/// # Panics
/// When the fiber cannot be spawned (see [`try_spawn`]), or the default
/// runtime cannot start.
///
/// ```
/// // From a plain thread: the default runtime.
/// assert_eq!(spindle::spawn(|| "anywhere").join().unwrap(), "anywhere");
///
/// let rt = spindle::Runtime::new().unwrap();
/// let sum = rt.block_on(|| {
///     let handles: Vec<_> = (0..10u64).map(|i| spindle::spawn(move || i * i)).collect();
///     handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
/// });
/// assert_eq!(sum, 285);
/// ```
#[track_caller]
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new()
        .spawn(f)
        .unwrap_or_else(|error| panic!("spindle::spawn failed: {error}"))
}

/// Like [`spawn`], but returns an error instead of panicking when the fiber
/// cannot be spawned: the runtime's fiber limit is reached (or, on kernels
/// before 6.13, its budget of guarded stacks), no stack can be had (the OS
/// refuses memory for more and every one is in use), its stack size is out
/// of range, or the runtime is shutting down.
///
/// ```
/// let rt = spindle::Builder::new().max_fibers(1).build().unwrap();
/// rt.block_on(|| {
///     // The fiber running this closure is the one live fiber allowed.
///     let error = spindle::try_spawn(|| ()).unwrap_err();
///     assert!(error.to_string().contains("max_fibers"), "{error}");
/// });
/// ```
#[track_caller]
pub fn try_spawn<F, T>(f: F) -> Result<JoinHandle<T>, SpawnError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new().spawn(f)
}

/// Configures a fiber before spawning it, like `std::thread::Builder`.
///
/// ```
/// let rt = spindle::Runtime::new().unwrap();
/// rt.block_on(|| {
///     let handle = spindle::fiber::Builder::new()
///         .name("worker-7")
///         .stack_size(256 * 1024)
///         .spawn(|| spindle::current().name().map(str::to_owned))
///         .unwrap();
///     assert_eq!(handle.join().unwrap().as_deref(), Some("worker-7"));
/// });
/// ```
#[derive(Debug, Default)]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
}

impl Builder {
    /// A builder with no name and the runtime's default stack size.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the fiber (shown in stack-overflow reports and by
    /// [`Fiber::name`]).
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Usable stack bytes for this fiber, rounded up to whole pages, at
    /// most 1 GiB − 4 KiB (a larger size makes the spawn fail with
    /// [`SpawnError::StackSize`]); the runtime's default otherwise (see
    /// [`crate::Builder::stack_size`]).
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes);
        self
    }

    /// Spawns the fiber on the current runtime: the one whose fiber calls
    /// this, or on a plain thread the
    /// [`default_runtime`](crate::default_runtime) ([`Builder::spawn_on`]
    /// names another).
    ///
    /// # Panics
    /// On a plain thread, when the default runtime cannot start.
    #[track_caller]
    pub fn spawn<F, T>(self, f: F) -> Result<JoinHandle<T>, SpawnError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match super::CurrentFiber::get() {
            Some(fiber) => self.spawn_in(fiber.shared(), f),
            None => self.spawn_in(crate::default_runtime::default_shared(), f),
        }
    }

    /// Spawns on `shared`; the caller's caller chain, up to the first
    /// function without `#[track_caller]`, is the spawn location a fiber
    /// dump shows. (`Builder::spawn_on` is defined in `runtime.rs`, with
    /// the `Runtime` it takes: `fiber/` does not depend on the runtime
    /// handle.)
    #[track_caller]
    pub(crate) fn spawn_in<F, T>(
        self,
        shared: &Arc<Shared>,
        f: F,
    ) -> Result<JoinHandle<T>, SpawnError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // Checked before it is rounded, which cannot overflow then.
        let stack_size = match self.stack_size {
            None => None,
            Some(bytes) => {
                let (_, largest) = super::stack::StackPool::size_range();
                if bytes > largest {
                    return Err(SpawnError::StackSize {
                        requested: bytes,
                        largest,
                    });
                }
                let rounded = super::stack::StackPool::round_size(bytes);
                Some(NonZeroUsize::new(rounded).expect("a stack is at least a page"))
            }
        };
        shared.admit_fiber()?;
        // A test's fibers report their panics to the test (`test.rs`). A
        // separate instance, so that the usual closure stays small enough
        // to live inside the record (`record.rs`).
        if let Some(mailbox) = crate::test::mailbox_to_inherit(shared) {
            let f = crate::test::inheriting(mailbox, f);
            return Ok(self.admitted(shared, stack_size, f));
        }
        Ok(self.admitted(shared, stack_size, f))
    }

    /// The spawn, once the fiber is admitted: its record, queued.
    #[track_caller]
    fn admitted<F, T>(
        self,
        shared: &Arc<Shared>,
        stack_size: Option<NonZeroUsize>,
        f: F,
    ) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let entry = Entry::new(move |start| -> Output {
            match start {
                Start::Run => catch_unwind(AssertUnwindSafe(f))
                    .map(|value| Box::new(value) as Box<dyn std::any::Any + Send>)
                    .map_err(JoinError::from_panic),
                // The closure is dropped here, before the fiber completes:
                // `block_on` lets it borrow its caller's stack, and returns
                // once the fiber has completed.
                Start::Cancelled => {
                    drop(f);
                    Err(JoinError::cancelled())
                }
                Start::NoStack(error) => {
                    drop(f);
                    Err(JoinError::no_stack(error))
                }
            }
        });
        let inner = FiberInner::spawned(
            shared,
            self.name.map(Into::into),
            std::panic::Location::caller(),
            stack_size,
            entry,
        );

        let fiber = Fiber {
            inner: ManuallyDrop::new(inner.clone()),
        };
        Shared::schedule_spawned(inner);
        JoinHandle::new(fiber)
    }
}

/// Why a fiber could not be spawned. Nothing was started; the closure was
/// dropped.
#[derive(Debug)]
pub enum SpawnError {
    /// The runtime already holds as many live fibers as it may.
    Limit {
        /// The limit that was reached.
        limit: usize,
        /// Which limit it is.
        kind: LimitKind,
    },
    /// The runtime is shutting down.
    Shutdown,
    /// No stack can be had: the stack pool cannot grow (the OS refused
    /// memory for more stacks) and every stack it has is in use. Fibers
    /// must finish first; a spawn after that succeeds again.
    OutOfStacks {
        /// Why the pool could not grow.
        error: std::io::Error,
    },
    /// The fiber asked for a stack larger than any the runtime can give
    /// ([`Builder::stack_size`]).
    StackSize {
        /// The usable bytes asked for.
        requested: usize,
        /// The most a stack may have: a stack and its guard page must fit
        /// in one of the stack pool's reservations.
        largest: usize,
    },
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::Limit { limit, kind: LimitKind::MaxFibers } => write!(
                f,
                "no stack can be had: the runtime's limit of {limit} live fibers (Builder::max_fibers) is reached"
            ),
            SpawnError::Limit { limit, kind: LimitKind::MappingBudget { max_map_count } } => write!(
                f,
                "no guarded stack can be had: this kernel refuses MADV_GUARD_INSTALL (Linux < 6.13), so each \
                 stack's guard page costs 2 of the process's vm.max_map_count = {max_map_count} memory mappings, \
                 and the budget of {limit} stacks is used up. Ways out: run on Linux 6.13 or newer (guards then \
                 cost no mappings), or raise the limit, e.g. `sysctl -w vm.max_map_count={}`",
                max_map_count.saturating_mul(4)
            ),
            SpawnError::Shutdown => write!(f, "the runtime is shutting down"),
            SpawnError::OutOfStacks { error } => write!(
                f,
                "no stack can be had: the stack pool cannot grow ({error}) and every stack it \
                 has is in use; spawn again once fibers have finished"
            ),
            SpawnError::StackSize { requested, largest } => write!(
                f,
                "a stack of {requested} bytes cannot be had: fiber::Builder::stack_size takes at most \
                 {largest} bytes (a stack and its guard page must fit one of the stack pool's reservations)"
            ),
        }
    }
}

impl std::error::Error for SpawnError {}

/// Which limit stopped a spawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    /// The runtime's own limit, [`crate::Builder::max_fibers`].
    MaxFibers,
    /// The guarded-stack budget on a kernel without `MADV_GUARD_INSTALL`:
    /// each guard costs two of the `vm.max_map_count` mappings.
    MappingBudget {
        /// The kernel's `vm.max_map_count` when the runtime started.
        max_map_count: usize,
    },
}
