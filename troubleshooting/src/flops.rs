//! Work estimates: multiply-adds ×2 of convolutions and matrix products, from tensor sizes, for
//! kernel calls and for the nodes inside Ferrite's delegates (`ferrite doctor`'s totals and
//! `ferrite profile`'s GFLOP/s).

use std::collections::BTreeMap;

use ferrite_blob::{BlobGraph, BlobValue, BACKEND_ID};
use ferrite_op_support::Op;
use ferrite_program::{Instruction, Program, Value};

/// The product of `dims`, saturating (sizes come from files).
fn product(dims: &[usize]) -> u64 {
    dims.iter().fold(1u64, |p, &d| p.saturating_mul(d as u64))
}

/// Multiply-adds ×2 of a convolution or matrix product, from its tensors' sizes (saturating).
pub(crate) fn op_flops(op: Op, sizes: &dyn Fn(usize) -> Option<Vec<usize>>, args: &[usize]) -> u64 {
    let out = args.last().and_then(|&v| sizes(v)).map_or(0, |s| product(&s));
    let last_dim = |v: Option<&usize>| v.and_then(|&v| sizes(v)).and_then(|s| s.last().copied()).unwrap_or(0) as u64;
    match op {
        // out = conv(x, w): each output element takes weight.numel() / out_channels products.
        Op::Convolution | Op::FerriteConvolutionNhwc | Op::FerriteQuantizedConvolutionNhwc => {
            let w = args.get(1).and_then(|&v| sizes(v)).unwrap_or_default();
            2u64.saturating_mul(out).saturating_mul(product(w.get(1..).unwrap_or_default()))
        }
        // Each output element of a product takes K products, K the last dimension of the
        // left operand: addmm(bias, a [M, K], b), mm(a, b), bmm(a [B, M, K], b), linear(x [.., K], w)
        // and the backend's dense layers (x [.., K], ..).
        Op::Addmm => 2u64.saturating_mul(out).saturating_mul(last_dim(args.get(1))),
        Op::Mm
        | Op::Bmm
        | Op::Linear
        | Op::FerriteDense
        | Op::FerriteQuantizedDense
        | Op::FerriteDynamicQuantizedDense
        | Op::FerriteGroupwiseDense => 2u64.saturating_mul(out).saturating_mul(last_dim(args.first())),
        _ => 0,
    }
}

pub(crate) fn blob_flops(g: &BlobGraph) -> u64 {
    let sizes = |v: usize| match g.values.get(v) {
        Some(BlobValue::Tensor(t)) => Some(t.sizes.clone()),
        _ => None,
    };
    g.ops.iter().map(|op| op_flops(op.op, &sizes, strip_returned(&op.args))).fold(0, u64::saturating_add)
}

/// The work of each operator of `method`: by (instruction, node inside a Ferrite delegate);
/// operators without a formula are left out.
pub fn method_flops(program: &Program<'_>, method: &str) -> BTreeMap<(usize, Option<usize>), u64> {
    let mut out = BTreeMap::new();
    let Some(plan) = program.plan(method) else { return out };
    let sizes = |v: usize| match plan.values.get(v) {
        Some(Value::Tensor(t)) => Some(t.sizes.clone()),
        _ => None,
    };
    for (i, ins) in plan.chains.first().map_or(&[][..], |c| c.instructions.as_slice()).iter().enumerate() {
        match ins {
            Instruction::KernelCall { op_index, args } => {
                if let Some(op) = plan.operators.get(*op_index).and_then(|o| Op::from_name(&o.qualified())) {
                    let f = op_flops(op, &sizes, strip_returned(args));
                    if f > 0 {
                        out.insert((i, None), f);
                    }
                }
            }
            Instruction::DelegateCall { delegate_index, .. } => {
                let Some(d) = plan.delegates.get(*delegate_index).filter(|d| d.id == BACKEND_ID) else { continue };
                let Some(Ok(g)) = program.delegate_data(d).map(BlobGraph::decode) else { continue };
                let sizes = |v: usize| match g.values.get(v) {
                    Some(BlobValue::Tensor(t)) => Some(t.sizes.clone()),
                    _ => None,
                };
                for (k, op) in g.ops.iter().enumerate() {
                    let f = op_flops(op.op, &sizes, strip_returned(&op.args));
                    if f > 0 {
                        out.insert((i, Some(k)), f);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// An out-variant's arguments without the trailing returned copies.
pub(crate) fn strip_returned(args: &[usize]) -> &[usize] {
    let k = ferrite_program::graph::returned_count(args);
    &args[..args.len() - k.saturating_sub(1).min(args.len())]
}
