//! **Channels-last**: convolutions the backend's NHWC kernels run become
//! [`Op::FerriteConvolutionNhwc`] on channels-last tensors; layout-agnostic element-wise operators
//! ([`Op::is_layout_agnostic`]), 2-D pooling and spatial means follow them into NHWC, and
//! `permute_copy` converts only at the edges of those chains.

use ferrite_blob::{returned_count, BlobGraph, BlobOp, BlobTensor, BlobValue, DebugValue};
use ferrite_kernels::nhwc::Conv2dGeometry;
use ferrite_kernels::simd::Window;
use ferrite_op_support::Op;
use ferrite_program::ScalarType;

use crate::graph::{is_output, op_outputs};
use crate::PassStats;

/// Whether `op` is a 1-D or 2-D convolution the NHWC kernels run: float, constant weight (and bias),
/// not transposed, a consistent geometry; with `float` false, only the int8 convolutions the
/// quantized pass wrote (still on NCHW tensors).
fn nhwc_convolution(g: &BlobGraph, op: &BlobOp, float: bool) -> Option<(usize, usize)> {
    if op.op == Op::FerriteQuantizedConvolutionNhwc {
        return quantized_convolution(g, op);
    }
    if !float || op.op != Op::Convolution || returned_count(&op.args) != 1 || op.args.len() < 10 {
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

/// An int8 convolution from the quantized pass, input and output still NCHW (`[N, C, H, W]` or
/// `[N, C, L]`).
fn quantized_convolution(g: &BlobGraph, op: &BlobOp) -> Option<(usize, usize)> {
    let (x, out) = (*op.args.first()?, *op.args.last()?);
    let (xt, wt, ot) = (g.tensor(x)?, g.tensor(*op.args.get(1)?)?, g.tensor(out)?);
    let rank = xt.sizes.len();
    if op.args.len() != 13 || !(rank == 3 || rank == 4) || ot.sizes.len() != rank || g.inputs.contains(&out) {
        return None;
    }
    let geo = conv_geometry(g, op)?;
    let [oh, ow] = geo.output().ok()?;
    let expected =
        if rank == 4 { vec![geo.batch, geo.out_channels, oh, ow] } else { vec![geo.batch, geo.out_channels, ow] };
    (ot.sizes == expected && wt.sizes[0] == geo.out_channels).then_some((x, out))
}

fn conv_geometry(g: &BlobGraph, op: &BlobOp) -> Option<Conv2dGeometry> {
    Conv2dGeometry::from_nchw(
        &g.tensor(*op.args.first()?)?.sizes,
        &g.tensor(*op.args.get(1)?)?.sizes,
        &g.int_list(*op.args.get(3)?)?,
        &g.int_list(*op.args.get(4)?)?,
        &g.int_list(*op.args.get(5)?)?,
        g.int(*op.args.get(8)?)?,
    )
}

/// Permutations into and out of channels-last, for 4-D (NCHW) and 3-D (NCL) tensors.
fn layout_dims(to_nhwc: bool, rank: usize) -> Vec<i64> {
    match (to_nhwc, rank) {
        (true, 4) => vec![0, 2, 3, 1],
        (false, 4) => vec![0, 3, 1, 2],
        _ => vec![0, 2, 1],
    }
}

/// The channels-last pass (see the module documentation). With `float` false (methods that
/// requantize), only int8 convolutions start NHWC chains.
pub(crate) fn channels_last(g: &mut BlobGraph, stats: &mut PassStats, float: bool) {
    if !g.ops.iter().any(|op| nhwc_convolution(g, op, float).is_some()) {
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
            dynamic: false,
        });
        let sizes = match t.sizes.as_slice() {
            &[n, c, h, w] => vec![n, h, w, c],
            &[n, c, l] => vec![n, l, c],
            other => other.to_vec(),
        };
        g.values.push(BlobValue::Tensor(BlobTensor {
            dtype: t.dtype,
            sizes,
            constant: None,
            alias_of: None,
            dynamic: t.dynamic,
        }));
        let tw = g.values.len() - 1;
        // The twin holds `v`'s data channels-last: the same origin, for numerical debugging.
        if let Some(origin) = g.debug.iter().find(|d| d.value == v && !d.channels_last).map(|d| d.origin) {
            g.debug.push(DebugValue { value: tw, origin, channels_last: true });
        }
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
        st.ops.push(BlobOp { op: Op::PermuteCopy, args: vec![v, d, t], activation: None });
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
            st.ops.push(BlobOp { op: Op::PermuteCopy, args: vec![t, d, v], activation: None });
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
        for t in op.args.iter().flat_map(|&a| g.tensors_in(a)).filter(|t| !outs.contains(t)) {
            read[t] = true;
        }
    }
    for op in std::mem::take(&mut g.ops) {
        let outs = op_outputs(g, &op);
        let mut inputs: Vec<usize> =
            op.args.iter().flat_map(|&a| g.tensors_in(a)).filter(|t| !outs.contains(t)).collect();
        inputs.sort_unstable();
        inputs.dedup();
        // Operators on dynamic shapes keep the default layout: the NHWC kernels are planned for
        // one shape.
        if g.touches_dynamic(&op) {
            for &v in &inputs {
                need_nchw(g, &mut st, v);
            }
            st.ops.push(op);
            continue;
        }
        let rewrite = |args: &[usize], from: usize, to: usize, skip_first: bool| -> Vec<usize> {
            args.iter().enumerate().map(|(i, &a)| if a == from && !(skip_first && i == 0) { to } else { a }).collect()
        };
        // A 2-D convolution: NHWC in, NHWC out.
        if let Some((x, out)) = nhwc_convolution(g, &op, float) {
            let xt = need_nhwc(g, &mut st, x);
            let ot = new_twin(g, &mut st, out);
            let mut args = rewrite(&op.args, out, ot, true);
            args[0] = xt;
            let name = if op.op == Op::Convolution { Op::FerriteConvolutionNhwc } else { op.op };
            st.ops.push(BlobOp { op: name, args, activation: op.activation });
            st.fresh[out] = false;
            stats.channels_last_convolutions += 1;
            if aliased(g, out) {
                need_nchw(g, &mut st, out);
            }
            continue;
        }
        // Element-wise on 4-D (or 3-D) tensors, one of them only in NHWC: follow it. The other
        // inputs have the output's shape or broadcast to it (a squeeze-excitation block's
        // `[N, C, 1, 1]` scale: permuted too) or hold one element (hard-swish's `+ 3`: read as
        // they are, any layout).
        let out_sizes = outs.first().and_then(|&o| g.tensor(o)).map(|t| t.sizes.clone());
        let operand = |v: usize| -> Option<bool> {
            let (s, out) = (&g.tensor(v)?.sizes, out_sizes.as_ref()?);
            if s.iter().all(|&d| d == 1) && s.len() <= out.len() {
                Some(false) // one element: no conversion
            } else if s.len() == out.len() && s.iter().zip(out).all(|(&a, &b)| a == b || a == 1) {
                Some(true)
            } else {
                None
            }
        };
        let operands: Vec<Option<bool>> = inputs.iter().map(|&v| operand(v)).collect();
        if op.op.is_layout_agnostic()
            && outs.len() == 1
            && returned_count(&op.args) == 1
            && inputs.iter().any(|&v| stale(&st, v))
            && out_sizes.as_ref().is_some_and(|s| s.len() == 4 || s.len() == 3)
            && operands.iter().all(Option::is_some)
            && !g.inputs.contains(&outs[0])
        {
            let out = outs[0];
            let mut args = op.args.clone();
            for (&v, &permuted) in inputs.iter().zip(&operands) {
                if permuted == Some(false) && !stale(&st, v) {
                    continue;
                }
                let t = need_nhwc(g, &mut st, v);
                args.iter_mut().take(op.args.len() - 2).filter(|a| **a == v).for_each(|a| *a = t);
            }
            let ot = new_twin(g, &mut st, out);
            let n = args.len();
            args[n - 1] = ot;
            args[n - 2] = ot;
            st.ops.push(BlobOp { op: op.op, args, activation: op.activation });
            st.fresh[out] = false;
            if aliased(g, out) {
                need_nchw(g, &mut st, out);
            }
            continue;
        }
        // Pooling of an NHWC tensor: pool in NHWC.
        if let Some((name, pool_args)) = nhwc_pool(g, &op, &read) {
            let (x, out) = (op.args[0], op.args[if name == Op::FerriteMaxPool2dNhwc { 6 } else { 7 }]);
            if stale(&st, x) && !g.inputs.contains(&out) {
                let xt = need_nhwc(g, &mut st, x);
                let ot = new_twin(g, &mut st, out);
                let mut args = vec![xt];
                for v in pool_args {
                    g.values.push(v);
                    args.push(g.values.len() - 1);
                }
                args.extend([ot, ot]);
                st.ops.push(BlobOp { op: name, args, activation: op.activation });
                st.fresh[out] = false;
                if aliased(g, out) {
                    need_nchw(g, &mut st, out);
                }
                continue;
            }
        }
        // A spatial mean of an NHWC tensor: reduce over H and W instead.
        if op.op == Op::Mean && inputs.len() == 1 && stale(&st, inputs[0]) && outs.len() == 1 {
            let x = inputs[0];
            let rank = g.tensor(x).map_or(0, |t| t.sizes.len()) as i64;
            let dims: Option<Vec<i64>> = op.args.get(1).and_then(|&d| g.int_list(d)).map(|d| {
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
                st.ops.push(BlobOp { op: op.op, args, activation: op.activation });
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
/// [`Op::FerriteMaxPool2dNhwc`]), lists normalised to two entries.
fn nhwc_pool(g: &BlobGraph, op: &BlobOp, read: &[bool]) -> Option<(Op, Vec<BlobValue>)> {
    let max = match op.op {
        Op::MaxPool2dWithIndices if op.args.len() >= 8 => true,
        Op::AvgPool2d if op.args.len() >= 8 => false,
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
        match g.int_list(v)?.as_slice() {
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
    Window::pooling(&nhwc(&x.sizes)?, &nhwc(&out.sizes)?, u(kernel)?, u(stride)?, u(padding)?, u(dilation)?)?;
    let list = |p: [i64; 2]| BlobValue::IntList(p.to_vec());
    let mut args = vec![list(kernel), list(stride), list(padding), list(dilation)];
    if max {
        args.extend([BlobValue::Bool(false), BlobValue::None]);
        Some((Op::FerriteMaxPool2dNhwc, args))
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
        Some((Op::FerriteAvgPool2dNhwc, args))
    }
}
