//! The smallest spindle program: start a runtime, spawn fibers, join them.
//!
//! Prints one line per fiber saying which worker thread ran it, then the sum
//! of their results.

fn main() {
    let rt = spindle::Runtime::new().expect("start the runtime");
    let total: u64 = rt.block_on(|| {
        let fibers: Vec<_> = (1..=8u64)
            .map(|i| {
                spindle::fiber::Builder::new()
                    .name(format!("fiber-{i}"))
                    .spawn(move || {
                        let me = spindle::current();
                        let thread = std::thread::current();
                        println!(
                            "{} (id {}) runs on {}",
                            me.name().unwrap_or("?"),
                            me.id(),
                            thread.name().unwrap_or("?")
                        );
                        spindle::yield_now();
                        i * i
                    })
                    .expect("spawn")
            })
            .collect();
        fibers
            .into_iter()
            .map(|f| f.join().expect("fiber finished"))
            .sum()
    });
    println!("sum of squares 1..=8 = {total}");
}
