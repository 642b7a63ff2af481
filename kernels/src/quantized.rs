//! Affine quantization kernels: quantize, dequantize, choose_qparams and the dequantizing
//! embedding lookups of ExecuTorch's `quantized_decomposed` library.
//!
//! The arithmetic follows ExecuTorch's `kernels/quantized/cpu` step by step, because programs
//! are checked against its outputs and dynamic quantization must reproduce its scales and zero
//! points bit for bit:
//!
//! * quantize: `inv_scale = 1.0f / (float)scale`, then
//!   `q = (float)zero_point + nearbyint((float)(inv_scale * x))` in single precision (round half
//!   to even), converted to `i64` as x86-64 does (NaN and out-of-range values become `i64::MIN`),
//!   then `max(quant_min)` and `min(quant_max)` in that order.
//! * dequantize: `(float)((i32)q - (i32)zero_point) * (float)scale`, rounded to the output type.
//! * choose_qparams: PyTorch's `ChooseQuantizationParams` with the min/max of the input (taken the
//!   way `std::min_element`/`std::max_element` do), double-precision scale and the small-scale cut
//!   off at `6.1e-5f`.

use crate::num::{DType, Element, Float, Integer};
use crate::simd::Level;
use crate::{KResult, KernelError};

/// Elements per parallel task of the element-wise kernels.
const CHUNK: usize = 1 << 14;

/// `inv_scale * x` as ExecuTorch's `quantize_val` computes it, rounded to `f32` (in double
/// precision for f64 inputs).
#[inline(always)]
fn times_inv_scale<F: Float>(x: F, inv_scale: f32) -> f32 {
    match F::DTYPE {
        DType::F64 => (f64::from(inv_scale) * x.to_f64()) as f32,
        _ => inv_scale * x.to_f32(),
    }
}

/// `static_cast<O>(diff) * scale` stored as `O` (the 1-D `dequantize_per_channel` path, which
/// converts before multiplying; in double precision for f64 outputs).
#[inline(always)]
fn cast_then_scale<O: Float>(diff: i32, scale: f32) -> O {
    match O::DTYPE {
        DType::F64 => O::from_f64(f64::from(diff) * f64::from(scale)),
        _ => O::from_f32(O::from_f32(diff as f32).to_f32() * scale),
    }
}

/// A stored quantized value widened to `i32` (exact for every type quantized values use).
#[inline(always)]
fn widen<Q: Integer>(q: Q) -> i32 {
    q.to_i64() as i32
}

/// `static_cast<int64_t>(x)` for a float on x86-64 (`cvttss2si`): truncation, and the "integer
/// indefinite" value `i64::MIN` for NaN and values outside the `i64` range.
#[inline(always)]
pub fn f32_to_i64_x86(x: f32) -> i64 {
    const LIMIT: f32 = 9_223_372_036_854_775_808.0; // 2^63
    if x.is_nan() || !(-LIMIT..LIMIT).contains(&x) {
        i64::MIN
    } else {
        x as i64
    }
}

/// `static_cast<int32_t>(x)` for a float on x86-64: `i32::MIN` for NaN and out-of-range values.
#[inline(always)]
pub fn f32_to_i32_x86(x: f32) -> i32 {
    const LIMIT: f32 = 2_147_483_648.0; // 2^31
    if x.is_nan() || !(-LIMIT..LIMIT).contains(&x) {
        i32::MIN
    } else {
        x as i32
    }
}

/// Quantization parameters of one channel as the quantize loop uses them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantParams {
    /// `1.0f / (float)scale`.
    pub inv_scale: f32,
    /// `(int32_t)zero_point`.
    pub zero_point: i32,
}

impl QuantParams {
    /// Parameters for `scale` (double) and `zero_point` (int64) as the operator receives them.
    pub fn new(scale: f64, zero_point: i64) -> Self {
        Self { inv_scale: 1.0f32 / scale as f32, zero_point: zero_point as i32 }
    }
}

/// `nearbyint` in the default rounding mode (round half to even), without a libm call: for
/// `|v| < 2²³`, adding 2²³ leaves a unit in the last place of 1, so the addition itself rounds to
/// an integer, and subtracting it back is exact; larger values, infinities and NaN are returned
/// as they are (they are integers or have no integer). The sign of zero is kept. Inlines and
/// vectorises, unlike `f32::round_ties_even` on baseline x86-64, which calls `rintf`.
#[inline(always)]
pub fn rint(v: f32) -> f32 {
    const TWO_23: f32 = 8_388_608.0;
    let a = v.abs();
    if a < TWO_23 {
        ((a + TWO_23) - TWO_23).copysign(v)
    } else {
        v
    }
}

