//! 2-D pooling and upsampling: `max_pool2d_with_indices`, `avg_pool2d`, `_adaptive_avg_pool2d`,
//! `adaptive_avg_pool2d`, `adaptive_max_pool2d`, `upsample_nearest2d` and `upsample_bilinear2d`
//! (`.vec_out` and `.out`). Inputs are `[N, C, H, W]` or `[C, H, W]`.

use super::arg;
use super::conv::{effectively_contiguous, input_as, with_output};
use super::el;
use crate::env::Env;
use crate::error::{Result, RuntimeError};
use crate::registry::KernelRegistry;
use crate::tensor::{TensorMut, TensorRef};
use ferrite_kernels::pool::{self as kpool, Pool2d};
use ferrite_kernels::Real;
use ferrite_op_support::Op;
use ferrite_program::ScalarType;

pub(super) fn register(r: &mut KernelRegistry) {
    reg!(r, Op::MaxPool2dWithIndices, max_pool2d_with_indices);
    reg!(r, Op::AvgPool2d, avg_pool2d);
    reg!(r, Op::AdaptiveAvgPool2d, adaptive_avg_pool2d);
    reg!(r, Op::AdaptiveAvgPool2dComposite, adaptive_avg_pool2d);
    reg!(r, Op::AdaptiveMaxPool2d, adaptive_max_pool2d);
    reg!(r, Op::UpsampleNearest2dVec, upsample_nearest2d_vec);
    reg!(r, Op::UpsampleNearest2d, upsample_nearest2d_out);
    reg!(r, Op::UpsampleBilinear2dVec, upsample_bilinear2d_vec);
    reg!(r, Op::UpsampleBilinear2d, upsample_bilinear2d_out);
}

fn invalid(msg: String) -> RuntimeError {
    RuntimeError::Invalid(msg)
}

fn is_float(d: ScalarType) -> bool {
    matches!(d, ScalarType::Float | ScalarType::Double | ScalarType::Half | ScalarType::BFloat16)
}

/// `(planes, [H, W])` of a `[N, C, H, W]` or `[C, H, W]` tensor.
fn planes_of(sizes: &[usize], op: &str) -> Result<(usize, [usize; 2])> {
    match sizes.len() {
        3 | 4 => {
            let r = sizes.len();
            Ok((sizes[..r - 2].iter().product(), [sizes[r - 2], sizes[r - 1]]))
        }
        _ => Err(invalid(format!("{op}: expected a 3-D or 4-D input, got {sizes:?}"))),
    }
}

fn with_hw(sizes: &[usize], hw: [usize; 2]) -> Vec<usize> {
    let mut s = sizes.to_vec();
    let r = s.len();
    s[r - 2] = hw[0];
    s[r - 1] = hw[1];
    s
}

/// A 2-element pooling parameter (`[]` gives `default`, one value broadcasts).
fn pair(list: &[i64], default: [usize; 2], what: &str, min: i64) -> Result<[usize; 2]> {
    let v = match list.len() {
        0 => return Ok(default),
        1 => [list[0], list[0]],
        2 => [list[0], list[1]],
        n => return Err(invalid(format!("{what} must have 1 or 2 values, got {n}"))),
    };
    let mut out = [0usize; 2];
    for i in 0..2 {
        if v[i] < min {
            return Err(invalid(format!("{what} must be at least {min}, got {:?}", list)));
        }
        out[i] = usize::try_from(v[i]).map_err(|_| invalid(format!("{what} {:?} is out of range", list)))?;
    }
    Ok(out)
}

/// Runs `f` over the contiguous compute-type views of one float input and one output.
fn float_unary(
    env: &mut Env<'_>,
    input: usize,
    out: usize,
    op: &str,
    f32f: impl FnOnce(&[f32], &mut [f32]) -> Result<()>,
    f64f: impl FnOnce(&[f64], &mut [f64]) -> Result<()>,
) -> Result<()> {
    let (id, od) = (env.dtype(input)?, env.dtype(out)?);
    if !is_float(id) || id != od {
        return Err(RuntimeError::Unsupported(format!(
            "{op}: {id} input with {od} output (floating point, same dtype)"
        )));
    }
    env.run_any_layout(&[input], &[out], |ins, outs| {
        fn go<R: Real>(
            x: &TensorRef<'_>,
            y: &mut TensorMut<'_>,
            f: impl FnOnce(&[R], &mut [R]) -> Result<()>,
        ) -> Result<()> {
            let x = input_as::<R>(x)?;
            with_output::<R>(y, |y| f(&x, y))
        }
        if id == ScalarType::Double {
            go::<f64>(&ins[0], &mut outs[0], f64f)
        } else {
            go::<f32>(&ins[0], &mut outs[0], f32f)
        }
    })
}

