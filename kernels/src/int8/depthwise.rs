//! The int8 depthwise convolution (NHWC, one channel per group): each output pixel sums its taps
//! across the channel vector in `i32`, so the loops run along channels and vectorise; AVX2
//! levels compile the same loop with AVX2 enabled.

#![allow(unsafe_code)]

use super::{Epilogue, QOut};
use crate::nhwc::Conv2dGeometry;
use crate::simd::Level;
use crate::KResult;

/// Depthwise weights as `[taps][channels]` of `i16`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PackedDw {
    channels: usize,
    w: Vec<i16>,
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
        PackedDw { channels, w }
    }

    pub(super) fn bytes(&self) -> usize {
        self.w.len() * 2
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
    crate::par::try_chunks_with(out, row_len, parallel, &|| vec![0i32; row_len], |acc, r, chunk| {
        #[cfg(target_arch = "x86_64")]
        {
            if matches!(level, Level::Avx2 | Level::Avx512) && std::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is present (checked just above); the function is safe Rust
                // compiled with AVX2 enabled.
                return unsafe { row_avx2(dw, g, ow, x, zp as i16, (r / oh, r % oh), ep, acc, chunk) };
            }
        }
        let _ = level;
        row_out(dw, g, ow, x, zp as i16, (r / oh, r % oh), ep, acc, chunk)
    })
}
