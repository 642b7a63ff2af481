//! Row kernels of the Ferrite backend, written once over [`Vector`] and run at the level the
//! caller chose: element-wise arithmetic (with one side repeated), activations, softmax and
//! layer norm over contiguous rows, sums over one axis, and NHWC pooling windows.
//!
//! Each public function checks every length it relies on and then runs a [`Job`] at the level;
//! they run on the calling thread (`kernels::rowwise` splits work across threads).
//!
//! Transcendentals use polynomial approximations (`exp` to about 2 ulp, `erf` to 1.5e-7
//! absolute): their results differ from the portable kernels' `libm` in the last bits, so the
//! backend runs them only where the program asks for the fast accumulation order (see
//! [`Unary::exact`]).
#![allow(unsafe_code)]

use super::{arg, run_job, Job, Level, Vector, Window};
use crate::{KResult, KernelError};

/// An element-wise binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    /// `maximum`: NaN if either side is NaN.
    Max,
    /// `minimum`: NaN if either side is NaN.
    Min,
}

/// One side of a binary operator over a run: as many elements as the output, or one repeated.
#[derive(Debug, Clone, Copy)]
pub enum Side<'a> {
    Slice(&'a [f32]),
    Scalar(f32),
}

/// An element-wise activation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unary {
    /// `clamp(x, lo, hi)`: relu, relu6, hardtanh, clamp.
    Clamp(f32, f32),
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `x / (1 + exp(-x))`.
    Silu,
    Tanh,
    Exp,
    /// `x / 2 · (1 + erf(x / √2))`.
    Gelu,
    /// `x / 2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`.
    GeluTanh,
    /// `x · clamp(x + 3, 0, 6) / 6`.
    Hardswish,
    /// `clamp(x + 3, 0, 6) / 6`.
    Hardsigmoid,
}

impl Unary {
    /// Whether the result is bit-identical to the portable kernel's (no approximation, same
    /// operation order).
    pub fn exact(self) -> bool {
        matches!(self, Unary::Clamp(..))
    }
}

fn length(what: &'static str, expected: usize, actual: usize) -> KResult {
    if expected == actual {
        Ok(())
    } else {
        Err(KernelError::Length { what, expected, actual })
    }
}

// ---------------------------------------------------------------------------------------------
// Element-wise

/// `out[i] = clamp(a[i] op b[i], lo, hi)`, a scalar side repeated.
pub fn binary(level: Level, op: Binary, a: Side<'_>, b: Side<'_>, out: &mut [f32], lo: f32, hi: f32) -> KResult {
    let n = out.len();
    let ptr = |s: Side<'_>, what| -> KResult<(*const f32, f32)> {
        match s {
            Side::Slice(x) => length(what, n, x.len()).map(|()| (x.as_ptr(), 0.0)),
            Side::Scalar(v) => Ok((std::ptr::null(), v)),
        }
    };
    let (pa, sa) = ptr(a, "binary lhs")?;
    let (pb, sb) = ptr(b, "binary rhs")?;
    let mut job = BinaryJob { op, a: pa, sa, b: pb, sb, out: out.as_mut_ptr(), n, lo, hi };
    // SAFETY: every non-null side holds `n` elements, as does `out` (checked above).
    unsafe { run_job(level, &mut job) }
}

struct BinaryJob {
    op: Binary,
    /// Null for a scalar side (`sa`).
    a: *const f32,
    sa: f32,
    b: *const f32,
    sb: f32,
    out: *mut f32,
    n: usize,
    lo: f32,
    hi: f32,
}

#[inline(always)]
unsafe fn apply<V: Vector>(op: Binary, a: V, b: V) -> V {
    // SAFETY: the level is supported (caller).
    unsafe {
        match op {
            Binary::Add => V::add(a, b),
            Binary::Sub => V::sub(a, b),
            Binary::Mul => V::mul(a, b),
            Binary::Div => V::div(a, b),
            Binary::Max => V::max(a, b),
            Binary::Min => V::min(a, b),
        }
    }
}

impl Job for BinaryJob {
    #[inline(always)]
    unsafe fn run<V: Vector>(&mut self) {
        let l = V::LANES;
        // SAFETY: the level is supported (caller); `self` was checked by `binary`: every read
        // and write below is at an index < n.
        unsafe {
            let (lo, hi) = (V::splat(self.lo), V::splat(self.hi));
            let (sa, sb) = (V::splat(self.sa), V::splat(self.sb));
            let side = |p: *const f32, s: V, i: usize, m: usize| {
                if p.is_null() {
                    s
                } else if m == l {
                    V::load(p.add(i))
                } else {
                    V::load_partial(p.add(i), m)
                }
            };
            let mut i = 0;
            while i < self.n {
                let m = l.min(self.n - i);
                let y = apply(self.op, side(self.a, sa, i, m), side(self.b, sb, i, m)).clamp(lo, hi);
                if m == l {
                    y.store(self.out.add(i));
                } else {
                    y.store_partial(self.out.add(i), m);
                }
                i += l;
            }
        }
    }
}

