//! Convolution (1-D, 2-D and 3-D; strided, padded, dilated, grouped, transposed) and inference
//! batch normalisation.
//!
//! Every convolution is expressed on a `[N, C, D, H, W]` view (1-D and 2-D convolutions have
//! unit leading spatial dimensions) and dispatched to one of four strategies:
//!
//! * **pointwise** (1×1 kernel, unit stride, no padding): one GEMM per batch and group straight
//!   on the input, no copy;
//! * **depthwise** (one input channel per group, 1-D/2-D): direct loops whose inner loop runs
//!   along an output row, so it vectorises;
//! * **general**: `im2col` into a bounded column buffer (blocked over output positions), then GEMM;
//! * **transposed**: GEMM into a column buffer, then `col2im` scatter-add.
//!
//! Work is spread over rayon threads by batch × group (or by output plane for depthwise) when
//! there is enough of it, otherwise the GEMM itself is threaded.

mod depthwise;
mod in_order;
#[cfg(test)]
mod tests;
mod transposed;

use crate::matmul::{gemm, Mat};
use crate::num::Real;
use crate::simd::Level;
use crate::{KResult, KernelError};

pub use in_order::conv_in_order;

/// Shape and hyper-parameters of one convolution, normalised to three spatial dimensions
/// (`[D, H, W]`; unused leading ones have size 1, kernel 1, stride 1, no padding, dilation 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    /// Batch size.
    pub batch: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Groups (divides both channel counts).
    pub groups: usize,
    /// Input spatial sizes.
    pub input: [usize; 3],
    /// Kernel spatial sizes.
    pub kernel: [usize; 3],
    /// Strides (≥ 1).
    pub stride: [usize; 3],
    /// Zero padding on both sides.
    pub padding: [usize; 3],
    /// Dilations (≥ 1).
    pub dilation: [usize; 3],
    /// Extra size added to one side of a transposed convolution's output.
    pub output_padding: [usize; 3],
    /// Transposed convolution (the gradient of a convolution with respect to its input).
    pub transposed: bool,
}

fn arg_err(msg: String) -> KernelError {
    KernelError::Argument(msg)
}

impl ConvShape {
    /// Output spatial sizes, or an error when they would be empty or overflow.
    pub fn output(&self) -> KResult<[usize; 3]> {
        let mut out = [0usize; 3];
        for (i, slot) in out.iter_mut().enumerate() {
            let (n, k, s, p, d) = (self.input[i], self.kernel[i], self.stride[i], self.padding[i], self.dilation[i]);
            if s == 0 || d == 0 || k == 0 {
                return Err(arg_err(format!("convolution: kernel {k}, stride {s} and dilation {d} must be positive")));
            }
            let span = (k - 1).checked_mul(d).ok_or_else(|| arg_err("convolution: kernel span overflows".into()))?;
            let o = if self.transposed {
                let op = self.output_padding[i];
                if op >= s && op >= d {
                    return Err(arg_err(format!(
                        "output padding {op} must be smaller than either stride {s} or dilation {d}"
                    )));
                }
                let grown = n
                    .checked_sub(1)
                    .and_then(|x| x.checked_mul(s))
                    .and_then(|x| x.checked_add(span))
                    .and_then(|x| x.checked_add(op + 1))
                    .ok_or_else(|| arg_err(format!("convolution: transposed input size {n} is invalid")))?;
                grown.saturating_sub(2 * p)
            } else {
                let padded = n.checked_add(2 * p).ok_or_else(|| arg_err("convolution: padding overflows".into()))?;
                if padded > span {
                    (padded - span - 1) / s + 1
                } else {
                    0
                }
            };
            if o == 0 {
                return Err(arg_err(format!(
                    "convolution: input size {n} with kernel {k}, stride {s}, padding {p}, dilation {d} gives an empty output"
                )));
            }
            *slot = o;
        }
        Ok(out)
    }

    fn validate(&self) -> KResult {
        let g = self.groups;
        if g == 0 || !self.in_channels.is_multiple_of(g) || !self.out_channels.is_multiple_of(g) {
            return Err(arg_err(format!(
                "convolution: {} input and {} output channels are not divisible into {g} groups",
                self.in_channels, self.out_channels
            )));
        }
        Ok(())
    }

    fn kvol(&self) -> usize {
        self.kernel.iter().product()
    }

