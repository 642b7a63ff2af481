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

use std::ops::{Add, AddAssign, Mul, Sub};

use rayon::prelude::*;

use super::matmul::{gemm, GemmElement, Mat};
use super::{Float, KResult, KernelError};

/// A floating-point type the convolution and pooling kernels compute in natively (f32, f64);
/// half types are widened to f32 by the operator adapters.
pub trait Real: Float + GemmElement + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + AddAssign {}
impl Real for f32 {}
impl Real for f64 {}

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
/// Uses up to `threads` rayon threads.
pub fn conv<T: Real>(x: &[T], w: &[T], bias: Option<&[T]>, y: &mut [T], s: &ConvShape, threads: usize) -> KResult {
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
        return conv_transposed(x, w, y, s, o, isp, osp, threads);
    }
    let cg_in = s.in_channels / s.groups;
    if cg_in == 1 && s.input[0] == 1 && s.kernel[0] == 1 && s.padding[0] == 0 {
        return depthwise(x, w, y, s, o, isp, osp, threads);
    }
    conv_gemm(x, w, y, s, o, isp, osp, threads)
}

/// `y = conv(x, w) + bias` computed in ExecuTorch's reference order: every output element is a
/// sum over (input channel, kernel depth, row, column) taken strictly in that order, with taps
/// that fall in the padding skipped, one rounding per multiply and per add (no fused
/// multiply-add), and the bias added last.
///
/// This is what `aten::convolution.out` of ExecuTorch's portable library computes, bit for bit.
/// Quantize-dequantize programs need it: the float convolution between a `dequantize` and a
/// `quantize` is rounded to integers right after, so a last-bit difference in the sum can move a
/// value across a rounding boundary, and such one-step differences grow from layer to layer.
/// Vectorised along output rows (each lane is one output, so the order per output is kept);
/// parallel over output planes. Not for transposed convolutions (see [`conv`]).
pub fn conv_in_order<T: Real>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    s: &ConvShape,
    threads: usize,
) -> KResult {
    if s.transposed {
        return Err(arg_err("convolution: the in-order kernel does not do transposed convolutions".into()));
    }
    let (o, isp, osp) = check_buffers(x, w, bias, y, s)?;
    if y.is_empty() {
        return Ok(());
    }
    let cg_in = s.in_channels / s.groups;
    let cg_out = s.out_channels / s.groups;
    if cg_out >= 2 {
        return conv_in_order_gemm(x, w, bias, y, s, o, (isp, osp), threads);
    }
    let kvol = s.kvol();
    let [kd_, kh_, kw_] = s.kernel;
    let [id_, ih_, iw_] = s.input;
    let [od_, oh_, ow_] = o;
    let ranges: Vec<(usize, usize)> = (0..kw_)
        .map(|kw| valid_range((kw * s.dilation[2]) as isize - s.padding[2] as isize, s.stride[2], iw_, ow_))
        .collect();
    let plane = |t: usize, yp: &mut [T]| {
        let (n, oc) = (t / s.out_channels, t % s.out_channels);
        let g = oc / cg_out;
        let b = bias.map_or(T::ZERO, |b| b[oc]);
        let wo = &w[oc * cg_in * kvol..][..cg_in * kvol];
        for (r, row) in yp.chunks_exact_mut(ow_).enumerate() {
            let (od, oh) = (r / oh_, r % oh_);
            row.fill(T::ZERO);
            for c in 0..cg_in {
                let xc = &x[(n * s.in_channels + g * cg_in + c) * isp..][..isp];
                for kd in 0..kd_ {
                    let id = (od * s.stride[0] + kd * s.dilation[0]) as isize - s.padding[0] as isize;
                    if id < 0 || id >= id_ as isize {
                        continue;
                    }
                    for kh in 0..kh_ {
                        let ih = (oh * s.stride[1] + kh * s.dilation[1]) as isize - s.padding[1] as isize;
                        if ih < 0 || ih >= ih_ as isize {
                            continue;
                        }
                        let xrow = &xc[(id as usize * ih_ + ih as usize) * iw_..][..iw_];
                        let wk = &wo[((c * kd_ + kd) * kh_ + kh) * kw_..][..kw_];
                        for (kw, &(lo, hi)) in ranges.iter().enumerate() {
                            let wv = wk[kw];
                            let off = (kw * s.dilation[2]) as isize - s.padding[2] as isize;
                            let sw = s.stride[2];
                            if sw == 1 {
                                let start = (lo as isize + off) as usize;
                                for (acc, &v) in row[lo..hi].iter_mut().zip(&xrow[start..start + (hi - lo)]) {
                                    *acc += v * wv;
                                }
                            } else {
                                for (ox, acc) in row.iter_mut().enumerate().take(hi).skip(lo) {
                                    *acc += xrow[((ox * sw) as isize + off) as usize] * wv;
                                }
                            }
                        }
                    }
                }
            }
            if bias.is_some() {
                for acc in row.iter_mut() {
                    *acc += b;
                }
            }
        }
        debug_assert_eq!(yp.len(), od_ * oh_ * ow_);
    };
    if threads > 1 {
        y.par_chunks_mut(osp).enumerate().for_each(|(t, yp)| plane(t, yp));
    } else {
        y.chunks_mut(osp).enumerate().for_each(|(t, yp)| plane(t, yp));
    }
    Ok(())
}

