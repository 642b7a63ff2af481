//! **Quantized operators**: the `dequantize → op → quantize` chains PyTorch's PT2E flow writes
//! become the backend's int8 operators. Lowering consumes what the program says and never
//! guesses: every scale and zero point comes from the chain's own quantize and dequantize nodes,
//! and a chain that does not fit exactly stays as it is (its quantize and dequantize nodes then
//! run as explicit conversions).
//!
//! - `dequantize_per_tensor(x) → convolution(·, dequantize_per_channel(W), b) → quantize_per_tensor`
//!   becomes [`Op::FerriteQuantizedConvolutionNhwc`] (groups of one or depthwise; the
//!   channels-last pass then moves it to NHWC).
//! - the same around `linear`, or `addmm` whose weight is `permute_copy(dequantize_per_channel(W))`,
//!   becomes [`Op::FerriteQuantizedDense`]; without the trailing `quantize` the dense layer writes
//!   f32 (a classifier's last layer).
//! - `choose_qparams.Tensor(x) → quantize_per_tensor.Tensor → dequantize_per_tensor.Tensor →
//!   linear | addmm` (dynamic int8, PT2E's `is_dynamic` configuration) becomes
//!   [`Op::FerriteDynamicQuantizedDense`] on `x` itself: the backend chooses the parameters as
//!   `choose_qparams` does at every call.
//! - `choose_qparams_per_token_asymmetric(x) → quantize_per_token → dequantize_per_token →
//!   linear | addmm` with the weight `dequantize_per_channel_group(W)` (torchao's 8da4w: int4
//!   values in groups along each row) becomes [`Op::FerriteGroupwiseDense`] on `x` itself: the
//!   backend quantizes each row at every call and sums each group in integers.
//! - `add(dequantize(a), dequantize(b)) → quantize` (same shapes) becomes
//!   [`Op::FerriteQuantizedAdd`], which computes exactly that in one pass over int8 data.
//! - A trailing `dequantize → relu | hardtanh | clamp → quantize` with the same parameters on
//!   both sides (PT2E shares them) is a clamp in the integer domain: it narrows the operator's
//!   output range. An activation lowering already fused into the operator narrows it the same way.
//!
//! Weights must be int8 with zero points of zero (symmetric), quantized along the output channel;
//! activations int8 per tensor. A `dequantize → quantize` pair left between two int8 operators
//! vanishes on its own: the second operator reads the first one's int8 output.

use ferrite_blob::{returned_count, BlobGraph, BlobOp, BlobTensor, BlobValue};
use ferrite_kernels::nhwc::Conv2dGeometry;
use ferrite_kernels::quantized::{quantize_value, QuantParams};
use ferrite_op_support::Op;
use ferrite_program::ScalarType;

use crate::graph::{constant_bytes, is_output, op_outputs, readers};
use crate::PassStats;

/// Per-tensor int8 parameters: scale, zero point, range.
#[derive(Debug, Clone, Copy, PartialEq)]
struct TensorParams {
    scale: f64,
    zero_point: i64,
    min: i64,
    max: i64,
}

impl TensorParams {
    /// The quantized value of `x` under these parameters (`quantize_per_tensor`'s arithmetic).
    fn quantize(&self, x: f32) -> i64 {
        if x == f32::INFINITY {
            return self.max;
        }
        if x == f32::NEG_INFINITY {
            return self.min;
        }
        quantize_value(x, QuantParams::new(self.scale, self.zero_point), self.min, self.max)
    }
}

/// The op writing tensor `v`, if any.
fn producer(g: &BlobGraph, v: usize) -> Option<usize> {
    g.ops.iter().position(|op| op_outputs(g, op).contains(&v))
}

/// The only op reading `v` (none when `v` is read by several, or handed back).
fn only_reader(g: &BlobGraph, v: usize) -> Option<usize> {
    if is_output(g, v) || readers(g, v, None) != 1 {
        return None;
    }
    g.ops.iter().position(|op| {
        let outs = op_outputs(g, op);
        op.args.iter().flat_map(|&a| g.tensors_in(a)).any(|t| t == v && !outs.contains(&t))
    })
}

