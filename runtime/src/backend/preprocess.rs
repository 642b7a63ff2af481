//! Ahead of time: turn one partition of a program into an optimised [`BlobGraph`].
//!
//! Passes, in order:
//! 1. **Constant folding** — views and copies of constants (`permute_copy` of a linear layer's
//!    weight, reshapes, clones) become constants.
//! 2. **Batch-norm folding** — an inference batch norm whose input is a convolution's output (used
//!    by nothing else) is folded into the convolution's weights and bias.
//! 3. **Activation fusion** — `relu`, `hardtanh` (ReLU6) and `clamp` after a convolution, linear
//!    layer, matrix product or element-wise add/sub/mul become a clamp of that operation's output.
//! 4. **Free reshapes** — `view_copy`, `squeeze_copy` and `unsqueeze_copy` become aliases of their
//!    input's memory: no copy at run time.
//! 5. **Dead code and compaction** — operations whose outputs nobody reads are dropped, then
//!    unreferenced values and constants.

use std::collections::BTreeMap;

use ferrite_program::graph::Graph;
use ferrite_program::{ExecutionPlan, Instruction, Program, ScalarType, TensorStorage, Value};

use super::blob::{BlobGraph, BlobOp, BlobTensor, BlobValue};
use super::{err, returned_count};
use crate::error::Result;
use crate::kernels::{contiguous_strides, layout};

/// What the passes did (for reports and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassStats {
    /// Operations folded into constants.
    pub constants_folded: usize,
    /// Batch norms folded into convolutions.
    pub batch_norms_folded: usize,
    /// Activations fused into their producer.
    pub activations_fused: usize,
    /// Reshapes turned into aliases.
    pub reshapes_elided: usize,
    /// Dead operations removed.
    pub dead_ops_removed: usize,
    /// Convolutions run channels-last by Ferrite's NHWC kernels.
    pub channels_last_convolutions: usize,
    /// Layout conversions (`permute_copy`) the channels-last pass inserted.
    pub layout_conversions: usize,
    /// Linear layers and products with constant weights run by the packed dense kernel.
    pub dense_layers: usize,
}

/// The backend's dense layer: `(input [.., K], weight [K, N] constant, bias [N] constant or None,
/// out, out)`; the backend packs the weight when it initialises.
pub const DENSE: &str = "ferrite::dense.out";

/// The backend's own operator: `aten::convolution.out`'s arguments, with the input and output
/// tensors channels-last (`[N, H, W, C]`, or `[N, L, C]` for a 1-D convolution) and the weight still `[out, in/groups, kh, kw]`; the
/// backend packs the weight when it initialises.
pub const NHWC_CONVOLUTION: &str = "ferrite::convolution_nhwc.out";

/// The backend's channels-last max pooling: `(x, kernel_size, stride, padding, dilation,
/// count_include_pad, divisor_override, out, out)` with `x` NHWC (`[N, H, W, C]`), the four
/// int lists of two entries each, `out` NHWC (`[N, OH, OW, C]`, sizes from the original
/// operator, so `ceil_mode` is already applied); the two averaging arguments are `false` and
/// `None`. Written by the channels-last pass for `max_pool2d_with_indices` whose indices nobody
/// reads.
pub const NHWC_MAX_POOL: &str = "ferrite::max_pool2d_nhwc.out";

/// The backend's channels-last average pooling: the arguments of [`NHWC_MAX_POOL`], dilation
/// `[1, 1]`, with `avg_pool2d`'s `count_include_pad` (bool) and `divisor_override` (int or None).
pub const NHWC_AVG_POOL: &str = "ferrite::avg_pool2d_nhwc.out";

/// Builds the blob graph of the partition made of `instructions` of `plan` (kernel calls, in
/// execution order), reading `inputs` and handing back `outputs` (plan value indices), then
/// runs the passes.
pub fn compile_partition(
    program: &Program<'_>,
    plan: &ExecutionPlan,
    instructions: &[usize],
    inputs: &[usize],
    outputs: &[usize],
) -> Result<(BlobGraph, PassStats)> {
    let mut g = extract(program, plan, instructions, inputs, outputs)?;
    let mut stats = PassStats::default();
    fold_constants(&mut g, &mut stats)?;
    fold_batch_norms(&mut g, &mut stats)?;
    fuse_activations(&mut g, &mut stats);
    let quantizes = plan.operators.iter().any(|o| o.qualified().starts_with("quantized_decomposed::quantize_per_"));
    if !quantizes {
        channels_last(&mut g, &mut stats);
        dense_layers(&mut g, &mut stats);
    }
    elide_reshapes(&mut g, &mut stats);
    remove_dead_ops(&mut g, &mut stats);
    compact(&mut g);
    g.check_semantics()?;
    Ok((g, stats))
}

