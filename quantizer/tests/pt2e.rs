//! The quantizer against PT2E: on the fixtures PT2E quantized from a `calibration.npy`, the
//! same data must give the same parameters (histogram observer: scales within 0.1 %, zero
//! points exact; weights per channel), and the quantized programs must stay accurate.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::{Path, PathBuf};

use ferrite_program::graph::Graph;
use ferrite_program::{Program, Value};
use ferrite_quantizer::{Calibration, Emit, ObserverKind, Quantizer, Scheme};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

/// `(scale, zero point)` of every `quantize_per_tensor` call, in program order.
fn activation_params(program: &Program<'_>) -> Vec<(f64, i64)> {
    let plan = &program.def().plans[0];
    let graph = Graph::new(plan);
    graph
        .nodes()
        .iter()
        .filter(|n| n.op() == Some("quantized_decomposed::quantize_per_tensor.out"))
        .map(|n| {
            let s = match &plan.values[n.args[1]] {
                Value::Double(d) => *d,
                v => panic!("scale is {v:?}"),
            };
            let z = match &plan.values[n.args[2]] {
                Value::Int(i) => *i,
                v => panic!("zero point is {v:?}"),
            };
            (s, z)
        })
        .collect()
}

/// Per-channel weight scales and int8 values of every `dequantize_per_channel`, in order.
fn weights(program: &Program<'_>) -> Vec<(Vec<f32>, Vec<i8>)> {
    let plan = &program.def().plans[0];
    let graph = Graph::new(plan);
    graph
        .nodes()
        .iter()
        .filter(|n| n.op() == Some("quantized_decomposed::dequantize_per_channel.out"))
        .map(|n| {
            let q = program.tensor_data(plan.values[n.args[0]].as_tensor().unwrap()).unwrap();
            let s = program.tensor_data(plan.values[n.args[1]].as_tensor().unwrap()).unwrap();
            let scales = s.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            let n_q = plan.values[n.args[0]].as_tensor().unwrap().numel();
            (scales, q[..n_q].iter().map(|&b| b as i8).collect())
        })
        .collect()
}

fn quantize(name: &str, observer: ObserverKind) -> Vec<u8> {
    let program = Program::read(fixture(name).join("portable.pte")).unwrap();
    let calibration = Calibration::open(&fixture(name).join("calibration.npy")).unwrap();
    Quantizer::new(Scheme::StaticInt8).observer(observer).emit(Emit::Qdq).quantize(&program, &calibration).unwrap().qdq
}

fn compare_with_pt2e(name: &str) {
    let ours = Program::from_vec(quantize(name, ObserverKind::Histogram)).unwrap();
    let theirs = Program::read(fixture(name).join("q8.pte")).unwrap();
    let (a, b) = (activation_params(&ours), activation_params(&theirs));
    assert_eq!(a.len(), b.len(), "{name}: quantize calls: ours {a:?}, PT2E {b:?}");
    for (i, ((s, z), (ps, pz))) in a.iter().zip(&b).enumerate() {
        assert!((s / ps - 1.0).abs() < 1e-3, "{name}: activation {i}: scale {s} vs PT2E {ps}");
        assert_eq!(z, pz, "{name}: activation {i}: zero point");
    }
    let (wa, wb) = (weights(&ours), weights(&theirs));
    assert_eq!(wa.len(), wb.len());
    for (i, ((s, q), (ps, pq))) in wa.iter().zip(&wb).enumerate() {
        for (c, (x, y)) in s.iter().zip(ps).enumerate() {
            assert!((x / y - 1.0).abs() < 1e-5, "{name}: weight {i} channel {c}: scale {x} vs PT2E {y}");
        }
        let differ = q.iter().zip(pq).filter(|(x, y)| x != y).count();
        // Batch-norm folding rounds like PT2E's up to an ulp; a value on a rounding edge may
        // land one step away.
        assert!(differ * 1000 <= q.len(), "{name}: weight {i}: {differ} of {} int8 values differ", q.len());
        assert!(q.iter().zip(pq).all(|(x, y)| (*x as i32 - *y as i32).abs() <= 1));
    }
}

