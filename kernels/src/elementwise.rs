//! Element-wise kernels: N-d broadcasting maps over one, two or three inputs, numeric casts
//! between element types, the arithmetic the portable operators need (Python-style floor
//! division and remainder, NaN-propagating min/max, wrapping integer arithmetic) and `erf`.
//!
//! Broadcasting is planned once per call ([`BroadcastPlan`]): size-1 dimensions are dropped and
//! adjacent dimensions that every operand walks contiguously (or not at all) are merged, so the
//! innermost loop always runs over plain slices with unit or zero stride. Equal shapes collapse
//! to one flat loop, a scalar operand to a fill-style loop, a trailing-row (bias) operand to a
//! per-row slice zip. Inner loops are closures over slice zips, which LLVM vectorises for
//! arithmetic on primitive types. Large outputs are split into chunks handled by rayon; each
//! element is computed independently, so results do not depend on the thread count.

use crate::num::{Element, Real};
use crate::{KResult, KernelError};

/// Outputs with at least this many elements are computed in parallel.
pub const PAR_THRESHOLD: usize = 1 << 16;
/// Elements per parallel task (a multiple of typical vector widths).
const CHUNK: usize = 1 << 14;

// ---------------------------------------------------------------------------------------------
// erf

/// The error function in single precision: [`erf_f64`] rounded to f32 (within half an ulp of
/// the exact value, like glibc's `erff` up to its own ≤1-ulp error).
#[inline]
pub fn erf_f32(x: f32) -> f32 {
    erf_f64(f64::from(x)) as f32
}

