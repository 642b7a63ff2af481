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

use super::{Element, KResult, KernelError};
use half::{bf16, f16};
use rayon::prelude::*;

/// Elements per parallel task of the element-wise kernels.
const CHUNK: usize = 1 << 14;

/// An integer type quantized values are stored in.
pub trait QuantInt: Element + bytemuck::Pod {
    /// Smallest value of the type.
    const LOWEST: i64;
    /// Largest value of the type.
    const HIGHEST: i64;
    /// Narrows a value already clamped into `[LOWEST, HIGHEST]`.
    fn from_clamped(v: i64) -> Self;
    /// Narrows an `i32` already clamped into `[LOWEST, HIGHEST]`.
    fn from_i32(v: i32) -> Self;
    /// Widens to `i32` (`u16` and narrower are exact; `i32` is itself).
    fn widen(self) -> i32;
}

macro_rules! quant_int {
    ($($t:ty),*) => {$(
        impl QuantInt for $t {
            const LOWEST: i64 = <$t>::MIN as i64;
            const HIGHEST: i64 = <$t>::MAX as i64;
            #[inline(always)]
            fn from_clamped(v: i64) -> Self {
                v.max(Self::LOWEST).min(Self::HIGHEST) as $t
            }
            #[inline(always)]
            fn from_i32(v: i32) -> Self {
                v as $t
            }
            #[inline(always)]
            fn widen(self) -> i32 {
                self as i32
            }
        }
    )*};
}
quant_int!(i8, u8, i16, u16, i32);

