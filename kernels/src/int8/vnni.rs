//! The int8 product on VNNI (`vpdpbusd`: four unsigned-by-signed byte products added into each
//! `i32` lane, without saturation): AVX-512 VNNI on 512-bit vectors, AVX-VNNI on 256-bit ones.
//!
//! `vpdpbusd` multiplies *unsigned* bytes by signed ones. The weights are the unsigned side,
//! packed once as `w + 128` (a flip of the top bit), so the rows' int8 values are read where they
//! lie — a linear layer's or pointwise convolution's rows straight from the input, four bytes
//! broadcast at a time, with no copy into a tile order. The difference is taken out at the end
//! with each row's sum and each column's:
//! `Σ (x - zx) · w = Σ x · (w + 128) - 128 · Σ x - zx · Σ w`. A position outside the input (a
//! convolution's padding) holds `zx`, so it contributes nothing. Each sum has at most
//! [`MAX_K`](super::MAX_K) terms of magnitude ≤ 128 · 255, so every value fits `i32` (the
//! corrections are applied with wrapping arithmetic; the result is exact).

#![allow(unsafe_code)]

use std::ops::Range;

use super::micro::{panel_columns, NR};
use super::{Epilogue, EpilogueKind, QOut, MAX_K};
use crate::{KResult, KernelError};

/// Rows of the AVX-512 tile: eight rows × two panels of 16 columns, sixteen independent
/// accumulator chains (two `vpdpbusd` per cycle at a latency of five need ten).
pub(super) const MR512: usize = 8;
/// Rows of the AVX-VNNI tile: six rows × two halves of 16 columns, twelve 256-bit accumulators
/// (of sixteen registers).
pub(super) const MR256: usize = 6;
/// The widest tile's rows and columns.
const TILE_ROWS: usize = 8;
const TILE_COLS: usize = 2 * NR;

type Tile = [[i32; TILE_COLS]; TILE_ROWS];

/// Which VNNI width a product runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Width {
    /// AVX-512 VNNI (with AVX-512BW and VL).
    W512,
    /// AVX-VNNI (with AVX2).
    W256,
}

impl Width {
    /// Whether this CPU runs it.
    pub(super) fn runs(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Width::W512 => {
                    std::is_x86_feature_detected!("avx512f")
                        && std::is_x86_feature_detected!("avx512bw")
                        && std::is_x86_feature_detected!("avx512vl")
                        && std::is_x86_feature_detected!("avx512vnni")
                }
                Width::W256 => std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("avxvnni"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = self;
            false
        }
    }

    fn rows(self) -> usize {
        match self {
            Width::W512 => MR512,
            Width::W256 => MR256,
        }
    }

    /// Weight panels one tile covers.
    fn panels(self) -> usize {
        match self {
            Width::W512 => 2,
            Width::W256 => 1,
        }
    }
}

/// Weights `[N, K]` packed for the VNNI tiles: panels of [`NR`] columns, each `K/4` (rounded up)
/// steps of `NR` groups of four bytes (`w[4s..4s+4][j] + 128` for column `j`; 128, a zero
/// weight, past `K` and `N`); with each column's sum over `K`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PackedQuads {
    k: usize,
    n: usize,
    data: Vec<u8>,
    column_sums: Vec<i32>,
}

