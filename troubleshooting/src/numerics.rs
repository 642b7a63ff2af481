//! The numerical debugger: [`compare_numerics`] runs two methods of the same model on the same
//! inputs, captures every intermediate tensor both have, and reports each operator's error.
//!
//! Matching a target's tensors with the reference's:
//! 1. **By origin.** Ferrite's blobs record, for the values inside a delegate, the value of the
//!    un-lowered program whose data each holds (and whether channels-last). When the reference
//!    is that un-lowered program (every origin lands on a value of the same dtype and shape), a
//!    node's output is compared with exactly the instruction that wrote the value.
//! 2. **By alignment.** The rest — kernel calls outside delegates, or every tensor when the two
//!    programs differ (a float program against its quantized one) — is aligned as the longest
//!    common subsequence of (operator, shape, float or not), in execution order.

use std::collections::HashMap;

use ferrite_op_support::Op;
use ferrite_program::ScalarType;
use ferrite_runtime::{Intermediate, Method, TensorData};
use serde::Serialize;

use crate::{Result, TroubleshootError};

/// Error statistics of a value against its reference: the SQNR and the largest absolute error.
/// The quantizer's accuracy report (`ferrite quantize --eval`) accumulates its SQNRs with it too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ErrorStats {
    /// Sum of the reference's squares.
    pub signal: f64,
    /// Sum of the squared differences.
    pub noise: f64,
    /// Largest absolute difference.
    pub max_abs: f64,
    /// Elements compared.
    pub count: usize,
    /// Elements where exactly one side is NaN, or the two are infinities of different sign.
    pub mismatched_non_finite: usize,
}

impl ErrorStats {
    /// Adds `value` against `reference`, element by element (the shorter length).
    pub fn add(&mut self, reference: &[f64], value: &[f64]) {
        for (&r, &v) in reference.iter().zip(value) {
            self.count += 1;
            if !(r.is_finite() && v.is_finite()) {
                if !(r == v || r.is_nan() && v.is_nan()) {
                    self.mismatched_non_finite += 1;
                }
                continue;
            }
            let d = r - v;
            self.signal += r * r;
            self.noise += d * d;
            self.max_abs = self.max_abs.max(d.abs());
        }
    }

    /// Adds another value's statistics (for an SQNR over several values).
    pub fn merge(&mut self, other: &ErrorStats) {
        self.signal += other.signal;
        self.noise += other.noise;
        self.max_abs = self.max_abs.max(other.max_abs);
        self.count += other.count;
        self.mismatched_non_finite += other.mismatched_non_finite;
    }

    /// Signal-to-quantization-noise ratio in dB: `10 log10(Σ ref² / Σ (ref − value)²)`;
    /// infinite when the two are equal, minus infinity when non-finite values disagree.
    pub fn sqnr_db(&self) -> f64 {
        if self.mismatched_non_finite > 0 {
            f64::NEG_INFINITY
        } else {
            sqnr_db(self.signal, self.noise)
        }
    }
}

/// `10 log10(signal / noise)`, infinite for zero noise.
pub fn sqnr_db(signal: f64, noise: f64) -> f64 {
    if noise == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (signal / noise).log10()
    }
}

/// When an operator's error counts as a divergence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tolerance {
    /// A value whose SQNR is below this (dB) diverges.
    pub min_sqnr_db: f64,
    /// A value whose largest absolute error is above this diverges (`None`: no such bound).
    pub max_abs: Option<f64>,
}

impl Default for Tolerance {
    /// 40 dB (errors about 1 % of the signal), no absolute bound.
    fn default() -> Self {
        Tolerance { min_sqnr_db: 40.0, max_abs: None }
    }
}

impl Tolerance {
    fn exceeded(&self, e: &ErrorStats) -> bool {
        e.sqnr_db() < self.min_sqnr_db || self.max_abs.is_some_and(|m| e.max_abs > m)
    }
}

