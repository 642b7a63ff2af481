//! Views and copies: reshape, permute, expand, slice, select, split, cat, stack, squeeze,
//! unsqueeze, clone, dtype and dim-order conversion, constant fills, arange and constant padding.
//!
//! Pure data movement goes through [`layout::gather`] on raw bytes, so every dtype is handled by
//! the same code.

use super::{arg, el, infer_sizes, norm_dim};
use crate::env::{Env, Scalar};
use crate::error::{Result, RuntimeError};
use crate::registry::KernelRegistry;
use crate::tensor::{TensorMut, TensorRef};
use ferrite_kernels::{contiguous_strides, layout, Element};
use ferrite_op_support::Op;
use ferrite_program::ScalarType;

pub(super) fn register(r: &mut KernelRegistry) {
    reg!(r, Op::ViewCopy, view_copy);
    reg!(r, Op::UnsafeView, view_copy);
    reg!(r, Op::ReshapeCopy, view_copy);
    reg!(r, Op::AliasCopy, |e, a| convert_into(e, arg(a, 0)?, arg(a, 1)?));
    reg!(r, Op::Clone, clone);
    reg!(r, Op::ToCopy, to_copy);
    reg!(r, Op::CloneDimOrder, to_dim_order_copy);
    reg!(r, Op::ToDimOrderCopy, to_dim_order_copy);
    reg!(r, Op::Copy, copy_out);
    reg!(r, Op::CopyDefault, copy_inplace);
    reg!(r, Op::UnsqueezeCopy, unsqueeze_copy);
    reg!(r, Op::SqueezeCopyDims, squeeze_copy_dims);
    reg!(r, Op::SqueezeCopyDim, squeeze_copy_dims);
    reg!(r, Op::SqueezeCopy, squeeze_copy_all);
    reg!(r, Op::PermuteCopy, permute_copy);
    reg!(r, Op::TransposeCopyInt, transpose_copy);
    reg!(r, Op::TCopy, t_copy);
    reg!(r, Op::ExpandCopy, expand_copy);
    reg!(r, Op::SelectCopyInt, select_copy);
    reg!(r, Op::SliceCopyTensor, slice_copy);
    reg!(r, Op::NarrowCopy, narrow_copy);
    reg!(r, Op::SplitWithSizesCopy, split_with_sizes_copy);
    reg!(r, Op::SplitCopyTensor, split_copy);
    reg!(r, Op::UnbindCopyInt, unbind_copy);
    reg!(r, Op::Cat, cat);
    reg!(r, Op::Concat, cat);
    reg!(r, Op::Stack, stack);
    reg!(r, Op::Repeat, repeat);
    reg!(r, Op::Full, full);
    reg!(r, Op::FullLike, full_like);
    reg!(r, Op::Zeros, |e, a| fill_new(e, a, 1, Scalar::Int(0)));
    reg!(r, Op::Ones, |e, a| fill_new(e, a, 1, Scalar::Int(1)));
    reg!(r, Op::ZerosLike, |e, a| fill_like(e, arg(a, 0)?, arg(a, 2)?, Scalar::Int(0)));
    reg!(r, Op::OnesLike, |e, a| fill_like(e, arg(a, 0)?, arg(a, 2)?, Scalar::Int(1)));
    reg!(r, Op::FillScalar, |e, a| {
        let v = e.scalar(arg(a, 1)?)?;
        fill_like(e, arg(a, 0)?, arg(a, 2)?, v)
    });
    reg!(r, Op::ScalarTensor, scalar_tensor);
    reg!(r, Op::Arange, arange_end);
    reg!(r, Op::ArangeStart, arange_start);
    reg!(r, Op::ConstantPadNd, constant_pad_nd);
    reg!(r, Op::Flip, flip);
}

fn elem_size(dtype: ScalarType) -> usize {
    dtype.element_size()
}

/// Resizes `out` to `sizes` and fills it with a strided view of `src`.
fn gather_into(
    env: &mut Env<'_>,
    src: usize,
    out: usize,
    sizes: &[usize],
    strides: &[usize],
    offset: usize,
) -> Result<()> {
    let (sd, od) = (env.dtype(src)?, env.dtype(out)?);
    if sd != od {
        return Err(RuntimeError::Invalid(format!("input is {sd} but the output is {od}")));
    }
    env.resize(out, sizes)?;
    env.run(&[src], &[out], |ins, outs| {
        Ok(layout::gather(outs[0].data, ins[0].data, elem_size(sd), sizes, strides, offset)?)
    })
}