fn dtype(g: &BlobGraph, v: usize) -> Option<ScalarType> {
    g.tensor(v).map(|t| t.dtype)
}

/// `quantize_per_tensor.out` or `dequantize_per_tensor.out` (`(x, scale, zero_point, min, max,
/// dtype, [out_dtype,] out, out)`) to or from int8: its tensor operand, its output and parameters.
fn per_tensor(g: &BlobGraph, op: &BlobOp, quantize: bool) -> Option<(usize, usize, TensorParams)> {
    // `.out` arguments plus the returned output: 8 for quantize, 9 for dequantize (`out_dtype`).
    let (expected, len) = if quantize { (Op::QuantizePerTensor, 8) } else { (Op::DequantizePerTensor, 9) };
    if op.op != expected || op.args.len() != len || returned_count(&op.args) != 1 || op.activation.is_some() {
        return None;
    }
    let a = &op.args;
    let out = *a.last()?;
    let (scale, zero_point, min, max, code) = (g.number(a[1])?, g.int(a[2])?, g.int(a[3])?, g.int(a[4])?, g.int(a[5])?);
    if code != ScalarType::Char as i64 || !(-128 <= min && min <= max && max <= 127) {
        return None;
    }
    if !(scale.is_finite() && scale > 0.0 && (-128..=127).contains(&zero_point)) {
        return None;
    }
    let (int8, float) = if quantize { (out, a[0]) } else { (a[0], out) };
    if dtype(g, int8)? != ScalarType::Char || dtype(g, float)? != ScalarType::Float {
        return None;
    }
    if !(quantize || g.is_none(a[6]) || g.int(a[6]) == Some(ScalarType::Float as i64)) {
        return None;
    }
    Some((a[0], out, TensorParams { scale, zero_point, min, max }))
}

/// The value `v` is a reshape of: through memory aliases and reshape operators (a dense layer reads
/// its rows the same in any leading shape).
fn through_reshapes(g: &BlobGraph, mut v: usize) -> usize {
    for _ in 0..g.ops.len() + 1 {
        if let Some(root) = g.tensor(v).and_then(|t| t.alias_of) {
            v = root;
            continue;
        }
        match producer(g, v).map(|p| &g.ops[p]) {
            Some(op) if op.op.is_reshape() && returned_count(&op.args) == 1 && !op.args.is_empty() => v = op.args[0],
            _ => break,
        }
    }
    v
}

/// The int8 tensor and parameters behind float value `x`, when a per-tensor dequantize writes it.
fn dequantized(g: &BlobGraph, x: usize) -> Option<(usize, TensorParams)> {
    let p = producer(g, x)?;
    per_tensor(g, &g.ops[p], false).map(|(q, _, params)| (q, params))
}

/// Values of a constant float or double tensor.
fn constant_numbers(g: &BlobGraph, v: usize) -> Option<Vec<f64>> {
    let t = g.tensor(v)?;
    let bytes = constant_bytes(g, v)?;
    match t.dtype {
        ScalarType::Float => {
            Some(bytes.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect())
        }
        ScalarType::Double => {
            Some(bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect())
        }
        _ => None,
    }
}

/// Whether constant integer tensor `v` holds only zeros (`None` for an absent zero-point tensor).
fn all_zero(g: &BlobGraph, v: usize) -> bool {
    if g.is_none(v) {
        return true;
    }
    g.tensor(v).is_some_and(|t| matches!(t.dtype, ScalarType::Long | ScalarType::Int | ScalarType::Char))
        && constant_bytes(g, v).is_some_and(|b| b.iter().all(|&x| x == 0))
}

