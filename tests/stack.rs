//! Stacks: overflow reporting in a child process (also on a trimmed stack),
//! other faults keeping their default behaviour, the pre-6.13 guard budget,
//! and memory given back after a burst.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;

use spindle::sync::Latch;
use spindle::{Builder, LimitKind, SpawnError};

/// Recursion that cannot be turned into a loop.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = [depth; 32];
    std::hint::black_box(&frame);
    if depth == u64::MAX {
        return 0;
    }
    recurse(depth + 1) + frame[7]
}

#[test]
fn stack_overflow_aborts_naming_the_fiber_and_its_stack_size() {
    if std::env::var_os("SPINDLE_TEST_OVERFLOW").is_some() {
        let rt = Builder::new().workers(2).build().unwrap();
        rt.block_on(|| {
            let handle = spindle::fiber::Builder::new()
                .name("deep-recursion")
                .spawn(|| recurse(0))
                .unwrap();
            let _ = handle.join();
        });
        unreachable!("the overflow aborts the process");
    }
    let output = common::run_child(
        "stack_overflow_aborts_naming_the_fiber_and_its_stack_size",
        &[("SPINDLE_TEST_OVERFLOW", "1")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGABRT),
        "status {:?}, stderr: {stderr}",
        output.status
    );
    assert!(stderr.contains("fiber 'deep-recursion' (id "), "{stderr}");
    assert!(
        stderr.contains("has overflowed its stack of 64 KiB"),
        "{stderr}"
    );
}

