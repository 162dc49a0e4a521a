//! A hierarchical timing wheel: one worker's pending timers, inserted and
//! cancelled in constant time (`timers.rs` puts it under a lock and keeps
//! its earliest expiry where the worker loop can read it).
//!
//! # Ticks
//! Time is counted in ticks of `1 << TICK_SHIFT` nanoseconds since the
//! runtime's epoch. A deadline is rounded *up* to a tick, and a tick is
//! due once the clock has reached its start, so a timer fires within one
//! tick after its deadline and never before it.
//!
//! # Levels
//! [`LEVELS`] levels of [`SLOTS`] slots each: a slot of level 0 spans one
//! tick, a slot of level `l` spans `SLOTS^l` ticks, so level `l` as a whole
//! spans one slot of level `l + 1`, like the digits of a number in base
//! `SLOTS`. `elapsed` is the tick up to which every timer has fired; a
//! timer sits at the level of the highest digit in which its tick differs
//! from `elapsed`, in the slot that digit names. So the timers of a level
//! all lie ahead of `elapsed` in the same slot of the level above, and the
//! lowest level that holds any holds the earliest. Firing takes the first
//! occupied slot of that level: at level 0 its timers are due; above, they
//! are placed again, now relative to the slot's start, each one level down
//! or more (a cascade), until they reach level 0 or are due. Each timer is
//! moved at most once per level.
//!
//! A tick further ahead than the wheel spans ([`SPAN`] ticks: days) is
//! placed as if it were at the wheel's far edge, and placed again (still
//! unfired) when that slot comes round. At the top level a slot can
//! therefore lie in the next turn of the wheel, which the search for the
//! next expiry allows for.
//!
//! # Storage
//! Timers live in a slab (`entries`, a `Vec` reused through a free list),
//! and each slot is a doubly linked list threaded through the slab by
//! index, so a cancel unlinks its timer without a search. Each level keeps
//! a bitmap of its occupied slots: the next expiry is a trailing-zeros
//! count on at most [`LEVELS`] words. A [`WheelKey`] names a timer by its
//! slab index and a sequence number, so a key whose timer fired or was
//! cancelled (its entry since reused) matches nothing.
//!
//! Free entries form a doubly linked list of their own, so that an entry
//! freed at the slab's end, and the free ones it uncovers there, leave the
//! slab instead of joining the list: the slab ends at its highest pending
//! timer, and its allocation shrinks to twice its length once it is a
//! quarter used (never below [`KEPT_ENTRIES`]). A burst of timers gives its memory back as the
//! burst's timers go, except below a timer that stays pending high in the
//! slab (fragmentation, as in any slab).
//!
//! Rejected: a `BTreeMap` keyed by deadline (O(log n) for each insert,
//! cancel and firing, and a node allocation every few inserts; what the
//! queue was first, measured in `docs/decisions.md`, "TimerQueue"); Go's
//! 4-ary heap per P, O(log n) too, and a cancel must track each timer's
//! index as the heap moves it.

/// Nanoseconds per tick, as a shift. Measured: a fraction of how late a
/// parked worker's timed wait wakes anyway, so rounding deadlines up to a
/// tick adds little to a sleep (`docs/decisions.md`, "TICK_SHIFT").
pub(super) const TICK_SHIFT: u32 = 14;

/// Bits of a tick per level.
const SLOT_BITS: u32 = 6;

/// Slots per level: one bit each in a `u64` bitmap.
pub(super) const SLOTS: usize = 1 << SLOT_BITS;

/// Levels: with [`SLOTS`] slots each they span [`SPAN`] ticks, days; a
/// later deadline is placed again when the wheel comes round (module docs).
pub(super) const LEVELS: usize = 6;

/// Ticks the wheel spans.
const SPAN: u64 = 1 << (SLOT_BITS * LEVELS as u32);

/// Slab entries kept when the wheel empties, so that a worker whose timers
/// come and go does not reallocate the slab each time. A guess: a few
/// pages.
pub(super) const KEPT_ENTRIES: usize = 256;

/// No entry: the end of a list.
const NIL: u32 = u32::MAX;

/// Names one inserted timer, to cancel it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WheelKey {
    index: u32,
    sequence: u64,
    tick: u64,
}

