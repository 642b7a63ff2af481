//! The int8 depthwise convolution (NHWC, one channel per group): each output pixel sums its taps
//! across the channel vector in `i32`, so the loops run along channels and vectorise.
//!
//! AVX2 levels multiply two taps at once, as XNNPACK's depthwise kernels do: the two taps' input
//! values (minus the zero point, `i16`) are interleaved channel by channel and `vpmaddwd` multiplies
//! them with the taps' interleaved weights, summing both products into one `i32` lane. Every pixel
//! runs all `kh · kw` taps: a tap outside the image reads a vector of zero points (so it adds
//! nothing), and an odd tap count pairs its last tap with a zero weight. Channel blocks of 16 run
//! this way; the remaining channels (and the portable level) sum one tap at a time.
//!
//! The AVX-512 level (with AVX-512BW/VL) takes blocks of 32 channels, the last one masked, and
//! spends fewer shuffles per pair of taps: the two taps' bytes are interleaved in 128-bit lanes
//! (`vpunpck{l,h}bw`) and sign-extended as they are, without the zero point; the zero point's
//! share, `zx · Σ_t w[t][c]`, is one correction per channel (a tap outside the image reads the
//! zero point, so it still adds nothing once corrected). An int8 output is requantized in
//! registers and stored as 32 bytes; the rows of interior pixels find their taps by arithmetic
//! alone. Integer sums are exact, so all levels give the same results.

#![allow(unsafe_code)]

use std::ops::Range;

use super::{Epilogue, QOut};
use crate::nhwc::Conv2dGeometry;
use crate::simd::Level;
use crate::KResult;

/// Channels of one block of the paired AVX2 kernel.
const CB: usize = 16;
/// Channels of one block of the paired AVX-512 kernel.
const CB512: usize = 32;
/// Kernels of up to this many taps run paired.
const PAIRED_MAX_TAPS: usize = 25;

/// Depthwise weights as `[taps][channels]` of `i16`, and for the paired kernels, per block of
/// channels (16 for AVX2, 32 for AVX-512, the last one zero-padded) and pair of taps, two vectors
/// of interleaved `(w[t][c], w[t + 1][c])` pairs in the order the kernel's unpacking leaves the
/// channels in: for AVX2 (`vpunpck{l,h}wd`), per 128-bit lane `L`, channels `8L..8L+4` in the
/// first vector and `8L+4..8L+8` in the second; for AVX-512, as [`lane_channel`] says.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PackedDw {
    channels: usize,
    taps: usize,
    w: Vec<i16>,
    pairs: Vec<i16>,
    /// Channels per block of `pairs`: [`CB`] or [`CB512`].
    block: usize,
    /// For blocks of [`CB512`]: the per-channel constants in the AVX-512 kernel's lane order.
    lanes: Option<Lanes512>,
}

/// The AVX-512 kernel's per-channel constants, per block of [`CB512`] channels in its lane order
/// ([`lane_channel`]), zero past the last channel: the input zero point's correction
/// `zx · Σ_t w[t][c]`, and the epilogue's multiplier and offset.
#[derive(Debug, Clone, PartialEq)]
struct Lanes512 {
    zero_point: i32,
    corr: Vec<i32>,
    mult: Vec<f32>,
    offset: Vec<f32>,
}

/// The channel (within its block of 32) that lane `lane` of the AVX-512 kernel's sums holds: the
/// first vector (lanes 0-15) has channels 0-7 and 16-23, the second 8-15 and 24-31, the order
/// `vpunpck{l,h}bw` leaves them in.
fn lane_channel(lane: usize) -> usize {
    match lane {
        8..16 => lane + 8,
        16..24 => lane - 8,
        _ => lane,
    }
}

