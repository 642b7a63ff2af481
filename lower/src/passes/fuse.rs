//! **Activation fusion**: `relu`, `hardtanh` (ReLU6) and `clamp` after a convolution, linear
//! layer, matrix product or element-wise add/sub/mul ([`Op::takes_fused_activation`]) become a
//! clamp of that operation's output (successive clamps, one range).
//!
//! **Hard-swish and hard-sigmoid**: `x * clamp(x + 3, 0, 6) / 6` and `clamp(x + 3, 0, 6) / 6`,
//! as ExecuTorch exports `nn.Hardswish` and `nn.Hardsigmoid` (MobileNetV3), become one
//! `hardswish(x)` / `hardsigmoid(x)` instead of three or four passes over memory.
//!
//! **SiLU**: `x * sigmoid(x)` (how `torch.nn.SiLU` reaches ExecuTorch programs when exported
//! without its decomposition kept) becomes one `silu(x)`: a single pass over memory instead of
//! two, in EfficientNet-style nets the largest tensors of the model. Not in methods that
//! requantize, whose float operators keep ExecuTorch's arithmetic.

use ferrite_blob::{returned_count, BlobGraph, BlobValue};
use ferrite_op_support::Op;
use ferrite_program::ScalarType;

use crate::graph::{is_output, op_outputs, readers};
use crate::PassStats;

pub(crate) fn fuse_activations(g: &mut BlobGraph, stats: &mut PassStats) {
    let mut k = 0;
    while k < g.ops.len() {
        let act = g.ops[k].clone();
        let bounds = match act.op {
            Op::Relu => Some((0.0f32, f32::INFINITY)),
            Op::Hardtanh => {
                match (act.args.get(1).and_then(|&v| g.number(v)), act.args.get(2).and_then(|&v| g.number(v))) {
                    (Some(lo), Some(hi)) if lo <= hi => Some((lo as f32, hi as f32)),
                    _ => None,
                }
            }
            Op::Clamp => {
                let bound = |i: usize, default: f32| match act.args.get(i).and_then(|&v| g.values.get(v)) {
                    Some(BlobValue::None) => Some(default),
                    Some(_) => act.args.get(i).and_then(|&v| g.number(v)).map(|x| x as f32),
                    None => None,
                };
                match (bound(1, f32::NEG_INFINITY), bound(2, f32::INFINITY)) {
                    (Some(lo), Some(hi)) if lo <= hi => Some((lo, hi)),
                    _ => None,
                }
            }
            _ => None,
        };
        let fused = bounds.and_then(|(lo, hi)| {
            let x = *act.args.first()?;
            let outs = op_outputs(g, &act);
            let out = *outs.first()?;
            if outs.len() != 1 || readers(g, x, Some(k)) > 0 || is_output(g, x) {
                return None;
            }
            let (xt, ot) = (g.tensor(x)?, g.tensor(out)?);
            if xt.dtype != ScalarType::Float
                || ot.dtype != ScalarType::Float
                || xt.sizes != ot.sizes
                || xt.alias_of.is_some()
            {
                return None;
            }
            let p = g.ops[..k].iter().rposition(|op| op_outputs(g, op) == [x])?;
            let prod = &g.ops[p];
            if !prod.op.takes_fused_activation() || returned_count(&prod.args) != 1 {
                return None;
            }
            // A second clamp narrows the first (hard-swish's `clamp(min=0)` then `clamp(max=6)`);
            // clamps whose ranges do not meet give a constant and stay.
            let (lo, hi) = match prod.activation {
                Some((plo, phi)) => (lo.max(plo), hi.min(phi)),
                None => (lo, hi),
            };
            (lo <= hi).then_some((p, out, lo, hi))
        });
        match fused {
            Some((p, out, lo, hi)) => {
                let x = act.args[0];
                let n = g.ops[p].args.len();
                // Only the output positions change (the returned copy and the `out` argument).
                g.ops[p].args[n - 1] = out;
                if let Some(pos) = g.ops[p].args[..n - 1].iter().rposition(|&a| a == x) {
                    g.ops[p].args[pos] = out;
                }
                g.ops[p].activation = Some((lo, hi));
                g.ops.remove(k);
                stats.activations_fused += 1;
            }
            None => k += 1,
        }
    }
}

