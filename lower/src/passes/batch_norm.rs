//! **Batch-norm folding**: an inference batch norm whose input is a convolution's output (used by
//! nothing else) is folded into the convolution's weights and bias.

use ferrite_blob::{BlobGraph, BlobValue};
use ferrite_op_support::Op;
use ferrite_program::ScalarType;

use crate::compile::Result;
use crate::graph::{constant_bytes, f32s, is_output, new_constant_tensor, op_outputs, readers};
use crate::PassStats;

pub(crate) fn fold_batch_norms(g: &mut BlobGraph, stats: &mut PassStats) -> Result<()> {
    let mut k = 0;
    while k < g.ops.len() {
        if g.ops[k].op != Op::NativeBatchNormLegitNoTraining {
            k += 1;
            continue;
        }
        let bn = g.ops[k].clone();
        let folded = (|| -> Option<(usize, Vec<usize>)> {
            // (input, weight?, bias?, mean, var, momentum, eps, out, save_mean, save_invstd, ...)
            let x = *bn.args.first()?;
            let outs = op_outputs(g, &bn);
            let (out, extra) = (*outs.first()?, &outs[1..]);
            if extra.iter().any(|&e| readers(g, e, Some(k)) > 0 || is_output(g, e)) {
                return None;
            }
            let conv_k = g.ops[..k].iter().rposition(|op| op.op == Op::Convolution && op_outputs(g, op) == [x])?;
            let conv = &g.ops[conv_k];
            if readers(g, x, Some(k)) > 0
                || is_output(g, x)
                || conv.activation.is_some()
                || g.tensor(x)?.dtype != ScalarType::Float
            {
                return None;
            }
            let w = f32s(constant_bytes(g, *conv.args.get(1)?)?);
            let wt = g.tensor(*conv.args.get(1)?)?.clone();
            let co = *wt.sizes.first()?;
            if co == 0 || !w.len().is_multiple_of(co) {
                return None;
            }
            let per = w.len() / co;
            let bias = match g.values.get(*conv.args.get(2)?)? {
                BlobValue::None => vec![0.0f32; co],
                _ => f32s(constant_bytes(g, conv.args[2])?),
            };
            let param = |i: usize, default: f32| -> Option<Vec<f32>> {
                match g.values.get(*bn.args.get(i)?)? {
                    BlobValue::None => Some(vec![default; co]),
                    _ => Some(f32s(constant_bytes(g, bn.args[i])?)),
                }
            };
            let (gamma, beta, mean, var) = (param(1, 1.0)?, param(2, 0.0)?, param(3, 0.0)?, param(4, 1.0)?);
            let eps = g.number(*bn.args.get(6)?)?;
            if [gamma.len(), beta.len(), mean.len(), var.len(), bias.len()].iter().any(|&l| l != co) {
                return None;
            }
            let mut new_w = w;
            let mut new_b = vec![0.0f32; co];
            for c in 0..co {
                let scale = (f64::from(gamma[c]) / (f64::from(var[c]) + eps).sqrt()) as f32;
                for x in &mut new_w[c * per..(c + 1) * per] {
                    *x *= scale;
                }
                new_b[c] = ((f64::from(bias[c]) - f64::from(mean[c])) * f64::from(scale) + f64::from(beta[c])) as f32;
            }
            let wv = new_constant_tensor(g, wt.sizes.clone(), &new_w);
            let bv = new_constant_tensor(g, vec![co], &new_b);
            let mut args = g.ops[conv_k].args.clone();
            args[1] = wv;
            args[2] = bv;
            for a in args.iter_mut().skip(3) {
                if *a == x {
                    *a = out;
                }
            }
            Some((conv_k, args))
        })();
        match folded {
            Some((conv_k, args)) => {
                g.ops[conv_k].args = args;
                g.ops.remove(k);
                stats.batch_norms_folded += 1;
            }
            None => k += 1,
        }
    }
    Ok(())
}
