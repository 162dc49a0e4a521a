//! Fibers vs threads vs processes, measured live in one run.
//!
//! Runs the same small jobs three ways on this machine and prints, per
//! unit of concurrency:
//! - **creation**: start a unit that does nothing and wait for it;
//! - **switch**: half a ping-pong round trip (park/unpark; Mutex+Condvar;
//!   a byte over pipes);
//! - **communication**: a message round trip (spindle `mpsc`;
//!   `std::sync::mpsc`; a pipe);
//! - **memory**: resident memory per live, idle unit;
//! - **crash blast radius**: a segfault inside a fiber or a thread ends the
//!   whole process; a segfault inside a child process ends only that child.
//!   Demonstrated, not asserted: the program re-runs itself as a child that
//!   crashes in each way and reports how the child ended.
//!
//! Each measurement (a row's fiber, thread or process figure) runs in a
//! process of its own: the program re-runs itself with `--measure ROW
//! COLUMN`, and the child prints the one figure. Measured side by side in
//! one process, the rows disturb each other: the fiber runtime gives its
//! idle stacks' memory back a while after the fibers end, so a thread
//! figure taken meanwhile (resident memory before and after) can come out
//! negative.
//!
//! Flags: `--quick` (small counts, for CI), `--svg FILE` (a bar chart of
//! the timing and memory rows on a log scale). Exits non-zero, naming the
//! measurement and why, if one could not be made.

use std::fmt::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

// The same ping-pongs the criterion benches time, so both report one
// measurement.
#[path = "../benches/common/mod.rs"]
mod common;

/// The measured rows: the name `--measure` takes, the label, the unit.
const ROWS: [(&str, &str, &str); 4] = [
    ("creation", "creation (start + join one unit)", "µs"),
    ("switch", "switch (half a ping-pong round trip)", "µs"),
    ("communication", "communication (message round trip)", "µs"),
    ("memory", "memory per live, idle unit", "KiB"),
];

/// The columns, as `--measure` names them.
const COLUMNS: [&str; 3] = ["fiber", "thread", "process"];

/// A unit of concurrency: one column.
#[derive(Clone, Copy)]
enum Unit {
    Fiber,
    Thread,
    Process,
}

/// One row: a value per column (fiber, thread, process), in `unit`; NaN
/// where the measurement failed.
struct Row {
    name: &'static str,
    unit: &'static str,
    values: [f64; 3],
}

fn main() {
    if let Ok(how) = std::env::var("SPINDLE_COMPARE_CRASH") {
        crash(&how);
    }
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    if let Some(index) = args.iter().position(|a| a == "--measure") {
        let (row, column) = match (args.get(index + 1), args.get(index + 2)) {
            (Some(row), Some(column)) => (row.as_str(), column.as_str()),
            _ => {
                eprintln!("compare: --measure ROW COLUMN");
                std::process::exit(2);
            }
        };
        println!("{}", measure(row, column, if quick { 1 } else { 10 }));
        return;
    }
    let svg = args
        .iter()
        .position(|a| a == "--svg")
        .and_then(|i| args.get(i + 1))
        .cloned();

    let mut failures = Vec::new();
    let rows: Vec<Row> = ROWS
        .iter()
        .map(|&(row, name, unit)| Row {
            name,
            unit,
            values: COLUMNS.map(|column| {
                measure_in_child(row, column, quick).unwrap_or_else(|why| {
                    failures.push(format!("{name}, {column}: {why}"));
                    f64::NAN
                })
            }),
        })
        .collect();
    let blast = blast_radius();

    println!(
        "{:<40}{:>14}{:>14}{:>14}",
        "per unit, on this machine", "fiber", "thread", "process"
    );
    for row in &rows {
        print!("{:<40}", format!("{} [{}]", row.name, row.unit));
        for value in row.values {
            print!("{:>14}", format_value(value));
        }
        println!();
    }
    print!("{:<40}", "crash blast radius (a segfault in it)");
    for outcome in &blast {
        print!("{:>14}", outcome);
    }
    println!();
    println!();
    println!(
        "ratios: creation thread/fiber {:.0}x, process/fiber {:.0}x; switch thread/fiber {:.0}x; \
         messages thread/fiber {:.0}x, process/fiber {:.0}x; memory thread/fiber {:.1}x",
        rows[0].values[1] / rows[0].values[0],
        rows[0].values[2] / rows[0].values[0],
        rows[1].values[1] / rows[1].values[0],
        rows[2].values[1] / rows[2].values[0],
        rows[2].values[2] / rows[2].values[0],
        rows[3].values[1] / rows[3].values[0],
    );

    for (outcome, column) in blast.iter().zip(COLUMNS) {
        if outcome.is_empty() {
            failures.push(format!(
                "crash blast radius, {column}: the child did not run"
            ));
        }
    }
    if let Some(path) = svg {
        std::fs::write(&path, chart(&rows)).expect("write the SVG");
        println!("chart written to {path}");
    }
    if !failures.is_empty() {
        for failure in &failures {
            eprintln!("compare: a row could not be measured: {failure}");
        }
        std::process::exit(1);
    }
}

