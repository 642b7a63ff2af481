//! The int8 depthwise convolution (NHWC, one channel per group): each output pixel sums its taps
//! across the channel vector in `i32`, so the loops run along channels and vectorise.
//!
//! AVX2 levels multiply two taps at once, as XNNPACK's depthwise kernels do: the two taps' input
//! values (minus the zero point, `i16`) are interleaved channel by channel and `vpmaddwd` multiplies
//! them with the taps' interleaved weights, summing both products into one `i32` lane. Every pixel
//! runs all `kh · kw` taps: a tap outside the image reads a vector of zero points (so it adds
//! nothing), and an odd tap count pairs its last tap with a zero weight. Channel blocks of 16 run
//! this way; the remaining channels (and the portable level) sum one tap at a time. Integer sums
//! are exact, so both give the same results.

#![allow(unsafe_code)]

use super::{Epilogue, QOut};
use crate::nhwc::Conv2dGeometry;
use crate::simd::Level;
use crate::KResult;

/// Channels of one block of the paired kernel.
const CB: usize = 16;
/// Kernels of up to this many taps run paired.
const PAIRED_MAX_TAPS: usize = 25;

/// Depthwise weights as `[taps][channels]` of `i16`, and for the paired AVX2 kernel, per block of
/// [`CB`] channels and pair of taps, two vectors of interleaved `(w[t][c], w[t + 1][c])` pairs:
/// channels `0-3, 8-11`, then `4-7, 12-15` (the order `vpunpck{l,h}wd` leaves them in).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PackedDw {
    channels: usize,
    taps: usize,
    w: Vec<i16>,
    pairs: Vec<i16>,
}

impl PackedDw {
    /// From `[channels, 1, kh, kw]` int8 weights.
    pub(super) fn new(channels: usize, taps: usize, weight: &[i8]) -> Self {
        let mut w = vec![0i16; taps * channels];
        for c in 0..channels {
            for t in 0..taps {
                w[t * channels + c] = i16::from(weight[c * taps + t]);
            }
        }
        let (blocks, tap_pairs) = (channels / CB, taps.div_ceil(2));
        let mut pairs = vec![0i16; blocks * tap_pairs * 2 * CB];
        const ORDER: [usize; CB] = [0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15];
        for b in 0..blocks {
            for p in 0..tap_pairs {
                let base = (b * tap_pairs + p) * 2 * CB;
                for (lane, &ch) in ORDER.iter().enumerate() {
                    let c = b * CB + ch;
                    for h in 0..2 {
                        let t = 2 * p + h;
                        if t < taps {
                            pairs[base + 2 * lane + h] = i16::from(weight[c * taps + t]);
                        }
                    }
                }
            }
        }
        PackedDw { channels, taps, w, pairs }
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
    for (o, a) in out.chunks_mut(dw.channels).zip(acc.chunks(dw.channels)) {
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
    for (o, a) in out.chunks_mut(c).zip(acc.chunks(c)) {
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
/// caller checked both lengths against the geometry.
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
    let taps = g.kernel[0] * g.kernel[1];
    let parallel = threads > 1 && out.len().saturating_mul(taps) >= super::PAR_MIN_MACS;
    // The vector a tap outside the image reads: zero points, so it adds nothing.
    let zeros = vec![zp as i8; c];
    let paired = taps <= PAIRED_MAX_TAPS && c >= CB;
    crate::par::try_chunks_with(out, row_len, parallel, &|| vec![0i32; row_len], |acc, r, chunk| {
        #[cfg(target_arch = "x86_64")]
        {
            if paired && matches!(level, Level::Avx2 | Level::Avx512) && std::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is present (checked just above); the kernel checks its operands.
                return unsafe { row_paired_avx2(dw, g, ow, x, &zeros, zp as i16, (r / oh, r % oh), ep, acc, chunk) };
            }
            if matches!(level, Level::Avx2 | Level::Avx512) && std::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is present (checked just above); the function is safe Rust
                // compiled with AVX2 enabled.
                return unsafe { row_avx2(dw, g, ow, x, zp as i16, (r / oh, r % oh), ep, acc, chunk) };
            }
        }
        let _ = (level, &zeros, paired); // the x86 kernels' inputs
        row_out(dw, g, ow, x, zp as i16, (r / oh, r % oh), ep, acc, chunk)
    })
}