    /// Elements of the weight tensor (`[out, in/groups, k...]`, or `[in, out/groups, k...]`
    /// when transposed).
    pub fn weight_len(&self) -> usize {
        let per = if self.transposed {
            self.in_channels * (self.out_channels / self.groups.max(1))
        } else {
            self.out_channels * (self.in_channels / self.groups.max(1))
        };
        per * self.kvol()
    }
}

fn check(what: &'static str, len: usize, expected: Option<usize>) -> KResult {
    match expected {
        Some(e) if e == len => Ok(()),
        Some(e) => Err(KernelError::Length { what, expected: e, actual: len }),
        None => Err(KernelError::Shape(format!("{what}: size overflows"))),
    }
}

/// For a kernel tap at offset `off` (input = output·stride + off), the range of output indices
/// `[lo, hi)` whose input index lies in `[0, in_len)`.
#[inline]
pub(crate) fn valid_range(off: isize, stride: usize, in_len: usize, out_len: usize) -> (usize, usize) {
    let s = stride as isize;
    let lo = if off >= 0 { 0 } else { ((-off) + s - 1) / s };
    let last = in_len as isize - 1 - off;
    let hi = if last < 0 { 0 } else { (last / s + 1).min(out_len as isize) };
    let lo = lo.min(out_len as isize);
    let hi = hi.max(lo);
    (lo as usize, hi as usize)
}

/// Validates `s` and the buffer lengths; returns the output spatial sizes and the input and
/// output spatial element counts.
fn check_buffers<T>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &[T],
    s: &ConvShape,
) -> KResult<([usize; 3], usize, usize)> {
    s.validate()?;
    let o = s.output()?;
    let isp = s.input.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
    let osp = o.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
    let (isp, osp) = match (isp, osp) {
        (Some(a), Some(b)) => (a, b),
        _ => return Err(KernelError::Shape("convolution: spatial size overflows".into())),
    };
    check("convolution input", x.len(), s.batch.checked_mul(s.in_channels).and_then(|v| v.checked_mul(isp)))?;
    check("convolution output", y.len(), s.batch.checked_mul(s.out_channels).and_then(|v| v.checked_mul(osp)))?;
    check("convolution weight", w.len(), Some(s.weight_len()))?;
    if let Some(b) = bias {
        check("convolution bias", b.len(), Some(s.out_channels))?;
    }
    Ok((o, isp, osp))
}

/// `y = conv(x, w) + bias` (or the transposed convolution), all contiguous row-major:
/// `x` is `[N, Cin, D, H, W]`, `w` as [`ConvShape::weight_len`] says, `y` is `[N, Cout, OD, OH, OW]`.
/// Uses up to `threads` rayon threads; the depthwise loops are compiled for `level`.
pub fn conv<T: Real>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    s: &ConvShape,
    threads: usize,
    level: Level,
) -> KResult {
    let (o, isp, osp) = check_buffers(x, w, bias, y, s)?;
    if y.is_empty() {
        return Ok(());
    }
    // Start from the bias (or zero); every strategy accumulates into `y`.
    for plane in y.chunks_mut(osp).enumerate() {
        let (i, plane) = plane;
        plane.fill(bias.map_or(T::ZERO, |b| b[i % s.out_channels]));
    }
    if s.in_channels == 0 {
        return Ok(());
    }
    let threads = threads.max(1);
    if s.transposed {
        return transposed::conv_transposed(x, w, y, s, o, isp, osp, threads);
    }
    let cg_in = s.in_channels / s.groups;
    if cg_in == 1 && s.input[0] == 1 && s.kernel[0] == 1 && s.padding[0] == 0 {
        return depthwise::depthwise(x, w, y, s, o, isp, osp, threads, level);
    }
    conv_gemm(x, w, y, s, o, isp, osp, threads)
}

