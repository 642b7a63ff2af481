//! `quantized_decomposed::*`: quantize / dequantize (per tensor, per channel, per token),
//! choose_qparams (per tensor, per token) and the dequantizing embedding lookups
//! (`embedding_byte`, `embedding_4bit`, `embedding_2bit`), with the argument checks and the
//! arithmetic of ExecuTorch's `kernels/quantized/cpu`.

use super::{arg, el, norm_dim, quantized_el};
use crate::env::Env;
use crate::error::{Result, RuntimeError};
use crate::registry::KernelRegistry;
use ferrite_kernels::quantized::{self as k, DequantParams, EmbeddingWeight, QuantParams};
use ferrite_op_support::Op;
use ferrite_program::ScalarType;

pub(super) fn register(r: &mut KernelRegistry) {
    reg!(r, Op::QuantizePerTensor, quantize_per_tensor);
    reg!(r, Op::QuantizePerTensorTensor, quantize_per_tensor_tensor);
    reg!(r, Op::DequantizePerTensor, dequantize_per_tensor);
    reg!(r, Op::DequantizePerTensorTensor, dequantize_per_tensor_tensor);
    reg!(r, Op::QuantizePerChannel, quantize_per_channel);
    reg!(r, Op::DequantizePerChannel, dequantize_per_channel);
    reg!(r, Op::DequantizePerChannelGroup, dequantize_per_channel_group);
    reg!(r, Op::MixedLinear, mixed_linear);
    reg!(r, Op::MixedMm, mixed_mm);
    reg!(r, Op::QuantizePerToken, quantize_per_token);
    reg!(r, Op::DequantizePerToken, dequantize_per_token);
    reg!(r, Op::ChooseQparamsTensor, choose_qparams);
    reg!(r, Op::ChooseQparamsPerTokenAsymmetric, choose_qparams_per_token);
    reg!(r, Op::QuantizedAdd, add);
    reg!(r, Op::EmbeddingByte, |e, a| embedding(e, a, Bits::Byte, false));
    reg!(r, Op::EmbeddingByteDtype, |e, a| embedding(e, a, Bits::Byte, true));
    reg!(r, Op::Embedding4bit, |e, a| embedding(e, a, Bits::Four, false));
    reg!(r, Op::Embedding4bitDtype, |e, a| embedding(e, a, Bits::Four, true));
    reg!(r, Op::Embedding2bit, |e, a| embedding(e, a, Bits::Two, false));
    reg!(r, Op::Embedding2bitDtype, |e, a| embedding(e, a, Bits::Two, true));
}

fn invalid(msg: String) -> RuntimeError {
    RuntimeError::Invalid(msg)
}

/// Typed view of raw tensor bytes (also for dtypes `TensorRef::typed` does not map, e.g. Bits16).
fn raw<T: bytemuck::Pod>(data: &[u8]) -> Result<&[T]> {
    bytemuck::try_cast_slice(data)
        .map_err(|e| invalid(format!("cannot view tensor bytes as {}: {e}", std::any::type_name::<T>())))
}

fn raw_mut<T: bytemuck::Pod>(data: &mut [u8]) -> Result<&mut [T]> {
    bytemuck::try_cast_slice_mut(data)
        .map_err(|e| invalid(format!("cannot view tensor bytes as {}: {e}", std::any::type_name::<T>())))
}

/// A `ScalarType` argument (stored as an int).
fn scalar_type(env: &Env<'_>, v: usize) -> Result<ScalarType> {
    let code = env.int(v)?;
    i8::try_from(code)
        .ok()
        .and_then(ScalarType::from_code)
        .ok_or_else(|| invalid(format!("{code} is not a scalar type")))
}

fn opt_scalar_type(env: &Env<'_>, v: usize) -> Result<Option<ScalarType>> {
    if env.is_none(v)? {
        Ok(None)
    } else {
        scalar_type(env, v).map(Some)
    }
}

fn is_float(t: ScalarType) -> bool {
    matches!(t, ScalarType::Float | ScalarType::Double | ScalarType::Half | ScalarType::BFloat16)
}

/// Range of a quantized dtype, as `check_quantize_per_tensor_args` allows it.
fn quant_bounds(dtype: ScalarType) -> Result<(i64, i64)> {
    Ok(match dtype {
        ScalarType::Byte => (0, 255),
        ScalarType::Char => (-128, 127),
        ScalarType::Bits16 | ScalarType::UInt16 => (0, 65535),
        ScalarType::Short => (i16::MIN as i64, i16::MAX as i64),
        ScalarType::Int => (i32::MIN as i64, i32::MAX as i64),
        other => return Err(RuntimeError::Unsupported(format!("quantizing to {other}"))),
    })
}

/// All elements of a floating-point tensor as f64 (scales).
fn read_f64s(env: &Env<'_>, v: usize) -> Result<Vec<f64>> {
    let t = env.read(v)?;
    match t.dtype {
        ScalarType::Double => Ok(raw::<f64>(t.data)?.to_vec()),
        ScalarType::Float => Ok(raw::<f32>(t.data)?.iter().map(|&x| x as f64).collect()),
        other => Err(invalid(format!("value {v}: expected a Double or Float scale tensor, got {other}"))),
    }
}