/// A symmetric int8 weight quantized per output channel: `dequantize_per_channel.out` (`(W,
/// scales, zero_points, axis, min, max, dtype, out_dtype, out, out)`) of a constant, axis 0,
/// zero points 0. Returns the int8 constant's value index and the scales.
fn per_channel_weight(g: &BlobGraph, w: usize) -> Option<(usize, Vec<f64>)> {
    let op = &g.ops[producer(g, w)?];
    if op.op != Op::DequantizePerChannel || op.args.len() != 10 || returned_count(&op.args) != 1 {
        return None;
    }
    let a = &op.args;
    let wt = g.tensor(a[0])?;
    if wt.dtype != ScalarType::Char || wt.constant.is_none() || wt.sizes.is_empty() {
        return None;
    }
    let axis = g.int(a[3])?;
    if axis != 0 && axis != -(wt.sizes.len() as i64) {
        return None;
    }
    let (min, max) = (g.int(a[4])?, g.int(a[5])?);
    if g.int(a[6])? != ScalarType::Char as i64 || !(-128 <= min && min <= max && max <= 127) {
        return None;
    }
    if !(g.is_none(a[7]) || g.int(a[7]) == Some(ScalarType::Float as i64)) || dtype(g, w)? != ScalarType::Float {
        return None;
    }
    let scales = constant_numbers(g, a[1])?;
    if scales.len() != wt.sizes[0] || !scales.iter().all(|s| s.is_finite() && *s > 0.0) || !all_zero(g, a[2]) {
        return None;
    }
    Some((a[0], scales))
}

/// How an int8 operator's output ends: the int8 tensor it writes and its parameters (the range
/// narrowed by activations), or, with `allow_float`, the float tensor itself.
enum Ending {
    Int8 { out: usize, params: TensorParams, remove: Vec<usize> },
    Float { out: usize },
}

/// Follows float output `y` of op `k` (with fused activation `act`) through `quantize`, then any
/// `dequantize → activation → quantize` with equal parameters.
fn ending(g: &BlobGraph, k: usize, y: usize, act: Option<(f32, f32)>, allow_float: bool) -> Option<Ending> {
    let float_end = || allow_float.then_some(Ending::Float { out: y });
    let Some(q) = only_reader(g, y) else { return float_end() };
    let Some((_, mut out, mut params)) = per_tensor(g, &g.ops[q], true).filter(|(x, _, _)| *x == y) else {
        return float_end();
    };
    if q <= k {
        return None;
    }
    let mut remove = vec![q];
    if let Some((lo, hi)) = act {
        params.min = params.min.max(params.quantize(lo));
        params.max = params.max.min(params.quantize(hi));
    }
    // dequantize → relu | hardtanh | clamp → quantize, with the same parameters throughout.
    while let Some(d) = only_reader(g, out) {
        let Some((_, f, dp)) = per_tensor(g, &g.ops[d], false) else { break };
        let Some(a) = only_reader(g, f) else { break };
        let Some((lo, hi)) = activation_bounds(g, &g.ops[a]) else { break };
        let af = *op_outputs(g, &g.ops[a]).first()?;
        let Some(q2) = only_reader(g, af) else { break };
        let Some((_, out2, qp)) = per_tensor(g, &g.ops[q2], true).filter(|(x, _, _)| *x == af) else { break };
        let same = |p: &TensorParams| p.scale == params.scale && p.zero_point == params.zero_point;
        if !same(&dp) || !same(&qp) || dp.min != qp.min || dp.max != qp.max || dtype(g, af) != Some(ScalarType::Float) {
            break;
        }
        params.min = params.min.max(qp.min).max(params.quantize(lo));
        params.max = params.max.min(qp.max).min(params.quantize(hi));
        remove.push(q2);
        out = out2;
    }
    (params.min <= params.max).then_some(Ending::Int8 { out, params, remove })
}

/// The clamp bounds of a `relu`, `hardtanh` or `clamp` node.
fn activation_bounds(g: &BlobGraph, op: &BlobOp) -> Option<(f32, f32)> {
    if returned_count(&op.args) != 1 || op.activation.is_some() {
        return None;
    }
    let num = |i: usize| op.args.get(i).and_then(|&v| g.number(v)).map(|x| x as f32);
    let bounds = match op.op {
        Op::Relu => (0.0, f32::INFINITY),
        Op::Hardtanh => (num(1)?, num(2)?),
        Op::Clamp => {
            let bound = |i: usize, default: f32| match op.args.get(i).map(|&v| g.is_none(v)) {
                Some(true) => Some(default),
                Some(false) => num(i),
                None => None,
            };
            (bound(1, f32::NEG_INFINITY)?, bound(2, f32::INFINITY)?)
        }
        _ => return None,
    };
    (bounds.0 <= bounds.1).then_some(bounds)
}

