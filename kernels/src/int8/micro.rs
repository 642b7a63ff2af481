//! The int8 product's register tile: [`MR`] rows × [`NR`] columns of `i32` sums over `steps`
//! pairs of reduction indices. Each step multiplies a row's pair of `i16` values (packed in one
//! `i32`: low half first) with each column's pair and adds both products (`madd`).

#![allow(unsafe_code)]

use std::ops::Range;

use super::group::GroupWeights;
use super::{Epilogue, PackedQ, QOut};
use crate::simd::Level;
use crate::KResult;

/// Rows of one tile.
pub const MR: usize = 4;
/// Columns of one tile (and of one packed weight panel).
pub const NR: usize = 16;

/// One task of the int8 product: the output rows from `first` that `chunk` holds, columns of
/// weight panels `panels` only (`chunk`'s rows hold exactly those columns), `a` the task's scratch
/// of [`MR`] rows of `kp` terms; compiled for AVX2 (tile and epilogue) on AVX2 levels.
pub(super) fn gemm_task<O: QOut>(
    level: Level,
    a: &mut [i16],
    first: usize,
    job: &Job<'_>,
    chunk: &mut [O],
    panels: Range<usize>,
) -> KResult {
    #[cfg(target_arch = "x86_64")]
    {
        if matches!(level, Level::Avx2 | Level::Avx512) && std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked just above).
            return unsafe { gemm_task_avx2(a, first, job, chunk, panels) };
        }
    }
    let _ = level;
    gemm_task_generic::<O, false>(a, first, job, chunk, panels)
}

/// The output columns of weight panels `panels` of an `n`-column product: first column and count.
pub(super) fn panel_columns(panels: &Range<usize>, n: usize) -> (usize, usize) {
    let first = panels.start * NR;
    (first, (panels.end * NR).min(n).saturating_sub(first))
}

/// What a task of the int8 product reads.
pub(super) struct Job<'a> {
    /// Writes row `r`'s `K` values minus the zero point into its slice.
    pub fill: &'a (dyn Fn(usize, &mut [i16]) + Sync),
    pub w: &'a PackedQ,
    pub ep: &'a Epilogue,
    /// `K` rounded up to even.
    pub kp: usize,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gemm_task_avx2<O: QOut>(
    a: &mut [i16],
    first: usize,
    job: &Job<'_>,
    chunk: &mut [O],
    panels: Range<usize>,
) -> KResult {
    gemm_task_generic::<O, true>(a, first, job, chunk, panels)
}

/// Rows of `a` filled at once: as many as keep `rows · kp` values in about 128 KiB (a level-2
/// cache share), so each weight panel is read once per block from level 1.
pub(super) fn block_rows(kp: usize) -> usize {
    ((64 * 1024 / kp.max(1)).clamp(MR, 256) / MR) * MR
}

#[inline(always)]
fn gemm_task_generic<O: QOut, const AVX2: bool>(
    a: &mut [i16],
    first: usize,
    job: &Job<'_>,
    chunk: &mut [O],
    panels: Range<usize>,
) -> KResult {
    let (k, n, kp) = (job.w.k(), job.w.n(), job.kp);
    let mb = block_rows(kp);
    assert!(kp.is_multiple_of(2) && kp >= k && a.len() == mb * kp, "int8 task: scratch of the wrong size");
    let (col0, stride) = panel_columns(&panels, n);
    assert!(stride > 0 && chunk.len().is_multiple_of(stride), "int8 task: output of the wrong size");
    let count = chunk.len() / stride;
    let mut tile = [[0i32; NR]; MR];
    for b0 in (0..count).step_by(mb) {
        let rows = mb.min(count - b0);
        let padded = rows.div_ceil(MR) * MR;
        for (r, row) in a.chunks_exact_mut(kp).take(padded).enumerate() {
            if r < rows {
                (job.fill)(first + b0 + r, &mut row[..k]);
            } else {
                row[..k].fill(0);
            }
            row[k..].fill(0);
        }
        for p in panels.clone() {
            let panel = job.w.panel(p);
            assert!(panel.len() >= kp * NR, "int8 task: panel shorter than {kp} terms");
            let (c0, width) = (p * NR, NR.min(n - p * NR));
            for r0 in (0..rows).step_by(MR) {
                let block = &a[r0 * kp..(r0 + MR) * kp];
                #[cfg(target_arch = "x86_64")]
                if AVX2 {
                    // SAFETY: only `gemm_task_avx2` (AVX2 enabled) instantiates `AVX2 = true`;
                    // the operands hold `kp` terms (asserted above and in `tile_avx2`'s slices).
                    unsafe { tile_avx2(block, kp, panel, &mut tile) };
                } else {
                    tile_portable(block, kp, panel, &mut tile);
                }
                #[cfg(not(target_arch = "x86_64"))]
                tile_portable(block, kp, panel, &mut tile);
                for (r, acc) in tile.iter().enumerate().take(MR.min(rows - r0)) {
                    let row = &mut chunk[(b0 + r0 + r) * stride..(b0 + r0 + r + 1) * stride];
                    O::apply(job.ep, &acc[..width], c0, &mut row[c0 - col0..c0 - col0 + width])?;
                }
            }
        }
    }
    Ok(())
}

