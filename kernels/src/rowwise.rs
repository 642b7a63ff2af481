//! Drivers of the backend's row kernels ([`crate::simd::rows`]): broadcasting plans for element-wise
//! operators, and the splitting of rows, runs and pooled rows across rayon's pool.
//!
//! Shapes are static inside a Ferrite partition, so every plan here is made once, when the
//! partition initialises, and checked against the buffers on each run.

use super::simd::rows::{self, Binary, Pool, Side, Unary};
use super::simd::{Level, Window};
use super::{par, KResult, KernelError};

/// Work below this many elements stays on one thread.
const PAR_MIN: usize = 1 << 15;

fn shape(msg: String) -> KernelError {
    KernelError::Shape(msg)
}

/// Elements per task when `total` elements are split over `threads` (several tasks per thread
/// for balance), or `None` to stay on one thread.
fn split(total: usize, threads: usize) -> Option<usize> {
    (threads > 1 && total >= PAR_MIN).then(|| total.div_ceil(threads * 4).max(PAR_MIN / 4))
}

/// How a broadcasting binary operator walks its operands: the output is `outer` runs of
/// `inner` contiguous elements; in each run a side is a contiguous slice or one repeated
/// element, found from the run's multi-index over `outer_sizes` and the side's strides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    outer_sizes: Vec<usize>,
    strides: [Vec<usize>; 2],
    scalar: [bool; 2],
    inner: usize,
    lens: [usize; 2],
    total: usize,
    /// The side that is one run of `inner` repeated for every run while the other side is
    /// contiguous (a squeeze-excitation scale `[N, 1, 1, C]` over `[N, H, W, C]` with `N` 1, a
    /// bias over rows): all runs go to [`rows::binary_repeated`] at once.
    repeat: Option<usize>,
}

impl Broadcast {
    /// The plan for sides of sizes `a` and `b` broadcast to `out`, or `None` when they do not
    /// broadcast to exactly `out`.
    pub fn new(a: &[usize], b: &[usize], out: &[usize]) -> Option<Broadcast> {
        let rank = out.len();
        if a.len() > rank || b.len() > rank {
            return None;
        }
        let total = out.iter().try_fold(1usize, |p, &d| p.checked_mul(d))?;
        // Per output dimension: each side's size (1 where it has fewer dimensions) and stride.
        let mut sides: [(Vec<usize>, Vec<usize>); 2] = Default::default();
        for (k, s) in [a, b].into_iter().enumerate() {
            let padded: Vec<usize> = std::iter::repeat_n(1, rank - s.len()).chain(s.iter().copied()).collect();
            let mut strides = vec![0usize; rank];
            let mut step = 1usize;
            for d in (0..rank).rev() {
                if padded[d] != out[d] && padded[d] != 1 {
                    return None;
                }
                strides[d] = if padded[d] == 1 { 0 } else { step };
                step = step.checked_mul(padded[d])?;
            }
            sides[k] = (padded, strides);
        }
        // The longest suffix of dimensions over which each side is either all ones (one
        // repeated element) or all of the output's sizes (contiguous).
        let mut split = rank;
        let (mut ones, mut full) = ([true; 2], [true; 2]);
        while split > 0 {
            let d = split - 1;
            let next_ones = [0, 1].map(|k| ones[k] && sides[k].0[d] == 1);
            let next_full = [0, 1].map(|k| full[k] && sides[k].0[d] == out[d]);
            if (0..2).any(|k| !next_ones[k] && !next_full[k]) {
                break;
            }
            (ones, full) = (next_ones, next_full);
            split -= 1;
        }
        let inner: usize = out[split..].iter().product();
        let [(_, sa), (_, sb)] = sides;
        // Whether side `k` repeats one run (zero strides outside the suffix, not a scalar) or
        // is contiguous (the strides of a dense `out[..split]` times `inner`).
        let repeats = |k: usize, st: &[usize]| full[k] && !ones[k] && st[..split].iter().all(|&x| x == 0);
        let contiguous = |k: usize, st: &[usize]| {
            let mut step = inner;
            full[k]
                && (0..split).rev().all(|d| {
                    let ok = out[d] == 1 || st[d] == step;
                    step *= out[d];
                    ok
                })
        };
        let repeat = if split == 0 || inner >= 4096 {
            None
        } else if repeats(0, &sa) && contiguous(1, &sb) {
            Some(0)
        } else if repeats(1, &sb) && contiguous(0, &sa) {
            Some(1)
        } else {
            None
        };
        Some(Broadcast {
            outer_sizes: out[..split].to_vec(),
            strides: [sa[..split].to_vec(), sb[..split].to_vec()],
            // A side both all ones and full (the suffix is all ones) is a slice of one.
            scalar: [ones[0] && !full[0], ones[1] && !full[1]],
            inner,
            lens: [a.iter().product(), b.iter().product()],
            total,
            repeat,
        })
    }

