//! Queries and edits on a partition's blob graph that several passes share.

use ferrite_blob::{returned_count, BlobGraph, BlobOp, BlobTensor, BlobValue};
use ferrite_program::ScalarType;

/// The op's outputs: ExecuTorch's repeated returned values, else the trailing tensor (list).
pub(crate) fn op_outputs(g: &BlobGraph, op: &BlobOp) -> Vec<usize> {
    let k = returned_count(&op.args);
    if k > 0 {
        op.args[op.args.len() - k..].iter().flat_map(|&v| g.tensors_in(v)).collect()
    } else {
        op.args.iter().rev().map(|&v| g.tensors_in(v)).find(|t| !t.is_empty()).unwrap_or_default()
    }
}

/// Number of ops (other than `except`) reading tensor `v`, and whether it is a partition output.
pub(crate) fn readers(g: &BlobGraph, v: usize, except: Option<usize>) -> usize {
    g.ops
        .iter()
        .enumerate()
        .filter(|(k, _)| Some(*k) != except)
        .filter(|(_, op)| {
            let outs = op_outputs(g, op);
            op.args.iter().flat_map(|&a| g.tensors_in(a)).any(|t| t == v && !outs.contains(&t))
        })
        .count()
}

/// Whether tensor `v` is handed back (itself, or as the root of an output's alias).
pub(crate) fn is_output(g: &BlobGraph, v: usize) -> bool {
    g.outputs.contains(&v) || g.outputs.iter().any(|&o| g.tensor(o).and_then(|t| t.alias_of) == Some(v))
}

/// The bytes of constant tensor `v`.
pub(crate) fn constant_bytes(g: &BlobGraph, v: usize) -> Option<&[u8]> {
    g.tensor(v).and_then(|t| t.constant).and_then(|c| g.constants.get(c)).map(Vec::as_slice)
}

/// Makes `out` a constant holding `bytes`.
pub(crate) fn set_constant(g: &mut BlobGraph, out: usize, bytes: Vec<u8>) {
    g.constants.push(bytes);
    let c = g.constants.len() - 1;
    if let Some(BlobValue::Tensor(t)) = g.values.get_mut(out) {
        t.constant = Some(c);
        t.alias_of = None;
    }
}

/// Little-endian f32 values of `bytes`.
pub(crate) fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// The little-endian bytes of `v`.
pub(crate) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Appends a new f32 constant tensor; returns its value index.
pub(crate) fn new_constant_tensor(g: &mut BlobGraph, sizes: Vec<usize>, values: &[f32]) -> usize {
    g.constants.push(f32_bytes(values));
    let c = g.constants.len() - 1;
    g.values.push(BlobValue::Tensor(BlobTensor {
        dtype: ScalarType::Float,
        sizes,
        constant: Some(c),
        alias_of: None,
        dynamic: false,
    }));
    g.values.len() - 1
}

/// A float tensor's constant values, when it is a constant.
pub(crate) fn constant_f32(g: &BlobGraph, v: usize) -> Option<Vec<f32>> {
    let t = g.tensor(v)?;
    (t.dtype == ScalarType::Float).then_some(())?;
    constant_bytes(g, v).map(f32s)
}