impl PackedDw {
    /// From `[channels, 1, kh, kw]` int8 weights, for the paired kernel `level` runs, an input
    /// zero point `zp` and the epilogue `ep` (one entry per channel).
    pub(super) fn new(level: Level, channels: usize, taps: usize, weight: &[i8], zp: i32, ep: &Epilogue) -> Self {
        let mut w = vec![0i16; taps * channels];
        for c in 0..channels {
            for t in 0..taps {
                w[t * channels + c] = i16::from(weight[c * taps + t]);
            }
        }
        let block = if level == Level::Avx512 && avx512_runs() { CB512 } else { CB };
        // AVX2 blocks are whole (the channels past them sum one tap at a time); the AVX-512
        // kernel masks its last block.
        let blocks = if block == CB512 { channels.div_ceil(block) } else { channels / block };
        let tap_pairs = taps.div_ceil(2);
        let mut pairs = vec![0i16; blocks * tap_pairs * 2 * block];
        for b in 0..blocks {
            for p in 0..tap_pairs {
                let base = (b * tap_pairs + p) * 2 * block;
                for lane in 0..block {
                    // Lane `lane` of the two vectors (the first `block / 2` lanes, then the second).
                    let c = if block == CB512 {
                        b * block + lane_channel(lane)
                    } else {
                        let (half, i) = (lane / (block / 2), lane % (block / 2));
                        b * block + 8 * (i / 4) + 4 * half + i % 4
                    };
                    for h in 0..2 {
                        let t = 2 * p + h;
                        if t < taps && c < channels {
                            pairs[base + 2 * lane + h] = i16::from(weight[c * taps + t]);
                        }
                    }
                }
            }
        }
        let lanes = (block == CB512).then(|| {
            let len = blocks * CB512;
            let mut l = Lanes512 { zero_point: zp, corr: vec![0; len], mult: vec![0.0; len], offset: vec![0.0; len] };
            for i in 0..len {
                let c = (i / CB512) * CB512 + lane_channel(i % CB512);
                if c < channels && c < ep.channels() {
                    let sum: i32 = (0..taps).map(|t| i32::from(weight[c * taps + t])).sum();
                    l.corr[i] = zp.wrapping_mul(sum);
                    l.mult[i] = ep.mult[c];
                    l.offset[i] = ep.offset[c];
                }
            }
            l
        });
        PackedDw { channels, taps, w, pairs, block, lanes }
    }

    pub(super) fn bytes(&self) -> usize {
        let lanes = self.lanes.as_ref().map_or(0, |l| l.corr.len() * 12);
        (self.w.len() + self.pairs.len()) * 2 + lanes
    }
}

/// One output row (`ow` pixels of `channels`) of image `b`, output row `y`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn row(dw: &PackedDw, g: &Conv2dGeometry, ow: usize, x: &[i8], zp: i16, b: usize, y: usize, acc: &mut [i32]) -> usize {
    /// Channels summed in registers at once (two AVX2 vectors of `i32`).
    const CB: usize = 16;
    /// Taps listed on the stack (a 7 × 7 kernel and below).
    const MAX_TAPS: usize = 49;
    let c = dw.channels;
    let [ih, iw] = g.input;
    let [kh, kw] = g.kernel;
    // The taps inside the image form a contiguous range in each direction.
    let inside = |o: usize, k: usize, stride: usize, dil: usize, pad: usize, len: usize| {
        (o * stride + k * dil).checked_sub(pad).filter(|&v| v < len)
    };
    let mut pixels = 0;
    for xo in 0..ow {
        let a = &mut acc[xo * c..(xo + 1) * c];
        // Input offsets and weight offsets of the taps that fall inside the image, listed once
        // per pixel (`list` holds them for kernels of up to MAX_TAPS taps, `all` beyond).
        let mut list = [(0usize, 0usize); MAX_TAPS];
        let mut all = Vec::new();
        let mut count = 0;
        for ky in 0..kh {
            let Some(yy) = inside(y, ky, g.stride[0], g.dilation[0], g.padding[0], ih) else { continue };
            for kx in 0..kw {
                let Some(xx) = inside(xo, kx, g.stride[1], g.dilation[1], g.padding[1], iw) else { continue };
                let tap = (((b * ih + yy) * iw + xx) * c, (ky * kw + kx) * c);
                if count < MAX_TAPS {
                    list[count] = tap;
                } else {
                    if all.is_empty() {
                        all.extend_from_slice(&list);
                    }
                    all.push(tap);
                }
                count += 1;
            }
        }
        let taps: &[(usize, usize)] = if count <= MAX_TAPS { &list[..count] } else { &all };
        let mut cb = 0;
        while cb + CB <= c {
            let mut v = [0i32; CB];
            for &(xi, wi) in taps {
                let (src, w) = (&x[xi + cb..xi + cb + CB], &dw.w[wi + cb..wi + cb + CB]);
                // |x - zx| ≤ 255 and |w| ≤ 128: the product fits `i16` (a 16-bit multiply).
                for j in 0..CB {
                    v[j] += i32::from((i16::from(src[j]) - zp).wrapping_mul(w[j]));
                }
            }
            a[cb..cb + CB].copy_from_slice(&v);
            cb += CB;
        }
        if cb < c {
            let rest = &mut a[cb..];
            rest.fill(0);
            for &(xi, wi) in taps {
                for ((a, &v), &w) in rest.iter_mut().zip(&x[xi + cb..xi + c]).zip(&dw.w[wi + cb..wi + c]) {
                    *a += i32::from((i16::from(v) - zp).wrapping_mul(w));
                }
            }
        }
        pixels += 1;
    }
    pixels
}

