//! **Constant folding**: views and copies of constants (`permute_copy` of a linear layer's
//! weight, reshapes, clones) become constants.

use ferrite_blob::{tensor_bytes, BlobGraph};
use ferrite_kernels::{contiguous_strides, layout};
use ferrite_op_support::Op;

use crate::compile::{err, Result};
use crate::graph::{constant_bytes, is_output, op_outputs, set_constant};
use crate::PassStats;

pub(crate) fn fold_constants(g: &mut BlobGraph, stats: &mut PassStats) -> Result<()> {
    let mut k = 0;
    while k < g.ops.len() {
        let op = g.ops[k].clone();
        let same_bytes = op.op.copies_bytes();
        let permute = op.op.is_permutation();
        let input = op.args.first().copied();
        let outs = op_outputs(g, &op);
        let folded = match (input, outs.as_slice()) {
            (Some(x), [out]) if (same_bytes || permute) && constant_bytes(g, x).is_some() && !is_output(g, *out) => {
                let (xt, ot) = match (g.tensor(x), g.tensor(*out)) {
                    (Some(a), Some(b)) if a.dtype == b.dtype => (a.clone(), b.clone()),
                    _ => {
                        k += 1;
                        continue;
                    }
                };
                let bytes = constant_bytes(g, x).map(<[u8]>::to_vec).unwrap_or_default();
                let new = if same_bytes {
                    if Some(bytes.len()) != tensor_bytes(ot.dtype, &ot.sizes) {
                        None
                    } else {
                        Some(bytes)
                    }
                } else {
                    let rank = xt.sizes.len();
                    let perm: Option<Vec<usize>> = match op.op {
                        Op::PermuteCopy => op.args.get(1).and_then(|&v| g.int_list(v)).map(|p| {
                            p.iter().map(|&d| if d < 0 { (d + rank as i64) as usize } else { d as usize }).collect()
                        }),
                        Op::TCopy if rank == 2 => Some(vec![1, 0]),
                        Op::TCopy => Some((0..rank).collect()),
                        _ => match (op.args.get(1).and_then(|&v| g.int(v)), op.args.get(2).and_then(|&v| g.int(v))) {
                            (Some(a), Some(b)) => {
                                let n = |d: i64| if d < 0 { (d + rank as i64) as usize } else { d as usize };
                                let mut p: Vec<usize> = (0..rank).collect();
                                if n(a) < rank && n(b) < rank {
                                    p.swap(n(a), n(b));
                                    Some(p)
                                } else {
                                    None
                                }
                            }
                            _ => None,
                        },
                    };
                    match perm {
                        Some(p) if p.len() == rank && (0..rank).all(|d| p.contains(&d)) => {
                            let strides = contiguous_strides(&xt.sizes);
                            let sizes: Vec<usize> = p.iter().map(|&d| xt.sizes[d]).collect();
                            let st: Vec<usize> = p.iter().map(|&d| strides[d]).collect();
                            if sizes != ot.sizes {
                                None
                            } else {
                                let mut buf = vec![0u8; bytes.len()];
                                layout::gather(&mut buf, &bytes, xt.dtype.element_size(), &sizes, &st, 0)
                                    .map_err(|e| err(format!("folding a permutation: {e}")))?;
                                Some(buf)
                            }
                        }
                        _ => None,
                    }
                };
                match new {
                    Some(b) => {
                        set_constant(g, *out, b);
                        true
                    }
                    None => false,
                }
            }
            _ => false,
        };
        if folded {
            g.ops.remove(k);
            stats.constants_folded += 1;
        } else {
            k += 1;
        }
    }
    Ok(())
}