fn view_copy(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (src, out) = (arg(args, 0)?, arg(args, 2)?);
    let numel = crate::tensor::numel(env.sizes(src)?)?;
    let sizes = infer_sizes(&env.int_list(arg(args, 1)?)?, numel)?;
    copy_same(env, src, out, &sizes)
}

/// Contiguous copy of `src` into `out` reshaped as `sizes`.
fn copy_same(env: &mut Env<'_>, src: usize, out: usize, sizes: &[usize]) -> Result<()> {
    if crate::tensor::numel(sizes)? != crate::tensor::numel(env.sizes(src)?)? {
        return Err(RuntimeError::Invalid(format!("cannot reshape {:?} to {sizes:?}", env.sizes(src)?)));
    }
    let (sd, od) = (env.dtype(src)?, env.dtype(out)?);
    if sd != od {
        return Err(RuntimeError::Invalid(format!("input is {sd} but the output is {od}")));
    }
    env.resize(out, sizes)?;
    env.run(&[src], &[out], |ins, outs| {
        outs[0].data.copy_from_slice(ins[0].data);
        Ok(())
    })
}

fn clone(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    convert_into(env, arg(args, 0)?, arg(args, 2)?)
}

fn to_copy(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    convert_into(env, arg(args, 0)?, arg(args, 3)?)
}

fn to_dim_order_copy(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    convert_into(env, arg(args, 0)?, arg(args, 3)?)
}

/// Copies `src` into `out`, converting dtype and dim order to the output's.
fn convert_into(env: &mut Env<'_>, src: usize, out: usize) -> Result<()> {
    let sizes = env.sizes(src)?.to_vec();
    env.resize(out, &sizes)?;
    env.run_any_layout(&[src], &[out], |ins, outs| convert(&ins[0], &mut outs[0]))
}

/// Dtype and dim-order conversion of one tensor into another of the same logical sizes.
pub(crate) fn convert(src: &TensorRef<'_>, dst: &mut TensorMut<'_>) -> Result<()> {
    let sizes = src.sizes;
    // Put the source in the destination's memory order first (bytes, any dtype).
    let reordered;
    let bytes: &[u8] = if layout::is_contiguous_order(src.dim_order) && layout::is_contiguous_order(dst.dim_order)
        || src.dim_order == dst.dim_order
    {
        src.data
    } else {
        let src_strides = layout::strides_for_dim_order(sizes, src.dim_order)?;
        let order: Vec<usize> = if dst.dim_order.is_empty() {
            (0..sizes.len()).collect()
        } else {
            dst.dim_order.iter().map(|&d| d as usize).collect()
        };
        let phys_sizes: Vec<usize> = order.iter().map(|&d| sizes[d]).collect();
        let phys_strides: Vec<usize> = order.iter().map(|&d| src_strides[d]).collect();
        let mut buf = vec![0u8; src.data.len()];
        layout::gather(&mut buf, src.data, elem_size(src.dtype), &phys_sizes, &phys_strides, 0)?;
        reordered = buf;
        &reordered
    };
    if src.dtype == dst.dtype {
        dst.data.copy_from_slice(bytes);
        return Ok(());
    }
    let view = TensorRef { dtype: src.dtype, sizes: src.sizes, dim_order: dst.dim_order, data: bytes };
    cast(&view, dst)
}