/// One compared operator.
#[derive(Debug, Clone, Serialize)]
pub struct NumericsRow {
    /// The reference's instruction.
    pub instruction: usize,
    /// The reference's operator.
    pub op: String,
    /// Shape (the reference's layout).
    pub shape: Vec<usize>,
    /// Where the target computed it: its instruction and, inside a delegate, the node.
    pub target_instruction: usize,
    /// The node inside the target's delegate, if it was one.
    pub target_node: Option<usize>,
    /// The target's operator.
    pub target_op: String,
    /// How the two were matched: `origin` (recorded by lowering) or `aligned`.
    pub matched_by: &'static str,
    /// The error.
    pub error: ErrorStats,
    /// Its SQNR, dB (see [`ErrorStats::sqnr_db`]).
    pub sqnr_db: f64,
    /// Whether it exceeds the tolerance.
    pub diverges: bool,
}

/// What [`compare_numerics`] found.
#[derive(Debug, Clone, Serialize)]
pub struct NumericsReport {
    /// The tolerance applied.
    pub tolerance: Tolerance,
    /// Compared operators, in the reference's execution order.
    pub rows: Vec<NumericsRow>,
    /// Index into `rows` of the first operator whose error exceeds the tolerance.
    pub first_divergence: Option<usize>,
    /// The methods' outputs, compared.
    pub outputs: Vec<ErrorStats>,
    /// Intermediate tensors of the target that matched nothing in the reference.
    pub unmatched_target: usize,
    /// Intermediate tensors of the reference that matched nothing in the target.
    pub unmatched_reference: usize,
    /// Whether the delegates' recorded origins were used (the reference is the program that was
    /// lowered).
    pub origins_used: bool,
}

/// One captured tensor, in the program's layout.
#[derive(Debug)]
struct Point {
    instruction: usize,
    node: Option<usize>,
    op: String,
    /// The operator alignment matches on (a folded batch norm's is its convolution's).
    key_op: String,
    value: Option<usize>,
    dtype: ScalarType,
    shape: Vec<usize>,
    data: Vec<f64>,
}

impl Point {
    fn key(&self) -> (&str, &[usize], bool) {
        (&self.key_op, &self.shape, is_float(self.dtype))
    }
}

fn is_float(d: ScalarType) -> bool {
    matches!(d, ScalarType::Float | ScalarType::Double | ScalarType::Half | ScalarType::BFloat16)
}

/// `[N, H, W, C]` → `[N, C, H, W]` (and `[N, L, C]` → `[N, C, L]`).
fn from_channels_last(sizes: &[usize], data: Vec<f64>) -> (Vec<usize>, Vec<f64>) {
    let (n, spatial, c) = match *sizes {
        [n, h, w, c] => (n, h * w, c),
        [n, l, c] => (n, l, c),
        _ => return (sizes.to_vec(), data),
    };
    let mut out = vec![0.0; data.len()];
    for b in 0..n {
        for s in 0..spatial {
            for ch in 0..c {
                let from = (b * spatial + s) * c + ch;
                let to = (b * c + ch) * spatial + s;
                if let (Some(x), Some(slot)) = (data.get(from), out.get_mut(to)) {
                    *slot = *x;
                }
            }
        }
    }
    let shape = match *sizes {
        [n, h, w, c] => vec![n, c, h, w],
        [n, l, c] => vec![n, c, l],
        _ => sizes.to_vec(),
    };
    (shape, out)
}

