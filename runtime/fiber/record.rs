//! The fiber record's memory: the parts that keep it small (the root
//! closure kept inside the record, [`Entry`], the result kept there too,
//! [`Value`], and a one-word name, [`FiberName`]), and the pools that
//! reuse finished records ([`RecordCache`], [`RecordPool`]).
//!
//! # Small
//! A million parked fibers hold a million records, so every word of
//! `FiberInner` costs a megabyte there, and every allocation at spawn is
//! paid a million times. A fiber's root closure usually captures a few
//! handles (a channel end, an `Arc` or two): when it fits in
//! [`INLINE_ENTRY`] bytes it is moved into the record itself, with one
//! function pointer that knows its type, instead of into a box of its own
//! (one allocation and one free fewer per fiber, and the record's
//! allocation is the same size class either way). A larger closure is
//! boxed, and the record keeps the box.
//!
//! The fiber's result travels back the same way: a [`Value`] of at most
//! [`INLINE_ENTRY`] bytes (a number, a pair of them, an `Arc`, a `Box`)
//! sits in the record's completion until the joiner takes it, so
//! `spawn(|| 6 * 7).join()` allocates nothing for its answer; a larger
//! result (a `String`, a `Vec`) is boxed. The allocation this saves is
//! made on the fiber's worker and freed on the joiner's, the pattern that
//! makes two workers contend for one malloc arena.
//!
//! Rejected: a record generic over the closure type (`FiberInner<F>`
//! behind a `dyn` pointer): every queue and handle would carry a fat
//! pointer, and the record's size would vary with the closure, so no two
//! fibers could share a size class for reuse.
//!
//! # Reused
//! A finished fiber's record is not freed when its last reference goes on
//! a worker of its runtime: it is emptied (its result, its fiber-local
//! table and its wait node dropped) and kept for the next spawn, as Go
//! keeps finished goroutines on free lists (`gfput`, `gfget`). A spawn then
//! costs no allocation, the finish no free, and neither touches the
//! runtime's reference count: a reused record keeps its runtime. Each
//! worker keeps up to [`RECORD_CACHE`] records in a [`RecordCache`] of its
//! own, no lock taken, and trades [`RECORD_BATCH`] at a time with the
//! runtime's [`RecordPool`]: a fiber spawning a burst on one worker takes
//! the records its fibers finished on another. Only a record whose last
//! reference is dropped on a worker is reused (the worker that ran it
//! last, or whoever drops the last handle there); elsewhere it is freed.
//!
//! The pool keeps every record it is given, so the fibers of one burst
//! leave their records to the next, and the monitor frees those that stay
//! unused for [`RECORD_AGE`], past [`RECORD_FLOOR`] and at most
//! [`RECORD_DECAY_BATCH`] a pass ([`RecordPool::decay`]), as it trims idle
//! stacks. Pooled records never raise the peak: a record is allocated
//! only when none is pooled, so live plus pooled records never exceed the
//! most that were live at once. Rejected: a pool of bounded size, freeing
//! the rest at once. As a burst ended, the finishing workers freed the
//! records the spawner had allocated, into the spawner's malloc arena,
//! contending for its lock; every later burst allocated them afresh.
//!
//! A pooled record holds its runtime (`FiberInner::shared`), and the
//! runtime holds the pool: each worker empties its cache when it exits at
//! shutdown and closes the pool ([`RecordPool::close`]), which frees what
//! the pool holds and refuses records from then on, so the runtime's
//! shared state is freed as before.
//!
//! Rejected: an allocator of our own for records (slabs): `Arc` allocates
//! from the global allocator on stable Rust, and a reference count of our
//! own would change every queue and handle.

use std::any::TypeId;
use std::collections::VecDeque;
use std::mem::{align_of, size_of, ManuallyDrop, MaybeUninit};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ages::Ages;
use super::join::Output;
use super::stack::DECAY_AGE;
use super::{FiberInner, Start};
use crate::lock::MutexExt;

/// Bytes of a root closure kept inside the fiber record; larger ones are
/// boxed. Two words: the record's allocation stays in the same malloc size
/// class as with none, and the usual closure (two captured handles) fits.
pub(crate) const INLINE_ENTRY: usize = 2 * size_of::<usize>();

/// Room for a closure of at most [`INLINE_ENTRY`] bytes and word alignment.
#[repr(C)]
struct Inline([MaybeUninit<usize>; INLINE_ENTRY / size_of::<usize>()]);

