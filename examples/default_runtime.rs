//! Fibers without building a `Runtime`: `spindle::spawn` from plain
//! threads, and `spindle::run` as the body of `main`. Both use the
//! process-wide default runtime, which starts at the first use; its worker
//! count comes from `SPINDLE_WORKERS` when that is set.
//!
//! Prints how many workers the default runtime has, the sum the plain
//! threads' fibers computed, and the number of words `main`'s fiber
//! counted with one fiber per line. Try `SPINDLE_WORKERS=2 cargo run
//! --example default_runtime`.

pub fn main() {
    // Plain threads spawn fibers as they would spawn threads.
    let threads: Vec<_> = (1..=4u64)
        .map(|i| std::thread::spawn(move || spindle::spawn(move || i * i).join().unwrap()))
        .collect();
    let squares: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    println!(
        "default runtime: {} workers",
        spindle::default_runtime().workers()
    );
    println!("sum of squares from plain threads: {squares}");

    // `run` is `main` on a fiber; the closure may borrow `text`.
    let text = String::from("one fiber\nper line\nof this text");
    let words = spindle::run(|| {
        let fibers: Vec<_> = text
            .lines()
            .map(str::to_owned)
            .map(|line| spindle::spawn(move || line.split_whitespace().count()))
            .collect();
        fibers.into_iter().map(|f| f.join().unwrap()).sum::<usize>()
    });
    println!("words: {words}");
}