/// Copies the partition out of the plan: its values (renumbered), operations and constants.
fn extract(
    program: &Program<'_>,
    plan: &ExecutionPlan,
    instructions: &[usize],
    inputs: &[usize],
    outputs: &[usize],
) -> Result<BlobGraph> {
    let graph = Graph::new(plan);
    let chain = plan.chains.first().ok_or_else(|| err("the method has no instructions"))?;
    let mut g = BlobGraph::default();
    let mut map: BTreeMap<usize, usize> = BTreeMap::new();
    let mut constant_of: BTreeMap<usize, usize> = BTreeMap::new();

    fn add(
        v: usize,
        plan: &ExecutionPlan,
        program: &Program<'_>,
        g: &mut BlobGraph,
        map: &mut BTreeMap<usize, usize>,
        constant_of: &mut BTreeMap<usize, usize>,
    ) -> Result<usize> {
        if let Some(&b) = map.get(&v) {
            return Ok(b);
        }
        let value = plan.values.get(v).ok_or_else(|| err(format!("value {v} out of range")))?;
        let bv = match value {
            Value::Null => BlobValue::None,
            Value::Int(x) => BlobValue::Int(*x),
            Value::Double(x) => BlobValue::Double(*x),
            Value::Bool(x) => BlobValue::Bool(*x),
            Value::String(s) => BlobValue::String(s.clone()),
            Value::IntList(items) => BlobValue::IntList(
                items
                    .iter()
                    .map(|&i| match plan.values.get(i) {
                        Some(Value::Int(x)) => Ok(*x),
                        _ => Err(err(format!("int list item {i} is not an Int"))),
                    })
                    .collect::<Result<_>>()?,
            ),
            Value::DoubleList(items) => BlobValue::DoubleList(items.clone()),
            Value::BoolList(items) => BlobValue::BoolList(items.clone()),
            Value::Tensor(t) => {
                let constant = match t.storage() {
                    TensorStorage::Constant { .. } => {
                        let data =
                            program.tensor_data(t).ok_or_else(|| err(format!("constant value {v} has no data")))?;
                        let next = g.constants.len();
                        let c = *constant_of.entry(v).or_insert(next);
                        if c == next {
                            g.constants.push(data.to_vec());
                        }
                        Some(c)
                    }
                    _ => None,
                };
                if !t.is_contiguous() {
                    return Err(err(format!("value {v} is not in the default dim order")));
                }
                BlobValue::Tensor(BlobTensor { dtype: t.scalar_type, sizes: t.sizes.clone(), constant, alias_of: None })
            }
            Value::TensorList(items) => {
                let mut ids = Vec::with_capacity(items.len());
                for &i in items {
                    ids.push(add(i, plan, program, g, map, constant_of)?);
                }
                BlobValue::TensorList(ids)
            }
            Value::OptionalTensorList(items) => {
                let mut ids = Vec::with_capacity(items.len());
                for i in items {
                    ids.push(match i {
                        Some(i) => Some(add(*i, plan, program, g, map, constant_of)?),
                        None => None,
                    });
                }
                BlobValue::OptionalTensorList(ids)
            }
        };
        g.values.push(bv);
        let b = g.values.len() - 1;
        map.insert(v, b);
        Ok(b)
    }

    for &v in inputs {
        let b = add(v, plan, program, &mut g, &mut map, &mut constant_of)?;
        g.inputs.push(b);
    }
    for &i in instructions {
        let Some(Instruction::KernelCall { op_index, args }) = chain.instructions.get(i) else {
            return Err(err(format!("instruction {i} is not a kernel call")));
        };
        let name =
            plan.operators.get(*op_index).ok_or_else(|| err(format!("operator {op_index} out of range")))?.qualified();
        let mut bargs = Vec::with_capacity(args.len());
        for &a in args {
            bargs.push(add(a, plan, program, &mut g, &mut map, &mut constant_of)?);
        }
        g.ops.push(BlobOp { name, args: bargs, activation: None });
    }
    for &v in outputs {
        let b = add(v, plan, program, &mut g, &mut map, &mut constant_of)?;
        g.outputs.push(b);
    }
    // Memory-planned view aliases inside the partition: a value that shares the memory of one the
    // partition writes must share it here too.
    for (&v, &b) in &map {
        if let Some(u) = graph.alias_of(v) {
            if let (Some(&ub), false) = (map.get(&u), g.inputs.contains(&b)) {
                if let Some(BlobValue::Tensor(t)) = g.values.get_mut(b) {
                    t.alias_of = Some(ub);
                }
            }
        }
    }
    // Resolve alias chains to their roots.
    for b in 0..g.values.len() {
        let mut r = b;
        let mut hops = 0;
        while let Some(a) = g.tensor(r).and_then(|t| t.alias_of) {
            r = a;
            hops += 1;
            if hops > g.values.len() {
                return Err(err("alias cycle"));
            }
        }
        if r != b {
            if let Some(BlobValue::Tensor(t)) = g.values.get_mut(b) {
                t.alias_of = Some(r);
            }
        }
    }
    Ok(g)
}