/// `out[i] = f(x[i])`.
pub fn unary(level: Level, op: Unary, x: &[f32], out: &mut [f32]) -> KResult {
    length("unary input", out.len(), x.len())?;
    if let Unary::Clamp(lo, hi) = op {
        if lo.is_nan() || hi.is_nan() || lo > hi {
            return Err(arg(format!("clamp: invalid bounds [{lo}, {hi}]")));
        }
    }
    let mut job = UnaryJob { op, x: x.as_ptr(), out: out.as_mut_ptr(), n: out.len() };
    // SAFETY: `x` and `out` hold `n` elements (checked above).
    unsafe { run_job(level, &mut job) }
}

struct UnaryJob {
    op: Unary,
    x: *const f32,
    out: *mut f32,
    n: usize,
}

/// `eˣ` (Cephes' single-precision polynomial, about 2 ulp): 0 below −87.34 (where `eˣ` leaves
/// the normal range), `e^88.37` up to 88.72 and +∞ above (where `eˣ` overflows); NaN stays NaN.
#[inline(always)]
pub(super) unsafe fn exp<V: Vector>(x: V) -> V {
    const LOW: f32 = -87.336_54;
    // SAFETY: the level is supported (caller).
    unsafe {
        let xc = x.clamp(V::splat(LOW), V::splat(88.37));
        let n = V::mul(xc, V::splat(std::f32::consts::LOG2_E)).round();
        // r = x − n·ln2, with ln2 split in two for precision.
        let r = V::fma(n, V::splat(-0.693_359_4), xc);
        let r = V::fma(n, V::splat(2.121_944_4e-4), r);
        let mut p = V::splat(1.987_569_1e-4);
        p = V::fma(p, r, V::splat(1.398_199_9e-3));
        p = V::fma(p, r, V::splat(8.333_452e-3));
        p = V::fma(p, r, V::splat(4.166_579_6e-2));
        p = V::fma(p, r, V::splat(1.666_666_5e-1));
        p = V::fma(p, r, V::splat(0.5));
        p = V::fma(p, V::mul(r, r), V::add(r, V::splat(1.0)));
        let y = V::select_neg(V::sub(x, V::splat(LOW)), V::splat(0.0), V::mul(p, n.pow2i()));
        V::select_neg(V::sub(V::splat(88.722_84), x), V::splat(f32::INFINITY), y)
    }
}

/// `1 − 2 / (e²ˣ + 1)`.
#[inline(always)]
unsafe fn tanh<V: Vector>(x: V) -> V {
    // SAFETY: the level is supported (caller).
    unsafe {
        let one = V::splat(1.0);
        let e = exp(V::add(x, x));
        V::sub(one, V::div(V::splat(2.0), V::add(e, one)))
    }
}

/// `x · Φ(x)` with `Φ(x) = erfc(−x / √2) / 2`, and erfc on `[0, ∞)` from Abramowitz and
/// Stegun's 7.1.26 (`erfc z ≈ p(t) · e^{−z²}`, `t = 1 / (1 + 0.3275911 z)`, absolute error below
/// 1.5e-7): no cancellation for negative `x`, and `gelu(−∞) = 0` as PyTorch gives.
#[inline(always)]
unsafe fn gelu<V: Vector>(x: V) -> V {
    // SAFETY: the level is supported (caller).
    unsafe {
        let (one, half) = (V::splat(1.0), V::splat(0.5));
        let z = V::mul(V::max(x, V::sub(V::splat(0.0), x)), V::splat(std::f32::consts::FRAC_1_SQRT_2));
        let t = V::div(one, V::fma(z, V::splat(0.327_591_1), one));
        let mut p = V::splat(1.061_405_4);
        p = V::fma(p, t, V::splat(-1.453_152_1));
        p = V::fma(p, t, V::splat(1.421_413_7));
        p = V::fma(p, t, V::splat(-0.284_496_74));
        p = V::fma(p, t, V::splat(0.254_829_6));
        // Half of erfc(|z|).
        let q = V::mul(V::mul(p, t), V::mul(half, exp(V::sub(V::splat(0.0), V::mul(z, z)))));
        let phi = V::select_neg(x, q, V::sub(one, q));
        V::mul(V::max(x, V::splat(f32::MIN)), phi)
    }
}

