//! Per-operator profiles: [`profile`] and [`Profile`].

use std::collections::BTreeMap;
use std::time::Instant;

use ferrite_runtime::{Method, ProfileEvent, TensorData};
use serde::Serialize;

use crate::{Result, TroubleshootError};

/// One operator's times over the profiled iterations.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileRow {
    /// The method's instruction.
    pub instruction: usize,
    /// The node inside the delegate the instruction calls, if this is one.
    pub node: Option<usize>,
    /// Operator (or `delegate <backend>`).
    pub op: String,
    /// Shape of the first output.
    pub shape: Vec<usize>,
    /// Median time, ms.
    pub median_ms: f64,
    /// Share of the median run, %.
    pub percent: f64,
    /// Convolutions and matrix products: multiply-adds ×2 per run and the rate at the median,
    /// GFLOP/s (see [`crate::flops`]).
    pub flops: Option<u64>,
    /// The rate, GFLOP/s.
    pub gflops_per_s: Option<f64>,
    /// Threads that ran a share of it (the most in any run; 1 for serial operators).
    pub threads: usize,
}

/// A method's profile.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// Iterations timed (after the warm-up).
    pub iterations: usize,
    /// Median time of a whole run, ms (what `ferrite bench` measures, with profiling on).
    pub total_ms: f64,
    /// Operators that ran outside any delegate, and nodes inside delegates, slowest first.
    pub rows: Vec<ProfileRow>,
    /// Delegate calls: (instruction, backend, median ms, median ms not spent in its nodes —
    /// copying inputs and outputs in and out).
    pub delegates: Vec<(usize, String, f64, f64)>,
    /// The method profiled.
    pub method: String,
    /// Loading the method, phase by phase: (what, ms).
    pub load: Vec<(String, f64)>,
    /// Operators a plain run executes fused into the one after them
    /// ([`ferrite_runtime::Method::fused_operators`]); the profile times each apart, so its
    /// total can exceed `ferrite bench`'s.
    pub fused_operators: usize,
    #[serde(skip)]
    load_events: Vec<ferrite_runtime::LoadEvent>,
    /// Each timed iteration: when it started, how long it took, and its events (the trace
    /// shows the last; the ETDump all of them).
    #[serde(skip)]
    pub(crate) runs: Vec<Run>,
}

/// One timed iteration.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub(crate) start: Instant,
    pub(crate) duration: std::time::Duration,
    pub(crate) events: Vec<ProfileEvent>,
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// An operator's name, output shape and times (ms), by (instruction, node).
type Timings = (String, Vec<usize>, Vec<f64>, usize);

/// Runs `method` on `inputs` `warmup` times, then `iterations` times with every operator timed.
pub fn profile(method: &mut Method, inputs: &[TensorData], warmup: usize, iterations: usize) -> Result<Profile> {
    if iterations == 0 {
        return Err(TroubleshootError::Option("--iters must be at least 1".into()));
    }
    let set = |m: &mut Method| -> Result<()> {
        for (i, t) in inputs.iter().enumerate() {
            m.set_input(i, t)?;
        }
        Ok(())
    };
    for _ in 0..warmup {
        set(method)?;
        method.execute()?;
    }
    let mut totals = Vec::with_capacity(iterations);
    let mut times: BTreeMap<(usize, Option<usize>), Timings> = BTreeMap::new();
    let mut runs = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        set(method)?;
        let t0 = Instant::now();
        let events = method.execute_profiled()?;
        let duration = t0.elapsed();
        totals.push(duration.as_secs_f64() * 1e3);
        for e in &events {
            let entry = times
                .entry((e.instruction, e.node))
                .or_insert_with(|| (e.name.clone(), e.shape.clone(), Vec::new(), 1));
            entry.2.push(e.duration.as_secs_f64() * 1e3);
            entry.3 = entry.3.max(e.workers.len());
        }
        runs.push(Run { start: t0, duration, events });
    }
    let total_ms = median(&mut totals);
    let work = crate::flops::method_flops(method.program(), method.name());
    let mut rows = Vec::new();
    let mut delegates = Vec::new();
    let inside: BTreeMap<usize, f64> =
        times.iter_mut().filter(|(k, _)| k.1.is_some()).fold(BTreeMap::new(), |mut acc, (k, v)| {
            *acc.entry(k.0).or_insert(0.0) += median(&mut v.2);
            acc
        });
    for ((instruction, node), (op, shape, mut t, threads)) in times {
        let m = median(&mut t);
        let is_delegate = node.is_none() && op.starts_with("delegate ");
        if is_delegate && inside.contains_key(&instruction) {
            let own = (m - inside[&instruction]).max(0.0);
            delegates.push((instruction, op.trim_start_matches("delegate ").to_string(), m, own));
            continue;
        }
        let flops = work.get(&(instruction, node)).copied();
        rows.push(ProfileRow {
            instruction,
            node,
            op,
            shape,
            median_ms: m,
            percent: if total_ms > 0.0 { 100.0 * m / total_ms } else { 0.0 },
            flops,
            gflops_per_s: flops.filter(|_| m > 0.0).map(|f| f as f64 / (m * 1e6)),
            threads,
        });
    }
    rows.sort_by(|a, b| b.median_ms.total_cmp(&a.median_ms));
    let load_events = method.load_events().to_vec();
    let load = load_events.iter().map(|e| (e.name.clone(), e.duration.as_secs_f64() * 1e3)).collect();
    Ok(Profile {
        iterations,
        total_ms,
        rows,
        delegates,
        method: method.name().to_string(),
        load,
        fused_operators: method.fused_operators(),
        load_events,
        runs,
    })
}

