//! **Constant folding**: views and copies of constants (`permute_copy` of a linear layer's
//! weight, reshapes, clones) become constants, and so do float conversions of constants
//! (`_to_dim_order_copy` of an integer scalar: hard-swish's `3` and `6` as ExecuTorch exports
//! them).

use ferrite_blob::{tensor_bytes, BlobGraph};
use ferrite_kernels::{contiguous_strides, layout};
use ferrite_op_support::Op;

use crate::compile::{err, Result};
use crate::graph::{constant_bytes, is_output, op_outputs, set_constant};
use crate::PassStats;
use ferrite_program::ScalarType;

pub(crate) fn fold_constants(g: &mut BlobGraph, stats: &mut PassStats) -> Result<()> {
    let mut k = 0;
    while k < g.ops.len() {
        let op = g.ops[k].clone();
        let same_bytes = op.op.copies_bytes();
        let permute = op.op.is_permutation();
        let input = op.args.first().copied();
        let outs = op_outputs(g, &op);
        if let (Op::ToDimOrderCopy, Some(x), [out]) = (op.op, input, outs.as_slice()) {
            if let Some(bytes) = float_conversion(g, &op.args, x, *out) {
                set_constant(g, *out, bytes);
                g.ops.remove(k);
                stats.constants_folded += 1;
                continue;
            }
        }
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

/// The f32 bytes of `_to_dim_order_copy(x)` into float `out` when `x` is a constant of a
/// numeric dtype, the conversion keeps the default dim order and `out` is not handed back.
/// Values convert as ExecuTorch's kernel does (`static_cast<float>`: to nearest).
fn float_conversion(g: &BlobGraph, args: &[usize], x: usize, out: usize) -> Option<Vec<u8>> {
    let (xt, ot) = (g.tensor(x)?, g.tensor(out)?);
    let default_order = match args.get(2).and_then(|&v| g.values.get(v)) {
        Some(ferrite_blob::BlobValue::None) => true,
        Some(_) => args
            .get(2)
            .and_then(|&v| g.int_list(v))
            .is_some_and(|d| d.len() == xt.sizes.len() && d.iter().enumerate().all(|(i, &o)| o == i as i64)),
        None => false,
    };
    if !default_order || ot.dtype != ScalarType::Float || ot.sizes != xt.sizes || is_output(g, out) {
        return None;
    }
    let bytes = constant_bytes(g, x)?;
    let values: Vec<f32> = match xt.dtype {
        ScalarType::Float => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        ScalarType::Double => {
            bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect()
        }
        ScalarType::Long => {
            bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect()
        }
        ScalarType::Int => bytes.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32).collect(),
        ScalarType::Short => bytes.chunks_exact(2).map(|c| f32::from(i16::from_le_bytes([c[0], c[1]]))).collect(),
        ScalarType::Char => bytes.iter().map(|&b| f32::from(b as i8)).collect(),
        ScalarType::Byte => bytes.iter().map(|&b| f32::from(b)).collect(),
        ScalarType::Bool => bytes.iter().map(|&b| f32::from(u8::from(b != 0))).collect(),
        _ => return None,
    };
    (Some(values.len()) == ferrite_kernels::numel(&ot.sizes))
        .then(|| values.iter().flat_map(|v| v.to_le_bytes()).collect())
}