/// Quantizes one value (ExecuTorch's `quantize_val`).
#[inline(always)]
pub fn quantize_value<F: Float>(x: F, p: QuantParams, quant_min: i64, quant_max: i64) -> i64 {
    let rounded = rint(times_inv_scale(x, p.inv_scale));
    let q = f32_to_i64_x86(p.zero_point as f32 + rounded);
    q.max(quant_min).min(quant_max)
}

/// Splits the flat range `[base, base + len)` into runs of one channel (channels repeat every
/// `inner` elements) and calls `f(channel, start offset within the range, run length)`, so the
/// per-element loops see fixed parameters and vectorise.
#[inline(always)]
fn channel_runs(base: usize, len: usize, inner: usize, channels: usize, mut f: impl FnMut(usize, usize, usize)) {
    if channels == 1 {
        return f(0, 0, len);
    }
    let mut k = 0;
    while k < len {
        let pos = base + k;
        let run = (inner - pos % inner).min(len - k);
        f((pos / inner) % channels, k, run);
        k += run;
    }
}

fn check_channels(what: &'static str, n: usize, inner: usize, channels: usize) -> KResult {
    if channels == 0 || inner == 0 {
        if n == 0 {
            return Ok(());
        }
        return Err(KernelError::Shape(format!("{what}: {channels} channels of {inner} elements for {n} elements")));
    }
    if !n.is_multiple_of(inner * channels) {
        return Err(KernelError::Shape(format!(
            "{what}: {n} elements do not split into {channels} channels of {inner}"
        )));
    }
    Ok(())
}

/// Quantizes `input` into `out`. Element `i` uses `params[(i / inner) % params.len()]`
/// (per tensor: one parameter set; per channel: one per index along the channel axis, `inner`
/// being the product of the sizes after that axis). Results are clamped to
/// `[quant_min, quant_max]`, which the caller has checked lie within `Q`'s range. Compiled for
/// the baseline; [`quantize_at`] runs the same loop compiled for a SIMD level.
pub fn quantize<F: Float, Q: Integer>(
    input: &[F],
    out: &mut [Q],
    params: &[QuantParams],
    inner: usize,
    quant_min: i64,
    quant_max: i64,
) -> KResult {
    quantize_at(Level::Portable, input, out, params, inner, quant_min, quant_max)
}

/// [`quantize`] with its loop compiled for `level` (the same results at every level).
pub fn quantize_at<F: Float, Q: Integer>(
    level: Level,
    input: &[F],
    out: &mut [Q],
    params: &[QuantParams],
    inner: usize,
    quant_min: i64,
    quant_max: i64,
) -> KResult {
    if input.len() != out.len() {
        return Err(KernelError::Length { what: "quantize output", expected: input.len(), actual: out.len() });
    }
    check_channels("quantize", input.len(), inner, params.len())?;
    if quant_min > quant_max || quant_min < Q::LOWEST || quant_max > Q::HIGHEST {
        return Err(KernelError::Argument(format!(
            "quantize: range [{quant_min}, {quant_max}] is empty or outside the output type's"
        )));
    }
    let bounds = (quant_min as i32 as f32, quant_max as i32 as f32);
    let body = |c: usize, o: &mut [Q], x: &[F]| {
        crate::simd::compiled_for(level, QuantizeChunk { o, x, params, base: c * CHUNK, inner, bounds });
    };
    crate::par::chunks_with_input(out, CHUNK, input, CHUNK, super::threads() > 1, body);
    Ok(())
}

/// One chunk of [`quantize_at`], starting at element `base` of the tensor.
struct QuantizeChunk<'a, F, Q> {
    o: &'a mut [Q],
    x: &'a [F],
    params: &'a [QuantParams],
    base: usize,
    inner: usize,
    /// `quant_min` and `quant_max` as `f32`.
    bounds: (f32, f32),
}

