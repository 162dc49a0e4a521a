//! Crash isolation you can watch: N shard processes serve requests, one is
//! crashed on purpose, the others keep serving and the supervisor restarts
//! the crashed one.
//!
//! ```text
//! cargo run --release --example shards -- [--shards 4] [--crash segv|abort|panic]
//!                                         [--backoff-ms 10] [--serve]
//! ```
//!
//! The supervisor (this process) keeps one request in flight per shard and
//! counts the answers. After a warm-up it tells shard 1 to crash (`segv`:
//! die by `SIGSEGV` as a wild pointer would; `abort`; `panic`), and prints:
//! the cause the supervisor saw (`killed by SIGSEGV`), how many requests
//! each other shard answered while shard 1 was down (they never notice),
//! and the **restart latency**: from the crash to the new incarnation's
//! first answer, beside the backoff it includes (target: ≤ 50 ms + backoff).
//!
//! With `--serve` it keeps serving (one status line a second) until
//! `SIGTERM` or Ctrl-C, then shuts the shards down cleanly. Kill shards from
//! another terminal (`kill -KILL <pid>`, `kill -ABRT <pid>`; the pids are
//! printed) and watch them come back.
//!
//! Exits 0 once every shard is stopped and reaped; if the shards crash more
//! often than the restart-intensity limit allows, the supervisor gives up
//! and stops them all, and the program says so and exits 1.
//!
//! The one call every shard program makes first is `shard::start`: in the
//! shard processes (this same executable, re-executed) it runs the entry
//! function and never returns.

use std::time::{Duration, Instant};

use spindle::shard::{self, Config, Event, Incoming, Peer, Shard, StopReason};

/// A shard: answers `req <n>` with `ok <n>`, and `crash <how>` by crashing.
fn serve(me: Shard) {
    while let Ok(incoming) = me.recv() {
        let Incoming::Message {
            from: Peer::Supervisor,
            bytes,
        } = incoming
        else {
            continue;
        };
        let request = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(number) = request.strip_prefix("req ") {
            if me
                .send_to_supervisor(format!("ok {number}").as_bytes())
                .is_err()
            {
                return;
            }
        } else if let Some(how) = request.strip_prefix("crash ") {
            crash(how);
        }
    }
}

fn crash(how: &str) {
    match how {
        "segv" => {
            // What a wild pointer ends in, without undefined behaviour:
            // restore the default action (spindle's overflow handler is
            // installed) and raise SIGSEGV at ourselves.
            // SAFETY: setting a signal action and raising a signal have no
            // memory-safety preconditions.
            unsafe {
                libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                libc::raise(libc::SIGSEGV);
            }
        }
        "abort" => std::process::abort(),
        _ => panic!("shard asked to panic"),
    }
}

struct Options {
    shards: usize,
    crash: String,
    backoff: Duration,
    serve: bool,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|arg| arg == name)
            .and_then(|index| args.get(index + 1))
            .cloned()
    };
    let options = Options {
        shards: value("--shards").map_or(4, |n| n.parse().expect("--shards N")),
        crash: value("--crash").unwrap_or_else(|| "segv".into()),
        backoff: Duration::from_millis(
            value("--backoff-ms").map_or(10, |n| n.parse().expect("--backoff-ms M")),
        ),
        serve: args.iter().any(|arg| arg == "--serve"),
    };
    assert!(options.shards >= 2, "--shards must be at least 2");
    assert!(
        ["segv", "abort", "panic"].contains(&options.crash.as_str()),
        "--crash segv|abort|panic"
    );
    options
}

/// The supervisor began stopping every shard (for this reason) before the
/// program was done with them.
struct Stopped(StopReason);

/// The supervisor's side of the load: one request in flight per shard.
struct Client {
    supervisor: shard::Supervisor,
    in_flight: Vec<bool>,
    answered: Vec<u64>,
    generation: Vec<u64>,
    next_request: u64,
}