#[inline(always)]
unsafe fn activation<V: Vector>(op: Unary, x: V) -> V {
    // SAFETY: the level is supported (caller).
    unsafe {
        let one = V::splat(1.0);
        match op {
            Unary::Clamp(lo, hi) => x.clamp(V::splat(lo), V::splat(hi)),
            Unary::Sigmoid => V::div(one, V::add(one, exp(V::sub(V::splat(0.0), x)))),
            Unary::Silu => V::div(x, V::add(one, exp(V::sub(V::splat(0.0), x)))),
            Unary::Tanh => tanh(x),
            Unary::Exp => exp(x),
            Unary::Gelu => gelu(x),
            Unary::GeluTanh => {
                let inner = V::mul(V::splat(0.797_884_6), V::fma(V::mul(V::splat(0.044_715), x), V::mul(x, x), x));
                V::mul(V::mul(V::splat(0.5), x), V::add(one, tanh(inner)))
            }
            Unary::Hardswish => {
                let c = V::add(x, V::splat(3.0)).clamp(V::splat(0.0), V::splat(6.0));
                V::div(V::mul(x, c), V::splat(6.0))
            }
            Unary::Hardsigmoid => V::div(V::add(x, V::splat(3.0)).clamp(V::splat(0.0), V::splat(6.0)), V::splat(6.0)),
        }
    }
}