impl PackedQuads {
    /// Packs `w(j, p)` for output column `j < n` and reduction index `p < k`.
    pub(super) fn new(k: usize, n: usize, w: impl Fn(usize, usize) -> i8) -> KResult<Self> {
        if k == 0 || n == 0 {
            return Err(KernelError::Argument(format!("int8 product: empty weights ({n} × {k})")));
        }
        if k > MAX_K {
            return Err(KernelError::Argument(format!("int8 product: {k} terms per sum (at most {MAX_K})")));
        }
        let steps = k.div_ceil(4);
        let panels = n.div_ceil(NR);
        let len = panels
            .checked_mul(steps)
            .and_then(|v| v.checked_mul(4 * NR))
            .ok_or_else(|| KernelError::Argument("int8 product: weights too large".into()))?;
        let mut data = vec![0x80u8; len];
        let mut column_sums = vec![0i32; panels * NR];
        for p in 0..panels {
            for jj in 0..NR.min(n - p * NR) {
                let j = p * NR + jj;
                let mut sum = 0i32;
                for kk in 0..k {
                    let v = w(j, kk);
                    data[(p * steps + kk / 4) * 4 * NR + 4 * jj + kk % 4] = (v as u8) ^ 0x80;
                    sum += i32::from(v);
                }
                column_sums[j] = sum;
            }
        }
        Ok(PackedQuads { k, n, data, column_sums })
    }

    pub(super) fn k(&self) -> usize {
        self.k
    }

    pub(super) fn n(&self) -> usize {
        self.n
    }

    pub(super) fn bytes(&self) -> usize {
        self.data.len() + 4 * self.column_sums.len()
    }

    /// `K` rounded up to a multiple of four: the length of a row in the scratch.
    pub(super) fn kq(&self) -> usize {
        self.k.div_ceil(4) * 4
    }

    fn panel(&self, p: usize) -> &[u8] {
        let len = self.kq() * NR;
        &self.data[p * len..(p + 1) * len]
    }
}

/// What a task of the VNNI product reads.
pub(super) struct QuadJob<'a> {
    /// Writes rows from `r` into the slice, `kq` bytes each: the row's `K` values (padding: the
    /// zero point), then zeros.
    pub fill: &'a (dyn Fn(usize, &mut [i8]) + Sync),
    /// The rows themselves when they lie one after another (`K` int8 values each): when `K` is a
    /// multiple of four the tiles read them in place.
    pub contiguous: Option<&'a [i8]>,
    pub w: &'a PackedQuads,
    pub ep: &'a Epilogue,
    /// The input's zero point.
    pub zero_point: i32,
}

/// The most rows [`block_rows`] gives.
const MAX_BLOCK_ROWS: usize = 512;

/// Rows of the scratch filled at once: about 128 KiB of bytes, a whole number of `width`'s tiles.
pub(super) fn block_rows(width: Width, kq: usize) -> usize {
    let mr = width.rows();
    ((128 * 1024 / kq.max(1)).clamp(mr, MAX_BLOCK_ROWS) / mr) * mr
}

/// The scratch a task of `width` needs for rows of `kq` bytes: [`block_rows`] rows.
pub(super) fn scratch_len(width: Width, kq: usize) -> usize {
    block_rows(width, kq) * kq
}

/// One task of the VNNI product (as [`super::micro::gemm_task`]): the output rows from `first`
/// that `chunk` holds, columns of weight panels `panels` only, `a` the task's scratch of
/// [`scratch_len`] bytes. Compiled for `width`'s features, epilogue included.
pub(super) fn quad_task<O: QOut>(
    width: Width,
    a: &mut [i8],
    first: usize,
    job: &QuadJob<'_>,
    chunk: &mut [O],
    panels: Range<usize>,
) -> KResult {
    let (n, kq) = (job.w.n, job.w.kq());
    if a.len() != scratch_len(width, kq) || !width.runs() {
        return Err(KernelError::Argument("int8 task: scratch of the wrong size, or VNNI absent".into()));
    }
    let (_, stride) = panel_columns(&panels, n);
    if stride == 0 || !chunk.len().is_multiple_of(stride) {
        return Err(KernelError::Argument("int8 task: output of the wrong size".into()));
    }
    #[cfg(target_arch = "x86_64")]
    match width {
        // SAFETY: the CPU runs the width (checked above); the operands' sizes were checked.
        Width::W512 => unsafe { quad_task_512(a, first, job, chunk, panels) },
        // SAFETY: as above.
        Width::W256 => unsafe { quad_task_256(a, first, job, chunk, panels) },
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (a, first, job, chunk, panels);
        Err(KernelError::Argument("int8 task: VNNI runs only on x86_64".into()))
    }
}