fn require_contiguous(env: &Env<'_>, vs: &[usize], op: &str) -> Result<()> {
    for &v in vs {
        let slot = env.slot(v)?;
        if !effectively_contiguous(&slot.sizes, &slot.dim_order) {
            return Err(RuntimeError::Unsupported(format!("{op}: value {v} has dim order {:?}", slot.dim_order)));
        }
    }
    Ok(())
}

/// `max_pool2d_with_indices.out(self, kernel_size, stride=[], padding=0, dilation=1,
/// ceil_mode=False, *, out, indices)`.
fn max_pool2d_with_indices(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (input, out, indices) = (arg(args, 0)?, arg(args, 6)?, arg(args, 7)?);
    let kernel = pair(&env.int_list(arg(args, 1)?)?, [0, 0], "kernel_size", 1)?;
    let stride = pair(&env.int_list(arg(args, 2)?)?, kernel, "stride", 1)?;
    let padding = pair(&env.int_list(arg(args, 3)?)?, [0, 0], "padding", 0)?;
    let dilation = pair(&env.int_list(arg(args, 4)?)?, [1, 1], "dilation", 1)?;
    let ceil_mode = env.bool(arg(args, 5)?)?;
    let sizes = env.sizes(input)?.to_vec();
    let (planes, hw) = planes_of(&sizes, "max_pool2d")?;
    let mut output = [0usize; 2];
    for a in 0..2 {
        output[a] = kpool::pool_output_size(hw[a], kernel[a], stride[a], padding[a], dilation[a], ceil_mode)?;
    }
    let osizes = with_hw(&sizes, output);
    env.resize(out, &osizes)?;
    env.resize(indices, &osizes)?;
    let (dt, odt) = (env.dtype(input)?, env.dtype(out)?);
    if dt != odt || env.dtype(indices)? != ScalarType::Long {
        return Err(invalid(format!("max_pool2d: {dt} input needs a {dt} output and Long indices")));
    }
    require_contiguous(env, &[input, out, indices], "max_pool2d")?;
    let p = Pool2d { planes, input: hw, output, kernel, stride, padding, dilation };
    env.run(&[input], &[out, indices], |ins, outs| {
        let [o, ix] = outs else { return Err(invalid("max_pool2d: expected two outputs".into())) };
        let ix = ix.typed::<i64>()?;
        ferrite_kernels::dispatch!(all el(dt)?, T => {
            Ok(kpool::max_pool2d(ins[0].typed::<T>()?, o.typed::<T>()?, Some(ix), &p)?)
        }, else other => Err(super::unsupported(other)))
    })
}

/// `avg_pool2d.out(self, kernel_size, stride=[], padding=0, ceil_mode=False,
/// count_include_pad=True, divisor_override=None, *, out)`.
fn avg_pool2d(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (input, out) = (arg(args, 0)?, arg(args, 7)?);
    let kernel = pair(&env.int_list(arg(args, 1)?)?, [0, 0], "kernel_size", 1)?;
    let stride = pair(&env.int_list(arg(args, 2)?)?, kernel, "stride", 1)?;
    let padding = pair(&env.int_list(arg(args, 3)?)?, [0, 0], "padding", 0)?;
    let ceil_mode = env.bool(arg(args, 4)?)?;
    let include_pad = env.bool(arg(args, 5)?)?;
    let divisor = env.opt_int(arg(args, 6)?)?;
    let sizes = env.sizes(input)?.to_vec();
    let (planes, hw) = planes_of(&sizes, "avg_pool2d")?;
    let mut output = [0usize; 2];
    for a in 0..2 {
        output[a] = kpool::pool_output_size(hw[a], kernel[a], stride[a], padding[a], 1, ceil_mode)?;
    }
    env.resize(out, &with_hw(&sizes, output))?;
    let p = Pool2d { planes, input: hw, output, kernel, stride, padding, dilation: [1, 1] };
    float_unary(
        env,
        input,
        out,
        "avg_pool2d",
        |x, y| Ok(kpool::avg_pool2d(x, y, &p, include_pad, divisor)?),
        |x, y| Ok(kpool::avg_pool2d(x, y, &p, include_pad, divisor)?),
    )
}