/// The tensors an argument refers to.
fn tensors(g: &BlobGraph, v: usize) -> Vec<usize> {
    super::tensors_in(g, v)
}

/// The op's outputs: ExecuTorch's repeated returned values, else the trailing tensor (list).
fn op_outputs(g: &BlobGraph, op: &BlobOp) -> Vec<usize> {
    let k = returned_count(&op.args);
    if k > 0 {
        op.args[op.args.len() - k..].iter().flat_map(|&v| tensors(g, v)).collect()
    } else {
        op.args.iter().rev().map(|&v| tensors(g, v)).find(|t| !t.is_empty()).unwrap_or_default()
    }
}

/// Number of ops (other than `except`) reading tensor `v`, and whether it is a partition output.
fn readers(g: &BlobGraph, v: usize, except: Option<usize>) -> usize {
    g.ops
        .iter()
        .enumerate()
        .filter(|(k, _)| Some(*k) != except)
        .filter(|(_, op)| {
            let outs = op_outputs(g, op);
            op.args.iter().flat_map(|&a| tensors(g, a)).any(|t| t == v && !outs.contains(&t))
        })
        .count()
}

fn is_output(g: &BlobGraph, v: usize) -> bool {
    g.outputs.contains(&v) || g.outputs.iter().any(|&o| g.tensor(o).and_then(|t| t.alias_of) == Some(v))
}

fn constant_bytes(g: &BlobGraph, v: usize) -> Option<&[u8]> {
    g.tensor(v).and_then(|t| t.constant).and_then(|c| g.constants.get(c)).map(Vec::as_slice)
}

fn int_list(g: &BlobGraph, v: usize) -> Option<Vec<i64>> {
    match g.values.get(v)? {
        BlobValue::IntList(items) => Some(items.clone()),
        BlobValue::Int(x) => Some(vec![*x]),
        _ => None,
    }
}

pub(super) fn int(g: &BlobGraph, v: usize) -> Option<i64> {
    match g.values.get(v)? {
        BlobValue::Int(x) => Some(*x),
        _ => None,
    }
}

/// An int or float scalar (`None` for any other value).
pub(super) fn number(g: &BlobGraph, v: usize) -> Option<f64> {
    match g.values.get(v)? {
        BlobValue::Int(x) => Some(*x as f64),
        BlobValue::Double(x) => Some(*x),
        _ => None,
    }
}

/// Makes `out` a constant holding `bytes`.
fn set_constant(g: &mut BlobGraph, out: usize, bytes: Vec<u8>) {
    g.constants.push(bytes);
    let c = g.constants.len() - 1;
    if let Some(BlobValue::Tensor(t)) = g.values.get_mut(out) {
        t.constant = Some(c);
        t.alias_of = None;
    }
}

