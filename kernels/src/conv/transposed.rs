//! Transposed convolution: GEMM into columns, then `col2im` scatter-add.

use super::{valid_range, ConvShape};
use crate::matmul::{gemm, Mat};
use crate::num::Real;
use crate::KResult;

/// Transposed convolution: `col = Wᵍᵀ · Xᵍ` per group (blocked over input positions), then
/// scatter-add each column entry to the output position it contributes to.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_transposed<T: Real>(
    x: &[T],
    w: &[T],
    y: &mut [T],
    s: &ConvShape,
    o: [usize; 3],
    isp: usize,
    osp: usize,
    threads: usize,
) -> KResult {
    let g = s.groups;
    let cg_in = s.in_channels / g;
    let cg_out = s.out_channels / g;
    let kvol = s.kvol();
    let rows = cg_out * kvol;
    let tasks = s.batch * g;
    let plane = cg_out * osp;
    if plane == 0 || rows == 0 {
        return Ok(());
    }
    let run_task = |t: usize, yt: &mut [T], gemm_threads: usize| -> KResult {
        let (n, gi) = (t / g, t % g);
        let xs = &x[(n * s.in_channels + gi * cg_in) * isp..][..cg_in * isp];
        let wg = &w[gi * cg_in * rows..][..cg_in * rows];
        let chunk = ((1usize << 19) / rows).max(64).min(isp);
        let mut col = vec![T::ZERO; rows * chunk];
        let mut p0 = 0;
        while p0 < isp {
            let p1 = (p0 + chunk).min(isp);
            let cols = p1 - p0;
            let xm = Mat { data: &xs[p0..], rows: cg_in, cols, row_stride: isp, col_stride: 1 };
            gemm(&mut col[..rows * cols], cols, Mat::transposed(wg, rows, cg_in), xm, false, gemm_threads)?;
            col2im(&col[..rows * cols], cg_out, s, o, p0, p1, yt);
            p0 = p1;
        }
        Ok(())
    };
    let par = threads > 1 && tasks >= threads;
    let gemm_threads = if par { 1 } else { threads };
    crate::par::try_chunks(y, plane, par, |t, yt| run_task(t, yt, gemm_threads))
}

/// Adds `col` (rows `(c, kd, kh, kw)`, columns = input positions `[p0, p1)`) into `y`
/// (`[channels, OD, OH, OW]`) at output position `input·stride - padding + k·dilation`.
pub(super) fn col2im<T: Real>(
    col: &[T],
    channels: usize,
    s: &ConvShape,
    o: [usize; 3],
    p0: usize,
    p1: usize,
    y: &mut [T],
) {
    let [_, ih_, iw_] = s.input;
    let [od_, oh_, ow_] = o;
    let cols = p1 - p0;
    let [kd_, kh_, kw_] = s.kernel;
    let mut r = 0;
    for c in 0..channels {
        let yc = &mut y[c * od_ * oh_ * ow_..][..od_ * oh_ * ow_];
        for kd in 0..kd_ {
            let off_d = (kd * s.dilation[0]) as isize - s.padding[0] as isize;
            for kh in 0..kh_ {
                let off_h = (kh * s.dilation[1]) as isize - s.padding[1] as isize;
                for kw in 0..kw_ {
                    let off_w = (kw * s.dilation[2]) as isize - s.padding[2] as isize;
                    // Input columns iw whose output iw·stride + off lies in [0, OW).
                    let (lo, hi) = valid_range(off_w, s.stride[2], ow_, iw_);
                    let row = &col[r * cols..][..cols];
                    r += 1;
                    let mut p = p0;
                    while p < p1 {
                        let iw0 = p % iw_;
                        let rowi = p / iw_;
                        let (id, ih) = (rowi / ih_, rowi % ih_);
                        let iw1 = (iw0 + (p1 - p)).min(iw_);
                        let od = (id * s.stride[0]) as isize + off_d;
                        let oh = (ih * s.stride[1]) as isize + off_h;
                        if od >= 0 && od < od_ as isize && oh >= 0 && oh < oh_ as isize {
                            let yrow = &mut yc[(od as usize * oh_ + oh as usize) * ow_..][..ow_];
                            let a = lo.clamp(iw0, iw1);
                            let b = hi.clamp(a, iw1);
                            if a < b {
                                let src = &row[p - p0 + (a - iw0)..p - p0 + (b - iw0)];
                                let start = (a as isize * s.stride[2] as isize + off_w) as usize;
                                for (d, &v) in yrow[start..].iter_mut().step_by(s.stride[2]).zip(src) {
                                    *d += v;
                                }
                            }
                        }
                        p += iw1 - iw0;
                    }
                }
            }
        }
    }
}