/// All elements of an integer tensor as i64 (zero points).
fn read_i64s(env: &Env<'_>, v: usize) -> Result<Vec<i64>> {
    let t = env.read(v)?;
    match t.dtype {
        ScalarType::Long => Ok(raw::<i64>(t.data)?.to_vec()),
        ScalarType::Int => Ok(raw::<i32>(t.data)?.iter().map(|&x| x as i64).collect()),
        other => Err(invalid(format!("value {v}: expected a Long or Int zero-point tensor, got {other}"))),
    }
}

fn single<T: Copy>(what: &str, v: &[T]) -> Result<T> {
    match v {
        [x] => Ok(*x),
        _ => Err(invalid(format!("expected {what} to have one element, got {}", v.len()))),
    }
}

/// Quantizes `input` into `out` with one parameter set per index along `axis` (or one for the
/// whole tensor when `axis` is None). `sizes` is the shape the channels are taken from.
#[allow(clippy::too_many_arguments)]
fn quantize_into(
    env: &mut Env<'_>,
    input: usize,
    out: usize,
    sizes: &[usize],
    axis: Option<usize>,
    params: &[QuantParams],
    quant_min: i64,
    quant_max: i64,
    dtype: ScalarType,
) -> Result<()> {
    let in_dtype = env.dtype(input)?;
    if !is_float(in_dtype) {
        return Err(invalid(format!("quantize: input must be a floating-point tensor, got {in_dtype}")));
    }
    let out_dtype = env.dtype(out)?;
    if out_dtype != dtype {
        return Err(invalid(format!("quantize: out is {out_dtype} but dtype is {dtype}")));
    }
    let (lo, hi) = quant_bounds(dtype)?;
    if quant_min < lo || quant_max > hi {
        return Err(invalid(format!("quantize: [{quant_min}, {quant_max}] is outside the {dtype} range [{lo}, {hi}]")));
    }
    let in_sizes = env.sizes(input)?.to_vec();
    env.resize(out, &in_sizes)?;
    let (channels, inner) = match axis {
        Some(a) => (sizes.get(a).copied().unwrap_or(1), sizes.get(a + 1..).map_or(1, |s| s.iter().product())),
        None => (1, in_sizes.iter().product()),
    };
    if params.len() != channels {
        return Err(invalid(format!("quantize: {} scales/zero points for {channels} channels", params.len())));
    }
    let level = env.level;
    env.run(&[input], &[out], |ins, outs| {
        ferrite_kernels::dispatch!(float el(in_dtype)?, F => ferrite_kernels::dispatch!(quantized quantized_el(out_dtype)?, Q => {
            k::quantize_at::<F, Q>(level, raw(ins[0].data)?, raw_mut(outs[0].data)?, params, inner.max(1), quant_min, quant_max)?;
        }, else other => return Err(RuntimeError::Unsupported(format!("{other} as a quantized type")))), else other => return Err(super::float_only(other)));
        Ok(())
    })
}

/// Dequantizes `input` into `out`; see [`quantize_into`] for `sizes` and `axis`.
#[allow(clippy::too_many_arguments)]
fn dequantize_into(
    env: &mut Env<'_>,
    input: usize,
    out: usize,
    sizes: &[usize],
    axis: Option<usize>,
    params: &[DequantParams],
    quant_min: i64,
    quant_max: i64,
    dtype: ScalarType,
    out_dtype: Option<ScalarType>,
    convert_first: bool,
) -> Result<()> {
    let in_dtype = env.dtype(input)?;
    if !matches!(
        in_dtype,
        ScalarType::Byte
            | ScalarType::Char
            | ScalarType::Bits16
            | ScalarType::UInt16
            | ScalarType::Short
            | ScalarType::Int
    ) {
        return Err(RuntimeError::Unsupported(format!("dequantizing {in_dtype} tensors")));
    }
    if in_dtype != dtype {
        return Err(invalid(format!("dequantize: input is {in_dtype} but dtype is {dtype}")));
    }
    let o_dtype = env.dtype(out)?;
    if let Some(want) = out_dtype {
        if want != o_dtype {
            return Err(invalid(format!("dequantize: out is {o_dtype} but out_dtype is {want}")));
        }
    }
    if quant_min > quant_max {
        return Err(invalid(format!("dequantize: quant_min {quant_min} is greater than quant_max {quant_max}")));
    }
    let in_sizes = env.sizes(input)?.to_vec();
    env.resize(out, &in_sizes)?;
    let (channels, inner) = match axis {
        Some(a) => (sizes.get(a).copied().unwrap_or(1), sizes.get(a + 1..).map_or(1, |s| s.iter().product())),
        None => (1, in_sizes.iter().product()),
    };
    if params.len() != channels {
        return Err(invalid(format!("dequantize: {} scales/zero points for {channels} channels", params.len())));
    }
    env.run(&[input], &[out], |ins, outs| {
        ferrite_kernels::dispatch!(quantized quantized_el(in_dtype)?, Q => ferrite_kernels::dispatch!(float el(o_dtype)?, O => {
            k::dequantize::<Q, O>(raw(ins[0].data)?, raw_mut(outs[0].data)?, params, inner.max(1), convert_first)?;
        }, else other => return Err(super::float_only(other))), else other => return Err(RuntimeError::Unsupported(format!("{other} as a quantized type"))));
        Ok(())
    })
}

