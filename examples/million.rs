//! The project's main job: a million fibers alive at once on a stock kernel.
//!
//! A "main" fiber spawns `--fibers` fibers (default 1,000,000) that each
//! count down a "started" latch and then park on a "gate" latch, so that all
//! of them are alive (each suspended on its own guarded stack) at the same
//! moment. Then it opens the gate and joins them all.
//!
//! Prints, per phase, the wall time and the CPU time of all threads (on a
//! busy machine the CPU time is the steadier figure); then the live fibers
//! at the peak, the peak RSS, the RSS per live fiber, the page tables, the
//! number of memory mappings the process held at the peak (from
//! `/proc/self/maps`), which must stay far below the kernel's
//! `vm.max_map_count` (65530 by default), the address space reserved for
//! stacks, the RSS after the join and after `Runtime::trim_stacks`, and the
//! hand-offs to spare workers.
//!
//! It also measures, in the same run, the **floor** this machine puts under
//! any design with one guarded stack per fiber: installing a guard page and
//! touching the top page of as many fresh stacks, on as many threads as there
//! are workers, with nothing else, each thread taking runs of
//! `GUARDS_PER_CALL` adjacent stacks in turn. Two ways: the cheapest the
//! kernel offers, every run's guards in one `process_madvise` call (the
//! `floor:` line, which the ratio uses), and one `madvise` per guard. The
//! page faults, not the scheduler, are most of the cost of a million live
//! fibers (`docs/benchmarks.md` has the figures); the ratio
//! `total / floor` is the scheduler's overhead on top of them.
//!
//! Flags: `--fibers N`, `--workers N`, `--stack-size BYTES`, `--no-floor`,
//! `--trace FILE` (write a timeline of the run as Chrome trace-event JSON,
//! for Perfetto; about 120 bytes per event, so pair it with e.g.
//! `--fibers 10000`: the steals from the spawning worker are visible).

use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle::sync::Latch;

struct Args {
    fibers: usize,
    workers: usize,
    stack_size: usize,
    floor: bool,
    trace: Option<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        fibers: 1_000_000,
        workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        stack_size: spindle::DEFAULT_STACK_SIZE,
        floor: true,
        trace: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> usize {
            let text = it
                .next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")));
            text.replace('_', "")
                .parse()
                .unwrap_or_else(|_| usage(&format!("{name}: not a number: {text}")))
        };
        match flag.as_str() {
            "--fibers" => args.fibers = value("--fibers"),
            "--workers" => args.workers = value("--workers").max(1),
            "--stack-size" => args.stack_size = value("--stack-size"),
            "--no-floor" => args.floor = false,
            "--trace" => {
                args.trace = Some(
                    it.next()
                        .unwrap_or_else(|| usage("--trace needs a file name")),
                )
            }
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown flag {other}")),
        }
    }
    args
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("million: {problem}");
    }
    eprintln!("usage: million [--fibers N] [--workers N] [--stack-size BYTES] [--no-floor] [--trace FILE]");
    std::process::exit(if problem.is_empty() { 0 } else { 2 })
}

/// A `/proc/self/status` field given in kB, in bytes.
fn status_bytes(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn max_map_count() -> usize {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// A moment of the run: the wall clock and the CPU time the whole process
/// has used (all its threads), so that each phase shows both.
#[derive(Clone, Copy)]
struct Stamp {
    wall: Instant,
    cpu: Duration,
}

impl Stamp {
    fn now() -> Stamp {
        let mut time = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec, which `time` is.
        unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut time) };
        Stamp {
            wall: Instant::now(),
            cpu: Duration::new(time.tv_sec as u64, time.tv_nsec as u32),
        }
    }

    /// `(wall, CPU)` from `earlier` to this stamp.
    fn since(self, earlier: Stamp) -> (Duration, Duration) {
        (
            self.wall - earlier.wall,
            self.cpu.saturating_sub(earlier.cpu),
        )
    }
}

/// The four phases of the run, in order.
const PHASES: [&str; 4] = [
    "spawn (one fiber spawns all)",
    "...until all have run and parked",
    "release (one latch wakes all)",
    "join all",
];