/// Pointwise and im2col + GEMM convolution./// Pointwise and im2col + GEMM convolution.
#[allow(clippy::too_many_arguments)]
fn conv_gemm<T: Real>(
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
    let k = cg_in * kvol;
    let pointwise = kvol == 1 && s.stride == [1, 1, 1] && s.padding == [0, 0, 0];
    let tasks = s.batch * g;
    let run_task = |t: usize, yt: &mut [T], gemm_threads: usize| -> KResult {
        let (n, gi) = (t / g, t % g);
        let xs = &x[(n * s.in_channels + gi * cg_in) * isp..][..cg_in * isp];
        let wg = &w[gi * cg_out * k..][..cg_out * k];
        if cg_out == 0 {
            return Ok(());
        }
        if pointwise {
            return gemm(yt, osp, Mat::row_major(wg, cg_out, k), Mat::row_major(xs, k, osp), true, gemm_threads);
        }
        // Column buffer bounded to ~2 MiB of f32, at least 64 output positions wide.
        let chunk = ((1usize << 19) / k.max(1)).max(64).min(osp);
        let mut col = vec![T::ZERO; k * chunk];
        let mut p0 = 0;
        while p0 < osp {
            let p1 = (p0 + chunk).min(osp);
            let cols = p1 - p0;
            im2col(xs, cg_in, s, o, p0, p1, &mut col[..k * cols]);
            gemm(
                &mut yt[p0..],
                osp,
                Mat::row_major(wg, cg_out, k),
                Mat::row_major(&col[..k * cols], k, cols),
                true,
                gemm_threads,
            )?;
            p0 = p1;
        }
        Ok(())
    };
    let plane = cg_out * osp;
    if plane == 0 {
        return Ok(());
    }
    // Several tasks at once, each product on one thread; or one task at a time, each product
    // threaded.
    let par = threads > 1 && tasks >= threads;
    let gemm_threads = if par { 1 } else { threads };
    crate::par::try_chunks(y, plane, par, |t, yt| run_task(t, yt, gemm_threads))
}

/// Output positions `[p0, p1)` of the im2col matrix of one group: row `(c, kd, kh, kw)`,
/// column `p - p0`, in `col` (row-major, `p1 - p0` columns).
fn im2col<T: Real>(x: &[T], channels: usize, s: &ConvShape, o: [usize; 3], p0: usize, p1: usize, col: &mut [T]) {
    let [id_, ih_, iw_] = s.input;
    let [_, oh_, ow_] = o;
    let cols = p1 - p0;
    let [kd_, kh_, kw_] = s.kernel;
    let mut r = 0;
    for c in 0..channels {
        let xc = &x[c * id_ * ih_ * iw_..][..id_ * ih_ * iw_];
        for kd in 0..kd_ {
            let off_d = (kd * s.dilation[0]) as isize - s.padding[0] as isize;
            for kh in 0..kh_ {
                let off_h = (kh * s.dilation[1]) as isize - s.padding[1] as isize;
                for kw in 0..kw_ {
                    let off_w = (kw * s.dilation[2]) as isize - s.padding[2] as isize;
                    let (lo, hi) = valid_range(off_w, s.stride[2], iw_, ow_);
                    let row = &mut col[r * cols..][..cols];
                    r += 1;
                    // Walk output rows (od, oh) that intersect [p0, p1).
                    let mut p = p0;
                    while p < p1 {
                        let ow0 = p % ow_;
                        let rowi = p / ow_;
                        let (od, oh) = (rowi / oh_, rowi % oh_);
                        let ow1 = (ow0 + (p1 - p)).min(ow_);
                        let dst = &mut row[p - p0..p - p0 + (ow1 - ow0)];
                        let di = (od * s.stride[0]) as isize + off_d;
                        let hi_ = (oh * s.stride[1]) as isize + off_h;
                        if di < 0 || di >= id_ as isize || hi_ < 0 || hi_ >= ih_ as isize {
                            dst.fill(T::ZERO);
                        } else {
                            let xrow = &xc[(di as usize * ih_ + hi_ as usize) * iw_..][..iw_];
                            let a = lo.clamp(ow0, ow1);
                            let b = hi.clamp(a, ow1);
                            dst[..a - ow0].fill(T::ZERO);
                            dst[b - ow0..].fill(T::ZERO);
                            let mid = &mut dst[a - ow0..b - ow0];
                            let start = (a as isize * s.stride[2] as isize + off_w) as usize;
                            if s.stride[2] == 1 && !mid.is_empty() {
                                mid.copy_from_slice(&xrow[start..start + mid.len()]);
                            } else if !mid.is_empty() {
                                for (d, v) in mid.iter_mut().zip(xrow[start..].iter().step_by(s.stride[2])) {
                                    *d = *v;
                                }
                            }
                        }
                        p += ow1 - ow0;
                    }
                }
            }
        }
    }
}