fn push(g: &mut BlobGraph, v: BlobValue) -> usize {
    g.values.push(v);
    g.values.len() - 1
}

fn push_f32_constant(g: &mut BlobGraph, values: &[f64]) -> usize {
    g.constants.push(values.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect());
    let c = g.constants.len() - 1;
    push(
        g,
        BlobValue::Tensor(BlobTensor {
            dtype: ScalarType::Float,
            sizes: vec![values.len()],
            constant: Some(c),
            alias_of: None,
            dynamic: false,
        }),
    )
}

/// The `quant` argument of the int8 operators: `[x_scale, x_zero_point, out_scale,
/// out_zero_point, out_min, out_max]`.
fn quant_list(g: &mut BlobGraph, x: &TensorParams, out: Option<&TensorParams>) -> usize {
    let o = out.map_or([0.0, 0.0, 0.0, 0.0], |o| [o.scale, o.zero_point as f64, o.min as f64, o.max as f64]);
    push(g, BlobValue::DoubleList(vec![x.scale, x.zero_point as f64, o[0], o[1], o[2], o[3]]))
}

/// A float constant bias of `n` values, or None.
fn bias_ok(g: &BlobGraph, b: usize, n: usize) -> bool {
    g.is_none(b)
        || g.tensor(b).is_some_and(|t| {
            t.dtype == ScalarType::Float && t.constant.is_some() && t.sizes.iter().product::<usize>() == n
        })
}

/// Rewrites convolution `k`, if its chain fits.
fn convolution(g: &mut BlobGraph, k: usize) -> Option<Vec<usize>> {
    let op = g.ops[k].clone();
    if op.op != Op::Convolution || op.args.len() != 11 || returned_count(&op.args) != 1 {
        return None;
    }
    let a = &op.args;
    let (xq, xp) = dequantized(g, a[0])?;
    let (wq, scales) = per_channel_weight(g, a[1])?;
    let (xt, wt) = (g.tensor(xq)?, g.tensor(wq)?);
    if !matches!(xt.sizes.len(), 3 | 4) || wt.sizes.len() != xt.sizes.len() || !bias_ok(g, a[2], wt.sizes[0]) {
        return None;
    }
    if !matches!(g.values.get(a[6])?, BlobValue::Bool(false)) {
        return None;
    }
    let geometry = Conv2dGeometry::from_nchw(
        &xt.sizes,
        &wt.sizes,
        &g.int_list(a[3])?,
        &g.int_list(a[4])?,
        &g.int_list(a[5])?,
        g.int(a[8])?,
    )?;
    if !ferrite_kernels::int8::QConv2d::supports(&geometry) || geometry.output().is_err() {
        return None;
    }
    let y = a[9];
    let Ending::Int8 { out, params, remove } = ending(g, k, y, op.activation, false)? else { return None };
    if g.tensor(out)?.sizes != g.tensor(y)?.sizes {
        return None;
    }
    let ws = push_f32_constant(g, &scales);
    let quant = quant_list(g, &xp, Some(&params));
    let args = vec![xq, wq, a[2], a[3], a[4], a[5], a[6], a[7], a[8], ws, quant, out, out];
    g.ops[k] = BlobOp { op: Op::FerriteQuantizedConvolutionNhwc, args, activation: None };
    Some(remove)
}

