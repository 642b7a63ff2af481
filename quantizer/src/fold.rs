//! Batch norm folded into the convolution before it, before anything is observed (PT2E folds
//! it in `prepare_pt2e` the same way: `w * gamma / sqrt(var + eps)`, `(b - mean) * gamma /
//! sqrt(var + eps) + beta`, in `f32`).

use ferrite_op_support::Op;
use ferrite_program::graph::Graph;
use ferrite_program::{Instruction, ScalarType, Value};

use crate::annotate::op_of;
use crate::draft::Draft;

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Folds every `_native_batch_norm_legit_no_training` whose input is a convolution with a
/// constant weight read by nothing else; returns how many were folded.
pub(crate) fn fold_batch_norms(draft: &mut Draft<'_>) -> usize {
    let plan = draft.plan.clone();
    let graph = Graph::new(&plan);
    let mut drop_instruction = Vec::new();
    let mut folded = 0;
    for (n, node) in graph.nodes().iter().enumerate() {
        if op_of(node) != Some(Op::NativeBatchNormLegitNoTraining) {
            continue;
        }
        let a = &node.args;
        let (Some(&x), Some(&gamma), Some(&beta), Some(&mean), Some(&var), Some(&eps)) =
            (a.first(), a.get(1), a.get(2), a.get(3), a.get(4), a.get(6))
        else {
            continue;
        };
        let Some(&bn_out) = node.outputs.first() else { continue };
        // The other outputs (saved statistics) must be unused.
        if node.outputs[1..].iter().any(|&o| !graph.consumers(o).is_empty() || graph.is_method_output(o)) {
            continue;
        }
        let Some(p) = graph.producer(x) else { continue };
        let conv = &graph.nodes()[p];
        if op_of(conv) != Some(Op::Convolution) || graph.consumers(x) != [n] || graph.is_method_output(x) {
            continue;
        }
        if graph.alias_of(x).is_some() || conv.outputs.first() != Some(&x) {
            continue;
        }
        let (Some(&w), Some(&b)) = (conv.args.get(1), conv.args.get(2)) else { continue };
        let eps = match graph.value(eps) {
            Some(Value::Double(e)) => *e as f32,
            _ => continue,
        };
        let Some(wv) = draft.constant_f32(w) else { continue };
        let Some(out_channels) = graph.tensor(w).and_then(|t| t.sizes.first().copied()) else { continue };
        let get = |v: usize, d: &Draft<'_>| -> Option<Vec<f32>> {
            match graph.value(v) {
                Some(Value::Null) => None,
                _ => d.constant_f32(v).filter(|c| c.len() == out_channels),
            }
        };
        let (Some(m), Some(var)) = (get(mean, draft), get(var, draft)) else { continue };
        let g = get(gamma, draft).unwrap_or_else(|| vec![1.0; out_channels]);
        let bt = get(beta, draft).unwrap_or_else(|| vec![0.0; out_channels]);
        let bias = match graph.value(b) {
            Some(Value::Null) => vec![0.0; out_channels],
            _ => match get(b, draft) {
                Some(v) => v,
                None => continue,
            },
        };
        if out_channels == 0 || wv.len() % out_channels != 0 {
            continue;
        }
        let inner = wv.len() / out_channels;
        let rsqrt: Vec<f32> = var.iter().map(|&v| 1.0 / (v + eps).sqrt()).collect();
        let mut new_w = wv.clone();
        for c in 0..out_channels {
            let f = g[c] * rsqrt[c];
            new_w[c * inner..(c + 1) * inner].iter_mut().for_each(|x| *x *= f);
        }
        let new_b: Vec<f32> = (0..out_channels).map(|c| (bias[c] - m[c]) * rsqrt[c] * g[c] + bt[c]).collect();
        let sizes = graph.tensor(w).map(|t| t.sizes.clone()).unwrap_or_default();
        // New constants (the originals may be shared with other nodes).
        let nw = draft.push_constant(ScalarType::Float, &sizes, f32_bytes(&new_w));
        let nb = draft.push_constant(ScalarType::Float, &[out_channels], f32_bytes(&new_b));
        let conv_ins = conv.instruction;
        if let Some(Instruction::KernelCall { args, .. }) =
            draft.plan.chains.first_mut().and_then(|c| c.instructions.get_mut(conv_ins))
        {
            args[1] = nw;
            args[2] = nb;
            // The convolution writes straight into the batch norm's output.
            let k = args.len();
            for a in &mut args[k - 2..] {
                if *a == x {
                    *a = bn_out;
                }
            }
        }
        drop_instruction.push(node.instruction);
        folded += 1;
    }
    if folded > 0 {
        let ins: Vec<Instruction> = draft
            .instructions()
            .iter()
            .enumerate()
            .filter(|(i, _)| !drop_instruction.contains(i))
            .map(|(_, ins)| ins.clone())
            .collect();
        draft.set_instructions(ins);
    }
    folded
}
