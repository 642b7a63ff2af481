//! **Dense layers**: `linear`, `addmm` and `mm` with constant weights become
//! [`Op::FerriteDense`] (weight `[K, N]`), whose weight the backend packs when it initialises.

use ferrite_blob::{returned_count, BlobGraph, BlobOp, BlobValue};
use ferrite_op_support::Op;
use ferrite_program::ScalarType;

use crate::graph::{constant_f32, new_constant_tensor, op_outputs};
use crate::PassStats;

/// What a dense layer is made of: input, weight values `[K, N]`, `[K, N]`, bias value.
type DenseParts = (usize, Vec<f32>, [usize; 2], Option<usize>);

/// The dense-layer pass (see the module documentation).
pub(crate) fn dense_layers(g: &mut BlobGraph, stats: &mut PassStats) {
    for k in 0..g.ops.len() {
        let op = g.ops[k].clone();
        if returned_count(&op.args) != 1 {
            continue;
        }
        let outs = op_outputs(g, &op);
        let [out] = outs.as_slice() else { continue };
        let is_float = |v: usize| g.tensor(v).is_some_and(|t| t.dtype == ScalarType::Float && t.constant.is_none());
        let rewrite: Option<DenseParts> = (|| match op.op {
            Op::Linear if op.args.len() == 5 => {
                // weight [N, K]: transpose it into [K, N].
                let (x, w, b) = (op.args[0], op.args[1], op.args[2]);
                let wt = g.tensor(w)?;
                let &[n, k] = wt.sizes.as_slice() else { return None };
                let values = constant_f32(g, w)?;
                let mut kn = vec![0.0f32; values.len()];
                for j in 0..n {
                    for p in 0..k {
                        kn[p * n + j] = values[j * k + p];
                    }
                }
                let bias = match g.values.get(b)? {
                    BlobValue::None => None,
                    _ => Some(b),
                };
                Some((x, kn, [k, n], bias))
            }
            Op::Addmm if op.args.len() == 7 => {
                let (b, x, w) = (op.args[0], op.args[1], op.args[2]);
                let one = |v: usize| g.number(v) == Some(1.0);
                if !one(op.args[3]) || !one(op.args[4]) {
                    return None;
                }
                let &[k, n] = g.tensor(w)?.sizes.as_slice() else { return None };
                let bs = &g.tensor(b)?.sizes;
                if !(bs.as_slice() == [n] || bs.as_slice() == [1, n]) {
                    return None;
                }
                Some((x, constant_f32(g, w)?, [k, n], Some(b)))
            }
            Op::Mm if op.args.len() == 4 => {
                let (x, w) = (op.args[0], op.args[1]);
                let &[k, n] = g.tensor(w)?.sizes.as_slice() else { return None };
                Some((x, constant_f32(g, w)?, [k, n], None))
            }
            _ => None,
        })();
        let Some((x, weight, [kk, n], bias)) = rewrite else { continue };
        let input_ok = is_float(x) && g.tensor(x).is_some_and(|t| t.sizes.last() == Some(&kk));
        let bias_ok = bias.is_none_or(|b| constant_f32(g, b).is_some_and(|v| v.len() == n));
        let out_ok = g.tensor(*out).is_some_and(|t| t.dtype == ScalarType::Float && t.sizes.last() == Some(&n));
        if !input_ok || !bias_ok || !out_ok || kk == 0 || n == 0 {
            continue;
        }
        let w = new_constant_tensor(g, vec![kk, n], &weight);
        let b = match bias {
            Some(b) => {
                let values = constant_f32(g, b).unwrap_or_default();
                new_constant_tensor(g, vec![n], &values)
            }
            None => {
                g.values.push(BlobValue::None);
                g.values.len() - 1
            }
        };
        g.ops[k] = BlobOp { op: Op::FerriteDense, args: vec![x, w, b, *out, *out], activation: op.activation };
        stats.dense_layers += 1;
    }
}
