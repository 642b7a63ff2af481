//! Row kernels of the Ferrite backend, written once over the `Vector` trait and run at the level the
//! caller chose: element-wise arithmetic (with one side repeated), activations, softmax and
//! layer norm over contiguous rows, sums over one axis, and NHWC pooling windows.
//!
//! Each public function checks every length it relies on and then runs a `Job` at the level;
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
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a · b`.
    Mul,
    /// `a / b`.
    Div,
    /// `maximum`: NaN if either side is NaN.
    Max,
    /// `minimum`: NaN if either side is NaN.
    Min,
}

/// One side of a binary operator over a run: as many elements as the output, or one repeated.
#[derive(Debug, Clone, Copy)]
pub enum Side<'a> {
    /// One element per output element.
    Slice(&'a [f32]),
    /// One value for every output element.
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
    /// `tanh(x)`.
    Tanh,
    /// `exp(x)`.
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
    let mut job = BinaryJob { op, a: pa, sa, b: pb, sb, out: out.as_mut_ptr(), n, rows: 1, repeat: 0, lo, hi };
    // SAFETY: every non-null side holds `n` elements, as does `out` (checked above).
    unsafe { run_job(level, &mut job) }
}

/// `out = clamp(x op row, lo, hi)` (or `row op x` with `row_first`) with `row` repeated along
/// every row of `x` and `out` (rows of `row.len()`): a squeeze-excitation scale or a bias
/// broadcast over pixels, in one call however short the rows.
#[allow(clippy::too_many_arguments)]
pub fn binary_repeated(
    level: Level,
    op: Binary,
    x: &[f32],
    row: &[f32],
    row_first: bool,
    out: &mut [f32],
    lo: f32,
    hi: f32,
) -> KResult {
    let n = row.len();
    length("binary operand", out.len(), x.len())?;
    if n == 0 || !out.len().is_multiple_of(n) {
        return Err(arg(format!("binary: {} elements are not rows of {n}", out.len())));
    }
    let (a, b) = if row_first { (row.as_ptr(), x.as_ptr()) } else { (x.as_ptr(), row.as_ptr()) };
    let repeat = if row_first { 1 } else { 2 };
    let rows = out.len() / n;
    let mut job = BinaryJob { op, a, sa: 0.0, b, sb: 0.0, out: out.as_mut_ptr(), n, rows, repeat, lo, hi };
    // SAFETY: `x` and `out` hold `rows · n` elements and `row` holds `n` (checked above).
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
    /// Elements per row.
    n: usize,
    /// Rows: `out` and every side that is neither scalar nor repeated advance `n` per row.
    rows: usize,
    /// The side that is one row repeated for every row: 0 none, 1 `a`, 2 `b`.
    repeat: u8,
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

/// `out[i] = clamp(a[i] op b[i], lo, hi)` for `i < n`, the operation numbered `OP` and a side
/// scalar (`sa`, `sb`) where `SA` / `SB` say so. Const parameters, not a closure or a `match`
/// per vector, so that each combination compiles to a loop of its own.
///
/// # Safety
/// The level of `V` is supported; non-scalar sides and `out` hold `n` elements.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn binary_run<V: Vector, const OP: u8, const SA: bool, const SB: bool>(
    a: *const f32,
    sa: f32,
    b: *const f32,
    sb: f32,
    out: *mut f32,
    n: usize,
    lo: f32,
    hi: f32,
) {
    let op = match OP {
        0 => Binary::Add,
        1 => Binary::Sub,
        2 => Binary::Mul,
        3 => Binary::Div,
        4 => Binary::Max,
        _ => Binary::Min,
    };
    let l = V::LANES;
    // SAFETY: the level is supported (caller).
    let (vlo, vhi, va, vb) = unsafe { (V::splat(lo), V::splat(hi), V::splat(sa), V::splat(sb)) };
    let mut i = 0;
    while i + l <= n {
        // SAFETY: `i + l ≤ n`; the sides read are not scalar (caller).
        unsafe {
            let x = if SA { va } else { V::load(a.add(i)) };
            let y = if SB { vb } else { V::load(b.add(i)) };
            apply(op, x, y).clamp(vlo, vhi).store(out.add(i));
        }
        i += l;
    }
    if i < n {
        let m = n - i;
        // SAFETY: the last `m = n − i` elements.
        unsafe {
            let x = if SA { va } else { V::load_partial(a.add(i), m) };
            let y = if SB { vb } else { V::load_partial(b.add(i), m) };
            apply(op, x, y).clamp(vlo, vhi).store_partial(out.add(i), m);
        }
    }
}

impl BinaryJob {
    /// Every row, for the operation numbered `OP` and the scalar sides `SA`, `SB`.
    #[inline(always)]
    unsafe fn rows_of<V: Vector, const OP: u8, const SA: bool, const SB: bool>(&self) {
        for r in 0..self.rows {
            let at = r * self.n;
            // SAFETY: the level is supported (caller); a side neither scalar nor repeated, and
            // `out`, hold `rows · n` elements, a repeated side `n` (checked by the callers).
            unsafe {
                let a = if SA || self.repeat == 1 { self.a } else { self.a.add(at) };
                let b = if SB || self.repeat == 2 { self.b } else { self.b.add(at) };
                binary_run::<V, OP, SA, SB>(a, self.sa, b, self.sb, self.out.add(at), self.n, self.lo, self.hi);
            }
        }
    }

    #[inline(always)]
    unsafe fn with_op<V: Vector, const OP: u8>(&self) {
        // SAFETY: as for `rows_of` (the scalar flags follow the null sides).
        unsafe {
            match (self.a.is_null(), self.b.is_null()) {
                (false, false) => self.rows_of::<V, OP, false, false>(),
                (true, false) => self.rows_of::<V, OP, true, false>(),
                (false, true) => self.rows_of::<V, OP, false, true>(),
                (true, true) => self.rows_of::<V, OP, true, true>(),
            }
        }
    }
}

impl Job for BinaryJob {
    #[inline(always)]
    unsafe fn run<V: Vector>(&mut self) {
        // SAFETY: the level is supported (caller); the sides were checked by the callers.
        unsafe {
            match self.op {
                Binary::Add => self.with_op::<V, 0>(),
                Binary::Sub => self.with_op::<V, 1>(),
                Binary::Mul => self.with_op::<V, 2>(),
                Binary::Div => self.with_op::<V, 3>(),
                Binary::Max => self.with_op::<V, 4>(),
                Binary::Min => self.with_op::<V, 5>(),
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

/// [`unary`] in place: `x[i] = op(x[i])`.
pub fn unary_in_place(level: Level, op: Unary, x: &mut [f32]) -> KResult {
    if let Unary::Clamp(lo, hi) = op {
        if lo.is_nan() || hi.is_nan() || lo > hi {
            return Err(arg(format!("clamp: invalid bounds [{lo}, {hi}]")));
        }
    }
    let mut job = UnaryJob { op, x: x.as_ptr(), out: x.as_mut_ptr(), n: x.len() };
    // SAFETY: `x` holds `n` elements; each vector is loaded before it is stored to the same
    // place, and no element is read after an earlier one is written, so input and output may be
    // the same memory.
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

/// `eᶻ` for `z ≤ 0` (or NaN), cheaper than the general [`exp`] because nothing can overflow:
/// `eᶻ = 2ⁿ · eᵗ` with `n = round(z · log₂e)` made by one fused add of `1.5·2²³ + 127` (the
/// sum's low mantissa bits then hold `n + 127`, shifted into an exponent by [`Vector::shl23`]),
/// `t = z − n·ln2` in `[−ln2/2, ln2/2]` (ln2 split in two, exact products), and
/// `eᵗ ≈ 1 + t·p(t)` with a degree-4 `p` fitted here for relative error 9.2e-8 on that interval
/// (1.6e-7 evaluated in f32). Below `z = −87.34` the shift would be meaningless: the result is 0
/// there (the true value is below f32's normal range). About 12 vector operations where the
/// general [`exp`] takes 24.
#[inline(always)]
unsafe fn exp_nonpositive<V: Vector>(z: V) -> V {
    // 1.5·2²³ + 127: adding it rounds to an integer and leaves n + 127 in the low bits.
    const MAGIC: f32 = 12_583_039.0;
    const CUTOFF: f32 = -87.336_54;
    // SAFETY: the level is supported (caller).
    unsafe {
        let v = V::fma(z, V::splat(std::f32::consts::LOG2_E), V::splat(MAGIC));
        let s = v.shl23();
        let n = V::sub(v, V::splat(MAGIC));
        let t = V::fma(n, V::splat(-0.693_145_75), z);
        let t = V::fma(n, V::splat(-1.428_606_8e-6), t);
        let mut p = V::fma(V::splat(8.290_297e-3), t, V::splat(4.189_791e-2));
        p = V::fma(p, t, V::splat(0.166_676_36));
        p = V::fma(p, t, V::splat(0.499_991_5));
        p = V::fma(p, t, V::splat(0.999_999_7));
        let e = V::fma(V::mul(t, s), p, s);
        V::select_neg(V::sub(z, V::splat(CUTOFF)), V::splat(0.0), e)
    }
}

/// `1 / (1 + e⁻ˣ)` with no overflow and no clamping: `f = e / (1 + e)` with
/// `e = e^{−|x|}` ([`exp_nonpositive`]) in `(0, 1]` is the sigmoid of `−|x|`, and
/// `sigmoid(x) = 1 − f` for `x ≥ 0`. About 16 vector operations where `1 / (1 + exp(−x))` with
/// the general [`exp`] took 27.
#[inline(always)]
unsafe fn sigmoid<V: Vector>(x: V) -> V {
    // SAFETY: the level is supported (caller).
    unsafe {
        let e = exp_nonpositive(x.neg_abs());
        let f = V::div(e, V::add(e, V::splat(1.0)));
        V::select_sign(x, f, V::sub(V::splat(1.0), f))
    }
}

/// `tanh(x) = ±(1 − e) / (1 + e)` with `e = e^{−2|x|}` ([`exp_nonpositive`]) in `(0, 1]`: no
/// overflow, the sign of `x` restored last (−0 stays −0). About 19 vector operations where
/// `1 − 2 / (e²ˣ + 1)` with the general [`exp`] took 28.
#[inline(always)]
unsafe fn tanh<V: Vector>(x: V) -> V {
    // SAFETY: the level is supported (caller).
    unsafe {
        let one = V::splat(1.0);
        let z = x.neg_abs();
        let e = exp_nonpositive(V::add(z, z));
        let r = V::div(V::sub(one, e), V::add(one, e));
        V::select_sign(x, r.neg_abs(), r)
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
        let q = V::mul(V::mul(p, t), V::mul(half, exp_nonpositive(V::mul(z, z).neg_abs())));
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
            Unary::Sigmoid => sigmoid(x),
            Unary::Silu => V::mul(x, sigmoid(x)),
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

impl UnaryJob {
    /// `out[i] = op(x[i])` over the job's elements, two vectors per iteration, for the
    /// operation numbered `OP` (see [`Job::run`]; `lo` and `hi` are a clamp's bounds). A const
    /// parameter rather than a closure: closures do not inherit the caller's target features,
    /// so the SIMD helpers would not inline into one.
    #[inline(always)]
    unsafe fn each<V: Vector, const OP: u8>(&self, lo: f32, hi: f32) {
        let op = match OP {
            0 => Unary::Clamp(lo, hi),
            1 => Unary::Sigmoid,
            2 => Unary::Silu,
            3 => Unary::Tanh,
            4 => Unary::Exp,
            5 => Unary::Gelu,
            6 => Unary::GeluTanh,
            7 => Unary::Hardswish,
            _ => Unary::Hardsigmoid,
        };
        let l = V::LANES;
        let mut i = 0;
        while i + 2 * l <= self.n {
            // SAFETY: the level is supported (caller); `i + 2l ≤ n`, and `x` and `out` hold `n`
            // elements (checked by `unary`).
            unsafe {
                let (a, b) = (V::load(self.x.add(i)), V::load(self.x.add(i + l)));
                activation(op, a).store(self.out.add(i));
                activation(op, b).store(self.out.add(i + l));
            }
            i += 2 * l;
        }
        if i + l <= self.n {
            // SAFETY: as above, `i + l ≤ n`.
            unsafe { activation(op, V::load(self.x.add(i))).store(self.out.add(i)) };
            i += l;
        }
        if i < self.n {
            let m = self.n - i;
            // SAFETY: as above, the last `m = n − i` elements.
            unsafe { activation(op, V::load_partial(self.x.add(i), m)).store_partial(self.out.add(i), m) };
        }
    }
}

impl Job for UnaryJob {
    #[inline(always)]
    unsafe fn run<V: Vector>(&mut self) {
        // One loop per operation: its constants stay in registers and nothing is dispatched per
        // vector (a `match` inside the loop cost a jump table and reloaded constants per
        // vector: a clamp ran at 0.39 ns per element, three times a copy's time).
        // SAFETY: the level is supported (caller); `each` stays within the job's elements.
        unsafe {
            match self.op {
                Unary::Clamp(lo, hi) => self.each::<V, 0>(lo, hi),
                Unary::Sigmoid => self.each::<V, 1>(0.0, 0.0),
                Unary::Silu => self.each::<V, 2>(0.0, 0.0),
                Unary::Tanh => self.each::<V, 3>(0.0, 0.0),
                Unary::Exp => self.each::<V, 4>(0.0, 0.0),
                Unary::Gelu => self.each::<V, 5>(0.0, 0.0),
                Unary::GeluTanh => self.each::<V, 6>(0.0, 0.0),
                Unary::Hardswish => self.each::<V, 7>(0.0, 0.0),
                Unary::Hardsigmoid => self.each::<V, 8>(0.0, 0.0),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rows

/// Softmax over each contiguous row of `n` elements of `x` (`x.len()` a multiple of `n`). With
/// `safe`, a row whose elements are all `−inf` gives zeros (PyTorch's `_safe_softmax`) rather
/// than NaN.
pub fn softmax(level: Level, x: &[f32], y: &mut [f32], n: usize, safe: bool) -> KResult {
    length("softmax output", x.len(), y.len())?;
    if n == 0 || !x.len().is_multiple_of(n) {
        return Err(arg(format!("softmax: {} elements are not rows of {n}", x.len())));
    }
    let mut job = SoftmaxJob { x: x.as_ptr(), y: y.as_mut_ptr(), rows: x.len() / n, n, safe };
    // SAFETY: `x` and `y` hold rows · n elements (checked above).
    unsafe { run_job(level, &mut job) }
}

struct SoftmaxJob {
    x: *const f32,
    y: *mut f32,
    rows: usize,
    n: usize,
    safe: bool,
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
                let row_max = mv.max_lane();
                if self.safe && row_max == f32::NEG_INFINITY {
                    // Every element is −inf (a NaN would have made the maximum NaN).
                    std::ptr::write_bytes(y, 0, n);
                    continue;
                }
                let max = V::splat(row_max);
                let mut sum = V::splat(0.0);
                let mut i = 0;
                while i < n {
                    let m = l.min(n - i);
                    // x − max ≤ 0 (or NaN): the exponential that cannot overflow.
                    if m == l {
                        let e = exp_nonpositive(V::sub(V::load(x.add(i)), max));
                        e.store(y.add(i));
                        sum = V::add(sum, e);
                    } else {
                        exp_nonpositive(V::sub(V::load_partial(x.add(i), m), max)).store_partial(y.add(i), m);
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
    Avg {
        /// Whether padded positions count toward the window's size.
        count_include_pad: bool,
        /// A fixed divisor (`divisor_override`), instead of the window's size.
        divisor: Option<f32>,
    },
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
        // Only the taps inside the image are visited (a window far larger than its image costs
        // no more than the image), and the window's counts are computed, not counted.
        let rows_inside = taps_in(top, g.dilation[0], kh, g.h);
        let rows_padded = taps_in((self.oy * g.stride[0]) as isize, g.dilation[0], kh, padded_h);
        for ox in 0..g.ow {
            let left = (ox * g.stride[1]) as isize - g.padding[1] as isize;
            let cols_inside = taps_in(left, g.dilation[1], kw, g.w);
            let cols_padded = taps_in((ox * g.stride[1]) as isize, g.dilation[1], kw, padded_w);
            let inside = rows_inside.len() * cols_inside.len();
            let padded = rows_padded.len() * cols_padded.len();
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
                    for ki in rows_inside.clone() {
                        let Some(iy) = rows_in(ki) else { continue };
                        for kj in cols_inside.clone() {
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

/// The taps `k` in `0..n` whose position `start + k·step` lies in `[0, limit)`: a range (taps
/// are in increasing position order, so those inside are contiguous).
fn taps_in(start: isize, step: usize, n: usize, limit: usize) -> std::ops::Range<usize> {
    let step = step.max(1) as isize;
    // First k with start + k·step ≥ 0, and the first with start + k·step ≥ limit.
    let first = if start >= 0 { 0 } else { (-start + step - 1) / step };
    let end = if start >= limit as isize { 0 } else { (limit as isize - start + step - 1) / step };
    let (first, end) = ((first as usize).min(n), (end.max(0) as usize).min(n));
    first..end.max(first)
}

#[cfg(test)]
mod tests;
