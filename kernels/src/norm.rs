//! Softmax, log-softmax, layer norm, group norm and batch norm over contiguous tensors.
//!
//! Arithmetic is done in f32 for f32/f16/bf16 and in f64 for f64 ([`Float::Compute`]).
//! Independent rows are spread over rayon threads; each row's arithmetic is sequential, so
//! results do not depend on the thread count.

use crate::num::{Element, Float, Real};
use crate::{KResult, KernelError};

/// Rows at least this large in total are processed on several threads.
const PAR_MIN: usize = 1 << 14;

fn check(what: &'static str, len: usize, expected: usize) -> KResult {
    if len != expected {
        return Err(KernelError::Length { what, expected, actual: len });
    }
    Ok(())
}

fn shape3(what: &str, a: usize, b: usize, c: usize) -> KResult<usize> {
    a.checked_mul(b)
        .and_then(|x| x.checked_mul(c))
        .ok_or_else(|| KernelError::Shape(format!("{what}: shape overflows")))
}

/// Maximum with NaN propagation.
#[inline(always)]
fn nan_max<A: Real>(acc: A, v: A) -> A {
    if v.is_nan() || v > acc {
        v
    } else {
        acc
    }
}

/// Softmax (or log-softmax) of one strided row: `n` elements `stride` apart.
#[inline]
fn softmax_row<T: Float, U: Float>(x: &[T], y: &mut [U], n: usize, stride: usize, log: bool) {
    let mut max = <T::Compute as Real>::NEG_INFINITY;
    for j in 0..n {
        max = nan_max(max, x[j * stride].to_compute());
    }
    let mut sum = <T::Compute as Element>::ZERO;
    for j in 0..n {
        sum += (x[j * stride].to_compute() - max).exp();
    }
    if log {
        let lse = sum.ln();
        for j in 0..n {
            y[j * stride] = conv::<T::Compute, U>(x[j * stride].to_compute() - max - lse);
        }
    } else {
        for j in 0..n {
            y[j * stride] = conv::<T::Compute, U>((x[j * stride].to_compute() - max).exp() / sum);
        }
    }
}

/// Converts a compute value to an element of another float type (exact widening via f64).
#[inline(always)]
fn conv<A: Real, U: Float>(a: A) -> U {
    U::from_compute(<U::Compute as Element>::from_f64(a.to_f64()))
}

/// Softmax (`log` = false) or log-softmax over the middle axis of an `(outer, n, inner)`
/// tensor. The output may have a different float type (`half_to_float`).
pub fn softmax<T: Float, U: Float>(x: &[T], y: &mut [U], outer: usize, n: usize, inner: usize, log: bool) -> KResult {
    let total = shape3("softmax", outer, n, inner)?;
    check("softmax input", x.len(), total)?;
    check("softmax output", y.len(), total)?;
    if total == 0 {
        return Ok(());
    }
    let block = n * inner;
    let par = total >= PAR_MIN && crate::threads() > 1;
    if inner == 1 {
        let rows_per = if par { (PAR_MIN / n).max(1) } else { outer };
        crate::par::chunks(y, rows_per * n, par, |c, ys| {
            for (r, yr) in ys.chunks_mut(n).enumerate() {
                let i = c * rows_per + r;
                softmax_row(&x[i * n..(i + 1) * n], yr, n, 1, log);
            }
        });
    } else {
        crate::par::chunks(y, block, par, |b, yb| {
            let xb = &x[b * block..(b + 1) * block];
            for i in 0..inner {
                softmax_row(&xb[i..], &mut yb[i..], n, inner, log);
            }
        });
    }
    Ok(())
}

/// Mean and `1 / sqrt(var + eps)` (biased variance, two passes) of a slice.
#[inline]
fn moments<T: Float>(x: &[T], eps: T::Compute) -> (T::Compute, T::Compute) {
    let n = <T::Compute as Element>::from_f64(x.len() as f64);
    let mut sum = <T::Compute as Element>::ZERO;
    for &v in x {
        sum += v.to_compute();
    }
    let mean = sum / n;
    let mut sq = <T::Compute as Element>::ZERO;
    for &v in x {
        let d = v.to_compute() - mean;
        sq += d * d;
    }
    let var = sq / n;
    (mean, <T::Compute as Element>::ONE / (var + eps).sqrt())
}