fn capture(method: &mut Method, inputs: &[TensorData]) -> Result<(Vec<Point>, Vec<TensorData>)> {
    for (i, t) in inputs.iter().enumerate() {
        method.set_input(i, t)?;
    }
    let mut points = Vec::new();
    method.execute_inspected(&mut |t: &Intermediate<'_>| {
        if t.bytes.is_empty() {
            return Ok(());
        }
        let Ok(data) = TensorData::from_bytes(t.dtype, t.sizes.to_vec(), t.bytes).and_then(|d| d.to_f64_vec()) else {
            return Ok(()); // not a numeric tensor
        };
        let (shape, data) = if t.channels_last { from_channels_last(t.sizes, data) } else { (t.sizes.to_vec(), data) };
        points.push(Point {
            instruction: t.instruction,
            node: t.node,
            op: t.op.to_string(),
            key_op: t.op.to_string(),
            value: t.value,
            dtype: t.dtype,
            shape,
            data,
        });
        Ok(())
    })?;
    let outputs = (0..method.output_count()).map(|i| method.output(i)).collect::<ferrite_runtime::Result<Vec<_>>>()?;
    Ok((fold_batch_norms(points), outputs))
}

/// A batch norm right after a convolution of the same shape stands in for the convolution:
/// quantizers and lowering fold batch norms into convolutions' weights, so only the pair's
/// output exists on both sides. The convolution's own output is dropped from alignment.
fn fold_batch_norms(points: Vec<Point>) -> Vec<Point> {
    let mut out: Vec<Point> = Vec::with_capacity(points.len());
    for mut p in points {
        let follows_conv = out.last().is_some_and(|c: &Point| {
            c.op == Op::Convolution.name() && c.shape == p.shape && c.node.is_none() && p.node.is_none()
        });
        if follows_conv && p.op == Op::NativeBatchNormLegitNoTraining.name() {
            if let Some(conv) = out.pop() {
                p.key_op = conv.key_op;
            }
        }
        out.push(p);
    }
    out
}