/// Element-wise dtype conversion with PyTorch's semantics (float to int truncates toward zero,
/// anything to bool is `!= 0`).
pub(crate) fn cast(src: &TensorRef<'_>, dst: &mut TensorMut<'_>) -> Result<()> {
    let (sd, dd) = (src.dtype, dst.dtype);
    if dd == ScalarType::Bool {
        let out = dst.typed::<u8>()?;
        ferrite_kernels::dispatch!(all el(sd)?, S => {
            for (o, &v) in out.iter_mut().zip(src.typed::<S>()?) {
                *o = u8::from(v.to_f64() != 0.0);
            }
        }, else other => return Err(super::unsupported(other)));
        return Ok(());
    }
    ferrite_kernels::dispatch!(all el(dd)?, D => {
        let out = dst.typed::<D>()?;
        ferrite_kernels::dispatch!(all el(sd)?, S => {
            let input = src.typed::<S>()?;
            if out.len() != input.len() {
                return Err(RuntimeError::Invalid("cast: length mismatch".into()));
            }
            for (o, &v) in out.iter_mut().zip(input) {
                *o = <D as Element>::from_f64(v.to_f64());
            }
        }, else other => return Err(super::unsupported(other)));
    }, else other => return Err(super::unsupported(other)));
    Ok(())
}

fn copy_out(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    copy_broadcast(env, arg(args, 0)?, arg(args, 1)?, arg(args, 3)?)
}

/// `copy_(self, src)`: writes `src` (broadcast) into `self`.
fn copy_inplace(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (dst, src) = (arg(args, 0)?, arg(args, 1)?);
    copy_broadcast(env, dst, src, dst)?;
    if let Some(&ret) = args.get(3) {
        if ret != dst && env.is_tensor(ret)? {
            env.alias(dst, ret)?;
        }
    }
    Ok(())
}

fn copy_broadcast(env: &mut Env<'_>, shape_of: usize, src: usize, out: usize) -> Result<()> {
    let sizes = env.sizes(shape_of)?.to_vec();
    let strides = broadcast_strides(env.sizes(src)?, &sizes)?;
    let (sd, od) = (env.dtype(src)?, env.dtype(out)?);
    env.resize(out, &sizes)?;
    if sd == od {
        return env.run(&[src], &[out], |ins, outs| {
            Ok(layout::gather(outs[0].data, ins[0].data, elem_size(sd), &sizes, &strides, 0)?)
        });
    }
    env.run(&[src], &[out], |ins, outs| {
        let mut buf = vec![0u8; crate::tensor::nbytes(sd, &sizes)?];
        layout::gather(&mut buf, ins[0].data, elem_size(sd), &sizes, &strides, 0)?;
        cast(&TensorRef { dtype: sd, sizes: &sizes, dim_order: &[], data: &buf }, &mut outs[0])
    })
}

/// Strides that broadcast a tensor of `from` sizes to `to` sizes (0 where broadcast).
pub(crate) fn broadcast_strides(from: &[usize], to: &[usize]) -> Result<Vec<usize>> {
    if from.len() > to.len() {
        return Err(RuntimeError::Invalid(format!("cannot broadcast {from:?} to {to:?}")));
    }
    let src_strides = contiguous_strides(from);
    let lead = to.len() - from.len();
    let mut out = vec![0usize; to.len()];
    for (i, &t) in to.iter().enumerate().skip(lead) {
        let f = from[i - lead];
        if f == t {
            out[i] = if f == 1 { 0 } else { src_strides[i - lead] };
        } else if f == 1 {
            out[i] = 0;
        } else {
            return Err(RuntimeError::Invalid(format!("cannot broadcast {from:?} to {to:?}")));
        }
    }
    Ok(out)
}

fn unsqueeze_copy(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (src, out) = (arg(args, 0)?, arg(args, 2)?);
    let mut sizes = env.sizes(src)?.to_vec();
    let d = norm_dim(env.int(arg(args, 1)?)?, sizes.len() + 1)?;
    sizes.insert(d, 1);
    copy_same(env, src, out, &sizes)
}

fn squeeze_copy_dims(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (src, out) = (arg(args, 0)?, arg(args, 2)?);
    let sizes = env.sizes(src)?.to_vec();
    let dims = env.int_list(arg(args, 1)?)?;
    let mut drop = vec![false; sizes.len()];
    for d in dims {
        let d = norm_dim(d, sizes.len())?;
        if sizes.get(d) == Some(&1) {
            drop[d] = true;
        }
    }
    let kept: Vec<usize> = sizes.iter().zip(&drop).filter(|(_, &x)| !x).map(|(&s, _)| s).collect();
    copy_same(env, src, out, &kept)
}

fn squeeze_copy_all(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (src, out) = (arg(args, 0)?, arg(args, 1)?);
    let kept: Vec<usize> = env.sizes(src)?.iter().copied().filter(|&s| s != 1).collect();
    copy_same(env, src, out, &kept)
}