#[test]
fn histogram_parameters_equal_pt2e_on_digits_cnn() {
    compare_with_pt2e("digits_cnn");
}

#[test]
fn histogram_parameters_equal_pt2e_on_mlp() {
    compare_with_pt2e("mlp");
}

fn sqnr(reference: &[f64], x: &[f64]) -> f64 {
    let s: f64 = reference.iter().map(|r| r * r).sum();
    let n: f64 = reference.iter().zip(x).map(|(r, v)| (r - v) * (r - v)).sum();
    10.0 * (s / n).log10()
}

#[test]
fn quantized_digits_cnn_keeps_its_accuracy() {
    let program = Program::read(fixture("digits_cnn").join("portable.pte")).unwrap();
    let calibration = Calibration::open(&fixture("digits_cnn").join("calibration.npy")).unwrap();
    let mut q = Quantizer::new(Scheme::StaticInt8).quantize(&program, &calibration).unwrap();
    // The stacked images are [360, 1, 8, 8]; the method takes [1, 1, 8, 8] (the batch axis is
    // put back).
    let images = Calibration::open(&fixture("digits_cnn").join("test_images.npy")).unwrap();
    let labels = Calibration::labels(&fixture("digits_cnn").join("test_labels.npy")).unwrap();
    let m = q.evaluate(&images, Some(&labels)).unwrap().clone();
    let (acc, float_acc) = m.accuracy.unwrap();
    assert!(acc * 360.0 >= 353.0, "quantized accuracy {acc} (float {float_acc})");
    assert!(m.top1_agreement > 0.97, "{m:?}");
    // Every quantized activation was measured.
    assert!(q.report.tensors.iter().all(|t| t.sqnr_db.is_some_and(|s| s > 15.0)), "{}", q.report.table());
    for t in &q.report.tensors {
        assert_eq!(t.value_sqnr_db.len(), t.values.len());
        assert!(t.value_sqnr_db.iter().all(|s| s.is_some_and(|s| s > 15.0)), "{t:?}");
    }
    let json: serde_json::Value = serde_json::from_str(&q.report.to_json()).unwrap();
    assert_eq!(json["model"]["samples"], 360);
}

#[test]
fn quantized_outputs_are_as_close_to_eager_as_pt2e() {
    for name in ["digits_cnn", "mlp"] {
        let dir = fixture(name);
        let program = Program::read(dir.join("portable.pte")).unwrap();
        let calibration = Calibration::open(&dir.join("calibration.npy")).unwrap();
        let input = ferrite_runtime::read_npy(&dir.join("input_0.npy")).unwrap();
        let eager = ferrite_runtime::read_npy(&dir.join("eager.output_0.npy")).unwrap().to_f64_vec().unwrap();
        let pt2e = ferrite_runtime::read_npy(&dir.join("q8.output_0.npy")).unwrap().to_f64_vec().unwrap();
        for emit in [Emit::Qdq, Emit::Ferrite] {
            let q = Quantizer::new(Scheme::StaticInt8).emit(emit).quantize(&program, &calibration).unwrap();
            let p = std::sync::Arc::new(Program::from_vec(q.program).unwrap());
            let mut m = ferrite_runtime::Runtime::new().load_method(&p, "forward").unwrap();
            let out = m.run(std::slice::from_ref(&input)).unwrap().remove(0).to_f64_vec().unwrap();
            let (ours, theirs) = (sqnr(&eager, &out), sqnr(&eager, &pt2e));
            assert!(ours >= theirs - 1.0, "{name} {emit:?}: SQNR vs eager {ours:.2} dB, PT2E's {theirs:.2} dB");
            if emit == Emit::Qdq {
                // Same parameters, same arithmetic: the portable run is ExecuTorch's q8 output —
                // exactly where no batch norm was folded (folding may differ from PT2E's by an
                // ulp, which can move a value by one output quantization step).
                let step = activation_params(&Program::read(dir.join("q8.pte")).unwrap()).last().unwrap().0;
                let max = out.iter().zip(&pt2e).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
                let allowed = if name == "mlp" { 0.0 } else { step * 1.001 };
                assert!(max <= allowed, "{name}: max difference to PT2E's output {max} (step {step})");
            }
        }
    }
}

