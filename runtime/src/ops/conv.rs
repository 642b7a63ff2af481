//! Convolution and batch normalisation: `aten::convolution.out` (1-D/2-D/3-D, strided, padded,
//! dilated, grouped, depthwise, transposed) and the `_native_batch_norm_legit*` family.
//!
//! f32 and f64 tensors are computed in place; f16/bf16 are widened to f32 and rounded back.
//! Tensors in another dim order (channels-last) are gathered to contiguous first.

use ferrite_op_support::Op;
use std::borrow::Cow;

use super::arg;
use crate::env::Env;
use crate::error::{Result, RuntimeError};
use crate::registry::KernelRegistry;
use crate::tensor::{TensorMut, TensorRef};
use ferrite_kernels::conv::{self as kconv, ConvShape};
use ferrite_kernels::simd::Level;
use ferrite_kernels::{contiguous_strides, layout};
use ferrite_kernels::{Element, Real};
use ferrite_program::ScalarType;

pub(super) fn register(r: &mut KernelRegistry) {
    reg!(r, Op::Convolution, convolution);
    reg!(r, Op::NativeBatchNormLegitNoTraining, batch_norm_no_training);
    reg!(r, Op::NativeBatchNormLegit, batch_norm_legit);
    reg!(r, Op::NativeBatchNormLegitNoStats, batch_norm_no_stats);
    reg!(r, Op::NativeBatchNorm, native_batch_norm);
}

fn invalid(msg: String) -> RuntimeError {
    RuntimeError::Invalid(msg)
}

/// Whether data in `dim_order` is laid out as the default order once size-1 dims are ignored.
pub(super) fn effectively_contiguous(sizes: &[usize], dim_order: &[u8]) -> bool {
    if dim_order.is_empty() || layout::is_contiguous_order(dim_order) {
        return true;
    }
    let mut last = None;
    for &d in dim_order {
        if sizes.get(d as usize).is_some_and(|&s| s > 1) {
            if last.is_some_and(|l| l > d) {
                return false;
            }
            last = Some(d);
        }
    }
    true
}

/// `t`'s elements as `T` in contiguous row-major order (borrowed when already so).
fn load<'a, T: Element>(t: &TensorRef<'a>) -> Result<Cow<'a, [T]>> {
    if effectively_contiguous(t.sizes, t.dim_order) {
        return Ok(Cow::Borrowed(t.typed::<T>()?));
    }
    let strides = layout::strides_for_dim_order(t.sizes, t.dim_order)?;
    let mut buf = vec![0u8; t.data.len()];
    layout::gather(&mut buf, t.data, t.dtype.element_size(), t.sizes, &strides, 0)?;
    // Check the dtype before reinterpreting.
    TensorRef { dtype: t.dtype, sizes: t.sizes, dim_order: &[], data: &[] }.typed::<T>()?;
    Ok(Cow::Owned(bytemuck::pod_collect_to_vec::<u8, T>(&buf)))
}

/// `t`'s elements converted to the compute type `R`, contiguous (borrowed when possible).
pub(super) fn input_as<'a, R: Real>(t: &TensorRef<'a>) -> Result<Cow<'a, [R]>> {
    if crate::tensor::viewable_as::<R>(t.dtype) {
        return load::<R>(t);
    }
    fn widen<T: Element, R: Real>(t: &TensorRef<'_>) -> Result<Vec<R>> {
        Ok(load::<T>(t)?.iter().map(|v| R::from_f64(v.to_f64())).collect())
    }
    Ok(Cow::Owned(match t.dtype {
        ScalarType::Float => widen::<f32, R>(t)?,
        ScalarType::Double => widen::<f64, R>(t)?,
        ScalarType::Half => load::<half::f16>(t)?.iter().map(|v| R::from_f32(v.to_f32())).collect(),
        ScalarType::BFloat16 => load::<half::bf16>(t)?.iter().map(|v| R::from_f32(v.to_f32())).collect(),
        other => {
            return Err(RuntimeError::Unsupported(format!("{other} tensors in this operator (floating point only)")))
        }
    }))
}