/// The root function of a fiber, type-erased: runs the user's closure (or
/// not, per [`Start`]) and returns the outcome for the `JoinHandle`. The
/// closure and everything it captured are gone when it returns.
///
/// # Invariants
/// `data` holds a live closure of the type `call` was made for (inline, or
/// a `Box` of it), until [`Entry::run`] or the drop consumes it.
pub(crate) struct Entry {
    /// Moves the closure out of `data` and runs it.
    call: unsafe fn(*mut Inline, Start) -> Output,
    data: Inline,
}

// The closure is `Send` (`Entry::new` requires it), and an `Entry` is
// touched by one thread at a time (the fiber's, or the runtime's before it
// starts).
// SAFETY: so moving it to another thread moves a `Send` value.
unsafe impl Send for Entry {}

impl Entry {
    /// The entry that runs `root`: inside the record if it fits, else boxed.
    pub(crate) fn new<F>(root: F) -> Entry
    where
        F: FnOnce(Start) -> Output + Send + 'static,
    {
        let mut data = Inline([MaybeUninit::uninit(); INLINE_ENTRY / size_of::<usize>()]);
        // Both branches are decided at compile time, per closure type.
        if fits_inline::<F>() {
            // SAFETY: `data` has room and alignment for an `F` (checked).
            unsafe { data.0.as_mut_ptr().cast::<F>().write(root) };
            Entry {
                call: call_inline::<F>,
                data,
            }
        } else {
            // SAFETY: a `Box` is one word, which `data` has room for.
            unsafe { data.0.as_mut_ptr().cast::<Box<F>>().write(Box::new(root)) };
            Entry {
                call: call_boxed::<F>,
                data,
            }
        }
    }

    /// Runs the root function with `start`, consuming it.
    pub(crate) fn run(self, start: Start) -> Output {
        let mut entry = ManuallyDrop::new(self);
        // SAFETY: `data` holds the closure `call` was made for (invariant);
        // `ManuallyDrop` keeps our drop from consuming it a second time.
        unsafe { (entry.call)(&mut entry.data, start) }
    }
}

impl Drop for Entry {
    /// An entry dropped without running (its record is freed unstarted)
    /// drops its closure as a cancelled start does.
    fn drop(&mut self) {
        // SAFETY: not run yet (`run` forgets the entry), so `data` holds
        // the closure (invariant); it is consumed once, here.
        drop(unsafe { (self.call)(&mut self.data, Start::Cancelled) });
    }
}

/// Moves an inline `F` out of `data` and runs it.
///
/// # Safety
/// `data` holds a live `F`, which this consumes.
unsafe fn call_inline<F: FnOnce(Start) -> Output>(data: *mut Inline, start: Start) -> Output {
    // SAFETY: the caller's promise; the read moves the closure out.
    let root = unsafe { data.cast::<F>().read() };
    root(start)
}

/// Moves a boxed `F` out of `data` and runs it.
///
/// # Safety
/// `data` holds a live `Box<F>`, which this consumes.
unsafe fn call_boxed<F: FnOnce(Start) -> Output>(data: *mut Inline, start: Start) -> Output {
    // SAFETY: the caller's promise; the read moves the box out.
    let root = unsafe { data.cast::<Box<F>>().read() };
    root(start)
}

/// A fiber's result, type-erased: `Box<dyn Any + Send>` without the box
/// when the value fits in [`INLINE_ENTRY`] bytes. [`Value::take`] checks
/// the type as `downcast` does.
///
/// # Invariants
/// `data` holds a live value of the type `kind` was made for: inline if
/// [`fits_inline`] says so for that type, else a `Box` of it; until
/// [`Value::take`] or the drop consumes it.
pub(crate) struct Value {
    kind: &'static ValueKind,
    data: Inline,
}

/// What a [`Value`] knows of its type.
struct ValueKind {
    type_id: fn() -> TypeId,
    /// Drops the value in `data` (inline or boxed, per its type).
    drop: unsafe fn(*mut Inline),
}

// A `Value` is made only of a `Send` value (`Value::new` requires it).
// SAFETY: so moving it to another thread moves a `Send` value.
unsafe impl Send for Value {}

/// Whether a `T` is kept inside an [`Entry`] or a [`Value`] rather than
/// boxed. Decided at compile time, per type, the same way by each `new`,
/// `take`, `run` and drop.
const fn fits_inline<T>() -> bool {
    size_of::<T>() <= size_of::<Inline>() && align_of::<T>() <= align_of::<Inline>()
}

