//! Profiles of a portable and a lowered program: every operator timed (nodes inside the
//! backend too), totals consistent, and a trace in the trace-event format Perfetto reads.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use ferrite_program::Program;
use ferrite_runtime::Runtime;

fn digits() -> Program<'static> {
    Program::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/digits_cnn/portable.pte"))
        .expect("fixture")
}

#[test]
fn portable_profile_times_every_kernel_call() {
    let program = Arc::new(digits());
    let mut m = Runtime::new().load_method(&program, "forward").unwrap();
    let inputs = ferrite_runtime::default_inputs(&program, "forward").unwrap();
    let p = ferrite_troubleshooting::profile(&mut m, &inputs, 1, 5).unwrap();
    let calls = program.def().plans[0].chains[0].instructions.len();
    assert_eq!(p.rows.len(), calls);
    assert!(p.rows.iter().all(|r| r.node.is_none() && r.op.starts_with("aten::")));
    assert!(p.delegates.is_empty());
    let sum: f64 = p.rows.iter().map(|r| r.median_ms).sum();
    assert!(sum <= p.total_ms * 1.5 + 0.05, "operators {sum} ms vs run {} ms", p.total_ms);
    assert!(p.table(0).contains("aten::convolution.out"));
    assert!(ferrite_troubleshooting::profile(&mut m, &inputs, 0, 0).is_err());
}

#[test]
fn lowered_profile_sees_inside_the_backend_and_writes_a_trace() {
    let lowered = ferrite_lower::lower(&digits(), &ferrite_lower::LowerOptions::default()).unwrap();
    let program = Arc::new(Program::from_vec(lowered.bytes).unwrap());
    let mut m = Runtime::new().load_method(&program, "forward").unwrap();
    let inputs = ferrite_runtime::default_inputs(&program, "forward").unwrap();
    let p = ferrite_troubleshooting::profile(&mut m, &inputs, 1, 5).unwrap();
    assert_eq!(p.delegates.len(), 1, "{p:?}");
    assert_eq!(p.delegates[0].1, "FerriteBackend");
    assert!(!p.rows.is_empty() && p.rows.iter().all(|r| r.node.is_some()), "{p:?}");
    assert!(p.rows.iter().any(|r| r.op.starts_with("ferrite::")));
    // Convolutions and the dense layer have a work estimate and a rate; the totals line sums them.
    let rated: Vec<_> = p.rows.iter().filter(|r| r.flops.is_some()).collect();
    assert_eq!(rated.len(), 3, "{}", p.table(0));
    assert!(rated.iter().all(|r| r.gflops_per_s.is_some_and(|g| g > 0.0)));
    assert!(p.table(0).contains("GFLOP per run"));
    let json: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
    assert_eq!(json["rows"].as_array().unwrap().len(), p.rows.len());

    // The trace-event format: complete events with name, ph, ts, dur (µs), pid, tid; the
    // delegate's nodes lie inside the delegate call.
    let trace: serde_json::Value = serde_json::from_str(&p.chrome_trace()).unwrap();
    let all = trace["traceEvents"].as_array().unwrap();
    // Track names (metadata events), load phases on their own track, then the run.
    let tracks: Vec<_> = all.iter().filter(|e| e["ph"] == "M").collect();
    assert!(tracks.iter().all(|e| e["name"] == "thread_name" && e["args"]["name"].is_string()));
    let load: Vec<_> = all.iter().filter(|e| e["cat"] == "load").collect();
    assert_eq!(load.len(), 4, "resolve, init the delegate, memory plan, values: {load:?}");
    assert!(load.iter().any(|e| e["name"].as_str().unwrap().starts_with("init delegate 0 (FerriteBackend")));
    assert!(load.iter().all(|e| e["ts"].as_f64().unwrap() < 0.0 && e["tid"] == 0));
    let events: Vec<_> = all.iter().filter(|e| e["ph"] == "X" && e["cat"] != "load" && e["cat"] != "worker").collect();
    assert_eq!(events.len(), p.rows.len() + 1);
    // Pool threads' shares, each on its own named track.
    let workers: Vec<_> = all.iter().filter(|e| e["cat"] == "worker").collect();
    assert!(workers.iter().all(|w| tracks.iter().any(|t| t["tid"] == w["tid"]) && w["tid"].as_u64().unwrap() >= 2));
    assert_eq!(all.len(), tracks.len() + load.len() + events.len() + workers.len());
    for e in &events {
        assert_eq!(e["ph"], "X");
        assert!(e["name"].is_string() && e["pid"].is_number() && e["tid"].is_number());
        assert!(e["ts"].as_f64().unwrap() >= 0.0 && e["dur"].as_f64().unwrap() >= 0.0);
    }
    assert!(p.table(0).contains("load: resolve "));
    let call = events.iter().find(|e| e["cat"] == "delegate").unwrap();
    let (start, end) = (call["ts"].as_f64().unwrap(), call["ts"].as_f64().unwrap() + call["dur"].as_f64().unwrap());
    for e in events.iter().filter(|e| e["cat"] == "node") {
        let (s, d) = (e["ts"].as_f64().unwrap(), e["dur"].as_f64().unwrap());
        assert!(s >= start - 1e-3 && s + d <= end + 1e-3, "node {e} outside the delegate call [{start}, {end}]");
    }
}