/// Runs one measurement in a fresh process (this program, with
/// `--measure`): its figure, or why there is none.
fn measure_in_child(row: &str, column: &str, quick: bool) -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|error| format!("own path: {error}"))?;
    let mut command = Command::new(exe);
    command.args(["--measure", row, column]);
    if quick {
        command.arg("--quick");
    }
    let output = command
        .output()
        .map_err(|error| format!("could not run the child: {error}"))?;
    if !output.status.success() {
        // A panic's message (the line after "panicked at"), else its
        // last line.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let why = lines
            .iter()
            .position(|line| line.contains(" panicked at "))
            .and_then(|index| lines.get(index + 1))
            .or_else(|| lines.iter().rev().find(|line| !line.trim().is_empty()))
            .copied()
            .unwrap_or("no output");
        return Err(format!("the child {}: {why}", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value: f64 = stdout
        .trim()
        .parse()
        .map_err(|_| format!("the child printed {:?}", stdout.trim()))?;
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(format!("measured {value}"))
    }
}

/// The measurement `--measure row column` makes (in the child).
fn measure(row: &str, column: &str, scale: u32) -> f64 {
    let unit = match column {
        "fiber" => Unit::Fiber,
        "thread" => Unit::Thread,
        "process" => Unit::Process,
        _ => panic!("no column {column:?}: one of {COLUMNS:?}"),
    };
    let row_measure = match row {
        "creation" => creation,
        "switch" => switch,
        "communication" => communication,
        "memory" => memory,
        _ => panic!("no row {row:?}: one of creation, switch, communication, memory"),
    };
    row_measure(unit, scale)
}

/// The runtime the fiber measurements run on.
fn runtime() -> spindle::Runtime {
    spindle::Builder::new()
        .workers(2)
        .build()
        .expect("start runtime")
}

fn format_value(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.4}")
    }
}

/// Microseconds per unit to start one and wait for it.
fn creation(unit: Unit, scale: u32) -> f64 {
    match unit {
        Unit::Fiber => {
            let fibers = 20_000 * scale;
            let elapsed = runtime().block_on(|| {
                let start = Instant::now();
                for i in 0..fibers {
                    spindle::spawn(move || i).join().unwrap();
                }
                start.elapsed()
            });
            per_unit_us(elapsed, fibers)
        }
        Unit::Thread => {
            let threads = 200 * scale;
            let start = Instant::now();
            for i in 0..threads {
                std::thread::spawn(move || i).join().unwrap();
            }
            per_unit_us(start.elapsed(), threads)
        }
        Unit::Process => {
            let processes = 50 * scale;
            let start = Instant::now();
            for _ in 0..processes {
                // SAFETY: the child only calls _exit, which is async-signal-safe.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    // SAFETY: ends the child without running Rust code.
                    unsafe { libc::_exit(0) };
                }
                let mut status = 0;
                // SAFETY: waits for the child just forked.
                unsafe { libc::waitpid(pid, &mut status, 0) };
            }
            per_unit_us(start.elapsed(), processes)
        }
    }
}