/// A floating-point type that is quantized from or dequantized to.
pub trait QuantFloat: Element + bytemuck::Pod {
    /// `inv_scale * x` as ExecuTorch's `quantize_val` computes it, rounded to `f32`.
    #[inline(always)]
    fn times_inv_scale(self, inv_scale: f32) -> f32 {
        inv_scale * self.to_f32()
    }
    /// `static_cast<Self>(diff) * scale` stored as `Self` (the 1-D `dequantize_per_channel` path,
    /// which converts before multiplying).
    #[inline(always)]
    fn cast_then_scale(diff: i32, scale: f32) -> Self {
        Self::from_f32(Self::from_f32(diff as f32).to_f32() * scale)
    }
}
impl QuantFloat for f32 {}
impl QuantFloat for f16 {}
impl QuantFloat for bf16 {}
impl QuantFloat for f64 {
    #[inline(always)]
    fn times_inv_scale(self, inv_scale: f32) -> f32 {
        (inv_scale as f64 * self) as f32
    }
    #[inline(always)]
    fn cast_then_scale(diff: i32, scale: f32) -> Self {
        diff as f64 * scale as f64
    }
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
pub fn quantize_value<F: QuantFloat>(x: F, p: QuantParams, quant_min: i64, quant_max: i64) -> i64 {
    let rounded = rint(x.times_inv_scale(p.inv_scale));
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
/// `[quant_min, quant_max]`, which the caller has checked lie within `Q`'s range.
pub fn quantize<F: QuantFloat, Q: QuantInt>(
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
    // `quantize_value` with the clamp done in `f32`/`i32` so the loop vectorises: the rounded
    // value is an integer, so clamping it in float and converting gives the same integer, and
    // NaN or values outside the `i64` range (x86's "integer indefinite") give `quant_min`.
    let (lo_f, hi_f) = (quant_min as i32 as f32, quant_max as i32 as f32);
    let one = move |x: F, p: QuantParams| -> Q {
        const LIMIT: f32 = 9_223_372_036_854_775_808.0; // 2^63
        let v = p.zero_point as f32 + rint(x.times_inv_scale(p.inv_scale));
        // Branch-free: out-of-range and NaN select `lo_f`; `hi_f` may round up to 2^31 for an
        // i32 range, which the saturating cast brings back to `i32::MAX`.
        let c = if (-LIMIT..LIMIT).contains(&v) { v.max(lo_f).min(hi_f) } else { lo_f };
        Q::from_i32(c as i32)
    };
    let channels = params.len();
    let body = |(c, (o, x)): (usize, (&mut [Q], &[F]))| {
        channel_runs(c * CHUNK, o.len(), inner, channels, |ch, k, run| {
            let p = params[ch];
            for (o, &x) in o[k..k + run].iter_mut().zip(&x[k..k + run]) {
                *o = one(x, p);
            }
        });
    };
    if super::threads() > 1 {
        out.par_chunks_mut(CHUNK).zip(input.par_chunks(CHUNK)).enumerate().for_each(body);
    } else {
        out.chunks_mut(CHUNK).zip(input.chunks(CHUNK)).enumerate().for_each(body);
    }
    Ok(())
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
pub fn dequantize_value<Q: QuantInt, O: QuantFloat>(q: Q, p: DequantParams) -> O {
    O::from_f32(q.widen().wrapping_sub(p.zero_point) as f32 * p.scale)
}

/// Dequantizes `input` into `out`, element `i` using `params[(i / inner) % params.len()]`.
/// `convert_first` selects ExecuTorch's 1-D per-channel arithmetic, which converts the difference
/// to the output type before multiplying (it differs only for f64, f16 and bf16 outputs).
pub fn dequantize<Q: QuantInt, O: QuantFloat>(
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
    let body = |(c, (o, x)): (usize, (&mut [O], &[Q]))| {
        let base = c * CHUNK;
        channel_runs(base, o.len(), inner, channels, |ch, k, run| {
            let p = params[ch];
            let (o, x) = (&mut o[k..k + run], &x[k..k + run]);
            if convert_first {
                for (o, &q) in o.iter_mut().zip(x) {
                    *o = O::cast_then_scale(q.widen().wrapping_sub(p.zero_point), p.scale);
                }
            } else {
                for (o, &q) in o.iter_mut().zip(x) {
                    *o = dequantize_value(q, p);
                }
            }
        });
    };
    if super::threads() > 1 {
        out.par_chunks_mut(CHUNK).zip(input.par_chunks(CHUNK)).enumerate().for_each(body);
    } else {
        out.chunks_mut(CHUNK).zip(input.chunks(CHUNK)).enumerate().for_each(body);
    }
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
    let body = |((s, z), row): ((&mut f64, &mut i64), &[f32])| -> KResult {
        let (scale, zp) = choose_qparams(row, qmin, qmax)?;
        *s = scale;
        *z = zp as i64;
        Ok(())
    };
    if super::threads() > 1 {
        scales.par_iter_mut().zip(zero_points.par_iter_mut()).zip(x.par_chunks(token_len)).try_for_each(body)
    } else {
        scales.iter_mut().zip(zero_points.iter_mut()).zip(x.chunks(token_len)).try_for_each(body)
    }
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
    let body = |(o, &index): (&mut [O], &i64)| {
        let r = index as usize;
        let row = &weight[r * row_bytes..(r + 1) * row_bytes];
        let s = &scales[r * groups..(r + 1) * groups];
        let z = zero_points.map(|z| &z[r * groups..(r + 1) * groups]);
        for (j, o) in o.iter_mut().enumerate() {
            let g = j / group_size;
            let zp = z.map_or(0.0, |z| z[g].to_f32());
            *o = O::from_f32((kind.value(row, j) - zp) * s[g].to_f32());
        }
    };
    if super::threads() > 1 {
        out.par_chunks_mut(dim).zip(indices.par_iter()).for_each(body);
    } else {
        out.chunks_mut(dim).zip(indices.iter()).for_each(body);
    }
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
    let body = |(o, (a, b)): (&mut [T], (&[T], &[T]))| {
        for (o, (&x, &y)) in o.iter_mut().zip(a.iter().zip(b)) {
            let sum = dq(x, a_params) + dq(y, b_params);
            *o = T::from_f64(quantize_value(sum, out_params, out_min, out_max) as f64);
        }
    };
    if super::threads() > 1 {
        out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK))).for_each(body);
    } else {
        out.chunks_mut(CHUNK).zip(a.chunks(CHUNK).zip(b.chunks(CHUNK))).for_each(body);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Independent reference for quantize in f64 arithmetic (exact for moderate magnitudes).
    fn ref_quantize(x: f32, scale: f64, zp: i64, qmin: i64, qmax: i64) -> i64 {
        let inv = 1.0f32 / scale as f32;
        let prod = (inv as f64 * x as f64) as f32; // single rounding of the product
        let r = (prod as f64).round_ties_even() as i64;
        (r + zp).max(qmin).min(qmax)
    }

    #[test]
    fn rint_is_round_half_to_even() {
        let specials = [0.0f32, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 8_388_607.5, 8_388_608.0, 16_777_217.0, 1e30, -1e30];
        let edges = [f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE, f32::MAX, 4_194_303.5, -4_194_304.5];
        for v in specials.into_iter().chain(edges) {
            assert_eq!(rint(v).to_bits(), v.round_ties_even().to_bits(), "{v}");
        }
        assert!(rint(f32::NAN).is_nan());
        // Every float between -2^24 and 2^24 on a coarse grid, plus halves near integers.
        let mut state = 0x2545_f491_u32;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let v = f32::from_bits(state);
            if v.is_nan() {
                continue;
            }
            assert_eq!(rint(v).to_bits(), v.round_ties_even().to_bits(), "{v}");
            let h = (state % 40_000) as f32 / 2.0 - 10_000.0;
            assert_eq!(rint(h).to_bits(), h.round_ties_even().to_bits(), "{h}");
        }
    }