fn fold_constants(g: &mut BlobGraph, stats: &mut PassStats) -> Result<()> {
    let mut k = 0;
    while k < g.ops.len() {
        let op = g.ops[k].clone();
        let same_bytes = matches!(
            op.name.as_str(),
            "aten::view_copy.out"
                | "aten::_unsafe_view.out"
                | "aten::unsqueeze_copy.out"
                | "aten::squeeze_copy.dims_out"
                | "aten::squeeze_copy.dim_out"
                | "aten::squeeze_copy.out"
                | "aten::clone.out"
                | "aten::alias_copy.out"
                | "dim_order_ops::_clone_dim_order.out"
        );
        let permute =
            matches!(op.name.as_str(), "aten::permute_copy.out" | "aten::t_copy.out" | "aten::transpose_copy.int_out");
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
                    if bytes.len() != crate::tensor::nbytes(ot.dtype, &ot.sizes)? {
                        None
                    } else {
                        Some(bytes)
                    }
                } else {
                    let rank = xt.sizes.len();
                    let perm: Option<Vec<usize>> = match op.name.as_str() {
                        "aten::permute_copy.out" => op.args.get(1).and_then(|&v| int_list(g, v)).map(|p| {
                            p.iter().map(|&d| if d < 0 { (d + rank as i64) as usize } else { d as usize }).collect()
                        }),
                        "aten::t_copy.out" if rank == 2 => Some(vec![1, 0]),
                        "aten::t_copy.out" => Some((0..rank).collect()),
                        _ => match (op.args.get(1).and_then(|&v| int(g, v)), op.args.get(2).and_then(|&v| int(g, v))) {
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
                                layout::gather(&mut buf, &bytes, xt.dtype.element_size(), &sizes, &st, 0)?;
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

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn new_constant_tensor(g: &mut BlobGraph, sizes: Vec<usize>, values: &[f32]) -> usize {
    g.constants.push(f32_bytes(values));
    let c = g.constants.len() - 1;
    g.values.push(BlobValue::Tensor(BlobTensor { dtype: ScalarType::Float, sizes, constant: Some(c), alias_of: None }));
    g.values.len() - 1
}

fn fold_batch_norms(g: &mut BlobGraph, stats: &mut PassStats) -> Result<()> {
    let mut k = 0;
    while k < g.ops.len() {
        if g.ops[k].name != "aten::_native_batch_norm_legit_no_training.out" {
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
            let conv_k =
                g.ops[..k].iter().rposition(|op| op.name == "aten::convolution.out" && op_outputs(g, op) == [x])?;
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
            let eps = number(g, *bn.args.get(6)?)?;
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

fn fuse_activations(g: &mut BlobGraph, stats: &mut PassStats) {
    const PRODUCERS: &[&str] = &[
        "aten::convolution.out",
        "aten::addmm.out",
        "aten::linear.out",
        "aten::mm.out",
        "aten::bmm.out",
        "aten::add.out",
        "aten::sub.out",
        "aten::mul.out",
    ];
    let mut k = 0;
    while k < g.ops.len() {
        let act = g.ops[k].clone();
        let bounds = match act.name.as_str() {
            "aten::relu.out" => Some((0.0f32, f32::INFINITY)),
            "aten::hardtanh.out" => {
                match (act.args.get(1).and_then(|&v| number(g, v)), act.args.get(2).and_then(|&v| number(g, v))) {
                    (Some(lo), Some(hi)) if lo <= hi => Some((lo as f32, hi as f32)),
                    _ => None,
                }
            }
            "aten::clamp.out" => {
                let bound = |i: usize, default: f32| match act.args.get(i).and_then(|&v| g.values.get(v)) {
                    Some(BlobValue::None) => Some(default),
                    Some(_) => act.args.get(i).and_then(|&v| number(g, v)).map(|x| x as f32),
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
            if !PRODUCERS.contains(&prod.name.as_str()) || prod.activation.is_some() || returned_count(&prod.args) != 1
            {
                return None;
            }
            Some((p, out, lo, hi))
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

/// Whether `op` is a 1-D or 2-D convolution the NHWC kernels run: float, constant weight (and bias),
/// not transposed, a consistent geometry.
fn nhwc_convolution(g: &BlobGraph, op: &BlobOp) -> Option<(usize, usize)> {
    if op.name != "aten::convolution.out" || returned_count(&op.args) != 1 || op.args.len() < 10 {
        return None;
    }
    let (x, w, b) = (op.args[0], op.args[1], op.args[2]);
    let out = *op_outputs(g, op).first()?;
    let (xt, wt, ot) = (g.tensor(x)?, g.tensor(w)?, g.tensor(out)?);
    let rank = xt.sizes.len();
    if [xt.dtype, wt.dtype, ot.dtype].iter().any(|&d| d != ScalarType::Float)
        || !(rank == 3 || rank == 4)
        || wt.sizes.len() != rank
        || ot.sizes.len() != rank
        || wt.constant.is_none()
        || g.inputs.contains(&out)
    {
        return None;
    }
    match g.values.get(b)? {
        BlobValue::None => {}
        BlobValue::Tensor(bt) if bt.constant.is_some() && bt.dtype == ScalarType::Float => {}
        _ => return None,
    }
    if !matches!(g.values.get(op.args[6])?, BlobValue::Bool(false)) {
        return None;
    }
    conv_geometry(g, op).filter(|geo| {
        let (o, ci) = (geo.out_channels, geo.in_channels / geo.groups);
        geo.output().ok().is_some_and(|[oh, ow]| {
            if rank == 4 {
                ot.sizes == [geo.batch, o, oh, ow] && wt.sizes == [o, ci, geo.kernel[0], geo.kernel[1]]
            } else {
                ot.sizes == [geo.batch, o, ow] && wt.sizes == [o, ci, geo.kernel[1]]
            }
        })
    })?;
    Some((x, out))
}

/// The geometry of a convolution whose input is `[N, C, H, W]` or, for a 1-D convolution,
/// `[N, C, L]` (run as a 2-D one of height 1).
pub(super) fn conv_geometry_nchw(
    input: &[usize],
    weight: &[usize],
    stride: &[i64],
    padding: &[i64],
    dilation: &[i64],
    groups: i64,
) -> Option<crate::kernels::nhwc::Conv2dGeometry> {
    let one_d = input.len() == 3;
    let pair = |l: &[i64], min: i64, unit: i64| -> Option<[usize; 2]> {
        let v = match l {
            [a] if one_d => [unit, *a],
            [a] => [*a, *a],
            [a, b] if !one_d => [*a, *b],
            _ => return None,
        };
        (v[0] >= min && v[1] >= min).then(|| [v[0] as usize, v[1] as usize])
    };
    let (n, c, h, w, o, kh, kw) = match (input, weight) {
        (&[n, c, h, w], &[o, _, kh, kw]) => (n, c, h, w, o, kh, kw),
        (&[n, c, l], &[o, _, k]) => (n, c, 1, l, o, 1, k),
        _ => return None,
    };
    Some(crate::kernels::nhwc::Conv2dGeometry {
        batch: n,
        input: [h, w],
        in_channels: c,
        out_channels: o,
        kernel: [kh, kw],
        stride: pair(stride, 1, 1)?,
        padding: pair(padding, 0, 0)?,
        dilation: pair(dilation, 1, 1)?,
        groups: usize::try_from(groups).ok().filter(|&g| g >= 1)?,
    })
}

fn conv_geometry(g: &BlobGraph, op: &BlobOp) -> Option<crate::kernels::nhwc::Conv2dGeometry> {
    conv_geometry_nchw(
        &g.tensor(*op.args.first()?)?.sizes,
        &g.tensor(*op.args.get(1)?)?.sizes,
        &int_list(g, *op.args.get(3)?)?,
        &int_list(g, *op.args.get(4)?)?,
        &int_list(g, *op.args.get(5)?)?,
        int(g, *op.args.get(8)?)?,
    )
}

/// Element-wise operators that compute the same thing in any layout when every tensor operand
/// has the output's shape.
const LAYOUT_AGNOSTIC: &[&str] = &[
    "aten::add.out",
    "aten::sub.out",
    "aten::mul.out",
    "aten::div.out",
    "aten::relu.out",
    "aten::hardtanh.out",
    "aten::clamp.out",
    "aten::sigmoid.out",
    "aten::tanh.out",
    "aten::hardswish.out",
    "aten::hardsigmoid.out",
    "aten::silu.out",
    "aten::gelu.out",
    "aten::leaky_relu.out",
    "aten::elu.out",
    "aten::neg.out",
    "aten::abs.out",
    "aten::exp.out",
    "aten::sqrt.out",
    "aten::rsqrt.out",
    "aten::clone.out",
];

/// Permutations into and out of channels-last, for 4-D (NCHW) and 3-D (NCL) tensors.
fn layout_dims(to_nhwc: bool, rank: usize) -> Vec<i64> {
    match (to_nhwc, rank) {
        (true, 4) => vec![0, 2, 3, 1],
        (false, 4) => vec![0, 3, 1, 2],
        _ => vec![0, 2, 1],
    }
}

/// The channels-last pass (see the module documentation).
fn channels_last(g: &mut BlobGraph, stats: &mut PassStats) {
    if !g.ops.iter().any(|op| nhwc_convolution(g, op).is_some()) {
        return;
    }
    struct State {
        /// The NHWC twin of a value, once one exists.
        twin: Vec<Option<usize>>,
        /// Whether the value's own (NCHW) memory holds its current data.
        fresh: Vec<bool>,
        ops: Vec<BlobOp>,
        dims: [Option<usize>; 4],
        conversions: usize,
    }
    let n0 = g.values.len();
    let mut st =
        State { twin: vec![None; n0], fresh: vec![true; n0], ops: Vec::new(), dims: [None; 4], conversions: 0 };

    fn dims_value(g: &mut BlobGraph, st: &mut State, to_nhwc: bool, rank: usize) -> usize {
        let slot = usize::from(!to_nhwc) + 2 * usize::from(rank == 3);
        *st.dims[slot].get_or_insert_with(|| {
            g.values.push(BlobValue::IntList(layout_dims(to_nhwc, rank)));
            g.values.len() - 1
        })
    }
    fn new_twin(g: &mut BlobGraph, st: &mut State, v: usize) -> usize {
        let t = g.tensor(v).cloned().unwrap_or(BlobTensor {
            dtype: ScalarType::Float,
            sizes: vec![0; 4],
            constant: None,
            alias_of: None,
        });
        let sizes = match t.sizes.as_slice() {
            &[n, c, h, w] => vec![n, h, w, c],
            &[n, c, l] => vec![n, l, c],
            other => other.to_vec(),
        };
        g.values.push(BlobValue::Tensor(BlobTensor { dtype: t.dtype, sizes, constant: None, alias_of: None }));
        let tw = g.values.len() - 1;
        st.twin.resize(g.values.len(), None);
        st.fresh.resize(g.values.len(), true);
        st.twin[v] = Some(tw);
        tw
    }
    fn need_nhwc(g: &mut BlobGraph, st: &mut State, v: usize) -> usize {
        if let Some(t) = st.twin.get(v).copied().flatten() {
            return t;
        }
        let t = new_twin(g, st, v);
        let rank = g.tensor(v).map_or(4, |t| t.sizes.len());
        let d = dims_value(g, st, true, rank);
        st.ops.push(BlobOp { name: "aten::permute_copy.out".into(), args: vec![v, d, t], activation: None });
        st.conversions += 1;
        t
    }
    fn need_nchw(g: &mut BlobGraph, st: &mut State, v: usize) {
        if v >= st.fresh.len() || st.fresh[v] {
            return;
        }
        if let Some(t) = st.twin.get(v).copied().flatten() {
            let rank = g.tensor(v).map_or(4, |t| t.sizes.len());
            let d = dims_value(g, st, false, rank);
            st.ops.push(BlobOp { name: "aten::permute_copy.out".into(), args: vec![t, d, v], activation: None });
            st.conversions += 1;
        }
        st.fresh[v] = true;
    }
    let aliased = |g: &BlobGraph, v: usize| {
        g.tensor(v).is_some_and(|t| t.alias_of.is_some())
            || g.values.iter().any(|x| matches!(x, BlobValue::Tensor(t) if t.alias_of == Some(v)))
    };
    let stale = |st: &State, v: usize| v < st.fresh.len() && !st.fresh[v];

    // Values some operator reads (the pass rewrites `g.ops`, so count before).
    let mut read = vec![false; n0];
    for op in &g.ops {
        let outs = op_outputs(g, op);
        for t in op.args.iter().flat_map(|&a| tensors(g, a)).filter(|t| !outs.contains(t)) {
            read[t] = true;
        }
    }
    for op in std::mem::take(&mut g.ops) {
        let outs = op_outputs(g, &op);
        let mut inputs: Vec<usize> =
            op.args.iter().flat_map(|&a| tensors(g, a)).filter(|t| !outs.contains(t)).collect();
        inputs.sort_unstable();
        inputs.dedup();
        let rewrite = |args: &[usize], from: usize, to: usize, skip_first: bool| -> Vec<usize> {
            args.iter().enumerate().map(|(i, &a)| if a == from && !(skip_first && i == 0) { to } else { a }).collect()
        };
        // A 2-D convolution: NHWC in, NHWC out.
        if let Some((x, out)) = nhwc_convolution(g, &op) {
            let xt = need_nhwc(g, &mut st, x);
            let ot = new_twin(g, &mut st, out);
            let mut args = rewrite(&op.args, out, ot, true);
            args[0] = xt;
            st.ops.push(BlobOp { name: NHWC_CONVOLUTION.into(), args, activation: op.activation });
            st.fresh[out] = false;
            stats.channels_last_convolutions += 1;
            if aliased(g, out) {
                need_nchw(g, &mut st, out);
            }
            continue;
        }
        // Element-wise on same-shaped 4-D tensors, one of them only in NHWC: follow it.
        let out_sizes = outs.first().and_then(|&o| g.tensor(o)).map(|t| t.sizes.clone());
        if LAYOUT_AGNOSTIC.contains(&op.name.as_str())
            && outs.len() == 1
            && returned_count(&op.args) == 1
            && inputs.iter().any(|&v| stale(&st, v))
            && out_sizes.as_ref().is_some_and(|s| s.len() == 4 || s.len() == 3)
            && inputs.iter().all(|&v| g.tensor(v).map(|t| &t.sizes) == out_sizes.as_ref())
            && !g.inputs.contains(&outs[0])
        {
            let out = outs[0];
            let mut args = op.args.clone();
            for &v in &inputs {
                let t = need_nhwc(g, &mut st, v);
                args.iter_mut().take(op.args.len() - 2).filter(|a| **a == v).for_each(|a| *a = t);
            }
            let ot = new_twin(g, &mut st, out);
            let n = args.len();
            args[n - 1] = ot;
            args[n - 2] = ot;
            st.ops.push(BlobOp { name: op.name.clone(), args, activation: op.activation });
            st.fresh[out] = false;
            if aliased(g, out) {
                need_nchw(g, &mut st, out);
            }
            continue;
        }
        // Pooling of an NHWC tensor: pool in NHWC.
        if let Some((name, pool_args)) = nhwc_pool(g, &op, &read) {
            let (x, out) = (op.args[0], op.args[if name == NHWC_MAX_POOL { 6 } else { 7 }]);
            if stale(&st, x) && !g.inputs.contains(&out) {
                let xt = need_nhwc(g, &mut st, x);
                let ot = new_twin(g, &mut st, out);
                let mut args = vec![xt];
                for v in pool_args {
                    g.values.push(v);
                    args.push(g.values.len() - 1);
                }
                args.extend([ot, ot]);
                st.ops.push(BlobOp { name: name.into(), args, activation: op.activation });
                st.fresh[out] = false;
                if aliased(g, out) {
                    need_nchw(g, &mut st, out);
                }
                continue;
            }
        }
        // A spatial mean of an NHWC tensor: reduce over H and W instead.
        if op.name == "aten::mean.out" && inputs.len() == 1 && stale(&st, inputs[0]) && outs.len() == 1 {
            let x = inputs[0];
            let rank = g.tensor(x).map_or(0, |t| t.sizes.len()) as i64;
            let dims: Option<Vec<i64>> = op.args.get(1).and_then(|&d| int_list(g, d)).map(|d| {
                let mut d: Vec<i64> = d.iter().map(|&v| if v < 0 { v + rank } else { v }).collect();
                d.sort_unstable();
                d
            });
            let keepdim = matches!(op.args.get(2).and_then(|&k| g.values.get(k)), Some(BlobValue::Bool(true)));
            if rank == 4 && dims.as_deref() == Some(&[2, 3]) && op.args.len() == 6 && !aliased(g, outs[0]) {
                let out = outs[0];
                let xt = need_nhwc(g, &mut st, x);
                g.values.push(BlobValue::IntList(vec![1, 2]));
                let hw = g.values.len() - 1;
                let target = if keepdim { new_twin(g, &mut st, out) } else { out };
                let mut args = op.args.clone();
                args[0] = xt;
                args[1] = hw;
                args[4] = target;
                args[5] = target;
                st.ops.push(BlobOp { name: op.name.clone(), args, activation: op.activation });
                if keepdim {
                    st.fresh[out] = false;
                }
                continue;
            }
        }
        // Anything else reads the default layout.
        for &v in &inputs {
            need_nchw(g, &mut st, v);
        }
        st.ops.push(op);
    }
    let outputs = g.outputs.clone();
    for o in outputs {
        let root = g.tensor(o).and_then(|t| t.alias_of).unwrap_or(o);
        need_nchw(g, &mut st, o);
        need_nchw(g, &mut st, root);
    }
    g.ops = st.ops;
    stats.layout_conversions += st.conversions;
}

/// The backend pooling operator for a 2-D `max_pool2d_with_indices` (indices unread) or
/// `avg_pool2d` of a 4-D float tensor, and its arguments after the input (see
/// [`NHWC_MAX_POOL`]), lists normalised to two entries.
fn nhwc_pool(g: &BlobGraph, op: &BlobOp, read: &[bool]) -> Option<(&'static str, Vec<BlobValue>)> {
    let max = match op.name.as_str() {
        "aten::max_pool2d_with_indices.out" if op.args.len() >= 8 => true,
        "aten::avg_pool2d.out" if op.args.len() >= 8 => false,
        _ => return None,
    };
    let a = &op.args;
    let x = g.tensor(a[0])?;
    if x.dtype != ScalarType::Float || x.sizes.len() != 4 {
        return None;
    }
    if max {
        let indices = a[7];
        if read.get(indices).copied().unwrap_or(true) || is_output(g, indices) {
            return None;
        }
    }
    let pair = |v: usize, default: Option<[i64; 2]>| -> Option<[i64; 2]> {
        match int_list(g, v)?.as_slice() {
            [] => default,
            &[k] => Some([k, k]),
            &[h, w] => Some([h, w]),
            _ => None,
        }
    };
    let kernel = pair(a[1], None)?;
    let stride = pair(a[2], Some(kernel))?;
    let padding = pair(a[3], Some([0, 0]))?;
    let dilation = if max { pair(a[4], Some([1, 1]))? } else { [1, 1] };
    // Only what the backend's kernel accepts at init.
    let out = g.tensor(a[if max { 6 } else { 7 }]).filter(|t| t.dtype == ScalarType::Float)?;
    let nhwc = |s: &[usize]| match *s {
        [n, c, h, w] => Some([n, h, w, c]),
        _ => None,
    };
    let u = |p: [i64; 2]| Some([usize::try_from(p[0]).ok()?, usize::try_from(p[1]).ok()?]);
    super::rows::pool_geometry(
        &nhwc(&x.sizes)?,
        &nhwc(&out.sizes)?,
        u(kernel)?,
        u(stride)?,
        u(padding)?,
        u(dilation)?,
    )?;
    let list = |p: [i64; 2]| BlobValue::IntList(p.to_vec());
    let mut args = vec![list(kernel), list(stride), list(padding), list(dilation)];
    if max {
        args.extend([BlobValue::Bool(false), BlobValue::None]);
        Some((NHWC_MAX_POOL, args))
    } else {
        let include_pad = match g.values.get(a[5])? {
            BlobValue::Bool(b) => *b,
            _ => return None,
        };
        let divisor = match g.values.get(a[6])? {
            BlobValue::None => BlobValue::None,
            BlobValue::Int(d) if *d != 0 => BlobValue::Int(*d),
            _ => return None,
        };
        args.extend([BlobValue::Bool(include_pad), divisor]);
        Some((NHWC_AVG_POOL, args))
    }
}

/// A float tensor's constant values, when it is a constant.
fn constant_f32(g: &BlobGraph, v: usize) -> Option<Vec<f32>> {
    let t = g.tensor(v)?;
    (t.dtype == ScalarType::Float).then_some(())?;
    constant_bytes(g, v).map(f32s)
}

/// What a dense layer is made of: input, weight values `[K, N]`, `[K, N]`, bias value.
type DenseParts = (usize, Vec<f32>, [usize; 2], Option<usize>);

/// The dense-layer pass (see the module documentation).
fn dense_layers(g: &mut BlobGraph, stats: &mut PassStats) {
    for k in 0..g.ops.len() {
        let op = g.ops[k].clone();
        if returned_count(&op.args) != 1 {
            continue;
        }
        let outs = op_outputs(g, &op);
        let [out] = outs.as_slice() else { continue };
        let is_float = |v: usize| g.tensor(v).is_some_and(|t| t.dtype == ScalarType::Float && t.constant.is_none());
        let rewrite: Option<DenseParts> = (|| match op.name.as_str() {
            "aten::linear.out" if op.args.len() == 5 => {
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
            "aten::addmm.out" if op.args.len() == 7 => {
                let (b, x, w) = (op.args[0], op.args[1], op.args[2]);
                let one = |v: usize| number(g, v) == Some(1.0);
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
            "aten::mm.out" if op.args.len() == 4 => {
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
        g.ops[k] = BlobOp { name: DENSE.into(), args: vec![x, w, b, *out, *out], activation: op.activation };
        stats.dense_layers += 1;
    }
}

fn elide_reshapes(g: &mut BlobGraph, stats: &mut PassStats) {
    let mut k = 0;
    while k < g.ops.len() {
        let op = g.ops[k].clone();
        let reshape = matches!(
            op.name.as_str(),
            "aten::view_copy.out"
                | "aten::_unsafe_view.out"
                | "aten::unsqueeze_copy.out"
                | "aten::squeeze_copy.dims_out"
                | "aten::squeeze_copy.dim_out"
                | "aten::squeeze_copy.out"
        );
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

fn remove_dead_ops(g: &mut BlobGraph, stats: &mut PassStats) {
    loop {
        let dead = (0..g.ops.len()).rev().find(|&k| {
            let outs = op_outputs(g, &g.ops[k]);
            !outs.is_empty()
                && outs.iter().all(|&o| {
                    readers(g, o, Some(k)) == 0
                        && !is_output(g, o)
                        && !g.values.iter().enumerate().any(|(v, val)| {
                            matches!(val, BlobValue::Tensor(t) if t.alias_of == Some(o))
                                && (is_output(g, v) || readers(g, v, None) > 0)
                        })
                })
        });
        match dead {
            Some(k) => {
                g.ops.remove(k);
                stats.dead_ops_removed += 1;
            }
            None => break,
        }
    }
}

/// Drops values and constants nothing refers to, renumbering the rest.
fn compact(g: &mut BlobGraph) {
    let n = g.values.len();
    let mut used = vec![false; n];
    let mut stack: Vec<usize> = g.inputs.iter().chain(&g.outputs).copied().collect();
    for op in &g.ops {
        stack.extend(op.args.iter().copied());
    }
    while let Some(v) = stack.pop() {
        if v >= n || used[v] {
            continue;
        }
        used[v] = true;
        match &g.values[v] {
            BlobValue::Tensor(t) => stack.extend(t.alias_of),
            BlobValue::TensorList(items) => stack.extend(items.iter().copied()),
            BlobValue::OptionalTensorList(items) => stack.extend(items.iter().flatten().copied()),
            _ => {}
        }
    }
    let mut remap = vec![usize::MAX; n];
    let mut values = Vec::new();
    for (v, val) in g.values.iter().enumerate() {
        if used[v] {
            remap[v] = values.len();
            values.push(val.clone());
        }
    }
    let mut const_remap = vec![usize::MAX; g.constants.len()];
    let mut constants = Vec::new();
    for val in &mut values {
        match val {
            BlobValue::Tensor(t) => {
                t.alias_of = t.alias_of.map(|a| remap[a]);
                if let Some(c) = t.constant {
                    if const_remap[c] == usize::MAX {
                        const_remap[c] = constants.len();
                        constants.push(std::mem::take(&mut g.constants[c]));
                    }
                    t.constant = Some(const_remap[c]);
                }
            }
            BlobValue::TensorList(items) => items.iter_mut().for_each(|i| *i = remap[*i]),
            BlobValue::OptionalTensorList(items) => items.iter_mut().flatten().for_each(|i| *i = remap[*i]),
            _ => {}
        }
    }
    for op in &mut g.ops {
        op.args.iter_mut().for_each(|a| *a = remap[*a]);
    }
    g.inputs.iter_mut().for_each(|a| *a = remap[*a]);
    g.outputs.iter_mut().for_each(|a| *a = remap[*a]);
    g.values = values;
    g.constants = constants;
}
