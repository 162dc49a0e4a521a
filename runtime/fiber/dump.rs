//! Fiber dumps: [`Runtime::dump`](crate::Runtime::dump) lists the runtime's
//! live fibers (id, name, state, where each was spawned) with a backtrace
//! of every parked one, taken on its own stack.
//!
//! # What is listed
//! The fibers that have *started* and not finished: exactly those with a
//! stack, found through the stack pool's slot registry (`stack/registry.rs`). A
//! fiber that was spawned but has not run yet has no stack and sits only in
//! a run queue; queues cannot be walked without taking them from the
//! workers, so those are only counted ([`FiberDump::unstarted`], the live
//! count minus the fibers listed, read a moment apart: an estimate). A
//! registry of *all* fibers would cost every spawn a locked insert and
//! every finish a locked removal, which is the hot path this module must
//! stay out of. How long a fiber has been in its state is not shown: that
//! would need a clock read on every park.
//!
//! # Reading a fiber that may finish meanwhile
//! The registry holds plain pointers (the fiber's scheduling reference
//! keeps it alive while started, see "Ownership" on `FiberInner`), so a
//! fiber read from it could finish and be freed before the dump
//! dereferences it. The dump therefore *claims* each registry cell (sets
//! its low bit with a compare-and-swap) while it takes an `Arc` of its own
//! (`StackPool::for_each_started`), and a finishing fiber's worker clears
//! its cell with a compare-and-swap that waits out a claim
//! (`Stack::clear_owner`). From then on the dump holds real references,
//! and the fibers may finish, park and wake as they like: each is only
//! looked at through its state word.
//!
//! The cost on the hot path is that compare-and-swap in place of a plain
//! store, once per fiber finish (spawn + join measured before and after in
//! `docs/decisions.md`, "Runtime::dump"). Rejected: a lock around the registry (every start
//! and finish would take it); stopping the workers at a safe point (a
//! fiber that never yields would hang the dump, just when it is most
//! wanted); hazard pointers with `membarrier(2)` (no atomic on the finish
//! path at all, but a system call and much subtler code for a cost we
//! could not measure).
//!
//! # Backtraces of parked fibers
//! A parked fiber's stack is suspended mid-call, so its backtrace must be
//! taken *on* that stack, by the unwinder, with the fiber's registers in
//! place. The dump does it like this:
//!
//! 1. It wins PARKED → DUMPING (`State::begin_dump`). Now nobody else may
//!    resume the fiber; an unpark that comes meanwhile finds it held and
//!    leaves the token, exactly as when it lands while a fiber is switching
//!    out to park.
//! 2. It resumes the fiber on its own thread with `Resume::Dump`, carrying a
//!    pointer to a slot in the dumper's frame.
//! 3. The fiber wakes inside `fiber::suspend`, which calls
//!    [`capture_here`]: if enough stack is left
//!    ([`CAPTURE_STACK_NEEDED`]) it runs `Backtrace::force_capture` (which
//!    records return addresses only; symbols are resolved later, on the
//!    dumper's stack, when the dump is printed), stores it in the slot and
//!    suspends again, still inside `park`. `park` does not return: the user's
//!    code sees no wake-up at all.
//! 4. The dumper ends the dump (`State::end_dump`): DUMPING → PARKED, or, if
//!    an unpark left the token meanwhile, → SCHEDULED, and the dumper queues
//!    the fiber in the unparker's stead. No wake-up is lost.
//!
//! Fibers that are running or queued are listed without a backtrace: their
//! stacks belong to a worker right now. Dumps are serialised by a process
//! lock, so two never compete for one fiber.

use std::backtrace::Backtrace;
use std::fmt;
use std::panic::Location;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use super::context::{Resume, Suspend};
use super::state::{Phase, Unparked};
use super::{clone_raw, FiberId, FiberInner, Running, CURRENT};
use crate::lock::MutexExt;
use crate::scheduler::Shared;

/// Stack a backtrace capture needs below the parked fiber's frame, with
/// room to spare: three times what a first capture was measured to touch,
/// rounded up to pages (`docs/decisions.md`). A fiber with less left is
/// reported, not captured ([`NotCaptured::StackLow`]): overflowing its
/// guard page would abort the process.
pub const CAPTURE_STACK_NEEDED: usize = 16 * 1024;

