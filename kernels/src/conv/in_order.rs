//! Convolution summed in ExecuTorch's reference order ([`conv_in_order`]).

use super::{arg_err, check_buffers, valid_range, ConvShape};
use crate::num::Real;
use crate::simd::Level;
use crate::KResult;

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
/// parallel over output planes. Not for transposed convolutions (see [`crate::conv`]).
pub fn conv_in_order<T: Real>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    s: &ConvShape,
    threads: usize,
    level: Level,
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
        return conv_in_order_gemm(x, w, bias, y, s, o, (isp, osp), threads, level);
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
                            if lo >= hi {
                                // No output reads this tap inside the input (its range can sit
                                // past the row: `lo + off` may be negative).
                                continue;
                            }
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
    crate::par::chunks(y, osp, threads > 1, plane);
    Ok(())
}

/// [`conv_in_order`] for groups of several output channels: per batch and group, an in-order
/// GEMM (`ordered`) of the group's weights `[cg_out, cg_in·kvol]` with the input's columns
/// (im2col, built panel by panel; padded taps read 0, which adds nothing to a sum that starts
/// at +0), then the bias.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_in_order_gemm<T: Real>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    s: &ConvShape,
    o: [usize; 3],
    (isp, osp): (usize, usize),
    threads: usize,
    level: Level,
) -> KResult {
    use crate::ordered::{gemm_in_order, PackedA, NR};
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
            gemm_in_order(yg, osp, osp, &a, pack, threads, level)?;
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