/// [`conv_in_order`] for groups of several output channels: per batch and group, an in-order
/// GEMM (`ordered`) of the group's weights `[cg_out, cg_in·kvol]` with the input's columns
/// (im2col, built panel by panel; padded taps read 0, which adds nothing to a sum that starts
/// at +0), then the bias.
#[allow(clippy::too_many_arguments)]
fn conv_in_order_gemm<T: Real>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    s: &ConvShape,
    o: [usize; 3],
    (isp, osp): (usize, usize),
    threads: usize,
) -> KResult {
    use super::ordered::{gemm_in_order, PackedA, NR};
    let (cg_in, cg_out) = (s.in_channels / s.groups, s.out_channels / s.groups);
    let kvol = s.kvol();
    let kk = cg_in * kvol;
    let [kd_, kh_, kw_] = s.kernel;
    let [id_, ih_, iw_] = s.input;
    let [_, oh_, ow_] = o;
    let pointwise = kvol == 1 && s.stride == [1; 3] && s.padding == [0; 3];
    for g in 0..s.groups {
        let wg = &w[g * cg_out * kk..][..cg_out * kk];
        let a = PackedA::new(cg_out, kk, |i, p| wg[i * kk + p]);
        for n in 0..s.batch {
            let xg = &x[(n * s.in_channels + g * cg_in) * isp..][..cg_in * isp];
            let pack = |j: usize, bp: &mut [T]| {
                let q0 = j * NR;
                let width = NR.min(osp - q0);
                if pointwise {
                    for (c, dst) in bp.chunks_exact_mut(NR).enumerate() {
                        dst[..width].copy_from_slice(&xg[c * isp + q0..][..width]);
                    }
                    return;
                }
                // Top-left-front input coordinate of each output position in the panel.
                let mut base = [[0isize; 3]; NR];
                for (jj, b) in base.iter_mut().enumerate().take(width) {
                    let q = q0 + jj;
                    let (od, oh, ow) = (q / (oh_ * ow_), (q / ow_) % oh_, q % ow_);
                    for (d, out) in [od, oh, ow].into_iter().enumerate() {
                        b[d] = (out * s.stride[d]) as isize - s.padding[d] as isize;
                    }
                }
                let mut p = 0;
                for c in 0..cg_in {
                    let xc = &xg[c * isp..][..isp];
                    for kd in 0..kd_ {
                        for kh in 0..kh_ {
                            for kw in 0..kw_ {
                                let dst = &mut bp[p * NR..][..NR];
                                let off = [kd * s.dilation[0], kh * s.dilation[1], kw * s.dilation[2]];
                                for (v, b) in dst.iter_mut().zip(&base).take(width) {
                                    let (zd, zh, zw) =
                                        (b[0] + off[0] as isize, b[1] + off[1] as isize, b[2] + off[2] as isize);
                                    *v = if zd >= 0
                                        && zd < id_ as isize
                                        && zh >= 0
                                        && zh < ih_ as isize
                                        && zw >= 0
                                        && zw < iw_ as isize
                                    {
                                        xc[(zd as usize * ih_ + zh as usize) * iw_ + zw as usize]
                                    } else {
                                        T::ZERO
                                    };
                                }
                                p += 1;
                            }
                        }
                    }
                }
            };
            let yg = &mut y[(n * s.out_channels + g * cg_out) * osp..][..cg_out * osp];
            gemm_in_order(yg, osp, osp, &a, pack, threads)?;
            if let Some(b) = bias {
                for (i, row) in yg.chunks_exact_mut(osp).enumerate() {
                    let bv = b[g * cg_out + i];
                    for v in row {
                        *v += bv;
                    }
                }
            }
        }
    }
    Ok(())
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
    if threads > 1 && tasks >= threads && plane > 0 {
        y.par_chunks_mut(plane).enumerate().try_for_each(|(t, yt)| run_task(t, yt, 1))
    } else if plane > 0 {
        y.chunks_mut(plane).enumerate().try_for_each(|(t, yt)| run_task(t, yt, threads))
    } else {
        Ok(())
    }
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

/// Direct convolution when every group has one input channel (depthwise, with any channel
/// multiplier), 1-D/2-D only. Each output row accumulates `kh·kw` shifted input rows; for
/// strided convolutions the input plane is first split into `stride` column phases so every
/// tap reads a contiguous run (and the inner loop vectorises).
#[allow(clippy::too_many_arguments)]
fn depthwise<T: Real>(
    x: &[T],
    w: &[T],
    y: &mut [T],
    s: &ConvShape,
    o: [usize; 3],
    isp: usize,
    osp: usize,
    threads: usize,
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
    if threads > 1 {
        y.par_chunks_mut(osp)
            .enumerate()
            .for_each_init(Vec::new, |scratch, (t, yp)| simd::dw_plane(&d, t, yp, scratch));
    } else {
        let mut scratch = Vec::new();
        y.chunks_mut(osp).enumerate().for_each(|(t, yp)| simd::dw_plane(&d, t, yp, &mut scratch));
    }
    Ok(())
}

/// Everything one depthwise output plane needs.
struct Dw<'a, T> {
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
fn dw_plane<T: Real>(d: &Dw<'_, T>, t: usize, yp: &mut [T], scratch: &mut Vec<T>) {
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

/// Runtime CPU-feature dispatch: the same safe code compiled for AVX2+FMA when available.
mod simd {
    #![allow(unsafe_code)]
    use super::{Dw, Real};

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn dw_plane_avx2<T: Real>(d: &Dw<'_, T>, t: usize, yp: &mut [T], scratch: &mut Vec<T>) {
        super::dw_plane(d, t, yp, scratch)
    }

    pub(super) fn dw_plane<T: Real>(d: &Dw<'_, T>, t: usize, yp: &mut [T], scratch: &mut Vec<T>) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: `dw_plane_avx2` only needs AVX2 and FMA, which the CPU was just shown to
            // support; it is otherwise the same safe code.
            return unsafe { dw_plane_avx2(d, t, yp, scratch) };
        }
        super::dw_plane(d, t, yp, scratch)
    }
}

/// Transposed convolution: `col = Wᵍᵀ · Xᵍ` per group (blocked over input positions), then
/// scatter-add each column entry to the output position it contributes to.
#[allow(clippy::too_many_arguments)]
fn conv_transposed<T: Real>(
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
    if threads > 1 && tasks >= threads {
        y.par_chunks_mut(plane).enumerate().try_for_each(|(t, yt)| run_task(t, yt, 1))
    } else {
        y.chunks_mut(plane).enumerate().try_for_each(|(t, yt)| run_task(t, yt, threads))
    }
}

/// Adds `col` (rows `(c, kd, kh, kw)`, columns = input positions `[p0, p1)`) into `y`
/// (`[channels, OD, OH, OW]`) at output position `input·stride - padding + k·dilation`.
fn col2im<T: Real>(col: &[T], channels: usize, s: &ConvShape, o: [usize; 3], p0: usize, p1: usize, y: &mut [T]) {
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

/// Inference batch normalisation over `[outer, channels, inner]`:
/// `y = (x - mean) · invstd · weight + bias` with `invstd = 1 / sqrt(var + eps)` computed in f64
/// and rounded to `T` (ExecuTorch's order of operations).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm<T: Real>(
    x: &[T],
    mean: &[T],
    var: &[T],
    weight: Option<&[T]>,
    bias: Option<&[T]>,
    eps: f64,
    channels: usize,
    inner: usize,
    y: &mut [T],
) -> KResult {
    let expect = |what, v: &[T]| check(what, v.len(), Some(channels));
    expect("batch_norm mean", mean)?;
    expect("batch_norm var", var)?;
    if let Some(wt) = weight {
        expect("batch_norm weight", wt)?;
    }
    if let Some(b) = bias {
        expect("batch_norm bias", b)?;
    }
    if x.len() != y.len() {
        return Err(KernelError::Length { what: "batch_norm output", expected: x.len(), actual: y.len() });
    }
    let plane = inner.max(1);
    if channels == 0 || inner == 0 || x.is_empty() {
        return Ok(());
    }
    if !x.len().is_multiple_of(channels * plane) {
        return Err(KernelError::Shape(format!("batch_norm: {} elements are not [.., {channels}, {inner}]", x.len())));
    }
    let invstd: Vec<T> = var.iter().map(|v| T::from_f64(1.0 / (v.to_f64() + eps).sqrt())).collect();
    let one = T::ONE;
    let run = |(i, (yp, xp)): (usize, (&mut [T], &[T]))| {
        let c = i % channels;
        let (m, is) = (mean[c], invstd[c]);
        let wv = weight.map_or(one, |wt| wt[c]);
        let bv = bias.map_or(T::ZERO, |b| b[c]);
        for (d, &v) in yp.iter_mut().zip(xp) {
            *d = (v - m) * is * wv + bv;
        }
    };
    if x.len() >= 1 << 15 && crate::threads() > 1 {
        y.par_chunks_mut(plane).zip(x.par_chunks(plane)).enumerate().for_each(run);
    } else {
        y.chunks_mut(plane).zip(x.chunks(plane)).enumerate().for_each(run);
    }
    Ok(())
}

/// Per-channel mean and `1 / sqrt(biased var + eps)` of `[outer, channels, inner]` (batch
/// statistics, two passes in f64).
pub fn batch_stats<T: Real>(x: &[T], channels: usize, inner: usize, eps: f64) -> KResult<(Vec<T>, Vec<T>)> {
    let plane = channels * inner;
    if plane == 0 || !x.len().is_multiple_of(plane) {
        return Err(KernelError::Shape(format!("batch_norm: {} elements are not [.., {channels}, {inner}]", x.len())));
    }
    let outer = x.len() / plane;
    let count = (outer * inner) as f64;
    let mut mean = vec![0f64; channels];
    let mut var = vec![0f64; channels];
    for (i, p) in x.chunks(inner).enumerate() {
        mean[i % channels] += p.iter().map(|v| v.to_f64()).sum::<f64>();
    }
    for m in &mut mean {
        *m /= count;
    }
    for (i, p) in x.chunks(inner).enumerate() {
        let m = mean[i % channels];
        var[i % channels] += p.iter().map(|v| (v.to_f64() - m) * (v.to_f64() - m)).sum::<f64>();
    }
    let means = mean.iter().map(|&m| T::from_f64(m)).collect();
    let invstd = var.iter().map(|&v| T::from_f64(1.0 / (v / count + eps).sqrt())).collect();
    Ok((means, invstd))
}

/// Batch normalisation with precomputed per-channel `invstd` (training-mode statistics).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_with_invstd<T: Real>(
    x: &[T],
    mean: &[T],
    invstd: &[T],
    weight: Option<&[T]>,
    bias: Option<&[T]>,
    channels: usize,
    inner: usize,
    y: &mut [T],
) -> KResult {
    if mean.len() != channels || invstd.len() != channels || x.len() != y.len() {
        return Err(KernelError::Shape("batch_norm: statistics do not match the channels".into()));
    }
    if inner == 0 || channels == 0 {
        return Ok(());
    }
    for (i, (yp, xp)) in y.chunks_mut(inner).zip(x.chunks(inner)).enumerate() {
        let c = i % channels;
        let wv = weight.and_then(|w| w.get(c).copied()).unwrap_or(T::ONE);
        let bv = bias.and_then(|b| b.get(c).copied()).unwrap_or(T::ZERO);
        for (d, &v) in yp.iter_mut().zip(xp) {
            *d = (v - mean[c]) * invstd[c] * wv + bv;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    /// Direct-loop reference (f64), straight from the definition.
    pub(crate) fn reference(x: &[f64], w: &[f64], bias: Option<&[f64]>, s: &ConvShape) -> Vec<f64> {
        let o = s.output().unwrap();
        let g = s.groups;
        let (cg_in, cg_out) = (s.in_channels / g, s.out_channels / g);
        let [id_, ih_, iw_] = s.input;
        let [od_, oh_, ow_] = o;
        let [kd_, kh_, kw_] = s.kernel;
        let mut y = vec![0f64; s.batch * s.out_channels * od_ * oh_ * ow_];
        let yi = |n: usize, c: usize, d: usize, h: usize, ww: usize| {
            (((n * s.out_channels + c) * od_ + d) * oh_ + h) * ow_ + ww
        };
        let xi = |n: usize, c: usize, d: usize, h: usize, ww: usize| {
            (((n * s.in_channels + c) * id_ + d) * ih_ + h) * iw_ + ww
        };
        for n in 0..s.batch {
            for oc in 0..s.out_channels {
                let b = bias.map_or(0.0, |b| b[oc]);
                for d in 0..od_ {
                    for h in 0..oh_ {
                        for ww in 0..ow_ {
                            y[yi(n, oc, d, h, ww)] = b;
                        }
                    }
                }
            }
            for gi in 0..g {
                for icg in 0..cg_in {
                    for ocg in 0..cg_out {
                        for kd in 0..kd_ {
                            for kh in 0..kh_ {
                                for kw in 0..kw_ {
                                    let (ic, oc) = (gi * cg_in + icg, gi * cg_out + ocg);
                                    let wv = if s.transposed {
                                        w[((ic * cg_out + ocg) * kd_ + kd) * kh_ * kw_ + kh * kw_ + kw]
                                    } else {
                                        w[((oc * cg_in + icg) * kd_ + kd) * kh_ * kw_ + kh * kw_ + kw]
                                    };
                                    if s.transposed {
                                        for d in 0..id_ {
                                            for h in 0..ih_ {
                                                for ww in 0..iw_ {
                                                    let od = (d * s.stride[0] + kd * s.dilation[0]) as isize
                                                        - s.padding[0] as isize;
                                                    let oh = (h * s.stride[1] + kh * s.dilation[1]) as isize
                                                        - s.padding[1] as isize;
                                                    let ow = (ww * s.stride[2] + kw * s.dilation[2]) as isize
                                                        - s.padding[2] as isize;
                                                    if (0..od_ as isize).contains(&od)
                                                        && (0..oh_ as isize).contains(&oh)
                                                        && (0..ow_ as isize).contains(&ow)
                                                    {
                                                        y[yi(n, oc, od as usize, oh as usize, ow as usize)] +=
                                                            wv * x[xi(n, ic, d, h, ww)];
                                                    }
                                                }
                                            }
                                        }
                                    } else {
                                        for d in 0..od_ {
                                            for h in 0..oh_ {
                                                for ww in 0..ow_ {
                                                    let id = (d * s.stride[0] + kd * s.dilation[0]) as isize
                                                        - s.padding[0] as isize;
                                                    let ih = (h * s.stride[1] + kh * s.dilation[1]) as isize
                                                        - s.padding[1] as isize;
                                                    let iw = (ww * s.stride[2] + kw * s.dilation[2]) as isize
                                                        - s.padding[2] as isize;
                                                    if (0..id_ as isize).contains(&id)
                                                        && (0..ih_ as isize).contains(&ih)
                                                        && (0..iw_ as isize).contains(&iw)
                                                    {
                                                        y[yi(n, oc, d, h, ww)] +=
                                                            wv * x[xi(n, ic, id as usize, ih as usize, iw as usize)];
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        y
    }

    fn data(n: usize, seed: u64) -> Vec<f64> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 33) % 2001) as f64 / 1000.0 - 1.0
            })
            .collect()
    }

    fn run_case(s: &ConvShape, with_bias: bool, threads: usize) {
        let o = s.output().unwrap();
        let xlen = s.batch * s.in_channels * s.input.iter().product::<usize>();
        let ylen = s.batch * s.out_channels * o.iter().product::<usize>();
        let x = data(xlen, 1);
        let w = data(s.weight_len(), 2);
        let b = data(s.out_channels, 3);
        let bias = with_bias.then_some(&b[..]);
        let want = reference(&x, &w, bias, s);
        // f64
        let mut y = vec![f64::NAN; ylen];
        conv(&x, &w, bias, &mut y, s, threads).unwrap();
        for (a, b) in y.iter().zip(&want) {
            assert!((a - b).abs() < 1e-9, "f64 {s:?}: {a} vs {b}");
        }
        // f32
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let wf: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        let bf: Vec<f32> = b.iter().map(|&v| v as f32).collect();
        let mut yf = vec![f32::NAN; ylen];
        conv(&xf, &wf, with_bias.then_some(&bf[..]), &mut yf, s, threads).unwrap();
        for (a, b) in yf.iter().zip(&want) {
            assert!((*a as f64 - b).abs() < 1e-3 * (1.0 + b.abs()), "f32 {s:?}: {a} vs {b}");
        }
    }

    fn shape2d(batch: usize, cin: usize, cout: usize, groups: usize, hw: [usize; 2], k: [usize; 2]) -> ConvShape {
        ConvShape {
            batch,
            in_channels: cin,
            out_channels: cout,
            groups,
            input: [1, hw[0], hw[1]],
            kernel: [1, k[0], k[1]],
            stride: [1, 1, 1],
            padding: [0, 0, 0],
            dilation: [1, 1, 1],
            output_padding: [0, 0, 0],
            transposed: false,
        }
    }

    #[test]
    fn pointwise_general_depthwise() {
        run_case(&shape2d(2, 8, 16, 1, [5, 7], [1, 1]), true, 1);
        let mut s = shape2d(1, 3, 8, 1, [9, 9], [3, 3]);
        s.stride = [1, 2, 2];
        s.padding = [0, 1, 1];
        run_case(&s, true, 1);
        let mut s = shape2d(2, 6, 6, 6, [8, 7], [3, 3]);
        s.padding = [0, 1, 1];
        run_case(&s, true, 2);
        s.stride = [1, 2, 2];
        run_case(&s, false, 1);
        let mut s = shape2d(1, 4, 8, 4, [6, 6], [3, 3]);
        s.dilation = [1, 2, 2];
        s.padding = [0, 2, 1];
        run_case(&s, true, 1);
    }

    #[test]
    fn grouped_3d_and_transposed() {
        let mut s = shape2d(1, 4, 6, 2, [5, 6], [2, 3]);
        s.input = [4, 5, 6];
        s.kernel = [2, 2, 3];
        s.padding = [1, 0, 1];
        run_case(&s, true, 1);
        let mut t = shape2d(2, 4, 6, 2, [3, 4], [3, 3]);
        t.transposed = true;
        t.stride = [1, 2, 2];
        t.padding = [0, 1, 1];
        t.output_padding = [0, 1, 0];
        run_case(&t, true, 2);
    }

    #[test]
    fn rejects_bad_shapes() {
        let s = shape2d(1, 3, 4, 2, [4, 4], [3, 3]);
        let mut y = vec![0f32; 16];
        assert!(conv(&[0f32; 48], &[0f32; 54], None, &mut y, &s, 1).is_err());
        let s = shape2d(1, 1, 1, 1, [2, 2], [3, 3]);
        assert!(s.output().is_err());
        let s = shape2d(1, 1, 1, 1, [4, 4], [3, 3]);
        assert!(conv(&[0f32; 16], &[0f32; 9], None, &mut [0f32; 3], &s, 1).is_err());
    }

    #[test]
    fn batch_norm_matches_formula() {
        let x: Vec<f32> = (0..24).map(|i| i as f32 * 0.25 - 2.0).collect();
        let mean = [0.5f32, -1.0, 2.0];
        let var = [1.0f32, 4.0, 0.25];
        let w = [1.0f32, 2.0, -1.0];
        let b = [0.0f32, 1.0, 0.5];
        let mut y = vec![0f32; 24];
        batch_norm(&x, &mean, &var, Some(&w), Some(&b), 1e-5, 3, 4, &mut y).unwrap();
        for (i, (&a, &v)) in y.iter().zip(&x).enumerate() {
            let c = (i / 4) % 3;
            let inv = (1.0 / ((var[c] as f64) + 1e-5).sqrt()) as f32;
            assert_eq!(a, (v - mean[c]) * inv * w[c] + b[c]);
        }
        let (m, inv) = batch_stats(&x, 3, 4, 0.0).unwrap();
        assert!((m[0] + 0.125).abs() < 1e-6, "{m:?}");
        assert!(inv.iter().all(|v| v.is_finite()));
    }

    /// ExecuTorch's portable `conv2d_impl` loop (extended to 3-D), in f32: per output, a sum
    /// over (channel, depth, row, column) in that order skipping padded taps, bias last.
    fn executorch_order(x: &[f32], w: &[f32], bias: Option<&[f32]>, s: &ConvShape) -> Vec<f32> {
        let o = s.output().unwrap();
        let (cg_in, cg_out) = (s.in_channels / s.groups, s.out_channels / s.groups);
        let [id_, ih_, iw_] = s.input;
        let [kd_, kh_, kw_] = s.kernel;
        let mut y = Vec::new();
        for n in 0..s.batch {
            for oc in 0..s.out_channels {
                let g = oc / cg_out;
                for od in 0..o[0] {
                    for oh in 0..o[1] {
                        for ow in 0..o[2] {
                            let mut acc = 0.0f32;
                            for c in 0..cg_in {
                                for kd in 0..kd_ {
                                    let d = (od * s.stride[0] + kd * s.dilation[0]) as isize - s.padding[0] as isize;
                                    for kh in 0..kh_ {
                                        let h =
                                            (oh * s.stride[1] + kh * s.dilation[1]) as isize - s.padding[1] as isize;
                                        for kw in 0..kw_ {
                                            let ww = (ow * s.stride[2] + kw * s.dilation[2]) as isize
                                                - s.padding[2] as isize;
                                            let inside = (0..id_ as isize).contains(&d)
                                                && (0..ih_ as isize).contains(&h)
                                                && (0..iw_ as isize).contains(&ww);
                                            if inside {
                                                let xv = x[(((n * s.in_channels + g * cg_in + c) * id_ + d as usize)
                                                    * ih_
                                                    + h as usize)
                                                    * iw_
                                                    + ww as usize];
                                                let wv = w[(((oc * cg_in + c) * kd_ + kd) * kh_ + kh) * kw_ + kw];
                                                acc += xv * wv;
                                            }
                                        }
                                    }
                                }
                            }
                            if let Some(b) = bias {
                                acc += b[oc];
                            }
                            y.push(acc);
                        }
                    }
                }
            }
        }
        y
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn in_order_conv_is_bit_identical_to_executorch_loop(
            batch in 1usize..3, g in 1usize..4, cin_g in 1usize..5, cout_g in 1usize..3, three_d in any::<bool>(),
            d in 1usize..4, h in 1usize..9, wdt in 1usize..12, k in proptest::array::uniform3(1usize..4),
            st in proptest::array::uniform3(1usize..4), pd in proptest::array::uniform3(0usize..3),
            dl in proptest::array::uniform3(1usize..3), bias in any::<bool>(), threads in 1usize..3, seed in 0u64..1000,
        ) {
            let mut s = shape2d(batch, g * cin_g, g * cout_g, g, [h, wdt], [k[1], k[2]]);
            s.stride = [1, st[1], st[2]];
            s.padding = [0, pd[1], pd[2]];
            s.dilation = [1, dl[1], dl[2]];
            if three_d {
                s.input[0] = d;
                s.kernel[0] = k[0];
                s.stride[0] = st[0];
                s.padding[0] = pd[0];
                s.dilation[0] = dl[0];
            }
            prop_assume!(s.output().is_ok());
            // Values with long mantissas, so any change of summation order shows.
            let x: Vec<f32> = data(s.batch * s.in_channels * s.input.iter().product::<usize>(), seed)
                .iter().map(|v| (*v * 0.7371) as f32).collect();
            let w: Vec<f32> = data(s.weight_len(), seed + 1).iter().map(|v| (*v * 0.3119) as f32).collect();
            let b: Vec<f32> = (0..s.out_channels).map(|i| i as f32 * 0.173 - 0.25).collect();
            let b = bias.then_some(b.as_slice());
            let want = executorch_order(&x, &w, b, &s);
            let mut y = vec![f32::NAN; want.len()];
            conv_in_order(&x, &w, b, &mut y, &s, threads).unwrap();
            prop_assert!(y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{s:?}");
        }
    }

    #[test]
    fn in_order_conv_rejects_transposed_and_bad_lengths() {
        let mut s = shape2d(1, 2, 2, 1, [3, 3], [2, 2]);
        let (x, w, mut y) = (vec![1.0f32; 18], vec![1.0f32; 16], vec![0.0f32; 8]);
        assert!(conv_in_order(&x, &w, None, &mut y, &s, 1).is_ok());
        assert!(conv_in_order(&x[..17], &w, None, &mut y, &s, 1).is_err());
        s.transposed = true;
        assert!(conv_in_order(&x, &w, None, &mut y, &s, 1).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn conv_matches_reference(
            batch in 1usize..3, g in 1usize..4, cin_g in 1usize..4, cout_g in 1usize..4,
            one_d in any::<bool>(), h in 1usize..9, wdt in 1usize..10, kh in 1usize..4, kw in 1usize..4,
            sh in 1usize..4, sw in 1usize..4, ph in 0usize..3, pw in 0usize..3, dh in 1usize..3, dw in 1usize..3,
            transposed in any::<bool>(), oph in 0usize..3, opw in 0usize..3, bias in any::<bool>(), threads in 1usize..3,
        ) {
            let (h, kh, sh, ph, dh) = if one_d { (1, 1, 1, 0, 1) } else { (h, kh, sh, ph, dh) };
            let mut s = shape2d(batch, g * cin_g, g * cout_g, g, [h, wdt], [kh, kw]);
            s.stride = [1, sh, sw];
            s.padding = [0, ph, pw];
            s.dilation = [1, dh, dw];
            s.transposed = transposed;
            if transposed {
                s.output_padding = [0, oph % sh.max(dh), opw % sw.max(dw)];
            }
            prop_assume!(s.output().is_ok());
            run_case(&s, bias, threads);
        }
    }
}