/// What a [`Runtime::dump`](crate::Runtime::dump) found: the started,
/// unfinished fibers of one runtime at one moment, ordered by id.
///
/// `Display` prints a listing in the spirit of Go's goroutine dump.
///
/// ```
/// let rt = spindle::Runtime::new().unwrap();
/// let (tx, rx) = spindle::sync::mpsc::channel::<()>();
/// let waiting = spindle::fiber::Builder::new()
///     .name("waiting")
///     .spawn_on(&rt, move || rx.recv().is_err())
///     .unwrap();
/// // Wait until it has parked in `recv`.
/// let dump = loop {
///     let dump = rt.dump();
///     if dump.fibers.iter().any(|f| f.state == spindle::fiber::FiberState::Parked) {
///         break dump;
///     }
///     std::thread::yield_now();
/// };
/// let fiber = &dump.fibers[0];
/// assert_eq!(fiber.name.as_deref(), Some("waiting"));
/// assert!(fiber.backtrace.is_some());
/// println!("{dump}");
/// drop(tx);
/// assert!(waiting.join().unwrap());
/// ```
#[derive(Debug)]
pub struct FiberDump {
    /// The fibers that have started and not finished, by id.
    pub fibers: Vec<DumpedFiber>,
    /// About how many more fibers were spawned and have not started yet
    /// (they have no stack and are not listed; see the module docs). The
    /// runtime's live count minus `fibers.len()`, read a moment apart.
    pub unstarted: usize,
    /// Parked fibers that an unpark woke while this dump held them for
    /// their backtrace; the dump queued them in the unparker's stead (the
    /// wake-up is delivered, not lost).
    pub woken_during_dump: usize,
}

/// One fiber in a [`FiberDump`].
#[derive(Debug)]
pub struct DumpedFiber {
    /// Its id.
    pub id: FiberId,
    /// Its name, if it was given one ([`crate::fiber::Builder::name`]).
    pub name: Option<String>,
    /// What it was doing when the dump looked.
    pub state: FiberState,
    /// The source line of the spawn call that made it (`spawn`,
    /// `Runtime::spawn`, `Builder::spawn`, `block_on`, ...).
    pub spawned_at: &'static Location<'static>,
    /// For a parked fiber, its stack (or why it was not taken); `None` for
    /// the others.
    pub backtrace: Option<StackTrace>,
}

/// A fiber's state as a dump saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FiberState {
    /// In a run queue, waiting for a worker.
    Runnable,
    /// On a worker right now (or being switched in or out).
    Running,
    /// Suspended in `park` (inside `join`, a lock, a channel, a sleep...).
    Parked,
}

impl fmt::Display for FiberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FiberState::Runnable => "runnable",
            FiberState::Running => "running",
            FiberState::Parked => "parked",
        })
    }
}

/// The stack of a parked fiber in a [`FiberDump`].
#[derive(Debug)]
pub enum StackTrace {
    /// Taken on the fiber's own stack, at its park point. `Display` shows
    /// the frames from the caller of `park` down to the fiber's root
    /// closure; the `Backtrace` itself has them all (with the runtime's and
    /// the dumper's frames around them).
    Captured(Backtrace),
    /// Not taken, and why.
    NotCaptured(NotCaptured),
}

/// Why a parked fiber's backtrace was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotCaptured {
    /// Too little stack was left below the park point to run the unwinder
    /// safely.
    StackLow {
        /// Bytes left between the park point and the guard page.
        left: usize,
        /// What a capture needs ([`CAPTURE_STACK_NEEDED`]).
        needed: usize,
    },
    /// The unwinder panicked.
    Failed,
}

impl fmt::Display for NotCaptured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotCaptured::StackLow { left, needed } => write!(
                f,
                "not captured: {} KiB of stack left, a capture needs {} KiB",
                left / 1024,
                needed / 1024
            ),
            NotCaptured::Failed => f.write_str("not captured: the unwinder failed"),
        }
    }
}

/// The pointer a dump passes to the fiber in `Resume::Dump`: where to put
/// what it captured. It points into the dumper's frame, which waits in
/// `resume` while the fiber writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Request(NonNull<Option<StackTrace>>);

/// Runs on a parked fiber's own stack, on the dumper's thread, when a dump
/// resumes it (`fiber::suspend`): captures the backtrace into the request.
#[inline(never)]
pub(super) fn capture_here(fiber: &FiberInner, request: Request) {
    let marker = 0u8;
    let here = std::ptr::addr_of!(marker) as usize;
    // The dumper holds the fiber DUMPING, which grants what RUNNING does:
    // `guard` is ours to read.
    let limit = fiber.guard.get() + crate::sys::memory::page_size();
    let left = here.saturating_sub(limit);
    let captured = if left < CAPTURE_STACK_NEEDED {
        StackTrace::NotCaptured(NotCaptured::StackLow {
            left,
            needed: CAPTURE_STACK_NEEDED,
        })
    } else {
        match std::panic::catch_unwind(Backtrace::force_capture) {
            Ok(backtrace) => StackTrace::Captured(backtrace),
            Err(_) => StackTrace::NotCaptured(NotCaptured::Failed),
        }
    };
    // SAFETY: the slot is in the frame of `capture_parked`, which is blocked
    // in `resume` until we suspend, and nothing else touches it.
    unsafe { *request.0.as_ptr() = Some(captured) };
}