fn per_unit_us(total: Duration, units: u32) -> f64 {
    total.as_secs_f64() * 1e6 / units as f64
}

/// Microseconds per switch: half of a ping-pong round trip.
fn switch(unit: Unit, scale: u32) -> f64 {
    let rounds = 20_000 * scale;
    let thread_rounds = 2_000 * scale;
    match unit {
        Unit::Fiber => per_unit_us(
            common::fiber_park_unpark_round_trips(&runtime(), rounds.into()),
            2 * rounds,
        ),
        Unit::Thread => per_unit_us(
            common::thread_condvar_round_trips(thread_rounds.into()),
            2 * thread_rounds,
        ),
        Unit::Process => per_unit_us(
            common::pipe_round_trips(thread_rounds.into()),
            2 * thread_rounds,
        ),
    }
}

/// Microseconds per message round trip.
fn communication(unit: Unit, scale: u32) -> f64 {
    let rounds = 20_000 * scale;
    let thread_rounds = 2_000 * scale;
    match unit {
        Unit::Fiber => per_unit_us(
            common::fiber_channel_round_trips(&runtime(), rounds.into()),
            rounds,
        ),
        Unit::Thread => per_unit_us(
            common::thread_channel_round_trips(thread_rounds.into()),
            thread_rounds,
        ),
        Unit::Process => per_unit_us(
            common::pipe_round_trips(thread_rounds.into()),
            thread_rounds,
        ),
    }
}

fn rss_kib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(f64::NAN)
}

/// KiB of resident memory per live, idle unit.
fn memory(unit: Unit, scale: u32) -> f64 {
    match unit {
        Unit::Fiber => fiber_memory(10_000 * scale as usize),
        Unit::Thread => thread_memory(200 * scale as usize),
        Unit::Process => process_memory(10 * scale as usize),
    }
}

/// Fibers parked on a latch.
fn fiber_memory(fibers: usize) -> f64 {
    let rt = runtime();
    let before = rss_kib();
    let gate = Arc::new(spindle::sync::Latch::new(1));
    let started = Arc::new(spindle::sync::Latch::new(fibers));
    let handles: Vec<_> = (0..fibers)
        .map(|_| {
            let (gate, started) = (gate.clone(), started.clone());
            rt.spawn(move || {
                started.count_down();
                gate.wait();
            })
        })
        .collect();
    started.wait();
    let per_fiber = (rss_kib() - before) / fibers as f64;
    gate.count_down();
    handles.into_iter().for_each(|h| h.join().unwrap());
    per_fiber
}

/// Threads blocked on a barrier-like gate.
fn thread_memory(threads: usize) -> f64 {
    let before = rss_kib();
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let started = Arc::new(std::sync::Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (gate, started) = (gate.clone(), started.clone());
            std::thread::spawn(move || {
                started.wait();
                let (lock, condvar) = &*gate;
                let mut open = lock.lock().unwrap();
                while !*open {
                    open = condvar.wait(open).unwrap();
                }
            })
        })
        .collect();
    started.wait();
    let per_thread = (rss_kib() - before) / threads as f64;
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    handles.into_iter().for_each(|h| h.join().unwrap());
    per_thread
}

/// Processes: the proportional set size (Pss) of idle forked children,
/// which shares the pages they have in common with this process fairly.
fn process_memory(processes: usize) -> f64 {
    let mut pids = Vec::new();
    for _ in 0..processes {
        // SAFETY: the child only pauses until killed (async-signal-safe).
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            loop {
                // SAFETY: pause has no preconditions.
                unsafe { libc::pause() };
            }
        }
        pids.push(pid);
    }
    std::thread::sleep(Duration::from_millis(50));
    let pss: f64 = pids
        .iter()
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
                .ok()
                .and_then(|t| {
                    t.lines().find(|l| l.starts_with("Pss:")).and_then(|l| {
                        l.split_whitespace()
                            .nth(1)
                            .and_then(|v| v.parse::<f64>().ok())
                    })
                })
                .unwrap_or(f64::NAN)
        })
        .sum();
    for pid in &pids {
        // SAFETY: killing and reaping our own children.
        unsafe {
            libc::kill(*pid, libc::SIGKILL);
            libc::waitpid(*pid, std::ptr::null_mut(), 0);
        }
    }
    pss / processes as f64
}