/// The float tensor behind `x` when `x = dequantize.Tensor(quantize.Tensor(f, s, z), s, z)` with
/// `(s, z) = choose_qparams.Tensor(f)`, all int8 over `[-128, 127]`: dynamic quantization.
fn dynamically_quantized(g: &BlobGraph, x: usize) -> Option<usize> {
    let int8 = |op: &BlobOp, qmin: usize, qmax: usize, code: usize| {
        g.int(op.args[qmin]) == Some(-128)
            && g.int(op.args[qmax]) == Some(127)
            && g.int(op.args[code]) == Some(ScalarType::Char as i64)
    };
    let dq = &g.ops[producer(g, x)?];
    if dq.op != Op::DequantizePerTensorTensor || dq.args.len() != 9 || !int8(dq, 3, 4, 5) {
        return None;
    }
    if !(g.is_none(dq.args[6]) || g.int(dq.args[6]) == Some(ScalarType::Float as i64)) {
        return None;
    }
    let (xq, s, z) = (dq.args[0], dq.args[1], dq.args[2]);
    let q = &g.ops[producer(g, xq)?];
    if q.op != Op::QuantizePerTensorTensor || q.args.len() != 8 || !int8(q, 3, 4, 5) || q.args[1] != s || q.args[2] != z
    {
        return None;
    }
    let f = q.args[0];
    let c = &g.ops[producer(g, s)?];
    if c.op != Op::ChooseQparamsTensor || c.args.len() != 8 || !int8(c, 1, 2, 4) || c.args[0] != f {
        return None;
    }
    if c.args[5] != s || c.args[6] != z || dtype(g, f) != Some(ScalarType::Float) {
        return None;
    }
    Some(f)
}

/// Rewrites linear layer or `addmm` `k`, if its chain fits.
fn dense(g: &mut BlobGraph, k: usize) -> Option<Vec<usize>> {
    let op = g.ops[k].clone();
    let a = &op.args;
    let (x, w, b, y) = match op.op {
        Op::Linear if a.len() == 5 => (a[0], a[1], a[2], a[3]),
        Op::Addmm if a.len() == 7 => {
            if g.number(a[3]) != Some(1.0) || g.number(a[4]) != Some(1.0) {
                return None;
            }
            // The weight is `permute_copy(dequantize_per_channel(W), [1, 0])`.
            let p = &g.ops[producer(g, a[2])?];
            if p.op != Op::PermuteCopy || p.args.len() != 4 || g.int_list(p.args[1])? != [1, 0] {
                return None;
            }
            (a[1], p.args[0], a[0], a[5])
        }
        _ => return None,
    };
    if returned_count(a) != 1 {
        return None;
    }
    let x = through_reshapes(g, x);
    if let Some(f) = dynamically_quantized(g, x) {
        return dynamic_dense(g, k, f, w, b, y);
    }
    if let Some(f) = per_token_quantized(g, x) {
        return grouped_dense(g, k, f, w, b, y);
    }
    let (xq, xp) = dequantized(g, x)?;
    let (wq, scales) = per_channel_weight(g, w)?;
    let &[n, kk] = g.tensor(wq)?.sizes.as_slice() else { return None };
    if g.tensor(xq)?.sizes.last() != Some(&kk) || kk > ferrite_kernels::int8::MAX_K || !bias_ok(g, b, n) {
        return None;
    }
    if op.op == Op::Addmm && !g.tensor(b).is_some_and(|t| matches!(t.sizes.as_slice(), [m] | [1, m] if *m == n)) {
        return None;
    }
    let ending = ending(g, k, y, op.activation, true)?;
    let (out, params, remove, activation) = match ending {
        Ending::Int8 { out, params, remove } => (out, Some(params), remove, None),
        Ending::Float { out } => (out, None, Vec::new(), op.activation),
    };
    if g.tensor(out)?.sizes.last() != Some(&n) {
        return None;
    }
    let ws = push_f32_constant(g, &scales);
    let quant = quant_list(g, &xp, params.as_ref());
    g.ops[k] = BlobOp { op: Op::FerriteQuantizedDense, args: vec![xq, wq, b, ws, quant, out, out], activation };
    Some(remove)
}