/// The error function in double precision (error below 1 ulp).
///
/// Algorithm and coefficients from Sun Microsystems' fdlibm `s_erf.c` (as also used by FreeBSD
/// msun and musl): "Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved. Developed
/// at SunPro, a Sun Microsystems, Inc. business. Permission to use, copy, modify, and distribute
/// this software is freely granted, provided that this notice is preserved."
///
/// * `|x| < 0.84375`: `erf(x) = x + x·P(x²)/Q(x²)`;
/// * `0.84375 ≤ |x| < 1.25`: `erf(x) = c + P1(s)/Q1(s)`, `s = |x| - 1`, `c = 0.84506291151`;
/// * `1.25 ≤ |x| < 6`: `erf(x) = 1 - exp(-x² - 0.5625 + R(1/x²)/S(1/x²)) / x` with two rational
///   fits split at `1/0.35`, `-x²` evaluated as `-z² + (z-x)(z+x)` with `z` = `x` truncated to
///   its high 32 bits for accuracy;
/// * `|x| ≥ 6`: `±1`; `erf(±inf) = ±1`, `erf(NaN) = NaN`.
#[allow(clippy::excessive_precision, clippy::unreadable_literal)]
#[inline]
pub fn erf_f64(x: f64) -> f64 {
    const ERX: f64 = 8.45062911510467529297e-01;
    const EFX: f64 = 1.28379167095512586316e-01;
    const PP: [f64; 5] = [
        1.28379167095512558561e-01,
        -3.25042107247001499370e-01,
        -2.84817495755985104766e-02,
        -5.77027029648944159157e-03,
        -2.37630166566501626084e-05,
    ];
    const QQ: [f64; 5] = [
        3.97917223959155352819e-01,
        6.50222499887672944485e-02,
        5.08130628187576562776e-03,
        1.32494738004321644526e-04,
        -3.96022827877536812320e-06,
    ];
    const PA: [f64; 7] = [
        -2.36211856075265944077e-03,
        4.14856118683748331666e-01,
        -3.72207876035701323847e-01,
        3.18346619901161753674e-01,
        -1.10894694282396677476e-01,
        3.54783043256182359371e-02,
        -2.16637559486879084300e-03,
    ];
    const QA: [f64; 6] = [
        1.06420880400844228286e-01,
        5.40397917702171048937e-01,
        7.18286544141962662868e-02,
        1.26171219808761642112e-01,
        1.36370839120290507362e-02,
        1.19844998467991074170e-02,
    ];
    const RA: [f64; 8] = [
        -9.86494403484714822705e-03,
        -6.93858572707181764372e-01,
        -1.05586262253232909814e+01,
        -6.23753324503260060396e+01,
        -1.62396669462573470355e+02,
        -1.84605092906711035994e+02,
        -8.12874355063065934246e+01,
        -9.81432934416914548592e+00,
    ];
    const SA: [f64; 8] = [
        1.96512716674392571292e+01,
        1.37657754143519042600e+02,
        4.34565877475229228821e+02,
        6.45387271733267880336e+02,
        4.29008140027567833386e+02,
        1.08635005541779435134e+02,
        6.57024977031928170135e+00,
        -6.04244152148580987438e-02,
    ];
    const RB: [f64; 7] = [
        -9.86494292470009928597e-03,
        -7.99283237680523006574e-01,
        -1.77579549177547519889e+01,
        -1.60636384855821916062e+02,
        -6.37566443368389627722e+02,
        -1.02509513161107724954e+03,
        -4.83519191608651397019e+02,
    ];
    const SB: [f64; 7] = [
        3.03380607434824582924e+01,
        3.25792512996573918826e+02,
        1.53672958608443695994e+03,
        3.19985821950859553908e+03,
        2.55305040643316442583e+03,
        4.74528541206955367215e+02,
        -2.24409524465858183362e+01,
    ];
    // Horner evaluation of c[0] + s*(c[1] + s*(...)).
    #[inline(always)]
    fn poly(c: &[f64], s: f64) -> f64 {
        c.iter().rev().fold(0.0, |acc, &k| acc * s + k)
    }
    // 1 + s*(c[0] + s*(c[1] + ...)).
    #[inline(always)]
    fn poly1(c: &[f64], s: f64) -> f64 {
        1.0 + s * poly(c, s)
    }

    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    if ax.is_infinite() {
        return 1.0f64.copysign(x);
    }
    if ax < 0.84375 {
        if ax < 3.725290298461914e-9 {
            // |x| < 2^-28
            return x + EFX * x;
        }
        let z = x * x;
        let y = poly(&PP, z) / poly1(&QQ, z);
        return x + x * y;
    }
    if ax < 1.25 {
        let s = ax - 1.0;
        let r = ERX + poly(&PA, s) / poly1(&QA, s);
        return r.copysign(x);
    }
    if ax >= 6.0 {
        return 1.0f64.copysign(x);
    }
    let s = 1.0 / (ax * ax);
    let (r, q) = if ax < 1.0 / 0.35 { (poly(&RA, s), poly1(&SA, s)) } else { (poly(&RB, s), poly1(&SB, s)) };
    let z = f64::from_bits(ax.to_bits() & 0xffff_ffff_0000_0000);
    let e = (-z * z - 0.5625).exp() * ((z - ax) * (z + ax) + r / q).exp();
    (1.0 - e / ax).copysign(x)
}

// ---------------------------------------------------------------------------------------------
// Broadcasting

/// The shape two shapes broadcast to (numpy rules), or an error.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> KResult<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![1usize; rank];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= rank { a[i + a.len() - rank] } else { 1 };
        let db = if i + b.len() >= rank { b[i + b.len() - rank] } else { 1 };
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(KernelError::Shape(format!("shapes {a:?} and {b:?} cannot be broadcast together")));
        };
    }
    Ok(out)
}

/// Element strides of a contiguous tensor of shape `from` viewed as broadcast to `to`
/// (0 along broadcast dimensions).
fn broadcast_strides(from: &[usize], to: &[usize]) -> KResult<Vec<usize>> {
    if from.len() > to.len() {
        return Err(KernelError::Shape(format!("cannot broadcast {from:?} to {to:?}")));
    }
    let lead = to.len() - from.len();
    let mut strides = vec![0usize; to.len()];
    let mut acc = 1usize;
    for i in (0..from.len()).rev() {
        let (f, t) = (from[i], to[i + lead]);
        if f == t && f != 1 {
            strides[i + lead] = acc;
        } else if f != 1 {
            return Err(KernelError::Shape(format!("cannot broadcast {from:?} to {to:?}")));
        }
        acc = acc.saturating_mul(f);
    }
    Ok(strides)
}

