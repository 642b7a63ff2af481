//! **Free reshapes**: reshapes ([`Op::is_reshape`](ferrite_op_support::Op::is_reshape): `view_copy`, `squeeze_copy`,
//! `unsqueeze_copy`, ...) become aliases of their input's memory: no copy at run time. So do
//! copies that change nothing: `clone`, `alias_copy`, and an `expand_copy` to the shape the
//! input already has (attention as exported expands its query, key, value and probabilities
//! to their own shapes before each product).

use ferrite_blob::{BlobGraph, BlobOp, BlobValue};
use ferrite_op_support::Op;

use crate::graph::op_outputs;
use crate::PassStats;

pub(crate) fn elide_reshapes(g: &mut BlobGraph, stats: &mut PassStats) {
    let mut k = 0;
    while k < g.ops.len() {
        let op = g.ops[k].clone();
        // A dynamic shape is set by the operation that writes it: those reshapes stay.
        let reshape = (op.op.is_reshape() || identity_copy(g, &op)) && !g.touches_dynamic(&op);
        let elided = reshape
            && (|| {
                let x = *op.args.first()?;
                let outs = op_outputs(g, &op);
                let out = *outs.first()?;
                let (xt, ot) = (g.tensor(x)?, g.tensor(out)?);
                let same =
                    xt.dtype == ot.dtype && xt.sizes.iter().product::<usize>() == ot.sizes.iter().product::<usize>();
                if outs.len() != 1 || !same || ot.constant.is_some() || g.inputs.contains(&out) || ot.alias_of.is_some()
                {
                    return None;
                }
                let root = xt.alias_of.unwrap_or(x);
                // `out` and whatever was already an alias of it (a view of a copy) share the
                // root's memory: every alias names a root, never another alias.
                for (v, value) in g.values.iter_mut().enumerate() {
                    if let BlobValue::Tensor(t) = value {
                        if v == out || t.alias_of == Some(out) {
                            t.alias_of = Some(root);
                        }
                    }
                }
                Some(())
            })()
            .is_some();
        if elided {
            g.ops.remove(k);
            stats.reshapes_elided += 1;
        } else {
            k += 1;
        }
    }
}

/// A copy whose output is its input: `clone`, `alias_copy`, or `expand_copy` to the input's
/// own shape (same dtype).
fn identity_copy(g: &BlobGraph, op: &BlobOp) -> bool {
    if !matches!(op.op, Op::Clone | Op::AliasCopy | Op::ExpandCopy) {
        return false;
    }
    let outs = op_outputs(g, op);
    match (op.args.first().and_then(|&x| g.tensor(x)), outs.first().and_then(|&o| g.tensor(o))) {
        (Some(x), Some(o)) => outs.len() == 1 && x.dtype == o.dtype && x.sizes == o.sizes,
        _ => false,
    }
}