/// Re-runs this program as children that crash in each way; reports how
/// each child ended and whether this process survived.
fn blast_radius() -> [String; 3] {
    let exe = std::env::current_exe().expect("own path");
    let run = |how: &str| {
        let output = Command::new(&exe)
            .env("SPINDLE_COMPARE_CRASH", how)
            .output();
        match output {
            Ok(out) if out.status.signal() == Some(libc::SIGSEGV) => match how {
                "process" => "only child".to_owned(),
                _ => "whole process".to_owned(),
            },
            Ok(out) => format!("? {:?}", out.status),
            Err(_) => String::new(),
        }
    };
    [run("fiber"), run("thread"), run("process")]
}

/// The crashing children (see `blast_radius`).
fn crash(how: &str) -> ! {
    let segfault = || {
        let wild = std::hint::black_box(8usize) as *mut u64;
        // SAFETY: none: this writes to an unmapped address on purpose.
        unsafe { wild.write_volatile(1) };
    };
    match how {
        "fiber" => {
            // A fiber crashes: its worker thread, and so the process, dies.
            let rt = spindle::Runtime::new().expect("start runtime");
            rt.block_on(|| spindle::spawn(segfault).join().ok());
        }
        "thread" => {
            // A thread crashes: the whole process dies with it.
            std::thread::spawn(segfault).join().ok();
        }
        _ => {
            // A child process crashes; this process watches it and lives.
            // SAFETY: the child only makes the faulting write.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                segfault();
            }
            let mut status = 0;
            // SAFETY: waits for our child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            // Report the child's fate as our own, after surviving it.
            if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSEGV {
                // SAFETY: re-raising the child's signal on ourselves, with
                // the default action, ends this watcher the same way.
                unsafe {
                    libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                    libc::raise(libc::SIGSEGV);
                }
            }
        }
    }
    std::process::exit(0)
}

/// An SVG bar chart of the numeric rows on a log scale.
fn chart(rows: &[Row]) -> String {
    let (width, row_height, bar, left) = (900.0, 90.0, 22.0, 300.0);
    let height = 40.0 + row_height * rows.len() as f64;
    let colors = ["#2e7d32", "#1565c0", "#c62828"];
    let labels = ["fiber", "thread", "process"];
    let max = rows.iter().flat_map(|r| r.values).fold(1.0f64, f64::max);
    let min = rows
        .iter()
        .flat_map(|r| r.values)
        .fold(f64::MAX, f64::min)
        .min(0.01);
    let scale = |v: f64| {
        (v.max(min).log10() - min.log10()) / (max.log10() - min.log10()) * (width - left - 120.0)
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="13"><rect width="100%" height="100%" fill="white"/><text x="10" y="22" font-size="15">fibers vs threads vs processes, per unit, log scale (measured on this machine)</text>"#
    );
    for (i, row) in rows.iter().enumerate() {
        let y = 40.0 + i as f64 * row_height;
        let _ = write!(
            svg,
            r#"<text x="10" y="{}">{} [{}]</text>"#,
            y + 40.0,
            row.name,
            row.unit
        );
        for (j, value) in row.values.iter().enumerate() {
            let by = y + j as f64 * (bar + 2.0);
            let _ = write!(
                svg,
                r#"<rect x="{left}" y="{by}" width="{:.1}" height="{bar}" fill="{}"/><text x="{:.1}" y="{:.1}">{} {}</text>"#,
                scale(*value).max(1.0),
                colors[j],
                left + scale(*value).max(1.0) + 6.0,
                by + 16.0,
                labels[j],
                format_value(*value)
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}