impl WheelKey {
    /// The tick the wheel files the timer under (its deadline's tick, or
    /// the next one to fire if that had passed when it was inserted).
    pub(super) fn tick(&self) -> u64 {
        self.tick
    }
}

/// The pending timers, each carrying a `T` (a fiber handle, in `timers.rs`).
pub(super) struct Wheel<T> {
    /// The slab. An entry is pending while its `value` is `Some`, else on
    /// the free list (through `prev` and `next`). The last entry is
    /// pending, if there is one.
    entries: Vec<Entry<T>>,
    /// The first free entry, or `NIL`.
    free: u32,
    /// The first entry of each slot's list, level by level, or `NIL`.
    heads: [u32; SLOTS * LEVELS],
    /// Per level, bit `s` set while slot `s` holds a timer.
    occupied: [u64; LEVELS],
    /// Every timer at or before this tick has fired; pending ones lie after.
    elapsed: u64,
    /// Pending timers.
    len: usize,
    /// The next key's sequence number (unique per insert).
    next_sequence: u64,
}

struct Entry<T> {
    value: Option<T>,
    tick: u64,
    sequence: u64,
    prev: u32,
    next: u32,
    /// The slot whose list holds it: `level * SLOTS + slot`.
    slot: u16,
}

impl<T> Wheel<T> {
    pub(super) fn new() -> Wheel<T> {
        Wheel {
            entries: Vec::new(),
            free: NIL,
            heads: [NIL; SLOTS * LEVELS],
            occupied: [0; LEVELS],
            elapsed: 0,
            len: 0,
            next_sequence: 0,
        }
    }

    /// Pending timers.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Files `value` to fire at `tick` (or at the next tick to fire, if
    /// `tick` has passed).
    pub(super) fn insert(&mut self, tick: u64, value: T) -> WheelKey {
        let tick = tick.max(self.elapsed + 1);
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let entry = Entry {
            value: Some(value),
            tick,
            sequence,
            prev: NIL,
            next: NIL,
            slot: 0,
        };
        let index = if self.free == NIL {
            let index = u32::try_from(self.entries.len())
                .ok()
                .filter(|&index| index != NIL)
                .expect("spindle: more than 4 billion timers pending on one worker");
            self.entries.push(entry);
            index
        } else {
            let index = self.free;
            self.unlink_free(index);
            self.entries[index as usize] = entry;
            index
        };
        self.link(index);
        self.len += 1;
        WheelKey {
            index,
            sequence,
            tick,
        }
    }

    /// Takes out the timer `key` names, if it is still pending.
    pub(super) fn remove(&mut self, key: WheelKey) -> Option<T> {
        let entry = self.entries.get(key.index as usize)?;
        if entry.sequence != key.sequence || entry.value.is_none() {
            return None;
        }
        self.unlink(key.index);
        Some(self.release(key.index))
    }

    /// The tick at which the wheel next has work (a timer due, or a slot to
    /// cascade), or `None` if no timer is pending. Every pending timer's
    /// tick is at or after it.
    pub(super) fn next_expiry(&self) -> Option<u64> {
        self.next_slot().map(|(tick, _)| tick)
    }

    /// Fires every timer due at `now` (a tick), pushing its value into
    /// `due`. The order is the slots' (a slot of a higher level, cascading,
    /// gives up its due timers at once), so not always the ticks': the
    /// caller makes them all runnable together.
    pub(super) fn advance(&mut self, now: u64, due: &mut Vec<T>) {
        while let Some((start, slot)) = self.next_slot() {
            if start > now {
                break;
            }
            debug_assert!(start > self.elapsed, "a slot expires after elapsed");
            // Take the slot's whole list, then file each timer again from
            // its start: due ones go out, the rest go lower.
            let level = slot / SLOTS;
            let mut index = std::mem::replace(&mut self.heads[slot], NIL);
            self.occupied[level] &= !(1 << (slot % SLOTS));
            self.elapsed = start;
            while index != NIL {
                let next = self.entries[index as usize].next;
                if self.entries[index as usize].tick <= now {
                    due.push(self.release(index));
                } else {
                    self.link(index);
                }
                index = next;
            }
        }
        // No slot starts at or before `now`, so every pending timer lies
        // after it, as `elapsed` requires.
        self.elapsed = self.elapsed.max(now);
    }