/// Runs `f` on a contiguous `R` view of `out` (the tensor itself when its dtype is `R` and it is
/// contiguous, else a buffer converted and laid out into `out` afterwards).
pub(super) fn with_output<R: Real>(out: &mut TensorMut<'_>, f: impl FnOnce(&mut [R]) -> Result<()>) -> Result<()> {
    let contiguous = effectively_contiguous(out.sizes, out.dim_order);
    if crate::tensor::viewable_as::<R>(out.dtype) && contiguous {
        return f(out.typed::<R>()?);
    }
    let mut tmp = vec![R::ZERO; out.numel()];
    f(&mut tmp)?;
    let bytes: Vec<u8> = match out.dtype {
        ScalarType::Float => bytemuck::cast_slice(&tmp.iter().map(|v| v.to_f32()).collect::<Vec<f32>>()).to_vec(),
        ScalarType::Double => bytemuck::cast_slice(&tmp.iter().map(|v| v.to_f64()).collect::<Vec<f64>>()).to_vec(),
        ScalarType::Half => {
            bytemuck::cast_slice(&tmp.iter().map(|v| half::f16::from_f32(v.to_f32())).collect::<Vec<_>>()).to_vec()
        }
        ScalarType::BFloat16 => {
            bytemuck::cast_slice(&tmp.iter().map(|v| half::bf16::from_f32(v.to_f32())).collect::<Vec<_>>()).to_vec()
        }
        other => {
            return Err(RuntimeError::Unsupported(format!("{other} outputs in this operator (floating point only)")))
        }
    };
    if contiguous {
        out.data.copy_from_slice(&bytes);
    } else {
        // Physical order of `out`: gather the contiguous result through permuted strides.
        let sizes = out.sizes;
        let strides = contiguous_strides(sizes);
        let order: Vec<usize> = out.dim_order.iter().map(|&d| d as usize).collect();
        let phys_sizes: Vec<usize> = order.iter().map(|&d| sizes.get(d).copied().unwrap_or(1)).collect();
        let phys_strides: Vec<usize> = order.iter().map(|&d| strides.get(d).copied().unwrap_or(0)).collect();
        layout::gather(out.data, &bytes, out.dtype.element_size(), &phys_sizes, &phys_strides, 0)?;
    }
    Ok(())
}

fn is_float(d: ScalarType) -> bool {
    matches!(d, ScalarType::Float | ScalarType::Double | ScalarType::Half | ScalarType::BFloat16)
}

/// ExecuTorch's `val_at`: one value broadcasts, none gives `default`.
fn param(list: &[i64], i: usize, default: i64, what: &str, ndim: usize) -> Result<i64> {
    match list.len() {
        0 => Ok(default),
        1 => Ok(list[0]),
        n if n == ndim => Ok(list[i]),
        n => Err(invalid(format!("{what} has {n} values for a {ndim}-d operation"))),
    }
}

fn to_usize(v: i64, what: &str, min: i64) -> Result<usize> {
    if v < min {
        return Err(invalid(format!("{what} must be at least {min}, got {v}")));
    }
    usize::try_from(v).map_err(|_| invalid(format!("{what} {v} is out of range")))
}

