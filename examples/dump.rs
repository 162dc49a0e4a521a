//! A fiber dump: what is my runtime doing right now?
//!
//! Starts a few named fibers that wait in different ways (a sleep, a
//! channel, a mutex held by `main`, a join of another fiber), plus one that
//! is running, then prints `Runtime::dump()`: each fiber's id, name, state and
//! spawn location, and for the parked ones the backtrace of their own stack,
//! taken where they wait. Then it lets them all go and checks that the dump
//! woke none of them early.
//!
//! `cargo run --example dump` (a debug build has the best backtraces; a
//! release build still names the functions, through `line-tables-only`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle::fiber::{Builder, FiberState};
use spindle::sync::{mpsc, Mutex};

#[inline(never)]
fn nap(duration: Duration) -> Duration {
    let start = Instant::now();
    spindle::time::sleep(duration);
    start.elapsed()
}

#[inline(never)]
fn wait_for_order(orders: mpsc::Receiver<String>) -> String {
    let order = orders.recv().expect("an order");
    format!("served {order}")
}

#[inline(never)]
fn update_ledger(ledger: &Mutex<u64>) -> u64 {
    let mut entries = ledger.lock().expect("not poisoned");
    *entries += 1;
    *entries
}

fn main() {
    let rt = spindle::Builder::new()
        .workers(2)
        .build()
        .expect("start the runtime");

    let sleeper = Builder::new()
        .name("sleeper")
        .spawn_on(&rt, || nap(Duration::from_millis(300)))
        .expect("spawn");

    let (orders, incoming) = mpsc::channel();
    let waiter = Builder::new()
        .name("waiter")
        .spawn_on(&rt, move || wait_for_order(incoming))
        .expect("spawn");

    let ledger = Arc::new(Mutex::new(0u64));
    let held = ledger.lock().expect("not poisoned"); // main holds the lock
    let for_clerk = ledger.clone();
    let clerk = Builder::new()
        .name("clerk")
        .spawn_on(&rt, move || update_ledger(&for_clerk))
        .expect("spawn");

    let stop = Arc::new(AtomicBool::new(false));
    let spinning = stop.clone();
    let spinner = Builder::new()
        .name("spinner")
        .spawn_on(&rt, move || {
            let mut turns = 0u64;
            while !spinning.load(Ordering::Relaxed) {
                turns += 1;
                std::hint::spin_loop();
            }
            turns
        })
        .expect("spawn");
    // A fiber waiting for another: the supervisor joins the waiter.
    let supervisor = Builder::new()
        .name("supervisor")
        .spawn_on(&rt, move || waiter.join().expect("waiter finished"))
        .expect("spawn");

    // Give them a moment to get to where they wait, then look.
    let start = Instant::now();
    let dump = loop {
        let dump = rt.dump();
        let parked = dump
            .fibers
            .iter()
            .filter(|f| f.state == FiberState::Parked)
            .count();
        if parked >= 4 || start.elapsed() > Duration::from_secs(10) {
            break dump;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    println!("{dump}");

    // Nobody was woken by the dump: let each go now.
    orders.send("tea".to_string()).expect("waiter listening");
    drop(held);
    stop.store(true, Ordering::Relaxed);
    let slept = sleeper.join().expect("sleeper finished");
    println!(
        "after the dump: sleeper slept {:?} (asked 300 ms), supervisor saw {:?}, clerk wrote entry {}, spinner spun {} turns",
        slept,
        supervisor.join().expect("supervisor finished"),
        clerk.join().expect("clerk finished"),
        spinner.join().expect("spinner finished"),
    );
    assert!(
        slept >= Duration::from_millis(300),
        "the dump woke the sleeper early"
    );
}