/// What the main fiber measured.
struct Peak {
    /// `(wall, CPU)` of each of `PHASES`.
    phases: [(Duration, Duration); 4],
    live: usize,
    stacks: spindle::StackStats,
    maps: usize,
    rss: usize,
    page_tables: usize,
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let args = parse_args();
    // The spawning fiber computes for a second or more with the fibers it
    // spawned queued behind it: the monitor hands those to a spare worker
    // (`scheduler/handoff.rs`). Collect the reports for one summary line
    // instead of a warning each.
    let handoffs = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = handoffs.clone();
    let mut builder = spindle::Builder::new()
        .workers(args.workers)
        .stack_size(args.stack_size)
        .on_handoff(move |report| sink.lock().unwrap().push(report.clone()));
    if let Some(path) = &args.trace {
        builder = builder.trace(path);
    }
    let rt = builder.build().expect("start runtime");
    let n = args.fibers;
    println!(
        "spindle million: {n} fibers on {} workers, {} KiB stacks (+4 KiB guard page each)",
        args.workers,
        args.stack_size.div_ceil(4096) * 4
    );

    let rss_before = status_bytes("VmRSS:");

    // Everything runs inside one "main" fiber, as a fiber program would: it
    // spawns, waits and joins without blocking an OS thread.
    let peak = rt.block_on(|| {
        let started = Arc::new(Latch::new(n));
        let gate = Arc::new(Latch::new(1));

        // Phase 1: spawn them all from this fiber (other workers steal).
        let start = Stamp::now();
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (started, gate) = (started.clone(), gate.clone());
                spindle::spawn(move || {
                    started.count_down();
                    gate.wait();
                })
            })
            .collect();
        let spawned = Stamp::now();

        // Phase 2: until every fiber has run and parked on the gate.
        started.wait();
        let all_alive = Stamp::now();
        let mut peak = Peak {
            phases: [
                spawned.since(start),
                all_alive.since(spawned),
                Default::default(),
                Default::default(),
            ],
            live: rt.live_fibers(),
            stacks: rt.stack_stats(),
            maps: spindle::os::map_count(),
            rss: status_bytes("VmRSS:"),
            page_tables: status_bytes("VmPTE:"),
        };

        // Phase 3: open the gate: a million unparks. (The figures above
        // are read between the phases' times.)
        let opening = Stamp::now();
        gate.count_down();
        let released = Stamp::now();
        peak.phases[2] = released.since(opening);

        // Phase 4: join them all.
        for handle in handles {
            handle.join().expect("fiber finished");
        }
        peak.phases[3] = Stamp::now().since(released);
        peak
    });
    let Peak {
        phases,
        live,
        stacks,
        maps: maps_at_peak,
        rss: rss_alive,
        page_tables,
    } = peak;
    let total: Duration = phases.iter().map(|&(wall, _)| wall).sum();
    let total_cpu: Duration = phases.iter().map(|&(_, cpu)| cpu).sum();
    let peak_rss = status_bytes("VmHWM:");
    let rss_after = status_bytes("VmRSS:");
    rt.trim_stacks();
    let rss_trimmed = status_bytes("VmRSS:");
    let peak_spares = rt.metrics().peak_spare_workers;
    drop(rt); // writes the trace, if asked for
    if let Some(path) = &args.trace {
        println!("trace written to {path} (open it in https://ui.perfetto.dev)");
    }

    println!();
    println!("{:<38}{:>10}{:>12}", "phase", "wall", "CPU, all");
    let rows = PHASES.iter().zip(phases);
    for (phase, (wall, cpu)) in rows.chain([(&"total", (total, total_cpu))]) {
        println!(
            "{phase:<38}{:>8.3} s{:>10.3} s",
            wall.as_secs_f64(),
            cpu.as_secs_f64()
        );
    }
    println!();
    // The main fiber is alive too.
    assert_eq!(live, n + 1, "all fibers alive at once");
    let per_fiber = rss_alive.saturating_sub(rss_before) as f64 / n as f64;
    println!(
        "live fibers at peak        {live} (stacks in use: {})",
        stacks.in_use
    );
    println!("peak RSS (VmHWM)           {:.1} MiB", mib(peak_rss));
    println!(
        "RSS per live fiber         {per_fiber:.0} B ({:.2} KiB)",
        per_fiber / 1024.0
    );
    println!(
        "page tables (VmPTE)        {:.1} MiB, {:.0} B per fiber (not part of RSS)",
        mib(page_tables),
        page_tables as f64 / n as f64
    );
    println!(
        "memory mappings at peak    {maps_at_peak} (vm.max_map_count = {})",
        max_map_count()
    );
    println!(
        "address space for stacks   {:.1} GiB reserved",
        stacks.reserved_bytes as f64 / (1u64 << 30) as f64
    );
    println!(
        "RSS after join             {:.1} MiB; after Runtime::trim_stacks {:.1} MiB",
        mib(rss_after),
        mib(rss_trimmed)
    );

    let handoffs = handoffs.lock().unwrap();
    let held: Duration = handoffs.iter().map(|r| r.held_for).sum();
    println!(
        "hand-offs to spare workers {} (fibers held their worker {:.0} ms in all; peak spares {})",
        handoffs.len(),
        held.as_secs_f64() * 1e3,
        peak_spares
    );

    if args.floor {
        let stack_size = args.stack_size.div_ceil(4096) * 4096;
        let (batched, batched_cpu) = measure_floor(n, args.workers, stack_size, Guards::Batched);
        let (one_each, one_each_cpu) =
            measure_floor(n, args.workers, stack_size, Guards::OneCallEach);
        println!();
        println!(
            "floor: guard ({GUARDS_PER_CALL} per process_madvise call) + first touch of {n} fresh stacks on {} threads: {:.3} s (CPU {:.3} s)",
            args.workers,
            batched.as_secs_f64(),
            batched_cpu.as_secs_f64()
        );
        println!(
            "       the same with one madvise per guard:                     {:.3} s (CPU {:.3} s)",
            one_each.as_secs_f64(),
            one_each_cpu.as_secs_f64()
        );
        println!(
            "total / floor = {:.2}x (CPU: {:.2}x)",
            total.as_secs_f64() / batched.as_secs_f64(),
            total_cpu.as_secs_f64() / batched_cpu.as_secs_f64()
        );
    }
}