/// Rewrites `add(dequantize(a), dequantize(b)) → quantize` (same shapes, alpha 1) into
/// [`Op::FerriteQuantizedAdd`].
fn add(g: &mut BlobGraph, k: usize) -> Option<Vec<usize>> {
    let op = g.ops[k].clone();
    let a = &op.args;
    if op.op != Op::Add || a.len() != 5 || returned_count(a) != 1 {
        return None;
    }
    if !(g.is_none(a[2]) || g.number(a[2]) == Some(1.0)) {
        return None;
    }
    let ((aq, ap), (bq, bp)) = (dequantized(g, a[0])?, dequantized(g, a[1])?);
    let y = a[3];
    let sizes = g.tensor(y)?.sizes.clone();
    if g.tensor(aq)?.sizes != sizes || g.tensor(bq)?.sizes != sizes {
        return None;
    }
    let Ending::Int8 { out, params, remove } = ending(g, k, y, op.activation, false)? else { return None };
    if g.tensor(out)?.sizes != sizes {
        return None;
    }
    let quant = push(
        g,
        BlobValue::DoubleList(vec![
            ap.scale,
            ap.zero_point as f64,
            bp.scale,
            bp.zero_point as f64,
            params.scale,
            params.zero_point as f64,
            params.min as f64,
            params.max as f64,
        ]),
    );
    g.ops[k] = BlobOp { op: Op::FerriteQuantizedAdd, args: vec![aq, bq, quant, out, out], activation: None };
    Some(remove)
}

/// The float tensor `x` is quantized from per token: `dequantize_per_token(quantize_per_token(f,
/// s, z), s, z)` with `(s, z) = choose_qparams_per_token_asymmetric(f)`, all int8 (torchao's 8da4w
/// activations).
fn per_token_quantized(g: &BlobGraph, x: usize) -> Option<usize> {
    let dq = &g.ops[producer(g, x)?];
    // `.out` arguments plus the returned output.
    if dq.op != Op::DequantizePerToken || dq.args.len() != 9 || returned_count(&dq.args) != 1 {
        return None;
    }
    let int8 = |op: &BlobOp, lo: usize, hi: usize, code: usize| {
        g.int(op.args[lo]) == Some(-128)
            && g.int(op.args[hi]) == Some(127)
            && g.int(op.args[code]) == Some(ScalarType::Char as i64)
    };
    if !int8(dq, 3, 4, 5) || g.int(dq.args[6]) != Some(ScalarType::Float as i64) || dq.activation.is_some() {
        return None;
    }
    let (xq, s, z) = (dq.args[0], dq.args[1], dq.args[2]);
    let q = &g.ops[producer(g, xq)?];
    if q.op != Op::QuantizePerToken || q.args.len() != 8 || !int8(q, 3, 4, 5) || q.args[1] != s || q.args[2] != z {
        return None;
    }
    let f = q.args[0];
    let c = &g.ops[producer(g, s)?];
    if c.op != Op::ChooseQparamsPerTokenAsymmetric || c.args.len() != 5 || c.args[0] != f {
        return None;
    }
    if g.int(c.args[1]) != Some(ScalarType::Char as i64) || c.args[2] != s || c.args[3] != z {
        return None;
    }
    (dtype(g, f) == Some(ScalarType::Float) && dtype(g, x) == Some(ScalarType::Float)).then_some(f)
}

/// A symmetric weight quantized in groups along its rows: `dequantize_per_channel_group.out`
/// (`(W, scales, zero_points, min, max, dtype, group_size, output_dtype, out, out)`) of a 2-D
/// int8 constant, f32 scales, zero points absent or zero, an even group size dividing the row.
/// Returns the int8 constant, the scales (`[N, K / group]`) and the group size.
fn groupwise_weight(g: &BlobGraph, w: usize) -> Option<(usize, Vec<f64>, usize)> {
    let op = &g.ops[producer(g, w)?];
    if op.op != Op::DequantizePerChannelGroup || op.args.len() != 10 || returned_count(&op.args) != 1 {
        return None;
    }
    let a = &op.args;
    let wt = g.tensor(a[0])?;
    let &[n, k] = wt.sizes.as_slice() else { return None };
    if wt.dtype != ScalarType::Char || wt.constant.is_none() || n == 0 || k == 0 {
        return None;
    }
    let (min, max) = (g.int(a[3])?, g.int(a[4])?);
    if g.int(a[5])? != ScalarType::Char as i64 || !(-128 <= min && min <= max && max <= 127) {
        return None;
    }
    if g.int(a[7])? != ScalarType::Float as i64
        || dtype(g, w)? != ScalarType::Float
        || dtype(g, a[1])? != ScalarType::Float
    {
        return None;
    }
    let scales = constant_numbers(g, a[1])?;
    let mut group = usize::try_from(g.int(a[6])?).ok()?;
    // PyTorch's single-column case: one scale per row and a group wider than the row.
    if group > k && scales.len() == n {
        group = k;
    }
    if group < 2 || !group.is_multiple_of(2) || !k.is_multiple_of(group) || scales.len() != n * (k / group) {
        return None;
    }
    if !scales.iter().all(|s| s.is_finite()) || !all_zero(g, a[2]) {
        return None;
    }
    Some((a[0], scales, group))
}