impl<F: Float, Q: Integer> crate::simd::Compiled for QuantizeChunk<'_, F, Q> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let QuantizeChunk { o, x, params, base, inner, bounds } = self;
        let small = bounds.0 >= -4_194_304.0 && bounds.1 <= 4_194_304.0;
        let channels = params.len();
        // `channel_runs` written out: a closure would be compiled out of line, for the baseline.
        let mut k = 0;
        while k < o.len() {
            let pos = base + k;
            let run = if channels == 1 { o.len() } else { (inner - pos % inner).min(o.len() - k) };
            let p = params[if channels == 1 { 0 } else { (pos / inner) % channels }];
            let (o, x) = (&mut o[k..k + run], &x[k..k + run]);
            if small {
                for (o, &x) in o.iter_mut().zip(x) {
                    *o = Q::from_i64(i64::from(magic_to_i32(quantize_clamped(x, p, bounds))));
                }
            } else {
                for (o, &x) in o.iter_mut().zip(x) {
                    *o = Q::from_i64(i64::from(quantize_clamped(x, p, bounds) as i32));
                }
            }
            k += run;
        }
    }
}

/// `quantize_value` up to the conversion, with the clamp done in `f32` so the loop vectorises:
/// the rounded value is an integer, so clamping it in float and converting gives the same
/// integer, and NaN or values outside the `i64` range (x86's "integer indefinite") give
/// `quant_min`. Branch-free; `bounds.1` may round up to 2^31 for an i32 range, which the
/// saturating cast brings back to `i32::MAX`.
#[inline(always)]
fn quantize_clamped<F: Float>(x: F, p: QuantParams, (lo, hi): (f32, f32)) -> f32 {
    const LIMIT: f32 = 9_223_372_036_854_775_808.0; // 2^63
    let v = p.zero_point as f32 + rint(times_inv_scale(x, p.inv_scale));
    if (-LIMIT..LIMIT).contains(&v) {
        v.max(lo).min(hi)
    } else {
        lo
    }
}

/// An integer-valued `f32` below 2^22 in magnitude as `i32`, through the "magic number"
/// 1.5 · 2^23 (an add and a bit cast, which vectorise; `as i32` saturates element by element).
#[inline(always)]
fn magic_to_i32(v: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC).to_bits() as i32 - MAGIC.to_bits() as i32
}

/// Dequantization parameters of one channel: `(float)scale` and `(int32_t)zero_point`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DequantParams {
    /// Scale, in single precision as ExecuTorch uses it.
    pub scale: f32,
    /// Zero point.
    pub zero_point: i32,
}

/// Dequantizes one value: `(float)(q - zero_point) * scale`.
#[inline(always)]
pub fn dequantize_value<Q: Integer, O: Float>(q: Q, p: DequantParams) -> O {
    O::from_f32(widen(q).wrapping_sub(p.zero_point) as f32 * p.scale)
}

/// Dequantizes `input` into `out`, element `i` using `params[(i / inner) % params.len()]`.
/// `convert_first` selects ExecuTorch's 1-D per-channel arithmetic, which converts the difference
/// to the output type before multiplying (it differs only for f64, f16 and bf16 outputs).
pub fn dequantize<Q: Integer, O: Float>(
    input: &[Q],
    out: &mut [O],
    params: &[DequantParams],
    inner: usize,
    convert_first: bool,
) -> KResult {
    if input.len() != out.len() {
        return Err(KernelError::Length { what: "dequantize output", expected: input.len(), actual: out.len() });
    }
    check_channels("dequantize", input.len(), inner, params.len())?;
    let channels = params.len();
    let body = |c: usize, o: &mut [O], x: &[Q]| {
        let base = c * CHUNK;
        channel_runs(base, o.len(), inner, channels, |ch, k, run| {
            let p = params[ch];
            let (o, x) = (&mut o[k..k + run], &x[k..k + run]);
            if convert_first {
                for (o, &q) in o.iter_mut().zip(x) {
                    *o = cast_then_scale(widen(q).wrapping_sub(p.zero_point), p.scale);
                }
            } else {
                for (o, &q) in o.iter_mut().zip(x) {
                    *o = dequantize_value(q, p);
                }
            }
        });
    };
    crate::par::chunks_with_input(out, CHUNK, input, CHUNK, super::threads() > 1, body);
    Ok(())
}

