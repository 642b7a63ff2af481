//! Softmax, log-softmax, layer norm and group norm over contiguous tensors.
//!
//! Arithmetic is done in f32 for f32/f16/bf16 and in f64 for f64 ([`FloatElem::Acc`]).
//! Independent rows are spread over rayon threads; each row's arithmetic is sequential, so
//! results do not depend on the thread count.

use std::ops::{Add, Div, Mul, Sub};

use half::{bf16, f16};
use rayon::prelude::*;

use super::{Float, KResult, KernelError};

/// Rows at least this large in total are processed on several threads.
const PAR_MIN: usize = 1 << 14;

/// f32 or f64: the type floating-point kernels compute in.
pub trait Real:
    Copy
    + Send
    + Sync
    + PartialOrd
    + std::fmt::Debug
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
{
    /// Zero.
    const ZERO: Self;
    /// One.
    const ONE: Self;
    /// Negative infinity.
    const NEG_INFINITY: Self;
    /// `e^self`.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// From f64 (rounding).
    fn from_f64(v: f64) -> Self;
    /// Whether NaN.
    fn is_nan(self) -> bool;
    /// To f64 (exact).
    fn to_f64(self) -> f64;
}

macro_rules! real {
    ($t:ty) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    };
}
real!(f32);
real!(f64);

/// A floating-point element with its compute type.
pub trait FloatElem: Float {
    /// The compute type (f32, or f64 for f64).
    type Acc: Real;
    /// Widen.
    fn to_acc(self) -> Self::Acc;
    /// Narrow (round to nearest).
    fn from_acc(a: Self::Acc) -> Self;
}

