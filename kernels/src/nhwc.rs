//! The Ferrite backend's 2-D convolution over channels-last (NHWC) activations, with weights
//! packed once, when a partition initialises.
//!
//! Three strategies, chosen from the geometry when the convolution is built:
//! - **pointwise** (1×1, stride 1, no padding, one group): the NHWC input *is* the GEMM's
//!   left-hand side (`pixels × in_channels`), so the convolution is one GEMM with no copy;
//! - **depthwise** (one group per channel, one output per channel): a dedicated kernel that
//!   vectorises across channels, one output row per task;
//! - **general** (any kernel, stride, padding, dilation and group count): blocks of output pixels
//!   are gathered into a small patch matrix (implicit im2col, cache-sized, per thread) and
//!   multiplied with each group's packed weights.
//!
//! Bias and the fused activation clamp are applied as each register tile is stored. The vector
//! code is in [`super::simd`]; everything here is safe.

use super::simd::rows::Unary;
use super::simd::{self, Level, PackedB, PackedDw, Window};
use super::{KResult, KernelError};

/// Geometry of a 2-D convolution over NHWC tensors (`weight` is PyTorch's `[out, in/groups,
/// kh, kw]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dGeometry {
    /// Batch.
    pub batch: usize,
    /// Input height and width.
    pub input: [usize; 2],
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Padding (symmetric, as PyTorch's).
    pub padding: [usize; 2],
    /// Dilation.
    pub dilation: [usize; 2],
    /// Groups.
    pub groups: usize,
}

impl Conv2dGeometry {
    /// The geometry of a PyTorch convolution whose input is `[N, C, H, W]` or, for a 1-D
    /// convolution, `[N, C, L]` (run as a 2-D one of height 1), with `weight` sizes
    /// `[O, C/groups, kh, kw]` (or `[O, C/groups, k]`) and the operator's stride, padding and
    /// dilation lists (one entry for every spatial dimension, or one for all). `None` when the
    /// arguments do not form a convolution of this kind (negative or zero entries included).
    pub fn from_nchw(
        input: &[usize],
        weight: &[usize],
        stride: &[i64],
        padding: &[i64],
        dilation: &[i64],
        groups: i64,
    ) -> Option<Self> {
        let one_d = input.len() == 3;
        let pair = |l: &[i64], min: i64, unit: i64| -> Option<[usize; 2]> {
            let v = match l {
                [a] if one_d => [unit, *a],
                [a] => [*a, *a],
                [a, b] if !one_d => [*a, *b],
                _ => return None,
            };
            (v[0] >= min && v[1] >= min).then(|| [v[0] as usize, v[1] as usize])
        };
        let (n, c, h, w, o, kh, kw) = match (input, weight) {
            (&[n, c, h, w], &[o, _, kh, kw]) => (n, c, h, w, o, kh, kw),
            (&[n, c, l], &[o, _, k]) => (n, c, 1, l, o, 1, k),
            _ => return None,
        };
        Some(Conv2dGeometry {
            batch: n,
            input: [h, w],
            in_channels: c,
            out_channels: o,
            kernel: [kh, kw],
            stride: pair(stride, 1, 1)?,
            padding: pair(padding, 0, 0)?,
            dilation: pair(dilation, 1, 1)?,
            groups: usize::try_from(groups).ok().filter(|&g| g >= 1)?,
        })
    }

    /// Output height and width, or an error for an impossible geometry.
    pub fn output(&self) -> KResult<[usize; 2]> {
        let bad = |m: String| KernelError::Argument(format!("conv2d (NHWC): {m}"));
        if self.stride.contains(&0) || self.dilation.contains(&0) || self.groups == 0 {
            return Err(bad("stride, dilation and groups must be at least 1".into()));
        }
        if !self.in_channels.is_multiple_of(self.groups) || !self.out_channels.is_multiple_of(self.groups) {
            return Err(bad(format!(
                "{} input and {} output channels do not divide into {} groups",
                self.in_channels, self.out_channels, self.groups
            )));
        }
        let mut out = [0; 2];
        for (d, out) in out.iter_mut().enumerate() {
            let span = self.kernel[d]
                .checked_sub(1)
                .and_then(|k| k.checked_mul(self.dilation[d]))
                .and_then(|k| k.checked_add(1))
                .ok_or_else(|| bad("empty kernel".into()))?;
            let padded = self.padding[d]
                .checked_mul(2)
                .and_then(|p| p.checked_add(self.input[d]))
                .ok_or_else(|| bad("padding overflows".into()))?;
            if padded < span {
                return Err(bad(format!("kernel span {span} is larger than the padded input {padded}")));
            }
            *out = (padded - span) / self.stride[d] + 1;
        }
        let elements = |dims: &[usize]| dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let input = [self.batch, self.input[0], self.input[1], self.in_channels];
        let output = [self.batch, out[0], out[1], self.out_channels];
        if elements(&input).is_none() || elements(&output).is_none() {
            return Err(bad("tensor sizes overflow".into()));
        }
        Ok(out)
    }
}