/// A broadcast iteration plan over `N` inputs: the output (contiguous) is walked as `rows` of
/// `inner` elements; within a row input `k` advances by `inner_stride[k]` (0 or 1); between rows
/// its offset follows the outer dimensions' strides.
#[derive(Debug, Clone)]
pub struct BroadcastPlan<const N: usize> {
    /// Outer dimensions (outermost first), after dropping size-1 dims and merging.
    outer: Vec<usize>,
    /// Per input, strides of the outer dimensions.
    outer_strides: [Vec<usize>; N],
    /// Length of the innermost (merged) dimension.
    inner: usize,
    /// Per input, stride of the innermost dimension (0 or 1 for contiguous inputs).
    inner_stride: [usize; N],
    /// Total output elements.
    numel: usize,
}

impl<const N: usize> BroadcastPlan<N> {
    /// Plans iterating inputs of `shapes` broadcast to `out` (which must be their broadcast
    /// shape, or a shape they all broadcast to).
    pub fn new(shapes: [&[usize]; N], out: &[usize]) -> KResult<Self> {
        let numel = super::numel(out).ok_or_else(|| KernelError::Shape(format!("shape {out:?} overflows")))?;
        let mut strides: Vec<[usize; N]> = vec![[0; N]; out.len()];
        for (k, s) in shapes.iter().enumerate() {
            let st = broadcast_strides(s, out)?;
            for (d, v) in st.into_iter().enumerate() {
                strides[d][k] = v;
            }
        }
        // Drop size-1 dims, then merge from the inside out.
        let mut dims: Vec<(usize, [usize; N])> = Vec::with_capacity(out.len());
        for (d, &size) in out.iter().enumerate() {
            if size != 1 {
                dims.push((size, strides[d]));
            }
        }
        let mut merged: Vec<(usize, [usize; N])> = Vec::with_capacity(dims.len());
        for (size, st) in dims.into_iter().rev() {
            if let Some((isize_, ist)) = merged.last_mut() {
                if (0..N).all(|k| st[k] == ist[k].saturating_mul(*isize_)) {
                    *isize_ *= size;
                    continue;
                }
            }
            merged.push((size, st));
        }
        merged.reverse();
        let (inner, inner_stride) = match merged.pop() {
            Some(x) => x,
            None => (1, [0; N]),
        };
        let inner = if numel == 0 { 0 } else { inner };
        let outer: Vec<usize> = merged.iter().map(|(s, _)| *s).collect();
        let outer_strides: [Vec<usize>; N] = std::array::from_fn(|k| merged.iter().map(|(_, st)| st[k]).collect());
        Ok(BroadcastPlan { outer, outer_strides, inner, inner_stride, numel })
    }

    /// Input offsets of the start of row `r`.
    fn offsets(&self, mut r: usize) -> [usize; N] {
        let mut off = [0usize; N];
        for d in (0..self.outer.len()).rev() {
            let size = self.outer[d];
            let i = r % size;
            r /= size;
            for (k, o) in off.iter_mut().enumerate() {
                *o += i * self.outer_strides[k][d];
            }
        }
        off
    }

    /// Advances `off` (the offsets of row `idx`, an odometer over the outer dims) to the next row.
    fn step(&self, idx: &mut [usize], off: &mut [usize; N]) {
        for d in (0..self.outer.len()).rev() {
            idx[d] += 1;
            for (k, o) in off.iter_mut().enumerate() {
                *o += self.outer_strides[k][d];
            }
            if idx[d] < self.outer[d] {
                return;
            }
            for (k, o) in off.iter_mut().enumerate() {
                *o -= self.outer_strides[k][d] * self.outer[d];
            }
            idx[d] = 0;
        }
    }

    /// Calls `row(out_start, offsets)` for rows `r0..r1`.
    fn for_rows(&self, r0: usize, r1: usize, mut row: impl FnMut(usize, [usize; N])) {
        if r0 >= r1 {
            return;
        }
        let mut idx = vec![0usize; self.outer.len()];
        let mut r = r0;
        for d in (0..self.outer.len()).rev() {
            idx[d] = r % self.outer[d];
            r /= self.outer[d];
        }
        let mut off = self.offsets(r0);
        for rr in r0..r1 {
            row(rr * self.inner, off);
            if rr + 1 < r1 {
                self.step(&mut idx, &mut off);
            }
        }
    }