impl Profile {
    /// The table `ferrite profile` prints: the `top` slowest operators (0: all), then totals.
    pub fn table(&self, top: usize) -> String {
        let mut s = format!(
            "{:>6} {:>5} {:<38} {:<20} {:>10} {:>7} {:>4} {:>8}\n",
            "instr", "node", "operator", "output shape", "median ms", "%", "thr", "GFLOP/s"
        );
        let n = if top == 0 { self.rows.len() } else { top.min(self.rows.len()) };
        for r in &self.rows[..n] {
            let row = format!(
                "{:>6} {:>5} {:<38} {:<20} {:>10.4} {:>7.2} {:>4} {:>8}",
                r.instruction,
                r.node.map_or("-".into(), |k| k.to_string()),
                r.op,
                format!("{:?}", r.shape),
                r.median_ms,
                r.percent,
                r.threads,
                r.gflops_per_s.map_or(String::new(), |g| format!("{g:.1}"))
            );
            s += row.trim_end();
            s += "\n";
        }
        if n < self.rows.len() {
            let rest: f64 = self.rows[n..].iter().map(|r| r.median_ms).sum();
            s += &format!(
                "{:>6} {:>5} {:<38} {:<20} {:>10.4} {:>7.2}\n",
                "",
                "",
                format!("({} more)", self.rows.len() - n),
                "",
                rest,
                100.0 * rest / self.total_ms.max(f64::MIN_POSITIVE)
            );
        }
        let listed: f64 = self.rows.iter().map(|r| r.median_ms).sum();
        if !self.load.is_empty() {
            let phases: Vec<String> = self.load.iter().map(|(what, ms)| format!("{what} {ms:.3} ms")).collect();
            s += &format!("load: {}\n", phases.join("; "));
        }
        let work = self.rows.iter().filter_map(|r| r.flops).fold(0u64, u64::saturating_add);
        for (instruction, backend, all, own) in &self.delegates {
            s += &format!(
                "delegate call at instruction {instruction} ({backend}): {all:.4} ms, of which {own:.4} ms outside its nodes (inputs and outputs copied)\n"
            );
        }
        if self.fused_operators > 0 {
            s += &format!(
                "fused: {} operators run fused into the next in plain runs; profiling times each apart\n",
                self.fused_operators
            );
        }
        s += &format!(
            "total: {:.4} ms per run (median of {}); operators above: {:.4} ms",
            self.total_ms, self.iterations, listed
        );
        if work > 0 && self.total_ms > 0.0 {
            s += &format!(
                "; {:.3} GFLOP per run, {:.1} GFLOP/s",
                work as f64 / 1e9,
                work as f64 / (self.total_ms * 1e6)
            );
        }
        s += "\n";
        s
    }

    /// The profile as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Loading and the last iteration as a Chrome trace (trace-event format, `"ph": "X"`
    /// complete events, microseconds), which `chrome://tracing` and ui.perfetto.dev open. Load
    /// phases are on a "load" track; kernel calls and delegate calls on the calling thread's
    /// track, a delegate's nodes nested inside its call; each pool thread's share of a parallel
    /// operator on that thread's own track. Times count from the last run's start
    /// (load phases are negative).
    pub fn chrome_trace(&self) -> String {
        let Some(last) = self.runs.last() else { return "{\"traceEvents\":[]}".into() };
        let origin = last.start;
        let since = |t: Instant| {
            if t >= origin {
                t.duration_since(origin).as_secs_f64() * 1e6
            } else {
                -(origin.duration_since(t).as_secs_f64() * 1e6)
            }
        };
        let load = self.load_events.iter().map(|e| {
            serde_json::json!({
                "name": e.name,
                "cat": "load",
                "ph": "X",
                "ts": since(e.start),
                "dur": e.duration.as_secs_f64() * 1e6,
                "pid": 1,
                "tid": 0,
            })
        });
        // Pool threads' shares of parallel operators, one track per thread (tid 2 + index).
        let workers: Vec<serde_json::Value> = last
            .events
            .iter()
            .flat_map(|e| {
                e.workers.iter().map(move |w| {
                    serde_json::json!({
                        "name": e.name,
                        "cat": "worker",
                        "ph": "X",
                        "ts": since(w.start),
                        "dur": w.end.saturating_duration_since(w.start).as_secs_f64() * 1e6,
                        "pid": 1,
                        "tid": 2 + w.thread,
                        "args": { "instruction": e.instruction, "node": e.node, "chunks": w.chunks },
                    })
                })
            })
            .collect();
        let mut tids: Vec<u64> = workers.iter().filter_map(|w| w["tid"].as_u64()).collect();
        tids.sort_unstable();
        tids.dedup();
        let names = [
            serde_json::json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "load"}}),
            serde_json::json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": 1, "args": {"name": "run (calling thread)"}}),
        ]
        .into_iter()
        .chain(tids.into_iter().map(|t| {
            serde_json::json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": t, "args": {"name": format!("pool thread {}", t - 2)}})
        }));
        let events: Vec<serde_json::Value> = names
            .into_iter()
            .chain(load)
            .chain(last.events.iter().map(|e| {
                let ts = e.start.saturating_duration_since(origin).as_secs_f64() * 1e6;
                serde_json::json!({
                    "name": e.name,
                    "cat": if e.node.is_some() { "node" } else if e.name.starts_with("delegate ") { "delegate" } else { "kernel" },
                    "ph": "X",
                    "ts": ts,
                    "dur": e.duration.as_secs_f64() * 1e6,
                    "pid": 1,
                    "tid": 1,
                    "args": { "instruction": e.instruction, "node": e.node, "shape": e.shape },
                })
            }))
            .chain(workers)
            .collect();
        serde_json::json!({ "traceEvents": events, "displayTimeUnit": "ms" }).to_string()
    }
}
