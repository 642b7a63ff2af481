//! Soak: one loaded `Program` per model, shared by several threads, each running every method
//! of every model over and over. Every output must be bit-identical to a single-threaded run
//! (no state leaks between methods, runs or threads), and resident memory must stay flat after
//! warm-up (nothing grows per run).
//!
//! CI runs it for a few seconds; `scripts/soak.sh MINUTES` runs the long version (release build,
//! `FERRITE_SOAK_SECS`).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrite::prelude::*;

fn fixture(name: &str) -> Program<'static> {
    Program::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap()
}

/// Lowered to Ferrite's backend (delegate blobs) from a fixture.
fn lowered(name: &str) -> Program<'static> {
    let bytes = ferrite::lower(&fixture(name), &ferrite::LowerOptions::default()).unwrap().bytes;
    Program::from_vec(bytes).unwrap()
}

/// Resident set size in bytes (Linux), or None elsewhere.
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

struct Job {
    program: Arc<Program<'static>>,
    method: String,
    inputs: Vec<TensorData>,
    /// Output bytes of a single-threaded run.
    want: Vec<Vec<u8>>,
}

#[test]
fn shared_programs_run_by_many_threads_stay_exact_and_flat() {
    let seconds: f64 = std::env::var("FERRITE_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    // Float, quantized and multi-method programs; portable and delegated to Ferrite's backend.
    let programs: Vec<Arc<Program<'static>>> = vec![
        Arc::new(lowered("digits_cnn/portable.pte")),
        Arc::new(lowered("digits_cnn/q8.pte")),
        Arc::new(lowered("tiny_gpt/portable.pte")),
        Arc::new(lowered("mlp/qd8.pte")),
        Arc::new(fixture("mlp/portable.pte")),
        Arc::new(fixture("two_methods/portable.pte")),
    ];
    // (running_sum is left out: its method updates a buffer it owns, so each run's output is
    // meant to differ from the last.)
    let single = Runtime::new().with_threads(1).unwrap();
    let mut jobs = Vec::new();
    for program in &programs {
        for method in program.method_names().map(str::to_string).collect::<Vec<_>>() {
            let inputs = ferrite::runtime::default_inputs(program, &method).unwrap();
            let mut m = single.load_method(program, &method).unwrap();
            let want = m.run(&inputs).unwrap().iter().map(|t| t.bytes().to_vec()).collect();
            jobs.push(Job { program: Arc::clone(program), method, inputs, want });
        }
    }
    assert!(jobs.len() >= 7, "{} methods", jobs.len());
    // The same method run again on one thread gives the same bits (no state kept between runs).
    for (i, job) in jobs.iter().enumerate() {
        let mut m = single.load_method(&job.program, &job.method).unwrap();
        for run in 0..3 {
            let got: Vec<Vec<u8>> = m.run(&job.inputs).unwrap().iter().map(|t| t.bytes().to_vec()).collect();
            assert!(got == job.want, "job {i} ({}): run {run} on a fresh method differs", job.method);
        }
    }
    let jobs = Arc::new(jobs);

    // Four threads on any machine: two with a one-thread runtime, two with a two-thread pool
    // (kernels split across workers must give the same bits).
    let threads = 4;
    // Workers count themselves warmed, then done; the main thread reads RSS at both points and
    // releases them. It polls rather than waits on a barrier, so a worker that panics ends the
    // test instead of leaving it waiting.
    let warmed = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let measured = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (jobs, warmed, done, measured) =
                (Arc::clone(&jobs), Arc::clone(&warmed), Arc::clone(&done), Arc::clone(&measured));
            std::thread::spawn(move || {
                let runtime = Runtime::new().with_threads(1 + t % 2).unwrap();
                let mut methods: Vec<Method> =
                    jobs.iter().map(|j| runtime.load_method(&j.program, &j.method).unwrap()).collect();
                let mut runs = 0u64;
                let mut pass = |methods: &mut Vec<Method>| {
                    // Each thread visits the methods in its own order.
                    for k in 0..jobs.len() {
                        let i = (k * (2 * t + 1) + t) % jobs.len();
                        let job = &jobs[i];
                        let got = methods[i].run(&job.inputs).unwrap();
                        let got: Vec<&[u8]> = got.iter().map(|o| o.bytes()).collect();
                        assert!(
                            got.iter().zip(&job.want).all(|(a, b)| *a == b.as_slice()) && got.len() == job.want.len(),
                            "thread {t}, run {runs}: job {i} ({}) differs from the single-threaded run",
                            job.method
                        );
                        runs += 1;
                    }
                };
                for _ in 0..3 {
                    pass(&mut methods);
                }
                warmed.fetch_add(1, Ordering::SeqCst);
                while Instant::now() < deadline {
                    pass(&mut methods);
                }
                done.fetch_add(1, Ordering::SeqCst);
                // Keep the methods alive until the main thread has read RSS.
                while !measured.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                drop(methods);
                runs
            })
        })
        .collect();
    let wait_for = |count: &AtomicUsize| {
        while count.load(Ordering::SeqCst) < threads {
            assert!(!workers.iter().any(|w| w.is_finished()), "a worker failed (its panic is above)");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_for(&warmed);
    let before = rss();
    wait_for(&done);
    let after = rss();
    measured.store(true, Ordering::SeqCst);
    let runs: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    eprintln!(
        "soak: {threads} threads, {} methods, {runs} runs in {seconds} s; RSS after warm-up {:?} MiB, at the end {:?} MiB",
        jobs.len(),
        before.map(|b| b >> 20),
        after.map(|b| b >> 20)
    );
    if let (Some(before), Some(after)) = (before, after) {
        // Flat: allocator noise only, however long it ran. (Debug builds make ~25,000 runs a
        // second here: a leak of a few hundred bytes per run crosses the bound within CI's
        // three seconds.)
        assert!(after <= before + (16 << 20), "RSS grew from {} to {} MiB", before >> 20, after >> 20);
    }
}