/// # Safety
/// The CPU runs AVX-512F, AVX-512BW and AVX-512 VNNI; `quad_task`'s checks passed.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn quad_task_512<O: QOut>(
    a: &mut [i8],
    first: usize,
    job: &QuadJob<'_>,
    chunk: &mut [O],
    panels: Range<usize>,
) -> KResult {
    quad_task_generic(Width::W512, a, first, job, chunk, panels)
}

/// # Safety
/// The CPU runs AVX2 and AVX-VNNI; `quad_task`'s checks passed.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avxvnni")]
unsafe fn quad_task_256<O: QOut>(
    a: &mut [i8],
    first: usize,
    job: &QuadJob<'_>,
    chunk: &mut [O],
    panels: Range<usize>,
) -> KResult {
    quad_task_generic(Width::W256, a, first, job, chunk, panels)
}

/// Per block of rows: the rows in place (contiguous rows of a multiple of four bytes) or filled
/// into the scratch, and each row's sum; per weight panel (or pair), every tile's sums,
/// corrected, through the epilogue.
#[inline(always)]
fn quad_task_generic<O: QOut>(
    width: Width,
    a: &mut [i8],
    first: usize,
    job: &QuadJob<'_>,
    chunk: &mut [O],
    panels: Range<usize>,
) -> KResult {
    let (k, n, kq) = (job.w.k, job.w.n, job.w.kq());
    let mb = block_rows(width, kq);
    let (col0, stride) = panel_columns(&panels, n);
    let count = chunk.len() / stride;
    let zx = job.zero_point;
    let mr = width.rows();
    let mut tile: Tile = [[0; TILE_COLS]; TILE_ROWS];
    // `128 · Σ x` of each row of the block.
    let mut row_corr = [0i32; MAX_BLOCK_ROWS];
    for b0 in (0..count).step_by(mb) {
        let rows = mb.min(count - b0);
        let block: &[i8] = match job.contiguous {
            Some(x) if k == kq => &x[(first + b0) * k..(first + b0 + rows) * k],
            _ => {
                (job.fill)(first + b0, &mut a[..rows * kq]);
                &a[..rows * kq]
            }
        };
        for (c, row) in row_corr.iter_mut().zip(block.chunks_exact(kq)) {
            *c = 128i32.wrapping_mul(row.iter().map(|&v| i32::from(v)).sum::<i32>());
        }
        for p in panels.clone().step_by(width.panels()) {
            // One panel, or two side by side (the second absent at the end of the range).
            let second = (width.panels() == 2 && p + 1 < panels.end).then(|| job.w.panel(p + 1));
            let c0 = p * NR;
            let cols = (NR * (1 + usize::from(second.is_some()))).min(n - c0);
            let sums = &job.w.column_sums[c0..c0 + cols];
            if let (Width::W512, EpilogueKind::Int8 { zero_point, min, max }) = (width, job.ep.kind) {
                if let Some(out) = O::as_int8(chunk) {
                    // Into int8: requantized in registers, partial panels by masked stores.
                    let mut rq = Requant32 {
                        correction: [0; TILE_COLS],
                        mult: [0.0; TILE_COLS],
                        offset: [0.0; TILE_COLS],
                        lo: (min - zero_point) as f32,
                        hi: (max - zero_point) as f32,
                        zero_point,
                        cols,
                    };
                    for (j, &sum) in sums.iter().enumerate() {
                        rq.correction[j] = zx.wrapping_mul(sum);
                    }
                    rq.mult[..cols].copy_from_slice(&job.ep.mult[c0..c0 + cols]);
                    rq.offset[..cols].copy_from_slice(&job.ep.offset[c0..c0 + cols]);
                    for r0 in (0..rows).step_by(mr) {
                        let live = mr.min(rows - r0);
                        let tile_rows = tile_rows(block, kq, r0, live);
                        let mut rc = [0i32; TILE_ROWS];
                        rc[..live].copy_from_slice(&row_corr[r0..r0 + live]);
                        let at = (b0 + r0) * stride + c0 - col0;
                        tile_512_int8(&tile_rows, kq, job.w.panel(p), second, &rq, &rc, out, at, stride, live);
                    }
                    continue;
                }
            }
            for r0 in (0..rows).step_by(mr) {
                let live = mr.min(rows - r0);
                let tile_rows = tile_rows(block, kq, r0, live);
                tile_dispatch(width, &tile_rows, kq, job.w.panel(p), second, &mut tile);
                for (r, acc) in tile.iter_mut().enumerate().take(live) {
                    let rc = row_corr[r0 + r];
                    for (a, &s) in acc.iter_mut().zip(sums) {
                        *a = a.wrapping_sub(rc).wrapping_sub(zx.wrapping_mul(s));
                    }
                    let row = &mut chunk[(b0 + r0 + r) * stride..(b0 + r0 + r + 1) * stride];
                    O::apply(job.ep, &acc[..cols], c0, &mut row[c0 - col0..c0 - col0 + cols])?;
                }
            }
        }
    }
    Ok(())
}

