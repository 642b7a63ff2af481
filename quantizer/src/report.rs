//! [`Report`]: what the quantizer did and what it cost — per quantized tensor its range and
//! parameters, per weight its quantization error, and for the model its output error against
//! the float program.

use serde::Serialize;

use ferrite_program::graph::Graph;

use crate::annotate::Annotation;
use crate::observer::{Observer, QParams};
use crate::rewrite::Rewritten;
use crate::Quantizer;

/// The SQNR in dB, as the numerical debugger computes it (infinite when `noise` is zero).
pub(crate) use ferrite_troubleshooting::numerics::sqnr_db as db;

/// One group of activations sharing quantization parameters.
#[derive(Debug, Clone, Serialize)]
pub struct TensorReport {
    /// The values (indices in the float method's value table), in the order computed.
    pub values: Vec<usize>,
    /// The operator that writes each (`input` for method inputs), in the same order.
    pub producers: Vec<String>,
    /// Smallest and largest values observed.
    pub observed: (f32, f32),
    /// The parameters chosen.
    pub params: QParams,
    /// The real range those parameters represent.
    pub range: (f32, f32),
    /// Percentage of the observed values outside that range (clipped), where the observer
    /// kept a histogram; `None` otherwise.
    pub clipped_pct: Option<f64>,
    /// SQNR of the quantized program's values against the float program's, over the
    /// evaluation samples and all of the group's tensors (set by [`crate::Quantized::evaluate`]), dB.
    pub sqnr_db: Option<f64>,
    /// The same per tensor, in the order of `values`.
    pub value_sqnr_db: Vec<Option<f64>>,
}

/// One quantized weight.
#[derive(Debug, Clone, Serialize)]
pub struct WeightReport {
    /// The instruction (in the float method) the weight belongs to.
    pub instruction: usize,
    /// Its operator.
    pub op: String,
    /// The weight's shape.
    pub shape: Vec<usize>,
    /// Worst channel's SQNR, dB.
    pub sqnr_min_db: f64,
    /// Median channel's SQNR, dB.
    pub sqnr_median_db: f64,
}

/// Model-level accuracy of the quantized program against the float one.
#[derive(Debug, Clone, Serialize)]
pub struct ModelMetrics {
    /// Samples evaluated.
    pub samples: usize,
    /// SQNR of the first output, quantized vs float, dB.
    pub output_sqnr_db: f64,
    /// Fraction of output rows whose arg-max agrees with the float program's.
    pub top1_agreement: f64,
    /// With labels: (quantized accuracy, float accuracy).
    pub accuracy: Option<(f64, f64)>,
}

/// The quantizer's report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scheme.
    pub scheme: String,
    /// The activation observer.
    pub observer: String,
    /// The method quantized.
    pub method: String,
    /// Calibration samples observed.
    pub calibration_samples: usize,
    /// Batch norms folded into convolutions before observing.
    pub batch_norms_folded: usize,
    /// Quantized nodes: (instruction, operator, family).
    pub nodes: Vec<(usize, String, String)>,
    /// Activation groups.
    pub tensors: Vec<TensorReport>,
    /// Weights.
    pub weights: Vec<WeightReport>,
    /// Output accuracy, once evaluated.
    pub model: Option<ModelMetrics>,
    /// Sensitivity analysis, when asked for: the output SQNR with each node left float.
    pub sensitivity: Vec<Sensitivity>,
    /// Instructions left in float by the automatic fallback, in the order chosen.
    pub fallback: Vec<usize>,
}

/// The model's output SQNR with one quantized node left float.
#[derive(Debug, Clone, Serialize)]
pub struct Sensitivity {
    /// The node's instruction (in the float method).
    pub instruction: usize,
    /// Its operator.
    pub op: String,
    /// Output SQNR against the float program with this node float, dB.
    pub output_sqnr_db: f64,
    /// Gain over quantizing everything, dB.
    pub gain_db: f64,
}