fn permute_with(env: &mut Env<'_>, src: usize, out: usize, perm: &[usize]) -> Result<()> {
    let sizes = env.sizes(src)?.to_vec();
    let mut seen = vec![false; sizes.len()];
    if perm.len() != sizes.len() || perm.iter().any(|&p| p >= sizes.len() || std::mem::replace(&mut seen[p], true)) {
        return Err(RuntimeError::Invalid(format!("{perm:?} is not a permutation of {} dimensions", sizes.len())));
    }
    let strides = contiguous_strides(&sizes);
    let out_sizes: Vec<usize> = perm.iter().map(|&p| sizes[p]).collect();
    let out_strides: Vec<usize> = perm.iter().map(|&p| strides[p]).collect();
    gather_into(env, src, out, &out_sizes, &out_strides, 0)
}

fn permute_copy(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (src, out) = (arg(args, 0)?, arg(args, 2)?);
    let rank = env.sizes(src)?.len();
    let perm = env.int_list(arg(args, 1)?)?.into_iter().map(|d| norm_dim(d, rank)).collect::<Result<Vec<_>>>()?;
    permute_with(env, src, out, &perm)
}

fn transpose_copy(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (src, out) = (arg(args, 0)?, arg(args, 3)?);
    let rank = env.sizes(src)?.len();
    let (a, b) = (norm_dim(env.int(arg(args, 1)?)?, rank)?, norm_dim(env.int(arg(args, 2)?)?, rank)?);
    let mut perm: Vec<usize> = (0..rank).collect();
    if rank > 0 {
        perm.swap(a, b);
    }
    permute_with(env, src, out, &perm)
}

fn t_copy(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (src, out) = (arg(args, 0)?, arg(args, 1)?);
    let rank = env.sizes(src)?.len();
    let perm: Vec<usize> = if rank == 2 { vec![1, 0] } else { (0..rank).collect() };
    permute_with(env, src, out, &perm)
}

fn expand_copy(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (src, out) = (arg(args, 0)?, arg(args, 3)?);
    let from = env.sizes(src)?.to_vec();
    let want = env.int_list(arg(args, 1)?)?;
    if want.len() < from.len() {
        return Err(RuntimeError::Invalid(format!("expand: {want:?} has fewer dimensions than {from:?}")));
    }
    let lead = want.len() - from.len();
    let mut sizes = Vec::with_capacity(want.len());
    for (i, &w) in want.iter().enumerate() {
        let s = if w == -1 {
            *from
                .get(i.wrapping_sub(lead))
                .filter(|_| i >= lead)
                .ok_or_else(|| RuntimeError::Invalid("expand: -1 in a new dimension".into()))?
        } else {
            usize::try_from(w).map_err(|_| RuntimeError::Invalid(format!("expand: invalid size {w}")))?
        };
        sizes.push(s);
    }
    let strides = broadcast_strides(&from, &sizes)?;
    gather_into(env, src, out, &sizes, &strides, 0)
}

fn repeat(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (src, out) = (arg(args, 0)?, arg(args, 2)?);
    let from = env.sizes(src)?.to_vec();
    let reps: Vec<usize> = env
        .int_list(arg(args, 1)?)?
        .into_iter()
        .map(|r| usize::try_from(r).map_err(|_| RuntimeError::Invalid(format!("repeat: invalid count {r}"))))
        .collect::<Result<_>>()?;
    if reps.len() < from.len() {
        return Err(RuntimeError::Invalid(format!("repeat: {reps:?} has fewer dimensions than {from:?}")));
    }
    let lead = reps.len() - from.len();
    let padded: Vec<usize> = std::iter::repeat_n(1, lead).chain(from.iter().copied()).collect();
    let strides = contiguous_strides(&padded);
    // View as [r0, s0, r1, s1, ...] with stride 0 on the repeat axes.
    let mut vs = Vec::new();
    let mut vst = Vec::new();
    for i in 0..reps.len() {
        vs.extend([reps[i], padded[i]]);
        vst.extend([0, strides[i]]);
    }
    let out_sizes: Vec<usize> = reps.iter().zip(&padded).map(|(r, s)| r * s).collect();
    let dtype = env.dtype(src)?;
    env.resize(out, &out_sizes)?;
    env.run(&[src], &[out], |ins, outs| Ok(layout::gather(outs[0].data, ins[0].data, elem_size(dtype), &vs, &vst, 0)?))
}