impl Job for UnaryJob {
    #[inline(always)]
    unsafe fn run<V: Vector>(&mut self) {
        let l = V::LANES;
        let mut i = 0;
        while i < self.n {
            let m = l.min(self.n - i);
            // SAFETY: the level is supported (caller); i + m ≤ n (checked by `unary`).
            unsafe {
                if m == l {
                    activation(self.op, V::load(self.x.add(i))).store(self.out.add(i));
                } else {
                    activation(self.op, V::load_partial(self.x.add(i), m)).store_partial(self.out.add(i), m);
                }
            }
            i += l;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rows

/// Softmax over each contiguous row of `n` elements of `x` (`x.len()` a multiple of `n`).
pub fn softmax(level: Level, x: &[f32], y: &mut [f32], n: usize) -> KResult {
    length("softmax output", x.len(), y.len())?;
    if n == 0 || !x.len().is_multiple_of(n) {
        return Err(arg(format!("softmax: {} elements are not rows of {n}", x.len())));
    }
    let mut job = SoftmaxJob { x: x.as_ptr(), y: y.as_mut_ptr(), rows: x.len() / n, n };
    // SAFETY: `x` and `y` hold rows · n elements (checked above).
    unsafe { run_job(level, &mut job) }
}

struct SoftmaxJob {
    x: *const f32,
    y: *mut f32,
    rows: usize,
    n: usize,
}

impl Job for SoftmaxJob {
    #[inline(always)]
    unsafe fn run<V: Vector>(&mut self) {
        let (l, n) = (V::LANES, self.n);
        for r in 0..self.rows {
            // SAFETY: the level is supported (caller); row r spans [r·n, r·n + n), inside both
            // buffers (checked by `softmax`), and every access below is at i + m ≤ n.
            unsafe {
                let (x, y) = (self.x.add(r * n), self.y.add(r * n));
                let mut mv = V::splat(f32::NEG_INFINITY);
                let mut i = 0;
                while i < n {
                    let m = l.min(n - i);
                    let v = if m == l { V::load(x.add(i)) } else { V::load_partial_or(x.add(i), m, f32::NEG_INFINITY) };
                    mv = V::max(mv, v);
                    i += l;
                }
                let max = V::splat(mv.max_lane());
                let mut sum = V::splat(0.0);
                let mut i = 0;
                while i < n {
                    let m = l.min(n - i);
                    if m == l {
                        let e = exp(V::sub(V::load(x.add(i)), max));
                        e.store(y.add(i));
                        sum = V::add(sum, e);
                    } else {
                        exp(V::sub(V::load_partial(x.add(i), m), max)).store_partial(y.add(i), m);
                        sum = V::add(sum, V::load_partial(y.add(i), m));
                    }
                    i += l;
                }
                let total = V::splat(sum.sum());
                let mut i = 0;
                while i < n {
                    let m = l.min(n - i);
                    if m == l {
                        V::div(V::load(y.add(i)), total).store(y.add(i));
                    } else {
                        V::div(V::load_partial(y.add(i), m), total).store_partial(y.add(i), m);
                    }
                    i += l;
                }
            }
        }
    }
}

/// Layer norm over each contiguous row of `n` elements: `y = (x − mean) · rstd · w + b`, the
/// row's mean and `1 / sqrt(var + eps)` written to `mean` and `rstd` (one per row).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm(
    level: Level,
    x: &[f32],
    y: &mut [f32],
    n: usize,
    weight: Option<&[f32]>,
    bias: Option<&[f32]>,
    eps: f32,
    mean: &mut [f32],
    rstd: &mut [f32],
) -> KResult {
    length("layer_norm output", x.len(), y.len())?;
    if n == 0 || !x.len().is_multiple_of(n) {
        return Err(arg(format!("layer_norm: {} elements are not rows of {n}", x.len())));
    }
    let rows = x.len() / n;
    length("layer_norm mean", rows, mean.len())?;
    length("layer_norm rstd", rows, rstd.len())?;
    for (what, v) in [("layer_norm weight", weight), ("layer_norm bias", bias)] {
        if let Some(v) = v {
            length(what, n, v.len())?;
        }
    }
    let mut job = LayerNormJob {
        x: x.as_ptr(),
        y: y.as_mut_ptr(),
        rows,
        n,
        w: weight.map_or(std::ptr::null(), <[f32]>::as_ptr),
        b: bias.map_or(std::ptr::null(), <[f32]>::as_ptr),
        eps,
        mean: mean.as_mut_ptr(),
        rstd: rstd.as_mut_ptr(),
    };
    // SAFETY: `x`, `y` hold rows · n elements, `w` and `b` (when not null) n, `mean` and `rstd`
    // rows (checked above).
    unsafe { run_job(level, &mut job) }
}

struct LayerNormJob {
    x: *const f32,
    y: *mut f32,
    rows: usize,
    n: usize,
    w: *const f32,
    b: *const f32,
    eps: f32,
    mean: *mut f32,
    rstd: *mut f32,
}

impl Job for LayerNormJob {
    #[inline(always)]
    unsafe fn run<V: Vector>(&mut self) {
        let (l, n) = (V::LANES, self.n);
        let count = n as f32;
        for r in 0..self.rows {
            // SAFETY: the level is supported (caller); row r is inside `x` and `y`, and every
            // access below is at i + m ≤ n (checked by `layer_norm`).
            unsafe {
                let (x, y) = (self.x.add(r * n), self.y.add(r * n));
                let load = |p: *const f32, i: usize, m: usize| {
                    if m == l {
                        V::load(p.add(i))
                    } else {
                        V::load_partial(p.add(i), m)
                    }
                };
                let mut s = V::splat(0.0);
                let mut i = 0;
                while i < n {
                    s = V::add(s, load(x, i, l.min(n - i)));
                    i += l;
                }
                let mu = s.sum() / count;
                let muv = V::splat(mu);
                let mut q = V::splat(0.0);
                let mut i = 0;
                while i < n {
                    let m = l.min(n - i);
                    // Lanes past m load the mean: they add nothing.
                    let v = if m == l { V::load(x.add(i)) } else { V::load_partial_or(x.add(i), m, mu) };
                    let d = V::sub(v, muv);
                    q = V::fma(d, d, q);
                    i += l;
                }
                let rs = 1.0 / (q.sum() / count + self.eps).sqrt();
                let rsv = V::splat(rs);
                let mut i = 0;
                while i < n {
                    let m = l.min(n - i);
                    let mut t = V::mul(V::sub(load(x, i, m), muv), rsv);
                    if !self.w.is_null() {
                        t = V::mul(t, load(self.w, i, m));
                    }
                    if !self.b.is_null() {
                        t = V::add(t, load(self.b, i, m));
                    }
                    if m == l {
                        t.store(y.add(i));
                    } else {
                        t.store_partial(y.add(i), m);
                    }
                    i += l;
                }
                *self.mean.add(r) = mu;
                *self.rstd.add(r) = rs;
            }
        }
    }
}

/// Sums over the middle axis of an `(outer, r, inner)` tensor, each sum divided by `divisor`
/// (1 for a sum, the count for a mean): `y[o, i] = Σⱼ x[o, j, i] / divisor`.
pub fn sum_axis(level: Level, x: &[f32], outer: usize, r: usize, inner: usize, divisor: f32, y: &mut [f32]) -> KResult {
    let shape = outer.checked_mul(r).and_then(|v| v.checked_mul(inner));
    let out = outer.checked_mul(inner);
    match (shape, out) {
        (Some(s), Some(o)) => {
            length("sum input", s, x.len())?;
            length("sum output", o, y.len())?;
        }
        _ => return Err(arg("sum: shape overflows".into())),
    }
    let mut job = SumJob { x: x.as_ptr(), y: y.as_mut_ptr(), outer, r, inner, divisor };
    // SAFETY: `x` holds outer · r · inner elements and `y` outer · inner (checked above).
    unsafe { run_job(level, &mut job) }
}

struct SumJob {
    x: *const f32,
    y: *mut f32,
    outer: usize,
    r: usize,
    inner: usize,
    divisor: f32,
}

impl Job for SumJob {
    #[inline(always)]
    unsafe fn run<V: Vector>(&mut self) {
        let l = V::LANES;
        let (r, inner) = (self.r, self.inner);
        // SAFETY: the level is supported (caller).
        let div = unsafe { V::splat(self.divisor) };
        for o in 0..self.outer {
            // SAFETY: block o spans [o·r·inner, (o + 1)·r·inner) of `x` and [o·inner, (o + 1)·
            // inner) of `y` (checked by `sum_axis`); every access below stays inside them.
            unsafe {
                let (x, y) = (self.x.add(o * r * inner), self.y.add(o * inner));
                if inner == 1 {
                    let mut s = V::splat(0.0);
                    let mut j = 0;
                    while j < r {
                        let m = l.min(r - j);
                        s = V::add(s, if m == l { V::load(x.add(j)) } else { V::load_partial(x.add(j), m) });
                        j += l;
                    }
                    *y = s.sum() / self.divisor;
                    continue;
                }
                let mut i = 0;
                while i < inner {
                    let m = l.min(inner - i);
                    let mut s = V::splat(0.0);
                    for j in 0..r {
                        let p = x.add(j * inner + i);
                        s = V::add(s, if m == l { V::load(p) } else { V::load_partial(p, m) });
                    }
                    let s = V::div(s, div);
                    if m == l {
                        s.store(y.add(i));
                    } else {
                        s.store_partial(y.add(i), m);
                    }
                    i += l;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pooling

/// A pooling window's reduction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pool {
    /// The largest element (NaN if any is NaN).
    Max,
    /// The mean: divided by `divisor` when given, else by the window's size counting padding
    /// (`count_include_pad`) or only the elements inside the image.
    Avg { count_include_pad: bool, divisor: Option<f32> },
}

/// Output row `oy` (`ow × c`) of a pooling of the NHWC image `x`, clamped to `[lo, hi]`.
#[allow(clippy::too_many_arguments)]
pub fn pool_row(
    level: Level,
    x: &[f32],
    g: &Window,
    oy: usize,
    pool: Pool,
    y: &mut [f32],
    lo: f32,
    hi: f32,
) -> KResult {
    g.check_row("pool", oy, x.len(), y.len())?;
    let mut job = PoolJob { x: x.as_ptr(), y: y.as_mut_ptr(), g: *g, oy, pool, lo, hi };
    // SAFETY: the buffers are as large as the geometry (checked above); the job reads only taps
    // inside the image.
    unsafe { run_job(level, &mut job) }
}

struct PoolJob {
    x: *const f32,
    y: *mut f32,
    g: Window,
    oy: usize,
    pool: Pool,
    lo: f32,
    hi: f32,
}

impl Job for PoolJob {
    #[inline(always)]
    unsafe fn run<V: Vector>(&mut self) {
        let g = self.g;
        let l = V::LANES;
        let [kh, kw] = g.kernel;
        // Window rows inside the image, and the count of all rows (for count_include_pad: the
        // window clipped to the padded image, as PyTorch counts it).
        let top = (self.oy * g.stride[0]) as isize - g.padding[0] as isize;
        let rows_in = |ki: usize| {
            let iy = top + (ki * g.dilation[0]) as isize;
            (iy >= 0 && (iy as usize) < g.h).then_some(iy as usize)
        };
        let padded_h = g.h + 2 * g.padding[0];
        let padded_w = g.w + 2 * g.padding[1];
        // SAFETY: the level is supported (caller).
        let (lo, hi) = unsafe { (V::splat(self.lo), V::splat(self.hi)) };
        for ox in 0..g.ow {
            let left = (ox * g.stride[1]) as isize - g.padding[1] as isize;
            let mut inside = 0usize;
            let mut padded = 0usize;
            for ki in 0..kh {
                let py = self.oy * g.stride[0] + ki * g.dilation[0];
                for kj in 0..kw {
                    let px = ox * g.stride[1] + kj * g.dilation[1];
                    if py < padded_h && px < padded_w {
                        padded += 1;
                    }
                    let ix = left + (kj * g.dilation[1]) as isize;
                    if rows_in(ki).is_some() && ix >= 0 && (ix as usize) < g.w {
                        inside += 1;
                    }
                }
            }
            let divisor = match self.pool {
                Pool::Max => 1.0,
                Pool::Avg { divisor: Some(d), .. } => d,
                Pool::Avg { count_include_pad: true, .. } => padded as f32,
                Pool::Avg { count_include_pad: false, .. } => inside as f32,
            };
            let mut c0 = 0;
            while c0 < g.c {
                let m = l.min(g.c - c0);
                // SAFETY: the level is supported (caller); every tap read is at an in-image
                // (iy, ix) and channels c0..c0 + m ≤ c, inside `x`; the store is at ox < ow,
                // inside the output row (checked by `pool_row`).
                unsafe {
                    let mut acc = V::splat(if self.pool == Pool::Max { f32::NEG_INFINITY } else { 0.0 });
                    for ki in 0..kh {
                        let Some(iy) = rows_in(ki) else { continue };
                        for kj in 0..kw {
                            let ix = left + (kj * g.dilation[1]) as isize;
                            if ix < 0 || ix as usize >= g.w {
                                continue;
                            }
                            let p = self.x.add((iy * g.w + ix as usize) * g.c + c0);
                            let v = if m == l { V::load(p) } else { V::load_partial(p, m) };
                            acc = if self.pool == Pool::Max { V::max(acc, v) } else { V::add(acc, v) };
                        }
                    }
                    if self.pool != Pool::Max {
                        acc = V::div(acc, V::splat(divisor));
                    }
                    let out = acc.clamp(lo, hi);
                    let q = self.y.add(ox * g.c + c0);
                    if m == l {
                        out.store(q);
                    } else {
                        out.store_partial(q, m);
                    }
                }
                c0 += l;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i * 37 + seed * 11) % 101) as f32 - 50.0) / 9.0).collect()
    }

    fn close(got: &[f32], want: &[f64], tol: f64, what: &str) {
        assert_eq!(got.len(), want.len());
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let ok = (f64::from(g) - w).abs() <= tol * w.abs().max(1.0) || (g.is_nan() && w.is_nan());
            assert!(ok, "{what}[{i}]: {g} vs {w}");
        }
    }

    #[test]
    fn binary_matches_scalar_arithmetic_with_scalars_and_tails() {
        for level in Level::available() {
            for n in [0, 1, 5, 8, 17, 33] {
                let (a, b) = (data(n, 1), data(n, 2));
                for op in [Binary::Add, Binary::Sub, Binary::Mul, Binary::Div, Binary::Max, Binary::Min] {
                    let f = |x: f32, y: f32| match op {
                        Binary::Add => x + y,
                        Binary::Sub => x - y,
                        Binary::Mul => x * y,
                        Binary::Div => x / y,
                        Binary::Max => x.max(y),
                        Binary::Min => x.min(y),
                    };
                    let mut out = vec![0.0; n];
                    binary(level, op, Side::Slice(&a), Side::Slice(&b), &mut out, f32::NEG_INFINITY, f32::INFINITY)
                        .unwrap();
                    for i in 0..n {
                        assert_eq!(out[i].to_bits(), f(a[i], b[i]).to_bits(), "{level:?} {op:?} {n}");
                    }
                    binary(level, op, Side::Scalar(1.5), Side::Slice(&b), &mut out, -2.0, 2.0).unwrap();
                    for i in 0..n {
                        assert_eq!(out[i], f(1.5, b[i]).clamp(-2.0, 2.0), "{level:?} {op:?} scalar lhs");
                    }
                    binary(level, op, Side::Slice(&a), Side::Scalar(-0.5), &mut out, 0.0, f32::INFINITY).unwrap();
                    for i in 0..n {
                        assert_eq!(out[i], f(a[i], -0.5).max(0.0), "{level:?} {op:?} scalar rhs");
                    }
                }
            }
            let mut out = [0.0; 3];
            assert!(binary(level, Binary::Add, Side::Slice(&[1.0; 2]), Side::Scalar(1.0), &mut out, 0.0, 1.0).is_err());
        }
    }

    #[test]
    fn max_and_min_propagate_nan_from_either_side() {
        for level in Level::available() {
            let a = [f32::NAN, 1.0, 2.0, f32::NAN, 0.0, 0.0, 0.0, 0.0, 0.0];
            let b = [1.0, f32::NAN, 3.0, f32::NAN, 0.0, 0.0, 0.0, 0.0, f32::NAN];
            for op in [Binary::Max, Binary::Min] {
                let mut out = [0.0; 9];
                binary(level, op, Side::Slice(&a), Side::Slice(&b), &mut out, f32::NEG_INFINITY, f32::INFINITY)
                    .unwrap();
                assert!(out[0].is_nan() && out[1].is_nan() && out[3].is_nan() && out[8].is_nan(), "{level:?} {out:?}");
                assert!(!out[2].is_nan());
            }
        }
    }

    #[test]
    fn activations_match_libm_within_a_few_ulp() {
        let x: Vec<f32> = (0..4001).map(|i| (i as f32 - 2000.0) / 100.0).chain([0.0, -0.0, 1e-6, -1e-6]).collect();
        for level in Level::available() {
            type Case = (Unary, fn(f64) -> f64, f64);
            let cases: [Case; 8] = [
                (Unary::Sigmoid, |x| 1.0 / (1.0 + (-x).exp()), 1e-6),
                (Unary::Silu, |x| x / (1.0 + (-x).exp()), 1e-6),
                (Unary::Tanh, f64::tanh, 1e-6),
                (Unary::Exp, f64::exp, 1e-6),
                (Unary::Gelu, |x| 0.5 * x * (1.0 + crate::elementwise::erf_f64(x / 2f64.sqrt())), 1e-6),
                (
                    Unary::GeluTanh,
                    |x| 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh()),
                    1e-6,
                ),
                (Unary::Hardswish, |x| x * (x + 3.0).clamp(0.0, 6.0) / 6.0, 1e-6),
                (Unary::Hardsigmoid, |x| (x + 3.0).clamp(0.0, 6.0) / 6.0, 1e-6),
            ];
            for (op, f, tol) in cases {
                let mut out = vec![0.0; x.len()];
                unary(level, op, &x, &mut out).unwrap();
                let want: Vec<f64> = x.iter().map(|&v| f(f64::from(v))).collect();
                close(&out, &want, tol, &format!("{level:?} {op:?}"));
            }
            let mut out = vec![0.0; x.len()];
            unary(level, Unary::Clamp(0.0, 6.0), &x, &mut out).unwrap();
            assert!(out.iter().zip(&x).all(|(o, v)| *o == v.clamp(0.0, 6.0)));
            let mut nan = [0.0; 3];
            unary(level, Unary::Sigmoid, &[f32::NAN, 0.0, f32::NAN], &mut nan).unwrap();
            assert!(nan[0].is_nan() && nan[2].is_nan() && nan[1] == 0.5, "{level:?} {nan:?}");
            let inf = [f32::NEG_INFINITY, f32::INFINITY, -100.0];
            let mut out3 = [1.0; 3];
            unary(level, Unary::Exp, &inf, &mut out3).unwrap();
            assert_eq!((out3[0], out3[1], out3[2]), (0.0, f32::INFINITY, 0.0), "{level:?}");
            unary(level, Unary::Gelu, &inf, &mut out3).unwrap();
            assert_eq!((out3[0], out3[1]), (0.0, f32::INFINITY), "{level:?}");
            unary(level, Unary::Sigmoid, &inf, &mut out3).unwrap();
            assert_eq!((out3[0], out3[1]), (0.0, 1.0), "{level:?}");
            // As the portable kernel's x / (1 + e⁻ˣ): −∞ / ∞.
            unary(level, Unary::Silu, &inf, &mut out3).unwrap();
            assert!(out3[0].is_nan() && out3[1] == f32::INFINITY, "{level:?} {out3:?}");
            unary(level, Unary::Tanh, &inf, &mut out3).unwrap();
            assert_eq!((out3[0], out3[1]), (-1.0, 1.0), "{level:?}");
            assert!(unary(level, Unary::Clamp(1.0, 0.0), &x, &mut out).is_err());
        }
    }

    #[test]
    fn softmax_and_layer_norm_match_a_double_reference() {
        for level in Level::available() {
            for n in [1, 3, 8, 19, 64] {
                let rows = 3;
                let x = data(rows * n, n);
                let mut y = vec![0.0; rows * n];
                softmax(level, &x, &mut y, n).unwrap();
                let mut want = Vec::new();
                for r in x.chunks(n) {
                    let m = r.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
                    let s: f64 = r.iter().map(|&v| (f64::from(v) - m).exp()).sum();
                    want.extend(r.iter().map(|&v| (f64::from(v) - m).exp() / s));
                }
                close(&y, &want, 1e-6, &format!("{level:?} softmax {n}"));

                let w = data(n, 5);
                let b = data(n, 6);
                let (mut mean, mut rstd) = (vec![0.0; rows], vec![0.0; rows]);
                layer_norm(level, &x, &mut y, n, Some(&w), Some(&b), 1e-5, &mut mean, &mut rstd).unwrap();
                let mut want = Vec::new();
                for (k, r) in x.chunks(n).enumerate() {
                    let mu = r.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
                    let var = r.iter().map(|&v| (f64::from(v) - mu).powi(2)).sum::<f64>() / n as f64;
                    let rs = 1.0 / (var + 1e-5).sqrt();
                    assert!((f64::from(mean[k]) - mu).abs() <= 1e-5 && (f64::from(rstd[k]) - rs).abs() <= 1e-3 * rs);
                    want.extend(
                        r.iter()
                            .enumerate()
                            .map(|(j, &v)| (f64::from(v) - mu) * rs * f64::from(w[j]) + f64::from(b[j])),
                    );
                }
                close(&y, &want, 1e-5, &format!("{level:?} layer_norm {n}"));
            }
            assert!(softmax(level, &[0.0; 5], &mut [0.0; 5], 2).is_err());
            assert!(layer_norm(
                level,
                &[0.0; 4],
                &mut [0.0; 4],
                2,
                Some(&[1.0]),
                None,
                1e-5,
                &mut [0.0; 2],
                &mut [0.0; 2]
            )
            .is_err());
        }
    }

    #[test]
    fn sums_over_an_axis_match_plain_loops() {
        for level in Level::available() {
            for (outer, r, inner) in [(1, 1, 1), (2, 7, 1), (3, 5, 9), (1, 49, 32), (2, 3, 17)] {
                let x = data(outer * r * inner, r);
                let mut y = vec![0.0; outer * inner];
                sum_axis(level, &x, outer, r, inner, r as f32, &mut y).unwrap();
                let mut want = vec![0.0f64; outer * inner];
                for o in 0..outer {
                    for j in 0..r {
                        for i in 0..inner {
                            want[o * inner + i] += f64::from(x[(o * r + j) * inner + i]) / r as f64;
                        }
                    }
                }
                close(&y, &want, 1e-5, &format!("{level:?} sum {outer}x{r}x{inner}"));
            }
            assert!(sum_axis(level, &[0.0; 5], 2, 3, 1, 1.0, &mut [0.0; 2]).is_err());
        }
    }

    /// Pooling of an NHWC image by brute force over the padded window.
    fn reference_pool(x: &[f32], g: &Window, pool: Pool) -> Vec<f32> {
        let mut y = vec![0.0; g.oh * g.ow * g.c];
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                for c in 0..g.c {
                    let (mut acc, mut inside, mut padded) =
                        (if pool == Pool::Max { f32::NEG_INFINITY } else { 0.0 }, 0, 0);
                    for ki in 0..g.kernel[0] {
                        for kj in 0..g.kernel[1] {
                            let py = oy * g.stride[0] + ki * g.dilation[0];
                            let px = ox * g.stride[1] + kj * g.dilation[1];
                            if py < g.h + 2 * g.padding[0] && px < g.w + 2 * g.padding[1] {
                                padded += 1;
                            }
                            let (iy, ix) = (py as isize - g.padding[0] as isize, px as isize - g.padding[1] as isize);
                            if iy < 0 || ix < 0 || iy as usize >= g.h || ix as usize >= g.w {
                                continue;
                            }
                            inside += 1;
                            let v = x[(iy as usize * g.w + ix as usize) * g.c + c];
                            acc = if pool == Pool::Max { acc.max(v) } else { acc + v };
                        }
                    }
                    y[(oy * g.ow + ox) * g.c + c] = match pool {
                        Pool::Max => acc,
                        Pool::Avg { divisor: Some(d), .. } => acc / d,
                        Pool::Avg { count_include_pad: true, .. } => acc / padded as f32,
                        Pool::Avg { .. } => acc / inside as f32,
                    };
                }
            }
        }
        y
    }