fn output_size_arg(env: &Env<'_>, v: usize, op: &str) -> Result<[usize; 2]> {
    let l = env.int_list(v)?;
    if l.len() != 2 {
        return Err(invalid(format!("{op}: output_size must have 2 values, got {l:?}")));
    }
    pair(&l, [0, 0], "output_size", 1)
}

/// `_adaptive_avg_pool2d.out(self, output_size, *, out)` (and `adaptive_avg_pool2d.out`).
fn adaptive_avg_pool2d(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (input, out) = (arg(args, 0)?, arg(args, 2)?);
    let output = output_size_arg(env, arg(args, 1)?, "adaptive_avg_pool2d")?;
    let sizes = env.sizes(input)?.to_vec();
    let (planes, hw) = planes_of(&sizes, "adaptive_avg_pool2d")?;
    env.resize(out, &with_hw(&sizes, output))?;
    float_unary(
        env,
        input,
        out,
        "adaptive_avg_pool2d",
        |x, y| Ok(kpool::adaptive_avg_pool2d(x, y, planes, hw, output)?),
        |x, y| Ok(kpool::adaptive_avg_pool2d(x, y, planes, hw, output)?),
    )
}

/// `adaptive_max_pool2d.out(self, output_size, *, out, indices)`.
fn adaptive_max_pool2d(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (input, out, indices) = (arg(args, 0)?, arg(args, 2)?, arg(args, 3)?);
    let output = output_size_arg(env, arg(args, 1)?, "adaptive_max_pool2d")?;
    let sizes = env.sizes(input)?.to_vec();
    let (planes, hw) = planes_of(&sizes, "adaptive_max_pool2d")?;
    let osizes = with_hw(&sizes, output);
    env.resize(out, &osizes)?;
    env.resize(indices, &osizes)?;
    let dt = env.dtype(input)?;
    if env.dtype(out)? != dt || env.dtype(indices)? != ScalarType::Long {
        return Err(invalid(format!("adaptive_max_pool2d: {dt} input needs a {dt} output and Long indices")));
    }
    require_contiguous(env, &[input, out, indices], "adaptive_max_pool2d")?;
    env.run(&[input], &[out, indices], |ins, outs| {
        let [o, ix] = outs else { return Err(invalid("adaptive_max_pool2d: expected two outputs".into())) };
        let ix = ix.typed::<i64>()?;
        ferrite_kernels::dispatch!(all el(dt)?, T => {
            Ok(kpool::adaptive_max_pool2d(ins[0].typed::<T>()?, o.typed::<T>()?, ix, planes, hw, output)?)
        }, else other => Err(super::unsupported(other)))
    })
}

/// Output size and per-axis scales of an upsample call given either `output_size` or scales.
fn upsample_geometry(
    hw: [usize; 2],
    output_size: Option<Vec<i64>>,
    scales: Option<Vec<f64>>,
    op: &str,
) -> Result<([usize; 2], [Option<f64>; 2])> {
    match (output_size, scales) {
        (Some(s), None) => Ok((output_size_pair(&s, op)?, [None, None])),
        (None, Some(f)) => {
            if f.len() != 2 || f.iter().any(|&v| v <= 0.0 || !v.is_finite()) {
                return Err(invalid(format!("{op}: scale_factors must be two positive numbers, got {f:?}")));
            }
            let mut o = [0usize; 2];
            for a in 0..2 {
                let v = (hw[a] as f64 * f[a]).floor();
                if !(1.0..=(u32::MAX as f64)).contains(&v) {
                    return Err(invalid(format!("{op}: input {hw:?} scaled by {f:?} gives an empty or huge output")));
                }
                o[a] = v as usize;
            }
            Ok((o, [Some(f[0]), Some(f[1])]))
        }
        _ => Err(invalid(format!("{op}: exactly one of output_size and scale_factors must be given"))),
    }
}

fn output_size_pair(s: &[i64], op: &str) -> Result<[usize; 2]> {
    if s.len() != 2 {
        return Err(invalid(format!("{op}: output_size must have 2 values, got {s:?}")));
    }
    pair(s, [0, 0], "output_size", 1)
}

