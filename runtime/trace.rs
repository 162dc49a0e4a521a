//! An opt-in timeline of what the workers did, written as Chrome
//! trace-event JSON (open it in Perfetto, <https://ui.perfetto.dev>, or
//! `chrome://tracing`).
//!
//! Turned on with [`crate::Builder::trace`] or the `SPINDLE_TRACE`
//! environment variable naming the output file. Each worker appends events
//! to its own buffer (no lock, no atomic: the owner alone writes it) and
//! hands it to the runtime as it exits (or, a spare, retires); when the
//! runtime shuts down the buffers are merged and written out. When
//! tracing is off, each recording site costs one predictable branch on a
//! `bool` the worker owns.
//!
//! Events, one timeline row per worker (`tid` = worker slot index, spare
//! slots after the configured workers):
//! - a slice per fiber run (`fiber <id>`), from resume to the switch back,
//!   with why it stopped (`yield`, `park`, `done`);
//! - a slice per sleep of the worker (`parked`);
//! - a slice per hand-off episode (`stuck in fiber <id>`), from when the
//!   monitor marked the worker stuck to when the fiber gave it back;
//! - instants for steals (`steal`, with the victim and how many fibers)
//!   and for spawns by fibers on that worker (`spawn`).
//!
//! Memory: one `Event` per record, kept until shutdown; trace short runs.

use crate::lock::MutexExt;
use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::time::Instant;

/// One recorded event.
pub(crate) enum Event {
    /// A fiber ran on the worker from `start` for `micros`.
    Run {
        fiber: u64,
        start: f64,
        micros: f64,
        ended: &'static str,
    },
    /// The worker slept.
    Parked { start: f64, micros: f64 },
    /// The worker stole `count` fibers from `victim`.
    Steal { at: f64, victim: usize, count: u64 },
    /// A fiber on this worker spawned fiber `fiber`.
    Spawn { at: f64, fiber: u64 },
    /// Fiber `fiber` held this worker from `start` for `micros` while its
    /// queue was handed to a spare worker (`scheduler/handoff.rs`).
    Handoff { fiber: u64, start: f64, micros: f64 },
}

/// A worker's trace buffer. Owned by the worker.
pub(crate) struct Buffer {
    /// Whether tracing is on: the one branch a recording site costs when
    /// it is off.
    enabled: bool,
    epoch: Instant,
    events: Vec<Event>,
}

impl Buffer {
    pub(crate) fn new(enabled: bool, epoch: Instant) -> Buffer {
        Buffer {
            enabled,
            epoch,
            events: Vec::new(),
        }
    }

    /// Microseconds since the runtime's epoch.
    pub(crate) fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64() * 1e6
    }

    /// Now, as the start of a span recorded when it ends; `None` (and no
    /// clock read) when tracing is off.
    #[inline]
    pub(crate) fn span_start(&self) -> Option<f64> {
        self.enabled.then(|| self.now())
    }

    /// Records the event `event` makes (it may read the clock through the
    /// buffer), if tracing is on.
    #[inline]
    pub(crate) fn record(&mut self, event: impl FnOnce(&Buffer) -> Event) {
        if self.enabled {
            let event = event(self);
            self.events.push(event);
        }
    }

    /// Takes the events recorded so far.
    pub(crate) fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }
}

/// Where a runtime's trace goes, if anywhere.
pub(crate) struct Tracing {
    /// The output file, when tracing is on.
    pub(crate) path: Option<PathBuf>,
    /// Buffers handed in by workers as they exit or retire: (slot index,
    /// events).
    pub(crate) collected: std::sync::Mutex<Vec<(usize, Vec<Event>)>>,
}

impl Tracing {
    /// From the Builder's setting, or else `SPINDLE_TRACE`.
    pub(crate) fn new(path: Option<PathBuf>) -> Tracing {
        let path = path.or_else(|| {
            std::env::var_os("SPINDLE_TRACE")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        });
        Tracing {
            path,
            collected: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Writes the collected events as Chrome trace-event JSON.
    pub(crate) fn write(&self, workers: usize) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let collected = std::mem::take(&mut *self.collected.lock_unpoisoned());
        let mut json = String::from("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n");
        let mut first = true;
        let mut push = |line: String| {
            if !first {
                json.push_str(",\n");
            }
            first = false;
            json.push_str(&line);
        };
        push(
            r#"{"name":"process_name","ph":"M","pid":1,"tid":0,"args":{"name":"spindle runtime"}}"#
                .to_owned(),
        );
        for worker in 0..workers {
            push(format!(
                r#"{{"name":"thread_name","ph":"M","pid":1,"tid":{worker},"args":{{"name":"worker {worker}"}}}}"#
            ));
        }
        // Spare workers (hand-offs) appear under their slot index.
        let mut spares: Vec<usize> = collected
            .iter()
            .map(|(slot, _)| *slot)
            .filter(|slot| *slot >= workers)
            .collect();
        spares.sort_unstable();
        spares.dedup();
        for slot in spares {
            push(format!(
                r#"{{"name":"thread_name","ph":"M","pid":1,"tid":{slot},"args":{{"name":"spare worker {slot}"}}}}"#
            ));
        }
        for (worker, events) in &collected {
            for event in events {
                push(event.to_json(*worker));
            }
        }
        json.push_str("\n]}\n");
        std::fs::write(path, json)
    }
}

impl Event {
    /// The event as one trace-event JSON object, on `worker`'s row.
    fn to_json(&self, worker: usize) -> String {
        let mut line = String::new();
        let _ = match self {
            Event::Run {
                fiber,
                start,
                micros,
                ended,
            } => write!(
                line,
                r#"{{"name":"fiber {fiber}","cat":"run","ph":"X","pid":1,"tid":{worker},"ts":{start:.3},"dur":{micros:.3},"args":{{"fiber":{fiber},"ended":"{ended}"}}}}"#
            ),
            Event::Parked { start, micros } => write!(
                line,
                r#"{{"name":"parked","cat":"idle","ph":"X","pid":1,"tid":{worker},"ts":{start:.3},"dur":{micros:.3}}}"#
            ),
            Event::Steal { at, victim, count } => write!(
                line,
                r#"{{"name":"steal","cat":"steal","ph":"i","s":"t","pid":1,"tid":{worker},"ts":{at:.3},"args":{{"victim":{victim},"fibers":{count}}}}}"#
            ),
            Event::Spawn { at, fiber } => write!(
                line,
                r#"{{"name":"spawn","cat":"spawn","ph":"i","s":"t","pid":1,"tid":{worker},"ts":{at:.3},"args":{{"fiber":{fiber}}}}}"#
            ),
            Event::Handoff {
                fiber,
                start,
                micros,
            } => write!(
                line,
                r#"{{"name":"stuck in fiber {fiber}","cat":"handoff","ph":"X","pid":1,"tid":{worker},"ts":{start:.3},"dur":{micros:.3},"args":{{"fiber":{fiber}}}}}"#
            ),
        };
        line
    }
}