/// `std::min(a, b)`: `b < a ? b : a`.
#[inline(always)]
fn cpp_min(a: f32, b: f32) -> f32 {
    if b < a {
        b
    } else {
        a
    }
}

/// `std::max(a, b)`: `a < b ? b : a`.
#[inline(always)]
fn cpp_max(a: f32, b: f32) -> f32 {
    if a < b {
        b
    } else {
        a
    }
}

/// `*std::min_element` and `*std::max_element` of `x` (NaN handling included: a leading NaN
/// sticks, later NaNs are skipped), or `None` for an empty slice.
pub fn min_max(x: &[f32]) -> Option<(f32, f32)> {
    let (&first, rest) = x.split_first()?;
    let (mut lo, mut hi) = (first, first);
    for &v in rest {
        if v < lo {
            lo = v;
        }
        if hi < v {
            hi = v;
        }
    }
    Some((lo, hi))
}

/// Smallest scale `choose_qparams` produces.
pub const SMALL_SCALE_THRESHOLD: f32 = 6.1e-5;

/// ExecuTorch's `calculate_scale_and_zero_point`: the scale (double) and zero point for values in
/// `[min, max]` quantized to `[qmin, qmax]`. Fails where ExecuTorch aborts (a scale that is NaN or
/// not positive, e.g. from NaN inputs or `qmax - qmin` overflowing `i32`).
pub fn scale_and_zero_point(min: f32, max: f32, qmin: i32, qmax: i32) -> KResult<(f64, i32)> {
    let mut min = cpp_min(min, 0.0);
    let mut max = cpp_max(max, 0.0);
    let range = qmax.wrapping_sub(qmin);
    let mut scale = (max as f64 - min as f64) / range as f64;
    if scale as f32 == 0.0 || (1.0f32 / scale as f32).is_infinite() {
        scale = 0.1;
    }
    if scale.is_nan() || scale <= 0.0 {
        return Err(KernelError::Argument(format!(
            "choose_qparams: quantization scale should be > 0 (got {scale} for the range [{min}, {max}] and quant range [{qmin}, {qmax}])"
        )));
    }
    if scale < SMALL_SCALE_THRESHOLD as f64 {
        let original = scale as f32;
        scale = SMALL_SCALE_THRESHOLD as f64;
        if min == 0.0 {
            max = SMALL_SCALE_THRESHOLD * range as f32;
        } else if max == 0.0 {
            min = -SMALL_SCALE_THRESHOLD * range as f32;
        } else {
            let amplifier = SMALL_SCALE_THRESHOLD / original;
            min *= amplifier;
            max *= amplifier;
        }
    }
    let from_min = qmin as f64 - min as f64 / scale;
    let from_max = qmax as f64 - max as f64 / scale;
    let from_min_error = qmin.wrapping_abs() as f64 - (min as f64 / scale).abs();
    let from_max_error = qmax.wrapping_abs() as f64 - (max as f64 / scale).abs();
    let initial = if from_min_error < from_max_error { from_min } else { from_max };
    let zero_point = if initial < qmin as f64 {
        qmin
    } else if initial > qmax as f64 {
        qmax
    } else {
        f32_to_i32_x86(rint(initial as f32))
    };
    Ok((scale, zero_point))
}

/// `choose_qparams.Tensor_out`: scale and zero point of a whole tensor.
pub fn choose_qparams(x: &[f32], qmin: i32, qmax: i32) -> KResult<(f64, i32)> {
    let (lo, hi) = min_max(x).ok_or_else(|| KernelError::Argument("choose_qparams: the input is empty".into()))?;
    scale_and_zero_point(lo, hi, qmin, qmax)
}