#[test]
fn dynamic_int8_mlp_matches_executorch_qd8() {
    let dir = fixture("mlp");
    let program = Program::read(dir.join("portable.pte")).unwrap();
    let q = Quantizer::new(Scheme::DynamicInt8).emit(Emit::Qdq).quantize(&program, &Calibration::none()).unwrap();
    let ours = Program::from_vec(q.qdq).unwrap();
    let theirs = Program::read(dir.join("qd8.pte")).unwrap();
    let ops = |p: &Program<'_>| -> Vec<String> {
        let plan = &p.def().plans[0];
        let mut v: Vec<String> = Graph::new(plan).nodes().iter().map(|n| n.op().unwrap_or("").to_string()).collect();
        v.sort();
        v
    };
    // The same calls (the weight permutes may come earlier or later).
    assert_eq!(ops(&ours), ops(&theirs));
    assert_eq!(weights(&ours), weights(&theirs));
    let input = ferrite_runtime::read_npy(&dir.join("input_0.npy")).unwrap();
    let p = std::sync::Arc::new(ours);
    let out = ferrite_runtime::Runtime::new().load_method(&p, "forward").unwrap().run(&[input]).unwrap().remove(0);
    let reference = ferrite_runtime::read_npy(&dir.join("qd8.output_0.npy")).unwrap();
    assert_eq!(out.to_f64_vec().unwrap(), reference.to_f64_vec().unwrap(), "ExecuTorch's qd8 output, bit for bit");
}

#[test]
fn static_schemes_refuse_to_run_without_calibration_and_check_samples() {
    let program = Program::read(fixture("mlp").join("portable.pte")).unwrap();
    let err = Quantizer::new(Scheme::StaticInt8).quantize(&program, &Calibration::none()).unwrap_err();
    assert_eq!(err.code(), "Q002");
    let wrong = ferrite_runtime::TensorData::from_slice(vec![4, 8], &[0f32; 32]).unwrap();
    let err = Quantizer::new(Scheme::StaticInt8)
        .quantize(&program, &Calibration::from_samples(vec![vec![wrong]]))
        .unwrap_err();
    assert_eq!(err.code(), "Q003", "{err}");
    let q8 = Program::read(fixture("mlp").join("q8.pte")).unwrap();
    let err = Quantizer::new(Scheme::DynamicInt8).quantize(&q8, &Calibration::none()).unwrap_err();
    assert_eq!(err.code(), "Q005");
}

#[test]
fn min_max_observer_parameters_are_the_observed_range() {
    let program = Program::read(fixture("mlp").join("portable.pte")).unwrap();
    let calibration = Calibration::open(&fixture("mlp").join("calibration.npy")).unwrap();
    let q = Quantizer::new(Scheme::StaticInt8)
        .observer(ObserverKind::MinMax)
        .emit(Emit::Qdq)
        .quantize(&program, &calibration)
        .unwrap();
    // The input's range over all samples, through PyTorch's formula.
    let mut all = Vec::new();
    for i in 0..calibration.len() {
        all.extend_from_slice(calibration.sample(i).unwrap()[0].as_slice::<f32>().unwrap());
    }
    let (lo, hi) = all.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    let expected = ferrite_quantizer::affine_qparams(lo, hi, -128, 127, ferrite_quantizer::SCALE_EPS);
    let t = &q.report.tensors[0];
    assert_eq!(t.observed, (lo, hi));
    assert_eq!(t.params, expected);
    let params = activation_params(&Program::from_vec(q.qdq).unwrap());
    assert_eq!(params[0], (expected.scale as f64, expected.zero_point));
}