impl Value {
    pub(crate) fn new<T: Send + 'static>(value: T) -> Value {
        let mut data = Inline([MaybeUninit::uninit(); INLINE_ENTRY / size_of::<usize>()]);
        let slot = data.0.as_mut_ptr();
        if fits_inline::<T>() {
            // SAFETY: `data` has room and alignment for a `T` (checked).
            unsafe { slot.cast::<T>().write(value) };
        } else {
            // SAFETY: a `Box` is one word, which `data` has room for.
            unsafe { slot.cast::<Box<T>>().write(Box::new(value)) };
        }
        Value {
            kind: const {
                &ValueKind {
                    type_id: TypeId::of::<T>,
                    drop: drop_value::<T>,
                }
            },
            data,
        }
    }

    /// The value, if it is a `T`; else `self` back, untouched.
    pub(crate) fn take<T: 'static>(self) -> Result<T, Value> {
        if (self.kind.type_id)() != TypeId::of::<T>() {
            return Err(self);
        }
        let mut value = ManuallyDrop::new(self);
        let slot = value.data.0.as_mut_ptr();
        // `ManuallyDrop` keeps our drop from dropping the value again.
        // SAFETY: `data` holds a `T` (its kind's type is `T`), inline or
        // boxed per `fits_inline` (invariant); the read moves it out.
        Ok(unsafe {
            if fits_inline::<T>() {
                slot.cast::<T>().read()
            } else {
                *slot.cast::<Box<T>>().read()
            }
        })
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        // SAFETY: `data` holds the value `kind` was made for (invariant);
        // it is consumed once, here.
        unsafe { (self.kind.drop)(&mut self.data) }
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Value { .. }")
    }
}

/// Drops the `T` in `data`, inline or boxed.
///
/// # Safety
/// `data` holds a live `T` as [`Value::new`] put it there; this consumes it.
unsafe fn drop_value<T>(data: *mut Inline) {
    let slot = data.cast::<MaybeUninit<usize>>();
    // SAFETY: the caller's promise, inline or boxed per `fits_inline`.
    unsafe {
        if fits_inline::<T>() {
            slot.cast::<T>().drop_in_place();
        } else {
            slot.cast::<Box<T>>().drop_in_place();
        }
    }
}

/// A fiber's name, in one word (most fibers have none).
#[derive(Default)]
pub(crate) struct FiberName(Option<Box<Box<str>>>);

impl FiberName {
    pub(crate) fn new(name: Option<Box<str>>) -> FiberName {
        FiberName(name.map(Box::new))
    }

    /// The name, if the fiber was given one.
    pub(crate) fn as_deref(&self) -> Option<&str> {
        self.0.as_deref().map(|name| &**name)
    }
}

impl std::fmt::Debug for FiberName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_deref().fmt(f)
    }
}

/// Finished records a worker keeps for its next spawns. Go's value for its
/// per-P list of free goroutines. Measured: reuse saves an allocation, a
/// free and two reference-count updates per spawn (see docs/decisions.md).
pub(crate) const RECORD_CACHE: usize = 64;

/// Records moved between a worker's cache and the runtime's pool at a time
/// (Go's value: half the cache), so the pool's lock is taken at most once
/// per `RECORD_BATCH` spawns or finishes.
pub(crate) const RECORD_BATCH: usize = 32;

/// Records the runtime's pool keeps however long they stay unused, for
/// the next burst of spawns; past it, records unused for [`RECORD_AGE`]
/// are freed. A guess: enough for a few batches per worker, a few hundred
/// kilobytes at most.
pub(crate) const RECORD_FLOOR: usize = 1024;

/// How long a record stays in the runtime's pool unused before the
/// monitor frees it (past [`RECORD_FLOOR`]): the stacks' age
/// ([`DECAY_AGE`]), since the burst that frees records frees stacks too,
/// and the next burst wants both.
pub(crate) const RECORD_AGE: Duration = DECAY_AGE;

/// Records one decay pass frees at most, so that the monitor, which makes
/// the pass, is back to watching the workers within milliseconds after a
/// million fibers finished at once; the rest wait for the next passes.
/// Measured: twice this many took up to twenty milliseconds a pass (see
/// docs/decisions.md).
pub(crate) const RECORD_DECAY_BATCH: usize = 32_768;