/// The rows of the tile from row `r0` of `block` (rows of `kq` bytes): `live` of them, the rest
/// repeating the first (their sums are computed and dropped).
#[inline(always)]
fn tile_rows(block: &[i8], kq: usize, r0: usize, live: usize) -> [&[i8]; TILE_ROWS] {
    let row = |r: usize| &block[(r0 + r) * kq..(r0 + r + 1) * kq];
    let mut rows = [row(0); TILE_ROWS];
    for (r, slot) in rows.iter_mut().enumerate().take(live).skip(1) {
        *slot = row(r);
    }
    rows
}

/// A tile's rows: each at least `kq` bytes (the first `width.rows()` are read).
type TileRows<'a> = [&'a [i8]; TILE_ROWS];

/// Runs the tile of `width` over `rows` and a panel, or two (AVX-512 only: the second's sums in
/// columns 16..32 of the tile).
#[inline(always)]
fn tile_dispatch(width: Width, rows: &TileRows<'_>, kq: usize, panel: &[u8], second: Option<&[u8]>, tile: &mut Tile) {
    assert!(
        kq.is_multiple_of(4)
            && rows[..width.rows()].iter().all(|r| r.len() >= kq)
            && panel.len() >= kq * NR
            && second.is_none_or(|b| b.len() >= kq * NR && width == Width::W512),
        "int8 tile: operands shorter than {kq} terms"
    );
    #[cfg(target_arch = "x86_64")]
    match (width, second) {
        // SAFETY: `quad_task` checked that the CPU runs this width; the operands hold `kq` terms
        // per row and per column (asserted above).
        (Width::W512, Some(second)) => unsafe { tile_512::<true>(rows, kq, panel, second, tile) },
        // SAFETY: as above (the second panel is not read).
        (Width::W512, None) => unsafe { tile_512::<false>(rows, kq, panel, panel, tile) },
        // SAFETY: as above.
        (Width::W256, _) => unsafe { tile_256(rows, kq, panel, tile) },
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (width, rows, kq, panel, second, tile);
        unreachable!("VNNI widths run only on x86_64 (Width::runs is false elsewhere)");
    }
}

/// The int8 epilogue of a wide tile's 32 columns (the same arithmetic as [`QOut::apply`] for
/// `i8`, with the VNNI corrections first).
struct Requant32 {
    /// `zx · Σ w` per column.
    correction: [i32; TILE_COLS],
    mult: [f32; TILE_COLS],
    offset: [f32; TILE_COLS],
    lo: f32,
    hi: f32,
    zero_point: i32,
    /// Columns written (1 to 32; the parameters past them are zero).
    cols: usize,
}