    /// Output elements.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether the output is empty.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Offsets of both sides at run `r`.
    fn offsets(&self, mut r: usize) -> [usize; 2] {
        let mut off = [0usize; 2];
        for d in (0..self.outer_sizes.len()).rev() {
            let size = self.outer_sizes[d];
            let i = r % size;
            r /= size;
            off[0] += i * self.strides[0][d];
            off[1] += i * self.strides[1][d];
        }
        off
    }

    /// `out = clamp(a op b, lo, hi)` with the sides broadcast by this plan.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        level: Level,
        op: Binary,
        a: &[f32],
        b: &[f32],
        out: &mut [f32],
        (lo, hi): (f32, f32),
        threads: usize,
    ) -> KResult {
        for (what, len, want) in
            [("lhs", a.len(), self.lens[0]), ("rhs", b.len(), self.lens[1]), ("output", out.len(), self.total)]
        {
            if len != want {
                return Err(shape(format!("binary {what}: {len} elements where the plan has {want}")));
            }
        }
        if self.total == 0 {
            return Ok(());
        }
        let inner = self.inner;
        if let Some(k) = self.repeat {
            let (full, row) = if k == 0 { (b, a.get(..inner)) } else { (a, b.get(..inner)) };
            let row = row.ok_or_else(|| shape("binary: a repeated run past its side".into()))?;
            let rows = |start: usize, o: &mut [f32]| {
                let x = full.get(start..start + o.len()).ok_or_else(|| shape("binary: run past a side".into()))?;
                rows::binary_repeated(level, op, x, row, k == 0, o, lo, hi)
            };
            return match split(self.total, threads) {
                Some(chunk) => {
                    let per = chunk.div_ceil(inner) * inner;
                    par::try_chunks(out, per, true, |c, o| rows(c * per, o))
                }
                None => rows(0, out),
            };
        }
        fn side(x: &[f32], scalar: bool, off: usize, start: usize, len: usize) -> KResult<Side<'_>> {
            if scalar {
                return x.get(off).map(|&v| Side::Scalar(v)).ok_or_else(|| shape("binary: offset past a side".into()));
            }
            x.get(off + start..off + start + len)
                .map(Side::Slice)
                .ok_or_else(|| shape("binary: run past a side".into()))
        }
        let run = |r: usize, start: usize, o: &mut [f32]| -> KResult {
            let [oa, ob] = self.offsets(r);
            let n = o.len();
            let (sa, sb) = (side(a, self.scalar[0], oa, start, n)?, side(b, self.scalar[1], ob, start, n)?);
            rows::binary(level, op, sa, sb, o, lo, hi)
        };
        match split(self.total, threads) {
            // One long run: split it.
            Some(chunk) if inner >= chunk => {
                par::try_chunks(out, inner, true, |r, o| par::try_chunks(o, chunk, true, |c, oc| run(r, c * chunk, oc)))
            }
            // Many runs: split them.
            Some(chunk) => {
                let per = chunk.div_ceil(inner);
                par::try_chunks(out, per * inner, true, |c, o| {
                    o.chunks_mut(inner).enumerate().try_for_each(|(j, oj)| run(c * per + j, 0, oj))
                })
            }
            None => out.chunks_mut(inner).enumerate().try_for_each(|(r, o)| run(r, 0, o)),
        }
    }
}

