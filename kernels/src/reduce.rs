//! Reductions over arbitrary dimensions of contiguous tensors.
//!
//! A reduction is described by the input's sizes and a mask of the reduced dimensions
//! ([`ReducePlan`]). Size-1 dimensions are dropped and neighbouring dimensions of the same kind
//! merged, so most reductions become `(outer, reduced, inner)`; the rest walk a precomputed list
//! of offsets. Every output element folds its inputs in increasing input order (like ExecuTorch),
//! so results do not depend on the thread count.

use crate::num::{Accumulator, Element};
use crate::{KResult, KernelError};

/// Inputs at least this large are reduced on several threads.
const PAR_MIN: usize = 1 << 15;

#[derive(Debug, Clone)]
enum Walk {
    /// `input[(o * reduced + r) * inner + i]` for output `o * inner + i` (`o` < outer).
    Blocks { reduced: usize, inner: usize },
    /// Output `k` reads `input[bases[k] + offsets[j]]` for each `j`.
    Offsets { bases: Vec<usize>, offsets: Vec<usize> },
}

/// How to walk one reduction.
#[derive(Debug, Clone)]
pub struct ReducePlan {
    walk: Walk,
    in_numel: usize,
    out_numel: usize,
    count: usize,
}

impl ReducePlan {
    /// Plans reducing the dimensions of `sizes` where `mask` is true.
    pub fn new(sizes: &[usize], mask: &[bool]) -> KResult<Self> {
        if sizes.len() != mask.len() {
            return Err(KernelError::Shape(format!("reduce: mask of {} dims for shape {sizes:?}", mask.len())));
        }
        let overflow = || KernelError::Shape(format!("reduce: shape {sizes:?} overflows"));
        let in_numel = super::numel(sizes).ok_or_else(overflow)?;
        let mut out_numel = 1usize;
        let mut count = 1usize;
        for (&s, &m) in sizes.iter().zip(mask) {
            if m {
                count = count.checked_mul(s).ok_or_else(overflow)?;
            } else {
                out_numel = out_numel.checked_mul(s).ok_or_else(overflow)?;
            }
        }
        // Coalesce: drop size-1 dims, merge neighbours of the same kind.
        let mut groups: Vec<(usize, bool)> = Vec::new();
        for (&s, &m) in sizes.iter().zip(mask) {
            if s == 1 {
                continue;
            }
            match groups.last_mut() {
                Some((gs, gm)) if *gm == m => *gs *= s,
                _ => groups.push((s, m)),
            }
        }
        let walk = if in_numel == 0 {
            Walk::Blocks { reduced: 0, inner: 1 }
        } else {
            let reduced_groups = groups.iter().filter(|g| g.1).count();
            if reduced_groups <= 1 {
                let pos = groups.iter().position(|g| g.1);
                let (reduced, inner) = match pos {
                    None => (1, 1),
                    Some(p) => (groups[p].0, groups[p + 1..].iter().map(|g| g.0).product()),
                };
                Walk::Blocks { reduced, inner }
            } else {
                let strides = super::contiguous_strides(sizes);
                let mut offsets = vec![0usize];
                let mut bases = vec![0usize];
                for (d, (&s, &m)) in sizes.iter().zip(mask).enumerate().rev() {
                    let list = if m { &mut offsets } else { &mut bases };
                    // Dims are visited last to first, so earlier dims vary slowest.
                    let mut next = Vec::with_capacity(list.len() * s);
                    for k in 0..s {
                        next.extend(list.iter().map(|&o| o + k * strides[d]));
                    }
                    *list = next;
                }
                Walk::Offsets { bases, offsets }
            }
        };
        Ok(ReducePlan { walk, in_numel, out_numel, count })
    }

    /// Plans reducing the dimensions listed in `dims` (already normalised) of `sizes`.
    pub fn over_dims(sizes: &[usize], dims: &[usize]) -> KResult<Self> {
        let mut mask = vec![false; sizes.len()];
        for &d in dims {
            match mask.get_mut(d) {
                Some(m) if !*m => *m = true,
                Some(_) => {
                    return Err(KernelError::Argument(format!("dimension {d} appears more than once in the reduction")))
                }
                None => {
                    return Err(KernelError::Argument(format!("dimension {d} is out of range for shape {sizes:?}")))
                }
            }
        }
        Self::new(sizes, &mask)
    }

    /// Number of output elements.
    pub fn out_numel(&self) -> usize {
        self.out_numel
    }

    /// Number of input elements folded into each output element.
    pub fn count(&self) -> usize {
        self.count
    }

