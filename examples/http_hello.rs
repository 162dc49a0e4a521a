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
//!
//! What any server that faces clients it does not control must do, this
//! one does too, with the std calls a thread-per-connection server would
//! use:
//! - **bound what it buffers**: a request line longer than
//!   [`MAX_REQUEST_LINE`] bytes gets `414 URI Too Long`, header lines
//!   longer than [`MAX_HEADERS`] bytes in all get `431 Request Header
//!   Fields Too Large`, and either closes the connection. A client sending
//!   a line without end costs the server that many bytes, not the line.
//! - **time out idle connections**: every read and write has a timeout of
//!   [`IDLE_TIMEOUT`] (`set_read_timeout`, `set_write_timeout`), so a
//!   client that goes silent, or stops taking its responses, has its
//!   connection closed and its fiber ended.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::time::Duration;

use spindle::net::{TcpListener, TcpStream};

const BODY: &str = "Hello, world!";

/// The longest request line accepted, in bytes, its line end included:
/// nginx's default (one `large_client_header_buffers` buffer).
pub const MAX_REQUEST_LINE: u64 = 8 * 1024;

/// The most bytes all header lines of one request may take together, line
/// ends included: nginx's default (four such buffers).
pub const MAX_HEADERS: u64 = 32 * 1024;

/// How long one read or write may wait before the connection is closed:
/// a client silent this long (between requests or in the middle of one),
/// or not taking its responses, is gone. A guess, short for a demonstration
/// (nginx waits 60 s for headers and 75 s between keep-alive requests).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

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
    run(&addr, workers, IDLE_TIMEOUT);
}

/// Serves on `addr` until killed, on `workers` workers (the default
/// count if `None`), closing connections idle for `idle_timeout`. Public
/// for `tests/net.rs`, which runs this server in a child process.
pub fn run(addr: &str, workers: Option<usize>, idle_timeout: Duration) {
    let mut builder = spindle::Builder::new();
    if let Some(workers) = workers {
        builder = builder.workers(workers);
    }
    let rt = builder.build().expect("runtime");
    rt.block_on(|| {
        let listener = TcpListener::bind(addr).expect("bind");
        println!("listening on {}", listener.local_addr().unwrap());
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    spindle::spawn(move || {
                        // A broken, timed-out or refused connection just
                        // ends.
                        let _ = serve(stream, idle_timeout);
                    });
                }
                // Out of descriptors, say: `accept` has already backed off.
                Err(error) => eprintln!("accept: {error}"),
            }
        }
    });
}

/// What [`read_line`] found.
enum Line {
    /// A whole line, its line end included.
    Complete,
    /// The client closed the connection before a line ended.
    Closed,
    /// No line end within the limit; the rest of the line is unread.
    TooLong,
}

/// Reads one line into `line` (cleared first), but at most `limit` bytes:
/// `BufRead::read_line` alone would buffer a line however long it is.
fn read_line(reader: &mut impl BufRead, line: &mut String, limit: u64) -> io::Result<Line> {
    line.clear();
    let read = reader.take(limit).read_line(line)?;
    Ok(if line.ends_with('\n') {
        Line::Complete
    } else if read as u64 == limit {
        Line::TooLong
    } else {
        Line::Closed
    })
}

/// Sends an error response with `status` and ends the connection.
fn refuse(writer: &mut impl Write, status: &str) -> io::Result<()> {
    write!(
        writer,
        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    writer.flush()
}

/// Serves requests on one connection until it closes, it breaks a bound,
/// or it is idle for `idle_timeout`.
fn serve(stream: TcpStream, idle_timeout: Duration) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(idle_timeout))?;
    stream.set_write_timeout(Some(idle_timeout))?;
    let mut reader = BufReader::new(&stream);
    let mut writer = BufWriter::new(&stream);
    let mut line = String::new();
    loop {
        // Request line.
        match read_line(&mut reader, &mut line, MAX_REQUEST_LINE)? {
            Line::Complete => {}
            Line::Closed => return writer.flush(),
            Line::TooLong => return refuse(&mut writer, "414 URI Too Long"),
        }
        let request_line = line.trim_end();
        if request_line.is_empty() {
            continue; // a stray CRLF between requests is allowed
        }
        let http_10 = request_line.ends_with("HTTP/1.0");
        let mut keep_alive = !http_10;
        let mut content_length = 0u64;
        let mut chunked = false;
        // Headers, up to the empty line, within `MAX_HEADERS` in all.
        let mut header_room = MAX_HEADERS;
        loop {
            match read_line(&mut reader, &mut line, header_room)? {
                Line::Complete => header_room -= line.len() as u64,
                Line::Closed => return Ok(()),
                Line::TooLong => return refuse(&mut writer, "431 Request Header Fields Too Large"),
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
            return refuse(&mut writer, "501 Not Implemented");
        }
        if content_length > 0 {
            io::copy(&mut (&mut reader).take(content_length), &mut io::sink())?;
        }
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