/// A minimal reader of the FlatBuffer tables the ETDump holds (safe Rust, enough to check it).
struct Fb<'a>(&'a [u8]);

impl Fb<'_> {
    fn u32(&self, at: usize) -> usize {
        u32::from_le_bytes(self.0[at..at + 4].try_into().unwrap()) as usize
    }
    /// Where field `i` of the table at `t` lies, if present.
    fn field(&self, t: usize, i: usize) -> Option<usize> {
        let vt = (t as i64 - i64::from(i32::from_le_bytes(self.0[t..t + 4].try_into().unwrap()))) as usize;
        let vt_len = u16::from_le_bytes([self.0[vt], self.0[vt + 1]]) as usize;
        let slot = 4 + 2 * i;
        if slot + 2 > vt_len {
            return None;
        }
        let off = u16::from_le_bytes([self.0[vt + slot], self.0[vt + slot + 1]]) as usize;
        (off != 0).then_some(t + off)
    }
    fn deref(&self, at: usize) -> usize {
        at + self.u32(at)
    }
    fn vector(&self, t: usize, i: usize) -> Vec<usize> {
        let Some(f) = self.field(t, i) else { return vec![] };
        let v = self.deref(f);
        (0..self.u32(v)).map(|k| self.deref(v + 4 + 4 * k)).collect()
    }
    fn string(&self, t: usize, i: usize) -> Option<String> {
        let s = self.deref(self.field(t, i)?);
        Some(String::from_utf8(self.0[s + 4..s + 4 + self.u32(s)].to_vec()).unwrap())
    }
    fn i32(&self, t: usize, i: usize) -> i32 {
        self.field(t, i).map_or(-1, |f| i32::from_le_bytes(self.0[f..f + 4].try_into().unwrap()))
    }
    fn u64(&self, t: usize, i: usize) -> u64 {
        self.field(t, i).map_or(0, |f| u64::from_le_bytes(self.0[f..f + 8].try_into().unwrap()))
    }
}

#[test]
fn the_etdump_holds_every_run_and_event_in_executorchs_layout() {
    let lowered = ferrite_lower::lower(&digits(), &ferrite_lower::LowerOptions::default()).unwrap();
    let program = Arc::new(Program::from_vec(lowered.bytes).unwrap());
    let mut m = Runtime::new().with_threads(1).unwrap().load_method(&program, "forward").unwrap();
    let inputs = ferrite_runtime::default_inputs(&program, "forward").unwrap();
    let p = ferrite_troubleshooting::profile(&mut m, &inputs, 0, 3).unwrap();
    let bytes = p.etdump();
    // Size-prefixed, identifier ED00, version 0.
    assert_eq!(u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize, bytes.len() - 4);
    let fb = Fb(&bytes[4..]);
    assert_eq!(&fb.0[4..8], b"ED00");
    let root = fb.u32(0);
    assert_eq!(fb.i32(root, 0), 0, "version");
    let runs = fb.vector(root, 1);
    assert_eq!(runs.len(), 3);
    let nodes = p.rows.len();
    for run in runs {
        assert_eq!(fb.string(run, 0).as_deref(), Some("forward"));
        assert_eq!(fb.i32(run, 1), -1, "bundled_input_index");
        let events: Vec<usize> = fb.vector(run, 3).into_iter().map(|e| fb.deref(fb.field(e, 0).unwrap())).collect();
        // Method::execute, the delegate call, its nodes.
        assert_eq!(events.len(), 2 + nodes);
        let names: Vec<String> = events.iter().map(|&e| fb.string(e, 0).unwrap()).collect();
        assert_eq!(names[0], "Method::execute");
        assert_eq!(fb.i32(events[0], 2), -1);
        assert!(names.contains(&"DELEGATE_CALL".to_string()));
        let node_ids: Vec<String> = events.iter().filter_map(|&e| fb.string(e, 4)).collect();
        assert_eq!(node_ids.len(), nodes);
        assert!(node_ids.iter().all(|id| id.starts_with("node ")), "{node_ids:?}");
        for &e in &events {
            assert!(fb.u64(e, 7) >= fb.u64(e, 6), "end before start");
            assert!(fb.i32(e, 2) >= -1 && fb.i32(e, 3) == -1);
        }
    }
}