/// Layer norm of `m` rows of `n` elements: `y = (x - mean) * rstd * w + b`, with `mean` and
/// `rstd` written per row (mean 0 and rstd NaN for empty rows, as ExecuTorch does).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm<T: Float>(
    x: &[T],
    weight: Option<&[T]>,
    bias: Option<&[T]>,
    y: &mut [T],
    mean: &mut [T],
    rstd: &mut [T],
    m: usize,
    n: usize,
    eps: f64,
) -> KResult {
    let total = shape3("layer_norm", m, n, 1)?;
    check("layer_norm input", x.len(), total)?;
    check("layer_norm output", y.len(), total)?;
    check("layer_norm mean", mean.len(), m)?;
    check("layer_norm rstd", rstd.len(), m)?;
    if let Some(w) = weight {
        check("layer_norm weight", w.len(), n)?;
    }
    if let Some(b) = bias {
        check("layer_norm bias", b.len(), n)?;
    }
    if m == 0 {
        return Ok(());
    }
    if n == 0 {
        mean.fill(T::from_f64(0.0));
        rstd.fill(T::from_f64(f64::NAN));
        return Ok(());
    }
    let eps = <T::Compute as Element>::from_f64(eps);
    let row = |xr: &[T], yr: &mut [T], mo: &mut T, ro: &mut T| {
        let (mu, rs) = moments(xr, eps);
        for (j, (o, &v)) in yr.iter_mut().zip(xr).enumerate() {
            let mut t = (v.to_compute() - mu) * rs;
            if let Some(w) = weight {
                t = t * w[j].to_compute();
            }
            if let Some(b) = bias {
                t += b[j].to_compute();
            }
            *o = T::from_compute(t);
        }
        *mo = T::from_compute(mu);
        *ro = T::from_compute(rs);
    };
    let par = total >= PAR_MIN && m > 1 && crate::threads() > 1;
    let rows_per = if par { (PAR_MIN / n).max(1) } else { m };
    crate::par::try_chunks3(y, rows_per * n, mean, rows_per, rstd, rows_per, par, |c, ys, ms, rs| {
        for (r, ((yr, mo), ro)) in ys.chunks_mut(n).zip(ms.iter_mut()).zip(rs.iter_mut()).enumerate() {
            let i = c * rows_per + r;
            row(&x[i * n..(i + 1) * n], yr, mo, ro);
        }
        Ok(())
    })
}

/// Group norm of an `(n, c, hxw)` tensor in `groups` groups of channels; `mean` and `rstd` are
/// `(n, groups)`; weight and bias are per channel.
#[allow(clippy::too_many_arguments)]
pub fn group_norm<T: Float>(
    x: &[T],
    weight: Option<&[T]>,
    bias: Option<&[T]>,
    y: &mut [T],
    mean: &mut [T],
    rstd: &mut [T],
    (n, c, hxw, groups): (usize, usize, usize, usize),
    eps: f64,
) -> KResult {
    if groups == 0 || c % groups != 0 {
        return Err(KernelError::Argument(format!("group_norm: {c} channels cannot be split into {groups} groups")));
    }
    let total = shape3("group_norm", n, c, hxw)?;
    check("group_norm input", x.len(), total)?;
    check("group_norm output", y.len(), total)?;
    check("group_norm mean", mean.len(), n * groups)?;
    check("group_norm rstd", rstd.len(), n * groups)?;
    if let Some(w) = weight {
        check("group_norm weight", w.len(), c)?;
    }
    if let Some(b) = bias {
        check("group_norm bias", b.len(), c)?;
    }
    let cpg = c / groups;
    let len = cpg * hxw;
    if total == 0 {
        if len == 0 {
            mean.fill(T::from_f64(0.0));
            rstd.fill(T::from_f64(f64::NAN));
        }
        return Ok(());
    }
    let eps = <T::Compute as Element>::from_f64(eps);
    let one = |k: usize, yg: &mut [T], mo: &mut [T], ro: &mut [T]| {
        let xg = &x[k * len..(k + 1) * len];
        let (mu, rs) = moments(xg, eps);
        let g = k % groups;
        for ci in 0..cpg {
            let ch = g * cpg + ci;
            let w = weight.map_or(<T::Compute as Element>::ONE, |w| w[ch].to_compute());
            let b = bias.map_or(<T::Compute as Element>::ZERO, |b| b[ch].to_compute());
            for (o, &v) in yg[ci * hxw..(ci + 1) * hxw].iter_mut().zip(&xg[ci * hxw..(ci + 1) * hxw]) {
                *o = T::from_compute((v.to_compute() - mu) * rs * w + b);
            }
        }
        mo[0] = T::from_compute(mu);
        ro[0] = T::from_compute(rs);
        Ok(())
    };
    crate::par::try_chunks3(y, len, mean, 1, rstd, 1, total >= PAR_MIN && crate::threads() > 1, one)
}