/// `choose_qparams_per_token_asymmetric`: one scale and zero point per row of `token_len`
/// elements, written to `scales` and `zero_points` (one entry per row).
pub fn choose_qparams_per_token(
    x: &[f32],
    token_len: usize,
    qmin: i32,
    qmax: i32,
    scales: &mut [f64],
    zero_points: &mut [i64],
) -> KResult {
    let tokens = scales.len();
    if zero_points.len() != tokens {
        return Err(KernelError::Length {
            what: "choose_qparams zero points",
            expected: tokens,
            actual: zero_points.len(),
        });
    }
    let expected =
        tokens.checked_mul(token_len).ok_or_else(|| KernelError::Shape("choose_qparams: size overflows".into()))?;
    if x.len() != expected {
        return Err(KernelError::Length { what: "choose_qparams input", expected, actual: x.len() });
    }
    if tokens == 0 {
        return Ok(());
    }
    if token_len == 0 {
        return Err(KernelError::Argument("choose_qparams_per_token: tokens are empty".into()));
    }
    let mut params = vec![(0.0f64, 0i32); tokens];
    crate::par::try_chunks(&mut params, 1, super::threads() > 1, |t, p| {
        p[0] = choose_qparams(&x[t * token_len..(t + 1) * token_len], qmin, qmax)?;
        Ok(())
    })?;
    for ((s, z), (scale, zp)) in scales.iter_mut().zip(zero_points.iter_mut()).zip(params) {
        *s = scale;
        *z = i64::from(zp);
    }
    Ok(())
}

/// How the weight of a quantized embedding stores its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingWeight {
    /// One `u8` per value.
    U8,
    /// One `i8` per value.
    I8,
    /// Two 4-bit values per byte, the first in the high nibble, each stored with an offset of 8.
    Bits4,
    /// Four 2-bit values per byte, the first in the lowest bits, each stored with an offset of 2.
    Bits2,
}

impl EmbeddingWeight {
    /// Values per stored byte.
    pub fn per_byte(self) -> usize {
        match self {
            Self::U8 | Self::I8 => 1,
            Self::Bits4 => 2,
            Self::Bits2 => 4,
        }
    }

    /// Value `j` of a row.
    #[inline(always)]
    fn value(self, row: &[u8], j: usize) -> f32 {
        match self {
            Self::U8 => row[j] as f32,
            Self::I8 => row[j] as i8 as f32,
            Self::Bits4 => {
                let b = row[j / 2];
                let nib = if j % 2 == 1 { b & 0x0F } else { b >> 4 };
                (nib as i32 - 8) as f32
            }
            Self::Bits2 => {
                let b = row[j / 4];
                let v = (b >> (2 * (j % 4))) & 3;
                (v as i32 - 2) as f32
            }
        }
    }
}

/// Looks up rows `indices` of a quantized embedding table and dequantizes them:
/// `out = (float)((w - zero_point) * scale)` with the scale and zero point of the row's group.
///
/// `weight` holds `rows` rows of `row_bytes` bytes; `scales` (and `zero_points`, if any) hold
/// `groups` entries per row, each covering `dim / groups` consecutive values, where
/// `dim = row_bytes * kind.per_byte()`. `out` receives `indices.len() * dim` values.
#[allow(clippy::too_many_arguments)]
pub fn embedding<P: Element, O: Element>(
    kind: EmbeddingWeight,
    weight: &[u8],
    rows: usize,
    row_bytes: usize,
    scales: &[P],
    zero_points: Option<&[P]>,
    groups: usize,
    indices: &[i64],
    out: &mut [O],
) -> KResult {
    let dim = row_bytes * kind.per_byte();
    if weight.len() != rows * row_bytes {
        return Err(KernelError::Length { what: "embedding weight", expected: rows * row_bytes, actual: weight.len() });
    }
    if groups == 0 || !dim.is_multiple_of(groups) {
        return Err(KernelError::Shape(format!(
            "embedding: {groups} groups do not divide the embedding dimension {dim}"
        )));
    }
    if scales.len() != rows * groups {
        return Err(KernelError::Length { what: "embedding scales", expected: rows * groups, actual: scales.len() });
    }
    if let Some(z) = zero_points {
        if z.len() != scales.len() {
            return Err(KernelError::Length { what: "embedding zero points", expected: scales.len(), actual: z.len() });
        }
    }
    if out.len() != indices.len() * dim {
        return Err(KernelError::Length { what: "embedding output", expected: indices.len() * dim, actual: out.len() });
    }
    if let Some(&bad) = indices.iter().find(|&&i| i < 0 || i as u64 >= rows as u64) {
        return Err(KernelError::Argument(format!("embedding: index {bad} is out of range for {rows} rows")));
    }
    if dim == 0 {
        return Ok(());
    }
    let group_size = dim / groups;
    let body = |i: usize, o: &mut [O]| {
        let r = indices[i] as usize;
        let row = &weight[r * row_bytes..(r + 1) * row_bytes];
        let s = &scales[r * groups..(r + 1) * groups];
        let z = zero_points.map(|z| &z[r * groups..(r + 1) * groups]);
        for (j, o) in o.iter_mut().enumerate() {
            let g = j / group_size;
            let zp = z.map_or(0.0, |z| z[g].to_f32());
            *o = O::from_f32((kind.value(row, j) - zp) * s[g].to_f32());
        }
    };
    crate::par::chunks(out, dim, super::threads() > 1, body);
    Ok(())
}