    /// Takes out every pending timer's value.
    pub(super) fn drain(&mut self) -> Vec<T> {
        let values = self
            .entries
            .iter_mut()
            .filter_map(|entry| entry.value.take())
            .collect();
        let elapsed = self.elapsed;
        *self = Wheel::new();
        self.elapsed = elapsed;
        values
    }

    /// The start tick and slot (`level * SLOTS + slot`) of the first
    /// occupied slot of the lowest occupied level (module docs: it holds
    /// the earliest timers).
    fn next_slot(&self) -> Option<(u64, usize)> {
        let level = self.occupied.iter().position(|&bits| bits != 0)?;
        let shift = SLOT_BITS * level as u32;
        let digit = ((self.elapsed >> shift) as usize) % SLOTS;
        // The search starts after `elapsed`'s own slot and wraps: below the
        // top level every occupied slot lies after it (module docs); at the
        // top one, a slot at or before it is in the wheel's next turn.
        let from = (digit + 1) % SLOTS;
        let slot = (from
            + self.occupied[level]
                .rotate_right(from as u32)
                .trailing_zeros() as usize)
            % SLOTS;
        let level_span = 1u64 << (shift + SLOT_BITS);
        let mut start = (self.elapsed & !(level_span - 1)) + ((slot as u64) << shift);
        if start <= self.elapsed {
            debug_assert_eq!(level, LEVELS - 1, "only the top level wraps");
            start += level_span;
        }
        Some((start, level * SLOTS + slot))
    }

    /// Puts entry `index` (pending, its tick after `elapsed`) at the front
    /// of the slot its tick belongs in.
    fn link(&mut self, index: u32) {
        let tick = self.entries[index as usize].tick;
        debug_assert!(tick > self.elapsed, "a pending timer lies after elapsed");
        // A tick past the wheel's span is filed at its far edge, and filed
        // again when that slot comes round.
        let placed = tick.min(self.elapsed + SPAN - 1);
        let differs = ((self.elapsed ^ placed) | (SLOTS as u64 - 1)).min(SPAN - 1);
        let level = ((63 - differs.leading_zeros()) / SLOT_BITS) as usize;
        let slot = level * SLOTS + ((placed >> (SLOT_BITS * level as u32)) as usize) % SLOTS;
        let head = self.heads[slot];
        if head != NIL {
            self.entries[head as usize].prev = index;
        }
        let entry = &mut self.entries[index as usize];
        entry.prev = NIL;
        entry.next = head;
        entry.slot = slot as u16;
        self.heads[slot] = index;
        self.occupied[level] |= 1 << (slot % SLOTS);
    }