    /// For each output element, folds its inputs (in input order) with `step(acc, value,
    /// index among the reduced elements)` starting from `init`, and stores `finish(acc)`.
    pub fn fold<T, A, R>(
        &self,
        input: &[T],
        out: &mut [R],
        init: A,
        step: impl Fn(A, T, usize) -> A + Sync,
        finish: impl Fn(A) -> R + Sync,
    ) -> KResult
    where
        T: Copy + Sync,
        A: Copy + Send + Sync,
        R: Send,
    {
        self.fold_with(input, out, |_| init, step, finish)
    }

    /// [`ReducePlan::fold`] with a per-output initial value `init(output index)` (for second
    /// passes that need a statistic of the first, like variance).
    pub fn fold_with<T, A, R>(
        &self,
        input: &[T],
        out: &mut [R],
        init: impl Fn(usize) -> A + Sync,
        step: impl Fn(A, T, usize) -> A + Sync,
        finish: impl Fn(A) -> R + Sync,
    ) -> KResult
    where
        T: Copy + Sync,
        A: Copy + Send + Sync,
        R: Send,
    {
        if input.len() != self.in_numel {
            return Err(KernelError::Length { what: "reduce input", expected: self.in_numel, actual: input.len() });
        }
        if out.len() != self.out_numel {
            return Err(KernelError::Length { what: "reduce output", expected: self.out_numel, actual: out.len() });
        }
        let par = input.len() >= PAR_MIN && crate::threads() > 1;
        match &self.walk {
            Walk::Blocks { reduced: 0, .. } => out.iter_mut().enumerate().for_each(|(o, d)| *d = finish(init(o))),
            &Walk::Blocks { reduced, inner: 1, .. } => {
                let row = |o: usize, dst: &mut R| {
                    let mut acc = init(o);
                    for (r, &v) in input[o * reduced..(o + 1) * reduced].iter().enumerate() {
                        acc = step(acc, v, r);
                    }
                    *dst = finish(acc);
                };
                let per = if par { (PAR_MIN / reduced).max(1) } else { out.len() };
                crate::par::chunks(out, per, par, |c, ds| {
                    for (j, d) in ds.iter_mut().enumerate() {
                        row(c * per + j, d);
                    }
                });
            }
            &Walk::Blocks { reduced, inner, .. } => {
                let block = |o: usize, dst: &mut [R]| {
                    let mut accs: Vec<A> = (0..inner).map(|i| init(o * inner + i)).collect();
                    let base = o * reduced * inner;
                    for r in 0..reduced {
                        let row = &input[base + r * inner..base + (r + 1) * inner];
                        for (a, &v) in accs.iter_mut().zip(row) {
                            *a = step(*a, v, r);
                        }
                    }
                    for (d, a) in dst.iter_mut().zip(accs) {
                        *d = finish(a);
                    }
                };
                crate::par::chunks(out, inner, par, block);
            }
            Walk::Offsets { bases, offsets } => {
                let one = |k: usize, dst: &mut R| {
                    let mut acc = init(k);
                    for (j, &off) in offsets.iter().enumerate() {
                        acc = step(acc, input[bases[k] + off], j);
                    }
                    *dst = finish(acc);
                };
                let per = if par { (PAR_MIN / offsets.len().max(1)).max(1) } else { out.len() };
                crate::par::chunks(out, per, par, |c, ds| {
                    for (j, d) in ds.iter_mut().enumerate() {
                        one(c * per + j, d);
                    }
                });
            }
        }
        Ok(())
    }
}

/// `max` with NaN propagation (ExecuTorch's `amax`): the first NaN wins.
#[inline(always)]
pub fn max_step<T: Element>(acc: Option<T>, v: T) -> Option<T> {
    match acc {
        Some(a) if !(v.is_nan() || v > a) => Some(a),
        _ => Some(v),
    }
}

/// `min` with NaN propagation.
#[inline(always)]
pub fn min_step<T: Element>(acc: Option<T>, v: T) -> Option<T> {
    match acc {
        Some(a) if !(v.is_nan() || v < a) => Some(a),
        _ => Some(v),
    }
}

/// Arg-max step: keeps the first maximum; a NaN is the maximum (first NaN wins).
#[inline(always)]
pub fn argmax_step<T: Element>(acc: Option<(T, usize)>, v: T, i: usize) -> Option<(T, usize)> {
    match acc {
        Some((a, ai)) if a.is_nan() || !(v.is_nan() || v > a) => Some((a, ai)),
        _ => Some((v, i)),
    }
}

/// Arg-min step: keeps the first minimum; a NaN is the minimum (first NaN wins).
#[inline(always)]
pub fn argmin_step<T: Element>(acc: Option<(T, usize)>, v: T, i: usize) -> Option<(T, usize)> {
    match acc {
        Some((a, ai)) if a.is_nan() || !(v.is_nan() || v < a) => Some((a, ai)),
        _ => Some((v, i)),
    }
}