/// `quantized_decomposed::add`: dequantizes `a` and `b` (`(float)((double)(x - zp) * (double)scale)`),
/// adds them in `f32` and quantizes the sum with the output parameters (`quantize_value`'s
/// arithmetic), clamped to `[out_min, out_max]`. Integer values are read through `f64` (exact below
/// 2^53).
#[allow(clippy::too_many_arguments)]
pub fn add<T: Element>(
    a: &[T],
    a_params: DequantParams,
    b: &[T],
    b_params: DequantParams,
    out: &mut [T],
    out_params: QuantParams,
    out_min: i64,
    out_max: i64,
) -> KResult {
    if a.len() != out.len() || b.len() != out.len() {
        return Err(KernelError::Shape(format!(
            "quantized add: {} and {} elements into {}",
            a.len(),
            b.len(),
            out.len()
        )));
    }
    let dq =
        |x: T, p: DequantParams| ((x.to_f64() as i64).wrapping_sub(p.zero_point as i64) as f64 * p.scale as f64) as f32;
    let body = |c: usize, o: &mut [T]| {
        let (a, b) = (&a[c * CHUNK..], &b[c * CHUNK..]);
        for (o, (&x, &y)) in o.iter_mut().zip(a.iter().zip(b)) {
            let sum = dq(x, a_params) + dq(y, b_params);
            *o = T::from_f64(quantize_value(sum, out_params, out_min, out_max) as f64);
        }
    };
    crate::par::chunks(out, CHUNK, super::threads() > 1, body);
    Ok(())
}

/// Rows of a weight-quantized product processed per parallel task.
const MIXED_ROWS: usize = 16;

/// `quantized_decomposed::mixed_linear`: `out[i][j] = Σ_groups (Σ_k x[i][k] · w[j][k]) · s[j][g]`
/// for `x` `[m, n]` (type `U`), int8 `w` `[p, n]`, `scales` `[p, groups]` (type `U`, group size
/// `ceil(n / groups)`, the last group possibly shorter) and `out` `[m, p]` (type `T`): ExecuTorch's
/// `vec_quantized_matmul_transb_int8` step by step — each product rounded to `U`, the group sum
/// and the total kept in `T`, summed in order (so f16 results match ExecuTorch's bit for bit).
pub fn mixed_linear<U: Float, T: Float>(
    x: &[U],
    w: &[i8],
    scales: &[U],
    (m, n, p, groups): (usize, usize, usize, usize),
    out: &mut [T],
) -> KResult {
    let shape = |what: &'static str, expected: usize, actual: usize| {
        if expected == actual {
            Ok(())
        } else {
            Err(KernelError::Length { what, expected, actual })
        }
    };
    shape("mixed_linear input", m * n, x.len())?;
    shape("mixed_linear weight", p * n, w.len())?;
    shape("mixed_linear output", m * p, out.len())?;
    if groups == 0 || n == 0 {
        return Err(KernelError::Argument(format!("mixed_linear: {groups} groups over {n} columns")));
    }
    shape("mixed_linear scales", p * groups, scales.len())?;
    let g = n.div_ceil(groups);
    // ExecuTorch indexes the scales by `k / g` with a stride of `ceil(n / g)` groups per row.
    let stride = n.div_ceil(g);
    if stride > groups {
        return Err(KernelError::Argument(format!(
            "mixed_linear: {n} columns in groups of {g} need {stride} scales per row, not {groups}"
        )));
    }
    let body = |c: usize, o: &mut [T]| {
        for (r, orow) in o.chunks_exact_mut(p.max(1)).enumerate() {
            let i = c * MIXED_ROWS + r;
            let xr = &x[i * n..(i + 1) * n];
            for (j, o) in orow.iter_mut().enumerate() {
                let wr = &w[j * n..(j + 1) * n];
                let mut sum = T::from_f32(0.0);
                for (gi, k) in (0..n).step_by(g).enumerate() {
                    let mut psum = T::from_f32(0.0);
                    for k2 in k..(k + g).min(n) {
                        let prod = U::from_f32(xr[k2].to_f32() * f32::from(wr[k2]));
                        psum = T::from_f32(psum.to_f32() + T::from_f32(prod.to_f32()).to_f32());
                    }
                    let scaled = T::from_f32(psum.to_f32() * scales[j * stride + gi].to_f32());
                    sum = T::from_f32(sum.to_f32() + scaled.to_f32());
                }
                *o = sum;
            }
        }
    };
    if p > 0 {
        crate::par::chunks(out, MIXED_ROWS * p, super::threads() > 1 && m * n * p > 1 << 16, body);
    }
    Ok(())
}

