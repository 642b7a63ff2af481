//! **Free reshapes**: reshapes ([`Op::is_reshape`](ferrite_op_support::Op::is_reshape): `view_copy`, `squeeze_copy`,
//! `unsqueeze_copy`, ...) become aliases of their input's memory: no copy at run time.

use ferrite_blob::{BlobGraph, BlobValue};

use crate::graph::op_outputs;
use crate::PassStats;

pub(crate) fn elide_reshapes(g: &mut BlobGraph, stats: &mut PassStats) {
    let mut k = 0;
    while k < g.ops.len() {
        let op = g.ops[k].clone();
        // A dynamic shape is set by the operation that writes it: those reshapes stay.
        let reshape = op.op.is_reshape() && !g.touches_dynamic(&op);
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
                // Nothing else may be aliased to `out` already.
                if g.values.iter().any(|v| matches!(v, BlobValue::Tensor(t) if t.alias_of == Some(out))) {
                    return None;
                }
                if let Some(BlobValue::Tensor(t)) = g.values.get_mut(out) {
                    t.alias_of = Some(root);
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
