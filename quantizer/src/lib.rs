//! Ferrite's post-training quantizer: quantizes a float ExecuTorch program from calibration
//! data, in Rust, and reports where accuracy went.
//!
//! ```text
//! float .pte ─ fold batch norms ─ annotate (XNNPACK quantizer's patterns) ─ calibrate
//!   (observers on the float run) ─ rewrite (int8 weights + dequantize_per_channel,
//!   quantize/dequantize pairs, fp32 bias, re-planned memory) ─ Q/DQ .pte ─ [lower] ─ report
//! ```
//!
//! The Q/DQ program is the form PT2E's `convert_pt2e` produces, so stock ExecuTorch runs it
//! and Ferrite's lowering turns it into int8 backend operators ([`Emit::Ferrite`], the default).
//!
//! ```no_run
//! use ferrite_quantizer::{Calibration, ObserverKind, Quantizer, Scheme};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let program = ferrite_program::Program::read("model.pte")?;
//! let calibration = Calibration::open("calibration.npy".as_ref())?;
//! let quantized = Quantizer::new(Scheme::StaticInt8)
//!     .observer(ObserverKind::Histogram)
//!     .quantize(&program, &calibration)?;
//! std::fs::write("model_q8.pte", &quantized.program)?;
//! println!("{}", quantized.report.table());
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod annotate;
mod data;
mod draft;
mod error;
mod fold;
mod observer;
mod report;
mod rewrite;

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use ferrite_op_support::Op;
use ferrite_program::graph::{Graph, Node};
use ferrite_program::Program;
use ferrite_runtime::{Runtime, TensorData};
use ferrite_troubleshooting::ErrorStats;

pub use data::Calibration;
pub use error::{QuantizeError, Result};
pub use observer::{affine_qparams, ObserverKind, QParams, SCALE_EPS};
pub use report::{ModelMetrics, Report, Sensitivity, TensorReport, WeightReport};

use annotate::{annotate, Annotation};
use draft::Draft;
use observer::Observer;

/// What to quantize and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheme {
    /// Static int8: per-channel symmetric int8 weights, per-tensor affine int8 activations with
    /// parameters from calibration (PT2E's XNNPACK quantizer default).
    StaticInt8,
    /// Dynamic int8: per-channel int8 weights of linears and convolutions; their inputs are
    /// quantized at run time from each call's own range. Needs no calibration.
    DynamicInt8,
    /// torchao's 8da4w: int4 weights of linears in groups of `group_size` along the input
    /// dimension (symmetric, one scale per group), inputs quantized to int8 per token at run
    /// time. Linears whose input dimension the group does not divide stay float.
    Int4Weight {
        /// Weights per scale (torchao's default: 32).
        group_size: usize,
    },
    /// int8 per-channel weights of linears and embeddings; activations stay float.
    Int8WeightOnly,
    /// int4 groupwise weights of linears and embeddings; activations stay float.
    Int4WeightOnly {
        /// Weights per scale.
        group_size: usize,
    },
    /// Weights of linears, convolutions and embeddings stored in half precision, widened to
    /// `f32` when the program loads; activations stay float.
    Fp16Weights,
}

impl Scheme {
    /// The name the CLI and reports use.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::StaticInt8 => "static-int8",
            Scheme::DynamicInt8 => "dynamic-int8",
            Scheme::Int4Weight { .. } => "8da4w",
            Scheme::Int8WeightOnly => "int8-weight-only",
            Scheme::Int4WeightOnly { .. } => "int4-weight-only",
            Scheme::Fp16Weights => "fp16-weights",
        }
    }

    fn mode(self) -> annotate::Mode {
        use annotate::Mode;
        match self {
            Scheme::StaticInt8 => Mode::Static,
            Scheme::DynamicInt8 => Mode::Dynamic,
            Scheme::Int4Weight { group_size } => Mode::PerToken { group: group_size },
            Scheme::Int8WeightOnly => Mode::WeightOnly { group: None, conv: false },
            Scheme::Int4WeightOnly { group_size } => Mode::WeightOnly { group: Some(group_size), conv: false },
            Scheme::Fp16Weights => Mode::WeightOnly { group: None, conv: true },
        }
    }

    fn weight_format(self) -> rewrite::WeightFormat {
        use rewrite::WeightFormat;
        match self {
            Scheme::Int4Weight { group_size } | Scheme::Int4WeightOnly { group_size } => {
                WeightFormat::GroupInt4 { group: group_size }
            }
            Scheme::Fp16Weights => WeightFormat::Fp16,
            _ => WeightFormat::PerChannelInt8,
        }
    }

    fn needs_calibration(self) -> bool {
        matches!(self, Scheme::StaticInt8)
    }
}

