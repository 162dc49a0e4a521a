//! The echo server of `examples/echo.rs` written with `std::net` only, run
//! on fibers: with the `interpose` feature, std's blocking `accept`,
//! `read` and `write` park the fiber instead of holding its worker, so a
//! fiber per connection works as it does with `spindle::net`.
//!
//! ```text
//! cargo run --release --features interpose --example echo_std -- [--addr 127.0.0.1:7000] [--workers 2]
//! cargo run --release --example echo -- client --addr 127.0.0.1:7000 --connections 1000 --seconds 5
//! ```
//!
//! It prints `listening on ADDRESS`, then serves until killed; drive it
//! with `examples/echo`'s client, as the `spindle::net` server is
//! (`docs/benchmarks.md` has both side by side). Built without the
//! feature it refuses to start: each connection would hold a worker.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

fn main() {
    if !cfg!(feature = "interpose") {
        eprintln!(
            "echo_std: build with --features interpose (std's blocking calls must park the fiber)"
        );
        std::process::exit(2);
    }
    let mut addr = "127.0.0.1:7000".to_string();
    let mut workers = 2;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--addr" => addr = value,
            "--workers" => {
                workers = value
                    .parse()
                    .unwrap_or_else(|_| usage("--workers: a number"))
            }
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    let rt = spindle::Builder::new().workers(workers).build().unwrap();
    rt.block_on(|| {
        // std's listener: its `accept` parks this fiber.
        let listener = TcpListener::bind(&addr).unwrap();
        println!("listening on {}", listener.local_addr().unwrap());
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => {
                    spindle::spawn(move || echo_loop(stream));
                }
                Err(error) => {
                    eprintln!("accept: {error}");
                    std::thread::sleep(std::time::Duration::from_millis(10)); // parks too
                }
            }
        }
    });
}

/// The same loop as `examples/echo.rs`, on a std socket.
fn echo_loop(mut stream: TcpStream) {
    let mut buf = [0; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn usage(problem: &str) -> ! {
    eprintln!("echo_std: {problem}\nusage: echo_std [--addr ADDR] [--workers N]");
    std::process::exit(2)
}