/// `out = f(x)`, split across threads when large.
pub fn unary(level: Level, op: Unary, x: &[f32], out: &mut [f32], threads: usize) -> KResult {
    if x.len() != out.len() {
        return Err(KernelError::Length { what: "unary output", expected: x.len(), actual: out.len() });
    }
    match split(x.len(), threads) {
        Some(chunk) => {
            par::try_chunks(out, chunk, true, |c, os| rows::unary(level, op, &x[c * chunk..c * chunk + os.len()], os))
        }
        None => rows::unary(level, op, x, out),
    }
}

/// Rows of `n` per task when `len` elements are worth splitting (whole rows), else `None`.
fn row_chunk(len: usize, n: usize, threads: usize) -> Option<usize> {
    split(len, threads).map(|c| c.div_ceil(n).max(1) * n)
}

/// Softmax over each contiguous row of `n`; with `safe`, rows of all `−inf` give zeros
/// ([`rows::softmax`]).
pub fn softmax(level: Level, x: &[f32], y: &mut [f32], n: usize, safe: bool, threads: usize) -> KResult {
    if n == 0 || x.len() != y.len() || !x.len().is_multiple_of(n) {
        return Err(shape(format!("softmax: {} and {} elements are not rows of {n}", x.len(), y.len())));
    }
    if x.is_empty() {
        return Ok(());
    }
    // (Off the pool entirely when not splitting: a parallel iterator would hand off to it.)
    match row_chunk(x.len(), n, threads) {
        Some(chunk) => par::try_chunks(y, chunk, true, |c, ys| {
            rows::softmax(level, &x[c * chunk..c * chunk + ys.len()], ys, n, safe)
        }),
        None => rows::softmax(level, x, y, n, safe),
    }
}

/// Layer norm over each contiguous row of `n` (see [`rows::layer_norm`]).
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
    threads: usize,
) -> KResult {
    if n == 0
        || x.len() != y.len()
        || !x.len().is_multiple_of(n)
        || mean.len() != x.len() / n
        || rstd.len() != mean.len()
    {
        return Err(shape(format!("layer_norm: {} elements are not rows of {n} with a mean and rstd each", x.len())));
    }
    if x.is_empty() {
        return Ok(());
    }
    match row_chunk(x.len(), n, threads) {
        Some(chunk) => par::try_chunks3(y, chunk, mean, chunk / n, rstd, chunk / n, true, |c, ys, ms, rs| {
            rows::layer_norm(level, &x[c * chunk..c * chunk + ys.len()], ys, n, weight, bias, eps, ms, rs)
        }),
        None => rows::layer_norm(level, x, y, n, weight, bias, eps, mean, rstd),
    }
}

/// Sums (or means, with `divisor` the count) over the middle axis of `(outer, r, inner)`.
pub fn sum_axis(
    level: Level,
    x: &[f32],
    (outer, r, inner): (usize, usize, usize),
    divisor: f32,
    y: &mut [f32],
) -> KResult {
    rows::sum_axis(level, x, outer, r, inner, divisor, y)
}