/// Ranges per `process_madvise` call at most (the kernel's `UIO_MAXIOV`).
const GUARDS_PER_CALL: usize = 1024;

/// How the floor probe installs its guard pages.
#[derive(Clone, Copy, PartialEq)]
enum Guards {
    /// One `process_madvise(MADV_GUARD_INSTALL)` per run of
    /// `GUARDS_PER_CALL` stacks, as the stack pool does.
    Batched,
    /// One `madvise(MADV_GUARD_INSTALL)` per stack.
    OneCallEach,
}

/// `MADV_GUARD_INSTALL` (Linux 6.13), which the libc crate does not name.
const MADV_GUARD_INSTALL: libc::c_int = 102;
/// `PIDFD_SELF_PROCESS` (Linux 6.14): "this process", as a pidfd argument.
const PIDFD_SELF_PROCESS: libc::c_int = -10001;

/// Guards `len` bytes at each of `pages`: in one call, or one call each
/// (and, where the kernel refuses `MADV_GUARD_INSTALL`, with `mprotect`).
fn guard(pages: &[libc::iovec], how: Guards) {
    if how == Guards::Batched {
        // SAFETY: the kernel reads `pages.len()` live ranges, each a page
        // of our own mapping that nothing else uses.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_process_madvise,
                PIDFD_SELF_PROCESS,
                pages.as_ptr(),
                pages.len(),
                MADV_GUARD_INSTALL,
                0,
            )
        };
        if rc == (pages.len() * 4096) as libc::c_long {
            return;
        }
    }
    for page in pages {
        // SAFETY: as above, one range.
        unsafe {
            if libc::madvise(page.iov_base, page.iov_len, MADV_GUARD_INSTALL) != 0 {
                libc::mprotect(page.iov_base, page.iov_len, libc::PROT_NONE);
            }
        }
    }
}

/// The floor: the same number of stacks, carved from one reservation, each
/// guarded (`how`) and its top page touched, split over `threads` threads
/// in runs of `GUARDS_PER_CALL` adjacent stacks. Nothing else. Returns the
/// wall and the CPU time it took.
fn measure_floor(
    stacks: usize,
    threads: usize,
    stack_size: usize,
    how: Guards,
) -> (Duration, Duration) {
    let page = 4096;
    let slot = stack_size + page;
    let len = slot * stacks;
    // SAFETY: a fresh anonymous mapping, unmapped below; nothing else uses it.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
            -1,
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED, "mmap for the floor probe");
    let base = base as usize;
    let start = Stamp::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                let mut pages = Vec::with_capacity(GUARDS_PER_CALL);
                let runs = (t * GUARDS_PER_CALL..stacks).step_by(threads * GUARDS_PER_CALL);
                for first in runs {
                    let run = first..stacks.min(first + GUARDS_PER_CALL);
                    pages.clear();
                    pages.extend(run.clone().map(|i| libc::iovec {
                        iov_base: (base + i * slot) as *mut _,
                        iov_len: page,
                    }));
                    guard(&pages, how);
                    for i in run {
                        // SAFETY: the stack's top byte lies in our own
                        // mapping, in a slot only this thread touches.
                        unsafe { ((base + i * slot + slot - 64) as *mut u8).write_volatile(1) };
                    }
                }
            });
        }
    });
    let elapsed = Stamp::now().since(start);
    // SAFETY: the whole mapping made above, no longer used.
    unsafe { libc::munmap(base as *mut _, len) };
    elapsed
}