    /// Takes entry `index` out of its slot's list.
    fn unlink(&mut self, index: u32) {
        let Entry {
            prev, next, slot, ..
        } = self.entries[index as usize];
        let slot = slot as usize;
        if prev == NIL {
            self.heads[slot] = next;
            if next == NIL {
                self.occupied[slot / SLOTS] &= !(1 << (slot % SLOTS));
            }
        } else {
            self.entries[prev as usize].next = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
    }

    /// Frees entry `index` (unlinked) and returns its value.
    fn release(&mut self, index: u32) -> T {
        let value = self.entries[index as usize]
            .value
            .take()
            .expect("a released entry is pending");
        self.len -= 1;
        if index as usize + 1 == self.entries.len() {
            // The slab's end: drop it, and the free entries it uncovers.
            self.entries.pop();
            while self
                .entries
                .last()
                .is_some_and(|entry| entry.value.is_none())
            {
                let last = (self.entries.len() - 1) as u32;
                self.unlink_free(last);
                self.entries.pop();
            }
            let capacity = self.entries.capacity();
            if capacity > KEPT_ENTRIES && self.entries.len() < capacity / 4 {
                self.entries
                    .shrink_to((2 * self.entries.len()).max(KEPT_ENTRIES));
            }
        } else {
            let head = self.free;
            if head != NIL {
                self.entries[head as usize].prev = index;
            }
            let entry = &mut self.entries[index as usize];
            entry.prev = NIL;
            entry.next = head;
            self.free = index;
        }
        debug_assert!(
            self.entries
                .last()
                .is_none_or(|entry| entry.value.is_some()),
            "the slab ends at a pending timer"
        );
        value
    }

    /// Takes free entry `index` out of the free list.
    fn unlink_free(&mut self, index: u32) {
        let Entry { prev, next, .. } = self.entries[index as usize];
        if prev == NIL {
            self.free = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A small xorshift generator: the tests' choices, repeatable.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn timers_fire_at_their_tick_in_order_and_not_before() {
        let mut wheel = Wheel::new();
        for tick in [5, 1, 64, 63, 4096, 4095, 1 << 20, 3] {
            wheel.insert(tick, tick);
        }
        assert_eq!(wheel.len(), 8);
        let mut due = Vec::new();
        let mut fired = Vec::new();
        for now in 0..(1 << 20) + 1 {
            wheel.advance(now, &mut due);
            for tick in due.drain(..) {
                assert_eq!(tick, now, "fires at its tick, neither early nor late");
                fired.push(tick);
            }
        }
        assert_eq!(fired, [1, 3, 5, 63, 64, 4095, 4096, 1 << 20]);
        assert_eq!(wheel.len(), 0);
        assert_eq!(wheel.next_expiry(), None);
    }

    #[test]
    fn a_passed_tick_fires_at_the_next_advance() {
        let mut wheel = Wheel::new();
        let mut due = Vec::new();
        wheel.advance(1000, &mut due);
        let key = wheel.insert(10, "late");
        assert_eq!(key.tick(), 1001);
        assert_eq!(wheel.next_expiry(), Some(1001));
        wheel.advance(1000, &mut due);
        assert!(due.is_empty());
        wheel.advance(1001, &mut due);
        assert_eq!(due, ["late"]);
    }

    #[test]
    fn a_cancelled_timer_never_fires_and_its_key_then_matches_nothing() {
        let mut wheel = Wheel::new();
        let keys: Vec<_> = (1..=100).map(|tick| wheel.insert(tick * 7, tick)).collect();
        for key in keys.iter().step_by(2) {
            assert!(wheel.remove(*key).is_some());
            assert_eq!(wheel.remove(*key), None, "a key removes once");
        }
        let mut due = Vec::new();
        wheel.advance(1000, &mut due);
        due.sort_unstable();
        assert_eq!(due, (1..=100).filter(|t| t % 2 == 0).collect::<Vec<_>>());
        // The fired timers' entries are reused; the old keys stay dead.
        let reused = wheel.insert(2000, 0);
        for key in &keys {
            assert_eq!(wheel.remove(*key), None);
        }
        assert_eq!(wheel.remove(reused), Some(0));
    }

    #[test]
    fn a_deadline_past_the_span_waits_for_it() {
        let mut wheel = Wheel::new();
        let far = 3 * SPAN + 12345;
        wheel.insert(far, "far");
        wheel.insert(SPAN - 1, "edge");
        let mut due = Vec::new();
        // Jump through the wheel's turns: each stop cascades, nothing early.
        let mut now = 0;
        while let Some(next) = wheel.next_expiry() {
            assert!(next > now, "the expiry moves forward");
            now = next;
            wheel.advance(now, &mut due);
            for value in due.drain(..) {
                match value {
                    "edge" => assert_eq!(now, SPAN - 1),
                    _ => assert_eq!(now, far),
                }
            }
        }
        assert_eq!(now, far);
        assert_eq!(wheel.len(), 0);
    }

    #[test]
    fn the_slab_gives_back_its_end_as_timers_go() {
        let mut wheel = Wheel::new();
        let burst = 100 * KEPT_ENTRIES as u64;
        let keys: Vec<_> = (0..burst).map(|i| wheel.insert(i + 1, i)).collect();
        let peak = wheel.entries.capacity();
        // Every timer but the first two goes, in an order that frees the
        // middle before the end: the end then uncovers the freed middle.
        for key in keys[2..]
            .iter()
            .step_by(2)
            .chain(keys[3..].iter().step_by(2))
        {
            assert!(wheel.remove(*key).is_some());
        }
        assert_eq!(wheel.len(), 2);
        assert_eq!(
            wheel.entries.len(),
            2,
            "the slab ends at its last pending timer"
        );
        assert!(wheel.entries.capacity() < peak / 8, "the allocation shrank");
        // The free list holds nothing past the end: new timers reuse what
        // is left, and everything still fires once.
        let more: Vec<_> = (0..10).map(|i| wheel.insert(5, 100 + i)).collect();
        assert_eq!(wheel.remove(more[3]), Some(103));
        let mut due = Vec::new();
        wheel.advance(burst + 10, &mut due);
        due.sort_unstable();
        assert_eq!(due, [0, 1, 100, 101, 102, 104, 105, 106, 107, 108, 109]);
        assert_eq!(wheel.len(), 0);
        assert!(wheel.entries.is_empty());
        assert!(wheel.entries.capacity() <= KEPT_ENTRIES.max(peak / 8));
    }

    #[test]
    fn a_timer_pending_high_in_the_slab_keeps_the_entries_below_it() {
        let mut wheel = Wheel::new();
        let keys: Vec<_> = (0..1000u64).map(|i| wheel.insert(i + 1, i)).collect();
        for key in &keys[..999] {
            wheel.remove(*key);
        }
        assert_eq!(wheel.len(), 1);
        assert_eq!(
            wheel.entries.len(),
            1000,
            "fragmentation: the last one pins them"
        );
        // They are reused before the slab grows.
        for i in 0..999 {
            wheel.insert(2000, i);
        }
        assert_eq!(wheel.entries.len(), 1000);
        // The reuse went from the most recently freed down, so the entry
        // below the last is pending again: the end moves down by one.
        wheel.remove(keys[999]);
        assert_eq!(wheel.entries.len(), 999);
    }

    /// Random inserts, cancels and advances, step by step beside a
    /// `BTreeMap` that holds the same timers: the same timers fire at the
    /// same advances, `next_expiry` never passes the earliest pending tick,
    /// and the counts agree.
    #[test]
    fn random_operations_agree_with_a_sorted_map() {
        for seed in 1..=20u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut wheel = Wheel::new();
            let mut model: BTreeMap<(u64, u64), WheelKey> = BTreeMap::new();
            let mut keys: Vec<(u64, u64, WheelKey)> = Vec::new();
            let mut now = 0u64;
            let mut due = Vec::new();
            for step in 0..4000u64 {
                match rng.below(10) {
                    0..=4 => {
                        // Near and far deadlines, some already passed.
                        let ahead = match rng.below(4) {
                            0 => rng.below(70),
                            1 => rng.below(5000),
                            2 => rng.below(1 << 26),
                            _ => rng.below(4 * SPAN),
                        };
                        let tick = (now + ahead).saturating_sub(rng.below(3));
                        let key = wheel.insert(tick, step);
                        assert!(key.tick() >= tick && key.tick() > now);
                        model.insert((key.tick(), step), key);
                        keys.push((key.tick(), step, key));
                    }
                    5..=6 if !keys.is_empty() => {
                        let (tick, id, key) =
                            keys.swap_remove(rng.below(keys.len() as u64) as usize);
                        let pending = model.remove(&(tick, id)).is_some();
                        assert_eq!(wheel.remove(key), pending.then_some(id));
                    }
                    _ => {
                        now += match rng.below(3) {
                            0 => rng.below(4),
                            1 => rng.below(300),
                            _ => rng.below(1 << 30),
                        };
                        wheel.advance(now, &mut due);
                        let later = model.split_off(&(now + 1, 0));
                        let expected: Vec<u64> = model.keys().map(|&(_, id)| id).collect();
                        model = later;
                        due.sort_unstable();
                        let mut expected = expected;
                        expected.sort_unstable();
                        assert_eq!(due, expected, "seed {seed} step {step} now {now}");
                        due.clear();
                    }
                }
                assert_eq!(wheel.len(), model.len());
                match (wheel.next_expiry(), model.keys().next()) {
                    (Some(next), Some(&(earliest, _))) => {
                        assert!(next <= earliest, "seed {seed} step {step}");
                        assert!(next > wheel.elapsed);
                    }
                    (None, None) => {}
                    (next, earliest) => panic!("wheel {next:?}, model {earliest:?}"),
                }
            }
        }
    }
}
