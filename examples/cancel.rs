//! Cancelling fibers: a TCP server whose connections are cancelled when it
//! shuts down.
//!
//! The server accepts connections and gives each one a fiber that reads
//! lines and answers each with its length. `main` connects `CLIENTS`
//! clients, has each send one line and read the answer, and leaves them
//! connected and silent: every connection fiber is now parked in `read`.
//! Then the server shuts down: it cancels the accept loop and every
//! connection fiber (`JoinHandle::cancel`). Each one unwinds from its
//! `read`, running its destructors: a `Connection` guard counts the open
//! connections down and says goodbye on the socket, inside the unwind,
//! where `spindle::is_cancelled` is true. Each client then reads that
//! goodbye and end-of-file, and every join reports `is_cancelled`.
//!
//! It prints, for instance:
//!
//! ```text
//! 8 clients connected, each got its answer; 8 connections open
//! cancelling the accept loop and 8 connection fibers
//! connection 3: cancelled in its read after 1 line(s)
//! ...
//! 8 joins reported is_cancelled; 0 connections open
//! every client read the goodbye, then end-of-file
//! ```
//!
//! and exits at once: nothing waits for a timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use spindle::net::{TcpListener, TcpStream};
use spindle::JoinHandle;

const CLIENTS: usize = 8;

/// Lives as long as one connection's fiber: its drop (at the end of the
/// fiber, or in its cancellation unwind) says goodbye and counts down.
struct Connection {
    id: usize,
    stream: TcpStream,
    lines: usize,
    open: Arc<AtomicUsize>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        let how = if spindle::is_cancelled() {
            "cancelled in its read"
        } else {
            "closed by the client"
        };
        println!("connection {}: {how} after {} line(s)", self.id, self.lines);
        let _ = self.stream.write_all(b"goodbye\n");
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One connection: answers each line with its length.
fn serve(mut connection: Connection) {
    let mut reader = BufReader::new(connection.stream.try_clone().expect("a second handle"));
    let mut line = String::new();
    // Parks in `read` until a line comes; a cancellation unwinds from there.
    while reader.read_line(&mut line).expect("read") > 0 {
        connection.lines += 1;
        let answer = format!("{}\n", line.trim_end().len());
        connection
            .stream
            .write_all(answer.as_bytes())
            .expect("write");
        line.clear();
    }
}

fn main() {
    let rt = spindle::Runtime::new().expect("runtime");
    rt.block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let open = Arc::new(AtomicUsize::new(0));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();

        // The accept loop: a fiber per connection, its handle kept for
        // the shutdown.
        let accepting = {
            let (open, connections) = (open.clone(), connections.clone());
            spindle::spawn(move || {
                for (id, stream) in listener.incoming().enumerate() {
                    let stream = stream.expect("accept");
                    open.fetch_add(1, Ordering::SeqCst);
                    let connection = Connection {
                        id,
                        stream,
                        lines: 0,
                        open: open.clone(),
                    };
                    let fiber = spindle::spawn(move || serve(connection));
                    connections.lock().unwrap().push(fiber);
                }
            })
        };

        let mut clients: Vec<BufReader<TcpStream>> = (0..CLIENTS)
            .map(|n| {
                let mut client = TcpStream::connect(address).expect("connect");
                let words = "word ".repeat(n + 1);
                writeln!(client, "{}", words.trim_end()).expect("send");
                let mut client = BufReader::new(client);
                let mut answer = String::new();
                client.read_line(&mut answer).expect("answer");
                assert_eq!(answer.trim(), words.trim_end().len().to_string());
                client
            })
            .collect();
        println!(
            "{CLIENTS} clients connected, each got its answer; {} connections open",
            open.load(Ordering::SeqCst)
        );

        // Shut the server down: the accept loop first (it unwinds from
        // `accept`, dropping the listener), then every connection.
        accepting.cancel();
        assert!(accepting.join().unwrap_err().is_cancelled());
        let fibers = std::mem::take(&mut *connections.lock().unwrap());
        println!(
            "cancelling the accept loop and {} connection fibers",
            fibers.len()
        );
        for fiber in &fibers {
            fiber.cancel();
        }
        let cancelled = fibers
            .into_iter()
            .map(|fiber| fiber.join())
            .filter(|result| result.as_ref().is_err_and(|e| e.is_cancelled()))
            .count();
        println!(
            "{cancelled} joins reported is_cancelled; {} connections open",
            open.load(Ordering::SeqCst)
        );
        assert_eq!(cancelled, CLIENTS);

        for client in &mut clients {
            let mut rest = String::new();
            client.read_to_string(&mut rest).expect("read to the end");
            assert_eq!(rest, "goodbye\n");
        }
        println!("every client read the goodbye, then end-of-file");
    });
}