/// Output of `program` (bytes) on `input`, by Ferrite's runtime.
fn run(program: Vec<u8>, input: &ferrite_runtime::TensorData) -> Vec<f64> {
    let p = std::sync::Arc::new(Program::from_vec(program).unwrap());
    let mut m = ferrite_runtime::Runtime::new().load_method(&p, "forward").unwrap();
    m.run(std::slice::from_ref(input)).unwrap().remove(0).to_f64_vec().unwrap()
}

#[test]
fn weight_schemes_on_a_transformer() {
    // tiny_gpt_int4: the float program of the fixture torchao quantized to 8da4w for XNNPACK.
    let dir = fixture("tiny_gpt_int4");
    let program = Program::read(dir.join("portable.pte")).unwrap();
    let input = ferrite_runtime::read_npy(&dir.join("input_0.npy")).unwrap();
    let eager = ferrite_runtime::read_npy(&dir.join("eager.output_0.npy")).unwrap().to_f64_vec().unwrap();
    let none = Calibration::none();

    // 8da4w, lowered: every linear becomes Ferrite's groupwise int4 layer, as accurate as
    // torchao's 8da4w on XNNPACK.
    let q = Quantizer::new(Scheme::Int4Weight { group_size: 32 }).quantize(&program, &none).unwrap();
    let lowered = Program::from_vec(q.program.clone()).unwrap();
    let kernel_calls = Graph::new(&lowered.def().plans[0]).nodes().iter().filter(|n| n.op().is_some()).count();
    assert_eq!(kernel_calls, 0, "the whole 8da4w program runs in the backend");
    let xnnpack = ferrite_runtime::read_npy(&dir.join("8da4w_xnnpack.output_0.npy")).unwrap().to_f64_vec().unwrap();
    let (ours, theirs) = (sqnr(&eager, &run(q.program, &input)), sqnr(&eager, &xnnpack));
    assert!(ours >= theirs - 0.5, "8da4w: {ours:.2} dB vs XNNPACK's {theirs:.2} dB");
    assert!(q.report.weights.iter().all(|w| w.sqnr_median_db > 20.0));

    // Dynamic int8 is PT2E's qd8: ExecuTorch's output up to float summation order.
    let q = Quantizer::new(Scheme::DynamicInt8).emit(Emit::Qdq).quantize(&program, &none).unwrap();
    let qd8 = ferrite_runtime::read_npy(&dir.join("qd8.output_0.npy")).unwrap().to_f64_vec().unwrap();
    let out = run(q.qdq, &input);
    let max = out.iter().zip(&qd8).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(max < 1e-5, "dynamic int8 vs ExecuTorch's qd8: {max}");

    // Weight-only schemes shrink the program and keep activations float.
    let float_len = std::fs::metadata(dir.join("portable.pte")).unwrap().len() as usize;
    for (scheme, min_db) in
        [(Scheme::Int8WeightOnly, 35.0), (Scheme::Int4WeightOnly { group_size: 32 }, 15.0), (Scheme::Fp16Weights, 60.0)]
    {
        let q = Quantizer::new(scheme).emit(Emit::Qdq).quantize(&program, &none).unwrap();
        assert!(q.qdq.len() < float_len * 6 / 10, "{scheme:?}: {} bytes of {float_len}", q.qdq.len());
        let db = sqnr(&eager, &run(q.qdq, &input));
        assert!(db > min_db, "{scheme:?}: {db:.2} dB");
    }
}

