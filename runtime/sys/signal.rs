//! Stack-overflow reporting: an alternate signal stack per fiber-running
//! thread and a `SIGSEGV` handler that recognises a hit on a fiber's guard.
//!
//! A fiber that overflows its stack touches the guard page below it and the
//! kernel raises `SIGSEGV`. The handler cannot run on the overflowed stack, so
//! every thread that runs fibers has an alternate signal stack
//! ([`AltStack`]). The handler asks the fiber layer (the `classify` function
//! given to [`install_overflow_handler`]) whether the faulting address is the
//! running fiber's guard; if so, that function prints
//! `fiber '<name>' (id N) has overflowed its stack of N KiB` and aborts, as
//! std does for threads. Any other fault is passed to the handler that was
//! installed before ours (std's own overflow handler in a Rust program), or
//! the default action is restored and the faulting instruction runs again,
//! so other crashes keep their usual behaviour (a core dump, `SIGSEGV` as the
//! exit status).
//!
//! Recovering from the overflow is deliberately not attempted: corosensei
//! could force the fiber to return, but the fiber may hold locks or half-
//! written shared state. Process-per-shard mode is how a crash is contained.

use std::io;
use std::sync::OnceLock;

use nix::sys::signal::{self as nix_signal, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// Decides whether a fault at an address is a fiber stack overflow, and if so
/// reports it and aborts (it does not return in that case). Runs inside the
/// signal handler: it must be async-signal-safe (no allocation, no locks).
pub(crate) type Classify = fn(fault_address: usize);

/// The action that was installed for `SIGSEGV` before ours, and our
/// classifier. Written once before the handler is installed, read-only after.
struct OverflowHandler {
    previous: libc::sigaction,
    classify: Classify,
}

// SAFETY: `sigaction` is plain old data (integers and function pointers) that
// is only read after it is published through the `OnceLock`.
unsafe impl Sync for OverflowHandler {}
// SAFETY: as above; moving the plain data between threads is harmless.
unsafe impl Send for OverflowHandler {}

static OVERFLOW_HANDLER: OnceLock<OverflowHandler> = OnceLock::new();

/// Installs the `SIGSEGV` handler once per process. Later calls do nothing.
pub(crate) fn install_overflow_handler(classify: Classify) {
    // The previous action is read before ours is installed, so the handler
    // always finds it: a raw `libc::sigaction` with a null new action, since
    // nix's `sigaction` always installs one.
    OVERFLOW_HANDLER.get_or_init(|| {
        // SAFETY: a zeroed sigaction is a valid "no flags, default" value.
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: querying the current action with a null new action only
        // writes into `previous`.
        unsafe { libc::sigaction(libc::SIGSEGV, std::ptr::null(), &mut previous) };
        OverflowHandler { previous, classify }
    });
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SA_SIGINFO comes with the `SigAction` handler kind.
        let action = SigAction::new(
            SigHandler::SigAction(on_segv),
            SaFlags::SA_ONSTACK,
            SigSet::empty(),
        );
        // SAFETY: `on_segv` makes only async-signal-safe calls and reads
        // `OVERFLOW_HANDLER`, which is set above.
        unsafe { nix_signal::sigaction(Signal::SIGSEGV, &action) }
            .expect("sigaction(SIGSEGV) failed");
    });
}

extern "C" fn on_segv(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let address = unsafe { (*info).si_addr() } as usize;
    let Some(ours) = OVERFLOW_HANDLER.get() else {
        return;
    };
    // Aborts the process if this was a fiber's guard page.
    (ours.classify)(address);

    // Not a fiber overflow: hand the fault to whoever handled it before us.
    let previous = &ours.previous;
    let handler = previous.sa_sigaction;
    if handler != libc::SIG_DFL
        && handler != libc::SIG_IGN
        && previous.sa_flags & libc::SA_SIGINFO != 0
    {
        type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);
        // SAFETY: the previous handler was installed with SA_SIGINFO, so it
        // has this signature; we pass it the arguments the kernel gave us.
        let previous_handler: Handler = unsafe { std::mem::transmute(handler) };
        previous_handler(signal, info, context);
    } else {
        // Restore the old action and return: the faulting instruction runs
        // again and the fault takes its usual course (default: core dump).
        // SAFETY: `previous` is a valid sigaction read from the kernel.
        unsafe { libc::sigaction(libc::SIGSEGV, previous, std::ptr::null_mut()) };
    }
}

/// Writes bytes to standard error with `write(2)`: async-signal-safe.
pub(crate) fn write_stderr(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid readable slice for its whole length.
        let written =
            unsafe { libc::write(libc::STDERR_FILENO, bytes.as_ptr().cast(), bytes.len()) };
        if written <= 0 {
            return;
        }
        bytes = &bytes[written as usize..];
    }
}

/// Ends the process at once with `SIGABRT`, as std does after a stack
/// overflow.
pub(crate) fn abort() -> ! {
    std::process::abort()
}

/// A thread's alternate signal stack, so the `SIGSEGV` handler can run after
/// the thread's (or fiber's) own stack has overflowed. Dropping it disables
/// and frees the alternate stack; it must be dropped on the thread that made
/// it.
pub(crate) struct AltStack {
    /// Lowest address of the mapping (a guard page, then the signal stack).
    base: std::ptr::NonNull<u8>,
    len: usize,
}

/// Size of the alternate signal stack. The handler formats one line and
/// aborts; a guess that leaves room for the previous handler we chain to.
const ALT_STACK_SIZE: usize = 64 * 1024;

impl AltStack {
    /// Gives the calling thread an alternate signal stack unless it has one
    /// (std gives one to the threads it creates once its own handler is
    /// installed). Returns `None` when the thread already had one.
    pub(crate) fn ensure() -> io::Result<Option<AltStack>> {
        // SAFETY: zeroed is a valid stack_t to receive the current state.
        let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: a null new stack only queries into `current`.
        if unsafe { libc::sigaltstack(std::ptr::null(), &mut current) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if current.ss_flags & libc::SS_DISABLE == 0 {
            return Ok(None);
        }
        let page = super::memory::page_size();
        let len = page + ALT_STACK_SIZE;
        let base = super::memory::reserve(len)?;
        // SAFETY: the first page of our fresh mapping holds nothing.
        let guarded =
            unsafe { super::memory::install_guard(base, page, super::memory::probe_guard_kind()) };
        if let Err(error) = guarded {
            // SAFETY: the mapping made above, unused.
            unsafe { super::memory::release(base, len) };
            return Err(error);
        }
        let stack = libc::stack_t {
            // SAFETY: `page < len`, so this stays inside the mapping.
            ss_sp: unsafe { base.as_ptr().add(page) }.cast(),
            ss_flags: 0,
            ss_size: ALT_STACK_SIZE,
        };
        // SAFETY: `stack` describes memory we own for the thread's lifetime
        // (it is freed in Drop, after being disabled).
        if unsafe { libc::sigaltstack(&stack, std::ptr::null_mut()) } != 0 {
            let error = io::Error::last_os_error();
            // SAFETY: the mapping made above, unused.
            unsafe { super::memory::release(base, len) };
            return Err(error);
        }
        Ok(Some(AltStack { base, len }))
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let disable = libc::stack_t {
            ss_sp: std::ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: disabling the calling thread's alternate stack is always
        // allowed; we are not running on it (we are not in a handler).
        unsafe { libc::sigaltstack(&disable, std::ptr::null_mut()) };
        // SAFETY: the mapping made in `ensure`, no longer the signal stack.
        unsafe { super::memory::release(self.base, self.len) };
    }
}