fn tile_portable(rows: &[i16], kp: usize, b: &[i16], tile: &mut [[i32; NR]; MR]) {
    tile_portable_steps(rows, kp, 0..kp / 2, b, tile);
}

/// The portable tile over reduction steps `steps` (pairs of indices) only.
fn tile_portable_steps(rows: &[i16], kp: usize, steps: std::ops::Range<usize>, b: &[i16], tile: &mut [[i32; NR]; MR]) {
    *tile = [[0; NR]; MR];
    for s in steps {
        let bs = &b[s * NR * 2..(s + 1) * NR * 2];
        for (r, acc) in tile.iter_mut().enumerate() {
            let (lo, hi) = (i32::from(rows[r * kp + 2 * s]), i32::from(rows[r * kp + 2 * s + 1]));
            for (j, acc) in acc.iter_mut().enumerate() {
                *acc = acc.wrapping_add(lo * i32::from(bs[2 * j]) + hi * i32::from(bs[2 * j + 1]));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tile_avx2(rows: &[i16], kp: usize, b: &[i16], tile: &mut [[i32; NR]; MR]) {
    // SAFETY: the caller's contract (AVX2 present) passes through.
    unsafe { tile_avx2_steps(rows, kp, 0..kp / 2, b, tile) }
}

/// The AVX2 tile over reduction steps `steps` (pairs of indices) only.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tile_avx2_steps(
    rows: &[i16],
    kp: usize,
    steps: std::ops::Range<usize>,
    b: &[i16],
    tile: &mut [[i32; NR]; MR],
) {
    use std::arch::x86_64::*;
    assert!(rows.len() >= (MR - 1) * kp + 2 * steps.end && b.len() >= steps.end * 2 * NR);
    let (ap, bp) = (rows.as_ptr(), b.as_ptr());
    // Eight named accumulators (4 rows × 2 halves of 8 columns): they stay in registers.
    let z = _mm256_setzero_si256();
    let (mut c00, mut c01, mut c10, mut c11, mut c20, mut c21, mut c30, mut c31) = (z, z, z, z, z, z, z, z);
    for s in steps {
        // SAFETY: `b` holds `2 · NR · steps.end` values (asserted): step `s` reads 32 of them
        // from `s · 32`; `rows` holds `(MR - 1) · kp + 2 · steps.end` values (asserted): step `s`
        // reads the pair at `r · kp + 2s` of each row `r < MR`.
        // `rows` holds `MR · kp`: step `s` reads the pair at `r · kp + 2s` of each row (an
        // unaligned 32-bit read of two `i16`).
        unsafe {
            let b0 = _mm256_loadu_si256(bp.add(s * NR * 2).cast());
            let b1 = _mm256_loadu_si256(bp.add(s * NR * 2 + 16).cast());
            let pair = |r: usize| _mm256_set1_epi32(std::ptr::read_unaligned(ap.add(r * kp + 2 * s).cast::<i32>()));
            let a0 = pair(0);
            c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(a0, b0));
            c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(a0, b1));
            let a1 = pair(1);
            c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(a1, b0));
            c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(a1, b1));
            let a2 = pair(2);
            c20 = _mm256_add_epi32(c20, _mm256_madd_epi16(a2, b0));
            c21 = _mm256_add_epi32(c21, _mm256_madd_epi16(a2, b1));
            let a3 = pair(3);
            c30 = _mm256_add_epi32(c30, _mm256_madd_epi16(a3, b0));
            c31 = _mm256_add_epi32(c31, _mm256_madd_epi16(a3, b1));
        }
    }
    for (row, (lo, hi)) in tile.iter_mut().zip([(c00, c01), (c10, c11), (c20, c21), (c30, c31)]) {
        // SAFETY: each row holds NR = 16 `i32`: two 8-lane stores.
        unsafe {
            _mm256_storeu_si256(row.as_mut_ptr().cast(), lo);
            _mm256_storeu_si256(row.as_mut_ptr().add(8).cast(), hi);
        }
    }
}