/// `Runtime::dump`: see the module docs.
pub(crate) fn dump(shared: &Shared) -> FiberDump {
    /// One dump at a time (per process): a dump never meets a fiber that
    /// another dump holds DUMPING.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock_unpoisoned();

    let live = shared.live_fibers();
    let mut held: Vec<Arc<FiberInner>> = Vec::with_capacity(live + 16);
    shared.stacks.for_each_started(|owner| {
        let fiber = owner.as_ptr() as *const FiberInner;
        // ("Ownership" on FiberInner.) The cell is claimed, so the fiber is
        // started and cannot finish until we let go: its scheduling
        // reference keeps it alive, and we add a reference of our own.
        // SAFETY: so `fiber` points into a live Arc<FiberInner>.
        held.push(unsafe { clone_raw(fiber) });
    });
    // A capture that overflowed would fault on the fiber's guard page with
    // this thread's registers; the handler needs an alternate stack to
    // report it (workers have one; a plain thread may not).
    let _alt_stack = crate::sys::signal::AltStack::ensure().ok().flatten();

    let mut fibers = Vec::with_capacity(held.len());
    let mut woken_during_dump = 0;
    for fiber in &held {
        let mut backtrace = None;
        let state = match fiber.state.phase() {
            Phase::Scheduled => FiberState::Runnable,
            Phase::Running => FiberState::Running,
            Phase::Parked => match capture_parked(fiber) {
                Some((trace, woken)) => {
                    backtrace = Some(trace);
                    woken_during_dump += usize::from(woken);
                    FiberState::Parked
                }
                // Woken before we could hold it: list it as it is now.
                None => match fiber.state.phase() {
                    Phase::Parked | Phase::Dumping => FiberState::Parked,
                    Phase::Scheduled => FiberState::Runnable,
                    Phase::Running => FiberState::Running,
                    Phase::Done => continue,
                },
            },
            // Dumps are serialised, so no other dump holds it.
            Phase::Dumping => FiberState::Parked,
            // Finished since we took our reference.
            Phase::Done => continue,
        };
        fibers.push(DumpedFiber {
            id: fiber.id,
            name: fiber.name.as_deref().map(str::to_owned),
            state,
            spawned_at: fiber.location,
            backtrace,
        });
    }
    // Our references go here; a fiber that finished meanwhile may be freed
    // now, on this thread.
    drop(held);
    fibers.sort_by_key(|fiber| fiber.id);
    FiberDump {
        unstarted: shared.live_fibers().saturating_sub(fibers.len()),
        fibers,
        woken_during_dump,
    }
}

/// Takes a parked fiber's backtrace on its stack (steps 1–4 of the module
/// docs), and whether an unpark came meanwhile (then the fiber is queued
/// now). `None` if it was no longer parked.
fn capture_parked(fiber: &Arc<FiberInner>) -> Option<(StackTrace, bool)> {
    if !fiber.state.begin_dump() {
        return None;
    }
    let mut slot: Option<StackTrace> = None;
    // SAFETY: we hold the fiber DUMPING, which like RUNNING gives this
    // thread alone the right to touch `context`; its code is suspended.
    let context = unsafe { &mut *fiber.context.get() };
    let context = context.as_mut().expect("a parked fiber has started");
    // As `run_slice` does: the overflow handler and the fiber's own code
    // find the fiber running here through CURRENT.
    let previous = CURRENT.replace(Running {
        fiber: Arc::as_ptr(fiber),
        guard: fiber.guard.get(),
    });
    let suspended = context.resume(Resume::Dump(Request(NonNull::from(&mut slot))));
    CURRENT.set(previous);
    debug_assert_eq!(suspended, Some(Suspend::Park), "a dumped fiber parks again");
    let trace = slot.expect("the fiber fills the slot before it suspends");
    let woken = fiber.state.end_dump() == Unparked::MustSchedule;
    if woken {
        // Winning PARKED → DUMPING made the parked fiber's scheduling
        // reference ours to hand on ("Ownership" on FiberInner).
        // SAFETY: and end_dump has just made it SCHEDULED: it goes to a
        // run queue, as an unparker's would.
        let scheduling_reference = unsafe { Arc::from_raw(Arc::as_ptr(fiber)) };
        Shared::schedule(scheduling_reference);
    }
    Some((trace, woken))
}

