//! A minimal HTTP/1.1 "Hello, world!" server: one fiber per connection,
//! keep-alive and pipelining, written as plain blocking code.
//!
//! ```text
//! cargo run --release --example http_hello -- [--addr 127.0.0.1:8080] [--workers N]
//! curl -v http://127.0.0.1:8080/
//! wrk -t2 -c100 -d10s http://127.0.0.1:8080/
//! ```
//!
//! Prints `listening on ADDRESS`, then serves until killed. Every request
//! (any method, any path) gets `200 OK` with the body `Hello, world!`.
//! Connections stay open (HTTP/1.1 keep-alive) unless the client sends
//! `Connection: close` or speaks HTTP/1.0 without `Connection: keep-alive`.
//! Request bodies announced with `Content-Length` are read and discarded;
//! chunked request bodies are refused with `501` and the connection closed
//! (this is a demonstration, not a web server). Responses to pipelined
//! requests are buffered and sent together when no more requests are
//! waiting in the input buffer.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};

use spindle::net::{TcpListener, TcpStream};

const BODY: &str = "Hello, world!";

fn main() {
    let mut addr = "127.0.0.1:8080".to_string();
    let mut workers = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next();
        match (flag.as_str(), value) {
            ("--addr", Some(value)) => addr = value,
            ("--workers", Some(value)) => workers = Some(value.parse().expect("--workers N")),
            _ => {
                eprintln!("usage: http_hello [--addr HOST:PORT] [--workers N]");
                std::process::exit(2);
            }
        }
    }
    let mut builder = spindle::Builder::new();
    if let Some(workers) = workers {
        builder = builder.workers(workers);
    }
    let rt = builder.build().expect("runtime");
    rt.block_on(move || {
        let listener = TcpListener::bind(addr.as_str()).expect("bind");
        println!("listening on {}", listener.local_addr().unwrap());
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    spindle::spawn(move || {
                        let _ = serve(stream); // a broken connection just ends
                    });
                }
                // Out of descriptors, say: `accept` has already backed off.
                Err(error) => eprintln!("accept: {error}"),
            }
        }
    });
}

/// Serves requests on one connection until it closes.
fn serve(stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(&stream);
    let mut writer = BufWriter::new(&stream);
    let mut line = String::new();
    loop {
        // Request line.
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return writer.flush(); // the client closed
        }
        let request_line = line.trim_end();
        if request_line.is_empty() {
            continue; // a stray CRLF between requests is allowed
        }
        let http_10 = request_line.ends_with("HTTP/1.0");
        let mut keep_alive = !http_10;
        let mut content_length = 0u64;
        let mut chunked = false;
        // Headers, up to the empty line.
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("connection") {
                if value.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if value.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            } else if name.eq_ignore_ascii_case("content-length") {
                content_length = value.parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = !value.eq_ignore_ascii_case("identity");
            }
        }
        if chunked {
            writer.write_all(
                b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return writer.flush();
        }
        io::copy(&mut (&mut reader).take(content_length), &mut io::sink())?;
        write!(
            writer,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{}",
            BODY.len(),
            if keep_alive {
                if http_10 {
                    "Connection: keep-alive\r\n"
                } else {
                    ""
                }
            } else {
                "Connection: close\r\n"
            },
            BODY
        )?;
        if !keep_alive {
            return writer.flush();
        }
        // Send now unless more pipelined requests are already buffered.
        if reader.buffer().is_empty() {
            writer.flush()?;
        }
    }
}