/// Rewrites `mul(x, sigmoid(x))` (either operand order) into `silu(x)` where the sigmoid's
/// output is read by nothing else (see the module documentation).
pub(crate) fn fuse_silu(g: &mut BlobGraph, stats: &mut PassStats) {
    let mut k = 0;
    while k < g.ops.len() {
        let found = (|| {
            let mul = &g.ops[k];
            if mul.op != Op::Mul || mul.activation.is_some() || returned_count(&mul.args) != 1 || mul.args.len() != 4 {
                return None;
            }
            let (a, b, out) = (mul.args[0], mul.args[1], mul.args[2]);
            // The sigmoid producing one operand from the other.
            let p = g.ops[..k].iter().rposition(|op| {
                op.op == Op::Sigmoid
                    && op.activation.is_none()
                    && op.args.len() == 3
                    && ((op.args[0] == a && op.args[1] == b) || (op.args[0] == b && op.args[1] == a))
            })?;
            let (x, s) = (g.ops[p].args[0], g.ops[p].args[1]);
            if x == s || readers(g, s, Some(k)) > 0 || is_output(g, s) {
                return None;
            }
            let float_same = |v: usize| {
                g.tensor(v).filter(|t| t.dtype == ScalarType::Float && t.alias_of.is_none()).map(|t| t.sizes.clone())
            };
            let sizes = float_same(x)?;
            (float_same(s)? == sizes && float_same(out)? == sizes).then_some((p, x, out))
        })();
        match found {
            Some((p, x, out)) => {
                g.ops[k].op = Op::Silu;
                g.ops[k].args = vec![x, out, out];
                g.ops.remove(p);
                stats.activations_fused += 1;
                // `k` now names the op after the new silu.
            }
            None => k += 1,
        }
    }
}

/// The value of a one-element float constant.
fn scalar_constant(g: &BlobGraph, v: usize) -> Option<f32> {
    let t = g.tensor(v)?;
    if t.dtype != ScalarType::Float || t.sizes.iter().product::<usize>() != 1 {
        return None;
    }
    let b = crate::graph::constant_bytes(g, v)?;
    Some(f32::from_le_bytes(b.get(..4)?.try_into().ok()?))
}

/// Rewrites hard-swish and hard-sigmoid written out as element-wise operators (see the module
/// documentation): `h = add(x, 3)` clamped to `[0, 6]`, then `div(h, 6)` (hard-sigmoid) or
/// `div(mul(x, h), 6)` (hard-swish), each intermediate read only by the next step.
pub(crate) fn fuse_hard_activations(g: &mut BlobGraph, stats: &mut PassStats) {
    let mut k = 0;
    while k < g.ops.len() {
        let found = (|| {
            let div = &g.ops[k];
            if div.op != Op::Div || div.activation.is_some() || div.args.len() != 4 {
                return None;
            }
            let (num, out) = (div.args[0], div.args[2]);
            if scalar_constant(g, div.args[1])? != 6.0 {
                return None;
            }
            let sizes = g.tensor(out).filter(|t| t.dtype == ScalarType::Float && t.alias_of.is_none())?.sizes.clone();
            let same = |v: usize| g.tensor(v).is_some_and(|t| t.dtype == ScalarType::Float && t.sizes == sizes);
            let private = |v: usize, reader: usize| readers(g, v, Some(reader)) == 0 && !is_output(g, v) && same(v);
            let producer = |v: usize, before: usize| g.ops[..before].iter().rposition(|op| op_outputs(g, op) == [v]);
            // `h = clamp(x + 3, 0, 6)`: an add with alpha 1 whose fused clamp is [0, 6].
            let shifted = |h: usize, p: usize| -> Option<usize> {
                let add = &g.ops[p];
                let alpha_one = add.args.get(2).and_then(|&a| g.number(a)) == Some(1.0);
                if add.op != Op::Add || add.activation != Some((0.0, 6.0)) || add.args.len() != 5 || !alpha_one {
                    return None;
                }
                let (a, b) = (add.args[0], add.args[1]);
                let x = if scalar_constant(g, b) == Some(3.0) {
                    a
                } else if scalar_constant(g, a) == Some(3.0) {
                    b
                } else {
                    return None;
                };
                (add.args[3] == h && same(x)).then_some(x)
            };
            let p = producer(num, k)?;
            if !private(num, k) {
                return None;
            }
            if let Some(x) = shifted(num, p) {
                return Some((Op::Hardsigmoid, x, out, vec![p]));
            }
            // `num = mul(x, h)` with `h` the shifted clamp of the same `x`.
            let mul = &g.ops[p];
            if mul.op != Op::Mul || mul.activation.is_some() || mul.args.len() != 4 {
                return None;
            }
            for (x, h) in [(mul.args[0], mul.args[1]), (mul.args[1], mul.args[0])] {
                let Some(q) = producer(h, p) else { continue };
                if private(h, p) && shifted(h, q) == Some(x) {
                    return Some((Op::Hardswish, x, out, vec![q, p]));
                }
            }
            None
        })();
        match found {
            Some((op, x, out, mut gone)) => {
                g.ops[k].op = op;
                g.ops[k].args = vec![x, out, out];
                gone.sort_unstable();
                for &p in gone.iter().rev() {
                    g.ops.remove(p);
                }
                k -= gone.len();
                k += 1;
                stats.activations_fused += 1;
            }
            None => k += 1,
        }
    }
}