/// `(start, length, step)` of a slice along a dimension of size `n`, as PyTorch clamps it.
fn slice_range(n: usize, start: Option<i64>, end: Option<i64>, step: i64) -> Result<(usize, usize, usize)> {
    if step <= 0 {
        return Err(RuntimeError::Invalid(format!("slice step must be positive, got {step}")));
    }
    let n = n as i64;
    let clamp = |v: i64| {
        let v = if v < 0 { v + n } else { v };
        v.clamp(0, n)
    };
    let s = clamp(start.unwrap_or(0));
    let e = clamp(end.unwrap_or(n)).max(s);
    let len = (e - s + step - 1) / step;
    Ok((s as usize, len as usize, step as usize))
}

fn slice_along(
    env: &mut Env<'_>,
    src: usize,
    out: usize,
    dim: usize,
    start: usize,
    len: usize,
    step: usize,
) -> Result<()> {
    let sizes = env.sizes(src)?.to_vec();
    let strides = contiguous_strides(&sizes);
    let mut vs = sizes.clone();
    let mut vst = strides.clone();
    vs[dim] = len;
    vst[dim] = strides[dim] * step;
    gather_into(env, src, out, &vs, &vst, start * strides[dim])
}

fn slice_copy(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (src, out) = (arg(args, 0)?, arg(args, 5)?);
    let rank = env.sizes(src)?.len();
    let dim = norm_dim(env.int(arg(args, 1)?)?, rank)?;
    let n = env.sizes(src)?.get(dim).copied().unwrap_or(1);
    let (s, len, step) =
        slice_range(n, env.opt_int(arg(args, 2)?)?, env.opt_int(arg(args, 3)?)?, env.int(arg(args, 4)?)?)?;
    slice_along(env, src, out, dim, s, len, step)
}

fn narrow_copy(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (src, out) = (arg(args, 0)?, arg(args, 4)?);
    let rank = env.sizes(src)?.len();
    let dim = norm_dim(env.int(arg(args, 1)?)?, rank)?;
    let n = env.sizes(src)?.get(dim).copied().unwrap_or(1);
    let start = env.int(arg(args, 2)?)?;
    let start = if start < 0 { start + n as i64 } else { start };
    let len = env.int(arg(args, 3)?)?;
    if start < 0 || len < 0 || start + len > n as i64 {
        return Err(RuntimeError::Invalid(format!("narrow: start {start} length {len} outside a dimension of {n}")));
    }
    slice_along(env, src, out, dim, start as usize, len as usize, 1)
}

fn select_copy(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (src, out) = (arg(args, 0)?, arg(args, 3)?);
    let sizes = env.sizes(src)?.to_vec();
    let dim = norm_dim(env.int(arg(args, 1)?)?, sizes.len())?;
    let n = sizes.get(dim).copied().unwrap_or(1) as i64;
    let idx = env.int(arg(args, 2)?)?;
    let i = if idx < 0 { idx + n } else { idx };
    if !(0..n).contains(&i) {
        return Err(RuntimeError::Invalid(format!("select: index {idx} out of range for a dimension of {n}")));
    }
    let strides = contiguous_strides(&sizes);
    let mut vs = sizes.clone();
    let mut vst = strides.clone();
    if !vs.is_empty() {
        vs.remove(dim);
        vst.remove(dim);
    }
    gather_into(env, src, out, &vs, &vst, i as usize * strides.get(dim).copied().unwrap_or(0))
}

fn split_into(env: &mut Env<'_>, src: usize, outs: &[usize], dim: usize, lens: &[usize]) -> Result<()> {
    let n = env.sizes(src)?.get(dim).copied().unwrap_or(1);
    if lens.iter().sum::<usize>() != n || lens.len() != outs.len() {
        return Err(RuntimeError::Invalid(format!(
            "split sizes {lens:?} do not cover a dimension of {n} with {} outputs",
            outs.len()
        )));
    }
    let mut start = 0;
    for (&o, &len) in outs.iter().zip(lens) {
        slice_along(env, src, o, dim, start, len, 1)?;
        start += len;
    }
    Ok(())
}