// quantize_per_tensor.out(input, float scale, int zero_point, quant_min, quant_max, dtype, *, out)
fn quantize_per_tensor(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let scale = env.double(arg(args, 1)?)?;
    let zp = env.int(arg(args, 2)?)?;
    quantize_per_tensor_common(env, args, scale, zp)
}

// quantize_per_tensor.Tensor_out(input, Tensor scale, Tensor zero_point, quant_min, quant_max, dtype, *, out)
fn quantize_per_tensor_tensor(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let scale = single("scale", &read_f64s(env, arg(args, 1)?)?)?;
    let zp = single("zero_point", &read_i64s(env, arg(args, 2)?)?)?;
    quantize_per_tensor_common(env, args, scale, zp)
}

fn quantize_per_tensor_common(env: &mut Env<'_>, args: &[usize], scale: f64, zp: i64) -> Result<()> {
    let quant_min = env.int(arg(args, 3)?)?;
    let quant_max = env.int(arg(args, 4)?)?;
    let dtype = scalar_type(env, arg(args, 5)?)?;
    let input = arg(args, 0)?;
    quantize_into(env, input, arg(args, 6)?, &[], None, &[QuantParams::new(scale, zp)], quant_min, quant_max, dtype)
}

// dequantize_per_tensor.out(input, float scale, int zero_point, quant_min, quant_max, dtype, *, out_dtype, out)
fn dequantize_per_tensor(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let scale = env.double(arg(args, 1)?)?;
    let zp = env.int(arg(args, 2)?)?;
    dequantize_per_tensor_common(env, args, scale, zp)
}

fn dequantize_per_tensor_tensor(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let scale = single("scale", &read_f64s(env, arg(args, 1)?)?)?;
    let zp = single("zero_point", &read_i64s(env, arg(args, 2)?)?)?;
    dequantize_per_tensor_common(env, args, scale, zp)
}

fn dequantize_per_tensor_common(env: &mut Env<'_>, args: &[usize], scale: f64, zp: i64) -> Result<()> {
    let quant_min = env.int(arg(args, 3)?)?;
    let quant_max = env.int(arg(args, 4)?)?;
    let dtype = scalar_type(env, arg(args, 5)?)?;
    let out_dtype = opt_scalar_type(env, arg(args, 6)?)?;
    let input = arg(args, 0)?;
    let params = [DequantParams { scale: scale as f32, zero_point: zp as i32 }];
    dequantize_into(env, input, arg(args, 7)?, &[], None, &params, quant_min, quant_max, dtype, out_dtype, false)
}

/// Normalised channel axis of a per-channel operator (a 0-d tensor counts as one dimension).
fn channel_axis(env: &Env<'_>, input: usize, axis: i64) -> Result<(Vec<usize>, usize)> {
    let mut sizes = env.sizes(input)?.to_vec();
    if sizes.is_empty() {
        sizes.push(1);
    }
    let a = norm_dim(axis, sizes.len())?;
    Ok((sizes, a))
}

// quantize_per_channel.out(input, scales, zero_points, axis, quant_min, quant_max, dtype, *, out)
fn quantize_per_channel(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let input = arg(args, 0)?;
    let scales = read_f64s(env, arg(args, 1)?)?;
    let zps = read_i64s(env, arg(args, 2)?)?;
    let (sizes, axis) = channel_axis(env, input, env.int(arg(args, 3)?)?)?;
    let quant_min = env.int(arg(args, 4)?)?;
    let quant_max = env.int(arg(args, 5)?)?;
    let dtype = scalar_type(env, arg(args, 6)?)?;
    if zps.len() != scales.len() {
        return Err(invalid(format!("quantize_per_channel: {} scales but {} zero points", scales.len(), zps.len())));
    }
    let params: Vec<QuantParams> = scales.iter().zip(&zps).map(|(&s, &z)| QuantParams::new(s, z)).collect();
    quantize_into(env, input, arg(args, 7)?, &sizes, Some(axis), &params, quant_min, quant_max, dtype)
}