/// The machine's int8 multiply-add peak as this crate's tiles reach it: `steps` rounds of twelve
/// independent `vpmaddwd` + `vpaddd` pairs (16 multiply-adds each) on AVX2 levels, the portable
/// tile's arithmetic otherwise. Returns a checksum so the work is not optimised away. For
/// benchmarks, which report the products' throughput against it.
#[doc(hidden)]
pub fn madd_peak(level: Level, steps: usize) -> i32 {
    #[cfg(target_arch = "x86_64")]
    {
        if matches!(level, Level::Avx2 | Level::Avx512) && std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked just above); the function only touches registers.
            return unsafe { madd_peak_avx2(steps) };
        }
    }
    let _ = level;
    let mut acc = [0i32; 16];
    for s in 0..steps {
        for (j, a) in acc.iter_mut().enumerate() {
            *a = a.wrapping_add((s as i32 ^ j as i32).wrapping_mul(3) * 7 + 5);
        }
    }
    acc.iter().fold(0, |a, &b| a.wrapping_add(b))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn madd_peak_avx2(steps: usize) -> i32 {
    use std::arch::x86_64::*;
    let b = std::hint::black_box(_mm256_set1_epi16(-2));
    let mut c = [_mm256_setzero_si256(); 12];
    for (i, c) in c.iter_mut().enumerate() {
        *c = _mm256_set1_epi32(i as i32 + 1);
    }
    for _ in 0..steps {
        // Each chain multiplies its own sum (so nothing is loop-invariant); twelve chains cover
        // the multiply-add latency.
        for c in c.iter_mut() {
            *c = _mm256_add_epi32(*c, _mm256_madd_epi16(*c, b));
        }
    }
    let mut sum = _mm256_setzero_si256();
    for c in c {
        sum = _mm256_add_epi32(sum, c);
    }
    _mm256_extract_epi32::<0>(sum)
}

/// One task of the groupwise product (see [`super::group`]): rows from `first` that `chunk`
/// holds, columns of weight panels `panels` (as [`gemm_task`]); compiled for AVX2 on AVX2 levels.
pub(super) fn group_task(
    level: Level,
    a: &mut [i16],
    first: usize,
    job: &GroupJob<'_>,
    chunk: &mut [f32],
    panels: Range<usize>,
) -> KResult {
    #[cfg(target_arch = "x86_64")]
    {
        if matches!(level, Level::Avx2 | Level::Avx512) && std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked just above).
            return unsafe { group_task_avx2(a, first, job, chunk, panels) };
        }
    }
    let _ = level;
    group_task_generic::<false>(a, first, job, chunk, panels)
}

/// What a task of the groupwise product reads.
pub(super) struct GroupJob<'a> {
    /// Writes row `r`'s `K` values minus its zero point into its slice.
    pub fill: &'a (dyn Fn(usize, &mut [i16]) + Sync),
    pub w: &'a GroupWeights,
    /// Reduction indices per weight scale (even).
    pub group: usize,
    /// Weight scales per panel: `[panel][group][NR]`.
    pub scales: &'a [f32],
    /// The activation scale of every row of the whole product.
    pub row_scales: &'a [f32],
    pub bias: &'a [f32],
    pub clamp: (f32, f32),
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn group_task_avx2(
    a: &mut [i16],
    first: usize,
    job: &GroupJob<'_>,
    chunk: &mut [f32],
    panels: Range<usize>,
) -> KResult {
    group_task_generic::<true>(a, first, job, chunk, panels)
}

