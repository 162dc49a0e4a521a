//! The process's panic hook: the runtime's part, installed once per
//! process in front of the hook that was there, which it then calls.
//!
//! Like the `SIGSEGV` handler (`signal.rs`), the hook is process-wide
//! state the runtime must share with the program: it is installed at the
//! first runtime's start, takes the hook installed before (std's default,
//! or the program's), and hands every panic to it, so every panic is still
//! printed as before. The runtime's part ([`Intercept`], given by the
//! fiber layer) decides only where: for a fiber being unwound at shutdown,
//! on the stack of the thread that unwinds it (the fiber's may be nearly
//! used up); and for one panic not at all: a destructor panicking during
//! that unwind, which would abort the process, freezes the fiber instead,
//! and the hook does not return (`fiber/cancel.rs`).
//!
//! A hook the program installs later replaces this one (std keeps one
//! hook), and such a panic aborts again, as it does without spindle.

use std::panic::PanicHookInfo;
use std::sync::Once;

/// A panic hook, as std keeps it.
pub(crate) type Hook = dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static;

/// The runtime's part of the hook: given the panic and the hook that was
/// installed before, calls that hook, or (to freeze a fiber) never
/// returns.
pub(crate) type Intercept = fn(&PanicHookInfo<'_>, &Hook);

/// Installs the panic hook once per process: `intercept`, in front of the
/// hook that was there. Later calls do nothing; a call from a panicking
/// thread (std refuses to change the hook there) leaves it to the next
/// one.
pub(crate) fn install_panic_hook(intercept: Intercept) {
    static ONCE: Once = Once::new();
    if std::thread::panicking() {
        return;
    }
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| intercept(info, &*previous)));
    });
}