/// A worker's private stock of finished records (`FiberInner`, emptied),
/// each unique: no other reference to it exists. Owned by one worker
/// thread; no lock.
pub(crate) struct RecordCache {
    records: Vec<Arc<FiberInner>>,
}

impl RecordCache {
    pub(crate) fn new() -> RecordCache {
        RecordCache {
            records: Vec::new(),
        }
    }

    /// A record to reuse, from the cache or a batch from `pool`.
    #[inline]
    pub(crate) fn take(&mut self, pool: &RecordPool) -> Option<Arc<FiberInner>> {
        if self.records.is_empty() {
            pool.refill(&mut self.records);
        }
        self.records.pop()
    }

    /// Keeps an emptied, unique record. When the cache is full, returns a
    /// batch for the pool, which the caller passes to [`RecordPool::give`]
    /// once it no longer borrows the cache.
    #[inline]
    pub(crate) fn put(&mut self, record: Arc<FiberInner>) -> Option<Vec<Arc<FiberInner>>> {
        debug_assert_eq!(Arc::strong_count(&record), 1, "a kept record is unique");
        let spill = (self.records.len() >= RECORD_CACHE)
            .then(|| self.records.drain(..RECORD_BATCH).collect());
        self.records.push(record);
        spill
    }

    /// Whether a record put now stays in the cache without a spill.
    #[inline]
    pub(crate) fn has_room(&self) -> bool {
        self.records.len() < RECORD_CACHE
    }

    /// Takes every kept record (a worker that exits frees them).
    pub(crate) fn take_all(&mut self) -> Vec<Arc<FiberInner>> {
        std::mem::take(&mut self.records)
    }
}

/// The runtime's stock of finished records (`Arc<FiberInner>`, emptied,
/// each unique), shared by its workers; the monitor frees those that stay
/// unused past [`RECORD_AGE`] ([`RecordPool::decay`]). Generic only so
/// that its unit tests can fill it with something simpler.
pub(crate) struct RecordPool<R = Arc<FiberInner>> {
    list: Mutex<PoolList<R>>,
    /// How many records `list` holds, for a look without the lock: a
    /// burst of spawns finds the pool empty on every refill. Written
    /// under the lock; Relaxed: a stale value costs one lock or one
    /// missed reuse.
    len: AtomicUsize,
    /// Set at shutdown: the pool keeps nothing from then on. Written under
    /// the lock, so read exactly there; Relaxed: a stale `false` seen
    /// without the lock costs one record emptied for nothing, which `give`
    /// then frees.
    closed: AtomicBool,
}

/// Under the pool's lock.
struct PoolList<R> {
    /// The newest at the back: spawns take from the back (the records
    /// most likely still in a cache), the decay pass from the front.
    records: VecDeque<R>,
    /// How long each record of `records` has been pooled, in step with it.
    given: Ages,
}

impl<R> PoolList<R> {
    fn debug_check(&self) {
        debug_assert_eq!(
            self.given.len(),
            self.records.len(),
            "the ages cover every pooled record once"
        );
    }
}

impl<R> RecordPool<R> {
    pub(crate) fn new() -> RecordPool<R> {
        RecordPool {
            list: Mutex::new(PoolList {
                records: VecDeque::new(),
                given: Ages::new(),
            }),
            len: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        }
    }

    /// Whether the pool would keep a batch given now (a hint): until it
    /// closes, it keeps every one.
    #[inline]
    pub(crate) fn has_room(&self) -> bool {
        !self.closed.load(Ordering::Relaxed)
    }

    /// Moves up to [`RECORD_BATCH`] records into `into`, the newest first.
    fn refill(&self, into: &mut Vec<R>) {
        if self.len.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut list = self.list.lock_unpoisoned();
        let n = list.records.len().min(RECORD_BATCH);
        let from = list.records.len() - n;
        into.extend(list.records.drain(from..));
        list.given.forget_newest(n);
        self.len.store(list.records.len(), Ordering::Relaxed);
    }

    /// Takes a batch of emptied, unique records (frees them, outside the
    /// lock, once the pool is closed).
    pub(crate) fn give(&self, mut batch: Vec<R>) {
        let now = Instant::now();
        {
            let mut list = self.list.lock_unpoisoned();
            if !self.closed.load(Ordering::Relaxed) {
                list.given.push(now, batch.len());
                list.records.extend(batch.drain(..));
                self.len.store(list.records.len(), Ordering::Relaxed);
            }
        }
        drop(batch);
    }