/// Per-channel dequantization parameters: scales (f32 or f64, used as f32) and optional zero points.
fn dequant_params(env: &Env<'_>, scales: usize, zero_points: Option<usize>) -> Result<Vec<DequantParams>> {
    let scales = read_f64s(env, scales)?;
    let zps = match zero_points {
        Some(z) => read_i64s(env, z)?,
        None => vec![0; scales.len()],
    };
    if zps.len() != scales.len() {
        return Err(invalid(format!("dequantize: {} scales but {} zero points", scales.len(), zps.len())));
    }
    Ok(scales.iter().zip(&zps).map(|(&s, &z)| DequantParams { scale: s as f32, zero_point: z as i32 }).collect())
}

// dequantize_per_channel.out(input, scales, zero_points?, axis, quant_min, quant_max, dtype, *, out_dtype, out)
fn dequantize_per_channel(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let input = arg(args, 0)?;
    let zp_arg = arg(args, 2)?;
    let zp = if env.is_none(zp_arg)? { None } else { Some(zp_arg) };
    let params = dequant_params(env, arg(args, 1)?, zp)?;
    let (sizes, axis) = channel_axis(env, input, env.int(arg(args, 3)?)?)?;
    let quant_min = env.int(arg(args, 4)?)?;
    let quant_max = env.int(arg(args, 5)?)?;
    let dtype = scalar_type(env, arg(args, 6)?)?;
    let out_dtype = opt_scalar_type(env, arg(args, 7)?)?;
    // ExecuTorch converts to the output type before scaling for 1-D inputs only.
    let one_d = env.sizes(input)?.len() == 1;
    dequantize_into(
        env,
        input,
        arg(args, 8)?,
        &sizes,
        Some(axis),
        &params,
        quant_min,
        quant_max,
        dtype,
        out_dtype,
        one_d,
    )
}

// dequantize_per_channel_group.out(input, scales, zero_points?, quant_min, quant_max, dtype,
//     group_size, output_dtype, *, out) — PyTorch's definition (ExecuTorch has no kernel):
// `(input - zero_points) * scales` per group of `group_size` along each row, unclamped.
fn dequantize_per_channel_group(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (input, scales, zp_arg) = (arg(args, 0)?, arg(args, 1)?, arg(args, 2)?);
    let zps = if env.is_none(zp_arg)? { None } else { Some(read_i64s(env, zp_arg)?) };
    let dtype = scalar_type(env, arg(args, 5)?)?;
    let mut group = env.int(arg(args, 6)?)?;
    let out_dtype = scalar_type(env, arg(args, 7)?)?;
    let out = arg(args, 8)?;
    let sizes = env.sizes(input)?.to_vec();
    let [rows, cols] = sizes[..] else {
        return Err(invalid(format!("dequantize_per_channel_group: input must be 2-D, got {sizes:?}")));
    };
    let in_dtype = env.dtype(input)?;
    if in_dtype != dtype {
        return Err(invalid(format!("dequantize_per_channel_group: input is {in_dtype} but dtype says {dtype}")));
    }
    if group <= 1 {
        return Err(invalid(format!("dequantize_per_channel_group: group_size {group} must be > 1")));
    }
    let s_numel: usize = env.sizes(scales)?.iter().product();
    // PyTorch's single-column case (GPTQ): one scale per row and a group wider than the row.
    if group as usize > cols && s_numel == rows {
        group = cols as i64;
    }
    let group = group as usize;
    if cols % group != 0 {
        return Err(invalid(format!(
            "dequantize_per_channel_group: {cols} columns are not a multiple of group_size {group}"
        )));
    }
    let s_dtype = env.dtype(scales)?;
    if !matches!(s_dtype, ScalarType::Float | ScalarType::Half | ScalarType::BFloat16) {
        return Err(RuntimeError::Unsupported(format!("dequantize_per_channel_group with {s_dtype} scales")));
    }
    env.resize(out, &sizes)?;
    let o_dtype = env.dtype(out)?;
    if o_dtype != out_dtype {
        return Err(invalid(format!("dequantize_per_channel_group: out is {o_dtype} but output_dtype is {out_dtype}")));
    }
    env.run(&[input, scales], &[out], |ins, outs| {
        let zp = zps.as_deref();
        ferrite_kernels::dispatch!(quantized quantized_el(in_dtype)?, Q => ferrite_kernels::dispatch!(float el(s_dtype)?, S => ferrite_kernels::dispatch!(float el(o_dtype)?, O => {
            k::dequantize_per_channel_group::<Q, S, O>(raw(ins[0].data)?, raw(ins[1].data)?, zp, group, raw_mut(outs[0].data)?)?;
        }, else other => return Err(super::float_only(other))), else other => return Err(super::float_only(other))), else other => return Err(RuntimeError::Unsupported(format!("dequantize_per_channel_group of {other} values"))));
        Ok(())
    })
}