#[test]
fn schemes_parse_with_group_sizes() {
    assert_eq!("8da4w".parse::<Scheme>().unwrap(), Scheme::Int4Weight { group_size: 32 });
    assert_eq!("int4-weight-only:64".parse::<Scheme>().unwrap(), Scheme::Int4WeightOnly { group_size: 64 });
    assert!("8da4w:33".parse::<Scheme>().is_err());
    assert!("static-int8:32".parse::<Scheme>().is_err());
    assert!("int2".parse::<Scheme>().is_err());
}

#[test]
fn every_observer_keeps_digits_accurate() {
    let dir = fixture("digits_cnn");
    let program = Program::read(dir.join("portable.pte")).unwrap();
    let calibration = Calibration::open(&dir.join("calibration.npy")).unwrap();
    let images = Calibration::open(&dir.join("test_images.npy")).unwrap();
    let labels = Calibration::labels(&dir.join("test_labels.npy")).unwrap();
    for observer in ["minmax", "moving-average", "histogram", "percentile", "mse", "entropy"] {
        let mut q = Quantizer::new(Scheme::StaticInt8)
            .observer(observer.parse().unwrap())
            .emit(Emit::Qdq)
            .quantize(&program, &calibration)
            .unwrap();
        let m = q.evaluate(&images, Some(&labels)).unwrap();
        let (acc, _) = m.accuracy.unwrap();
        eprintln!("{observer}: {:.0}/360, output SQNR {:.2} dB", acc * 360.0, m.output_sqnr_db);
        // The moving average (factor 0.01, meant for training) stays near the first samples'
        // range and clips the rest; entropy clips hard on these sparse 64-sample histograms.
        let (min_right, min_db) = match observer {
            "moving-average" => (340.0, 10.0),
            "entropy" => (345.0, 15.0),
            _ => (350.0, 25.0),
        };
        assert!(acc * 360.0 >= min_right && m.output_sqnr_db > min_db, "{observer}: {m:?}");
    }
}

#[test]
fn auto_fallback_leaves_the_most_harmful_nodes_float() {
    let dir = fixture("digits_cnn");
    let program = Program::read(dir.join("portable.pte")).unwrap();
    let calibration = Calibration::open(&dir.join("calibration.npy")).unwrap();
    let quantizer = Quantizer::new(Scheme::StaticInt8).emit(Emit::Qdq);
    let mut all = quantizer.quantize(&program, &calibration).unwrap();
    let base = all.evaluate(&calibration, None).unwrap().output_sqnr_db;
    let target = base + 3.0;
    let mut q = quantizer
        .quantize_with_fallback(
            &program,
            &calibration,
            &calibration,
            None,
            ferrite_quantizer::Target::MinSqnr(target),
            &|_, _, _| {},
        )
        .unwrap();
    let reached = q.evaluate(&calibration, None).unwrap().output_sqnr_db;
    assert!(reached >= target, "{reached} < {target}");
    assert!(!q.report.fallback.is_empty());
    // The ranking is sorted by gain, and the fallback took its head.
    let gains: Vec<f64> = q.report.sensitivity.iter().map(|s| s.gain_db).collect();
    assert!(gains.windows(2).all(|w| w[0] >= w[1]), "{gains:?}");
    assert_eq!(q.report.fallback[0], q.report.sensitivity[0].instruction);
}

#[test]
fn dynamic_int8_transformers_match_executorch_qd8() {
    for name in ["tiny_transformer", "tiny_gpt"] {
        let dir = fixture(name);
        let program = Program::read(dir.join("portable.pte")).unwrap();
        let q = Quantizer::new(Scheme::DynamicInt8).emit(Emit::Qdq).quantize(&program, &Calibration::none()).unwrap();
        let input = ferrite_runtime::read_npy(&dir.join("input_0.npy")).unwrap();
        let qd8 = ferrite_runtime::read_npy(&dir.join("qd8.output_0.npy")).unwrap().to_f64_vec().unwrap();
        let out = run(q.qdq, &input);
        let max = out.iter().zip(&qd8).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(max < 1e-5, "{name}: dynamic int8 vs ExecuTorch's qd8: {max}");
    }
}
