//! Starting fibers on a given runtime: the fiber [`Builder`] and
//! [`SpawnError`]. Which runtime a spawn that names none goes to (the
//! calling fiber's, or the default runtime) is decided above, with the
//! default runtime: `crate::spawn`, `crate::try_spawn` and
//! `Builder::spawn` are defined in `default_runtime.rs`, as
//! `Builder::spawn_on` is in `runtime.rs`.
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
use std::sync::{Arc, OnceLock};

use super::join::{JoinError, JoinHandle, Output};
use super::record::Value;
use super::{Entry, Fiber, FiberInner, Start};
use crate::scheduler::Shared;

/// What a fiber spawned on a runtime takes from its spawner: given the
/// runtime, the code the new fiber runs first (on its own stack, before
/// its closure), or `None` for nothing.
pub(crate) type Inheritance = fn(&Arc<Shared>) -> Option<Box<dyn FnOnce() + Send>>;

/// The inheritance every spawn asks for, once a layer above has set it
/// (`test.rs`: a test's fibers inherit its panic mailbox). Unset, a spawn
/// pays one load for it.
static INHERITANCE: OnceLock<Inheritance> = OnceLock::new();

/// Sets what spawned fibers inherit from their spawners, once per process;
/// later calls do nothing. The layer above decides by the fiber's spawner
/// (the calling fiber) and the runtime; `fiber/` knows nothing of what is
/// inherited.
pub(crate) fn set_inheritance(inherit: Inheritance) {
    let _ = INHERITANCE.set(inherit);
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
        // What the new fiber inherits from its spawner, if a layer above
        // asks for that ([`set_inheritance`]). A separate instance, so
        // that the usual closure stays small enough to live inside the
        // record (`record.rs`).
        if let Some(prelude) = INHERITANCE.get().and_then(|inherit| inherit(shared)) {
            let f = move || {
                prelude();
                f()
            };
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
                    .map(Value::new)
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
