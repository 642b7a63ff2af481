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
    let c = dw.channels;
    let [ih, iw] = g.input;
    let mut pixels = 0;
    for xo in 0..ow {
        let a = &mut acc[xo * c..(xo + 1) * c];
        a.fill(0);
        for ky in 0..g.kernel[0] {
            let Some(yy) = (y * g.stride[0] + ky * g.dilation[0]).checked_sub(g.padding[0]).filter(|&v| v < ih) else {
                continue;
            };
            for kx in 0..g.kernel[1] {
                let Some(xx) = (xo * g.stride[1] + kx * g.dilation[1]).checked_sub(g.padding[1]).filter(|&v| v < iw)
                else {
                    continue;
                };
                let src = &x[((b * ih + yy) * iw + xx) * c..][..c];
                let w = &dw.w[(ky * g.kernel[1] + kx) * c..][..c];
                // |x - zx| ≤ 255 and |w| ≤ 127: the product fits `i16` (a 16-bit multiply).
                for ((a, &v), &w) in a.iter_mut().zip(src).zip(w) {
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