/// `acc += tile · s` per column, in `f32` (a multiply, then an add: the same at every level).
#[inline(always)]
fn accumulate(acc: &mut [[f32; NR]; MR], tile: &[[i32; NR]; MR], s: &[f32; NR]) {
    for (acc, t) in acc.iter_mut().zip(tile) {
        for j in 0..NR {
            acc[j] += t[j] as f32 * s[j];
        }
    }
}

/// Rows of a block first (filled once), then per weight panel and group: the group's weights
/// unpacked once (int4 nibbles widened to `i16` pairs in a level-1-sized buffer), every row tile's
/// integer sums over them, scaled into `f32` accumulators; the epilogue after the last group.
#[inline(always)]
fn group_task_generic<const AVX2: bool>(
    a: &mut [i16],
    first: usize,
    job: &GroupJob<'_>,
    chunk: &mut [f32],
    panels: Range<usize>,
) -> KResult {
    let (k, n, group) = (job.w.k(), job.w.n(), job.group);
    let kp = k;
    let mb = block_rows(kp);
    let groups = k / group;
    assert!(
        group % 2 == 0 && k % group == 0 && a.len() == mb * kp && job.scales.len() >= n.div_ceil(NR) * groups * NR,
        "groupwise task: inconsistent operands"
    );
    let (col0, stride) = panel_columns(&panels, n);
    assert!(stride > 0 && chunk.len().is_multiple_of(stride), "groupwise task: output of the wrong size");
    let count = chunk.len() / stride;
    let mut tile = [[0i32; NR]; MR];
    let mut buf = vec![0i16; group * NR];
    let mut acc = vec![[0f32; NR]; mb];
    for b0 in (0..count).step_by(mb) {
        let rows = mb.min(count - b0);
        let padded = rows.div_ceil(MR) * MR;
        for (r, row) in a.chunks_exact_mut(kp).take(padded).enumerate() {
            if r < rows {
                (job.fill)(first + b0 + r, row);
            } else {
                row.fill(0);
            }
        }
        for p in panels.clone() {
            let scales = &job.scales[p * groups * NR..(p + 1) * groups * NR];
            let (c0, width) = (p * NR, NR.min(n - p * NR));
            acc[..padded].fill([0.0; NR]);
            for g in 0..groups {
                let steps = g * group / 2..(g + 1) * group / 2;
                let b = job.w.steps(p, steps, &mut buf);
                let s: &[f32; NR] = scales[g * NR..(g + 1) * NR].try_into().expect("NR scales");
                for r0 in (0..rows).step_by(MR) {
                    let block = &a[r0 * kp + g * group..(r0 + MR) * kp];
                    #[cfg(target_arch = "x86_64")]
                    if AVX2 {
                        // SAFETY: only `group_task_avx2` (AVX2 enabled) instantiates `AVX2 = true`;
                        // `block` and `b` hold the group's steps (asserted in `tile_avx2_steps`).
                        unsafe { tile_avx2_steps(block, kp, 0..group / 2, b, &mut tile) };
                    } else {
                        tile_portable_steps(block, kp, 0..group / 2, b, &mut tile);
                    }
                    #[cfg(not(target_arch = "x86_64"))]
                    tile_portable_steps(block, kp, 0..group / 2, b, &mut tile);
                    let acc: &mut [[f32; NR]; MR] = (&mut acc[r0..r0 + MR]).try_into().expect("MR rows");
                    accumulate(acc, &tile, s);
                }
            }
            let (lo, hi) = job.clamp;
            for (r, acc) in acc.iter().enumerate().take(rows) {
                let row = b0 + r;
                let xs = job.row_scales[first + row];
                let at = row * stride + c0 - col0;
                for (j, o) in chunk[at..at + width].iter_mut().enumerate() {
                    *o = (acc[j] * xs + job.bias[c0 + j]).max(lo).min(hi);
                }
            }
        }
    }
    Ok(())
}