fn op_name(graph: &Graph<'_>, node: usize) -> String {
    graph.nodes().get(node).and_then(|n| n.op()).unwrap_or("?").to_string()
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn build(
    q: &Quantizer,
    graph: &Graph<'_>,
    ann: &Annotation,
    observers: &[Observer],
    params: &[QParams],
    rewritten: &Rewritten,
    folded: usize,
    samples: usize,
) -> Report {
    let tensors = ann
        .groups
        .iter()
        .zip(observers)
        .zip(params)
        .map(|((members, o), p)| {
            let producers = members
                .iter()
                .map(|&v| {
                    let base = graph.alias_of(v).unwrap_or(v);
                    match graph.producer(base) {
                        Some(n) if base != v => format!("{} (view)", op_name(graph, n)),
                        Some(n) => op_name(graph, n),
                        None => "input".into(),
                    }
                })
                .collect();
            TensorReport {
                values: members.clone(),
                producers,
                observed: o.min_max(),
                params: *p,
                range: p.range(),
                clipped_pct: o.clipped_fraction(p).map(|f| f * 100.0),
                sqnr_db: None,
                value_sqnr_db: Vec::new(),
            }
        })
        .collect();
    let weights = rewritten
        .weights
        .iter()
        .map(|w| {
            let mut s = w.sqnr_db.clone();
            s.sort_by(f64::total_cmp);
            WeightReport {
                instruction: graph.nodes()[w.node].instruction,
                op: op_name(graph, w.node),
                shape: w.sizes.clone(),
                sqnr_min_db: s.first().copied().unwrap_or(f64::INFINITY),
                sqnr_median_db: s.get(s.len() / 2).copied().unwrap_or(f64::INFINITY),
            }
        })
        .collect();
    Report {
        scheme: q.scheme.name().into(),
        observer: q.observer.name(),
        method: q.method.clone(),
        calibration_samples: samples,
        batch_norms_folded: folded,
        nodes: ann
            .nodes
            .iter()
            .map(|(&n, f)| (graph.nodes()[n].instruction, op_name(graph, n), f.name().to_string()))
            .collect(),
        tensors,
        weights,
        model: None,
        sensitivity: Vec::new(),
        fallback: Vec::new(),
    }
}

fn fmt_db(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_infinite() => "exact".into(),
        Some(v) => format!("{v:.1}"),
        None => "-".into(),
    }
}

impl Report {
    /// The report as the terminal table `ferrite quantize` prints.
    pub fn table(&self) -> String {
        let mut s = format!(
            "scheme {} · observer {} · method {} · {} calibration samples · {} batch norm(s) folded · {} node(s) quantized\n",
            self.scheme,
            self.observer,
            self.method,
            self.calibration_samples,
            self.batch_norms_folded,
            self.nodes.len()
        );
        if !self.tensors.is_empty() {
            s += "\nactivations\n";
            s += &format!(
                "  {:<34} {:>21} {:>12} {:>5} {:>9} {:>9}\n",
                "written by", "observed", "scale", "zp", "clipped%", "SQNR dB"
            );
            for t in &self.tensors {
                let who = t.producers.join(", ");
                let who = if who.chars().count() > 34 {
                    format!("{}…", who.chars().take(33).collect::<String>())
                } else {
                    who
                };
                s += &format!(
                    "  {:<34} {:>21} {:>12.6e} {:>5} {:>9} {:>9}\n",
                    who,
                    format!("[{:.4}, {:.4}]", t.observed.0, t.observed.1),
                    t.params.scale,
                    t.params.zero_point,
                    t.clipped_pct.map_or("-".into(), |c| format!("{c:.3}")),
                    fmt_db(t.sqnr_db),
                );
            }
        }
        if !self.weights.is_empty() {
            s += &format!("\nweights ({})\n", self.scheme);
            s += &format!("  {:>5} {:<32} {:<18} {:>9} {:>9}\n", "instr", "operator", "shape", "min dB", "median dB");
            for w in &self.weights {
                s += &format!(
                    "  {:>5} {:<32} {:<18} {:>9} {:>9}\n",
                    w.instruction,
                    w.op,
                    format!("{:?}", w.shape),
                    fmt_db(Some(w.sqnr_min_db)),
                    fmt_db(Some(w.sqnr_median_db)),
                );
            }
        }
        if !self.sensitivity.is_empty() {
            s += "\nsensitivity (output SQNR with one node left float, most harmful first)\n";
            s += &format!("  {:>5} {:<32} {:>9} {:>9}\n", "instr", "operator", "SQNR dB", "gain dB");
            for x in &self.sensitivity {
                s += &format!(
                    "  {:>5} {:<32} {:>9} {:>9.2}\n",
                    x.instruction,
                    x.op,
                    fmt_db(Some(x.output_sqnr_db)),
                    x.gain_db
                );
            }
        }
        if !self.fallback.is_empty() {
            s += &format!("\nleft float by --auto-fallback: instructions {:?}\n", self.fallback);
        }
        if let Some(m) = &self.model {
            s += &format!(
                "\nmodel ({} samples): output SQNR {} dB · top-1 agreement {:.2}%",
                m.samples,
                fmt_db(Some(m.output_sqnr_db)),
                m.top1_agreement * 100.0
            );
            if let Some((q, f)) = m.accuracy {
                s += &format!(" · accuracy {:.2}% (float {:.2}%)", q * 100.0, f * 100.0);
            }
            s += "\n";
        }
        s
    }

    /// The report as JSON (infinite SQNRs written as `null`).
    pub fn to_json(&self) -> String {
        let v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }
}