impl FromStr for Scheme {
    type Err = QuantizeError;
    fn from_str(s: &str) -> Result<Self> {
        // `8da4w` and `int4-weight-only` take a group size after a colon (default 32).
        let (name, group) = match s.split_once(':') {
            Some((n, g)) => match g.parse::<usize>() {
                Ok(g) if g >= 2 && g.is_multiple_of(2) => (n, Some(g)),
                _ => {
                    return Err(QuantizeError::Option(format!("group size {g:?} must be an even number of at least 2")))
                }
            },
            None => (s, None),
        };
        let group_size = group.unwrap_or(32);
        let scheme = match name {
            "static-int8" | "int8" | "q8" => Scheme::StaticInt8,
            "dynamic-int8" | "qd8" => Scheme::DynamicInt8,
            "8da4w" | "int4-weight" => Scheme::Int4Weight { group_size },
            "int8-weight-only" => Scheme::Int8WeightOnly,
            "int4-weight-only" => Scheme::Int4WeightOnly { group_size },
            "fp16-weights" | "fp16" => Scheme::Fp16Weights,
            _ => {
                return Err(QuantizeError::Option(format!(
                    "unknown scheme {s:?} (static-int8, dynamic-int8, 8da4w[:G], int8-weight-only, int4-weight-only[:G], fp16-weights)"
                )))
            }
        };
        if group.is_some() && !matches!(scheme, Scheme::Int4Weight { .. } | Scheme::Int4WeightOnly { .. }) {
            return Err(QuantizeError::Option(format!("scheme {name} takes no group size")));
        }
        Ok(scheme)
    }
}

impl FromStr for ObserverKind {
    type Err = QuantizeError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "minmax" => Ok(ObserverKind::MinMax),
            "moving-average" => Ok(ObserverKind::MovingAverageMinMax),
            "histogram" => Ok(ObserverKind::Histogram),
            "mse" => Ok(ObserverKind::Mse),
            "entropy" | "kl" => Ok(ObserverKind::Entropy),
            "percentile" => Ok(ObserverKind::Percentile(99.99)),
            _ => match s.strip_prefix("percentile:").map(str::parse::<f64>) {
                Some(Ok(p)) if (50.0..=100.0).contains(&p) => Ok(ObserverKind::Percentile(p)),
                _ => Err(QuantizeError::Option(format!(
                    "unknown observer {s:?} (minmax, moving-average, histogram, percentile[:P], mse, entropy)"
                ))),
            },
        }
    }
}

/// Nodes left in float: by instruction index (`12`), operator (`aten::convolution.out`), or
/// family (`conv`, `linear`, `add`, `mul`, `cat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The instruction at this index of the method's chain.
    Instruction(usize),
    /// Every call of this operator (`namespace::name.overload`).
    Operator(String),
    /// Every node of a family.
    Family(String),
}

impl Selector {
    fn matches(&self, _n: usize, node: &Node) -> bool {
        match self {
            Selector::Instruction(i) => node.instruction == *i,
            Selector::Operator(name) => node.op() == Some(name.as_str()),
            Selector::Family(f) => {
                let op = annotate::op_of(node);
                match f.as_str() {
                    "conv" => op == Some(Op::Convolution),
                    "linear" => matches!(op, Some(Op::Linear | Op::Addmm | Op::Mm)),
                    "add" => op == Some(Op::Add),
                    "mul" => op == Some(Op::Mul),
                    "cat" => op == Some(Op::Cat),
                    _ => false,
                }
            }
        }
    }
}

