//! Writing the quantized method in PT2E's Q/DQ form: int8 weight constants read through
//! `dequantize_per_channel`, a `quantize_per_tensor` → `dequantize_per_tensor` pair after each
//! quantized activation, `choose_qparams` → quantize → dequantize in front of dynamically
//! quantized linears, biases left in `f32`.

use std::collections::{BTreeMap, BTreeSet};

use ferrite_op_support::Op;
use ferrite_program::graph::Graph;
use ferrite_program::{Instruction, ScalarType, ShapeDynamism, Value};

use crate::annotate::Annotation;
use crate::draft::Draft;
use crate::error::{QuantizeError, Result};
use crate::observer::{symmetric_scale, QParams, SCALE_EPS};

/// ExecuTorch's `ScalarType` code for int8 (`Char`), as the `dtype` argument of the Q/DQ ops.
const INT8_CODE: i64 = 1;
/// ExecuTorch's `ScalarType` code for `float32`.
const FLOAT_CODE: i64 = 6;
const WEIGHT_QMIN: i64 = -127;
const WEIGHT_QMAX: i64 = 127;

/// How weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WeightFormat {
    /// int8, one symmetric scale per output channel, behind `dequantize_per_channel`.
    PerChannelInt8,
    /// int4 values (in int8 storage), one symmetric scale per group of `group` along the input
    /// dimension, behind `dequantize_per_channel_group` (torchao's scheme).
    GroupInt4 { group: usize },
    /// Half precision, widened by `_to_copy`.
    Fp16,
}

/// torchao's groupwise symmetric int4: `scale = max(|min|, |max|) / 7.5` per group (at least
/// `f32::EPSILON`), `q = clamp(round(w / scale), -8, 7)`.
pub(crate) fn quantize_groupwise_int4(w: &[f32], rows: usize, group: usize) -> (Vec<i8>, Vec<f32>, Vec<f64>) {
    let k = w.len() / rows.max(1);
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(w.len() / group.max(1));
    let mut sqnr = Vec::with_capacity(rows);
    for r in 0..rows {
        let (mut signal, mut noise) = (0f64, 0f64);
        for g in w[r * k..(r + 1) * k].chunks(group) {
            let (lo, hi) = g.iter().fold((0f32, 0f32), |(a, b), &x| (a.min(x), b.max(x)));
            let scale = ((-lo).max(hi) / 7.5).max(f32::EPSILON);
            for &x in g {
                let v = (x / scale).round_ties_even().clamp(-8.0, 7.0);
                q.push(v as i8);
                let d = (v * scale) as f64 - x as f64;
                signal += (x as f64) * (x as f64);
                noise += d * d;
            }
            scales.push(scale);
        }
        sqnr.push(crate::report::db(signal, noise));
    }
    (q, scales, sqnr)
}

/// Half precision storage: the SQNR per output channel of rounding to `f16`.
fn to_fp16(w: &[f32], rows: usize) -> (Vec<u8>, Vec<f64>) {
    let k = w.len() / rows.max(1);
    let mut bytes = Vec::with_capacity(w.len() * 2);
    let mut sqnr = Vec::with_capacity(rows);
    for r in 0..rows {
        let (mut signal, mut noise) = (0f64, 0f64);
        for &x in &w[r * k..(r + 1) * k] {
            let h = half::f16::from_f32(x);
            bytes.extend_from_slice(&h.to_le_bytes());
            let d = h.to_f64() - x as f64;
            signal += (x as f64) * (x as f64);
            noise += d * d;
        }
        sqnr.push(crate::report::db(signal, noise));
    }
    (bytes, sqnr)
}

