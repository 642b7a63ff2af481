//! Profiles of a portable and a lowered program: every operator timed (nodes inside the
//! backend too), totals consistent, and a trace in the trace-event format Perfetto reads.

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
    let json: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
    assert_eq!(json["rows"].as_array().unwrap().len(), p.rows.len());

    // The trace-event format: complete events with name, ph, ts, dur (µs), pid, tid; the
    // delegate's nodes lie inside the delegate call.
    let trace: serde_json::Value = serde_json::from_str(&p.chrome_trace()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    assert_eq!(events.len(), p.rows.len() + 1);
    for e in events {
        assert_eq!(e["ph"], "X");
        assert!(e["name"].is_string() && e["pid"].is_number() && e["tid"].is_number());
        assert!(e["ts"].as_f64().unwrap() >= 0.0 && e["dur"].as_f64().unwrap() >= 0.0);
    }
    let call = events.iter().find(|e| e["cat"] == "delegate").unwrap();
    let (start, end) = (call["ts"].as_f64().unwrap(), call["ts"].as_f64().unwrap() + call["dur"].as_f64().unwrap());
    for e in events.iter().filter(|e| e["cat"] == "node") {
        let (s, d) = (e["ts"].as_f64().unwrap(), e["dur"].as_f64().unwrap());
        assert!(s >= start - 1e-3 && s + d <= end + 1e-3, "node {e} outside the delegate call [{start}, {end}]");
    }
}