impl FromStr for Selector {
    type Err = QuantizeError;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if let Ok(i) = s.trim_start_matches('#').parse::<usize>() {
            return Ok(Selector::Instruction(i));
        }
        if s.contains("::") {
            return Ok(Selector::Operator(s.to_string()));
        }
        match s {
            "conv" | "linear" | "add" | "mul" | "cat" => Ok(Selector::Family(s.to_string())),
            _ => Err(QuantizeError::Option(format!(
                "unknown selector {s:?}: an instruction index, an operator (aten::convolution.out) or a family (conv, linear, add, mul, cat)"
            ))),
        }
    }
}

/// What [`Quantizer::quantize_with_fallback`] must reach.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// Output SQNR against the float program of at least this many dB.
    MinSqnr(f64),
    /// Accuracy (with labels; else top-1 agreement with the float program) at most this many
    /// percentage points below the float program's.
    MaxDrop(f64),
}

/// What [`Quantizer::quantize`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// The Q/DQ program, as `convert_pt2e` writes it: runs anywhere ExecuTorch runs.
    Qdq,
    /// The Q/DQ program lowered for Ferrite's backend (int8 kernels).
    Ferrite,
}

/// A progress callback: stage name, samples done, samples in all.
pub type Progress<'a> = &'a (dyn Fn(&str, usize, usize) + Sync);

/// The quantizer's configuration.
#[derive(Debug, Clone)]
pub struct Quantizer {
    scheme: Scheme,
    observer: ObserverKind,
    exclude: Vec<Selector>,
    method: String,
    emit: Emit,
    threads: usize,
}

/// The result: the program's bytes and the report.
#[derive(Debug, Clone)]
pub struct Quantized {
    /// The output program (Q/DQ or lowered, as chosen with [`Quantizer::emit`]).
    pub program: Vec<u8>,
    /// The Q/DQ program (before lowering; equal to `program` with [`Emit::Qdq`]).
    pub qdq: Vec<u8>,
    /// Parameters, ranges and errors.
    pub report: Report,
    /// The float program as observed (batch norms folded).
    float: Vec<u8>,
    /// Per activation group: (float value, quantized program's value).
    value_map: Vec<Vec<(usize, usize)>>,
    method: String,
    threads: usize,
}

impl Quantized {
    /// Runs the float and the quantized program on `data` and records in the report the
    /// output SQNR, the top-1 agreement (arg-max over the last axis of the first output), with
    /// `labels` the accuracy of both, and per quantized activation the SQNR of the Q/DQ
    /// program's value against the float one.
    pub fn evaluate(&mut self, data: &Calibration, labels: Option<&[i64]>) -> Result<&ModelMetrics> {
        self.evaluate_with(data, labels, &|_, _, _| {})
    }