/// Output row `r` (image `r / OH`, row `r % OH`) into `out`, through the epilogue.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn row_out<O: QOut>(
    dw: &PackedDw,
    g: &Conv2dGeometry,
    ow: usize,
    x: &[i8],
    zp: i16,
    (b, y): (usize, usize),
    ep: &Epilogue,
    acc: &mut [i32],
    out: &mut [O],
) -> KResult {
    row(dw, g, ow, x, zp, b, y, acc);
    for (o, a) in out.chunks_mut(ep.channels()).zip(acc.chunks(ep.channels())) {
        O::apply(ep, a, 0, o)?;
    }
    Ok(())
}

/// The paired AVX2 kernel for one output row: sums of the channel blocks into `acc`, the other
/// channels through [`row`]'s loop; then the epilogue. Pixels whose taps all lie inside the
/// image read them at fixed offsets from the first (see [`interior`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn row_paired_avx2<O: QOut>(
    dw: &PackedDw,
    g: &Conv2dGeometry,
    ow: usize,
    x: &[i8],
    zeros: &[i8],
    zp: i16,
    (b, y): (usize, usize),
    ep: &Epilogue,
    acc: &mut [i32],
    out: &mut [O],
) -> KResult {
    /// Taps listed on the stack (a 5 × 5 kernel and its padding tap; the caller falls back to
    /// [`row`] beyond).
    const MAX_TAPS: usize = PAIRED_MAX_TAPS + 1;
    let c = dw.channels;
    let (taps, tap_pairs, blocks) = (dw.taps, dw.taps.div_ceil(2), c / CB);
    let [ih, iw] = g.input;
    let [kh, kw] = g.kernel;
    assert!(
        taps < MAX_TAPS
            && kh * kw == taps
            && zeros.len() >= c
            && acc.len() >= ow * c
            && dw.pairs.len() >= blocks * tap_pairs * 2 * CB
            && dw.w.len() >= taps * c
            && (b + 1) * ih * iw * c <= x.len(),
        "int8 depthwise: operands too short"
    );
    let (rows, inside, offsets) = interior::<MAX_TAPS>(g, c, ow, b, y);
    // Where each tap of the other pixels reads (`None`: the zero-point vector).
    let mut at: [Option<usize>; MAX_TAPS] = [None; MAX_TAPS];
    for xo in 0..ow {
        let a = &mut acc[xo * c..(xo + 1) * c];
        if inside.contains(&xo) {
            let first = rows[0].unwrap_or(0) + (xo * g.stride[1] - g.padding[1]) * c;
            // SAFETY: the pixel's taps lie inside the image (`interior`): at most
            // `(b + 1) · ih · iw · c ≤ x.len()` (asserted); the sizes were asserted.
            unsafe { pixel_avx2(dw, x, zeros, zp, |t| Some(first + offsets[t]), a) };
            continue;
        }
        for (ky, row) in rows.iter().enumerate().take(kh) {
            let Some(row) = *row else { continue };
            for kx in 0..kw {
                at[ky * kw + kx] = (xo * g.stride[1] + kx * g.dilation[1])
                    .checked_sub(g.padding[1])
                    .filter(|&v| v < iw)
                    .map(|xx| row + xx * c);
            }
        }
        // SAFETY: as above (every `at` is a pixel of image `b`).
        unsafe { pixel_avx2(dw, x, zeros, zp, |t| at[t], a) };
    }
    for (o, a) in out.chunks_mut(ep.channels()).zip(acc.chunks(ep.channels())) {
        O::apply(ep, a, 0, o)?;
    }
    Ok(())
}

