//! The int8 product's register tile: [`MR`] rows × [`NR`] columns of `i32` sums over `steps`
//! pairs of reduction indices. Each step multiplies a row's pair of `i16` values (packed in one
//! `i32`: low half first) with each column's pair and adds both products (`madd`).

#![allow(unsafe_code)]

use super::{Epilogue, PackedQ, QOut};
use crate::simd::Level;
use crate::KResult;

/// Rows of one tile.
pub const MR: usize = 4;
/// Columns of one tile (and of one packed weight panel).
pub const NR: usize = 16;

/// One task of the int8 product: the output rows from `first` that `chunk` holds (`n` per row),
/// `a` the task's scratch of [`MR`] rows of `kp` terms; compiled for AVX2 (tile and epilogue) on
/// AVX2 levels.
pub(super) fn gemm_task<O: QOut>(level: Level, a: &mut [i16], first: usize, job: &Job<'_>, chunk: &mut [O]) -> KResult {
    #[cfg(target_arch = "x86_64")]
    {
        if matches!(level, Level::Avx2 | Level::Avx512) && std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked just above).
            return unsafe { gemm_task_avx2(a, first, job, chunk) };
        }
    }
    let _ = level;
    gemm_task_generic::<O, false>(a, first, job, chunk)
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
unsafe fn gemm_task_avx2<O: QOut>(a: &mut [i16], first: usize, job: &Job<'_>, chunk: &mut [O]) -> KResult {
    gemm_task_generic::<O, true>(a, first, job, chunk)
}

#[inline(always)]
fn gemm_task_generic<O: QOut, const AVX2: bool>(
    a: &mut [i16],
    first: usize,
    job: &Job<'_>,
    chunk: &mut [O],
) -> KResult {
    let (k, n, kp) = (job.w.k(), job.w.n(), job.kp);
    assert!(kp.is_multiple_of(2) && kp >= k && a.len() == MR * kp, "int8 task: scratch of the wrong size");
    let count = chunk.len() / n;
    let mut tile = [[0i32; NR]; MR];
    for r0 in (0..count).step_by(MR) {
        let live = MR.min(count - r0);
        for (r, row) in a.chunks_exact_mut(kp).enumerate() {
            if r < live {
                (job.fill)(first + r0 + r, &mut row[..k]);
            } else {
                row[..k].fill(0);
            }
            row[k..].fill(0);
        }
        for p in 0..n.div_ceil(NR) {
            let panel = job.w.panel(p);
            assert!(panel.len() >= kp * NR, "int8 task: panel shorter than {kp} terms");
            #[cfg(target_arch = "x86_64")]
            if AVX2 {
                // SAFETY: only `gemm_task_avx2` (AVX2 enabled) instantiates `AVX2 = true`; the
                // operands hold `kp` terms (asserted above).
                unsafe { tile_avx2(a, kp, panel, &mut tile) };
            } else {
                tile_portable(a, kp, panel, &mut tile);
            }
            #[cfg(not(target_arch = "x86_64"))]
            tile_portable(a, kp, panel, &mut tile);
            let (c0, width) = (p * NR, NR.min(n - p * NR));
            for (r, acc) in tile.iter().enumerate().take(live) {
                let row = &mut chunk[(r0 + r) * n..(r0 + r + 1) * n];
                O::apply(job.ep, &acc[..width], c0, &mut row[c0..c0 + width])?;
            }
        }
    }
    Ok(())
}

fn tile_portable(rows: &[i16], kp: usize, b: &[i16], tile: &mut [[i32; NR]; MR]) {
    *tile = [[0; NR]; MR];
    for s in 0..kp / 2 {
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
    use std::arch::x86_64::*;
    let mut c = [[_mm256_setzero_si256(); 2]; MR];
    let (ap, bp) = (rows.as_ptr(), b.as_ptr());
    for s in 0..kp / 2 {
        // SAFETY: `b` holds `kp · NR` values (the caller asserted it): step `s` reads 32 of them
        // from `s · 32`; `rows` holds `MR · kp`, step `s` reads the pair at `r · kp + 2s` of each
        // row (an unaligned 32-bit read of two `i16`).
        unsafe {
            let b0 = _mm256_loadu_si256(bp.add(s * NR * 2).cast());
            let b1 = _mm256_loadu_si256(bp.add(s * NR * 2 + 16).cast());
            for (r, c) in c.iter_mut().enumerate() {
                let pair = std::ptr::read_unaligned(ap.add(r * kp + 2 * s).cast::<i32>());
                let av = _mm256_set1_epi32(pair);
                c[0] = _mm256_add_epi32(c[0], _mm256_madd_epi16(av, b0));
                c[1] = _mm256_add_epi32(c[1], _mm256_madd_epi16(av, b1));
            }
        }
    }
    for (row, c) in tile.iter_mut().zip(&c) {
        // SAFETY: each row holds NR = 16 `i32`: two 8-lane stores.
        unsafe {
            _mm256_storeu_si256(row.as_mut_ptr().cast(), c[0]);
            _mm256_storeu_si256(row.as_mut_ptr().add(8).cast(), c[1]);
        }
    }
}
