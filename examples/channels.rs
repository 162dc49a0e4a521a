//! Channels between fibers: a pipeline, and a fan-in with select.
//!
//! 1. **Pipeline**: a generator fiber sends 1..=N (default 100,000) into a
//!    chain of `--stages` fibers (default 8), each adding 1 and passing it
//!    on over a bounded channel; a collector sums what comes out. Prints the
//!    sum (checked against the formula), the time taken and the rate in
//!    stage-hops (one message through one channel) per second.
//! 2. **Fan-in with select**: three producers with different paces (fast,
//!    slow, and one that stops early) feed three channels; one consumer
//!    selects over all three with a 50 ms timeout, counting what each
//!    delivered, and stops after three timeouts in a row once every
//!    producer is done. Prints the counts and the timeouts seen.

use std::time::{Duration, Instant};

use spindle::sync::{mpsc, Select};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("{name}: not a number: {v}"))
        })
        .unwrap_or(default)
}

fn main() {
    let messages = arg("--messages", 100_000);
    let stages = arg("--stages", 8);
    let rt = spindle::Runtime::new().expect("start runtime");

    // 1. Pipeline.
    let (sum, elapsed) = rt.block_on(|| {
        let start = Instant::now();
        let (first_tx, mut rx) = mpsc::sync_channel::<u64>(64);
        spindle::spawn(move || {
            for i in 1..=messages {
                first_tx.send(i).unwrap();
            }
        });
        for _ in 0..stages {
            let (tx, next_rx) = mpsc::sync_channel::<u64>(64);
            let input = std::mem::replace(&mut rx, next_rx);
            spindle::spawn(move || {
                for value in input {
                    tx.send(value + 1).unwrap();
                }
            });
        }
        let sum: u64 = rx.iter().sum();
        (sum, start.elapsed())
    });
    let expected = messages * (messages + 1) / 2 + messages * stages;
    assert_eq!(sum, expected, "every message went through every stage once");
    println!(
        "pipeline: {messages} messages through {stages} stages: sum {sum} (as expected), {:.0} ms, {:.2} M stage-hops/s",
        elapsed.as_secs_f64() * 1e3,
        (messages * (stages + 1)) as f64 / elapsed.as_secs_f64() / 1e6
    );

    // 2. Fan-in with select and a timeout.
    let (counts, timeouts) = rt.block_on(|| {
        let (fast_tx, fast) = mpsc::channel::<u32>();
        let (slow_tx, slow) = mpsc::channel::<u32>();
        let (early_tx, early) = mpsc::channel::<u32>();
        spindle::spawn(move || {
            for i in 0..200 {
                fast_tx.send(i).unwrap();
                spindle::time::sleep(Duration::from_micros(500));
            }
        });
        spindle::spawn(move || {
            for i in 0..20 {
                slow_tx.send(i).unwrap();
                spindle::time::sleep(Duration::from_millis(5));
            }
        });
        spindle::spawn(move || {
            for i in 0..5 {
                early_tx.send(i).unwrap();
            }
        });
        let mut counts = [0u32; 3];
        let mut open = [true; 3];
        let mut timeouts_in_a_row = 0;
        let mut timeouts = 0;
        while timeouts_in_a_row < 3 {
            // A disconnected channel is always "ready" (with an error), so
            // only the channels still open take part.
            let mut select = Select::new();
            for (index, channel) in [&fast, &slow, &early].into_iter().enumerate() {
                if open[index] {
                    select = select.recv(channel, move |message| (index, message.is_ok()));
                }
            }
            match select.wait_timeout(Duration::from_millis(50)) {
                Ok((index, true)) => {
                    counts[index] += 1;
                    timeouts_in_a_row = 0;
                }
                Ok((index, false)) => open[index] = false,
                Err(_) => {
                    timeouts += 1;
                    timeouts_in_a_row += 1;
                }
            }
        }
        (counts, timeouts)
    });
    println!(
        "fan-in: fast delivered {}, slow {}, early {} (sent 200, 20, 5); {timeouts} timeouts of 50 ms",
        counts[0], counts[1], counts[2]
    );
    assert_eq!(counts, [200, 20, 5], "select delivered everything once");
}