/// For output row `y` of image `b`: the offset in the input of the row each kernel row reads
/// (none outside the image); the output pixels whose taps all lie inside the image (every kernel
/// row inside, `xo · sw ≥ pw` and `xo · sw + (kw - 1) · dw - pw < iw`); and the taps' offsets
/// from the first tap's pixel (zero for the padding tap of an odd count, whose weights are zero).
fn interior<const MAX: usize>(
    g: &Conv2dGeometry,
    c: usize,
    ow: usize,
    b: usize,
    y: usize,
) -> ([Option<usize>; MAX], Range<usize>, [usize; MAX]) {
    let [ih, iw] = g.input;
    let [kh, kw] = g.kernel;
    let ([sh, sw], [dh, dw], [ph, pw]) = (g.stride, g.dilation, g.padding);
    let mut rows = [None; MAX];
    for (ky, r) in rows.iter_mut().enumerate().take(kh) {
        *r = (y * sh + ky * dh).checked_sub(ph).filter(|&v| v < ih).map(|yy| (b * ih + yy) * iw * c);
    }
    let inside = if rows[..kh].iter().all(Option::is_some) {
        pw.div_ceil(sw)..(iw + pw).checked_sub((kw - 1) * dw + 1).map_or(0, |v| v / sw + 1).min(ow)
    } else {
        0..0
    };
    let mut offsets = [0usize; MAX];
    for (t, o) in offsets.iter_mut().enumerate().take(kh * kw) {
        *o = ((t / kw) * dh * iw + (t % kw) * dw) * c;
    }
    (rows, inside, offsets)
}