fn split_with_sizes_copy(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let src = arg(args, 0)?;
    let rank = env.sizes(src)?.len();
    let lens: Vec<usize> = env
        .int_list(arg(args, 1)?)?
        .into_iter()
        .map(|l| usize::try_from(l).map_err(|_| RuntimeError::Invalid(format!("split: invalid size {l}"))))
        .collect::<Result<_>>()?;
    let dim = norm_dim(env.int(arg(args, 2)?)?, rank)?;
    let outs = env.tensor_list(arg(args, 3)?)?;
    split_into(env, src, &outs, dim, &lens)
}

fn split_copy(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let src = arg(args, 0)?;
    let rank = env.sizes(src)?.len();
    let size = env.int(arg(args, 1)?)?;
    let dim = norm_dim(env.int(arg(args, 2)?)?, rank)?;
    let outs = env.tensor_list(arg(args, 3)?)?;
    let n = env.sizes(src)?.get(dim).copied().unwrap_or(1);
    let size = usize::try_from(size)
        .ok()
        .filter(|&s| s > 0 || n == 0)
        .ok_or_else(|| RuntimeError::Invalid(format!("split: invalid size {size}")))?;
    let mut lens = Vec::new();
    let mut left = n;
    while left > 0 {
        lens.push(left.min(size));
        left -= left.min(size);
    }
    if lens.is_empty() {
        lens.push(0);
    }
    split_into(env, src, &outs, dim, &lens)
}

fn unbind_copy(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let src = arg(args, 0)?;
    let sizes = env.sizes(src)?.to_vec();
    let dim = norm_dim(env.int(arg(args, 1)?)?, sizes.len())?;
    let outs = env.tensor_list(arg(args, 2)?)?;
    if outs.len() != sizes[dim] {
        return Err(RuntimeError::Invalid(format!("unbind: {} outputs for a dimension of {}", outs.len(), sizes[dim])));
    }
    let strides = contiguous_strides(&sizes);
    let mut vs = sizes.clone();
    let mut vst = strides.clone();
    vs.remove(dim);
    vst.remove(dim);
    for (i, &o) in outs.iter().enumerate() {
        gather_into(env, src, o, &vs, &vst, i * strides[dim])?;
    }
    Ok(())
}

/// Concatenates `inputs` along `dim` into `out`; PyTorch skips 1-D empty inputs.
fn cat_into(env: &mut Env<'_>, inputs: &[usize], dim: i64, out: usize, stack: bool) -> Result<()> {
    let mut shapes: Vec<(usize, Vec<usize>)> = Vec::new();
    for &t in inputs {
        let s = env.sizes(t)?.to_vec();
        if !stack && s == [0] {
            continue;
        }
        shapes.push((t, s));
    }
    let dtype = env.dtype(out)?;
    if shapes.is_empty() {
        env.resize(out, &[0])?;
        return Ok(());
    }
    let base = shapes[0].1.clone();
    let rank = if stack { base.len() + 1 } else { base.len() };
    let d = norm_dim(dim, rank)?;
    let mut total = 0usize;
    for (t, s) in &shapes {
        let ok = if stack {
            *s == base
        } else {
            s.len() == base.len() && s.iter().zip(&base).enumerate().all(|(i, (a, b))| i == d || a == b)
        };
        if !ok {
            return Err(RuntimeError::Invalid(format!(
                "cat: tensor {t} has shape {s:?}, incompatible with {base:?} along dim {d}"
            )));
        }
        if env.dtype(*t)? != dtype {
            return Err(RuntimeError::Unsupported(format!(
                "cat: mixing {} inputs into a {dtype} output",
                env.dtype(*t)?
            )));
        }
        total += if stack { 1 } else { s[d] };
    }
    let mut out_sizes = base.clone();
    if stack {
        out_sizes.insert(d, total);
    } else {
        out_sizes[d] = total;
    }
    env.resize(out, &out_sizes)?;
    let elem = elem_size(dtype);
    let outer: usize = out_sizes[..d].iter().product();
    let inner: usize = out_sizes[d + 1..].iter().product::<usize>() * elem;
    let ids: Vec<usize> = shapes.iter().map(|(t, _)| *t).collect();
    let widths: Vec<usize> = shapes.iter().map(|(_, s)| if stack { inner } else { s[d] * inner }).collect();
    env.run(&ids, &[out], |ins, outs| {
        let row = total * inner;
        let dst = &mut *outs[0].data;
        let mut col = 0;
        for (x, &w) in ins.iter().zip(&widths) {
            if x.data.len() != outer * w {
                return Err(RuntimeError::Invalid("cat: input size mismatch".into()));
            }
            for o in 0..outer {
                dst[o * row + col..o * row + col + w].copy_from_slice(&x.data[o * w..(o + 1) * w]);
            }
            col += w;
        }
        Ok(())
    })
}