    /// Checks that every input's offsets stay inside its buffer.
    fn check_lens(&self, lens: [usize; N]) -> KResult {
        if self.numel == 0 {
            return Ok(());
        }
        for (k, &len) in lens.iter().enumerate() {
            let last: usize = self.outer.iter().zip(&self.outer_strides[k]).map(|(s, st)| (s - 1) * st).sum::<usize>()
                + (self.inner - 1) * self.inner_stride[k];
            if last >= len {
                return Err(KernelError::Length { what: "broadcast input", expected: last + 1, actual: len });
            }
        }
        Ok(())
    }
}

/// Splits `out` into parallel chunks of whole rows when large enough; calls `f(first_row, chunk)`.
fn par_rows<O: Send>(out: &mut [O], inner: usize, f: impl Fn(usize, &mut [O]) + Sync) {
    let n = out.len();
    if inner == 0 || n == 0 {
        return;
    }
    if n < PAR_THRESHOLD || crate::threads() <= 1 {
        f(0, out);
        return;
    }
    let rows_per = CHUNK.div_ceil(inner).max(1);
    crate::par::chunks(out, rows_per * inner, true, |i, chunk| f(i * rows_per, chunk));
}

/// Splits a flat map into parallel chunks when large; calls `f(start, chunk)`.
fn par_flat<O: Send>(out: &mut [O], f: impl Fn(usize, &mut [O]) + Sync) {
    if out.len() < PAR_THRESHOLD || crate::threads() <= 1 {
        f(0, out);
        return;
    }
    crate::par::chunks(out, CHUNK, true, |i, chunk| f(i * CHUNK, chunk));
}

/// One row of [`binary`]: `out[i] = f(a[i * sa], b[i * sb])`, with the unit and zero strides
/// as loops of their own (vectorised).
fn row2<A: Copy, B: Copy, O>(a: &[A], sa: usize, b: &[B], sb: usize, out: &mut [O], f: &impl Fn(A, B) -> O) {
    let n = out.len();
    match (sa, sb) {
        (1, 1) => {
            for ((o, &x), &y) in out.iter_mut().zip(&a[..n]).zip(&b[..n]) {
                *o = f(x, y);
            }
        }
        (1, 0) => {
            let y = b[0];
            for (o, &x) in out.iter_mut().zip(&a[..n]) {
                *o = f(x, y);
            }
        }
        (0, 1) => {
            let x = a[0];
            for (o, &y) in out.iter_mut().zip(&b[..n]) {
                *o = f(x, y);
            }
        }
        _ => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = f(a[i * sa], b[i * sb]);
            }
        }
    }
}