/// One output pixel of the paired AVX2 kernel into `a` (`c` sums), tap `t` reading the input from
/// `at(t)` (`None`: the zero-point vector).
///
/// # Safety
/// The CPU runs AVX2; `at(t) + c ≤ x.len()` for every `t < 2 · ⌈taps / 2⌉`; `zeros` holds `c`
/// values; `dw` as [`row_paired_avx2`] asserts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn pixel_avx2(
    dw: &PackedDw,
    x: &[i8],
    zeros: &[i8],
    zp: i16,
    at: impl Fn(usize) -> Option<usize>,
    a: &mut [i32],
) {
    use std::arch::x86_64::*;
    let c = dw.channels;
    let (taps, tap_pairs, blocks) = (dw.taps, dw.taps.div_ceil(2), c / CB);
    let src = |t: usize| at(t).map_or(zeros.as_ptr(), |o| x.as_ptr().wrapping_add(o));
    let zpv = _mm256_set1_epi16(zp);
    for blk in 0..blocks {
        let cb = blk * CB;
        let wp = dw.pairs.as_ptr().wrapping_add(blk * tap_pairs * 2 * CB);
        let (mut lo, mut hi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for p in 0..tap_pairs {
            // SAFETY: every tap has `c` readable bytes and `cb + CB ≤ c`: the two 16-byte loads
            // stay inside; the block's pairs hold `tap_pairs · 2 · CB` values, pair `p` reads 32
            // of them from `p · 32`.
            unsafe {
                let xa = _mm256_cvtepi8_epi16(_mm_loadu_si128(src(2 * p).add(cb).cast()));
                let xb = _mm256_cvtepi8_epi16(_mm_loadu_si128(src(2 * p + 1).add(cb).cast()));
                let (xa, xb) = (_mm256_sub_epi16(xa, zpv), _mm256_sub_epi16(xb, zpv));
                let w0 = _mm256_loadu_si256(wp.add(p * 2 * CB).cast());
                let w1 = _mm256_loadu_si256(wp.add(p * 2 * CB + CB).cast());
                lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(xa, xb), w0));
                hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(xa, xb), w1));
            }
        }
        // Channels 0-3 | 8-11 and 4-7 | 12-15 back into order.
        let first = _mm256_permute2x128_si256::<0x20>(lo, hi);
        let second = _mm256_permute2x128_si256::<0x31>(lo, hi);
        let dst = &mut a[cb..cb + CB];
        // SAFETY: `dst` holds CB = 16 `i32`: two 8-lane stores.
        unsafe {
            _mm256_storeu_si256(dst.as_mut_ptr().cast(), first);
            _mm256_storeu_si256(dst.as_mut_ptr().add(8).cast(), second);
        }
    }
    if blocks * CB < c {
        let cb = blocks * CB;
        let rest = &mut a[cb..c];
        rest.fill(0);
        for t in 0..taps {
            let Some(xi) = at(t) else { continue };
            for ((a, &v), &w) in rest.iter_mut().zip(&x[xi + cb..xi + c]).zip(&dw.w[t * c + cb..(t + 1) * c]) {
                *a += i32::from((i16::from(v) - zp).wrapping_mul(w));
            }
        }
    }
}

/// `ep` (one entry per channel) repeated over enough pixels that a row's epilogue runs on long
/// runs of whole vectors: the compiler's vector loop takes 64 values at a time and leaves the
/// rest to scalar code, which is most of a 32-, 96- or 144-channel pixel.
pub(super) fn pixels_epilogue(ep: &Epilogue) -> Epilogue {
    let c = ep.channels().max(1);
    let (mut a, mut b) = (c, 64);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    let pixels = 64 / a;
    Epilogue { mult: ep.mult.repeat(pixels), offset: ep.offset.repeat(pixels), kind: ep.kind }
}

/// Whether this CPU runs the AVX-512 paired kernel (AVX-512F, BW and VL).
fn avx512_runs() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The AVX-512 kernel's constants for one call: the int8 requantization's bounds, magic number
/// and bias, and the permutations that put the f32 path's sums in channel order.
#[cfg(target_arch = "x86_64")]
struct Consts512 {
    lo: std::arch::x86_64::__m512,
    hi: std::arch::x86_64::__m512,
    magic: std::arch::x86_64::__m512,
    bias: std::arch::x86_64::__m512i,
    first_idx: std::arch::x86_64::__m512i,
    second_idx: std::arch::x86_64::__m512i,
}

/// The XNNPACK "fp32 magic" number: adding it to a float of magnitude below 2²² rounds it to an
/// integer (half to even) held in the low mantissa bits.
const MAGIC: f32 = 12_582_912.0;