impl Client {
    /// Sends shard `shard` its next request unless one is in flight.
    fn feed(&mut self, shard: usize) {
        if !self.in_flight[shard] {
            let request = format!("req {}", self.next_request);
            if self.supervisor.send(shard, request.as_bytes()).is_ok() {
                self.in_flight[shard] = true;
                self.next_request += 1;
            }
        }
    }

    /// Handles one event (waiting up to 5 ms); answers are counted and
    /// followed by the next request. Returns the event for the caller, or
    /// [`Stopped`] once the supervisor stops the shards (it gave up
    /// restarting them, or a termination signal came).
    fn step(&mut self) -> Result<Option<Event>, Stopped> {
        let Some(event) = self.supervisor.recv_timeout(Duration::from_millis(5)) else {
            return Ok(None);
        };
        match &event {
            Event::Message {
                from, generation, ..
            } => {
                self.answered[*from] += 1;
                self.generation[*from] = *generation;
                self.in_flight[*from] = false;
                self.feed(*from);
            }
            Event::Started {
                shard, generation, ..
            } => {
                self.generation[*shard] = *generation;
                self.in_flight[*shard] = false;
                self.feed(*shard);
            }
            Event::Exited { shard, .. } => self.in_flight[*shard] = false,
            Event::Stopping { reason } => return Err(Stopped(*reason)),
            _ => {}
        }
        Ok(Some(event))
    }

    /// Runs the load for `period`.
    fn run_for(&mut self, period: Duration) -> Result<(), Stopped> {
        let end = Instant::now() + period;
        while Instant::now() < end {
            self.step()?;
        }
        Ok(())
    }

    /// Stops every shard (unless the supervisor already did) and reaps
    /// them. Exits the program with 1 if the supervisor had given up.
    fn shut_down(self) {
        let stopping = Instant::now();
        match self.supervisor.shutdown() {
            Ok(()) => println!(
                "shutdown: all shards stopped and reaped in {:.1} ms",
                stopping.elapsed().as_secs_f64() * 1e3
            ),
            Err(error) => {
                eprintln!("shards: the supervisor gave up: {error}");
                std::process::exit(1);
            }
        }
    }
}

fn main() {
    let options = options();
    let config = Config::new(options.shards)
        .workers(1)
        .backoff(options.backoff, Duration::from_secs(1));
    let supervisor = shard::start(config, serve).expect("start the supervisor");

    // Everything below runs in the supervisor only.
    let shards = options.shards;
    let mut client = Client {
        supervisor,
        in_flight: vec![false; shards],
        answered: vec![0; shards],
        generation: vec![0; shards],
        next_request: 0,
    };
    let outcome = if options.serve {
        serve_until_signal(&mut client)
    } else {
        crash_one(&mut client, &options)
    };
    if let Err(Stopped(reason)) = outcome {
        println!("the supervisor is stopping every shard ({reason:?})");
    }
    client.shut_down();
}

/// Waits until every shard has started; returns their pids.
fn start_all(client: &mut Client) -> Result<Vec<u32>, Stopped> {
    let shards = client.answered.len();
    let started_at = Instant::now();
    let mut pids = vec![0; shards];
    while pids.contains(&0) {
        // Answers from the shards already up are counted by `step`.
        if let Some(Event::Started { shard, pid, .. }) = client.step()? {
            pids[shard] = pid;
        }
    }
    println!(
        "{shards} shards started in {:.1} ms (pids {pids:?}); each answers requests from this supervisor",
        started_at.elapsed().as_secs_f64() * 1e3
    );
    Ok(pids)
}