    #[test]
    fn pooling_rows_match_brute_force() {
        for level in Level::available() {
            for (h, w, c, k, s, p, d) in
                [(5, 6, 3, 2, 2, 0, 1), (7, 7, 20, 3, 2, 1, 1), (6, 5, 9, 3, 1, 1, 2), (4, 4, 16, 4, 4, 0, 1)]
            {
                let oh = (h + 2 * p - d * (k - 1) - 1) / s + 1;
                let ow = (w + 2 * p - d * (k - 1) - 1) / s + 1;
                let g = Window { h, w, c, oh, ow, kernel: [k, k], stride: [s, s], padding: [p, p], dilation: [d, d] };
                let x = data(h * w * c, c);
                let pools = [
                    Pool::Max,
                    Pool::Avg { count_include_pad: true, divisor: None },
                    Pool::Avg { count_include_pad: false, divisor: None },
                    Pool::Avg { count_include_pad: false, divisor: Some(3.0) },
                ];
                for pool in pools {
                    let want = reference_pool(&x, &g, pool);
                    let mut y = vec![0.0; ow * c];
                    for oy in 0..oh {
                        pool_row(level, &x, &g, oy, pool, &mut y, f32::NEG_INFINITY, f32::INFINITY).unwrap();
                        let want_row: Vec<f64> =
                            want[oy * ow * c..(oy + 1) * ow * c].iter().map(|&v| f64::from(v)).collect();
                        close(&y, &want_row, 1e-6, &format!("{level:?} {pool:?} {h}x{w}x{c} row {oy}"));
                    }
                }
                let mut y = vec![0.0; ow * c];
                assert!(pool_row(level, &x, &g, oh, Pool::Max, &mut y, 0.0, 1.0).is_err());
                assert!(pool_row(level, &x[1..], &g, 0, Pool::Max, &mut y, 0.0, 1.0).is_err());
            }
        }
    }
}