/// The paired AVX-512 kernel for one output row: blocks of [`CB512`] channels (the last one
/// masked), requantized in registers into an int8 output, or summed into `acc` and then through
/// the epilogue.
///
/// # Safety
/// The CPU runs AVX-512F, AVX-512BW and AVX-512VL.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[allow(clippy::too_many_arguments)]
unsafe fn row_paired_avx512<O: QOut>(
    dw: &PackedDw,
    g: &Conv2dGeometry,
    ow: usize,
    x: &[i8],
    zeros: &[i8],
    (b, y): (usize, usize),
    ep: &Epilogue,
    acc: &mut [i32],
    out: &mut [O],
) -> KResult {
    use std::arch::x86_64::*;
    const MAX_TAPS: usize = PAIRED_MAX_TAPS + 1;
    let c = dw.channels;
    let (taps, tap_pairs, blocks) = (dw.taps, dw.taps.div_ceil(2), c.div_ceil(CB512));
    let lanes = dw
        .lanes
        .as_ref()
        .ok_or_else(|| crate::KernelError::Argument("int8 depthwise: not packed for AVX-512".into()))?;
    let [ih, iw] = g.input;
    let [kh, kw] = g.kernel;
    let [sw, dwx, pw] = [g.stride[1], g.dilation[1], g.padding[1]];
    assert!(
        dw.block == CB512
            && taps < MAX_TAPS
            && kh * kw == taps
            && zeros.len() >= c
            && acc.len() >= ow * c
            && out.len() >= ow * c
            && dw.pairs.len() >= blocks * tap_pairs * 2 * CB512
            && lanes.corr.len() >= blocks * CB512
            && lanes.mult.len() >= blocks * CB512
            && lanes.offset.len() >= blocks * CB512
            && (b + 1) * ih * iw * c <= x.len(),
        "int8 depthwise: operands too short"
    );
    let (rows, inside, offsets) = interior::<MAX_TAPS>(g, c, ow, b, y);
    // Where each tap of the other pixels reads: an input pixel, or the zero-point vector outside
    // the image (and for the padding tap of an odd count). Every pointer has `c` readable bytes.
    let mut src = [zeros.as_ptr(); MAX_TAPS];
    let k = match ep.kind {
        super::EpilogueKind::Int8 { zero_point, min, max } => Consts512 {
            lo: _mm512_set1_ps((min - zero_point) as f32),
            hi: _mm512_set1_ps((max - zero_point) as f32),
            magic: _mm512_set1_ps(MAGIC),
            bias: _mm512_set1_epi32(zero_point.wrapping_sub(MAGIC.to_bits() as i32)),
            first_idx: _mm512_setzero_si512(),
            second_idx: _mm512_setzero_si512(),
        },
        super::EpilogueKind::Float { .. } => Consts512 {
            lo: _mm512_setzero_ps(),
            hi: _mm512_setzero_ps(),
            magic: _mm512_setzero_ps(),
            bias: _mm512_setzero_si512(),
            // Channels 0-15 and 16-31 of the two sums, in order.
            first_idx: _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23),
            second_idx: _mm512_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31),
        },
    };
    let int8 = matches!(ep.kind, super::EpilogueKind::Int8 { .. });
    let out8 = if int8 { O::as_int8(out) } else { None };
    let fused = out8.is_some();
    let dst = if let Some(o) = out8 { Dst512::Int8(o.as_mut_ptr()) } else { Dst512::Acc(acc.as_mut_ptr()) };
    for xo in 0..ow {
        if inside.contains(&xo) {
            let first = rows[0].unwrap_or(0) + (xo * sw - pw) * c;
            // SAFETY: the pixel's taps lie inside the image (the range above): at most
            // `(b + 1) · ih · iw · c ≤ x.len()` (asserted), and `offsets` reach no further.
            let base = unsafe { x.as_ptr().add(first) };
            // SAFETY: every tap's pointer has `c` readable bytes; the sizes were asserted.
            unsafe { pixel_512(dw, lanes, |t| base.add(offsets[t]), &k, dst, xo * c) };
            continue;
        }
        for (ky, row) in rows.iter().enumerate().take(kh) {
            let Some(row) = *row else { continue };
            for kx in 0..kw {
                src[ky * kw + kx] = match (xo * sw + kx * dwx).checked_sub(pw).filter(|&v| v < iw) {
                    // SAFETY: `row + (xx + 1) · c ≤ (b + 1) · ih · iw · c ≤ x.len()` (asserted).
                    Some(xx) => unsafe { x.as_ptr().add(row + xx * c) },
                    None => zeros.as_ptr(),
                };
            }
        }
        // SAFETY: as above.
        unsafe { pixel_512(dw, lanes, |t| src[t], &k, dst, xo * c) };
    }
    if fused {
        return Ok(());
    }
    for (o, a) in out.chunks_mut(ep.channels()).zip(acc.chunks(ep.channels())) {
        O::apply(ep, a, 0, o)?;
    }
    Ok(())
}