/// The checks ExecuTorch's `mixed_mm` and `mixed_linear` share: 2-D float/half input, int8 2-D
/// weight, scales of the input's type, no zero points (ExecuTorch does not support them).
fn check_mixed(
    env: &Env<'_>,
    name: &str,
    input: usize,
    weight: usize,
    scales: usize,
    zp: usize,
) -> Result<(usize, usize, usize)> {
    let x = env.sizes(input)?.to_vec();
    let w = env.sizes(weight)?.to_vec();
    let (&[m, _], &[a, b]) = (&x[..], &w[..]) else {
        return Err(invalid(format!("{name}: input {x:?} and weight {w:?} must be 2-D")));
    };
    let t = env.dtype(input)?;
    if !matches!(t, ScalarType::Float | ScalarType::Half) {
        return Err(invalid(format!("{name}: input must be Float or Half, got {t}")));
    }
    if env.dtype(weight)? != ScalarType::Char {
        return Err(invalid(format!("{name}: weight must be int8 (Char), got {}", env.dtype(weight)?)));
    }
    if env.dtype(scales)? != t {
        return Err(invalid(format!("{name}: scales are {} but the input is {t}", env.dtype(scales)?)));
    }
    if !env.is_none(zp)? {
        return Err(RuntimeError::Unsupported(format!(
            "{name} with weight zero points (ExecuTorch does not support them either)"
        )));
    }
    Ok((a, b, m))
}

// mixed_linear.out(input, weight, weight_scales, weight_zero_points?, dtype?, *, out)
fn mixed_linear(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    const NAME: &str = "mixed_linear";
    let (input, weight, scales) = (arg(args, 0)?, arg(args, 1)?, arg(args, 2)?);
    let (p, n, m) = check_mixed(env, NAME, input, weight, scales, arg(args, 3)?)?;
    let dtype = opt_scalar_type(env, arg(args, 4)?)?;
    let out = arg(args, 5)?;
    if env.sizes(input)?[1] != n {
        return Err(invalid(format!("{NAME}: input has {} columns but the weight {n}", env.sizes(input)?[1])));
    }
    let s_sizes = env.sizes(scales)?.to_vec();
    let groups = match s_sizes[..] {
        [r] if r == p => 1,
        [r, g] if r == p && g > 0 => g,
        _ => return Err(invalid(format!("{NAME}: scales {s_sizes:?} do not match a weight with {p} rows"))),
    };
    env.resize(out, &[m, p])?;
    let o_dtype = env.dtype(out)?;
    if let Some(d) = dtype {
        if d != o_dtype {
            return Err(invalid(format!("{NAME}: out is {o_dtype} but dtype is {d}")));
        }
    }
    if !matches!(o_dtype, ScalarType::Float | ScalarType::Half) {
        return Err(invalid(format!("{NAME}: output must be Float or Half, got {o_dtype}")));
    }
    let in_dtype = env.dtype(input)?;
    env.run(&[input, weight, scales], &[out], |ins, outs| {
        ferrite_kernels::dispatch!(float el(in_dtype)?, U => ferrite_kernels::dispatch!(float el(o_dtype)?, T => {
            k::mixed_linear::<U, T>(raw(ins[0].data)?, raw(ins[1].data)?, raw(ins[2].data)?, (m, n, p, groups), raw_mut(outs[0].data)?)?;
        }, else other => return Err(super::float_only(other))), else other => return Err(super::float_only(other)));
        Ok(())
    })
}

// mixed_mm.out(input, weight, weight_scales, weight_zero_points?, *, out)
fn mixed_mm(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    const NAME: &str = "mixed_mm";
    let (input, weight, scales) = (arg(args, 0)?, arg(args, 1)?, arg(args, 2)?);
    let (n, p, m) = check_mixed(env, NAME, input, weight, scales, arg(args, 3)?)?;
    let out = arg(args, 4)?;
    if env.sizes(input)?[1] != n {
        return Err(invalid(format!("{NAME}: input has {} columns but the weight {n} rows", env.sizes(input)?[1])));
    }
    if env.sizes(scales)? != [n] {
        return Err(invalid(format!("{NAME}: scales {:?} must be 1-D with {n} entries", env.sizes(scales)?)));
    }
    env.resize(out, &[m, p])?;
    let t = env.dtype(input)?;
    if env.dtype(out)? != t {
        return Err(invalid(format!("{NAME}: out is {} but the input is {t}", env.dtype(out)?)));
    }
    env.run(&[input, weight, scales], &[out], |ins, outs| {
        ferrite_kernels::dispatch!(float el(t)?, T => {
            k::mixed_mm::<T>(raw(ins[0].data)?, raw(ins[1].data)?, raw(ins[2].data)?, (m, n, p), raw_mut(outs[0].data)?)?;
        }, else other => return Err(super::float_only(other)));
        Ok(())
    })
}

/// `[tokens, last]`: the 2-D view per-token operators work on.
fn token_view(env: &Env<'_>, input: usize) -> Result<Vec<usize>> {
    let sizes = env.sizes(input)?;
    let (last, lead) =
        sizes.split_last().ok_or_else(|| invalid("per-token quantization needs a tensor of rank >= 1".into()))?;
    Ok(vec![lead.iter().product(), *last])
}