fn cat(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let inputs = env.tensor_list(arg(args, 0)?)?;
    let dim = env.int(arg(args, 1)?)?;
    cat_into(env, &inputs, dim, arg(args, 2)?, false)
}

fn stack(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let inputs = env.tensor_list(arg(args, 0)?)?;
    let dim = env.int(arg(args, 1)?)?;
    cat_into(env, &inputs, dim, arg(args, 2)?, true)
}

/// Fills `out` (already sized) with `value` converted to its dtype.
fn fill(env: &mut Env<'_>, out: usize, value: Scalar) -> Result<()> {
    let dtype = env.dtype(out)?;
    env.run(&[], &[out], |_, outs| {
        ferrite_kernels::dispatch!(all el(dtype)?, T => {
            let v = if dtype == ScalarType::Bool { <T as Element>::from_f64(f64::from(u8::from(value.to_f64() != 0.0))) } else { <T as Element>::from_f64(value.to_f64()) };
            outs[0].typed::<T>()?.fill(v);
        }, else other => return Err(super::unsupported(other)));
        Ok(())
    })
}

fn sizes_arg(env: &Env<'_>, v: usize) -> Result<Vec<usize>> {
    env.int_list(v)?
        .into_iter()
        .map(|s| usize::try_from(s).map_err(|_| RuntimeError::Invalid(format!("invalid size {s}"))))
        .collect()
}

fn full(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let sizes = sizes_arg(env, arg(args, 0)?)?;
    let value = env.scalar(arg(args, 1)?)?;
    let out = arg(args, 2)?;
    env.resize(out, &sizes)?;
    fill(env, out, value)
}

fn fill_new(env: &mut Env<'_>, args: &[usize], out_at: usize, value: Scalar) -> Result<()> {
    let sizes = sizes_arg(env, arg(args, 0)?)?;
    let out = arg(args, out_at)?;
    env.resize(out, &sizes)?;
    fill(env, out, value)
}

fn fill_like(env: &mut Env<'_>, like: usize, out: usize, value: Scalar) -> Result<()> {
    let sizes = env.sizes(like)?.to_vec();
    env.resize(out, &sizes)?;
    fill(env, out, value)
}

fn full_like(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let value = env.scalar(arg(args, 1)?)?;
    fill_like(env, arg(args, 0)?, arg(args, 3)?, value)
}

fn scalar_tensor(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let value = env.scalar(arg(args, 0)?)?;
    let out = arg(args, 1)?;
    env.resize(out, &[])?;
    fill(env, out, value)
}

fn arange(env: &mut Env<'_>, start: Scalar, end: Scalar, step: Scalar, out: usize) -> Result<()> {
    let (s, e, st) = (start.to_f64(), end.to_f64(), step.to_f64());
    if st == 0.0 || !st.is_finite() || !s.is_finite() || !e.is_finite() || (e - s) * st < 0.0 {
        return Err(RuntimeError::Invalid(format!("arange({s}, {e}, {st}) is empty or infinite")));
    }
    let n = ((e - s) / st).ceil();
    if n > 1e12 {
        return Err(RuntimeError::Invalid(format!("arange({s}, {e}, {st}) is too long")));
    }
    let n = n as usize;
    env.resize(out, &[n])?;
    let dtype = env.dtype(out)?;
    let ints = !start.is_float() && !end.is_float() && !step.is_float();
    env.run(&[], &[out], |_, outs| {
        ferrite_kernels::dispatch!(all el(dtype)?, T => {
            for (i, o) in outs[0].typed::<T>()?.iter_mut().enumerate() {
                let v = if ints { (s as i64 + i as i64 * st as i64) as f64 } else { s + i as f64 * st };
                *o = <T as Element>::from_f64(v);
            }
        }, else other => return Err(super::unsupported(other)));
        Ok(())
    })
}