/// A quantized weight.
#[derive(Debug, Clone)]
pub(crate) struct WeightQuant {
    pub node: usize,
    pub sizes: Vec<usize>,
    /// Per output channel: signal-to-quantization-noise ratio in dB.
    pub sqnr_db: Vec<f64>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Rewritten {
    /// Float value -> its dequantized copy (draft indices).
    pub dq_of: BTreeMap<usize, usize>,
    pub weights: Vec<WeightQuant>,
}

/// Per-channel symmetric int8 quantization of a `[C, ...]` weight, as PT2E's
/// `PerChannelMinMaxObserver` and `quantize_per_channel` compute it (`round(w * (1 / scale))`).
pub(crate) fn quantize_weight(w: &[f32], channels: usize) -> (Vec<i8>, Vec<f32>, Vec<f64>) {
    let inner = w.len() / channels.max(1);
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(channels);
    let mut sqnr = Vec::with_capacity(channels);
    for c in 0..channels {
        let row = &w[c * inner..(c + 1) * inner];
        let (lo, hi) = row.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
        let (lo, hi) = if row.is_empty() { (0.0, 0.0) } else { (lo, hi) };
        let scale = symmetric_scale(lo, hi, WEIGHT_QMIN, WEIGHT_QMAX, SCALE_EPS);
        let inv = 1.0f32 / scale;
        let (mut signal, mut noise) = (0f64, 0f64);
        for &x in row {
            let v = (x * inv).round_ties_even().clamp(WEIGHT_QMIN as f32, WEIGHT_QMAX as f32);
            q.push(v as i8);
            let d = (v * scale) as f64 - x as f64;
            signal += (x as f64) * (x as f64);
            noise += d * d;
        }
        scales.push(scale);
        sqnr.push(crate::report::db(signal, noise));
    }
    (q, scales, sqnr)
}

fn bytes_of<T: Copy>(v: &[T], f: impl Fn(T) -> Vec<u8>) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

pub(crate) fn rewrite(
    draft: &mut Draft<'_>,
    graph: &Graph<'_>,
    ann: &Annotation,
    params: &[QParams],
    format: WeightFormat,
) -> Result<Rewritten> {
    let mut out = Rewritten::default();
    let mut ins: Vec<Instruction> = Vec::new();
    let method = draft.plan.name.clone();
    let unsupported = |message: String| QuantizeError::Unsupported { method: method.clone(), message };

    // Weights: int8 constants and a dequantize_per_channel at the top.
    let mut weight_dq: BTreeMap<usize, usize> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for site in &ann.weights {
        if !seen.insert(site.value) {
            continue;
        }
        let t = draft.tensor(site.value).cloned().ok_or_else(|| unsupported("a weight is not a tensor".into()))?;
        let w = draft.constant_f32(site.value).ok_or_else(|| unsupported("a weight is not an f32 constant".into()))?;
        let channels = t.sizes.first().copied().unwrap_or(1).max(1);
        let wdq = draft.push_tensor(ScalarType::Float, &t.sizes, ShapeDynamism::Static);
        let sqnr = match format {
            WeightFormat::PerChannelInt8 => {
                let (q, scales, sqnr) = quantize_weight(&w, channels);
                let wq = draft.push_constant(ScalarType::Char, &t.sizes, bytes_of(&q, |x| vec![x as u8]));
                let sv = draft.push_constant(
                    ScalarType::Float,
                    &[channels],
                    bytes_of(&scales, |x| x.to_le_bytes().to_vec()),
                );
                let zv = draft.push_constant(ScalarType::Long, &[channels], vec![0u8; channels * 8]);
                let axis = draft.push_value(Value::Int(0));
                let (qmin, qmax) =
                    (draft.push_value(Value::Int(WEIGHT_QMIN)), draft.push_value(Value::Int(WEIGHT_QMAX)));
                let dtype = draft.push_value(Value::Int(INT8_CODE));
                let none = draft.push_value(Value::Null);
                let call = Draft::call(
                    Op::DequantizePerChannel.name(),
                    draft,
                    vec![wq, sv, zv, axis, qmin, qmax, dtype, none, wdq, wdq],
                );
                ins.push(call);
                sqnr
            }
            WeightFormat::GroupInt4 { group } => {
                let (q, scales, sqnr) = quantize_groupwise_int4(&w, channels, group);
                let groups = scales.len() / channels;
                let wq = draft.push_constant(ScalarType::Char, &t.sizes, bytes_of(&q, |x| vec![x as u8]));
                let sv = draft.push_constant(
                    ScalarType::Float,
                    &[channels, groups],
                    bytes_of(&scales, |x| x.to_le_bytes().to_vec()),
                );
                let zv = draft.push_constant(ScalarType::Long, &[channels, groups], vec![0u8; scales.len() * 8]);
                let (qmin, qmax) = (draft.push_value(Value::Int(-8)), draft.push_value(Value::Int(7)));
                let dtype = draft.push_value(Value::Int(INT8_CODE));
                let gs = draft.push_value(Value::Int(group as i64));
                let out_dtype = draft.push_value(Value::Int(FLOAT_CODE));
                let call = Draft::call(
                    Op::DequantizePerChannelGroup.name(),
                    draft,
                    vec![wq, sv, zv, qmin, qmax, dtype, gs, out_dtype, wdq, wdq],
                );
                ins.push(call);
                sqnr
            }
            WeightFormat::Fp16 => {
                let (bytes, sqnr) = to_fp16(&w, channels);
                let wh = draft.push_constant(ScalarType::Half, &t.sizes, bytes);
                let non_blocking = draft.push_value(Value::Bool(false));
                let none = draft.push_value(Value::Null);
                let call = Draft::call(Op::ToCopy.name(), draft, vec![wh, non_blocking, none, wdq, wdq]);
                ins.push(call);
                sqnr
            }
        };
        weight_dq.insert(site.value, wdq);
        out.weights.push(WeightQuant { node: site.node, sizes: t.sizes.clone(), sqnr_db: sqnr });
    }

    // Activations: where each quantized value's pair goes.
    let quantized = ann.quantized_values();
    let position = |v: usize| -> Option<usize> {
        let base = graph.alias_of(v).unwrap_or(v);
        graph.producer(base)
    };
    let mut pending: BTreeMap<Option<usize>, Vec<usize>> = BTreeMap::new();
    for g in &ann.groups {
        for &v in g {
            if quantized.contains(&v) {
                pending.entry(position(v)).or_default().push(v);
            }
        }
    }
    let group_params = |v: usize| -> Option<QParams> { ann.group_of(v).and_then(|g| params.get(g)).copied() };
    let emit_pair = |draft: &mut Draft<'_>, ins: &mut Vec<Instruction>, v: usize, out: &mut Rewritten| -> Result<()> {
        let t = draft.tensor(v).cloned().ok_or_else(|| unsupported(format!("value {v} is not a tensor")))?;
        let p = group_params(v).ok_or_else(|| unsupported(format!("value {v} has no parameters")))?;
        let vq = draft.push_tensor(ScalarType::Char, &t.sizes, t.dynamism);
        let vdq = draft.push_tensor(ScalarType::Float, &t.sizes, t.dynamism);
        let s = draft.push_value(Value::Double(p.scale as f64));
        let z = draft.push_value(Value::Int(p.zero_point));
        let (qmin, qmax) = (draft.push_value(Value::Int(p.qmin)), draft.push_value(Value::Int(p.qmax)));
        let dtype = draft.push_value(Value::Int(INT8_CODE));
        let none = draft.push_value(Value::Null);
        let q = Draft::call(Op::QuantizePerTensor.name(), draft, vec![v, s, z, qmin, qmax, dtype, vq, vq]);
        let dq = Draft::call(Op::DequantizePerTensor.name(), draft, vec![vq, s, z, qmin, qmax, dtype, none, vdq, vdq]);
        ins.push(q);
        ins.push(dq);
        out.dq_of.insert(v, vdq);
        Ok(())
    };
    // Views of a value every reader now reads dequantized alias the dequantized copy.
    let reroute_aliases = |draft: &mut Draft<'_>, v: usize, vdq: usize| {
        for a in &mut draft.aliases {
            if a.1 == v {
                a.1 = vdq;
            }
        }
    };
    if let Some(list) = pending.get(&None) {
        for &v in list {
            emit_pair(draft, &mut ins, v, &mut out)?;
            if ann.outputs.contains(&v) {
                reroute_aliases(draft, v, out.dq_of[&v]);
            }
        }
    }
    let old = draft.instructions().to_vec();
    for (n, node) in graph.nodes().iter().enumerate() {
        let Some(Instruction::KernelCall { op_index, args }) = old.get(node.instruction).cloned() else {
            return Err(unsupported(format!("instruction {} is not a kernel call", node.instruction)));
        };
        // Dynamic quantization in front of the node.
        let mut dyn_dq: BTreeMap<usize, usize> = BTreeMap::new();
        for &(_, x) in ann.dynamic.iter().filter(|d| d.0 == n) {
            let t = draft.tensor(x).cloned().ok_or_else(|| unsupported(format!("value {x} is not a tensor")))?;
            let scale = draft.push_tensor(ScalarType::Double, &[1], ShapeDynamism::Static);
            let zp = draft.push_tensor(ScalarType::Long, &[1], ShapeDynamism::Static);
            let pair = draft.push_value(Value::TensorList(vec![scale, zp]));
            let (qmin, qmax) = (draft.push_value(Value::Int(-128)), draft.push_value(Value::Int(127)));
            let eps = draft.push_value(Value::Double(SCALE_EPS as f64));
            let dtype = draft.push_value(Value::Int(INT8_CODE));
            let none = draft.push_value(Value::Null);
            let xq = draft.push_tensor(ScalarType::Char, &t.sizes, t.dynamism);
            let xdq = draft.push_tensor(ScalarType::Float, &t.sizes, t.dynamism);
            let c =
                Draft::call(Op::ChooseQparamsTensor.name(), draft, vec![x, qmin, qmax, eps, dtype, scale, zp, pair]);
            let q =
                Draft::call(Op::QuantizePerTensorTensor.name(), draft, vec![x, scale, zp, qmin, qmax, dtype, xq, xq]);
            let dq = Draft::call(
                Op::DequantizePerTensorTensor.name(),
                draft,
                vec![xq, scale, zp, qmin, qmax, dtype, none, xdq, xdq],
            );
            ins.extend([c, q, dq]);
            dyn_dq.insert(x, xdq);
        }
        // Per-token quantization (torchao's 8da4w activations) in front of the node.
        for &(_, x) in ann.per_token.iter().filter(|d| d.0 == n) {
            let t = draft.tensor(x).cloned().ok_or_else(|| unsupported(format!("value {x} is not a tensor")))?;
            let mut qsizes = t.sizes.clone();
            if let Some(last) = qsizes.last_mut() {
                *last = 1;
            }
            let scale = draft.push_tensor(ScalarType::Double, &qsizes, t.dynamism);
            let zp = draft.push_tensor(ScalarType::Long, &qsizes, t.dynamism);
            let pair = draft.push_value(Value::TensorList(vec![scale, zp]));
            let (qmin, qmax) = (draft.push_value(Value::Int(-128)), draft.push_value(Value::Int(127)));
            let dtype = draft.push_value(Value::Int(INT8_CODE));
            let out_dtype = draft.push_value(Value::Int(FLOAT_CODE));
            let xq = draft.push_tensor(ScalarType::Char, &t.sizes, t.dynamism);
            let xdq = draft.push_tensor(ScalarType::Float, &t.sizes, t.dynamism);
            let c = Draft::call(Op::ChooseQparamsPerTokenAsymmetric.name(), draft, vec![x, dtype, scale, zp, pair]);
            let q = Draft::call(Op::QuantizePerToken.name(), draft, vec![x, scale, zp, qmin, qmax, dtype, xq, xq]);
            let dq = Draft::call(
                Op::DequantizePerToken.name(),
                draft,
                vec![xq, scale, zp, qmin, qmax, dtype, out_dtype, xdq, xdq],
            );
            ins.extend([c, q, dq]);
            dyn_dq.insert(x, xdq);
        }
        // The node, reading dequantized copies.
        let replace = |v: usize, out: &Rewritten| -> Option<usize> {
            if node.outputs.contains(&v) {
                return None;
            }
            if let Some(&w) = weight_dq.get(&v) {
                return Some(w);
            }
            if let Some(&d) = dyn_dq.get(&v) {
                return Some(d);
            }
            let dq = out.dq_of.get(&v).copied()?;
            (ann.outputs.contains(&v) || ann.edges.contains(&(n, v))).then_some(dq)
        };
        let mut new_args = args.clone();
        for a in new_args.iter_mut() {
            if let Some(r) = replace(*a, &out) {
                *a = r;
                continue;
            }
            if let Some(Value::TensorList(items)) = draft.plan.values.get(*a).cloned() {
                let mapped: Vec<usize> = items.iter().map(|&i| replace(i, &out).unwrap_or(i)).collect();
                if mapped != items {
                    *a = draft.push_value(Value::TensorList(mapped));
                }
            }
        }
        ins.push(Instruction::KernelCall { op_index, args: new_args });
        if let Some(list) = pending.get(&Some(n)).cloned() {
            for v in list {
                emit_pair(draft, &mut ins, v, &mut out)?;
                if ann.outputs.contains(&v) {
                    reroute_aliases(draft, v, out.dq_of[&v]);
                }
            }
        }
    }
    // Method outputs that were quantized are returned dequantized, as convert_pt2e does.
    let outputs = draft.plan.outputs.clone();
    draft.plan.outputs = outputs
        .into_iter()
        .map(|v| if ann.outputs.contains(&v) { out.dq_of.get(&v).copied().unwrap_or(v) } else { v })
        .collect();
    draft.set_instructions(ins);
    Ok(out)
}