#[test]
fn overflow_of_a_custom_size_reports_that_size() {
    if std::env::var_os("SPINDLE_TEST_OVERFLOW_SIZED").is_some() {
        let rt = Builder::new().workers(1).build().unwrap();
        rt.block_on(|| {
            let _ = spindle::fiber::Builder::new()
                .stack_size(200 * 1024)
                .spawn(|| recurse(0))
                .unwrap()
                .join();
        });
        unreachable!();
    }
    let output = common::run_child(
        "overflow_of_a_custom_size_reports_that_size",
        &[("SPINDLE_TEST_OVERFLOW_SIZED", "1")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.signal(), Some(libc::SIGABRT), "{stderr}");
    assert!(stderr.contains("fiber '<unnamed>' (id "), "{stderr}");
    assert!(
        stderr.contains("has overflowed its stack of 200 KiB"),
        "{stderr}"
    );
}

/// Starts `count` fibers that stay alive until all have started, then lets
/// them finish and joins them: `count` stacks in use at once, then free.
fn burst(count: usize) {
    let all_up = Arc::new(Latch::new(count));
    let release = Arc::new(Latch::new(1));
    let handles: Vec<_> = (0..count)
        .map(|_| {
            let (all_up, release) = (all_up.clone(), release.clone());
            spindle::spawn(move || {
                all_up.count_down();
                release.wait();
            })
        })
        .collect();
    all_up.wait();
    release.count_down();
    for handle in handles {
        handle.join().unwrap();
    }
}

#[test]
fn an_overflow_on_a_trimmed_stack_still_hits_its_guard() {
    // Trimming gives a free stack's pages back with MADV_DONTNEED over the
    // whole slot, its guard page included; the guard must survive it.
    if std::env::var_os("SPINDLE_TEST_OVERFLOW_TRIMMED").is_some() {
        let rt = Builder::new().workers(1).build().unwrap();
        // Far more stacks than the worker's cache holds: most end up on the
        // global lists, which `trim_stacks` then trims.
        rt.block_on(|| burst(1000));
        rt.trim_stacks();
        rt.block_on(|| {
            // Use up the worker's cache of untrimmed stacks; what follows
            // runs on trimmed ones.
            burst(200);
            let _ = spindle::fiber::Builder::new()
                .name("trimmed")
                .spawn(|| recurse(0))
                .unwrap()
                .join();
        });
        unreachable!("the overflow aborts the process");
    }
    let output = common::run_child(
        "an_overflow_on_a_trimmed_stack_still_hits_its_guard",
        &[("SPINDLE_TEST_OVERFLOW_TRIMMED", "1")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.signal(), Some(libc::SIGABRT), "{stderr}");
    assert!(stderr.contains("fiber 'trimmed' (id "), "{stderr}");
    assert!(stderr.contains("has overflowed its stack"), "{stderr}");
}

#[test]
fn other_faults_keep_their_default_behaviour() {
    if std::env::var_os("SPINDLE_TEST_SEGV").is_some() {
        let rt = Builder::new().workers(1).build().unwrap();
        rt.block_on(|| {
            let _ = spindle::spawn(|| {
                let wild = std::hint::black_box(16usize) as *mut u64;
                // SAFETY: none; this test crashes on purpose.
                unsafe { wild.write_volatile(1) };
            })
            .join();
        });
        unreachable!();
    }
    let output = common::run_child(
        "other_faults_keep_their_default_behaviour",
        &[("SPINDLE_TEST_SEGV", "1")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGSEGV),
        "a wild write is a plain SIGSEGV: {stderr}"
    );
    assert!(!stderr.contains("overflowed"), "{stderr}");
}

#[test]
fn deep_std_paths_fit_the_default_stack() {
    // Formatting and a panic that captures and symbolises a full backtrace
    // (the deepest thing std commonly does), in a child so the backtrace
    // setting does not leak into other tests.
    if std::env::var_os("SPINDLE_TEST_DEEP_STD").is_some() {
        let rt = Builder::new().workers(1).build().unwrap();
        let error = rt.block_on(|| {
            spindle::spawn(|| {
                let text = format!(
                    "{:?} {:>20.5} {}",
                    vec![1.5f64; 64],
                    std::f64::consts::PI,
                    "x".repeat(1000)
                );
                println!("formatted {} bytes", text.len());
                panic!("deliberate, with a backtrace");
            })
            .join()
            .unwrap_err()
        });
        assert!(error.is_panic());
        println!("joined after panic");
        return;
    }
    let output = common::run_child(
        "deep_std_paths_fit_the_default_stack",
        &[("SPINDLE_TEST_DEEP_STD", "1"), ("RUST_BACKTRACE", "full")],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "status {:?}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("joined after panic"), "{stdout}");
    assert!(
        stderr.contains("stack backtrace"),
        "a backtrace was printed: {stderr}"
    );
}

#[test]
fn mprotect_fallback_spends_a_mapping_budget_and_then_refuses() {
    // The pre-6.13 path, forced: each guard costs two mappings, so the
    // runtime hands out at most (max_map_count - mappings held - headroom)/2
    // stacks and then `try_spawn` fails with an error naming the limit.
    let max_map_count: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let rt = Builder::new()
        .workers(2)
        .force_mprotect_guards()
        .build()
        .unwrap();
    let release = Arc::new(Latch::new(1));
    let release2 = release.clone();
    let (held, error, peak_maps) = common::within(std::time::Duration::from_secs(300), move || {
        let (held, error) = rt.block_on(move || {
            let mut held = Vec::new();
            let error = loop {
                let release = release2.clone();
                match spindle::try_spawn(move || release.wait()) {
                    Ok(handle) => held.push(handle),
                    Err(error) => break error,
                }
                if held.len() % 1024 == 0 {
                    // Let the fibers start (take their stacks) as we go.
                    spindle::yield_now();
                }
            };
            (held, error)
        });
        // Let every admitted fiber start and take its guarded stack.
        while rt.stack_stats().in_use < held.len() {
            std::thread::yield_now();
        }
        let peak_maps = spindle::os::map_count();
        release.count_down();
        let count = held.len();
        for handle in held {
            handle.join().unwrap();
        }
        (count, error, peak_maps)
    });
    match error {
        SpawnError::Limit {
            kind: LimitKind::MappingBudget {
                max_map_count: reported,
            },
            limit,
        } => {
            assert_eq!(reported, max_map_count);
            assert_eq!(limit, held + 1, "block_on's own fiber holds one stack");
        }
        other => panic!("expected the mapping budget error, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("vm.max_map_count"), "{message}");
    assert!(message.contains("6.13"), "{message}");
    assert!(
        held > 10_000,
        "the budget allows thousands of stacks: {held}"
    );
    assert!(
        peak_maps < max_map_count,
        "the process stayed under the limit: {peak_maps}"
    );
    assert!(
        peak_maps > 2 * held,
        "each mprotect guard really costs two mappings: {peak_maps} for {held}"
    );
}

#[test]
fn rss_falls_after_a_burst() {
    // 20,000 fibers each touching 32 KiB of stack raise RSS by ~640 MB; once
    // they finish, the monitor trims their stacks with MADV_DONTNEED once
    // idle for `DECAY_AGE` (`runtime/fiber/stack/class.rs`), so most of it
    // goes back to the kernel within about a second.
    let rt = Builder::new().workers(2).build().unwrap();
    let before = common::rss_bytes();
    let all_up = Arc::new(Latch::new(20_000));
    let release = Arc::new(Latch::new(1));
    let (all_up2, release2) = (all_up.clone(), release.clone());
    let handles = rt.block_on(move || {
        (0..20_000)
            .map(|_| {
                let (all_up, release) = (all_up2.clone(), release2.clone());
                spindle::spawn(move || {
                    let buffer = [7u8; 32 * 1024];
                    std::hint::black_box(&buffer);
                    all_up.count_down();
                    release.wait();
                })
            })
            .collect::<Vec<_>>()
    });
    all_up.wait();
    let peak = common::rss_bytes();
    release.count_down();
    for handle in handles {
        handle.join().unwrap();
    }
    let grown = peak.saturating_sub(before);
    assert!(
        grown > 500 << 20,
        "the burst touched its stacks: grew {grown} bytes"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let kept = loop {
        let kept = common::rss_bytes().saturating_sub(before);
        if kept < grown / 4 || std::time::Instant::now() > deadline {
            break kept;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert!(
        kept < grown / 4,
        "RSS fell after the burst: grew {grown}, kept {kept}"
    );
    rt.trim_stacks();
    assert_eq!(rt.stack_stats().in_use, 0);
}