/// 2-D pooling of `images` NHWC images (`x`: `images × h × w × c`), rows split across threads.
#[allow(clippy::too_many_arguments)]
pub fn pool2d(
    level: Level,
    x: &[f32],
    images: usize,
    g: &Window,
    pool: Pool,
    y: &mut [f32],
    (lo, hi): (f32, f32),
    threads: usize,
) -> KResult {
    let image = g.h.checked_mul(g.w).and_then(|v| v.checked_mul(g.c));
    let row = g.ow.checked_mul(g.c);
    let (Some(image), Some(row)) = (image, row) else {
        return Err(shape("pool: geometry overflows".into()));
    };
    if Some(x.len()) != images.checked_mul(image)
        || Some(y.len()) != images.checked_mul(g.oh).and_then(|v| v.checked_mul(row))
    {
        return Err(shape(format!("pool: {} and {} elements do not match {images} images of {g:?}", x.len(), y.len())));
    }
    if y.is_empty() {
        return Ok(());
    }
    par::try_chunks(y, row, split(y.len(), threads).is_some(), |k, yr| {
        let (n, oy) = (k / g.oh, k % g.oh);
        rows::pool_row(level, &x[n * image..(n + 1) * image], g, oy, pool, yr, lo, hi)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Broadcasting by brute force: the output's multi-index, each side's index reduced.
    fn reference(a: &[f32], sa: &[usize], b: &[f32], sb: &[usize], out: &[usize]) -> Vec<f32> {
        let total: usize = out.iter().product();
        let at = |x: &[f32], s: &[usize], mut i: usize| {
            let mut off = 0;
            let mut step = 1;
            for d in (0..out.len()).rev() {
                let idx = i % out[d];
                i /= out[d];
                let k = d as isize - (out.len() - s.len()) as isize;
                if k >= 0 {
                    let size = s[k as usize];
                    off += if size == 1 { 0 } else { idx * step };
                    step *= size;
                }
            }
            x[off]
        };
        (0..total).map(|i| at(a, sa, i) - 2.0 * at(b, sb, i)).collect()
    }

    #[test]
    fn broadcast_plans_match_brute_force() {
        let cases: &[(&[usize], &[usize], &[usize])] = &[
            (&[2, 3, 4], &[2, 3, 4], &[2, 3, 4]),
            (&[2, 3, 4], &[4], &[2, 3, 4]),
            (&[2, 3, 4], &[], &[2, 3, 4]),
            (&[], &[2, 3, 4], &[2, 3, 4]),
            (&[2, 1, 4], &[1, 3, 1], &[2, 3, 4]),
            (&[3, 1], &[1, 5], &[3, 5]),
            (&[2, 3, 1, 1], &[2, 3, 4, 5], &[2, 3, 4, 5]),
            (&[1, 1], &[1], &[1, 1]),
            (&[5, 1, 7], &[1, 1, 7], &[5, 1, 7]),
            (&[0, 3], &[3], &[0, 3]),
            // One side a repeated run, the other contiguous (squeeze-excitation, bias rows).
            (&[1, 6, 6, 8], &[1, 1, 1, 8], &[1, 6, 6, 8]),
            (&[4, 5], &[3, 4, 5], &[3, 4, 5]),
            (&[64, 64, 16], &[16], &[64, 64, 16]),
        ];
        for &(sa, sb, out) in cases {
            let plan = Broadcast::new(sa, sb, out).unwrap_or_else(|| panic!("{sa:?} {sb:?} {out:?}"));
            let a: Vec<f32> = (0..sa.iter().product::<usize>()).map(|i| i as f32 * 0.5).collect();
            let b: Vec<f32> = (0..sb.iter().product::<usize>()).map(|i| 100.0 - i as f32).collect();
            let two_b: Vec<f32> = b.iter().map(|v| v * 2.0).collect();
            let want = reference(&a, sa, &b, sb, out);
            for level in Level::available() {
                for threads in [1, 3] {
                    let mut got = vec![f32::NAN; plan.len()];
                    plan.run(level, Binary::Sub, &a, &two_b, &mut got, (f32::NEG_INFINITY, f32::INFINITY), threads)
                        .unwrap();
                    assert_eq!(got, want, "{sa:?} {sb:?} {out:?} {level:?}");
                }
            }
        }
        assert_eq!(Broadcast::new(&[1, 6, 6, 8], &[1, 1, 1, 8], &[1, 6, 6, 8]).unwrap().repeat, Some(1));
        assert_eq!(Broadcast::new(&[4, 5], &[3, 4, 5], &[3, 4, 5]).unwrap().repeat, Some(0));
        assert_eq!(Broadcast::new(&[2, 1, 4], &[1, 3, 1], &[2, 3, 4]).unwrap().repeat, None);
        assert!(Broadcast::new(&[2, 3], &[4], &[2, 3]).is_none());
        assert!(Broadcast::new(&[2, 3], &[3], &[2, 4]).is_none());
        let plan = Broadcast::new(&[2, 3], &[3], &[2, 3]).unwrap();
        let err = plan.run(Level::Portable, Binary::Add, &[0.0; 6], &[0.0; 2], &mut [0.0; 6], (0.0, 1.0), 1);
        assert!(err.is_err());
    }

    mod against_portable {
        use proptest::prelude::*;

        use super::super::*;
        use crate::{elementwise, norm, pool};

        fn values(n: usize, seed: u64) -> Vec<f32> {
            let mut s = seed.wrapping_add(1);
            (0..n)
                .map(|_| {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((s >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0
                })
                .collect()
        }

        fn close(got: &[f32], want: &[f32], tol: f32) -> Result<(), TestCaseError> {
            prop_assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(want) {
                prop_assert!(g == w || (g - w).abs() <= tol * w.abs().max(1.0), "{} vs {}", g, w);
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

            /// Broadcasting arithmetic: bit-identical to the portable kernel at every level.
            #[test]
            fn broadcast_arithmetic(out in prop::collection::vec(1usize..6, 0..4), mask_a in 0u32..16, mask_b in 0u32..16, drop_a in 0usize..3, op in 0usize..6, seed in 0u64..1000) {
                // Each side: the output's sizes with some set to 1, some leading ones dropped.
                let side = |mask: u32, drop: usize| -> Vec<usize> {
                    let s: Vec<usize> = out.iter().enumerate().map(|(i, &d)| if mask >> i & 1 == 1 { 1 } else { d }).collect();
                    s[drop.min(s.len())..].to_vec()
                };
                let (sa, sb) = (side(mask_a, drop_a), side(mask_b, 0));
                let (a, b) = (values(sa.iter().product(), seed), values(sb.iter().product(), seed + 1));
                let op = [Binary::Add, Binary::Sub, Binary::Mul, Binary::Div, Binary::Max, Binary::Min][op];
                let f = move |x: f32, y: f32| match op {
                    Binary::Add => x + y,
                    Binary::Sub => x - y,
                    Binary::Mul => x * y,
                    Binary::Div => x / y,
                    Binary::Max => x.max(y),
                    Binary::Min => x.min(y),
                };
                let total: usize = out.iter().product();
                let mut want = vec![0.0f32; total];
                elementwise::binary(&a, &sa, &b, &sb, &mut want, &out, f).unwrap();
                let plan = Broadcast::new(&sa, &sb, &out).expect("broadcasts");
                for level in Level::available() {
                    let mut got = vec![f32::NAN; total];
                    plan.run(level, op, &a, &b, &mut got, (f32::NEG_INFINITY, f32::INFINITY), 1).unwrap();
                    prop_assert_eq!(&got, &want, "{:?} {:?} {:?} {:?}", level, sa, sb, out);
                }
            }

            /// Softmax and layer norm over the last dimension.
            #[test]
            fn softmax_and_layer_norm(rows in 1usize..6, n in 1usize..70, seed in 0u64..1000) {
                let x = values(rows * n, seed);
                let (w, b) = (values(n, seed + 1), values(n, seed + 2));
                let mut want = vec![0.0f32; rows * n];
                norm::softmax(&x, &mut want, rows, n, 1, false).unwrap();
                let (mut wl, mut wm, mut wr) = (vec![0.0f32; rows * n], vec![0.0f32; rows], vec![0.0f32; rows]);
                norm::layer_norm(&x, Some(&w), Some(&b), &mut wl, &mut wm, &mut wr, rows, n, 1e-5).unwrap();
                for level in Level::available() {
                    let mut got = vec![0.0f32; rows * n];
                    softmax(level, &x, &mut got, n, false, 1).unwrap();
                    close(&got, &want, 2e-6)?;
                    let (mut gm, mut gr) = (vec![0.0f32; rows], vec![0.0f32; rows]);
                    layer_norm(level, &x, &mut got, n, Some(&w), Some(&b), 1e-5, &mut gm, &mut gr, 1).unwrap();
                    close(&got, &wl, 1e-5)?;
                    close(&gm, &wm, 1e-5)?;
                    close(&gr, &wr, 1e-4)?;
                }
            }

            /// Pooling of NHWC images against the portable NCHW kernels.
            #[test]
            fn pooling(n in 1usize..3, c in 1usize..20, h in 1usize..9, w in 1usize..9, k in 1usize..4, s in 1usize..3, p in 0usize..2, d in 1usize..3, ceil in any::<bool>(), avg in any::<bool>(), include_pad in any::<bool>(), seed in 0u64..1000) {
                let p = p.min(k / 2);
                let d = if avg { 1 } else { d };
                let (Ok(oh), Ok(ow)) = (pool::pool_output_size(h, k, s, p, d, ceil), pool::pool_output_size(w, k, s, p, d, ceil)) else {
                    return Ok(());
                };
                prop_assume!(oh > 0 && ow > 0);
                let x = values(n * c * h * w, seed);
                let spec = pool::Pool2d { planes: n * c, input: [h, w], output: [oh, ow], kernel: [k, k], stride: [s, s], padding: [p, p], dilation: [d, d] };
                let mut want = vec![0.0f32; n * c * oh * ow];
                if avg {
                    pool::avg_pool2d(&x, &mut want, &spec, include_pad, None).unwrap();
                } else {
                    pool::max_pool2d(&x, &mut want, None, &spec).unwrap();
                }
                let to_nhwc = |v: &[f32], hh: usize, ww: usize| {
                    let mut o = vec![0.0f32; v.len()];
                    for b in 0..n {
                        for ch in 0..c {
                            for i in 0..hh * ww {
                                o[(b * hh * ww + i) * c + ch] = v[(b * c + ch) * hh * ww + i];
                            }
                        }
                    }
                    o
                };
                let (xn, want) = (to_nhwc(&x, h, w), to_nhwc(&want, oh, ow));
                let g = Window { h, w, c, oh, ow, kernel: [k, k], stride: [s, s], padding: [p, p], dilation: [d, d] };
                let kind = if avg { Pool::Avg { count_include_pad: include_pad, divisor: None } } else { Pool::Max };
                for level in Level::available() {
                    let mut got = vec![0.0f32; want.len()];
                    pool2d(level, &xn, n, &g, kind, &mut got, (f32::NEG_INFINITY, f32::INFINITY), 1).unwrap();
                    close(&got, &want, 1e-6)?;
                }
            }
        }
    }

    #[test]
    fn large_work_splits_across_threads_with_the_same_result() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let n = 3 * PAR_MIN + 17;
        let x: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 - 48.0) / 7.0).collect();
        let level = Level::detect();
        let (mut one, mut many) = (vec![0.0; n], vec![0.0; n]);
        unary(level, Unary::Gelu, &x, &mut one, 1).unwrap();
        pool.install(|| unary(level, Unary::Gelu, &x, &mut many, 3)).unwrap();
        assert_eq!(one, many);
        let rows = n / 31;
        let (xs, (a, b)) = (&x[..rows * 31], (&mut one[..rows * 31], &mut many[..rows * 31]));
        softmax(level, xs, a, 31, false, 1).unwrap();
        pool.install(|| softmax(level, xs, b, 31, false, 3)).unwrap();
        assert_eq!(a, b);
        let (mut m1, mut r1, mut m2, mut r2) = (vec![0.0; rows], vec![0.0; rows], vec![0.0; rows], vec![0.0; rows]);
        layer_norm(level, xs, a, 31, None, None, 1e-5, &mut m1, &mut r1, 1).unwrap();
        pool.install(|| layer_norm(level, xs, b, 31, None, None, 1e-5, &mut m2, &mut r2, 3)).unwrap();
        assert_eq!((a, &m1, &r1), (b, &m2, &r2));
    }
}
