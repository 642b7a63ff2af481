//! The int8 depthwise convolution (NHWC, one channel per group): each output pixel sums its taps
//! across the channel vector in `i32`, so the loops run along channels and vectorise.
//!
//! AVX2 levels multiply two taps at once, as XNNPACK's depthwise kernels do: the two taps' input
//! values (minus the zero point, `i16`) are interleaved channel by channel and `vpmaddwd` multiplies
//! them with the taps' interleaved weights, summing both products into one `i32` lane. Every pixel
//! runs all `kh · kw` taps: a tap outside the image reads a vector of zero points (so it adds
//! nothing), and an odd tap count pairs its last tap with a zero weight. Channel blocks of 16 run
//! this way; the remaining channels (and the portable level) sum one tap at a time. The AVX-512
//! level (with AVX-512BW) runs the same scheme on blocks of 32 channels, the last block masked.
//! Integer sums are exact, so all give the same results.

#![allow(unsafe_code)]

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
/// of interleaved `(w[t][c], w[t + 1][c])` pairs in the order `vpunpck{l,h}wd` leaves the
/// channels in: per 128-bit lane `L`, channels `8L..8L+4` in the first vector and `8L+4..8L+8` in
/// the second.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PackedDw {
    channels: usize,
    taps: usize,
    w: Vec<i16>,
    pairs: Vec<i16>,
    /// Channels per block of `pairs`: [`CB`] or [`CB512`].
    block: usize,
}