/// Where [`pixel_512`] writes: int8 outputs (requantized), or `i32` sums.
#[derive(Clone, Copy)]
enum Dst512 {
    Int8(*mut i8),
    Acc(*mut i32),
}

/// One output pixel of the AVX-512 kernel, its taps read from `tap(t)`, written from `at`.
///
/// # Safety
/// The CPU runs AVX-512F, AVX-512BW and AVX-512VL; `tap(t)` has `dw.channels` readable bytes for
/// every `t < 2 · ⌈taps / 2⌉`; `dw`, `lanes` as [`row_paired_avx512`] asserts; `dst` has
/// `at + dw.channels` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[inline]
unsafe fn pixel_512(
    dw: &PackedDw,
    lanes: &Lanes512,
    tap: impl Fn(usize) -> *const i8,
    k: &Consts512,
    dst: Dst512,
    at: usize,
) {
    use std::arch::x86_64::*;
    let c = dw.channels;
    let tap_pairs = dw.taps.div_ceil(2);
    for cb in (0..c).step_by(CB512) {
        let live = (c - cb).min(CB512);
        let mask: __mmask32 = if live == CB512 { u32::MAX } else { (1u32 << live) - 1 };
        // SAFETY: forwarded from the caller; the masked loads read `live` bytes from `cb`;
        // `pairs` holds `tap_pairs · 64` values per block, the lane arrays 32.
        unsafe {
            let wp = dw.pairs.as_ptr().add(cb * tap_pairs * 2);
            let (mut s0, mut s1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
            for p in 0..tap_pairs {
                let xa = _mm256_maskz_loadu_epi8(mask, tap(2 * p).add(cb).cast());
                let xb = _mm256_maskz_loadu_epi8(mask, tap(2 * p + 1).add(cb).cast());
                let u0 = _mm512_cvtepi8_epi16(_mm256_unpacklo_epi8(xa, xb));
                let u1 = _mm512_cvtepi8_epi16(_mm256_unpackhi_epi8(xa, xb));
                s0 = _mm512_add_epi32(s0, _mm512_madd_epi16(u0, _mm512_loadu_si512(wp.add(p * 2 * CB512).cast())));
                s1 = _mm512_add_epi32(
                    s1,
                    _mm512_madd_epi16(u1, _mm512_loadu_si512(wp.add(p * 2 * CB512 + CB512).cast())),
                );
            }
            let s0 = _mm512_sub_epi32(s0, _mm512_loadu_si512(lanes.corr.as_ptr().add(cb).cast()));
            let s1 = _mm512_sub_epi32(s1, _mm512_loadu_si512(lanes.corr.as_ptr().add(cb + 16).cast()));
            match dst {
                Dst512::Int8(out) => {
                    let mut q = [_mm512_setzero_si512(); 2];
                    for (h, s) in [s0, s1].into_iter().enumerate() {
                        // `acc · m + o` (a multiply, then an add), clamped, rounded by the magic
                        // number: the scalar epilogue's arithmetic.
                        let m = _mm512_loadu_ps(lanes.mult.as_ptr().add(cb + 16 * h));
                        let o = _mm512_loadu_ps(lanes.offset.as_ptr().add(cb + 16 * h));
                        let v = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s), m), o);
                        let v = _mm512_min_ps(_mm512_max_ps(v, k.lo), k.hi);
                        q[h] = _mm512_add_epi32(_mm512_castps_si512(_mm512_add_ps(v, k.magic)), k.bias);
                    }
                    // Bytes of channels 0-7, 16-23 and 8-15, 24-31, then in order.
                    let (b0, b1) = (_mm512_cvtepi32_epi8(q[0]), _mm512_cvtepi32_epi8(q[1]));
                    let v = _mm256_inserti128_si256::<1>(
                        _mm256_castsi128_si256(_mm_unpacklo_epi64(b0, b1)),
                        _mm_unpackhi_epi64(b0, b1),
                    );
                    let to = out.add(at + cb);
                    if live == CB512 {
                        _mm256_storeu_si256(to.cast(), v);
                    } else {
                        _mm256_mask_storeu_epi8(to, mask, v);
                    }
                }
                Dst512::Acc(acc) => {
                    let first = _mm512_permutex2var_epi32(s0, k.first_idx, s1);
                    let second = _mm512_permutex2var_epi32(s0, k.second_idx, s1);
                    let to = acc.add(at + cb);
                    let m0 = if live >= 16 { 0xffff } else { (1u16 << live) - 1 };
                    _mm512_mask_storeu_epi32(to, m0, first);
                    if live > 16 {
                        let m1 = if live == CB512 { 0xffff } else { (1u16 << (live - 16)) - 1 };
                        _mm512_mask_storeu_epi32(to.add(16), m1, second);
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn row_avx2<O: QOut>(
    dw: &PackedDw,
    g: &Conv2dGeometry,
    ow: usize,
    x: &[i8],
    zp: i16,
    by: (usize, usize),
    ep: &Epilogue,
    acc: &mut [i32],
    out: &mut [O],
) -> KResult {
    row_out(dw, g, ow, x, zp, by, ep, acc, out)
}

/// Runs the depthwise convolution of `x` (`[N, H, W, C]`) into `out` (`[N, OH, OW, C]`); the
/// caller checked both lengths against the geometry. `ep` covers a whole number of pixels (see
/// [`pixels_epilogue`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn run<O: QOut>(
    level: Level,
    dw: &PackedDw,
    g: &Conv2dGeometry,
    [oh, ow]: [usize; 2],
    x: &[i8],
    zp: i32,
    ep: &Epilogue,
    out: &mut [O],
    threads: usize,
) -> KResult {
    let c = dw.channels;
    let row_len = ow * c;
    if row_len == 0 || out.is_empty() {
        return Ok(());
    }
    if !ep.channels().is_multiple_of(c) {
        return Err(crate::KernelError::Argument("int8 depthwise: epilogue not whole pixels".into()));
    }
    let taps = g.kernel[0] * g.kernel[1];
    let parallel = threads > 1 && out.len().saturating_mul(taps) >= super::PAR_MIN_MACS;
    // The vector a tap outside the image reads: zero points, so it adds nothing.
    let zeros = vec![zp as i8; c];
    let paired = taps <= PAIRED_MAX_TAPS && c >= CB;
    // (The AVX-512 kernel's corrections were computed for the convolution's zero point.)
    let paired512 = taps <= PAIRED_MAX_TAPS
        && dw.block == CB512
        && dw.lanes.as_ref().is_some_and(|l| l.zero_point == zp)
        && avx512_runs();
    crate::par::try_chunks_with(out, row_len, parallel, &|| vec![0i32; row_len], |acc, r, chunk| {
        #[cfg(target_arch = "x86_64")]
        {
            if paired512 {
                // SAFETY: AVX-512F/BW/VL are present (checked just above); the kernel checks its
                // operands.
                return unsafe { row_paired_avx512(dw, g, ow, x, &zeros, (r / oh, r % oh), ep, acc, chunk) };
            }
            if paired
                && dw.block == CB
                && matches!(level, Level::Avx2 | Level::Avx512)
                && std::is_x86_feature_detected!("avx2")
            {
                // SAFETY: AVX2 is present (checked just above); the kernel checks its operands.
                return unsafe { row_paired_avx2(dw, g, ow, x, &zeros, zp as i16, (r / oh, r % oh), ep, acc, chunk) };
            }
            if matches!(level, Level::Avx2 | Level::Avx512) && std::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is present (checked just above); the function is safe Rust
                // compiled with AVX2 enabled.
                return unsafe { row_avx2(dw, g, ow, x, zp as i16, (r / oh, r % oh), ep, acc, chunk) };
            }
        }
        let _ = (level, &zeros, paired, paired512); // the x86 kernels' inputs
        row_out(dw, g, ow, x, zp as i16, (r / oh, r % oh), ep, acc, chunk)
    })
}