/// Inference batch normalisation over `[outer, channels, inner]`:
/// `y = (x - mean) · invstd · weight + bias` with `invstd = 1 / sqrt(var + eps)` computed in f64
/// and rounded to `T` (ExecuTorch's order of operations).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm<T: Real>(
    x: &[T],
    mean: &[T],
    var: &[T],
    weight: Option<&[T]>,
    bias: Option<&[T]>,
    eps: f64,
    channels: usize,
    inner: usize,
    y: &mut [T],
) -> KResult {
    let expect = |what, v: &[T]| check(what, v.len(), channels);
    expect("batch_norm mean", mean)?;
    expect("batch_norm var", var)?;
    if let Some(wt) = weight {
        expect("batch_norm weight", wt)?;
    }
    if let Some(b) = bias {
        expect("batch_norm bias", b)?;
    }
    if x.len() != y.len() {
        return Err(KernelError::Length { what: "batch_norm output", expected: x.len(), actual: y.len() });
    }
    let plane = inner.max(1);
    if channels == 0 || inner == 0 || x.is_empty() {
        return Ok(());
    }
    if !x.len().is_multiple_of(channels * plane) {
        return Err(KernelError::Shape(format!("batch_norm: {} elements are not [.., {channels}, {inner}]", x.len())));
    }
    let invstd: Vec<T> = var.iter().map(|v| T::from_f64(1.0 / (v.to_f64() + eps).sqrt())).collect();
    let one = T::ONE;
    let run = |i: usize, yp: &mut [T]| {
        let xp = &x[i * plane..(i + 1) * plane];
        let c = i % channels;
        let (m, is) = (mean[c], invstd[c]);
        let wv = weight.map_or(one, |wt| wt[c]);
        let bv = bias.map_or(T::ZERO, |b| b[c]);
        for (d, &v) in yp.iter_mut().zip(xp) {
            *d = (v - m) * is * wv + bv;
        }
    };
    crate::par::chunks(y, plane, x.len() >= 1 << 15 && crate::threads() > 1, run);
    Ok(())
}

/// Per-channel mean and `1 / sqrt(biased var + eps)` of `[outer, channels, inner]` (batch
/// statistics, two passes in f64).
pub fn batch_stats<T: Real>(x: &[T], channels: usize, inner: usize, eps: f64) -> KResult<(Vec<T>, Vec<T>)> {
    let plane = channels * inner;
    if plane == 0 || !x.len().is_multiple_of(plane) {
        return Err(KernelError::Shape(format!("batch_norm: {} elements are not [.., {channels}, {inner}]", x.len())));
    }
    let outer = x.len() / plane;
    let count = (outer * inner) as f64;
    let mut mean = vec![0f64; channels];
    let mut var = vec![0f64; channels];
    for (i, p) in x.chunks(inner).enumerate() {
        mean[i % channels] += p.iter().map(|v| v.to_f64()).sum::<f64>();
    }
    for m in &mut mean {
        *m /= count;
    }
    for (i, p) in x.chunks(inner).enumerate() {
        let m = mean[i % channels];
        var[i % channels] += p.iter().map(|v| (v.to_f64() - m) * (v.to_f64() - m)).sum::<f64>();
    }
    let means = mean.iter().map(|&m| T::from_f64(m)).collect();
    let invstd = var.iter().map(|&v| T::from_f64(1.0 / (v / count + eps).sqrt())).collect();
    Ok((means, invstd))
}

/// Batch normalisation with precomputed per-channel `invstd` (training-mode statistics).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_with_invstd<T: Real>(
    x: &[T],
    mean: &[T],
    invstd: &[T],
    weight: Option<&[T]>,
    bias: Option<&[T]>,
    channels: usize,
    inner: usize,
    y: &mut [T],
) -> KResult {
    if mean.len() != channels || invstd.len() != channels || x.len() != y.len() {
        return Err(KernelError::Shape("batch_norm: statistics do not match the channels".into()));
    }
    if inner == 0 || channels == 0 {
        return Ok(());
    }
    for (i, (yp, xp)) in y.chunks_mut(inner).zip(x.chunks(inner)).enumerate() {
        let c = i % channels;
        let wv = weight.and_then(|w| w.get(c).copied()).unwrap_or(T::ONE);
        let bv = bias.and_then(|b| b.get(c).copied()).unwrap_or(T::ZERO);
        for (d, &v) in yp.iter_mut().zip(xp) {
            *d = (v - mean[c]) * invstd[c] * wv + bv;
        }
    }
    Ok(())
}