impl PackedDw {
    /// From `[channels, 1, kh, kw]` int8 weights, for the paired kernel `level` runs.
    pub(super) fn new(level: Level, channels: usize, taps: usize, weight: &[i8]) -> Self {
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
                    let (half, i) = (lane / (block / 2), lane % (block / 2));
                    let c = b * block + 8 * (i / 4) + 4 * half + i % 4;
                    for h in 0..2 {
                        let t = 2 * p + h;
                        if t < taps && c < channels {
                            pairs[base + 2 * lane + h] = i16::from(weight[c * taps + t]);
                        }
                    }
                }
            }
        }
        PackedDw { channels, taps, w, pairs, block }
    }

    pub(super) fn bytes(&self) -> usize {
        (self.w.len() + self.pairs.len()) * 2
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
/// channels through [`row`]'s loop; then the epilogue.
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
    use std::arch::x86_64::*;
    /// Taps listed on the stack (a 5 × 5 kernel and its padding tap; the caller falls back to
    /// [`row`] beyond).
    const MAX_TAPS: usize = PAIRED_MAX_TAPS + 1;
    let c = dw.channels;
    let (taps, tap_pairs, blocks) = (dw.taps, dw.taps.div_ceil(2), c / CB);
    assert!(
        taps < MAX_TAPS && zeros.len() >= c && acc.len() >= ow * c && dw.pairs.len() >= blocks * tap_pairs * 2 * CB
    );
    let [ih, iw] = g.input;
    let [kh, kw] = g.kernel;
    let inside = |o: usize, k: usize, stride: usize, dil: usize, pad: usize, len: usize| {
        (o * stride + k * dil).checked_sub(pad).filter(|&v| v < len)
    };
    let zpv = _mm256_set1_epi16(zp);
    for xo in 0..ow {
        // Where each tap reads: the input pixel, or the zero-point vector outside the image (and
        // for the padding tap of an odd count). Every pointer has `c` readable bytes.
        let mut src = [zeros.as_ptr(); MAX_TAPS];
        let mut offset = [usize::MAX; MAX_TAPS];
        for ky in 0..kh {
            let Some(yy) = inside(y, ky, g.stride[0], g.dilation[0], g.padding[0], ih) else { continue };
            for kx in 0..kw {
                let Some(xx) = inside(xo, kx, g.stride[1], g.dilation[1], g.padding[1], iw) else { continue };
                let at = ((b * ih + yy) * iw + xx) * c;
                assert!(at + c <= x.len(), "depthwise: input pixel outside the input");
                // SAFETY: `at + c ≤ x.len()` (asserted just above).
                src[ky * kw + kx] = unsafe { x.as_ptr().add(at) };
                offset[ky * kw + kx] = at;
            }
        }
        let a = &mut acc[xo * c..(xo + 1) * c];
        for blk in 0..blocks {
            let cb = blk * CB;
            let wp = &dw.pairs[blk * tap_pairs * 2 * CB..(blk + 1) * tap_pairs * 2 * CB];
            let (mut lo, mut hi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            for p in 0..tap_pairs {
                // SAFETY: every `src` pointer has `c` readable bytes and `cb + CB ≤ c`: the two
                // 16-byte loads stay inside; `wp` holds `tap_pairs · 2 · CB` values (asserted),
                // pair `p` reads 32 of them from `p · 32`.
                unsafe {
                    let xa = _mm256_cvtepi8_epi16(_mm_loadu_si128(src[2 * p].add(cb).cast()));
                    let xb = _mm256_cvtepi8_epi16(_mm_loadu_si128(src[2 * p + 1].add(cb).cast()));
                    let (xa, xb) = (_mm256_sub_epi16(xa, zpv), _mm256_sub_epi16(xb, zpv));
                    let w0 = _mm256_loadu_si256(wp.as_ptr().add(p * 2 * CB).cast());
                    let w1 = _mm256_loadu_si256(wp.as_ptr().add(p * 2 * CB + CB).cast());
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
            let rest = &mut a[cb..];
            rest.fill(0);
            for (t, &xi) in offset[..taps].iter().enumerate() {
                if xi == usize::MAX {
                    continue;
                }
                for ((a, &v), &w) in rest.iter_mut().zip(&x[xi + cb..xi + c]).zip(&dw.w[t * c + cb..(t + 1) * c]) {
                    *a += i32::from((i16::from(v) - zp).wrapping_mul(w));
                }
            }
        }
    }
    for (o, a) in out.chunks_mut(ep.channels()).zip(acc.chunks(ep.channels())) {
        O::apply(ep, a, 0, o)?;
    }
    Ok(())
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

/// The paired AVX-512 kernel for one output row: blocks of [`CB512`] channels (the last one
/// masked), then the epilogue.
///
/// # Safety
/// The CPU runs AVX-512F, AVX-512BW and AVX-512VL; `dw` was packed in blocks of [`CB512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[allow(clippy::too_many_arguments)]
unsafe fn row_paired_avx512<O: QOut>(
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
    use std::arch::x86_64::*;
    const MAX_TAPS: usize = PAIRED_MAX_TAPS + 1;
    let c = dw.channels;
    let (taps, tap_pairs, blocks) = (dw.taps, dw.taps.div_ceil(2), c.div_ceil(CB512));
    assert!(
        dw.block == CB512
            && taps < MAX_TAPS
            && zeros.len() >= c
            && acc.len() >= ow * c
            && dw.pairs.len() >= blocks * tap_pairs * 2 * CB512
    );
    let [ih, iw] = g.input;
    let [kh, kw] = g.kernel;
    let inside = |o: usize, k: usize, stride: usize, dil: usize, pad: usize, len: usize| {
        (o * stride + k * dil).checked_sub(pad).filter(|&v| v < len)
    };
    let zpv = _mm512_set1_epi16(zp);
    // Channels 0-3 | 8-11 | 16-19 | 24-27 (first vector) and 4-7 | 12-15 | ... (second) back
    // into order.
    let first_idx = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    let second_idx = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    for xo in 0..ow {
        let mut src = [zeros.as_ptr(); MAX_TAPS];
        for ky in 0..kh {
            let Some(yy) = inside(y, ky, g.stride[0], g.dilation[0], g.padding[0], ih) else { continue };
            for kx in 0..kw {
                let Some(xx) = inside(xo, kx, g.stride[1], g.dilation[1], g.padding[1], iw) else { continue };
                let at = ((b * ih + yy) * iw + xx) * c;
                assert!(at + c <= x.len(), "depthwise: input pixel outside the input");
                // SAFETY: `at + c ≤ x.len()` (asserted just above).
                src[ky * kw + kx] = unsafe { x.as_ptr().add(at) };
            }
        }
        let a = &mut acc[xo * c..(xo + 1) * c];
        for blk in 0..blocks {
            let cb = blk * CB512;
            let live = (c - cb).min(CB512);
            let mask: __mmask32 = if live == CB512 { u32::MAX } else { (1u32 << live) - 1 };
            let wp = &dw.pairs[blk * tap_pairs * 2 * CB512..(blk + 1) * tap_pairs * 2 * CB512];
            let (mut lo, mut hi) = (_mm512_setzero_si512(), _mm512_setzero_si512());
            for p in 0..tap_pairs {
                // SAFETY: every `src` pointer has `c` readable bytes and `cb < c`: the masked
                // loads read only the `live` bytes from `cb`; `wp` holds `tap_pairs · 2 · CB512`
                // values, pair `p` reads 64 of them from `p · 64`.
                unsafe {
                    let xa = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(mask, src[2 * p].add(cb).cast()));
                    let xb = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(mask, src[2 * p + 1].add(cb).cast()));
                    let (xa, xb) = (_mm512_sub_epi16(xa, zpv), _mm512_sub_epi16(xb, zpv));
                    let w0 = _mm512_loadu_si512(wp.as_ptr().add(p * 2 * CB512).cast());
                    let w1 = _mm512_loadu_si512(wp.as_ptr().add(p * 2 * CB512 + CB512).cast());
                    lo = _mm512_add_epi32(lo, _mm512_madd_epi16(_mm512_unpacklo_epi16(xa, xb), w0));
                    hi = _mm512_add_epi32(hi, _mm512_madd_epi16(_mm512_unpackhi_epi16(xa, xb), w1));
                }
            }
            let first = _mm512_permutex2var_epi32(lo, first_idx, hi);
            let second = _mm512_permutex2var_epi32(lo, second_idx, hi);
            let dst = &mut a[cb..cb + live];
            // SAFETY: `dst` holds `live` `i32`: the first store writes `min(live, 16)` of them,
            // the second (only when `live > 16`, so its start is inside) the rest.
            unsafe {
                let m0 = if live >= 16 { 0xffff } else { (1u16 << live) - 1 };
                _mm512_mask_storeu_epi32(dst.as_mut_ptr(), m0, first);
                if live > 16 {
                    let m1 = if live == CB512 { 0xffff } else { (1u16 << (live - 16)) - 1 };
                    _mm512_mask_storeu_epi32(dst.as_mut_ptr().add(16), m1, second);
                }
            }
        }
    }
    for (o, a) in out.chunks_mut(ep.channels()).zip(acc.chunks(ep.channels())) {
        O::apply(ep, a, 0, o)?;
    }
    Ok(())
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
    let paired512 = taps <= PAIRED_MAX_TAPS && dw.block == CB512 && avx512_runs();
    crate::par::try_chunks_with(out, row_len, parallel, &|| vec![0i32; row_len], |acc, r, chunk| {
        #[cfg(target_arch = "x86_64")]
        {
            if paired512 {
                // SAFETY: AVX-512F/BW/VL are present and `dw` is packed in blocks of 32 (checked
                // just above); the kernel checks its operands.
                return unsafe { row_paired_avx512(dw, g, ow, x, &zeros, zp as i16, (r / oh, r % oh), ep, acc, chunk) };
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