/// The demonstration: warm up, crash shard 1, measure the outage and the
/// restart, serve a while more.
fn crash_one(client: &mut Client, options: &Options) -> Result<(), Stopped> {
    let shards = options.shards;
    start_all(client)?;
    client.run_for(Duration::from_millis(500))?;
    println!("warm-up, 500 ms: answers per shard {:?}", client.answered);

    let victim = 1;
    let before = client.answered.clone();
    println!("telling shard {victim} to crash ({})", options.crash);
    let crash_at = Instant::now();
    client
        .supervisor
        .send(victim, format!("crash {}", options.crash).as_bytes())
        .expect("shard 1 is running");
    let (mut exited_at, mut restart_in) = (None, Duration::ZERO);
    let mut started_at = None;
    let serving_at = loop {
        let event = client.step()?;
        match event {
            Some(Event::Exited {
                shard,
                generation,
                exit,
                restart_in: delay,
            }) if shard == victim => {
                exited_at = Some(Instant::now());
                restart_in = delay.unwrap_or_default();
                println!(
                    "  shard {shard} (generation {generation}) {exit}; restart in {:.1} ms",
                    restart_in.as_secs_f64() * 1e3
                );
            }
            Some(Event::Started {
                shard,
                generation,
                pid,
            }) if shard == victim => {
                started_at = Some(Instant::now());
                println!("  shard {shard} restarted: generation {generation}, pid {pid}");
            }
            Some(Event::Message {
                from, generation, ..
            }) if from == victim && generation > 1 => {
                break Instant::now();
            }
            _ => {}
        }
        assert!(
            crash_at.elapsed() < Duration::from_secs(30),
            "shard {victim} did not come back"
        );
    };
    let outage: Vec<String> = (0..shards)
        .filter(|&shard| shard != victim)
        .map(|shard| format!("shard {shard}: {}", client.answered[shard] - before[shard]))
        .collect();
    let milliseconds = |from: Instant, to: Instant| (to - from).as_secs_f64() * 1e3;
    let exited_at = exited_at.expect("the exit was reported");
    let started_at = started_at.expect("the restart was reported");
    println!(
        "  while shard {victim} was down ({:.1} ms) the others answered: {}",
        milliseconds(crash_at, serving_at),
        outage.join(", ")
    );
    let latency = milliseconds(crash_at, serving_at);
    let backoff = restart_in.as_secs_f64() * 1e3;
    println!(
        "restart latency: crash -> exit seen {:.1} ms -> restarted {:.1} ms -> serving {:.1} ms",
        milliseconds(crash_at, exited_at),
        milliseconds(crash_at, started_at),
        latency
    );
    println!(
        "  = {:.1} ms of backoff + {:.1} ms of detection, re-exec and start-up (target <= 50 ms + backoff: {})",
        backoff,
        latency - backoff,
        if latency - backoff <= 50.0 { "met" } else { "MISSED" }
    );

    client.run_for(Duration::from_millis(500))?;
    println!(
        "after, 500 ms more: answers per shard {:?}, generations {:?}",
        client.answered, client.generation
    );
    Ok(())
}

/// `--serve`: keep the load going, print a status line a second and every
/// crash and restart, until SIGTERM or Ctrl-C (then `Stopped`, with the
/// signal) or until the supervisor gives up.
fn serve_until_signal(client: &mut Client) -> Result<(), Stopped> {
    start_all(client)?;
    client
        .supervisor
        .watch_termination_signals()
        .expect("watch SIGTERM and SIGINT");
    println!(
        "serving until SIGTERM or Ctrl-C (pid {}); try `kill -KILL <shard pid>`",
        std::process::id()
    );
    let mut last_status = Instant::now();
    let mut last_answered = client.answered.clone();
    loop {
        match client.step()? {
            Some(Event::Exited {
                shard,
                generation,
                exit,
                restart_in,
            }) => println!(
                "shard {shard} (generation {generation}) {exit}; restart in {restart_in:?}"
            ),
            Some(Event::Started {
                shard,
                generation,
                pid,
            }) => println!("shard {shard} started: generation {generation}, pid {pid}"),
            Some(Event::Disconnected { shard, error, .. }) => {
                println!("shard {shard} disconnected: {error}")
            }
            _ => {}
        }
        if last_status.elapsed() >= Duration::from_secs(1) {
            let rates: Vec<u64> = client
                .answered
                .iter()
                .zip(&last_answered)
                .map(|(now, before)| now - before)
                .collect();
            println!(
                "answers in the last second per shard {rates:?}, generations {:?}",
                client.generation
            );
            last_answered = client.answered.clone();
            last_status = Instant::now();
        }
    }
}