    /// [`Quantized::evaluate`], reporting progress.
    pub fn evaluate_with(
        &mut self,
        data: &Calibration,
        labels: Option<&[i64]>,
        progress: Progress<'_>,
    ) -> Result<&ModelMetrics> {
        let runtime = Runtime::new().with_threads(self.threads)?;
        let float = Arc::new(Program::from_vec(self.float.clone())?);
        let qdq = Arc::new(Program::from_vec(self.qdq.clone())?);
        let emitted = Arc::new(Program::from_vec(self.program.clone())?);
        let mut mf = runtime.load_method(&float, &self.method)?;
        let mut mq = runtime.load_method(&qdq, &self.method)?;
        let mut me = runtime.load_method(&emitted, &self.method)?;
        let float_values: std::collections::BTreeSet<usize> = self.value_map.iter().flatten().map(|p| p.0).collect();
        let q_values: std::collections::BTreeSet<usize> = self.value_map.iter().flatten().map(|p| p.1).collect();
        // Error of each float value, and of the output (the numerical debugger's statistics).
        let mut power: BTreeMap<usize, ErrorStats> = BTreeMap::new();
        let mut output_error = ErrorStats::default();
        let (mut rows, mut agree, mut right_q, mut right_f) = (0usize, 0usize, 0usize, 0usize);
        for s in 0..data.len() {
            let sample = fit_sample(&mf, data.sample(s)?)?;
            check_sample(&mf, &sample, s)?;
            let ff = observe_values(&mut mf, &sample, &float_values, &self.method)?;
            let fq = observe_values(&mut mq, &sample, &q_values, &self.method)?;
            for group in &self.value_map {
                for &(fv, qv) in group {
                    if let (Some(a), Some(b)) = (ff.values.get(&fv), fq.values.get(&qv)) {
                        let (a, b): (Vec<f64>, Vec<f64>) =
                            a.iter().zip(b).map(|(&x, &y)| (f64::from(x), f64::from(y))).unzip();
                        power.entry(fv).or_default().add(&a, &b);
                    }
                }
            }
            let out_f = ff.output;
            let out_q = me.run(&sample)?.into_iter().next().ok_or_else(|| QuantizeError::Unsupported {
                method: self.method.clone(),
                message: "the method has no output".into(),
            })?;
            let (a, b) = (out_f.to_f64_vec()?, out_q.to_f64_vec()?);
            output_error.add(&a, &b);
            let classes = out_f.sizes().last().copied().unwrap_or(1).max(1);
            for (rf, rq) in a.chunks(classes).zip(b.chunks(classes)) {
                let (af, aq) = (argmax(rf), argmax(rq));
                agree += usize::from(af == aq);
                if let Some(l) = labels.and_then(|l| l.get(rows)) {
                    right_f += usize::from(af as i64 == *l);
                    right_q += usize::from(aq as i64 == *l);
                }
                rows += 1;
            }
            progress("evaluating", s + 1, data.len());
        }
        if let Some(l) = labels {
            if l.len() != rows {
                return Err(QuantizeError::CalibrationData {
                    path: "labels".into(),
                    message: format!("{} labels for {rows} output rows", l.len()),
                });
            }
        }
        for (t, group) in self.report.tensors.iter_mut().zip(&self.value_map) {
            let all = group.iter().filter_map(|(fv, _)| power.get(fv)).fold(ErrorStats::default(), |mut a, b| {
                a.merge(b);
                a
            });
            t.sqnr_db = (!group.is_empty() && !data.is_empty()).then(|| all.sqnr_db());
            t.value_sqnr_db =
                t.values.iter().map(|v| power.get(v).filter(|_| !data.is_empty()).map(ErrorStats::sqnr_db)).collect();
        }
        let rows_f = rows.max(1) as f64;
        Ok(self.report.model.insert(ModelMetrics {
            samples: data.len(),
            output_sqnr_db: output_error.sqnr_db(),
            top1_agreement: agree as f64 / rows_f,
            accuracy: labels.map(|_| (right_q as f64 / rows_f, right_f as f64 / rows_f)),
        }))
    }
}