/// The AVX-512 tile over one panel or two (`b1`), requantizing into int8 rows: row `r < live`
/// of the tile, less `row_corr[r]` (`128 · Σ x`), goes to `out[at + r · stride ..][..rq.cols]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn tile_512_int8(
    rows: &TileRows<'_>,
    kq: usize,
    b0: &[u8],
    b1: Option<&[u8]>,
    rq: &Requant32,
    row_corr: &[i32; TILE_ROWS],
    out: &mut [i8],
    at: usize,
    stride: usize,
    live: usize,
) {
    assert!(
        kq.is_multiple_of(4)
            && rows[..MR512].iter().all(|r| r.len() >= kq)
            && b0.len() >= kq * NR
            && b1.is_none_or(|b| b.len() >= kq * NR)
            && (1..=NR * (1 + usize::from(b1.is_some()))).contains(&rq.cols)
            && (1..=MR512).contains(&live)
            && stride >= rq.cols
            && at + (live - 1) * stride + rq.cols <= out.len()
            && Width::W512.runs(),
        "int8 tile: operands shorter than the tile, or AVX-512 VNNI absent"
    );
    #[cfg(target_arch = "x86_64")]
    match b1 {
        // SAFETY: the CPU runs AVX-512 VNNI, and the operands and the output rows hold what the
        // tile reads and writes (both asserted above).
        Some(b1) => unsafe { tile_512_int8_body::<true>(rows, kq, b0, b1, rq, row_corr, out, at, stride, live) },
        // SAFETY: as above (the second panel is not read).
        None => unsafe { tile_512_int8_body::<false>(rows, kq, b0, b0, rq, row_corr, out, at, stride, live) },
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (rows, kq, b0, b1, rq, row_corr, out, at, stride, live);
        unreachable!("VNNI widths run only on x86_64");
    }
}

/// # Safety
/// The CPU runs AVX-512F, BW, VL and VNNI; `tile_512_int8`'s assertions hold (`b1` is read only
/// when `TWO`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_512_int8_body<const TWO: bool>(
    rows: &TileRows<'_>,
    kq: usize,
    b0: &[u8],
    b1: &[u8],
    rq: &Requant32,
    row_corr: &[i32; TILE_ROWS],
    out: &mut [i8],
    at: usize,
    stride: usize,
    live: usize,
) {
    use std::arch::x86_64::*;
    // SAFETY: forwarded from the caller.
    let (lo, hi) = unsafe { sums_512::<TWO>(rows, kq, b0, b1) };
    // SAFETY: the parameter arrays hold 32 values: two 16-lane loads each.
    let (corr, mult, offset) = unsafe {
        (
            [
                _mm512_loadu_si512(rq.correction.as_ptr().cast()),
                _mm512_loadu_si512(rq.correction.as_ptr().add(NR).cast()),
            ],
            [_mm512_loadu_ps(rq.mult.as_ptr()), _mm512_loadu_ps(rq.mult.as_ptr().add(NR))],
            [_mm512_loadu_ps(rq.offset.as_ptr()), _mm512_loadu_ps(rq.offset.as_ptr().add(NR))],
        )
    };
    // The columns each half writes.
    let masks: [__mmask16; 2] =
        [(((1u32 << rq.cols.min(NR)) - 1) & 0xffff) as u16, ((1u32 << rq.cols.saturating_sub(NR).min(NR)) - 1) as u16];
    const MAGIC: f32 = 12_582_912.0;
    let (lo_v, hi_v, magic) = (_mm512_set1_ps(rq.lo), _mm512_set1_ps(rq.hi), _mm512_set1_ps(MAGIC));
    let bias = _mm512_set1_epi32(rq.zero_point.wrapping_sub(MAGIC.to_bits() as i32));
    for r in 0..live {
        let rc = _mm512_set1_epi32(row_corr[r]);
        for (h, acc) in [lo[r], hi[r]].into_iter().enumerate() {
            if masks[h] == 0 {
                continue;
            }
            // `acc · m + o` (a multiply, then an add), clamped, rounded by the magic number.
            let y = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_sub_epi32(acc, rc), corr[h]));
            let y = _mm512_add_ps(_mm512_mul_ps(y, mult[h]), offset[h]);
            let y = _mm512_min_ps(_mm512_max_ps(y, lo_v), hi_v);
            let q = _mm512_add_epi32(_mm512_castps_si512(_mm512_add_ps(y, magic)), bias);
            // SAFETY: `at + r · stride + cols ≤ out.len()` (asserted by the caller): half `h`
            // writes the columns of `masks[h]`, all below `cols`, from `16h` of the row (a
            // pointer inside the row: only reached when the half has columns).
            unsafe {
                _mm_mask_storeu_epi8(
                    out.as_mut_ptr().add(at + r * stride + h * NR).cast(),
                    masks[h],
                    _mm512_cvtepi32_epi8(q),
                )
            };
        }
    }
}