    #[test]
    fn vectorised_quantize_equals_quantize_value() {
        // Random bit patterns (NaN, infinities, huge and tiny values) and ordinary values.
        let mut state = 0x9e37_79b9_u32;
        let xs: Vec<f32> = (0..20_000)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                if i % 2 == 0 {
                    f32::from_bits(state)
                } else {
                    (state % 100_000) as f32 / 97.0 - 500.0
                }
            })
            .collect();
        for (scale, zp) in [(0.5, 3), (0.0123, -7), (1e-30, 0), (3.7, 100)] {
            let p = QuantParams::new(scale, zp);
            let mut o8 = vec![0i8; xs.len()];
            quantize(&xs, &mut o8, &[p], xs.len(), -128, 127).unwrap();
            let mut ou = vec![0u8; xs.len()];
            quantize(&xs, &mut ou, &[p], xs.len(), 3, 250).unwrap();
            let mut o32 = vec![0i32; xs.len()];
            quantize(&xs, &mut o32, &[p], xs.len(), i32::MIN as i64, i32::MAX as i64).unwrap();
            for (i, &x) in xs.iter().enumerate() {
                assert_eq!(o8[i] as i64, quantize_value(x, p, -128, 127), "{x}");
                assert_eq!(ou[i] as i64, quantize_value(x, p, 3, 250), "{x}");
                assert_eq!(o32[i] as i64, quantize_value(x, p, i32::MIN as i64, i32::MAX as i64), "{x}");
            }
        }
        let mut o = [0i8; 2];
        assert!(quantize(&[0.0f32, 1.0], &mut o, &[QuantParams::new(1.0, 0)], 2, 5, 4).is_err());
        assert!(quantize(&[0.0f32, 1.0], &mut o, &[QuantParams::new(1.0, 0)], 2, -200, 4).is_err());
    }

    #[test]
    fn quantize_rounds_half_to_even_and_clamps() {
        let p = QuantParams::new(0.5, 3);
        // x / 0.5 = 2x: 0.25 -> 0.5 -> 0; 0.75 -> 1.5 -> 2; -0.25 -> -0.5 -> -0; 1.25 -> 2.5 -> 2
        let xs = [0.25f32, 0.75, -0.25, 1.25, 100.0, -100.0];
        let mut out = [0i8; 6];
        quantize(&xs, &mut out, &[p], xs.len(), -128, 127).unwrap();
        assert_eq!(out, [3, 5, 3, 5, 127, -128]);
        let mut out = [0u8; 6];
        quantize(&xs, &mut out, &[p], xs.len(), 0, 10).unwrap();
        assert_eq!(out, [3, 5, 3, 5, 10, 0]);
    }

    #[test]
    fn quantize_uses_float_reciprocal_not_division() {
        // scale 0.1: 1/0.1f = 10.0f exactly? (0.1f = 0.100000001490116; 1/0.1f rounds to 10.0f)
        // x = 0.35f: 0.35f * 10.0f = 3.5000000 (rounded) -> 4 (ties to even), while 0.35f/0.1 = 3.4999999... -> 3.
        let p = QuantParams::new(0.1, 0);
        assert_eq!(p.inv_scale, 10.0);
        assert_eq!(quantize_value(0.35f32, p, -128, 127), 4);
        assert_eq!(quantize_value(0.25f32, p, -128, 127), 2);
        assert_eq!(quantize_value(0.45f32, p, -128, 127), 4);
    }

    #[test]
    fn quantize_nan_and_infinity_follow_x86() {
        let p = QuantParams::new(1.0, 0);
        assert_eq!(quantize_value(f32::NAN, p, -128, 127), -128);
        assert_eq!(quantize_value(f32::INFINITY, p, -128, 127), -128);
        assert_eq!(quantize_value(f32::NEG_INFINITY, p, -128, 127), -128);
        assert_eq!(quantize_value(1e30f32, p, 0, 255), 0);
    }

    #[test]
    fn quantize_other_float_types() {
        let p = QuantParams::new(0.25, -2);
        assert_eq!(quantize_value(f16::from_f32(1.0), p, -128, 127), 2);
        assert_eq!(quantize_value(bf16::from_f32(-1.0), p, -128, 127), -6);
        // f64: the product is taken in double, then rounded to float.
        assert_eq!(quantize_value(0.125f64, p, -128, 127), -2); // 0.5 -> 0 (even)
        assert_eq!(quantize_value(0.375f64, p, -128, 127), 0); // 1.5 -> 2
    }

    #[test]
    fn quantize_i32_adds_zero_point_in_float() {
        // 2^24 + 1 is not a float: (float)zp + 0 loses the 1.
        let p = QuantParams::new(1.0, (1 << 24) + 1);
        assert_eq!(quantize_value(0.0f32, p, i32::MIN as i64, i32::MAX as i64), 1 << 24);
    }

    #[test]
    fn per_channel_quantize_and_dequantize() {
        // shape [2, 3], axis 1: inner 1, 3 channels.
        let x = [1.0f32, 2.0, 3.0, -1.0, -2.0, -3.0];
        let params = [QuantParams::new(1.0, 0), QuantParams::new(0.5, 1), QuantParams::new(2.0, -1)];
        let mut q = [0i8; 6];
        quantize(&x, &mut q, &params, 1, -128, 127).unwrap();
        assert_eq!(q, [1, 5, 1, -1, -3, -3]); // 3/2 = 1.5 -> 2, -1 -> 1; -3/2 = -1.5 -> -2, -1 -> -3
        let dp = [
            DequantParams { scale: 1.0, zero_point: 0 },
            DequantParams { scale: 0.5, zero_point: 1 },
            DequantParams { scale: 2.0, zero_point: -1 },
        ];
        let mut y = [0f32; 6];
        dequantize(&q, &mut y, &dp, 1, false).unwrap();
        assert_eq!(y, [1.0, 2.0, 4.0, -1.0, -2.0, -4.0]);
        // axis 0: inner 3, 2 channels.
        let params = [QuantParams::new(1.0, 0), QuantParams::new(0.5, 0)];
        quantize(&x, &mut q, &params, 3, -128, 127).unwrap();
        assert_eq!(q, [1, 2, 3, -2, -4, -6]);
        assert!(quantize(&x, &mut q, &params, 4, -128, 127).is_err());
    }

    #[test]
    fn dequantize_formula() {
        let p = DequantParams { scale: 0.1f64 as f32, zero_point: 5 };
        let q = [0u8, 5, 255];
        let mut y = [0f32; 3];
        dequantize(&q, &mut y, &[p], 3, false).unwrap();
        assert_eq!(y, [-5.0 * 0.1f32, 0.0, 250.0 * 0.1f32]);
        // f64 output: float product widened.
        let mut y = [0f64; 3];
        dequantize(&q, &mut y, &[p], 3, false).unwrap();
        assert_eq!(y[2], (250.0f32 * 0.1f32) as f64);
        // 1-D per-channel path: double product.
        dequantize(&q, &mut y, &[p], 3, true).unwrap();
        assert_eq!(y[2], 250.0f64 * (0.1f32 as f64));
        // i32 wraps like C++ int arithmetic.
        let q = [i32::MIN];
        let mut y = [0f32; 1];
        dequantize(&q, &mut y, &[DequantParams { scale: 1.0, zero_point: 1 }], 1, false).unwrap();
        assert_eq!(y[0], i32::MAX as f32);
    }

    /// PyTorch/ExecuTorch reference values computed by hand.
    #[test]
    fn choose_qparams_known_values() {
        // [-1, 1] to [-128, 127]: scale 2/255, zero point: from_min = -128 + 127.5 = -0.5,
        // from_max = 127 - 127.5 = -0.5 -> nearbyint(-0.5) = -0.
        let (s, z) = choose_qparams(&[-1.0, 0.5, 1.0], -128, 127).unwrap();
        assert_eq!(s, 2.0 / 255.0);
        assert_eq!(z, 0);
        // [0, 2.55] to [0, 255]: min extended to 0 -> zero point 0.
        let (s, z) = choose_qparams(&[0.5, 2.55], 0, 255).unwrap();
        assert_eq!(s, 2.55f32 as f64 / 255.0);
        assert_eq!(z, 0);
        // all negative to u8: max extended to 0 -> zero point 255.
        let (s, z) = choose_qparams(&[-3.0, -1.0], 0, 255).unwrap();
        assert_eq!(s, 3.0 / 255.0);
        assert_eq!(z, 255);
    }

    #[test]
    fn choose_qparams_degenerate_inputs() {
        // All zeros: scale 0 -> 0.1, zero point from min=max=0: qmin - 0 = -128 vs qmax = 127,
        // errors 128 vs 127 -> from_max = 127.
        let (s, z) = choose_qparams(&[0.0; 8], -128, 127).unwrap();
        assert_eq!((s, z), (0.1, 127));
        let (s, z) = choose_qparams(&[0.0; 8], 0, 255).unwrap();
        assert_eq!((s, z), (0.1, 0)); // errors 0 vs 255 -> from_min = 0
                                      // Constant positive input: range [0, c].
        let (s, z) = choose_qparams(&[3.0; 4], -128, 127).unwrap();
        assert_eq!(s, 3.0 / 255.0);
        assert_eq!(z, -128);
        // Tiny range: scale cut to 6.1e-5f, max rescaled.
        let (s, z) = choose_qparams(&[0.0, 1e-4], 0, 255).unwrap();
        assert_eq!(s, SMALL_SCALE_THRESHOLD as f64);
        assert_eq!(z, 0);
        let (s, z) = choose_qparams(&[-1e-4, 1e-4], -128, 127).unwrap();
        assert_eq!(s, SMALL_SCALE_THRESHOLD as f64);
        assert!(z == 0 || z == -1, "{z}");
        assert!(choose_qparams(&[], -128, 127).is_err());
        assert!(choose_qparams(&[f32::NAN, 1.0], -128, 127).is_err());
    }

    #[test]
    fn min_max_like_std() {
        assert_eq!(min_max(&[3.0, -1.0, 2.0]), Some((-1.0, 3.0)));
        let (lo, hi) = min_max(&[f32::NAN, 1.0]).unwrap();
        assert!(lo.is_nan() && hi.is_nan());
        assert_eq!(min_max(&[1.0, f32::NAN, -1.0]), Some((-1.0, 1.0)));
    }

    #[test]
    fn per_token_qparams() {
        let x = [-1.0f32, 1.0, 0.0, 0.0, 2.0, 4.0];
        let mut s = [0f64; 3];
        let mut z = [0i64; 3];
        choose_qparams_per_token(&x, 2, -128, 127, &mut s, &mut z).unwrap();
        assert_eq!(s, [2.0 / 255.0, 0.1, 4.0 / 255.0]);
        assert_eq!(z, [0, 127, -128]);
    }

    #[test]
    fn embedding_kinds() {
        // 2 rows, 4 values per row.
        let w8 = [1u8, 2, 3, 4, 250, 251, 252, 253];
        let scales = [0.5f32, 2.0, 1.0, 1.0]; // 2 groups per row
        let zps = [1.0f32, 0.0, 250.0, 250.0];
        let mut out = [0f32; 8];
        embedding(EmbeddingWeight::U8, &w8, 2, 4, &scales, Some(&zps), 2, &[1, 0], &mut out).unwrap();
        assert_eq!(out, [0.0, 1.0, 2.0, 3.0, 0.0, 0.5, 6.0, 8.0]);
        let mut out = [0f32; 4];
        embedding(EmbeddingWeight::I8, &w8, 2, 4, &scales, None, 2, &[1], &mut out).unwrap();
        assert_eq!(out, [-6.0, -5.0, -4.0, -3.0]);
        // 4-bit: byte 0x9F = values (9-8, 15-8) = (1, 7); 0x08 = (-8, 0).
        let w4 = [0x9Fu8, 0x08];
        let mut out = [0f32; 4];
        embedding(EmbeddingWeight::Bits4, &w4, 1, 2, &[2.0f32], None, 1, &[0], &mut out).unwrap();
        assert_eq!(out, [2.0, 14.0, -16.0, 0.0]);
        // 2-bit: 0b11_10_01_00 = values (0-2, 1-2, 2-2, 3-2) lowest bits first.
        let w2 = [0b1110_0100u8];
        let mut out = [0f32; 4];
        embedding(EmbeddingWeight::Bits2, &w2, 1, 1, &[1.0f32], None, 1, &[0], &mut out).unwrap();
        assert_eq!(out, [-2.0, -1.0, 0.0, 1.0]);
        assert!(embedding(EmbeddingWeight::Bits2, &w2, 1, 1, &[1.0f32], None, 1, &[1], &mut out).is_err());
        assert!(embedding(EmbeddingWeight::Bits2, &w2, 1, 1, &[1.0f32], None, 1, &[-1], &mut out).is_err());
    }

    #[test]
    fn quantized_add_is_dequant_add_quant() {
        let a = [10u8, 20, 255];
        let b = [5u8, 0, 255];
        let pa = DequantParams { scale: 0.5, zero_point: 10 };
        let pb = DequantParams { scale: 0.25, zero_point: 0 };
        let mut out = [0u8; 3];
        add(&a, pa, &b, pb, &mut out, QuantParams::new(0.5, 3), 0, 255).unwrap();
        // (0 + 1.25) / 0.5 = 2.5 -> 2 (+3); (5 + 0) / 0.5 = 10 (+3); (122.5 + 63.75) / 0.5 = 372.5 -> clamp
        assert_eq!(out, [5, 13, 255]);
    }

    fn qrange() -> impl Strategy<Value = (i64, i64)> {
        prop_oneof![Just((-128i64, 127i64)), Just((0, 255)), Just((-8, 7)), Just((0, 15)), Just((-32768, 32767))]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn prop_quantize_matches_reference(
            xs in prop::collection::vec(-1000.0f32..1000.0, 1..64),
            scale in 1e-3f64..10.0,
            zp in -10i64..10,
            (qmin, qmax) in qrange(),
        ) {
            let mut out = vec![0i32; xs.len()];
            quantize(&xs, &mut out, &[QuantParams::new(scale, zp)], xs.len(), qmin, qmax).unwrap();
            for (&x, &q) in xs.iter().zip(&out) {
                prop_assert_eq!(q as i64, ref_quantize(x, scale, zp, qmin, qmax));
                prop_assert!(q as i64 >= qmin && q as i64 <= qmax);
            }
        }

        #[test]
        fn prop_round_trip_within_half_step(
            xs in prop::collection::vec(-100.0f32..100.0, 1..64),
            lo in -100.0f32..0.0,
            span in 1.0f32..200.0,
        ) {
            // Parameters covering [lo, lo + span] ∪ {0}; values inside that range round-trip within
            // half a step (plus float slack).
            let (scale, zp) = scale_and_zero_point(lo, lo + span, -128, 127).unwrap();
            let p = QuantParams::new(scale, zp as i64);
            let mut q = vec![0i8; xs.len()];
            quantize(&xs, &mut q, &[p], xs.len(), -128, 127).unwrap();
            let mut y = vec![0f32; xs.len()];
            dequantize(&q, &mut y, &[DequantParams { scale: scale as f32, zero_point: zp }], xs.len(), false).unwrap();
            let rmin = (-128 - zp) as f64 * scale;
            let rmax = (127 - zp) as f64 * scale;
            for (&x, &y) in xs.iter().zip(&y) {
                let x = x as f64;
                if x >= rmin && x <= rmax {
                    prop_assert!((x - y as f64).abs() <= scale * 0.5 + 1e-4 * x.abs().max(1.0), "x {} y {} scale {}", x, y, scale);
                } else {
                    // clamped to the nearest end
                    let end = if x < rmin { rmin } else { rmax };
                    prop_assert!((end - y as f64).abs() <= 1e-4 * end.abs().max(1.0));
                }
            }
        }

        #[test]
        fn prop_per_channel_every_axis(
            dims in prop::collection::vec(1usize..4, 1..4),
            axis_seed in 0usize..4,
            seed in prop::collection::vec(-50.0f32..50.0, 64),
        ) {
            let axis = axis_seed % dims.len();
            let n: usize = dims.iter().product();
            let x: Vec<f32> = (0..n).map(|i| seed[i % seed.len()]).collect();
            let channels = dims[axis];
            let inner: usize = dims[axis + 1..].iter().product();
            let scales: Vec<f64> = (0..channels).map(|c| 0.1 + c as f64 * 0.3).collect();
            let zps: Vec<i64> = (0..channels).map(|c| c as i64 - 1).collect();
            let params: Vec<QuantParams> = scales.iter().zip(&zps).map(|(&s, &z)| QuantParams::new(s, z)).collect();
            let mut q = vec![0u8; n];
            quantize(&x, &mut q, &params, inner, 0, 255).unwrap();
            // Reference: explicit multi-index walk.
            let strides = crate::contiguous_strides(&dims);
            for (i, (&xv, &qv)) in x.iter().zip(&q).enumerate() {
                let c = (i / strides[axis]) % dims[axis];
                prop_assert_eq!(qv as i64, ref_quantize(xv, scales[c], zps[c], 0, 255));
            }
        }

        #[test]
        fn prop_choose_qparams_matches_reference(
            xs in prop::collection::vec(prop_oneof![-1e3f32..1e3, -1e-3f32..1e-3, Just(0.0f32)], 1..64),
            (qmin, qmax) in qrange(),
        ) {
            let (scale, zp) = choose_qparams(&xs, qmin as i32, qmax as i32).unwrap();
            // Independent f64 transcription of PyTorch's ChooseQuantizationParams.
            let mut lo = xs.iter().copied().fold(f32::INFINITY, f32::min).min(0.0);
            let mut hi = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max).max(0.0);
            let mut s = (hi as f64 - lo as f64) / (qmax - qmin) as f64;
            if s as f32 == 0.0 || (1.0 / s as f32).is_infinite() { s = 0.1; }
            if s < 6.1e-5f32 as f64 {
                let org = s as f32;
                s = 6.1e-5f32 as f64;
                if lo == 0.0 { hi = 6.1e-5f32 * (qmax - qmin) as f32; }
                else if hi == 0.0 { lo = -6.1e-5f32 * (qmax - qmin) as f32; }
                else { lo *= 6.1e-5f32 / org; hi *= 6.1e-5f32 / org; }
            }
            prop_assert_eq!(scale, s);
            let zmin = qmin as f64 - lo as f64 / s;
            let zmax = qmax as f64 - hi as f64 / s;
            let init = if (qmin.abs() as f64 - (lo as f64 / s).abs()) < (qmax.abs() as f64 - (hi as f64 / s).abs()) { zmin } else { zmax };
            let z = if init < qmin as f64 { qmin } else if init > qmax as f64 { qmax } else { (init as f32).round_ties_even() as i64 };
            prop_assert_eq!(zp as i64, z);
            prop_assert!(scale > 0.0);
            prop_assert!(zp as i64 >= qmin && zp as i64 <= qmax);
            // Zero is exactly representable.
            let q0 = quantize_value(0.0f32, QuantParams::new(scale, zp as i64), qmin, qmax);
            prop_assert_eq!(q0, zp as i64);
        }
    }
}