fn upsample_nearest(
    env: &mut Env<'_>,
    input: usize,
    out: usize,
    output: [usize; 2],
    scales: [Option<f64>; 2],
) -> Result<()> {
    let sizes = env.sizes(input)?.to_vec();
    if sizes.len() != 4 {
        return Err(invalid(format!("upsample_nearest2d: expected a 4-D input, got {sizes:?}")));
    }
    let (planes, hw) = planes_of(&sizes, "upsample_nearest2d")?;
    env.resize(out, &with_hw(&sizes, output))?;
    let dt = env.dtype(input)?;
    if env.dtype(out)? != dt {
        return Err(invalid(format!("upsample_nearest2d: {dt} input with a {} output", env.dtype(out)?)));
    }
    require_contiguous(env, &[input, out], "upsample_nearest2d")?;
    let scale = [
        kpool::upsample_scale(hw[0], output[0], false, scales[0]),
        kpool::upsample_scale(hw[1], output[1], false, scales[1]),
    ];
    env.run(&[input], &[out], |ins, outs| {
        ferrite_kernels::dispatch!(all el(dt)?, T => {
            Ok(kpool::upsample_nearest2d(ins[0].typed::<T>()?, outs[0].typed::<T>()?, planes, hw, output, scale)?)
        }, else other => Err(super::unsupported(other)))
    })
}

#[allow(clippy::too_many_arguments)]
fn upsample_bilinear(
    env: &mut Env<'_>,
    input: usize,
    out: usize,
    output: [usize; 2],
    align_corners: bool,
    scales: [Option<f64>; 2],
) -> Result<()> {
    let sizes = env.sizes(input)?.to_vec();
    if sizes.len() != 4 {
        return Err(invalid(format!("upsample_bilinear2d: expected a 4-D input, got {sizes:?}")));
    }
    let (planes, hw) = planes_of(&sizes, "upsample_bilinear2d")?;
    env.resize(out, &with_hw(&sizes, output))?;
    let ratio = [
        kpool::upsample_scale(hw[0], output[0], align_corners, scales[0]),
        kpool::upsample_scale(hw[1], output[1], align_corners, scales[1]),
    ];
    float_unary(
        env,
        input,
        out,
        "upsample_bilinear2d",
        |x, y| Ok(kpool::upsample_bilinear2d(x, y, planes, hw, output, align_corners, ratio)?),
        |x, y| Ok(kpool::upsample_bilinear2d(x, y, planes, hw, output, align_corners, ratio)?),
    )
}

/// `upsample_nearest2d.vec_out(input, output_size?, scale_factors?, *, out)`.
fn upsample_nearest2d_vec(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (input, out) = (arg(args, 0)?, arg(args, 3)?);
    let hw = planes_of(env.sizes(input)?, "upsample_nearest2d")?.1;
    let (output, scales) = upsample_geometry(
        hw,
        env.opt_int_list(arg(args, 1)?)?,
        env.opt_double_list(arg(args, 2)?)?,
        "upsample_nearest2d",
    )?;
    upsample_nearest(env, input, out, output, scales)
}

/// `upsample_nearest2d.out(self, output_size, scales_h=None, scales_w=None, *, out)`.
fn upsample_nearest2d_out(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (input, out) = (arg(args, 0)?, arg(args, 4)?);
    let output = output_size_pair(&env.int_list(arg(args, 1)?)?, "upsample_nearest2d")?;
    let scales = [env.opt_double(arg(args, 2)?)?, env.opt_double(arg(args, 3)?)?];
    upsample_nearest(env, input, out, output, scales)
}

/// `upsample_bilinear2d.vec_out(input, output_size?, align_corners, scale_factors?, *, out)`.
fn upsample_bilinear2d_vec(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (input, out) = (arg(args, 0)?, arg(args, 4)?);
    let align_corners = env.bool(arg(args, 2)?)?;
    let hw = planes_of(env.sizes(input)?, "upsample_bilinear2d")?.1;
    let (output, scales) = upsample_geometry(
        hw,
        env.opt_int_list(arg(args, 1)?)?,
        env.opt_double_list(arg(args, 3)?)?,
        "upsample_bilinear2d",
    )?;
    upsample_bilinear(env, input, out, output, align_corners, scales)
}

/// `upsample_bilinear2d.out(self, output_size, align_corners, scales_h=None, scales_w=None, *,
/// out)`.
fn upsample_bilinear2d_out(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (input, out) = (arg(args, 0)?, arg(args, 5)?);
    let output = output_size_pair(&env.int_list(arg(args, 1)?)?, "upsample_bilinear2d")?;
    let align_corners = env.bool(arg(args, 2)?)?;
    let scales = [env.opt_double(arg(args, 3)?)?, env.opt_double(arg(args, 4)?)?];
    upsample_bilinear(env, input, out, output, align_corners, scales)
}