impl FloatElem for f32 {
    type Acc = f32;
    #[inline(always)]
    fn to_acc(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_acc(a: f32) -> Self {
        a
    }
}
impl FloatElem for f64 {
    type Acc = f64;
    #[inline(always)]
    fn to_acc(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_acc(a: f64) -> Self {
        a
    }
}
impl FloatElem for f16 {
    type Acc = f32;
    #[inline(always)]
    fn to_acc(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn from_acc(a: f32) -> Self {
        f16::from_f32(a)
    }
}
impl FloatElem for bf16 {
    type Acc = f32;
    #[inline(always)]
    fn to_acc(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn from_acc(a: f32) -> Self {
        bf16::from_f32(a)
    }
}

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
fn softmax_row<T: FloatElem, U: FloatElem>(x: &[T], y: &mut [U], n: usize, stride: usize, log: bool) {
    let mut max = <T::Acc as Real>::NEG_INFINITY;
    for j in 0..n {
        max = nan_max(max, x[j * stride].to_acc());
    }
    let mut sum = <T::Acc as Real>::ZERO;
    for j in 0..n {
        sum = sum + (x[j * stride].to_acc() - max).exp();
    }
    if log {
        let lse = sum.ln();
        for j in 0..n {
            y[j * stride] = conv::<T::Acc, U>(x[j * stride].to_acc() - max - lse);
        }
    } else {
        for j in 0..n {
            y[j * stride] = conv::<T::Acc, U>((x[j * stride].to_acc() - max).exp() / sum);
        }
    }
}

/// Converts a compute value to an element of another float type (exact widening via f64).
#[inline(always)]
fn conv<A: Real, U: FloatElem>(a: A) -> U {
    U::from_acc(<U::Acc as Real>::from_f64(a.to_f64()))
}

/// Softmax (`log` = false) or log-softmax over the middle axis of an `(outer, n, inner)`
/// tensor. The output may have a different float type (`half_to_float`).
pub fn softmax<T: FloatElem, U: FloatElem>(
    x: &[T],
    y: &mut [U],
    outer: usize,
    n: usize,
    inner: usize,
    log: bool,
) -> KResult {
    let total = shape3("softmax", outer, n, inner)?;
    check("softmax input", x.len(), total)?;
    check("softmax output", y.len(), total)?;
    if total == 0 {
        return Ok(());
    }
    let block = n * inner;
    let par = total >= PAR_MIN && crate::threads() > 1;
    if inner == 1 {
        let rows = |(xr, yr): (&[T], &mut [U])| softmax_row(xr, yr, n, 1, log);
        if par {
            x.par_chunks(n).zip(y.par_chunks_mut(n)).with_min_len((PAR_MIN / n).max(1)).for_each(rows);
        } else {
            x.chunks(n).zip(y.chunks_mut(n)).for_each(rows);
        }
    } else {
        let blocks = |(xb, yb): (&[T], &mut [U])| {
            for i in 0..inner {
                softmax_row(&xb[i..], &mut yb[i..], n, inner, log);
            }
        };
        if par {
            x.par_chunks(block).zip(y.par_chunks_mut(block)).for_each(blocks);
        } else {
            x.chunks(block).zip(y.chunks_mut(block)).for_each(blocks);
        }
    }
    Ok(())
}

/// One row of a normalisation: (input, output) and its (mean, rstd) slots.
type RowItem<'a, T> = ((&'a [T], &'a mut [T]), (&'a mut T, &'a mut T));

/// Mean and `1 / sqrt(var + eps)` (biased variance, two passes) of a slice.
#[inline]
fn moments<T: FloatElem>(x: &[T], eps: T::Acc) -> (T::Acc, T::Acc) {
    let n = <T::Acc as Real>::from_f64(x.len() as f64);
    let mut sum = <T::Acc as Real>::ZERO;
    for &v in x {
        sum = sum + v.to_acc();
    }
    let mean = sum / n;
    let mut sq = <T::Acc as Real>::ZERO;
    for &v in x {
        let d = v.to_acc() - mean;
        sq = sq + d * d;
    }
    let var = sq / n;
    (mean, <T::Acc as Real>::ONE / (var + eps).sqrt())
}

/// Layer norm of `m` rows of `n` elements: `y = (x - mean) * rstd * w + b`, with `mean` and
/// `rstd` written per row (mean 0 and rstd NaN for empty rows, as ExecuTorch does).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm<T: FloatElem>(
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
    let eps = <T::Acc as Real>::from_f64(eps);
    let row = |((xr, yr), (mo, ro)): RowItem<'_, T>| {
        let (mu, rs) = moments(xr, eps);
        for (j, (o, &v)) in yr.iter_mut().zip(xr).enumerate() {
            let mut t = (v.to_acc() - mu) * rs;
            if let Some(w) = weight {
                t = t * w[j].to_acc();
            }
            if let Some(b) = bias {
                t = t + b[j].to_acc();
            }
            *o = T::from_acc(t);
        }
        *mo = T::from_acc(mu);
        *ro = T::from_acc(rs);
    };
    let par = total >= PAR_MIN && m > 1 && crate::threads() > 1;
    if par {
        x.par_chunks(n)
            .zip(y.par_chunks_mut(n))
            .zip(mean.par_iter_mut().zip(rstd.par_iter_mut()))
            .with_min_len((PAR_MIN / n).max(1))
            .for_each(row);
    } else {
        x.chunks(n).zip(y.chunks_mut(n)).zip(mean.iter_mut().zip(rstd.iter_mut())).for_each(row);
    }
    Ok(())
}

/// Group norm of an `(n, c, hxw)` tensor in `groups` groups of channels; `mean` and `rstd` are
/// `(n, groups)`; weight and bias are per channel.
#[allow(clippy::too_many_arguments)]
pub fn group_norm<T: FloatElem>(
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
    let eps = <T::Acc as Real>::from_f64(eps);
    let one = |(k, ((xg, yg), (mo, ro))): (usize, RowItem<'_, T>)| {
        let (mu, rs) = moments(xg, eps);
        let g = k % groups;
        for ci in 0..cpg {
            let ch = g * cpg + ci;
            let w = weight.map_or(<T::Acc as Real>::ONE, |w| w[ch].to_acc());
            let b = bias.map_or(<T::Acc as Real>::ZERO, |b| b[ch].to_acc());
            for (o, &v) in yg[ci * hxw..(ci + 1) * hxw].iter_mut().zip(&xg[ci * hxw..(ci + 1) * hxw]) {
                *o = T::from_acc((v.to_acc() - mu) * rs * w + b);
            }
        }
        *mo = T::from_acc(mu);
        *ro = T::from_acc(rs);
    };
    if total >= PAR_MIN && crate::threads() > 1 {
        x.par_chunks(len)
            .zip(y.par_chunks_mut(len))
            .zip(mean.par_iter_mut().zip(rstd.par_iter_mut()))
            .enumerate()
            .for_each(one);
    } else {
        x.chunks(len).zip(y.chunks_mut(len)).zip(mean.iter_mut().zip(rstd.iter_mut())).enumerate().for_each(one);
    }
    Ok(())
}