/// Rewrites dense layer `k` whose input is quantized per token from `f` and whose weight is
/// groupwise into [`Op::FerriteGroupwiseDense`].
fn grouped_dense(g: &mut BlobGraph, k: usize, f: usize, w: usize, b: usize, y: usize) -> Option<Vec<usize>> {
    let op = g.ops[k].clone();
    let (wq, scales, group) = groupwise_weight(g, w)?;
    float_rows_fit(g, &op, f, wq, b, y)?;
    let ws = push_f32_constant(g, &scales);
    let gs = push(g, BlobValue::Int(group as i64));
    g.ops[k] = BlobOp { op: Op::FerriteGroupwiseDense, args: vec![f, wq, b, ws, gs, y, y], activation: op.activation };
    Some(Vec::new())
}

/// What a dense layer `op` quantizing its f32 input `f` at run time needs of its int8 weight `wq`
/// (`[N, K]`), bias `b` and output `y`: rows of `K` in, a bias of `N` (an `addmm`'s as `[N]` or
/// `[1, N]`), f32 rows of `N` out.
fn float_rows_fit(g: &BlobGraph, op: &BlobOp, f: usize, wq: usize, b: usize, y: usize) -> Option<()> {
    let &[n, kk] = g.tensor(wq)?.sizes.as_slice() else { return None };
    if g.tensor(f)?.sizes.last() != Some(&kk) || kk > ferrite_kernels::int8::MAX_K || !bias_ok(g, b, n) {
        return None;
    }
    if op.op == Op::Addmm && !g.tensor(b).is_some_and(|t| matches!(t.sizes.as_slice(), [m] | [1, m] if *m == n)) {
        return None;
    }
    let yt = g.tensor(y)?;
    (yt.dtype == ScalarType::Float && yt.sizes.last() == Some(&n)).then_some(())
}

/// Rewrites dense layer `k` whose input is dynamically quantized from `f`.
fn dynamic_dense(g: &mut BlobGraph, k: usize, f: usize, w: usize, b: usize, y: usize) -> Option<Vec<usize>> {
    let op = g.ops[k].clone();
    let (wq, scales) = per_channel_weight(g, w)?;
    float_rows_fit(g, &op, f, wq, b, y)?;
    let ws = push_f32_constant(g, &scales);
    g.ops[k] =
        BlobOp { op: Op::FerriteDynamicQuantizedDense, args: vec![f, wq, b, ws, y, y], activation: op.activation };
    Some(Vec::new())
}

/// The quantized-operator pass (see the module documentation). Returns how many operators it
/// rewrote.
pub(crate) fn quantized_operators(g: &mut BlobGraph, stats: &mut PassStats) {
    let mut k = 0;
    while k < g.ops.len() {
        // The int8 convolution and addition are planned for one shape: dense layers alone take
        // dynamic shapes (any number of rows).
        let fixed = !g.touches_dynamic(&g.ops[k]);
        let rewritten = if fixed { convolution(g, k) } else { None }.or_else(|| dense(g, k)).or_else(|| {
            if fixed {
                add(g, k)
            } else {
                None
            }
        });
        if let Some(mut remove) = rewritten {
            stats.quantized_operators += 1;
            remove.sort_unstable();
            for r in remove.into_iter().rev() {
                g.ops.remove(r);
            }
        }
        k += 1;
    }
}