fn convolution(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (input, weight, bias_v, out) = (arg(args, 0)?, arg(args, 1)?, arg(args, 2)?, arg(args, 9)?);
    let stride = env.int_list(arg(args, 3)?)?;
    let padding = env.int_list(arg(args, 4)?)?;
    let dilation = env.int_list(arg(args, 5)?)?;
    let transposed = env.bool(arg(args, 6)?)?;
    let output_padding = env.int_list(arg(args, 7)?)?;
    let groups = to_usize(env.int(arg(args, 8)?)?, "groups", 1)?;
    let bias = if env.is_none(bias_v)? { None } else { Some(bias_v) };

    let xs = env.sizes(input)?.to_vec();
    let ws = env.sizes(weight)?.to_vec();
    if ws.len() < 3 || ws.len() > 5 {
        return Err(invalid(format!("convolution: weight must be 3-D to 5-D, got {ws:?}")));
    }
    let nd = ws.len() - 2;
    let (batch, in_c, ispatial, batched) = if xs.len() == nd + 2 {
        (xs[0], xs[1], xs[2..].to_vec(), true)
    } else if xs.len() == nd + 1 {
        (1, xs[0], xs[1..].to_vec(), false)
    } else {
        return Err(invalid(format!("convolution: input {xs:?} does not match weight {ws:?}")));
    };
    for (v, what) in [(input, "input"), (weight, "weight"), (out, "output")] {
        if !is_float(env.dtype(v)?) {
            return Err(RuntimeError::Unsupported(format!("convolution: {what} is {}", env.dtype(v)?)));
        }
    }
    let out_c = if transposed { ws[1] * groups } else { ws[0] };
    if transposed {
        if ws[0] != in_c {
            return Err(invalid(format!("convolution: transposed weight {ws:?} does not match {in_c} input channels")));
        }
    } else if ws[1] * groups != in_c {
        return Err(invalid(format!(
            "convolution: weight {ws:?} with {groups} groups does not match {in_c} input channels"
        )));
    }
    if let Some(b) = bias {
        if env.sizes(b)? != [out_c] {
            return Err(invalid(format!("convolution: bias {:?} must have {out_c} elements", env.sizes(b)?)));
        }
    }
    let off = 3 - nd;
    let mut shape = ConvShape {
        batch,
        in_channels: in_c,
        out_channels: out_c,
        groups,
        input: [1; 3],
        kernel: [1; 3],
        stride: [1; 3],
        padding: [0; 3],
        dilation: [1; 3],
        output_padding: [0; 3],
        transposed,
    };
    for i in 0..nd {
        shape.input[off + i] = ispatial[i];
        shape.kernel[off + i] = ws[2 + i];
        shape.stride[off + i] = to_usize(param(&stride, i, 1, "stride", nd)?, "stride", 1)?;
        shape.padding[off + i] = to_usize(param(&padding, i, 0, "padding", nd)?, "padding", 0)?;
        shape.dilation[off + i] = to_usize(param(&dilation, i, 1, "dilation", nd)?, "dilation", 1)?;
        if transposed {
            shape.output_padding[off + i] =
                to_usize(param(&output_padding, i, 0, "output_padding", nd)?, "output_padding", 0)?;
        }
    }
    let o = shape.output()?;
    let mut osizes = Vec::with_capacity(xs.len());
    if batched {
        osizes.push(batch);
    }
    osizes.push(out_c);
    osizes.extend_from_slice(&o[off..]);
    env.resize(out, &osizes)?;

    let double = [input, weight, out].iter().any(|&v| env.dtype(v).is_ok_and(|d| d == ScalarType::Double));
    if double {
        super::double_built()?;
    }
    let mut inputs = vec![input, weight];
    inputs.extend(bias);
    let threads = ferrite_kernels::threads();
    let (in_order, level) = (env.reference_order, env.level);
    env.run_any_layout(&inputs, &[out], |ins, outs| {
        fn go<R: Real>(
            ins: &[TensorRef<'_>],
            out: &mut TensorMut<'_>,
            s: &ConvShape,
            threads: usize,
            (in_order, level): (bool, Level),
        ) -> Result<()> {
            let x = input_as::<R>(&ins[0])?;
            let w = input_as::<R>(&ins[1])?;
            let b = match ins.get(2) {
                Some(b) => Some(input_as::<R>(b)?),
                None => None,
            };
            with_output::<R>(out, |y| {
                if in_order && !s.transposed {
                    kconv::conv_in_order(&x, &w, b.as_deref(), y, s, threads, level)?;
                } else {
                    kconv::conv(&x, &w, b.as_deref(), y, s, threads, level)?;
                }
                Ok(())
            })
        }
        // (`ALL_DTYPES` false: `double_built` refused it above, and no f64 code is generated.)
        if double && ferrite_kernels::ALL_DTYPES {
            go::<f64>(ins, &mut outs[0], &shape, threads, (in_order, level))
        } else {
            go::<f32>(ins, &mut outs[0], &shape, threads, (in_order, level))
        }
    })
}

/// `(channels, inner)` of a batch-norm input `[N, C, ...]` (rank 1 means `C` alone).
fn bn_geometry(sizes: &[usize]) -> Result<(usize, usize)> {
    match sizes.len() {
        0 => Err(invalid("batch_norm: input must have at least one dimension".into())),
        1 => Ok((sizes[0], 1)),
        _ => Ok((sizes[1], sizes[2..].iter().product())),
    }
}

fn opt(env: &Env<'_>, v: usize) -> Result<Option<usize>> {
    Ok(if env.is_none(v)? { None } else { Some(v) })
}

/// Inference batch norm with running statistics; `save_mean` / `save_invstd` become empty.
#[allow(clippy::too_many_arguments)]
fn bn_infer(
    env: &mut Env<'_>,
    input: usize,
    weight: Option<usize>,
    bias: Option<usize>,
    mean: usize,
    var: usize,
    eps: f64,
    outs: [usize; 3],
) -> Result<()> {
    let sizes = env.sizes(input)?.to_vec();
    let (channels, inner) = bn_geometry(&sizes)?;
    for (v, what) in [(Some(mean), "running_mean"), (Some(var), "running_var"), (weight, "weight"), (bias, "bias")] {
        if let Some(v) = v {
            if env.sizes(v)? != [channels] {
                return Err(invalid(format!("batch_norm: {what} {:?} must have {channels} elements", env.sizes(v)?)));
            }
        }
    }
    env.resize(outs[0], &sizes)?;
    env.resize(outs[1], &[0])?;
    env.resize(outs[2], &[0])?;
    let double = env.dtype(input)? == ScalarType::Double;
    if double {
        super::double_built()?;
    }
    let mut inputs = vec![input, mean, var];
    inputs.extend(weight);
    inputs.extend(bias);
    let (has_w, has_b) = (weight.is_some(), bias.is_some());
    env.run_any_layout(&inputs, &[outs[0]], |ins, o| {
        fn go<R: Real>(
            ins: &[TensorRef<'_>],
            out: &mut TensorMut<'_>,
            has: (bool, bool),
            eps: f64,
            ci: (usize, usize),
        ) -> Result<()> {
            let x = input_as::<R>(&ins[0])?;
            let m = input_as::<R>(&ins[1])?;
            let v = input_as::<R>(&ins[2])?;
            let mut k = 3;
            let w = if has.0 {
                k += 1;
                Some(input_as::<R>(&ins[k - 1])?)
            } else {
                None
            };
            let b = if has.1 { Some(input_as::<R>(&ins[k])?) } else { None };
            with_output::<R>(out, |y| {
                Ok(ferrite_kernels::norm::batch_norm(&x, &m, &v, w.as_deref(), b.as_deref(), eps, ci.0, ci.1, y)?)
            })
        }
        // (`ALL_DTYPES` false: `double_built` refused it above, and no f64 code is generated.)
        if double && ferrite_kernels::ALL_DTYPES {
            go::<f64>(ins, &mut o[0], (has_w, has_b), eps, (channels, inner))
        } else {
            go::<f32>(ins, &mut o[0], (has_w, has_b), eps, (channels, inner))
        }
    })
}

/// Training-mode batch norm (batch statistics); `save_mean` / `save_invstd` get them.
fn bn_train(
    env: &mut Env<'_>,
    input: usize,
    weight: Option<usize>,
    bias: Option<usize>,
    eps: f64,
    outs: [usize; 3],
) -> Result<()> {
    let sizes = env.sizes(input)?.to_vec();
    if sizes.len() < 2 {
        return Err(invalid(format!("batch_norm: training mode needs an [N, C, ...] input, got {sizes:?}")));
    }
    let (channels, inner) = bn_geometry(&sizes)?;
    env.resize(outs[0], &sizes)?;
    env.resize(outs[1], &[channels])?;
    env.resize(outs[2], &[channels])?;
    let double = env.dtype(input)? == ScalarType::Double;
    if double {
        super::double_built()?;
    }
    let mut inputs = vec![input];
    inputs.extend(weight);
    inputs.extend(bias);
    let (has_w, has_b) = (weight.is_some(), bias.is_some());
    env.run_any_layout(&inputs, &outs, |ins, o| {
        fn go<R: Real>(
            ins: &[TensorRef<'_>],
            o: &mut [TensorMut<'_>],
            has: (bool, bool),
            eps: f64,
            ci: (usize, usize),
        ) -> Result<()> {
            let x = input_as::<R>(&ins[0])?;
            let w = if has.0 { Some(input_as::<R>(&ins[1])?) } else { None };
            let b = if has.1 { Some(input_as::<R>(&ins[1 + usize::from(has.0)])?) } else { None };
            let (mean, invstd) = ferrite_kernels::norm::batch_stats(&x, ci.0, ci.1, eps)?;
            let [y, sm, si] = o else { return Err(invalid("batch_norm: expected three outputs".into())) };
            with_output::<R>(y, |y| {
                Ok(ferrite_kernels::norm::batch_norm_with_invstd(
                    &x,
                    &mean,
                    &invstd,
                    w.as_deref(),
                    b.as_deref(),
                    ci.0,
                    ci.1,
                    y,
                )?)
            })?;
            with_output::<R>(sm, |d| {
                d.copy_from_slice(&mean);
                Ok(())
            })?;
            with_output::<R>(si, |d| {
                d.copy_from_slice(&invstd);
                Ok(())
            })
        }
        // (`ALL_DTYPES` false: `double_built` refused it above, and no f64 code is generated.)
        if double && ferrite_kernels::ALL_DTYPES {
            go::<f64>(ins, o, (has_w, has_b), eps, (channels, inner))
        } else {
            go::<f32>(ins, o, (has_w, has_b), eps, (channels, inner))
        }
    })
}

/// `_native_batch_norm_legit_no_training.out(input, weight?, bias?, running_mean, running_var,
/// momentum, eps, *, out, save_mean, save_invstd)`.
fn batch_norm_no_training(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (w, b) = (opt(env, arg(args, 1)?)?, opt(env, arg(args, 2)?)?);
    let eps = env.double(arg(args, 6)?)?;
    let outs = [arg(args, 7)?, arg(args, 8)?, arg(args, 9)?];
    bn_infer(env, arg(args, 0)?, w, b, arg(args, 3)?, arg(args, 4)?, eps, outs)
}

/// `_native_batch_norm_legit.out(input, weight?, bias?, running_mean, running_var, training,
/// momentum, eps, *, out, save_mean, save_invstd)`; like ExecuTorch, inference only.
fn batch_norm_legit(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    if env.bool(arg(args, 5)?)? {
        return Err(RuntimeError::Unsupported("batch_norm in training mode with running statistics".into()));
    }
    let (w, b) = (opt(env, arg(args, 1)?)?, opt(env, arg(args, 2)?)?);
    let eps = env.double(arg(args, 7)?)?;
    let outs = [arg(args, 8)?, arg(args, 9)?, arg(args, 10)?];
    bn_infer(env, arg(args, 0)?, w, b, arg(args, 3)?, arg(args, 4)?, eps, outs)
}

/// `_native_batch_norm_legit.no_stats_out(input, weight?, bias?, training, momentum, eps, *,
/// out, save_mean, save_invstd)`: normalises with the batch's own statistics.
fn batch_norm_no_stats(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (w, b) = (opt(env, arg(args, 1)?)?, opt(env, arg(args, 2)?)?);
    let eps = env.double(arg(args, 5)?)?;
    let outs = [arg(args, 6)?, arg(args, 7)?, arg(args, 8)?];
    bn_train(env, arg(args, 0)?, w, b, eps, outs)
}

/// `native_batch_norm.out(input, weight?, bias?, running_mean?, running_var?, training,
/// momentum, eps, *, out, save_mean, save_invstd)`.
fn native_batch_norm(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (w, b) = (opt(env, arg(args, 1)?)?, opt(env, arg(args, 2)?)?);
    let (rm, rv) = (opt(env, arg(args, 3)?)?, opt(env, arg(args, 4)?)?);
    let training = env.bool(arg(args, 5)?)?;
    let eps = env.double(arg(args, 7)?)?;
    let outs = [arg(args, 8)?, arg(args, 9)?, arg(args, 10)?];
    match (training, rm, rv) {
        (false, Some(m), Some(v)) => bn_infer(env, arg(args, 0)?, w, b, m, v, eps, outs),
        (true, None, None) => bn_train(env, arg(args, 0)?, w, b, eps, outs),
        (true, _, _) => Err(RuntimeError::Unsupported("batch_norm in training mode with running statistics".into())),
        _ => Err(invalid("batch_norm: inference needs running_mean and running_var".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguity_ignores_unit_dims() {
        assert!(effectively_contiguous(&[4, 1, 3, 3], &[1, 0, 2, 3]));
        assert!(!effectively_contiguous(&[2, 4, 3, 3], &[0, 2, 3, 1]));
        assert!(effectively_contiguous(&[2, 4, 1, 1], &[0, 2, 3, 1]));
    }
}
