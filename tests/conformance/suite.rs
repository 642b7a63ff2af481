//! The reusable checks behind the conformance tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferrite::program::Program;
use ferrite::runtime::read_npy;
use ferrite::runtime::{Level, Method, Runtime, RuntimeError, TensorData};
use serde_json::Value as Json;

/// An execution path under test: how a fixture's program is prepared and run.
pub trait Runner: Sync {
    /// A short name for messages.
    fn name(&self) -> &str;
    /// Turns a fixture program into the program to run (identity for the portable path; a
    /// lowering for the Ferrite backend).
    fn prepare(&self, program: Arc<Program<'static>>) -> Arc<Program<'static>>;
    /// The runtime that executes it.
    fn runtime(&self) -> Runtime;
    /// Whether quantized programs must match ExecuTorch's outputs bit for bit (they requantize in
    /// ExecuTorch's reference summation order), not just within one quantization step.
    fn exact_when_quantized(&self) -> bool {
        false
    }
}

/// The portable kernels, programs as exported.
pub struct Portable;

impl Runner for Portable {
    fn name(&self) -> &str {
        "portable"
    }
    fn prepare(&self, program: Arc<Program<'static>>) -> Arc<Program<'static>> {
        program
    }
    fn runtime(&self) -> Runtime {
        Runtime::new().with_threads(1).expect("a one-thread runtime")
    }
    fn exact_when_quantized(&self) -> bool {
        true
    }
}

/// The default runner.
pub static PORTABLE: Portable = Portable;

/// Programs lowered for the Ferrite backend (`ferrite::lower` with default options), run with
/// the backend registered.
pub struct Lowered;

impl Runner for Lowered {
    fn name(&self) -> &str {
        "lowered"
    }
    fn prepare(&self, program: Arc<Program<'static>>) -> Arc<Program<'static>> {
        let lowered = ferrite::lower(&program, &ferrite::LowerOptions::default()).expect("lowers");
        Arc::new(Program::from_vec(lowered.bytes).expect("the lowered program verifies"))
    }
    fn runtime(&self) -> Runtime {
        Runtime::new().with_threads(1).expect("a one-thread runtime")
    }
}

/// The lowered runner.
pub static LOWERED: Lowered = Lowered;

/// Either path with the kernels forced to one SIMD level ([`Runtime::with_simd`]).
pub struct AtLevel {
    lowered: bool,
    level: Level,
    name: String,
}

impl AtLevel {
    /// The portable path (`lowered` false) or the lowered one at `level`.
    pub fn new(lowered: bool, level: Level) -> Self {
        let name = format!("{}@{}", if lowered { "lowered" } else { "portable" }, level.name());
        AtLevel { lowered, level, name }
    }
}

impl Runner for AtLevel {
    fn name(&self) -> &str {
        &self.name
    }
    fn prepare(&self, program: Arc<Program<'static>>) -> Arc<Program<'static>> {
        if self.lowered {
            LOWERED.prepare(program)
        } else {
            program
        }
    }
    fn runtime(&self) -> Runtime {
        Runtime::new().with_threads(1).expect("a one-thread runtime").with_simd(self.level).expect("an available level")
    }
    fn exact_when_quantized(&self) -> bool {
        !self.lowered
    }
}

/// `tests/fixtures` of this repository.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `../shared/fixtures` beside the repository, when present.
pub fn shared_dir() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures");
    d.join("manifest.json").is_file().then_some(d)
}

fn manifest(dir: &Path) -> Json {
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest.json parses")
}

fn fixture_entry(dir: &Path, name: &str) -> Json {
    manifest(dir)["fixtures"]
        .as_array()
        .expect("fixtures list")
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("fixture {name} is not in the manifest"))
        .clone()
}

fn load(path: &Path) -> Arc<Program<'static>> {
    Arc::new(Program::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn npy(path: &Path) -> TensorData {
    read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn is_delegated(variant: &Json) -> bool {
    variant["plans"]
        .as_array()
        .is_some_and(|p| p.iter().any(|m| m["delegates"].as_array().is_some_and(|d| !d.is_empty())))
}

fn is_quantized(variant_name: &str) -> bool {
    variant_name.starts_with("q")
}

/// The tolerance for one output: `1e-4 × max(1, max|ref|)` for float programs; for quantized
/// programs one quantization step of the output, estimated as the smallest gap between distinct
/// reference values (a dequantized output is a multiple of its scale), never below the float
/// tolerance.
pub fn tolerance(reference: &[f64], quantized: bool) -> f64 {
    let max = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let float_tol = 1e-4 * max.max(1.0);
    if !quantized {
        return float_tol;
    }
    let mut sorted: Vec<f64> = reference.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.dedup();
    let step = sorted.windows(2).map(|w| w[1] - w[0]).filter(|d| *d > 1e-6).fold(f64::INFINITY, f64::min);
    if step.is_finite() {
        // One step plus float noise.
        step * 1.0001 + float_tol
    } else {
        float_tol
    }
}

/// Compares `got` to `reference`: dtype, shape, and values within [`tolerance`] (one
/// quantization step for quantized programs).
pub fn assert_close(what: &str, got: &TensorData, reference: &TensorData, quantized: bool) {
    assert_eq!(got.sizes(), reference.sizes(), "{what}: shape");
    let (g, r) = (got.to_f64_vec().expect("readable output"), reference.to_f64_vec().expect("readable reference"));
    if !got.dtype().is_float() {
        assert_eq!(got.dtype(), reference.dtype(), "{what}: dtype");
        assert_eq!(g, r, "{what}: values");
        return;
    }
    let tol = tolerance(&r, quantized);
    let (worst, at) = g.iter().zip(&r).enumerate().fold((0.0f64, 0usize), |(w, at), (i, (a, b))| {
        let d = if a.is_nan() && b.is_nan() { 0.0 } else { (a - b).abs() };
        if d > w || d.is_nan() {
            (d, i)
        } else {
            (w, at)
        }
    });
    assert!(
        worst <= tol,
        "{what}: max |diff| {worst:e} at element {at} (got {}, want {}) exceeds {tol:e}",
        g[at],
        r[at]
    );
}

/// Signal-to-quantization-noise ratio of `x` against `reference`, in dB.
pub fn sqnr_db(x: &[f64], reference: &[f64]) -> f64 {
    let signal: f64 = reference.iter().map(|r| r * r).sum();
    let noise: f64 = x.iter().zip(reference).map(|(a, b)| (a - b) * (a - b)).sum();
    if noise == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (signal / noise).log10()
    }
}

/// A quantized program's output is at least as faithful to the float (eager) output as
/// ExecuTorch's own quantized output, within 1 dB of SQNR.
pub fn assert_fidelity(what: &str, got: &TensorData, executorch: &TensorData, eager: &TensorData) {
    assert_eq!(got.sizes(), executorch.sizes(), "{what}: shape");
    let (g, e, f) = (
        got.to_f64_vec().expect("output"),
        executorch.to_f64_vec().expect("reference"),
        eager.to_f64_vec().expect("eager output"),
    );
    let (ours, theirs) = (sqnr_db(&g, &f), sqnr_db(&e, &f));
    assert!(
        ours >= theirs - 1.0,
        "{what}: SQNR against the float model {ours:.2} dB, ExecuTorch's quantized output {theirs:.2} dB"
    );
}

fn inputs(dir: &Path, entry: &Json) -> Vec<TensorData> {
    entry["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(|i| npy(&dir.join(i["file"].as_str().expect("file"))))
        .collect()
}

fn load_method(runner: &dyn Runner, program: &Arc<Program<'static>>, method: &str) -> Method {
    runner
        .runtime()
        .load_method(program, method)
        .unwrap_or_else(|e| panic!("[{}] loading {method}: {e}", runner.name()))
}

/// Runs every non-delegated variant of fixture `name` found in `root` and compares every
/// method that has reference outputs.
pub fn check_fixture(runner: &dyn Runner, root: &Path, name: &str) {
    let entry = fixture_entry(root, name);
    let dir = root.join(name);
    let ins = inputs(&dir, &entry);
    let mut checked = 0;
    for (vname, variant) in entry["variants"].as_object().expect("variants") {
        if is_delegated(variant) {
            continue;
        }
        let program = runner.prepare(load(&dir.join(variant["file"].as_str().expect("file"))));
        let mut methods: Vec<(String, Vec<String>)> = vec![(
            "forward".into(),
            variant["outputs"]
                .as_array()
                .expect("outputs")
                .iter()
                .map(|o| o.as_str().expect("name").to_string())
                .collect(),
        )];
        if let Some(extra) = variant["method_outputs"].as_object() {
            for (m, outs) in extra {
                methods.push((
                    m.clone(),
                    outs.as_array().expect("list").iter().map(|o| o.as_str().expect("name").to_string()).collect(),
                ));
            }
        }
        for (mname, outs) in methods {
            let mut method = load_method(runner, &program, &mname);
            let got = method.run(&ins).unwrap_or_else(|e| panic!("[{}] {name}/{vname}.{mname}: {e}", runner.name()));
            assert_eq!(got.len(), outs.len(), "{name}/{vname}.{mname}: output count");
            for (k, (g, file)) in got.iter().zip(&outs).enumerate() {
                let what = format!("[{}] {name}/{vname}.{mname} output {k}", runner.name());
                let reference = npy(&dir.join(file));
                if is_quantized(vname) && runner.exact_when_quantized() {
                    let (a, b) = (g.to_f64_vec().expect("output"), reference.to_f64_vec().expect("reference"));
                    assert!(a == b, "{what}: differs from ExecuTorch's output (quantized programs must match exactly)");
                }
                let eager = dir.join(format!("eager.output_{k}.npy"));
                if is_quantized(vname) && !runner.exact_when_quantized() && mname == "forward" && eager.is_file() {
                    // The backend's int8 kernels round differently from ExecuTorch's portable
                    // dequantize → float → quantize, and a one-step difference can grow through
                    // the layers: what must hold is fidelity to the float model.
                    assert_fidelity(&what, g, &reference, &npy(&eager));
                } else {
                    assert_close(&what, g, &reference, is_quantized(vname));
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "{name}: no non-delegated variant was checked");
}

fn tile_rows(t: &TensorData, rows: usize) -> TensorData {
    let sizes = t.sizes();
    let row = t.numel() / sizes[0];
    let data = t.as_slice::<f32>().expect("f32");
    let out: Vec<f32> =
        (0..rows).flat_map(|r| data[(r % sizes[0]) * row..(r % sizes[0] + 1) * row].iter().copied()).collect();
    let mut s = sizes.to_vec();
    s[0] = rows;
    TensorData::from_slice(s, &out).expect("tile")
}

/// A batch-dynamic model at several batch sizes: rows are independent, so batch `b` must
/// reproduce the reference rows cycled to `b`. All batches run on one loaded method.
pub fn check_dynamic_batches(runner: &dyn Runner, dir: &Path, batches: &[usize]) {
    let program = runner.prepare(load(&dir.join("portable.pte")));
    let input = npy(&dir.join("input_0.npy"));
    let reference = npy(&dir.join("portable.output_0.npy"));
    let mut method = load_method(runner, &program, "forward");
    for &b in batches {
        let got = method.run(&[tile_rows(&input, b)]).unwrap_or_else(|e| panic!("batch {b}: {e}"));
        assert_close(&format!("[{}] batch {b}", runner.name()), &got[0], &tile_rows(&reference, b), false);
    }
}

/// A batch beyond the planned bound is a clear input-shape error, not a crash.
pub fn check_dynamic_beyond_bound(runner: &dyn Runner, dir: &Path, batch: usize) {
    let program = runner.prepare(load(&dir.join("portable.pte")));
    let input = npy(&dir.join("input_0.npy"));
    let mut method = load_method(runner, &program, "forward");
    let err = method.run(&[tile_rows(&input, batch)]).expect_err("batch beyond the bound must fail");
    assert!(matches!(err, RuntimeError::InputShape { .. }), "unexpected error: {err}");
}

/// `running_sum`: each call adds the input to a mutable buffer and returns twice the buffer.
/// The first call must match ExecuTorch's reference; later calls continue from it.
pub fn check_running_sum(runner: &dyn Runner, dir: &Path, variant: &str, calls: usize) {
    let program = runner.prepare(load(&dir.join(format!("{variant}.pte"))));
    let input = npy(&dir.join("input_0.npy"));
    let reference = npy(&dir.join(format!("{variant}.output_0.npy")));
    let x = input.to_f64_vec().expect("input");
    let first = reference.to_f64_vec().expect("reference");
    // The buffer's initial value, implied by the first reference output.
    let init: Vec<f64> = first.iter().zip(&x).map(|(r, x)| r / 2.0 - x).collect();
    let mut method = load_method(runner, &program, "forward");
    for call in 1..=calls {
        let got = method.run(std::slice::from_ref(&input)).expect("run");
        let want: Vec<f32> = init.iter().zip(&x).map(|(i, x)| (2.0 * (i + call as f64 * x)) as f32).collect();
        let want = TensorData::from_slice(reference.sizes().to_vec(), &want).expect("want");
        assert_close(&format!("[{}] running_sum/{variant} call {call}", runner.name()), &got[0], &want, false);
    }
}

/// Correct predictions of ExecuTorch 1.5.1's own runtime on the 360 digits test images, per
/// variant (measured with the pip runtime and numpy's argmax: portable 352, q8 353; the XNNPACK
/// variants agree), and how many images Ferrite may differ by.
const EXECUTORCH_DIGITS_CORRECT: &[(&str, usize, usize)] = &[("portable", 352, 0), ("q8", 353, 0)];

/// The digits classifier gets exactly as many test images right as ExecuTorch does.
pub fn check_digits_accuracy(runner: &dyn Runner, dir: &Path, variant: &str) {
    let program = runner.prepare(load(&dir.join(format!("{variant}.pte"))));
    let images = npy(&dir.join("test_images.npy"));
    let labels = npy(&dir.join("test_labels.npy"));
    let labels = labels.as_slice::<i64>().expect("i64 labels");
    let pixels = images.as_slice::<f32>().expect("f32 images");
    let mut method = load_method(runner, &program, "forward");
    let mut correct = 0;
    for (k, &label) in labels.iter().enumerate() {
        let img = TensorData::from_slice(vec![1, 1, 8, 8], &pixels[k * 64..(k + 1) * 64]).expect("image");
        let out = method.run(&[img]).expect("run");
        let logits = out[0].to_f64_vec().expect("logits");
        // The first maximum, as torch.argmax and numpy.argmax take it: quantized logits tie.
        let pred = logits.iter().enumerate().fold(0, |best, (i, v)| if *v > logits[best] { i } else { best });
        correct += usize::from(pred as i64 == label);
    }
    let (want, slack) = EXECUTORCH_DIGITS_CORRECT
        .iter()
        .find(|(v, _, _)| *v == variant)
        .map(|(_, n, s)| (*n, *s))
        .expect("known variant");
    assert!(
        correct.abs_diff(want) <= slack,
        "[{}] digits {variant}: {correct}/360 correct, ExecuTorch gets {want}/360",
        runner.name()
    );
}

/// Every delegated variant fails at load, naming its backend.
pub fn check_delegated_fail(root: &Path) {
    let m = manifest(root);
    let mut seen = 0;
    for f in m["fixtures"].as_array().expect("fixtures") {
        let name = f["name"].as_str().expect("name");
        for (vname, variant) in f["variants"].as_object().expect("variants") {
            if !is_delegated(variant) {
                continue;
            }
            let path = root.join(name).join(variant["file"].as_str().expect("file"));
            if !path.exists() {
                continue; // large fixtures stay in ../shared
            }
            let program = load(&path);
            let err = Runtime::new().load_method(&program, "forward").expect_err("delegated program must not load");
            match &err {
                RuntimeError::BackendNotRegistered { id, .. } => assert_eq!(id, "XnnpackBackend", "{name}/{vname}"),
                other => panic!("{name}/{vname}: unexpected error {other}"),
            }
            assert_eq!(err.code(), "R003");
            seen += 1;
        }
    }
    assert!(seen > 0);
}

/// Profiling runs every backend step apart, plain execution fuses some (a pointwise convolution
/// into the depthwise one after it): both must give bit-identical outputs, at one and at
/// `threads` threads.
pub fn check_fusion_is_exact(path: &Path, threads: usize) {
    let program = LOWERED.prepare(load(path));
    let inputs = ferrite::runtime::default_inputs(&program, "forward").expect("inputs");
    for t in [1, threads] {
        let runtime = Runtime::new().with_threads(t).expect("runtime");
        let mut method = runtime.load_method(&program, "forward").expect("method");
        assert!(method.fused_operators() > 0, "{}: nothing runs fused", path.display());
        let fused = method.run(&inputs).expect("run");
        method.execute_profiled().expect("profiled run");
        for (k, f) in fused.iter().enumerate() {
            let apart = method.output(k).expect("output");
            assert!(
                f.bytes() == apart.bytes(),
                "{}: output {k} differs between fused and profiled runs at {t} threads",
                path.display()
            );
        }
    }
}

/// One program, `threads` threads each with its own method, `iters` executions each: outputs
/// bit-identical to a single-threaded run.
pub fn check_concurrency(runner: &dyn Runner, path: &Path, threads: usize, iters: usize) {
    let program = runner.prepare(load(path));
    let inputs = ferrite::runtime::default_inputs(&program, "forward").expect("inputs");
    let expected = load_method(runner, &program, "forward").run(&inputs).expect("run");
    std::thread::scope(|s| {
        for t in 0..threads {
            let (program, inputs, expected) = (&program, &inputs, &expected);
            s.spawn(move || {
                let mut method = load_method(runner, program, "forward");
                for i in 0..iters {
                    let got = method.run(inputs).expect("run");
                    assert!(
                        got.iter().zip(expected).all(|(a, b)| a.bytes() == b.bytes()),
                        "thread {t} iteration {i} differs"
                    );
                }
            });
        }
    });
}

/// The weight-quantized programs of `tests/fixtures/groupwise` (see its `generate.py`):
/// ExecuTorch's `mixed_linear` / `mixed_mm` match its runtime's outputs (exactly on the portable
/// path), and the torchao 8da4w linears match eager PyTorch (ExecuTorch has no kernel for
/// `dequantize_per_channel_group`) — within float noise on the portable path, and lowered at
/// least as close to the float model as eager's quantized output (SQNR within 1 dB).
pub fn check_groupwise(runner: &dyn Runner) {
    let dir = fixtures_dir().join("groupwise");
    for name in ["mixed_linear", "mixed_linear_ragged", "mixed_linear_per_channel", "mixed_linear_f16", "mixed_mm"] {
        let program = runner.prepare(load(&dir.join(format!("{name}.pte"))));
        let input = npy(&dir.join(format!("{name}.input_0.npy")));
        let got = load_method(runner, &program, "forward")
            .run(&[input])
            .unwrap_or_else(|e| panic!("[{}] {name}: {e}", runner.name()));
        let reference = npy(&dir.join(format!("{name}.output_0.npy")));
        let what = format!("[{}] groupwise/{name}", runner.name());
        assert_eq!(got[0].dtype(), reference.dtype(), "{what}: dtype");
        if runner.exact_when_quantized() {
            let (a, b) = (got[0].to_f64_vec().expect("output"), reference.to_f64_vec().expect("reference"));
            assert!(a == b, "{what}: differs from ExecuTorch's output");
        } else {
            // Another summation order: within float (or half) rounding of the sums.
            let half = reference.dtype() == ferrite::program::ScalarType::Half;
            let (g, r) = (got[0].to_f64_vec().expect("output"), reference.to_f64_vec().expect("reference"));
            let max = r.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            let tol = if half { 1e-2 } else { 1e-5 } * max;
            let worst = g.iter().zip(&r).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(worst <= tol, "{what}: max |diff| {worst:e} exceeds {tol:e}");
        }
    }
    let program = runner.prepare(load(&dir.join("linear_8da4w.pte")));
    let input = npy(&dir.join("linear_8da4w.input_0.npy"));
    let got = load_method(runner, &program, "forward")
        .run(&[input])
        .unwrap_or_else(|e| panic!("[{}] linear_8da4w: {e}", runner.name()));
    let (eager, float) = (npy(&dir.join("linear_8da4w.eager.npy")), npy(&dir.join("linear_8da4w.float.npy")));
    let what = format!("[{}] groupwise/linear_8da4w", runner.name());
    if runner.exact_when_quantized() {
        assert_close(&what, &got[0], &eager, false);
    } else {
        assert_fidelity(&what, &got[0], &eager, &float);
    }
}