impl fmt::Display for FiberDump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |state| self.fibers.iter().filter(|x| x.state == state).count();
        writeln!(
            f,
            "spindle fiber dump: {} started fibers ({} running, {} runnable, {} parked); \
             about {} more spawned and not started",
            self.fibers.len(),
            count(FiberState::Running),
            count(FiberState::Runnable),
            count(FiberState::Parked),
            self.unstarted
        )?;
        for fiber in &self.fibers {
            writeln!(f)?;
            write!(f, "{fiber}")?;
        }
        Ok(())
    }
}

impl fmt::Display for DumpedFiber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fiber {}", self.id)?;
        if let Some(name) = &self.name {
            write!(f, " \"{name}\"")?;
        }
        writeln!(f, " [{}], spawned at {}", self.state, self.spawned_at)?;
        if let Some(trace) = &self.backtrace {
            write!(f, "{trace}")?;
        }
        Ok(())
    }
}

impl fmt::Display for StackTrace {
    /// The frames the user wrote: from the caller of `park` (the runtime's
    /// capture frames dropped) down to the fiber's root closure (the
    /// runtime's entry frames, and the dumper's own stack beyond them,
    /// dropped), numbered from 0 and indented. Falls back to every frame
    /// when symbols are missing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backtrace = match self {
            StackTrace::Captured(backtrace) => backtrace,
            StackTrace::NotCaptured(why) => return writeln!(f, "    ({why})"),
        };
        let text = backtrace.to_string();
        let mut number = 0;
        for line in user_frames(&text) {
            match line.split_once(": ") {
                // A frame's first line: renumbered from 0.
                Some((_, symbol)) if !line.starts_with("at ") => {
                    writeln!(f, "    {number}: {symbol}")?;
                    number += 1;
                }
                _ => writeln!(f, "        {line}")?,
            }
        }
        Ok(())
    }
}

/// Splits std's backtrace text (`  N: symbol` lines, each followed by
/// `at file:line` lines) into frames and keeps the user's part (see
/// `StackTrace`'s `Display`).
fn user_frames(text: &str) -> Vec<&str> {
    let mut frames: Vec<(&str, Vec<&str>)> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let is_header = trimmed
            .split_once(": ")
            .is_some_and(|(number, _)| number.chars().all(|c| c.is_ascii_digit()));
        if is_header || frames.is_empty() {
            let symbol = trimmed.split_once(": ").map_or(trimmed, |(_, s)| s);
            frames.push((symbol, vec![line.trim()]));
        } else if let Some(frame) = frames.last_mut() {
            frame.1.push(line.trim());
        }
    }
    // The runtime's frames above the user's: the capture and the park.
    // Symbols are full paths with full debug info, bare names with
    // `line-tables-only` (release builds), so frames are matched by their
    // last path segment, and the root also by its file.
    let Some(capture) = frames
        .iter()
        .position(|(symbol, _)| base_name(symbol) == "capture_here")
    else {
        return frames
            .iter()
            .flat_map(|(_, lines)| lines.iter().copied())
            .collect();
    };
    let mut first = capture + 1;
    while frames.get(first).is_some_and(|(symbol, _)| {
        matches!(
            base_name(symbol).as_str(),
            "suspend" | "park" | "park_timeout"
        )
    }) {
        first += 1;
    }
    // The root: everything from the spawn wrapper (or fiber_main) down.
    let mut end = frames[first..]
        .iter()
        .position(|(symbol, lines)| {
            symbol.starts_with("spindle::fiber::spawn::")
                || base_name(symbol) == "fiber_main"
                || lines.iter().any(|line| line.contains("fiber/spawn.rs:"))
        })
        .map_or(frames.len(), |offset| first + offset);
    // The catch_unwind frames between the root closure and the wrapper.
    while end > first + 1 {
        let symbol = frames[end - 1].0;
        let wrapper = matches!(
            base_name(symbol).as_str(),
            "__rust_try" | "call_once" | "do_call" | "catch_unwind" | "try"
        ) || symbol.starts_with("std::panicking::")
            || symbol.starts_with("std::panic::")
            || symbol.starts_with("core::ops::function::");
        if !wrapper {
            break;
        }
        end -= 1;
    }
    frames[first..end]
        .iter()
        .flat_map(|(_, lines)| lines.iter().copied())
        .collect()
}