// quantize_per_token.out(input, scales, zero_points, quant_min, quant_max, dtype, *, out)
fn quantize_per_token(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let input = arg(args, 0)?;
    let view = token_view(env, input)?;
    let scales = read_f64s(env, arg(args, 1)?)?;
    let zps = read_i64s(env, arg(args, 2)?)?;
    let quant_min = env.int(arg(args, 3)?)?;
    let quant_max = env.int(arg(args, 4)?)?;
    let dtype = scalar_type(env, arg(args, 5)?)?;
    if zps.len() != scales.len() {
        return Err(invalid(format!("quantize_per_token: {} scales but {} zero points", scales.len(), zps.len())));
    }
    let params: Vec<QuantParams> = scales.iter().zip(&zps).map(|(&s, &z)| QuantParams::new(s, z)).collect();
    quantize_into(env, input, arg(args, 6)?, &view, Some(0), &params, quant_min, quant_max, dtype)
}

// dequantize_per_token.out(input, scales, zero_points, quant_min, quant_max, dtype, output_dtype, *, out)
fn dequantize_per_token(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let input = arg(args, 0)?;
    let view = token_view(env, input)?;
    let params = dequant_params(env, arg(args, 1)?, Some(arg(args, 2)?))?;
    let quant_min = env.int(arg(args, 3)?)?;
    let quant_max = env.int(arg(args, 4)?)?;
    let dtype = scalar_type(env, arg(args, 5)?)?;
    let out_dtype = scalar_type(env, arg(args, 6)?)?;
    dequantize_into(
        env,
        input,
        arg(args, 7)?,
        &view,
        Some(0),
        &params,
        quant_min,
        quant_max,
        dtype,
        Some(out_dtype),
        false,
    )
}

/// The checks ExecuTorch's choose_qparams operators share.
fn check_choose_qparams(
    env: &Env<'_>,
    input: usize,
    qmin: i64,
    qmax: i64,
    scale_out: usize,
    zp_out: usize,
) -> Result<()> {
    if qmin >= qmax {
        return Err(invalid(format!("choose_qparams: quant_min {qmin} must be less than quant_max {qmax}")));
    }
    let t = env.dtype(input)?;
    if t != ScalarType::Float {
        return Err(RuntimeError::Unsupported(format!("choose_qparams of {t} tensors (Float only, as in ExecuTorch)")));
    }
    if env.dtype(scale_out)? != ScalarType::Double {
        return Err(invalid(format!("choose_qparams: scale_out must be Double, got {}", env.dtype(scale_out)?)));
    }
    if env.dtype(zp_out)? != ScalarType::Long {
        return Err(invalid(format!("choose_qparams: zero_point_out must be Long, got {}", env.dtype(zp_out)?)));
    }
    Ok(())
}

// choose_qparams.Tensor_out(input, quant_min, quant_max, float eps, dtype, *, scale_out, zero_point_out)
// (eps and dtype are unused, as in ExecuTorch)
fn choose_qparams(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let input = arg(args, 0)?;
    let qmin = env.int(arg(args, 1)?)?;
    let qmax = env.int(arg(args, 2)?)?;
    let (scale_out, zp_out) = (arg(args, 5)?, arg(args, 6)?);
    check_choose_qparams(env, input, qmin, qmax, scale_out, zp_out)?;
    for (v, name) in [(scale_out, "scale_out"), (zp_out, "zero_point_out")] {
        let n: usize = env.sizes(v)?.iter().product();
        if n != 1 {
            return Err(invalid(format!("choose_qparams: {name} must have one element, has {n}")));
        }
    }
    env.run(&[input], &[scale_out, zp_out], |ins, outs| {
        let (scale, zp) = k::choose_qparams(raw::<f32>(ins[0].data)?, qmin as i32, qmax as i32)?;
        raw_mut::<f64>(outs[0].data)?.fill(scale);
        raw_mut::<i64>(outs[1].data)?.fill(zp as i64);
        Ok(())
    })
}

// choose_qparams_per_token_asymmetric.out(input, dtype, *, scale_out, zero_point_out)
fn choose_qparams_per_token(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    const QMIN: i64 = -128;
    const QMAX: i64 = 127;
    let input = arg(args, 0)?;
    let (scale_out, zp_out) = (arg(args, 2)?, arg(args, 3)?);
    let mut out_sizes = env.sizes(input)?.to_vec();
    let token_len = match out_sizes.last_mut() {
        Some(last) => std::mem::replace(last, 1),
        None => return Err(invalid("choose_qparams_per_token_asymmetric needs a tensor of rank >= 1".into())),
    };
    env.resize(scale_out, &out_sizes)?;
    env.resize(zp_out, &out_sizes)?;
    check_choose_qparams(env, input, QMIN, QMAX, scale_out, zp_out)?;
    env.run(&[input], &[scale_out, zp_out], |ins, outs| {
        let (s, z) = outs.split_at_mut(1);
        k::choose_qparams_per_token(
            raw::<f32>(ins[0].data)?,
            token_len,
            QMIN as i32,
            QMAX as i32,
            raw_mut::<f64>(s[0].data)?,
            raw_mut::<i64>(z[0].data)?,
        )?;
        Ok(())
    })
}

