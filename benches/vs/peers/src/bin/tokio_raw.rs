//! `examples/http_hello`'s responder, line for line, on tokio: the same
//! request-line and header parsing through a buffered reader, within the
//! same bounds (414 past `MAX_REQUEST_LINE`, 431 past `MAX_HEADERS`) and
//! the same idle timeout on every read and write (`tokio::time::timeout`
//! where `http_hello` sets the socket's timeouts), the same response
//! bytes, the same flush rule for pipelined requests. Serves on `--addr`
//! (default 127.0.0.1:8083) with `--workers` worker threads.

use std::time::Duration;

use tokio::io::{self, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const BODY: &str = "Hello, world!";

fn main() {
    let (addr, workers) = args("127.0.0.1:8083");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_io()
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(addr.as_str()).await.expect("bind");
        println!("listening on {}", listener.local_addr().unwrap());
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(async move {
                        let _ = serve(stream).await;
                    });
                }
                Err(error) => eprintln!("accept: {error}"),
            }
        }
    });
}

/// `examples/http_hello`'s `MAX_REQUEST_LINE`, `MAX_HEADERS` and
/// `IDLE_TIMEOUT`.
const MAX_REQUEST_LINE: u64 = 8 * 1024;
const MAX_HEADERS: u64 = 32 * 1024;
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

enum Line {
    Complete,
    Closed,
    TooLong,
}

/// `http_hello`'s `read_line`: one line of at most `limit` bytes, within
/// the idle timeout.
async fn read_line(
    reader: &mut BufReader<OwnedReadHalf>,
    line: &mut String,
    limit: u64,
) -> io::Result<Line> {
    line.clear();
    let read = timeout(IDLE_TIMEOUT, reader.take(limit).read_line(line)).await??;
    Ok(if line.ends_with('\n') {
        Line::Complete
    } else if read as u64 == limit {
        Line::TooLong
    } else {
        Line::Closed
    })
}

async fn refuse(writer: &mut BufWriter<OwnedWriteHalf>, status: &str) -> io::Result<()> {
    let response = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    timeout(IDLE_TIMEOUT, writer.write_all(response.as_bytes())).await??;
    timeout(IDLE_TIMEOUT, writer.flush()).await?
}

async fn serve(stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let (read_half, write_half) = stream.into_split();
    let mut reader = BufReader::new(read_half);
    let mut writer = BufWriter::new(write_half);
    let mut line = String::new();
    loop {
        match read_line(&mut reader, &mut line, MAX_REQUEST_LINE).await? {
            Line::Complete => {}
            Line::Closed => return timeout(IDLE_TIMEOUT, writer.flush()).await?,
            Line::TooLong => return refuse(&mut writer, "414 URI Too Long").await,
        }
        let request_line = line.trim_end();
        if request_line.is_empty() {
            continue;
        }
        let http_10 = request_line.ends_with("HTTP/1.0");
        let mut keep_alive = !http_10;
        let mut content_length = 0u64;
        let mut chunked = false;
        let mut header_room = MAX_HEADERS;
        loop {
            match read_line(&mut reader, &mut line, header_room).await? {
                Line::Complete => header_room -= line.len() as u64,
                Line::Closed => return Ok(()),
                Line::TooLong => {
                    return refuse(&mut writer, "431 Request Header Fields Too Large").await
                }
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
            return refuse(&mut writer, "501 Not Implemented").await;
        }
        if content_length > 0 {
            let (mut body, mut sink) = ((&mut reader).take(content_length), io::sink());
            timeout(IDLE_TIMEOUT, io::copy(&mut body, &mut sink)).await??;
        }
        let connection = if keep_alive {
            if http_10 {
                "Connection: keep-alive\r\n"
            } else {
                ""
            }
        } else {
            "Connection: close\r\n"
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{}",
            BODY.len(),
            connection,
            BODY
        );
        timeout(IDLE_TIMEOUT, writer.write_all(response.as_bytes())).await??;
        if !keep_alive {
            return timeout(IDLE_TIMEOUT, writer.flush()).await?;
        }
        if reader.buffer().is_empty() {
            timeout(IDLE_TIMEOUT, writer.flush()).await??;
        }
    }
}

/// `--addr HOST:PORT` and `--workers N` (default 2).
fn args(default_addr: &str) -> (String, usize) {
    let mut addr = default_addr.to_string();
    let mut workers = 2;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = value,
            "--workers" => workers = value.parse().expect("--workers N"),
            _ => panic!("usage: [--addr HOST:PORT] [--workers N]"),
        }
    }
    (addr, workers)
}