/// The AVX-512 tile's sums: [`MR512`] rows × one panel of 16 columns (`lo`), or two (`hi` the
/// second's, when `TWO`; zero otherwise). Each step broadcasts four bytes of every row (signed)
/// against four bytes of each column (`w + 128`, unsigned).
///
/// # Safety
/// The CPU runs AVX-512F, AVX-512BW and AVX-512 VNNI; each of the first [`MR512`] `rows` holds
/// `kq` bytes, `b0` `kq · NR` and, when `TWO`, `b1` as many; `kq` a multiple of four.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn sums_512<const TWO: bool>(
    rows: &TileRows<'_>,
    kq: usize,
    b0: &[u8],
    b1: &[u8],
) -> ([std::arch::x86_64::__m512i; MR512], [std::arch::x86_64::__m512i; MR512]) {
    use std::arch::x86_64::*;
    let ap: [*const i8; MR512] = std::array::from_fn(|r| rows[r].as_ptr());
    let (bp0, bp1) = (b0.as_ptr(), b1.as_ptr());
    let z = _mm512_setzero_si512();
    let mut lo = [z; MR512];
    let mut hi = [z; MR512];
    for s in 0..kq / 4 {
        // SAFETY: step `s` reads bytes `64s..64s + 64` of `b0` (and of `b1` when `TWO`; each holds
        // `kq · 16`) and bytes `4s..4s + 4` of each row (each holds `kq`).
        unsafe {
            let v0 = _mm512_loadu_si512(bp0.add(s * 4 * NR).cast());
            let v1 = if TWO { _mm512_loadu_si512(bp1.add(s * 4 * NR).cast()) } else { z };
            for r in 0..MR512 {
                let av = _mm512_set1_epi32(std::ptr::read_unaligned(ap[r].add(s * 4).cast::<i32>()));
                lo[r] = _mm512_dpbusd_epi32(lo[r], v0, av);
                if TWO {
                    hi[r] = _mm512_dpbusd_epi32(hi[r], v1, av);
                }
            }
        }
    }
    (lo, hi)
}

/// The AVX-512 tile into `tile`: [`sums_512`], each row's 16 (or 32) sums stored.
///
/// # Safety
/// As [`sums_512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_512<const TWO: bool>(rows: &TileRows<'_>, kq: usize, b0: &[u8], b1: &[u8], tile: &mut Tile) {
    use std::arch::x86_64::*;
    // SAFETY: forwarded from the caller.
    let (lo, hi) = unsafe { sums_512::<TWO>(rows, kq, b0, b1) };
    for (row, (lo, hi)) in tile.iter_mut().zip(lo.into_iter().zip(hi)) {
        // SAFETY: each row holds 32 `i32`: one or two 512-bit stores.
        unsafe {
            _mm512_storeu_si512(row.as_mut_ptr().cast(), lo);
            if TWO {
                _mm512_storeu_si512(row.as_mut_ptr().add(NR).cast(), hi);
            }
        }
    }
}