/// A symbol's last path segment without generic arguments:
/// `catch_unwind<T, fn() -> U>` and `std::panic::catch_unwind::<T>` give
/// `catch_unwind`, `<A<F> as FnOnce<()>>::call_once` gives `call_once`.
fn base_name(symbol: &str) -> String {
    // Drop every `<...>` group (a `>` of `->` closes nothing).
    let mut path = String::with_capacity(symbol.len());
    let mut depth = 0usize;
    let mut previous = ' ';
    for c in symbol.chars() {
        match c {
            '<' => depth += 1,
            '>' if previous != '-' => depth = depth.saturating_sub(1),
            _ if depth == 0 => path.push(c),
            _ => {}
        }
        previous = c;
    }
    let path = path.trim_end_matches("::");
    path.rsplit("::").next().unwrap_or(path).to_owned()
}

#[cfg(test)]
mod tests {
    use super::{base_name, user_frames};

    #[test]
    fn base_names() {
        assert_eq!(
            base_name("spindle::fiber::dump::capture_here"),
            "capture_here"
        );
        assert_eq!(base_name("capture_here"), "capture_here");
        assert_eq!(
            base_name("catch_unwind<std::backtrace::Backtrace, fn() -> std::backtrace::Backtrace>"),
            "catch_unwind"
        );
        assert_eq!(
            base_name("<core::panic::unwind_safe::AssertUnwindSafe<F> as core::ops::function::FnOnce<()>>::call_once"),
            "call_once"
        );
        assert_eq!(
            base_name("std::panic::catch_unwind::<T, U>"),
            "catch_unwind"
        );
        assert_eq!(
            base_name("{closure#0}<dump::main::{closure_env#0}, u32>"),
            "{closure#0}"
        );
    }

    #[test]
    fn user_frames_with_bare_names_from_line_tables_only() {
        let text =
            "   3: catch_unwind<fn() -> std::backtrace::Backtrace, std::backtrace::Backtrace>
             at /rustc/library/std/src/panic.rs:359:14
   4: capture_here
             at ./runtime/fiber/dump.rs:227:15
   5: suspend
             at ./runtime/fiber/mod.rs:295:9
   6: park
             at ./runtime/fiber/mod.rs:500:5
   7: park_until
             at ./runtime/time/mod.rs:62:5
   8: app::wait_here
             at ./src/main.rs:10:5
   9: {closure#0}
             at ./src/main.rs:20:9
  10: call_once<u32, app::main::{closure_env#0}>
             at /rustc/library/core/src/panic/unwind_safe.rs:274:9
  11: catch_unwind<u32, core::panic::unwind_safe::AssertUnwindSafe<app::main::{closure_env#0}>>
             at /rustc/library/std/src/panic.rs:359:14
  12: {closure#0}<app::main::{closure_env#0}, u32>
             at /home/me/.cargo/registry/src/spindle-rt-0.1.0/runtime/fiber/spawn.rs:158:31
  13: fiber_main
";
        assert_eq!(
            user_frames(text),
            [
                "7: park_until",
                "at ./runtime/time/mod.rs:62:5",
                "8: app::wait_here",
                "at ./src/main.rs:10:5",
                "9: {closure#0}",
                "at ./src/main.rs:20:9"
            ]
        );
    }

    #[test]
    fn user_frames_drop_the_runtime_around_the_user_code() {
        let text = "   0: std::backtrace::Backtrace::force_capture
             at /rustc/library/std/src/backtrace.rs:312:9
   1: __rust_try
   2: spindle::fiber::dump::capture_here
   2: spindle::fiber::park
             at ./runtime/fiber/mod.rs:500:5
   3: app::wait_here
             at ./src/main.rs:10:5
   4: app::main::{{closure}}
             at ./src/main.rs:20:9
   5: std::panicking::try::do_call
   6: __rust_try
   6: std::panic::catch_unwind
   7: spindle::fiber::spawn::Builder::spawn_in::{{closure}}
   8: spindle::fiber::fiber_main
   9: app::main
";
        assert_eq!(
            user_frames(text),
            [
                "3: app::wait_here",
                "at ./src/main.rs:10:5",
                "4: app::main::{{closure}}",
                "at ./src/main.rs:20:9"
            ]
        );
    }

    #[test]
    fn user_frames_keep_everything_without_symbols() {
        let text = "   0: <unknown>\n   1: <unknown>\n";
        assert_eq!(user_frames(text), ["0: <unknown>", "1: <unknown>"]);
    }
}