/// Longest common subsequence of `a` and `b` under `same`: the matched index pairs, in order.
fn align<T>(a: &[T], b: &[T], same: impl Fn(&T, &T) -> bool) -> Vec<(usize, usize)> {
    let (n, m) = (a.len(), b.len());
    // Suffix table, one row per element of `a`: (n + 1) × (m + 1) u32s.
    let w = m + 1;
    let mut t = vec![0u32; (n + 1) * w];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[i * w + j] =
                if same(&a[i], &b[j]) { t[(i + 1) * w + j + 1] + 1 } else { t[(i + 1) * w + j].max(t[i * w + j + 1]) };
        }
    }
    let (mut i, mut j, mut pairs) = (0, 0, Vec::new());
    while i < n && j < m {
        if same(&a[i], &b[j]) {
            pairs.push((i, j));
            i += 1;
            j += 1;
        } else if t[(i + 1) * w + j] >= t[i * w + j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    pairs
}

/// Most tensors aligned by subsequence on each side (the table is `n × m` 4-byte words: at
/// most 100 MB).
pub const MAX_ALIGNED: usize = 5_000;

/// Runs `target` and `reference` (methods of two programs of the same model: a lowered program
/// and the program it was lowered from, or a float program and a quantized one) on `inputs`,
/// and compares every intermediate tensor both have.
pub fn compare_numerics(
    target: &mut Method,
    reference: &mut Method,
    inputs: &[TensorData],
    tolerance: Tolerance,
) -> Result<NumericsReport> {
    if tolerance.min_sqnr_db.is_nan() || tolerance.max_abs.is_some_and(|m| m.is_nan() || m < 0.0) {
        return Err(TroubleshootError::Option("the tolerance must be a number (and --max-abs not negative)".into()));
    }
    let (tp, t_out) = capture(target, inputs)?;
    let (rp, r_out) = capture(reference, inputs)?;

    // 1. By origin: delegate nodes whose blob names the un-lowered program's value.
    let mut writer: HashMap<usize, usize> = HashMap::new();
    for (k, p) in rp.iter().enumerate() {
        if let Some(v) = p.value {
            writer.entry(v).or_insert(k);
        }
    }
    // (target point, the reference point that wrote its origin; `None` for a value no
    // instruction writes, such as a method input copied channels-last inside the delegate).
    let by_origin: Vec<(usize, Option<usize>)> = tp
        .iter()
        .enumerate()
        .filter(|(_, p)| p.node.is_some())
        .filter_map(|(k, p)| p.value.map(|v| (k, writer.get(&v).copied())))
        .collect();
    let origins_used = by_origin.iter().any(|p| p.1.is_some())
        && by_origin
            .iter()
            .filter_map(|&(t, r)| r.map(|r| (t, r)))
            .all(|(t, r)| tp[t].dtype == rp[r].dtype && tp[t].shape == rp[r].shape);
    let mut pairs: Vec<(usize, usize, &'static str)> = Vec::new();
    let (mut t_done, mut r_done) = (vec![false; tp.len()], vec![false; rp.len()]);
    if origins_used {
        for (t, r) in by_origin {
            // A layout conversion writes a second copy of a value: keep the first writer.
            if let Some(r) = r.filter(|&r| !r_done[r]) {
                pairs.push((t, r, "origin"));
                r_done[r] = true;
            }
            t_done[t] = true;
        }
    }

    // 2. By alignment: everything else.
    let t_rest: Vec<usize> = (0..tp.len()).filter(|&k| !t_done[k]).collect();
    let r_rest: Vec<usize> = (0..rp.len()).filter(|&k| !r_done[k]).collect();
    if t_rest.len() > MAX_ALIGNED || r_rest.len() > MAX_ALIGNED {
        return Err(TroubleshootError::Option(format!(
            "{} and {} tensors to align; at most {MAX_ALIGNED} per side",
            t_rest.len(),
            r_rest.len()
        )));
    }
    for (i, j) in align(&t_rest, &r_rest, |&a, &b| tp[a].key() == rp[b].key()) {
        pairs.push((t_rest[i], r_rest[j], "aligned"));
    }
    let matched_t = pairs.iter().map(|p| p.0).chain((0..tp.len()).filter(|&k| t_done[k])).collect::<Vec<_>>();
    let unmatched_target = tp.len() - {
        let mut m = matched_t;
        m.sort_unstable();
        m.dedup();
        m.len()
    };
    let unmatched_reference = rp.len() - pairs.len();

    pairs.sort_by_key(|&(t, r, _)| (r, t));
    let rows: Vec<NumericsRow> = pairs
        .into_iter()
        .map(|(t, r, how)| {
            let (a, b) = (&tp[t], &rp[r]);
            let mut error = ErrorStats::default();
            error.add(&b.data, &a.data);
            NumericsRow {
                instruction: b.instruction,
                op: b.op.clone(),
                shape: b.shape.clone(),
                target_instruction: a.instruction,
                target_node: a.node,
                target_op: a.op.clone(),
                matched_by: how,
                sqnr_db: error.sqnr_db(),
                diverges: tolerance.exceeded(&error),
                error,
            }
        })
        .collect();
    let first_divergence = rows.iter().position(|r| r.diverges);
    let outputs = t_out
        .iter()
        .zip(&r_out)
        .map(|(a, b)| {
            let mut e = ErrorStats::default();
            e.add(&b.to_f64_vec()?, &a.to_f64_vec()?);
            Ok(e)
        })
        .collect::<ferrite_runtime::Result<Vec<_>>>()?;
    Ok(NumericsReport {
        tolerance,
        rows,
        first_divergence,
        outputs,
        unmatched_target,
        unmatched_reference,
        origins_used,
    })
}

fn db(x: f64) -> String {
    if x == f64::INFINITY {
        "exact".into()
    } else {
        format!("{x:.1}")
    }
}

impl NumericsReport {
    /// The table `ferrite debug numerics` prints: the first divergence, then the `top` compared
    /// operators with the lowest SQNR (0: all, in execution order), then the outputs.
    pub fn table(&self, top: usize) -> String {
        let mut s = String::new();
        match self.first_divergence.map(|k| &self.rows[k]) {
            Some(r) => {
                s += &format!(
                    "first divergence: instruction {} ({}, {:?}): SQNR {} dB, max abs error {:.3e} — computed by {}\n",
                    r.instruction,
                    r.op,
                    r.shape,
                    db(r.sqnr_db),
                    r.error.max_abs,
                    where_(r)
                );
            }
            None => {
                s += &format!(
                    "no divergence: all {} compared operators within {} dB SQNR{}\n",
                    self.rows.len(),
                    self.tolerance.min_sqnr_db,
                    self.tolerance.max_abs.map_or(String::new(), |m| format!(" and {m:e} max abs error"))
                );
            }
        }
        let mut order: Vec<&NumericsRow> = self.rows.iter().collect();
        if top > 0 {
            order.sort_by(|a, b| a.sqnr_db.total_cmp(&b.sqnr_db).then(a.instruction.cmp(&b.instruction)));
            order.truncate(top);
        }
        s += &format!(
            "{:>6} {:<46} {:<18} {:>9} {:>11}  {}\n",
            "instr", "operator", "shape", "SQNR dB", "max abs", "target"
        );
        for r in order {
            s += &format!(
                "{:>6} {:<46} {:<18} {:>9} {:>11.3e}  {}{}\n",
                r.instruction,
                r.op,
                format!("{:?}", r.shape),
                db(r.sqnr_db),
                r.error.max_abs,
                where_(r),
                if r.diverges { "  << diverges" } else { "" }
            );
        }
        for (i, e) in self.outputs.iter().enumerate() {
            s += &format!("output {i}: SQNR {} dB, max abs error {:.3e}\n", db(e.sqnr_db()), e.max_abs);
        }
        s += &format!(
            "compared {} operators ({}); unmatched: {} in the target, {} in the reference\n",
            self.rows.len(),
            if self.origins_used { "delegate nodes by their recorded origin" } else { "aligned by operator and shape" },
            self.unmatched_target,
            self.unmatched_reference
        );
        s
    }

    /// The report as JSON (infinite SQNRs as `null`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

fn where_(r: &NumericsRow) -> String {
    match r.target_node {
        Some(n) => format!("delegate at instruction {}, node {n} ({})", r.target_instruction, r.target_op),
        None => format!("instruction {} ({})", r.target_instruction, r.target_op),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_is_a_longest_common_subsequence() {
        let a = ["conv", "relu", "q", "conv", "add"];
        let b = ["conv", "relu", "conv", "dq", "add"];
        assert_eq!(align(&a, &b, |x, y| x == y), vec![(0, 0), (1, 1), (3, 2), (4, 4)]);
        assert!(align::<&str>(&[], &b, |x, y| x == y).is_empty());
    }

    #[test]
    fn channels_last_is_undone() {
        // [1, 2, 2, 3] NHWC holding c + 10 * (h * 2 + w).
        let data: Vec<f64> = (0..4).flat_map(|s| (0..3).map(move |c| f64::from(c + 10 * s))).collect();
        let (shape, out) = from_channels_last(&[1, 2, 2, 3], data);
        assert_eq!(shape, [1, 3, 2, 2]);
        assert_eq!(out, [0.0, 10.0, 20.0, 30.0, 1.0, 11.0, 21.0, 31.0, 2.0, 12.0, 22.0, 32.0]);
    }

    #[test]
    fn error_statistics() {
        let mut e = ErrorStats::default();
        e.add(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]);
        assert_eq!(e.sqnr_db(), f64::INFINITY);
        e.add(&[10.0], &[9.0]);
        assert!((e.sqnr_db() - 10.0 * (114.0f64).log10()).abs() < 1e-12);
        assert_eq!(e.max_abs, 1.0);
        e.add(&[f64::NAN], &[0.0]);
        assert_eq!(e.sqnr_db(), f64::NEG_INFINITY);
        let t = Tolerance::default();
        assert!(t.exceeded(&e));
    }
}