/// `quantized_decomposed::mixed_mm`: `out[i][j] = Σ_k x[i][k] · w[k][j] · s[k]` for `x` `[m, n]`,
/// int8 `w` `[n, p]` and one scale per row of `w`, all in `T`: ExecuTorch's
/// `vec_quantized_matmul_int8` (products left to right, summed in order).
pub fn mixed_mm<T: Float>(x: &[T], w: &[i8], scales: &[T], (m, n, p): (usize, usize, usize), out: &mut [T]) -> KResult {
    for (what, expected, actual) in [
        ("mixed_mm input", m * n, x.len()),
        ("mixed_mm weight", n * p, w.len()),
        ("mixed_mm scales", n, scales.len()),
        ("mixed_mm output", m * p, out.len()),
    ] {
        if expected != actual {
            return Err(KernelError::Length { what, expected, actual });
        }
    }
    let body = |c: usize, o: &mut [T]| {
        for (r, orow) in o.chunks_exact_mut(p.max(1)).enumerate() {
            let i = c * MIXED_ROWS + r;
            for (j, o) in orow.iter_mut().enumerate() {
                let mut sum = T::from_f32(0.0);
                for k in 0..n {
                    let xw = T::from_f32(x[i * n + k].to_f32() * f32::from(w[k * p + j]));
                    let term = T::from_f32(xw.to_f32() * scales[k].to_f32());
                    sum = T::from_f32(sum.to_f32() + term.to_f32());
                }
                *o = sum;
            }
        }
    };
    if p > 0 {
        crate::par::chunks(out, MIXED_ROWS * p, super::threads() > 1 && m * n * p > 1 << 16, body);
    }
    Ok(())
}

/// `quantized_decomposed::dequantize_per_channel_group` (PyTorch's definition; ExecuTorch has no
/// kernel for it): `w` `[rows, cols]` in groups of `group` along each row, one scale (type `S`)
/// and optional zero point per group: `out = (O)(S)((w - zp) · scale)` — the product rounded to
/// the scales' type, then converted to the output type.
pub fn dequantize_per_channel_group<Q: Integer, S: Float, O: Float>(
    w: &[Q],
    scales: &[S],
    zero_points: Option<&[i64]>,
    group: usize,
    out: &mut [O],
) -> KResult {
    if w.len() != out.len() {
        return Err(KernelError::Length {
            what: "dequantize_per_channel_group output",
            expected: w.len(),
            actual: out.len(),
        });
    }
    if group == 0 || !w.len().is_multiple_of(group) {
        return Err(KernelError::Argument(format!(
            "dequantize_per_channel_group: groups of {group} over {} values",
            w.len()
        )));
    }
    let groups = w.len() / group;
    if scales.len() != groups {
        return Err(KernelError::Length {
            what: "dequantize_per_channel_group scales",
            expected: groups,
            actual: scales.len(),
        });
    }
    if let Some(z) = zero_points {
        if z.len() != groups {
            return Err(KernelError::Length {
                what: "dequantize_per_channel_group zero points",
                expected: groups,
                actual: z.len(),
            });
        }
    }
    for (gi, (o, q)) in out.chunks_exact_mut(group).zip(w.chunks_exact(group)).enumerate() {
        let (s, z) = (scales[gi].to_f32(), zero_points.map_or(0, |z| z[gi]));
        for (o, &q) in o.iter_mut().zip(q) {
            // int64 difference, converted to float and multiplied in the scales' type.
            let d = q.to_i64().wrapping_sub(z) as f32;
            *o = O::from_f32(S::from_f32(d * s).to_f32());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