    /// Frees the records unused for longer than [`RECORD_AGE`] at `now`,
    /// the oldest first, keeping [`RECORD_FLOOR`], at most
    /// [`RECORD_DECAY_BATCH`] of them (the monitor calls this on its
    /// rounds; the rest wait for the next). Frees outside the lock.
    pub(crate) fn decay(&self, now: Instant) {
        let old: Vec<R> = {
            let mut list = self.list.lock_unpoisoned();
            let old = list.given.older_than(RECORD_AGE, now);
            let n = old
                .min(list.records.len().saturating_sub(RECORD_FLOOR))
                .min(RECORD_DECAY_BATCH);
            if n == 0 {
                return;
            }
            list.given.forget_oldest(n);
            let old = list.records.drain(..n).collect();
            list.debug_check();
            self.len.store(list.records.len(), Ordering::Relaxed);
            old
        };
        drop(old);
    }

    /// How many records the pool holds (a snapshot).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Frees what the pool holds and refuses records from now on (each
    /// worker calls this as it exits at shutdown; see the module docs).
    pub(crate) fn close(&self) {
        let records = {
            let mut list = self.list.lock_unpoisoned();
            self.closed.store(true, Ordering::Relaxed);
            self.len.store(0, Ordering::Relaxed);
            list.given.clear();
            std::mem::take(&mut list.records)
        };
        drop(records);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// Counts its drops.
    struct Tracked(Arc<AtomicUsize>);

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn entry_of<const N: usize>(drops: &Arc<AtomicUsize>) -> Entry {
        let tracked = Tracked(drops.clone());
        let padding = [7u8; N];
        Entry::new(move |start| {
            let _keep = (&tracked, padding);
            match start {
                Start::Run => Ok(Value::new(padding.len())),
                _ => Err(super::super::join::JoinError::cancelled()),
            }
        })
    }

    #[test]
    fn small_and_large_closures_run_once_and_drop_once() {
        for inline in [true, false] {
            let drops = Arc::new(AtomicUsize::new(0));
            let entry = if inline {
                entry_of::<1>(&drops)
            } else {
                entry_of::<64>(&drops)
            };
            let output = entry.run(Start::Run).ok().unwrap();
            let len = output.take::<usize>().unwrap();
            assert_eq!(len, if inline { 1 } else { 64 });
            assert_eq!(drops.load(Ordering::Relaxed), 1, "inline: {inline}");

            let unrun = if inline {
                entry_of::<1>(&drops)
            } else {
                entry_of::<64>(&drops)
            };
            drop(unrun);
            assert_eq!(drops.load(Ordering::Relaxed), 2, "inline: {inline}");
        }
    }

    /// A result of `N` padding bytes and a drop counter.
    fn value_of<const N: usize>(drops: &Arc<AtomicUsize>) -> Value {
        Value::new((Tracked(drops.clone()), [N as u8; N]))
    }

    #[test]
    fn small_and_large_results_come_back_once_and_drop_once() {
        // One word of counter plus N bytes: N = 8 fits in two words.
        assert!(fits_inline::<(Tracked, [u8; 8])>());
        assert!(!fits_inline::<(Tracked, [u8; 64])>());
        assert!(fits_inline::<()>() && fits_inline::<Arc<u8>>());
        assert!(!fits_inline::<String>());
        assert_eq!(size_of::<Value>(), 3 * size_of::<usize>());

        let drops = Arc::new(AtomicUsize::new(0));
        let (tracked, padding) = value_of::<8>(&drops)
            .take::<(Tracked, [u8; 8])>()
            .ok()
            .unwrap();
        assert_eq!(padding, [8; 8]);
        assert_eq!(drops.load(Ordering::Relaxed), 0, "taken, not dropped");
        drop(tracked);
        let (tracked, padding) = value_of::<64>(&drops)
            .take::<(Tracked, [u8; 64])>()
            .ok()
            .unwrap();
        assert_eq!(padding, [64; 64]);
        drop(tracked);
        assert_eq!(drops.load(Ordering::Relaxed), 2);

        // Dropped untaken, inline and boxed.
        drop(value_of::<8>(&drops));
        drop(value_of::<64>(&drops));
        assert_eq!(drops.load(Ordering::Relaxed), 4);

        assert_eq!(
            Value::new(String::from("boxed"))
                .take::<String>()
                .ok()
                .unwrap(),
            "boxed"
        );
        assert!(Value::new(()).take::<()>().is_ok());
    }

    #[test]
    fn a_result_taken_as_another_type_is_refused_and_kept() {
        let drops = Arc::new(AtomicUsize::new(0));
        for (dropped, value) in [value_of::<8>(&drops), value_of::<64>(&drops)]
            .into_iter()
            .enumerate()
        {
            let refused = value.take::<u64>().unwrap_err();
            assert_eq!(
                drops.load(Ordering::Relaxed),
                dropped,
                "refused, not dropped"
            );
            drop(refused);
        }
        assert_eq!(drops.load(Ordering::Relaxed), 2);
        let refused = Value::new(7_u32).take::<u64>().unwrap_err();
        assert_eq!(refused.take::<u32>().ok(), Some(7));
    }

    /// `n` records for a pool's tests: drop counters standing in for
    /// `FiberInner`s.
    fn records(n: usize, drops: &Arc<AtomicUsize>) -> Vec<Tracked> {
        (0..n).map(|_| Tracked(drops.clone())).collect()
    }

    #[test]
    fn the_pool_keeps_a_whole_burst_and_hands_back_the_newest_first() {
        let pool = RecordPool::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let burst = 4 * RECORD_FLOOR;
        for _ in 0..burst / RECORD_BATCH {
            assert!(pool.has_room());
            pool.give(records(RECORD_BATCH, &drops));
        }
        assert_eq!(pool.len(), burst, "nothing freed past the floor");
        assert_eq!(drops.load(Ordering::Relaxed), 0);

        let mut cache = Vec::new();
        pool.refill(&mut cache);
        assert_eq!(cache.len(), RECORD_BATCH);
        assert_eq!(pool.len(), burst - RECORD_BATCH);
        pool.list.lock_unpoisoned().debug_check();
        drop(cache);
        assert_eq!(drops.load(Ordering::Relaxed), RECORD_BATCH);
    }

    #[test]
    fn decay_frees_only_records_past_their_age_and_keeps_the_floor() {
        let pool = RecordPool::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let old = RECORD_FLOOR + RECORD_DECAY_BATCH + 100;
        pool.give(records(old, &drops));
        let given = Instant::now();

        pool.decay(given);
        assert_eq!(drops.load(Ordering::Relaxed), 0, "young records stay");

        // Past their age: one pass frees at most a batch, the next the rest
        // down to the floor.
        let later = given + RECORD_AGE + Duration::from_millis(1);
        pool.decay(later);
        assert_eq!(drops.load(Ordering::Relaxed), RECORD_DECAY_BATCH);
        pool.decay(later);
        assert_eq!(drops.load(Ordering::Relaxed), old - RECORD_FLOOR);
        assert_eq!(pool.len(), RECORD_FLOOR);
        pool.decay(later);
        assert_eq!(pool.len(), RECORD_FLOOR, "the floor stays");

        // A younger batch is kept, and the floor keeps the newest records:
        // the old ones make room for it.
        std::thread::sleep(Duration::from_millis(2));
        let young_drops = Arc::new(AtomicUsize::new(0));
        pool.give(records(RECORD_BATCH, &young_drops));
        pool.decay(later);
        assert_eq!(pool.len(), RECORD_FLOOR);
        assert_eq!(
            drops.load(Ordering::Relaxed),
            old - RECORD_FLOOR + RECORD_BATCH
        );
        pool.decay(later + RECORD_AGE);
        assert_eq!(pool.len(), RECORD_FLOOR);
        assert_eq!(young_drops.load(Ordering::Relaxed), 0, "the newest stay");
        pool.list.lock_unpoisoned().debug_check();
    }

    #[test]
    fn a_closed_pool_frees_what_it_held_and_refuses_more() {
        let pool = RecordPool::new();
        let drops = Arc::new(AtomicUsize::new(0));
        pool.give(records(RECORD_BATCH, &drops));
        pool.close();
        assert_eq!(drops.load(Ordering::Relaxed), RECORD_BATCH);
        assert!(!pool.has_room());
        pool.give(records(RECORD_BATCH, &drops));
        assert_eq!(drops.load(Ordering::Relaxed), 2 * RECORD_BATCH);
        let mut cache = Vec::new();
        pool.refill(&mut cache);
        assert!(cache.is_empty());
    }

    #[test]
    fn names_read_back() {
        assert_eq!(FiberName::new(None).as_deref(), None);
        assert_eq!(FiberName::new(Some("io".into())).as_deref(), Some("io"));
        assert_eq!(size_of::<FiberName>(), size_of::<usize>());
    }
}