/// Inclusive prefix sums along the middle axis of `(outer, n, inner)`, accumulating in `A` and
/// rounding to `R` after every step (as ExecuTorch does, adding into the output).
pub fn cumsum<T: Element, A: Accumulator, R: Element>(
    input: &[T],
    out: &mut [R],
    outer: usize,
    n: usize,
    inner: usize,
) -> KResult {
    let total = outer
        .checked_mul(n)
        .and_then(|x| x.checked_mul(inner))
        .ok_or_else(|| KernelError::Shape("cumsum: shape overflows".into()))?;
    if input.len() != total || out.len() != total {
        return Err(KernelError::Length { what: "cumsum", expected: total, actual: input.len().min(out.len()) });
    }
    if total == 0 {
        return Ok(());
    }
    for o in 0..outer {
        let base = o * n * inner;
        for i in 0..inner {
            out[base + i] = A::from_elem(input[base + i]).to_elem();
        }
        for r in 1..n {
            let cur = base + r * inner;
            for i in 0..inner {
                let prev = A::from_elem(out[cur - inner + i]);
                out[cur + i] = A::from_elem(input[cur + i]).add(prev).to_elem();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference: sum over masked dims by full index enumeration.
    fn reference_sum(input: &[f64], sizes: &[usize], mask: &[bool]) -> Vec<f64> {
        let out_sizes: Vec<usize> = sizes.iter().zip(mask).map(|(&s, &m)| if m { 1 } else { s }).collect();
        let out_strides = crate::contiguous_strides(&out_sizes);
        let mut out = vec![0.0; out_sizes.iter().product()];
        let mut idx = vec![0usize; sizes.len()];
        for &v in input {
            let o: usize = idx.iter().zip(mask).zip(&out_strides).map(|((&i, &m), &s)| if m { 0 } else { i * s }).sum();
            out[o] += v;
            for d in (0..sizes.len()).rev() {
                idx[d] += 1;
                if idx[d] < sizes[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        out
    }

    fn shape_and_mask() -> impl Strategy<Value = (Vec<usize>, Vec<bool>)> {
        prop::collection::vec((0usize..5, any::<bool>()), 0..5).prop_map(|v| v.into_iter().unzip())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn sum_matches_reference((sizes, mask) in shape_and_mask(), seed in 0u64..1000) {
            let n: usize = sizes.iter().product();
            let input: Vec<f64> = (0..n).map(|i| ((i as u64 * 7919 + seed) % 17) as f64 - 8.0).collect();
            let plan = ReducePlan::new(&sizes, &mask).expect("test");
            let mut out = vec![0.0f64; plan.out_numel()];
            plan.fold(&input, &mut out, 0.0, |a, v, _| a + v, |a| a).expect("test");
            prop_assert_eq!(out, reference_sum(&input, &sizes, &mask));
        }
    }

    #[test]
    fn argmax_nan_and_ties() {
        let x = [1.0f32, 3.0, 3.0, 2.0];
        let plan = ReducePlan::over_dims(&[4], &[0]).expect("test");
        let mut out = [0usize; 1];
        plan.fold(&x, &mut out, None, argmax_step, |a| a.map_or(0, |(_, i)| i)).expect("test");
        assert_eq!(out, [1]);
        let y = [1.0f32, f32::NAN, 5.0, f32::NAN];
        plan.fold(&y, &mut out, None, argmax_step, |a| a.map_or(0, |(_, i)| i)).expect("test");
        assert_eq!(out, [1]);
        plan.fold(&y, &mut out, None, argmin_step, |a| a.map_or(0, |(_, i)| i)).expect("test");
        assert_eq!(out, [1]);
        let mut m = [0.0f32];
        plan.fold(&y, &mut m, None, |a, v, _| max_step(a, v), |a| a.unwrap_or(0.0)).expect("test");
        assert!(m[0].is_nan());
    }

    #[test]
    fn bad_lengths_and_dims() {
        let plan = ReducePlan::over_dims(&[2, 3], &[1]).expect("test");
        let mut out = [0.0f32; 2];
        assert!(plan.fold(&[0.0f32; 5], &mut out, 0.0, |a, v, _| a + v, |a| a).is_err());
        assert!(ReducePlan::over_dims(&[2, 3], &[1, 1]).is_err());
        assert!(ReducePlan::over_dims(&[2, 3], &[2]).is_err());
    }

    #[test]
    fn cumsum_small() {
        let x = [1i32, 2, 3, 4, 5, 6];
        let mut out = [0i64; 6];
        cumsum::<i32, i64, i64>(&x, &mut out, 1, 3, 2).expect("test");
        assert_eq!(out, [1, 2, 4, 6, 9, 12]);
    }
}
