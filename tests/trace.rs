//! The timeline trace: the file parses as JSON (Chrome trace-event format)
//! and holds run slices on every worker, steals, spawns and parks.

use std::time::Duration;

#[test]
fn the_trace_shows_runs_on_every_worker_and_steals() {
    let path = std::env::temp_dir().join(format!("spindle-trace-test-{}.json", std::process::id()));
    let rt = spindle::Builder::new()
        .workers(2)
        .trace(&path)
        .build()
        .unwrap();
    rt.block_on(|| {
        // Spawned from one fiber, busy for a while: the other worker steals.
        let fibers: Vec<_> = (0..200)
            .map(|_| {
                spindle::spawn(|| {
                    let start = std::time::Instant::now();
                    while start.elapsed() < Duration::from_micros(200) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        fibers.into_iter().for_each(|f| f.join().unwrap());
        spindle::time::sleep(Duration::from_millis(5)); // the workers park
    });
    let report = rt.shutdown();
    assert_eq!(report.workers_joined, 2);

    let text = std::fs::read_to_string(&path).expect("the trace was written at shutdown");
    std::fs::remove_file(&path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).expect("the trace is valid JSON");
    let events = json["traceEvents"].as_array().expect("a traceEvents array");
    fn of<'a>(
        events: &'a [serde_json::Value],
        cat: &'a str,
    ) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
        events.iter().filter(move |e| e["cat"] == cat)
    }
    for worker in 0..2 {
        assert!(
            of(events, "run").any(|e| e["tid"] == worker && e["ph"] == "X"),
            "no run slice on worker {worker}"
        );
    }
    assert!(of(events, "steal").count() > 0, "work stealing shows up");
    assert_eq!(of(events, "spawn").count(), 200, "every spawn from a fiber");
    assert!(of(events, "idle").count() > 0, "parked workers show up");
    assert!(of(events, "run").all(|e| e["dur"].as_f64().is_some_and(|d| d >= 0.0)));
}
