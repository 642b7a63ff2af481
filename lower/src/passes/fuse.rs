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
//!
//! **Safe softmax**: PyTorch's `_safe_softmax` (scaled dot-product attention's softmax, which
//! gives zeros for a fully masked row) reaches ExecuTorch programs as seven operators —
//! `s = _softmax(x)`, `eq(x, −inf) → logical_not → any(dim, keepdim) → logical_not` for the
//! mask, `where(mask, full_like(s, 0), s)` — seven passes over an attention-sized tensor. They
//! become one [`Op::FerriteSafeSoftmax`] (f32, last dimension, every intermediate read by the
//! next step only; not in methods that requantize).

use ferrite_blob::{returned_count, BlobGraph, BlobOp, BlobValue};
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

/// Rewrites the seven operators ExecuTorch exports `_safe_softmax` as into one
/// [`Op::FerriteSafeSoftmax`] (see the module documentation).
pub(crate) fn fuse_safe_softmax(g: &mut BlobGraph, stats: &mut PassStats) {
    let mut k = 0;
    while k < g.ops.len() {
        match safe_softmax_at(g, k) {
            Some((softmax, mut removed)) => {
                let out = g.ops[k].args[3];
                let (x, dim, half) = (softmax.args[0], softmax.args[1], softmax.args[2]);
                g.ops[k] = BlobOp { op: Op::FerriteSafeSoftmax, args: vec![x, dim, half, out, out], activation: None };
                removed.sort_unstable();
                for &p in removed.iter().rev() {
                    g.ops.remove(p);
                }
                k -= removed.len() - 1; // every removed op came before `k`; `k` moves past the new one
                stats.activations_fused += 1;
            }
            None => k += 1,
        }
    }
}

/// The `_softmax` and the positions of the six operators to remove when `g.ops[k]` is the
/// `where` that ends a safe softmax.
fn safe_softmax_at(g: &BlobGraph, k: usize) -> Option<(BlobOp, Vec<usize>)> {
    let plain = |op: &BlobOp, which: Op, arity: usize| {
        op.op == which && op.activation.is_none() && op.args.len() == arity && returned_count(&op.args) == 1
    };
    // The op before `k` writing only `v`, when it is `which` with `arity` arguments.
    let producer = |v: usize, which: Op, arity: usize| {
        let p = g.ops[..k].iter().rposition(|op| op_outputs(g, op) == [v])?;
        plain(&g.ops[p], which, arity).then_some(p)
    };
    // An intermediate: read by `count` operators, none of them outside the pattern, not returned.
    let internal = |v: usize, count: usize| readers(g, v, None) == count && !is_output(g, v);
    let w = &g.ops[k];
    if !plain(w, Op::WhereSelf, 5) {
        return None;
    }
    let (mask, zeros, s, out) = (w.args[0], w.args[1], w.args[2], w.args[3]);
    let ps = producer(s, Op::Softmax, 5)?;
    let softmax = &g.ops[ps];
    let x = softmax.args[0];
    let sizes = g.tensor(x).filter(|t| t.dtype == ScalarType::Float)?.sizes.clone();
    let float_like = |v: usize| g.tensor(v).is_some_and(|t| t.dtype == ScalarType::Float && t.sizes == sizes);
    if !float_like(s) || !float_like(zeros) || !float_like(out) || g.tensor(out)?.alias_of.is_some() {
        return None;
    }
    let last = |v: usize| {
        let d = g.int(v)?;
        let d = usize::try_from(if d < 0 { d + sizes.len() as i64 } else { d }).ok().filter(|&d| d < sizes.len())?;
        sizes[d + 1..].iter().all(|&n| n == 1).then_some(d)
    };
    let d = last(softmax.args[1])?;
    if !matches!(g.values.get(softmax.args[2]), Some(BlobValue::Bool(false))) || !internal(s, 2) {
        return None;
    }
    // `where(mask, full_like(s, 0), s)`.
    let pf = producer(zeros, Op::FullLike, 5)?;
    if g.ops[pf].args[0] != s || g.number(g.ops[pf].args[1]) != Some(0.0) || !internal(zeros, 1) {
        return None;
    }
    // mask = logical_not(any(logical_not(eq(x, −inf)), d, keepdim)).
    let pn2 = producer(mask, Op::LogicalNot, 3)?;
    let any = g.ops[pn2].args[0];
    let pa = producer(any, Op::Any, 5)?;
    let keepdim = matches!(g.values.get(g.ops[pa].args[2]), Some(BlobValue::Bool(true)));
    if last(g.ops[pa].args[1]) != Some(d) || !keepdim || !internal(mask, 1) || !internal(any, 1) {
        return None;
    }
    let kept = g.ops[pa].args[0];
    let pn1 = producer(kept, Op::LogicalNot, 3)?;
    let masked = g.ops[pn1].args[0];
    let pe = producer(masked, Op::EqScalar, 4)?;
    let eq = &g.ops[pe];
    if eq.args[0] != x || g.number(eq.args[1]) != Some(f64::NEG_INFINITY) || !internal(kept, 1) || !internal(masked, 1)
    {
        return None;
    }
    Some((softmax.clone(), vec![ps, pf, pn2, pa, pn1, pe]))
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
