//! Depthwise convolution: direct loops along output rows.

use super::{valid_range, ConvShape};
use crate::num::Real;
use crate::simd::{self, Level};
use crate::KResult;

/// Direct convolution when every group has one input channel (depthwise, with any channel
/// multiplier), 1-D/2-D only. Each output row accumulates `kh·kw` shifted input rows; for
/// strided convolutions the input plane is first split into `stride` column phases so every
/// tap reads a contiguous run (and the inner loop vectorises).
#[allow(clippy::too_many_arguments)]
pub(super) fn depthwise<T: Real>(
    x: &[T],
    w: &[T],
    y: &mut [T],
    s: &ConvShape,
    o: [usize; 3],
    isp: usize,
    osp: usize,
    threads: usize,
    level: Level,
) -> KResult {
    let [_, iw_] = [s.input[1], s.input[2]];
    let (sw, pw, dw) = (s.stride[2], s.padding[2] as isize, s.dilation[2]);
    let d = Dw {
        x,
        w,
        s,
        o,
        isp,
        cg_out: s.out_channels / s.groups,
        ranges: (0..s.kernel[2]).map(|kw| valid_range((kw * dw) as isize - pw, sw, iw_, o[2])).collect(),
    };
    crate::par::try_chunks_with(y, osp, threads > 1, &Vec::new, |scratch, t, yp| {
        simd::compiled_for(level, Plane { d: &d, t, yp, scratch });
        Ok(())
    })
}

/// [`dw_plane`], to compile for a SIMD level.
struct Plane<'p, 'a, T> {
    d: &'p Dw<'a, T>,
    t: usize,
    yp: &'p mut [T],
    scratch: &'p mut Vec<T>,
}

impl<T: Real> simd::Compiled for Plane<'_, '_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        dw_plane(self.d, self.t, self.yp, self.scratch)
    }
}

/// Everything one depthwise output plane needs.
pub(super) struct Dw<'a, T> {
    x: &'a [T],
    w: &'a [T],
    s: &'a ConvShape,
    o: [usize; 3],
    isp: usize,
    cg_out: usize,
    /// Valid output-column range per kernel column.
    ranges: Vec<(usize, usize)>,
}

/// Output plane `t` (= batch · out_channels + channel) of a depthwise convolution.
#[inline(always)]
pub(super) fn dw_plane<T: Real>(d: &Dw<'_, T>, t: usize, yp: &mut [T], scratch: &mut Vec<T>) {
    let s = d.s;
    let [_, ih_, iw_] = s.input;
    let [_, oh_, ow_] = d.o;
    let [_, kh_, kw_] = s.kernel;
    let (sh, sw) = (s.stride[1], s.stride[2]);
    let (ph, pw) = (s.padding[1] as isize, s.padding[2] as isize);
    let (dh, dw) = (s.dilation[1], s.dilation[2]);
    let (n, oc) = (t / s.out_channels, t % s.out_channels);
    let ic = oc / d.cg_out;
    let xp = &d.x[(n * s.in_channels + ic) * d.isp..][..d.isp];
    let wk = &d.w[oc * kh_ * kw_..][..kh_ * kw_];
    // Row `r`, phase `q` lives at `src[(r * sw + q) * pwid ..]`; column j of the input is
    // phase j % sw, index j / sw. With unit stride this is the plane itself.
    let pwid = iw_.div_ceil(sw);
    let src: &[T] = if sw == 1 {
        xp
    } else {
        scratch.clear();
        scratch.resize(ih_ * sw * pwid, T::ZERO);
        for (r, xrow) in xp.chunks_exact(iw_).enumerate() {
            let dst = &mut scratch[r * sw * pwid..][..sw * pwid];
            for q in 0..sw {
                for (o, &v) in dst[q * pwid..][..pwid].iter_mut().zip(xrow.iter().skip(q).step_by(sw)) {
                    *o = v;
                }
            }
        }
        scratch
    };
    for (oh, row) in yp.chunks_exact_mut(ow_).enumerate().take(oh_) {
        for kh in 0..kh_ {
            let ih = (oh * sh + kh * dh) as isize - ph;
            if ih < 0 || ih >= ih_ as isize {
                continue;
            }
            let rbase = ih as usize * sw * pwid;
            for (kw, &(lo, hi)) in d.ranges.iter().enumerate() {
                if lo >= hi {
                    continue;
                }
                let wv = wk[kh * kw_ + kw];
                let off = (kw * dw) as isize - pw;
                let (q, base) = (off.rem_euclid(sw as isize) as usize, off.div_euclid(sw as isize));
                let start = rbase + q * pwid + (lo as isize + base) as usize;
                let out = &mut row[lo..hi];
                for (o, &v) in out.iter_mut().zip(&src[start..start + (hi - lo)]) {
                    *o += wv * v;
                }
            }
        }
    }
}