fn arange_end(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let end = env.scalar(arg(args, 0)?)?;
    arange(env, Scalar::Int(0), end, Scalar::Int(1), arg(args, 1)?)
}

fn arange_start(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (start, end, step) = (env.scalar(arg(args, 0)?)?, env.scalar(arg(args, 1)?)?, env.scalar(arg(args, 2)?)?);
    arange(env, start, end, step, arg(args, 3)?)
}

/// `constant_pad_nd(self, pad, value)`: `pad` lists (before, after) pairs from the last
/// dimension backwards; negative padding crops.
fn constant_pad_nd(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (src, out) = (arg(args, 0)?, arg(args, 3)?);
    let sizes = env.sizes(src)?.to_vec();
    let pad = env.int_list(arg(args, 1)?)?;
    let value = env.scalar(arg(args, 2)?)?;
    if pad.len() % 2 != 0 || pad.len() / 2 > sizes.len() {
        return Err(RuntimeError::Invalid(format!(
            "constant_pad_nd: padding {pad:?} does not fit a rank-{} tensor",
            sizes.len()
        )));
    }
    let rank = sizes.len();
    let mut before = vec![0i64; rank];
    let mut out_sizes = sizes.clone();
    for (k, p) in pad.chunks_exact(2).enumerate() {
        let d = rank - 1 - k;
        let n = sizes[d] as i64 + p[0] + p[1];
        if n < 0 {
            return Err(RuntimeError::Invalid(format!(
                "constant_pad_nd: padding {pad:?} makes dimension {d} negative"
            )));
        }
        before[d] = p[0];
        out_sizes[d] = n as usize;
    }
    env.resize(out, &out_sizes)?;
    fill(env, out, value)?;
    let dtype = env.dtype(src)?;
    let elem = elem_size(dtype);
    let in_strides = contiguous_strides(&sizes);
    let out_strides = contiguous_strides(&out_sizes);
    env.run(&[src], &[out], |ins, outs| {
        if ins[0].dtype != dtype || outs[0].dtype != dtype {
            return Err(RuntimeError::Invalid("constant_pad_nd: dtype mismatch".into()));
        }
        let n = crate::tensor::numel(&sizes)?;
        for i in 0..n {
            let mut rem = i;
            let mut o = 0i64;
            let mut inside = true;
            for d in 0..rank {
                let idx = rem / in_strides[d];
                rem %= in_strides[d];
                let od = idx as i64 + before[d];
                if od < 0 || od >= out_sizes[d] as i64 {
                    inside = false;
                    break;
                }
                o += od * out_strides[d] as i64;
            }
            if inside {
                let o = o as usize * elem;
                outs[0].data[o..o + elem].copy_from_slice(&ins[0].data[i * elem..(i + 1) * elem]);
            }
        }
        Ok(())
    })
}

fn flip(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (src, out) = (arg(args, 0)?, arg(args, 2)?);
    let sizes = env.sizes(src)?.to_vec();
    let dims = env.int_list(arg(args, 1)?)?;
    let dtype = env.dtype(src)?;
    let elem = elem_size(dtype);
    let strides = contiguous_strides(&sizes);
    let mut flipped = vec![false; sizes.len()];
    for d in dims {
        flipped[norm_dim(d, sizes.len())?] = true;
    }
    env.resize(out, &sizes)?;
    env.run(&[src], &[out], |ins, outs| {
        let n = crate::tensor::numel(&sizes)?;
        for i in 0..n {
            let mut rem = i;
            let mut j = 0;
            for d in 0..sizes.len() {
                let idx = rem / strides[d];
                rem %= strides[d];
                j += if flipped[d] { sizes[d] - 1 - idx } else { idx } * strides[d];
            }
            outs[0].data[i * elem..(i + 1) * elem].copy_from_slice(&ins[0].data[j * elem..(j + 1) * elem]);
        }
        Ok(())
    })
}