/// The plan of a broadcast of inputs `names` (`lens` elements, shapes `shapes`) to an output of
/// `out_len` elements and shape `so`, every length checked. Out of line: one copy, not one per
/// operator.
#[inline(never)]
fn checked_plan<const N: usize>(
    names: [&'static str; N],
    lens: [usize; N],
    shapes: [&[usize]; N],
    out_len: usize,
    so: &[usize],
) -> KResult<BroadcastPlan<N>> {
    for k in 0..N {
        super::check_numel(names[k], lens[k], shapes[k])?;
    }
    super::check_numel("out", out_len, so)?;
    let plan = BroadcastPlan::<N>::new(shapes, so)?;
    plan.check_lens(lens)?;
    Ok(plan)
}

/// A row task of [`drive`]: the output row and the inputs' offsets at its start.
type RowTask<'f, O, const N: usize> = &'f (dyn Fn(&mut [O], [usize; N]) + Sync);

/// Walks `plan` over `out`: calls `row` on every output row (or, with no outer dimensions, on
/// chunks of the one flat row) with the inputs' offsets, over the pool when large. Generic over
/// the output type alone: the operators' functions reach it as `row`, so the walk and the
/// pool's tasks are compiled once per output type rather than once per operator.
#[inline(never)]
fn drive<O: Send, const N: usize>(plan: &BroadcastPlan<N>, out: &mut [O], row: RowTask<'_, O, N>) {
    let inner = plan.inner;
    if plan.outer.is_empty() {
        // One flat loop (equal shapes, or scalar operands).
        par_flat(out, |start, chunk| row(chunk, plan.inner_stride.map(|s| start * s)));
        return;
    }
    par_rows(out, inner, |r0, chunk| {
        let rows = chunk.len() / inner;
        let mut pos = 0usize;
        plan.for_rows(r0, r0 + rows, |_, offsets| {
            row(&mut chunk[pos..pos + inner], offsets);
            pos += inner;
        });
    });
}

/// `out[i] = f(a[i'], b[i''])` with numpy broadcasting of `a` (shape `sa`) and `b` (shape `sb`)
/// to `so`. Buffers are contiguous row-major.
pub fn binary<A, B, O, F>(a: &[A], sa: &[usize], b: &[B], sb: &[usize], out: &mut [O], so: &[usize], f: F) -> KResult
where
    A: Copy + Sync,
    B: Copy + Sync,
    O: Copy + Send,
    F: Fn(A, B) -> O + Sync,
{
    let plan = checked_plan(["a", "b"], [a.len(), b.len()], [sa, sb], out.len(), so)?;
    if out.is_empty() {
        return Ok(());
    }
    let [ia, ib] = plan.inner_stride;
    drive(&plan, out, &|o: &mut [O], [oa, ob]: [usize; 2]| row2(&a[oa..], ia, &b[ob..], ib, o, &f));
    Ok(())
}

/// `out[i] = f(a[i'], b[i''], c[i'''])` with numpy broadcasting of all three inputs to `so`.
#[allow(clippy::too_many_arguments)]
pub fn ternary<A, B, C, O, F>(
    a: &[A],
    sa: &[usize],
    b: &[B],
    sb: &[usize],
    c: &[C],
    sc: &[usize],
    out: &mut [O],
    so: &[usize],
    f: F,
) -> KResult
where
    A: Copy + Sync,
    B: Copy + Sync,
    C: Copy + Sync,
    O: Copy + Send,
    F: Fn(A, B, C) -> O + Sync,
{
    let plan = checked_plan(["a", "b", "c"], [a.len(), b.len(), c.len()], [sa, sb, sc], out.len(), so)?;
    if out.is_empty() {
        return Ok(());
    }
    let [ia, ib, ic] = plan.inner_stride;
    drive(&plan, out, &|o: &mut [O], [oa, ob, oc]: [usize; 3]| row3(&a[oa..], ia, &b[ob..], ib, &c[oc..], ic, o, &f));
    Ok(())
}

/// One row of [`ternary`], as [`row2`].
#[allow(clippy::too_many_arguments)]
fn row3<A: Copy, B: Copy, C: Copy, O>(
    a: &[A],
    ia: usize,
    b: &[B],
    ib: usize,
    c: &[C],
    ic: usize,
    o: &mut [O],
    f: &impl Fn(A, B, C) -> O,
) {
    if ia == 1 && ib == 1 && ic == 1 {
        let n = o.len();
        for (((o, &x), &y), &z) in o.iter_mut().zip(&a[..n]).zip(&b[..n]).zip(&c[..n]) {
            *o = f(x, y, z);
        }
    } else {
        for (i, o) in o.iter_mut().enumerate() {
            *o = f(a[i * ia], b[i * ib], c[i * ic]);
        }
    }
}

/// `out[i] = f(a[i])` (same number of elements).
pub fn unary<A, O, F>(a: &[A], out: &mut [O], f: F) -> KResult
where
    A: Copy + Sync,
    O: Copy + Send,
    F: Fn(A) -> O + Sync,
{
    if a.len() != out.len() {
        return Err(KernelError::Length { what: "out", expected: a.len(), actual: out.len() });
    }
    par_flat(out, |start, chunk| {
        for (o, &x) in chunk.iter_mut().zip(&a[start..]) {
            *o = f(x);
        }
    });
    Ok(())
}

/// Converts every element of `src` into `dst` with [`Element::cast`].
pub fn cast_slice<S: Element, D: Element>(src: &[S], dst: &mut [D]) -> KResult {
    unary(src, dst, |v| v.cast::<D>())
}

/// GLU along one dimension: `out = a * sigmoid(b)` where `a`/`b` are the first/second halves
/// of `input` (shape `[outer, 2 * half, inner]`), written to `out` (shape `[outer, half, inner]`).
pub fn glu<T: Real>(input: &[T], out: &mut [T], outer: usize, half: usize, inner: usize) -> KResult {
    let row = half.checked_mul(inner).ok_or_else(|| KernelError::Shape("glu: shape overflows".into()))?;
    let need = outer.checked_mul(row).ok_or_else(|| KernelError::Shape("glu: shape overflows".into()))?;
    if out.len() != need {
        return Err(KernelError::Length { what: "glu out", expected: need, actual: out.len() });
    }
    if input.len() != need * 2 {
        return Err(KernelError::Length { what: "glu input", expected: need * 2, actual: input.len() });
    }
    if row == 0 {
        return Ok(());
    }
    let one = T::ONE;
    for (o, src) in out.chunks_mut(row).zip(input.chunks(2 * row)) {
        let (a, b) = src.split_at(row);
        for ((o, &x), &g) in o.iter_mut().zip(a).zip(b) {
            *o = x * (one / (one + (-g).exp()));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(a: &[f64], sa: &[usize], b: &[f64], sb: &[usize]) -> (Vec<f64>, Vec<usize>) {
        let so = broadcast_shape(sa, sb).unwrap();
        let n: usize = so.iter().product();
        let mut out = vec![0.0; n];
        let idx_of = |shape: &[usize], multi: &[usize]| -> usize {
            let lead = multi.len() - shape.len();
            let mut i = 0;
            for (d, &s) in shape.iter().enumerate() {
                let m = if s == 1 { 0 } else { multi[d + lead] };
                i = i * s + m;
            }
            i
        };
        for (flat, o) in out.iter_mut().enumerate() {
            let mut multi = vec![0; so.len()];
            let mut r = flat;
            for d in (0..so.len()).rev() {
                multi[d] = r % so[d];
                r /= so[d];
            }
            *o = a[idx_of(sa, &multi)] * 10.0 + b[idx_of(sb, &multi)];
        }
        (out, so)
    }

    fn shapes() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
        prop::collection::vec((0usize..4, any::<bool>(), any::<bool>()), 0..5).prop_flat_map(|dims| {
            let a: Vec<usize> = dims.iter().map(|&(s, ba, _)| if ba { 1 } else { s }).collect();
            let b: Vec<usize> = dims.iter().map(|&(s, _, bb)| if bb { 1 } else { s }).collect();
            (0..=a.len(), 0..=b.len()).prop_map(move |(da, db)| (a[da..].to_vec(), b[db..].to_vec()))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn binary_matches_reference((sa, sb) in shapes()) {
            let na: usize = sa.iter().product();
            let nb: usize = sb.iter().product();
            let a: Vec<f64> = (0..na).map(|i| i as f64).collect();
            let b: Vec<f64> = (0..nb).map(|i| i as f64 * 0.5).collect();
            let (want, so) = reference(&a, &sa, &b, &sb);
            let mut out = vec![0.0; want.len()];
            binary(&a, &sa, &b, &sb, &mut out, &so, |x, y| x * 10.0 + y).unwrap();
            prop_assert_eq!(out, want);
        }

        #[test]
        fn ternary_matches_reference((sa, sb) in shapes(), pick in 0usize..3) {
            let na: usize = sa.iter().product();
            let nb: usize = sb.iter().product();
            let a: Vec<f64> = (0..na).map(|i| i as f64).collect();
            let b: Vec<f64> = (0..nb).map(|i| i as f64 * 0.5).collect();
            let (want, so) = reference(&a, &sa, &b, &sb);
            let c = vec![1.0f64];
            let sc: &[usize] = &[];
            let mut out = vec![0.0; want.len()];
            match pick {
                0 => ternary(&a, &sa, &b, &sb, &c, sc, &mut out, &so, |x, y, z| x * 10.0 + y * z).unwrap(),
                1 => ternary(&c, sc, &a, &sa, &b, &sb, &mut out, &so, |z, x, y| x * 10.0 + y * z).unwrap(),
                _ => ternary(&b, &sb, &c, sc, &a, &sa, &mut out, &so, |y, z, x| x * 10.0 + y * z).unwrap(),
            }
            prop_assert_eq!(out, want);
        }

        #[test]
        fn erf_close_to_reference(x in -7.0f64..7.0) {
            // Reference: Taylor series for small |x|, continued fraction erfc for large.
            let want = erf_reference(x);
            let got = erf_f64(x);
            // The series reference itself loses a few digits near |x| = 2.5.
            prop_assert!((got - want).abs() <= 2e-14 * want.abs().max(1e-300), "{} {} {}", x, got, want);
        }
    }

    /// High-precision-ish erf: Taylor series (|x| < 2.5) or Lentz continued fraction of erfc.
    fn erf_reference(x: f64) -> f64 {
        let ax = x.abs();
        let v = if ax < 2.5 {
            // erf(x) = 2/sqrt(pi) * sum_{n} (-1)^n x^(2n+1) / (n! (2n+1)), summed with compensation.
            let mut sum = 0.0f64;
            let mut comp = 0.0f64;
            let mut term = ax; // x^(2n+1)/n!
            let mut n = 0.0f64;
            loop {
                let t = term / (2.0 * n + 1.0);
                let y = t - comp;
                let s = sum + y;
                comp = (s - sum) - y;
                sum = s;
                if t == 0.0 || t.abs() < 1e-20 * sum.abs() || n > 300.0 {
                    break;
                }
                n += 1.0;
                term *= -ax * ax / n;
            }
            sum * std::f64::consts::FRAC_2_SQRT_PI
        } else {
            // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))
            let mut f = 0.0f64;
            for k in (1..200).rev() {
                f = (k as f64 / 2.0) / (ax + f);
            }
            let erfc = (-ax * ax).exp() / std::f64::consts::PI.sqrt() / (ax + f);
            1.0 - erfc
        };
        v.copysign(x)
    }

    #[test]
    fn erf_special_values() {
        assert_eq!(erf_f64(0.0), 0.0);
        assert!(erf_f64(-0.0).is_sign_negative());
        assert_eq!(erf_f64(f64::INFINITY), 1.0);
        assert_eq!(erf_f64(f64::NEG_INFINITY), -1.0);
        assert!(erf_f64(f64::NAN).is_nan());
        assert_eq!(erf_f64(10.0), 1.0);
        assert!((erf_f64(1.0) - 0.842_700_792_949_714_9).abs() < 2e-16);
        assert!((erf_f64(0.5) - 0.520_499_877_813_046_5).abs() < 2e-16);
        assert!((erf_f32(1.0) - 0.842_700_8).abs() < 1e-7);
        // High-precision value (50-digit Taylor series): 0.997603017229281245...
        assert_eq!(erf_f64(2.146_812_730_065_659), 0.997_603_017_229_281_2);
    }

    #[test]
    fn rejects_bad_shapes() {
        let mut out = vec![0.0f32; 6];
        assert!(binary(&[0.0f32; 6], &[2, 3], &[0.0f32; 2], &[2], &mut out, &[2, 3], |x, y| x + y).is_err());
        assert!(binary(&[0.0f32; 5], &[2, 3], &[0.0f32; 3], &[3], &mut out, &[2, 3], |x, y| x + y).is_err());
        assert!(broadcast_shape(&[2, 3], &[4, 3]).is_err());
    }

    #[test]
    fn large_parallel_matches_serial() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
        let (m, n) = (300usize, 517usize);
        let a: Vec<f32> = (0..m * n).map(|i| i as f32 * 0.25).collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let mut par = vec![0.0f32; m * n];
        pool.install(|| binary(&a, &[m, n], &b, &[n], &mut par, &[m, n], |x, y| x - y).unwrap());
        let want: Vec<f32> = (0..m * n).map(|i| a[i] - b[i % n]).collect();
        assert_eq!(par, want);
        let col: Vec<f32> = (0..m).map(|i| i as f32).collect();
        pool.install(|| binary(&a, &[m, n], &col, &[m, 1], &mut par, &[m, n], |x, y| x * y).unwrap());
        let want: Vec<f32> = (0..m * n).map(|i| a[i] * col[i / n]).collect();
        assert_eq!(par, want);
    }
}