fn argmax(row: &[f64]) -> usize {
    row.iter().enumerate().fold((0, f64::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0
}

struct Observed {
    values: BTreeMap<usize, Vec<f32>>,
    output: TensorData,
}

/// Runs `method` on `sample`, copying the `f32` values in `want` right after the instruction
/// that writes them (memory plans reuse bytes, so later is too late), and the first output.
fn observe_values(
    method: &mut ferrite_runtime::Method,
    sample: &[TensorData],
    want: &std::collections::BTreeSet<usize>,
    name: &str,
) -> Result<Observed> {
    let plan = method
        .program()
        .def()
        .plans
        .iter()
        .find(|p| p.name == name)
        .cloned()
        .ok_or_else(|| QuantizeError::NoMethod(name.into()))?;
    let graph = Graph::new(&plan);
    let mut after: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut values = BTreeMap::new();
    for &v in want {
        let base = graph.alias_of(v).unwrap_or(v);
        match graph.producer(base) {
            Some(p) => after.entry(graph.nodes()[p].instruction).or_default().push(v),
            None => {
                if let Some(i) = plan.inputs.iter().position(|&x| x == v) {
                    values.insert(v, sample[i].as_slice::<f32>()?.to_vec());
                }
            }
        }
    }
    for (i, t) in sample.iter().enumerate() {
        method.set_input(i, t)?;
    }
    method.execute_observed(&mut |pc, m| {
        for &v in after.get(&pc).map_or(&[][..], Vec::as_slice) {
            let (_, _, b) = m.value_bytes(v)?;
            values.insert(v, b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect());
        }
        Ok(())
    })?;
    let output = method.output(0)?;
    Ok(Observed { values, output })
}

impl Quantizer {
    /// A quantizer for `scheme` with PT2E's defaults: histogram observer, method `forward`,
    /// output lowered for Ferrite, one thread.
    pub fn new(scheme: Scheme) -> Self {
        Quantizer {
            scheme,
            observer: ObserverKind::Histogram,
            exclude: Vec::new(),
            method: "forward".into(),
            emit: Emit::Ferrite,
            threads: 1,
        }
    }

    /// The activation observer.
    pub fn observer(mut self, observer: ObserverKind) -> Self {
        self.observer = observer;
        self
    }

    /// Leaves the selected nodes in float.
    pub fn exclude(mut self, selectors: impl IntoIterator<Item = Selector>) -> Self {
        self.exclude.extend(selectors);
        self
    }

    /// The method to quantize (default `forward`).
    pub fn method(mut self, name: &str) -> Self {
        self.method = name.to_string();
        self
    }

    /// What to write.
    pub fn emit(mut self, emit: Emit) -> Self {
        self.emit = emit;
        self
    }

    /// Threads for the calibration and evaluation runs.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Quantizes `program` observing `calibration`.
    pub fn quantize(&self, program: &Program<'_>, calibration: &Calibration) -> Result<Quantized> {
        self.quantize_with(program, calibration, &|_, _, _| {})
    }

    /// [`Quantizer::quantize`], reporting progress.
    pub fn quantize_with(
        &self,
        program: &Program<'_>,
        calibration: &Calibration,
        progress: Progress<'_>,
    ) -> Result<Quantized> {
        let _span = tracing::info_span!("quantize", scheme = self.scheme.name()).entered();
        if self.scheme.needs_calibration() && calibration.is_empty() {
            return Err(QuantizeError::NoCalibration { scheme: self.scheme.name().into() });
        }
        if self.scheme.needs_calibration() && calibration.len() < 100 {
            tracing::warn!(
                samples = calibration.len(),
                "fewer than 100 calibration samples: activation ranges may not represent the data"
            );
        }
        let mut draft = Draft::new(program, &self.method)?;
        check_float(&draft)?;
        let folded = fold::fold_batch_norms(&mut draft);
        // The float program as observed: batch norms folded, value indices unchanged.
        let (float_bytes, _) = draft.write(false)?;
        let float = Arc::new(Program::from_vec(float_bytes.clone())?);
        let plan = draft.plan.clone();
        let graph = Graph::new(&plan);
        let ann = annotate(&graph, self.scheme.mode(), &self.exclude);

        // Calibrate.
        let runtime = Runtime::new().with_threads(self.threads)?;
        let mut observers: Vec<Observer> = ann.groups.iter().map(|_| Observer::new(self.observer)).collect();
        if !ann.groups.is_empty() {
            let mut method = runtime.load_method(&float, &self.method)?;
            let watch = watch_points(&graph, &ann);
            for s in 0..calibration.len() {
                let sample = fit_sample(&method, calibration.sample(s)?)?;
                check_sample(&method, &sample, s)?;
                // Method inputs are observed from the sample (their memory may be reused).
                for (i, t) in sample.iter().enumerate() {
                    if let Some(&(_, g)) = watch.inputs.iter().find(|w| w.0 == plan.inputs[i]) {
                        observers[g].observe(t.as_slice::<f32>()?);
                    }
                }
                for (i, t) in sample.iter().enumerate() {
                    method.set_input(i, t).map_err(|e| QuantizeError::CalibrationMismatch {
                        sample: s,
                        input: i,
                        message: e.to_string(),
                    })?;
                }
                method.execute_observed(&mut |pc, m| {
                    if let Some(list) = watch.after.get(&pc) {
                        for &(v, g) in list {
                            let (_, _, bytes) = m.value_bytes(v)?;
                            let x: Vec<f32> =
                                bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                            observers[g].observe(&x);
                        }
                    }
                    Ok(())
                })?;
                progress("calibrating", s + 1, calibration.len());
            }
        }
        let params: Vec<QParams> = observers.iter().map(|o| o.qparams(-128, 127)).collect();

        // Rewrite.
        let mut out = draft.clone();
        let rewritten = rewrite::rewrite(&mut out, &graph, &ann, &params, self.scheme.weight_format())?;
        let (qdq, remap) = out.write(true)?;
        // Float value -> its dequantized copy in the written Q/DQ program.
        let value_map = ann
            .groups
            .iter()
            .map(|g| {
                g.iter()
                    .filter_map(|v| Some((*v, rewritten.dq_of.get(v).and_then(|d| remap.get(*d).copied().flatten())?)))
                    .collect()
            })
            .collect();
        let output = match self.emit {
            Emit::Qdq => qdq.clone(),
            Emit::Ferrite => {
                let p = Program::from_bytes(&qdq)?;
                ferrite_lower::lower(&p, &ferrite_lower::LowerOptions::default())?.bytes
            }
        };
        let report = report::build(self, &graph, &ann, &observers, &params, &rewritten, folded, calibration.len());
        Ok(Quantized {
            program: output,
            qdq,
            report,
            float: float_bytes,
            value_map,
            method: self.method.clone(),
            threads: self.threads,
        })
    }

    /// Quantizes with each quantized node (convolution, linear, embedding, add, mul, cat) left
    /// float in turn and measures the output SQNR against the float program on `eval`: the
    /// nodes whose quantization costs most come first. One quantization and evaluation per node.
    pub fn sensitivity(
        &self,
        program: &Program<'_>,
        calibration: &Calibration,
        eval: &Calibration,
        progress: Progress<'_>,
    ) -> Result<Vec<Sensitivity>> {
        let silent: Progress<'_> = &|_, _, _| {};
        let mut base = self.clone().emit(Emit::Qdq).quantize_with(program, calibration, silent)?;
        let base_db = base.evaluate(eval, None)?.output_sqnr_db;
        let candidates: Vec<(usize, String)> =
            base.report.nodes.iter().filter(|n| n.2 != "shared").map(|n| (n.0, n.1.clone())).collect();
        let mut out = Vec::new();
        for (k, (instruction, op)) in candidates.iter().enumerate() {
            let mut q = self.clone().emit(Emit::Qdq);
            q.exclude.push(Selector::Instruction(*instruction));
            let mut r = q.quantize_with(program, calibration, silent)?;
            let db = r.evaluate(eval, None)?.output_sqnr_db;
            out.push(Sensitivity {
                instruction: *instruction,
                op: op.clone(),
                output_sqnr_db: db,
                gain_db: db - base_db,
            });
            progress("sensitivity", k + 1, candidates.len());
        }
        out.sort_by(|a, b| b.gain_db.total_cmp(&a.gain_db));
        Ok(out)
    }

    /// Quantizes, then leaves the most harmful nodes (by [`Quantizer::sensitivity`]) float one
    /// at a time until `target` holds on `eval` (or nothing is left to leave out). The report
    /// lists the sensitivity ranking and the nodes left float.
    pub fn quantize_with_fallback(
        &self,
        program: &Program<'_>,
        calibration: &Calibration,
        eval: &Calibration,
        labels: Option<&[i64]>,
        target: Target,
        progress: Progress<'_>,
    ) -> Result<Quantized> {
        if matches!(target, Target::MaxDrop(_)) && labels.is_none() {
            tracing::info!("no labels: --max-drop applies to the top-1 agreement with the float program");
        }
        let meets = |m: &ModelMetrics| match target {
            Target::MinSqnr(db) => m.output_sqnr_db >= db,
            Target::MaxDrop(pct) => match m.accuracy {
                Some((q, f)) => (f - q) * 100.0 <= pct,
                None => (1.0 - m.top1_agreement) * 100.0 <= pct,
            },
        };
        let mut q = self.quantize_with(program, calibration, progress)?;
        if meets(q.evaluate(eval, labels)?) {
            return Ok(q);
        }
        let ranking = self.sensitivity(program, calibration, eval, progress)?;
        let mut quantizer = self.clone();
        let mut fallback = Vec::new();
        for s in &ranking {
            quantizer.exclude.push(Selector::Instruction(s.instruction));
            fallback.push(s.instruction);
            q = quantizer.quantize_with(program, calibration, &|_, _, _| {})?;
            if meets(q.evaluate(eval, labels)?) {
                break;
            }
        }
        q.report.sensitivity = ranking;
        q.report.fallback = fallback;
        Ok(q)
    }

    /// Quantizes the program at `input`, writes the result to `output` (through a temporary
    /// file renamed into place: a failure leaves nothing at `output`).
    pub fn quantize_file(&self, input: &Path, output: &Path, calibration: &Calibration) -> Result<Quantized> {
        let program = Program::read(input)?;
        let q = self.quantize(&program, calibration)?;
        write_atomic(output, &q.program)?;
        Ok(q)
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder, renamed into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out.pte".into());
    let tmp = dir.join(format!(".{name}.ferrite-tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        QuantizeError::Write { path: path.display().to_string(), source }
    })
}

fn check_float(draft: &Draft<'_>) -> Result<()> {
    for op in &draft.plan.operators {
        let name = op.qualified();
        if name.starts_with("quantized_decomposed::") || name.starts_with("torchao::") {
            return Err(QuantizeError::AlreadyQuantized { method: draft.plan.name.clone(), op: name });
        }
    }
    let graph = Graph::new(&draft.plan);
    if graph.has_control_flow() {
        return Err(QuantizeError::Unsupported {
            method: draft.plan.name.clone(),
            message: "the method has control flow (moves or jumps)".into(),
        });
    }
    if !draft.plan.delegates.is_empty() {
        return Err(QuantizeError::Unsupported {
            method: draft.plan.name.clone(),
            message: "the method already has delegate calls; quantize the program before lowering it".into(),
        });
    }
    Ok(())
}

/// A sample without the batch axis of a batch-1 method (a `[N, C, H, W]` stack of images for a
/// `[1, C, H, W]` input) gets it back.
fn fit_sample(method: &ferrite_runtime::Method, sample: Vec<TensorData>) -> Result<Vec<TensorData>> {
    sample
        .into_iter()
        .enumerate()
        .map(|(i, t)| match method.input_spec(i) {
            Some((dtype, sizes)) if dtype == t.dtype() && sizes.first() == Some(&1) && sizes[1..] == *t.sizes() => {
                Ok(TensorData::from_bytes(dtype, sizes.to_vec(), t.bytes())?)
            }
            _ => Ok(t),
        })
        .collect()
}

fn check_sample(method: &ferrite_runtime::Method, sample: &[TensorData], s: usize) -> Result<()> {
    if sample.len() != method.input_count() {
        return Err(QuantizeError::CalibrationMismatch {
            sample: s,
            input: sample.len().min(method.input_count()),
            message: format!("the sample has {} inputs, the method takes {}", sample.len(), method.input_count()),
        });
    }
    for (i, t) in sample.iter().enumerate() {
        if let Some((dtype, sizes)) = method.input_spec(i) {
            // Dynamic dimensions may be smaller than their bound: `set_input` checks those.
            if dtype != t.dtype() || sizes.len() != t.sizes().len() {
                return Err(QuantizeError::CalibrationMismatch {
                    sample: s,
                    input: i,
                    message: format!("got {} {:?}, the method takes {dtype} {sizes:?}", t.dtype(), t.sizes()),
                });
            }
        }
    }
    Ok(())
}

/// Where each observed value is read: method inputs, or after an instruction.
struct Watch {
    inputs: Vec<(usize, usize)>,
    after: BTreeMap<usize, Vec<(usize, usize)>>,
}

fn watch_points(graph: &Graph<'_>, ann: &Annotation) -> Watch {
    let mut w = Watch { inputs: Vec::new(), after: BTreeMap::new() };
    for (g, members) in ann.groups.iter().enumerate() {
        for &v in members {
            let base = graph.alias_of(v).unwrap_or(v);
            match graph.producer(base) {
                Some(p) => w.after.entry(graph.nodes()[p].instruction).or_default().push((v, g)),
                None => w.inputs.push((v, g)),
            }
        }
    }
    // Within one instruction, observe in the groups' member order (base before its views).
    w
}