/// The AVX-VNNI tile: [`MR256`] rows × 16 columns, two 256-bit accumulators per row.
///
/// # Safety
/// The CPU runs AVX2 and AVX-VNNI; each of the first [`MR256`] `rows` holds `kq` bytes and `b`
/// `kq · NR`, `kq` a multiple of four.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn tile_256(rows: &TileRows<'_>, kq: usize, b: &[u8], tile: &mut Tile) {
    use std::arch::x86_64::*;
    let ap: [*const i8; MR256] = std::array::from_fn(|r| rows[r].as_ptr());
    let bp = b.as_ptr();
    let z = _mm256_setzero_si256();
    let mut lo = [z; MR256];
    let mut hi = [z; MR256];
    for s in 0..kq / 4 {
        // SAFETY: as in `sums_512`, with 32-byte halves of the step's 64 bytes and rows
        // `r < MR256`.
        unsafe {
            let b0 = _mm256_loadu_si256(bp.add(s * 4 * NR).cast());
            let b1 = _mm256_loadu_si256(bp.add(s * 4 * NR + 32).cast());
            for r in 0..MR256 {
                let av = _mm256_set1_epi32(std::ptr::read_unaligned(ap[r].add(s * 4).cast::<i32>()));
                lo[r] = _mm256_dpbusd_avx_epi32(lo[r], b0, av);
                hi[r] = _mm256_dpbusd_avx_epi32(hi[r], b1, av);
            }
        }
    }
    for (row, (lo, hi)) in tile.iter_mut().zip(lo.into_iter().zip(hi)) {
        // SAFETY: each row holds 32 `i32`: two 256-bit stores in its first 16.
        unsafe {
            _mm256_storeu_si256(row.as_mut_ptr().cast(), lo);
            _mm256_storeu_si256(row.as_mut_ptr().add(8).cast(), hi);
        }
    }
}

/// The VNNI multiply-add peak: `steps` rounds of twelve independent `vpdpbusd` chains. Returns a
/// checksum; the caller checked that the CPU runs `width`.
pub(super) fn peak(width: Width, steps: usize) -> i32 {
    #[cfg(target_arch = "x86_64")]
    if width.runs() {
        return match width {
            // SAFETY: the CPU runs the width (checked); the functions only touch registers.
            Width::W512 => unsafe { peak_512(steps) },
            // SAFETY: as above.
            Width::W256 => unsafe { peak_256(steps) },
        };
    }
    let _ = (width, steps);
    0
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn peak_512(steps: usize) -> i32 {
    use std::arch::x86_64::*;
    let b = std::hint::black_box(_mm512_set1_epi8(-2));
    let a = std::hint::black_box(_mm512_set1_epi8(3));
    let mut c = [_mm512_setzero_si512(); 12];
    for (i, c) in c.iter_mut().enumerate() {
        *c = _mm512_set1_epi32(i as i32 + 1);
    }
    for _ in 0..steps {
        for c in c.iter_mut() {
            *c = _mm512_dpbusd_epi32(*c, a, b);
        }
    }
    let mut sum = _mm512_setzero_si512();
    for c in c {
        sum = _mm512_add_epi32(sum, c);
    }
    _mm512_reduce_add_epi32(sum)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn peak_256(steps: usize) -> i32 {
    use std::arch::x86_64::*;
    let b = std::hint::black_box(_mm256_set1_epi8(-2));
    let a = std::hint::black_box(_mm256_set1_epi8(3));
    let mut c = [_mm256_setzero_si256(); 12];
    for (i, c) in c.iter_mut().enumerate() {
        *c = _mm256_set1_epi32(i as i32 + 1);
    }
    for _ in 0..steps {
        for c in c.iter_mut() {
            *c = _mm256_dpbusd_avx_epi32(*c, a, b);
        }
    }
    let mut sum = _mm256_setzero_si256();
    for c in c {
        sum = _mm256_add_epi32(sum, c);
    }
    _mm256_extract_epi32::<0>(sum)
}