// add.out(a, a_scale, a_zero_point, a_quant_min, a_quant_max, b, b_scale, b_zero_point,
//     b_quant_min, b_quant_max, out_scale, out_zero_point, out_quant_min, out_quant_max, *, out)
fn add(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, b, out) = (arg(args, 0)?, arg(args, 5)?, arg(args, 14)?);
    let int = |i: usize| env.int(arg(args, i)?);
    let (a_zp, a_min, a_max) = (int(2)?, int(3)?, int(4)?);
    let (b_zp, b_min, b_max) = (int(7)?, int(8)?, int(9)?);
    let (o_zp, o_min, o_max) = (int(11)?, int(12)?, int(13)?);
    let (a_scale, b_scale, o_scale) =
        (env.double(arg(args, 1)?)?, env.double(arg(args, 6)?)?, env.double(arg(args, 10)?)?);
    for (name, lo, hi) in [("a", a_min, a_max), ("b", b_min, b_max), ("out", o_min, o_max)] {
        if lo < 0 || hi > 255 || lo > hi {
            return Err(invalid(format!(
                "quantized add: invalid quant range [{lo}, {hi}] for {name}; it must lie in [0, 255]"
            )));
        }
    }
    let dtype = env.dtype(a)?;
    if env.dtype(b)? != dtype || env.dtype(out)? != dtype {
        return Err(invalid(format!(
            "quantized add: a, b and out must share a dtype ({dtype}, {}, {})",
            env.dtype(b)?,
            env.dtype(out)?
        )));
    }
    let sizes = env.sizes(a)?.to_vec();
    if env.sizes(b)? != sizes.as_slice() {
        return Err(invalid(format!("quantized add: a {sizes:?} and b {:?} must have the same shape", env.sizes(b)?)));
    }
    env.resize(out, &sizes)?;
    let pa = DequantParams { scale: a_scale as f32, zero_point: a_zp as i32 };
    let pb = DequantParams { scale: b_scale as f32, zero_point: b_zp as i32 };
    let po = QuantParams::new(o_scale as f32 as f64, o_zp);
    env.run(&[a, b], &[out], |ins, outs| {
        macro_rules! go {
            ($t:ty) => {
                k::add::<$t>(raw(ins[0].data)?, pa, raw(ins[1].data)?, pb, raw_mut(outs[0].data)?, po, o_min, o_max)?
            };
        }
        match dtype {
            ScalarType::Byte => go!(u8),
            ScalarType::Char => go!(i8),
            ScalarType::Short => go!(i16),
            ScalarType::Int => go!(i32),
            ScalarType::Long => go!(i64),
            other => return Err(RuntimeError::Unsupported(format!("quantized add of {other} tensors"))),
        }
        Ok(())
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bits {
    Byte,
    Four,
    Two,
}

// embedding_{byte,4bit,2bit}.out(weight, weight_scales, weight_zero_points?, weight_quant_min,
//     weight_quant_max, indices, *, out)
// embedding_{byte,4bit,2bit}.dtype_out(..., indices, dtype?, *, out)
fn embedding(env: &mut Env<'_>, args: &[usize], bits: Bits, with_dtype: bool) -> Result<()> {
    let weight = arg(args, 0)?;
    let scales = arg(args, 1)?;
    let zp_arg = arg(args, 2)?;
    let zps = if env.is_none(zp_arg)? { None } else { Some(zp_arg) };
    let qmin = env.int(arg(args, 3)?)?;
    let qmax = env.int(arg(args, 4)?)?;
    let indices = arg(args, 5)?;
    let (out_dtype, out) =
        if with_dtype { (opt_scalar_type(env, arg(args, 6)?)?, arg(args, 7)?) } else { (None, arg(args, 6)?) };

    let w_sizes = env.sizes(weight)?.to_vec();
    let [rows, row_bytes] = w_sizes[..] else {
        return Err(invalid(format!("quantized embedding: weight must be 2-D, got {w_sizes:?}")));
    };
    let w_dtype = env.dtype(weight)?;
    let kind = match (bits, w_dtype) {
        (Bits::Byte, ScalarType::Byte) => EmbeddingWeight::U8,
        (Bits::Byte, ScalarType::Char) => EmbeddingWeight::I8,
        (Bits::Four, ScalarType::Byte) => EmbeddingWeight::Bits4,
        (Bits::Two, ScalarType::Byte) => EmbeddingWeight::Bits2,
        _ => return Err(RuntimeError::Unsupported(format!("quantized embedding with a {w_dtype} weight"))),
    };
    let dim = row_bytes * kind.per_byte();
    let s_sizes = env.sizes(scales)?.to_vec();
    let groups = match s_sizes[..] {
        [n] if n == rows => 1,
        [n, g] if n == rows => g,
        _ => {
            return Err(invalid(format!(
                "quantized embedding: scales {s_sizes:?} do not match a weight with {rows} rows"
            )))
        }
    };
    if groups == 0 || dim % groups != 0 {
        return Err(invalid(format!(
            "quantized embedding: {groups} groups do not divide the embedding dimension {dim}"
        )));
    }
    let p_dtype = env.dtype(scales)?;
    let o_dtype = env.dtype(out)?;
    if !matches!(o_dtype, ScalarType::Float | ScalarType::Half | ScalarType::BFloat16) {
        return Err(RuntimeError::Unsupported(format!("quantized embedding producing {o_dtype}")));
    }
    if !matches!(p_dtype, ScalarType::Float | ScalarType::Half | ScalarType::BFloat16) {
        return Err(RuntimeError::Unsupported(format!("quantized embedding with {p_dtype} scales")));
    }
    // The plain `.out` overloads read the scales as the output type.
    if !with_dtype && p_dtype != o_dtype {
        return Err(invalid(format!("quantized embedding: scales are {p_dtype} but out is {o_dtype}")));
    }
    if let Some(z) = zps {
        if env.sizes(z)? != s_sizes.as_slice() {
            return Err(invalid(format!(
                "quantized embedding: zero points {:?} do not match scales {s_sizes:?}",
                env.sizes(z)?
            )));
        }
        // ExecuTorch checks the zero points against the output type but reads them as the
        // scales' type; requiring both keeps the read well defined.
        if env.dtype(z)? != o_dtype || env.dtype(z)? != p_dtype {
            return Err(invalid(format!(
                "quantized embedding: zero points are {} but scales/out are {p_dtype}/{o_dtype}",
                env.dtype(z)?
            )));
        }
    }
    let i_dtype = env.dtype(indices)?;
    let indices_ok = match bits {
        Bits::Byte => i_dtype == ScalarType::Long,
        Bits::Four | Bits::Two => matches!(i_dtype, ScalarType::Long | ScalarType::Int),
    };
    if !indices_ok {
        return Err(invalid(format!(
            "quantized embedding: indices must be Long{}, got {i_dtype}",
            if bits == Bits::Byte { "" } else { " or Int" }
        )));
    }
    if qmin > qmax {
        return Err(invalid(format!(
            "quantized embedding: weight_quant_min {qmin} is greater than weight_quant_max {qmax}"
        )));
    }
    if let Some(want) = out_dtype {
        if want != o_dtype {
            return Err(invalid(format!("quantized embedding: out is {o_dtype} but dtype is {want}")));
        }
    }
    let mut out_sizes = env.sizes(indices)?.to_vec();
    out_sizes.push(dim);
    env.resize(out, &out_sizes)?;

    let mut inputs = vec![weight, scales, indices];
    inputs.extend(zps);
    env.run(&inputs, &[out], |ins, outs| {
        let idx: Vec<i64> = match ins[2].dtype {
            ScalarType::Int => raw::<i32>(ins[2].data)?.iter().map(|&i| i as i64).collect(),
            _ => raw::<i64>(ins[2].data)?.to_vec(),
        };
        ferrite_kernels::dispatch!(float el(p_dtype)?, P => ferrite_kernels::dispatch!(float el(o_dtype)?, O => {
            let zp = match ins.get(3) {
                Some(z) => Some(raw::<P>(z.data)?),
                None => None,
            };
            k::embedding::<P, O>(kind, ins[0].data, rows, row_bytes, raw(ins[1].data)?, zp, groups, &idx, raw_mut(outs[0].data)?)?;
        }, else other => return Err(super::float_only(other))), else other => return Err(super::float_only(other)));
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_every_quantize_dequantize_overload() {
        let mut r = KernelRegistry::empty();
        register(&mut r);
        for name in [
            "quantize_per_tensor.out",
            "quantize_per_tensor.Tensor_out",
            "dequantize_per_tensor.out",
            "dequantize_per_tensor.Tensor_out",
            "quantize_per_channel.out",
            "dequantize_per_channel.out",
            "dequantize_per_channel_group.out",
            "mixed_linear.out",
            "mixed_mm.out",
            "quantize_per_token.out",
            "dequantize_per_token.out",
            "choose_qparams.Tensor_out",
            "choose_qparams_per_token_asymmetric.out",
            "add.out",
            "embedding_byte.out",
            "embedding_byte.dtype_out",
            "embedding_4bit.out",
            "embedding_4bit.dtype_out",
            "embedding_2bit.out",
            "embedding_2bit.dtype_out",
        ] {
            assert!(r.get(&format!("quantized_decomposed::{name}")).is_some(), "{name}");
        }
    }

    #[test]
    fn bounds_of_quantized_types() {
        assert_eq!(quant_bounds(ScalarType::Char).ok(), Some((-128, 127)));
        assert_eq!(quant_bounds(ScalarType::Byte).ok(), Some((0, 255)));
        assert_eq!(quant_bounds(ScalarType::Bits16).ok(), Some((0, 65535)));
        assert!(quant_bounds(ScalarType::Long).is_err());
    }
}