/// The scratch a fused pointwise → depthwise task keeps its band of pointwise output in (at
/// least one window's height of rows): small, so the band, the input rows it is made from and
/// the output rows stay in L2 together. On mobilenet_v2 (AVX2, 512 KiB L2) 64 KiB to 512 KiB
/// bands ran within noise of each other.
const FUSED_BAND_BYTES: usize = 64 * 1024;

/// The smallest intermediate image (bytes) worth fusing: smaller ones stay in cache between the
/// two convolutions anyway (fusing from 64 KiB up made mobilenet_v2 slower; 256 KiB and 1 MiB
/// were even).
const FUSE_MIN_BYTES: usize = 1 << 20;

thread_local! {
    /// The band of a fused pointwise → depthwise task (see [`Conv2d::run_into_depthwise`]).
    static FUSED_SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

#[derive(Debug, Clone)]
enum Strategy {
    Pointwise(PackedB),
    Depthwise(PackedDw),
    General(Vec<PackedB>),
}

/// A convolution ready to run: geometry, packed weights, fused clamp.
#[derive(Debug, Clone)]
pub struct Conv2d {
    geometry: Conv2dGeometry,
    output: [usize; 2],
    strategy: Strategy,
    clamp: (f32, f32),
}

/// Output pixels per task of the general strategy: enough to amortise a task, and a patch
/// matrix (`pixels × k`) that stays in L2.
fn patch_rows(k: usize, mr: usize) -> usize {
    let rows = (64 * 1024 / k.max(1)).clamp(mr, 256);
    rows / mr * mr
}

impl Conv2d {
    /// Packs `weight` (`[out, in/groups, kh, kw]`, row-major) and `bias` for `level`, with the
    /// output clamped to `clamp` (`(-inf, inf)` for none).
    pub fn new(
        level: Level,
        geometry: Conv2dGeometry,
        weight: &[f32],
        bias: Option<&[f32]>,
        clamp: (f32, f32),
    ) -> KResult<Self> {
        let output = geometry.output()?;
        let g = geometry;
        let (cin_g, cout_g) = (g.in_channels / g.groups, g.out_channels / g.groups);
        let taps = g.kernel[0]
            .checked_mul(g.kernel[1])
            .ok_or_else(|| KernelError::Argument("conv2d: kernel too large".into()))?;
        let expected = [g.out_channels, cin_g, g.kernel[0], g.kernel[1]]
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| KernelError::Argument("conv2d: weight size overflows".into()))?;
        if weight.len() != expected {
            return Err(KernelError::Length { what: "conv2d weight", expected, actual: weight.len() });
        }
        if let Some(b) = bias {
            if b.len() != g.out_channels {
                return Err(KernelError::Length { what: "conv2d bias", expected: g.out_channels, actual: b.len() });
            }
        }
        if g.in_channels == 0 {
            return Err(KernelError::Argument("conv2d: needs at least one input channel".into()));
        }
        if clamp.0.is_nan() || clamp.1.is_nan() || clamp.0 > clamp.1 {
            return Err(KernelError::Argument(format!("conv2d: invalid clamp [{}, {}]", clamp.0, clamp.1)));
        }
        let strategy = if g.groups == 1 && taps == 1 && g.stride == [1, 1] && g.padding == [0, 0] {
            Strategy::Pointwise(PackedB::from_columns(level, g.in_channels, g.out_channels, bias, weight)?)
        } else if g.groups == g.in_channels && g.out_channels == g.in_channels {
            Strategy::Depthwise(PackedDw::new(level, g.in_channels, taps, weight, bias)?)
        } else {
            let k = taps * cin_g;
            let packs = (0..g.groups)
                .map(|grp| {
                    let b = bias.map(|b| &b[grp * cout_g..(grp + 1) * cout_g]);
                    // Patch columns are ordered (tap, channel); weights are (out, channel, tap).
                    PackedB::new(level, k, cout_g, b, |p, j| {
                        let (tap, ci) = (p / cin_g, p % cin_g);
                        weight[((grp * cout_g + j) * cin_g + ci) * taps + tap]
                    })
                })
                .collect::<KResult<Vec<_>>>()?;
            Strategy::General(packs)
        };
        Ok(Conv2d { geometry, output, strategy, clamp })
    }

    /// The geometry.
    pub fn geometry(&self) -> &Conv2dGeometry {
        &self.geometry
    }

    /// Output `[height, width]`.
    pub fn output(&self) -> [usize; 2] {
        self.output
    }

    /// Which strategy runs (`pointwise`, `depthwise`, `general`).
    pub fn strategy(&self) -> &'static str {
        match self.strategy {
            Strategy::Pointwise(_) => "pointwise",
            Strategy::Depthwise(_) => "depthwise",
            Strategy::General(_) => "general",
        }
    }

    /// Bytes of packed weights held.
    pub fn packed_bytes(&self) -> usize {
        match &self.strategy {
            Strategy::Pointwise(b) => b.bytes(),
            Strategy::Depthwise(d) => d.bytes(),
            Strategy::General(v) => v.iter().map(PackedB::bytes).sum(),
        }
    }

    /// Runs on `x` (`[batch, h, w, in]`) into `y` (`[batch, oh, ow, out]`), over rayon's
    /// current pool when `threads > 1`.
    pub fn run(&self, x: &[f32], y: &mut [f32], threads: usize) -> KResult {
        let g = &self.geometry;
        let [oh, ow] = self.output;
        let pixels_in = g.input[0] * g.input[1];
        let in_len = g.batch * pixels_in * g.in_channels;
        let out_len = g.batch * oh * ow * g.out_channels;
        if x.len() != in_len {
            return Err(KernelError::Length { what: "conv2d input", expected: in_len, actual: x.len() });
        }
        if y.len() != out_len {
            return Err(KernelError::Length { what: "conv2d output", expected: out_len, actual: y.len() });
        }
        if out_len == 0 {
            return Ok(());
        }
        let (lo, hi) = self.clamp;
        // Small convolutions stay on one thread: a fork-join costs more than they do.
        let macs = out_len.saturating_mul(g.kernel[0] * g.kernel[1] * (g.in_channels / g.groups.max(1)).max(1));
        let threads = if macs < super::dense::PAR_MIN_MACS { 1 } else { threads };
        match &self.strategy {
            Strategy::Pointwise(b) => super::dense::gemm_rows(x, y, b, self.clamp, threads),
            Strategy::Depthwise(p) => {
                let dg = self.window();
                let image = pixels_in * g.in_channels;
                crate::par::try_chunks(y, ow * g.out_channels, threads > 1, |r, yr| {
                    let n = r / oh;
                    simd::dw_row(&x[n * image..(n + 1) * image], &dg, r % oh, p, yr, lo, hi)
                })
            }
            Strategy::General(packs) => {
                let cin_g = g.in_channels / g.groups;
                let k = g.kernel[0] * g.kernel[1] * cin_g;
                let mr = packs.first().map_or(1, |b| b.level().mr());
                let rows = patch_rows(k, mr);
                let cout = g.out_channels;
                let block = |patch: &mut Vec<f32>, blk: usize, yb: &mut [f32]| -> KResult {
                    let r0 = blk * rows;
                    let m = yb.len() / cout;
                    patch.resize(m * k, 0.0);
                    for (grp, b) in packs.iter().enumerate() {
                        self.gather(x, grp, r0, m, patch);
                        simd::gemm(patch, k, m, b, &mut yb[grp * b.n()..], cout, lo, hi)?;
                    }
                    Ok(())
                };
                crate::par::try_chunks_with(y, rows * cout, threads > 1, &Vec::new, block)
            }
        }
    }

    /// The sliding window of this convolution over one image.
    fn window(&self) -> Window {
        let g = &self.geometry;
        Window {
            h: g.input[0],
            w: g.input[1],
            c: g.in_channels,
            oh: self.output[0],
            ow: self.output[1],
            kernel: g.kernel,
            stride: g.stride,
            padding: g.padding,
            dilation: g.dilation,
        }
    }

    /// Whether `self` (a pointwise convolution) and `next` (a depthwise convolution of its
    /// output) run better as one [`Conv2d::run_into_depthwise`] than apart: their geometries
    /// chain, and the intermediate image is too large to stay in cache between the two (smaller
    /// ones gain nothing from the banding).
    pub fn fuses_into_depthwise(&self, next: &Conv2d) -> bool {
        let image_bytes = self.output[0] * self.output[1] * self.geometry.out_channels * 4;
        self.chain(next).is_some() && image_bytes >= FUSE_MIN_BYTES
    }

    /// The packed weights of `self` (pointwise) and `next` (depthwise) when `next` reads
    /// exactly what `self` writes, at the same SIMD level.
    fn chain<'a>(&'a self, next: &'a Conv2d) -> Option<(&'a PackedB, &'a PackedDw)> {
        let (Strategy::Pointwise(b), Strategy::Depthwise(p)) = (&self.strategy, &next.strategy) else { return None };
        let (g, n) = (&self.geometry, &next.geometry);
        let chained =
            b.level() == p.level() && g.batch == n.batch && self.output == n.input && g.out_channels == n.in_channels;
        chained.then_some((b, p))
    }

    /// Runs `self` (pointwise) then `next` (depthwise) on `x` into `y`, without writing the
    /// intermediate image: each task computes the pointwise output a band of rows at a time
    /// into a scratch of about 64 KiB and runs the depthwise rows that band
    /// completes while it is in cache. Bit-identical to the two run apart (same products, same
    /// order). Tasks split each image's output rows; the band rows two tasks share are computed
    /// by both.
    ///
    /// `between` is an element-wise activation applied to the pointwise output before the
    /// depthwise convolution reads it (hard-swish in MobileNet V3, SiLU in EfficientNet), as
    /// [`simd::rows::unary`] computes it.
    pub fn run_into_depthwise(
        &self,
        next: &Conv2d,
        between: Option<Unary>,
        x: &[f32],
        y: &mut [f32],
        threads: usize,
    ) -> KResult {
        self.run_banded(next, between, x, y, threads, FUSED_BAND_BYTES)
    }

    /// [`Conv2d::run_into_depthwise`] with bands of about `band_bytes`.
    fn run_banded(
        &self,
        next: &Conv2d,
        between: Option<Unary>,
        x: &[f32],
        y: &mut [f32],
        threads: usize,
        band_bytes: usize,
    ) -> KResult {
        let (g, n) = (&self.geometry, &next.geometry);
        let Some((b, p)) = self.chain(next) else {
            return Err(KernelError::Argument(format!(
                "fused convolution: needs a pointwise convolution whose output {:?}×{} is the input {:?}×{} \
                 of a depthwise one at the same SIMD level",
                self.output, g.out_channels, n.input, n.in_channels
            )));
        };
        let [h, w] = g.input;
        let (cin, c) = (g.in_channels, g.out_channels);
        let [oh, ow] = next.output;
        let in_image = h * w * cin;
        let out_image = oh * ow * c;
        if x.len() != g.batch * in_image {
            return Err(KernelError::Length { what: "conv2d input", expected: g.batch * in_image, actual: x.len() });
        }
        if y.len() != g.batch * out_image {
            return Err(KernelError::Length { what: "conv2d output", expected: g.batch * out_image, actual: y.len() });
        }
        if y.is_empty() {
            return Ok(());
        }
        let dg = next.window();
        let row = w * c;
        // Input rows per band: the scratch budget, at least one window's height.
        let span = (dg.kernel[0] - 1) * dg.dilation[0] + 1;
        let band_in = (band_bytes / (row * 4).max(1)).max(span);
        let band_out = (band_in - span) / dg.stride[0] + 1;
        let macs = (h * w * cin * c).saturating_add(out_image.saturating_mul(dg.kernel[0] * dg.kernel[1]));
        let parts = if threads > 1 && macs >= super::dense::PAR_MIN_MACS { threads.min(oh) } else { 1 };
        let part_rows = oh.div_ceil(parts);
        let (lo, hi) = next.clamp;
        for (xi, yi) in x.chunks_exact(in_image).zip(y.chunks_exact_mut(out_image)) {
            crate::par::try_chunks(yi, part_rows * ow * c, parts > 1, |part, yp| {
                let o0 = part * part_rows;
                let o1 = o0 + yp.len() / (ow * c);
                let mut band = FUSED_SCRATCH.take();
                // The band holds pointwise output rows `s0..s1`.
                let (mut s0, mut s1) = (0, 0);
                let mut run = || -> KResult {
                    for ob in (o0..o1).step_by(band_out) {
                        let oe = (ob + band_out).min(o1);
                        let r0 = (ob * dg.stride[0]).saturating_sub(dg.padding[0]).min(h);
                        let r1 = ((oe - 1) * dg.stride[0] + span).saturating_sub(dg.padding[0]).min(h).max(r0);
                        // Rows the previous band computed and this one reads move to the front.
                        let keep = if r0 >= s0 && r0 < s1 { s1.min(r1) - r0 } else { 0 };
                        if keep > 0 {
                            band.copy_within((r0 - s0) * row..(r0 - s0 + keep) * row, 0);
                        }
                        band.resize((r1 - r0) * row, 0.0);
                        let new = r0 + keep..r1;
                        if !new.is_empty() {
                            super::dense::gemm_rows(
                                &xi[new.start * w * cin..new.end * w * cin],
                                &mut band[keep * row..],
                                b,
                                self.clamp,
                                1,
                            )?;
                            if let Some(op) = between {
                                simd::rows::unary_in_place(b.level(), op, &mut band[keep * row..])?;
                            }
                        }
                        (s0, s1) = (r0, r1);
                        for oy in ob..oe {
                            let yr = &mut yp[(oy - o0) * ow * c..(oy - o0 + 1) * ow * c];
                            simd::dw_row_band(&band, r0, &dg, oy, p, yr, lo, hi)?;
                        }
                    }
                    Ok(())
                };
                let result = run();
                FUSED_SCRATCH.set(band);
                result
            })?;
        }
        Ok(())
    }

    /// Gathers the patches of output pixels `r0..r0 + m` (flattened over batch and space) for
    /// group `grp` into `patch` (`m × taps·cin_g`, columns ordered (tap, channel)); taps in the
    /// padding are zero.
    fn gather(&self, x: &[f32], grp: usize, r0: usize, m: usize, patch: &mut [f32]) {
        let g = &self.geometry;
        let [oh, ow] = self.output;
        let [h, w] = g.input;
        let cin_g = g.in_channels / g.groups;
        let [kh, kw] = g.kernel;
        let k = kh * kw * cin_g;
        // With one group and no dilation a window row is one contiguous run of the input.
        let runs = g.groups == 1 && g.dilation[1] == 1;
        for (i, dst) in patch.chunks_exact_mut(k).take(m).enumerate() {
            let r = r0 + i;
            let (n, rem) = (r / (oh * ow), r % (oh * ow));
            let (oy, ox) = (rem / ow, rem % ow);
            let x0 = (ox * g.stride[1]).checked_sub(g.padding[1]).filter(|&v| v + kw <= w);
            for ki in 0..kh {
                let iy = (oy * g.stride[0] + ki * g.dilation[0]).checked_sub(g.padding[0]).filter(|&v| v < h);
                let row = &mut dst[ki * kw * cin_g..(ki + 1) * kw * cin_g];
                match (iy, x0) {
                    (None, _) => row.fill(0.0),
                    (Some(iy), Some(x0)) if runs => {
                        let s = ((n * h + iy) * w + x0) * g.in_channels;
                        copy(row, &x[s..s + kw * cin_g]);
                    }
                    (Some(iy), _) => {
                        for (kj, d) in row.chunks_exact_mut(cin_g).enumerate() {
                            let ix =
                                (ox * g.stride[1] + kj * g.dilation[1]).checked_sub(g.padding[1]).filter(|&v| v < w);
                            match ix {
                                Some(ix) => {
                                    let s = ((n * h + iy) * w + ix) * g.in_channels + grp * cin_g;
                                    copy(d, &x[s..s + cin_g]);
                                }
                                None => d.fill(0.0),
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)` without a `memcpy` call for the short runs patches are made of.
#[inline(always)]
fn copy(dst: &mut [f32], src: &[f32]) {
    if dst.len() > 32 {
        dst.copy_from_slice(src);
        return;
    }
    let mut d = dst.chunks_exact_mut(4);
    let mut s = src.chunks_exact(4);
    for (a, b) in (&mut d).zip(&mut s) {
        a.copy_from_slice(b);
    }
    for (a, b) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *a = *b;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::conv::{conv, ConvShape};

    fn nchw_to_nhwc(x: &[f32], n: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
        let mut y = vec![0.0; x.len()];
        for b in 0..n {
            for ch in 0..c {
                for i in 0..h * w {
                    y[(b * h * w + i) * c + ch] = x[(b * c + ch) * h * w + i];
                }
            }
        }
        y
    }

    /// Runs the portable NCHW convolution and Ferrite's NHWC one at `level`, returning
    /// (reference, got), both NHWC.
    fn both(level: Level, g: Conv2dGeometry, seed: u64, bias: bool, clamp: (f32, f32)) -> (Vec<f32>, Vec<f32>) {
        let cin_g = g.in_channels / g.groups;
        let mut s = seed;
        let mut next = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let x: Vec<f32> = (0..g.batch * g.in_channels * g.input[0] * g.input[1]).map(|_| next()).collect();
        let w: Vec<f32> = (0..g.out_channels * cin_g * g.kernel[0] * g.kernel[1]).map(|_| next()).collect();
        let b: Option<Vec<f32>> = bias.then(|| (0..g.out_channels).map(|_| next()).collect());
        let [oh, ow] = g.output().unwrap();
        let shape = ConvShape {
            batch: g.batch,
            in_channels: g.in_channels,
            out_channels: g.out_channels,
            groups: g.groups,
            input: [1, g.input[0], g.input[1]],
            kernel: [1, g.kernel[0], g.kernel[1]],
            stride: [1, g.stride[0], g.stride[1]],
            padding: [0, g.padding[0], g.padding[1]],
            dilation: [1, g.dilation[0], g.dilation[1]],
            output_padding: [0; 3],
            transposed: false,
        };
        let mut want = vec![0.0f32; g.batch * g.out_channels * oh * ow];
        conv(&x, &w, b.as_deref(), &mut want, &shape, 1, Level::Portable).unwrap();
        let want: Vec<f32> = nchw_to_nhwc(&want, g.batch, g.out_channels, oh, ow)
            .into_iter()
            .map(|v| v.clamp(clamp.0, clamp.1))
            .collect();
        let xn = nchw_to_nhwc(&x, g.batch, g.in_channels, g.input[0], g.input[1]);
        let c = Conv2d::new(level, g, &w, b.as_deref(), clamp).unwrap();
        let mut got = vec![f32::NAN; want.len()];
        c.run(&xn, &mut got, 1).unwrap();
        let mut got2 = vec![f32::NAN; want.len()];
        rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap().install(|| c.run(&xn, &mut got2, 3)).unwrap();
        assert_eq!(got, got2, "threads change the result");
        (want, got)
    }

    fn close(want: &[f32], got: &[f32]) -> bool {
        want.iter().zip(got).all(|(a, b)| (a - b).abs() <= 1e-4 * a.abs().max(1.0))
    }

    #[test]
    fn mobilenet_shapes_at_every_level() {
        let geo = |cin, cout, k, s, p, groups, hw| Conv2dGeometry {
            batch: 1,
            input: [hw, hw],
            in_channels: cin,
            out_channels: cout,
            kernel: [k, k],
            stride: [s, s],
            padding: [p, p],
            dilation: [1, 1],
            groups,
        };
        for level in Level::available() {
            for (g, strategy) in [
                (geo(3, 32, 3, 2, 1, 1, 17), "general"),
                (geo(32, 32, 3, 1, 1, 32, 12), "depthwise"),
                (geo(96, 96, 3, 2, 1, 96, 13), "depthwise"),
                (geo(32, 16, 1, 1, 0, 1, 9), "pointwise"),
                (geo(24, 144, 1, 1, 0, 1, 7), "pointwise"),
                // Taller than the depthwise kernel's 8 on-stack rows.
                (Conv2dGeometry { kernel: [11, 3], padding: [5, 1], ..geo(16, 16, 3, 1, 1, 16, 14) }, "depthwise"),
            ] {
                assert_eq!(
                    Conv2d::new(
                        level,
                        g,
                        &vec![0.0; g.out_channels * (g.in_channels / g.groups) * g.kernel[0] * g.kernel[1]],
                        None,
                        (0.0, 6.0)
                    )
                    .unwrap()
                    .strategy(),
                    strategy
                );
                let (want, got) = both(level, g, 7, true, (0.0, 6.0));
                assert!(close(&want, &got), "{level:?} {g:?}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn matches_the_portable_convolution_at_every_level(
            batch in 1usize..3,
            groups in 1usize..4,
            cin_g in 1usize..6,
            cout_g in 1usize..7,
            depthwise in any::<bool>(),
            h in 1usize..9,
            w in 1usize..9,
            kh in 1usize..4,
            kw in 1usize..6,
            sh in 1usize..3,
            sw in 1usize..3,
            ph in 0usize..3,
            pw in 0usize..3,
            dh in 1usize..3,
            dw in 1usize..3,
            bias in any::<bool>(),
            clamp in prop_oneof![Just((f32::NEG_INFINITY, f32::INFINITY)), Just((0.0f32, 6.0f32)), Just((-0.5f32, 0.25f32))],
            seed in any::<u64>(),
        ) {
            let (cin, cout) = if depthwise { (groups * cin_g * 3, groups * cin_g * 3) } else { (groups * cin_g, groups * cout_g) };
            let groups = if depthwise { cin } else { groups };
            let g = Conv2dGeometry {
                batch,
                input: [h + kh * dh, w + kw * dw],
                in_channels: cin,
                out_channels: cout,
                kernel: [kh, kw],
                stride: [sh, sw],
                padding: [ph, pw],
                dilation: [dh, dw],
                groups,
            };
            for level in Level::available() {
                let (want, got) = both(level, g, seed, bias, clamp);
                prop_assert!(close(&want, &got), "{:?} {:?}", level, g);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        /// A pointwise convolution run into a depthwise one band by band gives exactly what the
        /// two give apart, whatever the band height and the number of tasks.
        #[test]
        fn pointwise_into_depthwise_is_bit_identical_to_the_two_apart(
            batch in 1usize..3,
            cin in 1usize..7,
            c in 1usize..20,
            h in 1usize..12,
            w in 1usize..7,
            kh in 1usize..6,
            kw in 1usize..4,
            sh in 1usize..3,
            ph in 0usize..3,
            dh in 1usize..3,
            band_rows in 1usize..5,
            threads in 1usize..4,
            between in prop_oneof![Just(None), Just(Some(Unary::Silu)), Just(Some(Unary::Hardswish))],
            seed in any::<u64>(),
        ) {
            let mut s = seed;
            let mut next = move || {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            };
            let input = [h + kh * dh, w + kw];
            let pw = Conv2dGeometry {
                batch, input, in_channels: cin, out_channels: c, kernel: [1, 1],
                stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1,
            };
            let dw = Conv2dGeometry {
                in_channels: c, kernel: [kh, kw], stride: [sh, 1], padding: [ph, 1], dilation: [dh, 1], groups: c, ..pw
            };
            let wp: Vec<f32> = (0..c * cin).map(|_| next()).collect();
            let wd: Vec<f32> = (0..c * kh * kw).map(|_| next()).collect();
            let (bp, bd): (Vec<f32>, Vec<f32>) = ((0..c).map(|_| next()).collect(), (0..c).map(|_| next()).collect());
            let x: Vec<f32> = (0..batch * input[0] * input[1] * cin).map(|_| next()).collect();
            for level in Level::available() {
                let a = Conv2d::new(level, pw, &wp, Some(&bp), (0.0, 6.0)).unwrap();
                let b = Conv2d::new(level, dw, &wd, Some(&bd), (-0.5, 3.0)).unwrap();
                let [oh, ow] = b.output();
                let mut mid = vec![f32::NAN; batch * input[0] * input[1] * c];
                let mut want = vec![f32::NAN; batch * oh * ow * c];
                a.run(&x, &mut mid, 1).unwrap();
                if let Some(op) = between {
                    let apart = mid.clone();
                    simd::rows::unary(level, op, &apart, &mut mid).unwrap();
                }
                b.run(&mid, &mut want, 1).unwrap();
                let mut got = vec![f32::NAN; want.len()];
                let band_bytes = band_rows * input[1] * c * 4;
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| a.run_banded(&b, between, &x, &mut got, threads, band_bytes))
                    .unwrap();
                prop_assert_eq!(
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{:?} {:?}", level, dw
                );
            }
        }
    }

    #[test]
    fn pointwise_into_depthwise_checks_its_pair() {
        let pw = Conv2dGeometry {
            batch: 1,
            input: [8, 8],
            in_channels: 4,
            out_channels: 6,
            kernel: [1, 1],
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        };
        let dw = Conv2dGeometry { in_channels: 6, kernel: [3, 3], padding: [1, 1], groups: 6, ..pw };
        let level = Level::Portable;
        let a = Conv2d::new(level, pw, &[0.5; 24], None, (f32::NEG_INFINITY, f32::INFINITY)).unwrap();
        let b = Conv2d::new(level, dw, &[0.5; 54], None, (f32::NEG_INFINITY, f32::INFINITY)).unwrap();
        // Too small to be worth it, but chained; the reverse order is no pair at all.
        assert!(!a.fuses_into_depthwise(&b));
        assert!(!b.fuses_into_depthwise(&a));
        assert!(b.run_into_depthwise(&a, None, &[0.0; 384], &mut [0.0; 256], 1).is_err());
        assert!(a.run_into_depthwise(&b, None, &[0.0; 255], &mut [0.0; 384], 1).is_err());
        assert!(a.run_into_depthwise(&b, None, &[0.0; 256], &mut [0.0; 383], 1).is_err());
        let mut y = vec![0.0; 384];
        a.run_into_depthwise(&b, None, &[1.0; 256], &mut y, 1).unwrap();
        // Centre pixel: nine taps of 0.5 × (4 × 0.5 × 1.0).
        assert_eq!(y[(3 * 8 + 3) * 6], 9.0);
        let wide = Conv2dGeometry { input: [64, 64], out_channels: 64, ..pw };
        let a = Conv2d::new(level, wide, &[0.0; 256], None, (0.0, 6.0)).unwrap();
        let b = Conv2d::new(
            level,
            Conv2dGeometry { input: [64, 64], in_channels: 64, out_channels: 64, groups: 64, ..dw },
            &[0.0; 576],
            None,
            (0.0, 6.0),
        )
        .unwrap();
        assert!(a.fuses_into_depthwise(&b));
    }

    #[test]
    fn wrong_buffers_and_geometry_are_errors() {
        let g = Conv2dGeometry {
            batch: 1,
            input: [4, 4],
            in_channels: 2,
            out_channels: 3,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        };
        let level = Level::Portable;
        assert!(Conv2d::new(level, g, &[0.0; 53], None, (0.0, 1.0)).is_err());
        assert!(Conv2d::new(level, g, &[0.0; 54], Some(&[0.0; 2]), (0.0, 1.0)).is_err());
        assert!(Conv2d::new(level, g, &[0.0; 54], None, (1.0, 0.0)).is_err());
        assert!(Conv2d::new(level, Conv2dGeometry { input: [1, 1], ..g }, &[0.0; 54], None, (0.0, 1.0)).is_err());
        assert!(Conv2d::new(level, Conv2dGeometry { groups: 2, ..g }, &[0.0; 54], None, (0.0, 1.0)).is_err());
        let c = Conv2d::new(level, g, &[0.0; 54], None, (0.0, 1.0)).unwrap();
        assert!(c.run(&[0.0; 31], &mut [0.0; 12], 1).is_err());
        assert!(c.run(&[0.0; 32], &mut [0.0; 11], 1).is_err());
        assert!(c.run(&[0.0; 32], &mut [0.0; 12], 1).is_ok());
    }
}
