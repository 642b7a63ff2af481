//! Integer kernels for quantized programs: int8 activations times int8 weights, summed in `i32`,
//! with weights packed once (when a partition initialises) and the output requantized in `f32`,
//! as XNNPACK's `qs8` kernels do.
//!
//! - [`QDense`]: `y = x · Wᵀ` over rows of `x` (a linear layer, `W` is `[N, K]`); [`QDenseDynamic`]
//!   the same on f32 rows quantized at every call (dynamic quantization).
//! - [`QDenseGrouped`]: the same with weights in groups along the reduction (one scale per
//!   group, int4 values welcome) and activations quantized per row at every call (torchao's 8da4w).
//! - [`add`]: int8 addition with ExecuTorch's `dequantize → add → quantize` arithmetic, exactly.
//! - [`QConv2d`]: a channels-last (NHWC) 2-D or 1-D convolution: groups of one as a GEMM over
//!   output pixels (pointwise convolutions read the input rows directly, others gather patches),
//!   depthwise convolutions (one channel per group) directly.
//!
//! The activation's zero point is subtracted before the product (so padding contributes nothing
//! and no column sums are needed): `x - zx` fits `i16`, products of two `i16` pairs accumulate in
//! `i32` with `madd` and never saturate (unlike `maddubs` on AVX2, which XNNPACK also avoids).
//! The [`Epilogue`] turns each `i32` sum into the output: `acc · m[c] + o[c]` in `f32`, then for
//! an int8 output `rint(·) + zero_point` clamped to the output range (a fused ReLU or hardtanh
//! narrows that range), for an `f32` output a clamp.
//!
//! SIMD: products multiply as [`Dot::best`] chooses for the level — with VNNI's `vpdpbusd`
//! (AVX-512 VNNI at [`Level::Avx512`], AVX-VNNI at either x86 level; `vnni.rs`: weights packed
//! plus 128, rows read in place, corrected with each row's and each column's sum) where the CPU
//! has it, otherwise the `vpmaddwd` tile of `micro.rs` on AVX2 levels and the portable tile
//! elsewhere. Depthwise convolutions run
//! `vpmaddwd` over blocks of 16 channels on AVX2 and 32 on AVX-512. Results are identical at
//! every level and with every [`Dot`] (integer sums, then the same `f32` operations).

mod add;
mod depthwise;
mod group;
mod micro;
#[cfg(test)]
mod tests;
mod vnni;

use crate::nhwc::Conv2dGeometry;
use crate::simd::Level;
use crate::{KResult, KernelError};

pub use add::{add, AddParams};
pub use group::QDenseGrouped;
pub use micro::{madd_peak, MR, NR};

/// Longest reduction the `i32` sums hold without overflow.
pub const MAX_K: usize = 1 << 16;

/// Products below this many multiply-adds stay on one thread.
const PAR_MIN_MACS: usize = 1 << 19;

/// How `i32` sums become outputs (per output channel `c`): `y = acc · mult[c] + offset[c]`, then
/// [`EpilogueKind`].
#[derive(Debug, Clone, PartialEq)]
pub struct Epilogue {
    mult: Vec<f32>,
    offset: Vec<f32>,
    kind: EpilogueKind,
}

/// The output of an [`Epilogue`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EpilogueKind {
    /// int8: `clamp(rint(y) + zero_point, min, max)`.
    Int8 {
        /// Output zero point.
        zero_point: i32,
        /// Smallest output value.
        min: i32,
        /// Largest output value.
        max: i32,
    },
    /// f32: `clamp(y, lo, hi)`.
    Float {
        /// Lower bound (`-inf` for none).
        lo: f32,
        /// Upper bound (`inf` for none).
        hi: f32,
    },
}

impl Epilogue {
    /// Requantization to int8: the input's scale, each output channel's weight scale, the float
    /// bias (or none), the output's scale and zero point, and the output range.
    pub fn int8(
        x_scale: f64,
        w_scales: &[f64],
        bias: Option<&[f32]>,
        out_scale: f64,
        zero_point: i32,
        (min, max): (i32, i32),
    ) -> KResult<Self> {
        let bad = |m: String| KernelError::Argument(format!("int8 requantization: {m}"));
        if !(out_scale.is_finite() && out_scale > 0.0) {
            return Err(bad(format!("output scale {out_scale} must be finite and positive")));
        }
        if !(-128..=127).contains(&min) || !(-128..=127).contains(&max) || min > max {
            return Err(bad(format!("output range [{min}, {max}] is not an int8 range")));
        }
        if !(-128..=127).contains(&zero_point) {
            return Err(bad(format!("output zero point {zero_point} is outside int8")));
        }
        let (mult, offset) = Self::scales(x_scale, w_scales, bias, 1.0 / out_scale)?;
        Ok(Epilogue { mult, offset, kind: EpilogueKind::Int8 { zero_point, min, max } })
    }

    /// Dequantized output: `clamp(acc · x_scale · w_scale[c] + bias[c], lo, hi)`.
    pub fn float(x_scale: f64, w_scales: &[f64], bias: Option<&[f32]>, (lo, hi): (f32, f32)) -> KResult<Self> {
        if lo.is_nan() || hi.is_nan() || lo > hi {
            return Err(KernelError::Argument(format!("int8 product: invalid clamp [{lo}, {hi}]")));
        }
        let (mult, offset) = Self::scales(x_scale, w_scales, bias, 1.0)?;
        Ok(Epilogue { mult, offset, kind: EpilogueKind::Float { lo, hi } })
    }

    fn scales(x_scale: f64, w_scales: &[f64], bias: Option<&[f32]>, inv_out: f64) -> KResult<(Vec<f32>, Vec<f32>)> {
        let bad = |m: String| KernelError::Argument(format!("int8 product: {m}"));
        if !(x_scale.is_finite() && x_scale > 0.0) {
            return Err(bad(format!("input scale {x_scale} must be finite and positive")));
        }
        if let Some(s) = w_scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(bad(format!("weight scale {s} must be finite and positive")));
        }
        if let Some(b) = bias {
            if b.len() != w_scales.len() {
                return Err(KernelError::Length { what: "int8 bias", expected: w_scales.len(), actual: b.len() });
            }
        }
        let mult = w_scales.iter().map(|&s| (x_scale * s * inv_out) as f32).collect();
        let offset = match bias {
            Some(b) => b.iter().map(|&v| (f64::from(v) * inv_out) as f32).collect(),
            None => vec![0.0; w_scales.len()],
        };
        Ok((mult, offset))
    }

    /// Output channels.
    pub fn channels(&self) -> usize {
        self.mult.len()
    }

    /// The output kind.
    pub fn kind(&self) -> EpilogueKind {
        self.kind
    }
}

/// An output element type of the int8 kernels: `i8` (requantized) or `f32` (dequantized).
pub trait QOut: Copy + Default + Send + Sync + 'static {
    /// Writes `out[j] = epilogue(acc[j])` for output channels `c0 + j`.
    fn apply(ep: &Epilogue, acc: &[i32], c0: usize, out: &mut [Self]) -> KResult;

    /// `out` as int8 values, when this is `i8` (kernels that requantize in registers use it).
    #[doc(hidden)]
    fn as_int8(out: &mut [Self]) -> Option<&mut [i8]> {
        let _ = out;
        None
    }
}

impl QOut for i8 {
    #[inline(always)]
    fn as_int8(out: &mut [i8]) -> Option<&mut [i8]> {
        Some(out)
    }

    #[inline(always)]
    fn apply(ep: &Epilogue, acc: &[i32], c0: usize, out: &mut [i8]) -> KResult {
        let EpilogueKind::Int8 { zero_point, min, max } = ep.kind else {
            return Err(KernelError::Argument("int8 product: an f32 epilogue cannot write int8".into()));
        };
        let n = out.len();
        // Every operand cut to `n`: the loop then has no bounds checks, and the compiler's vector
        // loop needs no scalar iterations after it (with one, a 32-channel row ran half scalar).
        let (acc, m, o) = (&acc[..n], &ep.mult[c0..c0 + n], &ep.offset[c0..c0 + n]);
        let (lo, hi) = ((min - zero_point) as f32, (max - zero_point) as f32);
        // XNNPACK's "fp32 magic" conversion: after clamping, |y| ≤ 255, and adding 1.5 · 2²³
        // rounds it to an integer (half to even) held in the low mantissa bits.
        const MAGIC: f32 = 12_582_912.0;
        let magic_bits = MAGIC.to_bits() as i32;
        for j in 0..n {
            let y = (acc[j] as f32 * m[j] + o[j]).max(lo).min(hi);
            out[j] = ((y + MAGIC).to_bits() as i32 - magic_bits + zero_point) as i8;
        }
        Ok(())
    }
}

impl QOut for f32 {
    #[inline(always)]
    fn apply(ep: &Epilogue, acc: &[i32], c0: usize, out: &mut [f32]) -> KResult {
        let EpilogueKind::Float { lo, hi } = ep.kind else {
            return Err(KernelError::Argument("int8 product: an int8 epilogue cannot write f32".into()));
        };
        let n = out.len();
        // Every operand cut to `n`: the loop then has no bounds checks, and the compiler's vector
        // loop needs no scalar iterations after it (with one, a 32-channel row ran half scalar).
        let (acc, m, o) = (&acc[..n], &ep.mult[c0..c0 + n], &ep.offset[c0..c0 + n]);
        for j in 0..n {
            out[j] = (acc[j] as f32 * m[j] + o[j]).max(lo).min(hi);
        }
        Ok(())
    }
}

/// Weights `[N, K]` packed for the micro-kernel: panels of [`NR`] columns, each `K/2` (rounded
/// up) steps of `NR` pairs of `i16` (`w[k][j], w[k+1][j]`), zero past `K` and `N`.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedQ {
    k: usize,
    n: usize,
    data: Vec<i16>,
}

impl PackedQ {
    /// Packs `w(j, p)` for output column `j < n` and reduction index `p < k`.
    pub fn new(k: usize, n: usize, w: impl Fn(usize, usize) -> i8) -> KResult<Self> {
        if k == 0 || n == 0 {
            return Err(KernelError::Argument(format!("int8 product: empty weights ({n} × {k})")));
        }
        // |x - zx| ≤ 255 and |w| ≤ 128: sums of up to 2^16 products fit `i32`.
        if k > MAX_K {
            return Err(KernelError::Argument(format!("int8 product: {k} terms per sum (at most {MAX_K})")));
        }
        let steps = k.div_ceil(2);
        let panels = n.div_ceil(NR);
        let len = panels
            .checked_mul(steps)
            .and_then(|v| v.checked_mul(2 * NR))
            .ok_or_else(|| KernelError::Argument("int8 product: weights too large".into()))?;
        let mut data = vec![0i16; len];
        for p in 0..panels {
            for s in 0..steps {
                let base = (p * steps + s) * 2 * NR;
                for jj in 0..NR {
                    let j = p * NR + jj;
                    if j >= n {
                        break;
                    }
                    for h in 0..2 {
                        let kk = 2 * s + h;
                        if kk < k {
                            data[base + 2 * jj + h] = i16::from(w(j, kk));
                        }
                    }
                }
            }
        }
        Ok(PackedQ { k, n, data })
    }

    /// Reduction length.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output columns.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * 2
    }

    fn panel(&self, p: usize) -> &[i16] {
        let len = self.k.div_ceil(2) * 2 * NR;
        &self.data[p * len..(p + 1) * len]
    }
}

/// How an int8 product multiplies, as this CPU runs it at a [`Level`]: [`Dot::best`] is what
/// the kernels choose; the others are there to compare and test (results are identical).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dot {
    /// AVX-512 VNNI `vpdpbusd`: 64 multiply-adds per instruction (bytes, weights packed as
    /// groups of four).
    Vnni512,
    /// AVX-VNNI `vpdpbusd` on 256-bit vectors: 32 multiply-adds per instruction.
    Vnni256,
    /// Pairs of `i16` with `vpmaddwd` (16 multiply-adds per instruction) on AVX2 levels, the
    /// portable tile elsewhere.
    Pairs,
}

impl Dot {
    /// The fastest this CPU runs at `level`: VNNI where present (AVX-512 VNNI at
    /// [`Level::Avx512`], AVX-VNNI at either x86 level), otherwise [`Dot::Pairs`].
    pub fn best(level: Level) -> Dot {
        Dot::available(level)[0]
    }

    /// Every one this CPU runs at `level`, best first (always ends with [`Dot::Pairs`]).
    pub fn available(level: Level) -> Vec<Dot> {
        let mut dots = Vec::with_capacity(3);
        if level == Level::Avx512 && vnni::Width::W512.runs() {
            dots.push(Dot::Vnni512);
        }
        if matches!(level, Level::Avx512 | Level::Avx2) && vnni::Width::W256.runs() {
            dots.push(Dot::Vnni256);
        }
        dots.push(Dot::Pairs);
        dots
    }

    /// A short name (`vnni512`, `vnni256`, `pairs`).
    pub fn name(self) -> &'static str {
        match self {
            Dot::Vnni512 => "vnni512",
            Dot::Vnni256 => "vnni256",
            Dot::Pairs => "pairs",
        }
    }

    fn width(self) -> Option<vnni::Width> {
        match self {
            Dot::Vnni512 => Some(vnni::Width::W512),
            Dot::Vnni256 => Some(vnni::Width::W256),
            Dot::Pairs => None,
        }
    }
}

/// The multiply-adds one step of [`int8_peak`] performs at `level` with `dot`.
pub fn int8_peak_macs_per_step(level: Level, dot: Dot) -> usize {
    match dot {
        Dot::Vnni512 => 12 * 64,
        Dot::Vnni256 => 12 * 32,
        // Twelve `vpmaddwd` chains on AVX2 levels; the portable loop does 16 per step.
        Dot::Pairs if matches!(level, Level::Avx2 | Level::Avx512) => 12 * 16,
        Dot::Pairs => 16,
    }
}

/// The machine's int8 multiply-add peak as the products' tiles reach it at `level` with `dot`:
/// `steps` rounds of twelve independent multiply-add chains ([`int8_peak_macs_per_step`]
/// multiply-adds each round). Returns a checksum so the work is not optimised away. For
/// benchmarks, which report the products' throughput against it.
#[doc(hidden)]
pub fn int8_peak(level: Level, dot: Dot, steps: usize) -> i32 {
    match dot.width() {
        Some(width) if width.runs() => vnni::peak(width, steps),
        _ => madd_peak(level, steps),
    }
}

/// Weights packed for one [`Dot`].
#[derive(Debug, Clone, PartialEq)]
enum Packed {
    Pairs(PackedQ),
    Quads(vnni::PackedQuads, vnni::Width),
}

impl Packed {
    /// Packs `w(j, p)` (`n` columns of `k` terms) for `dot`, which must be one the CPU runs.
    fn new(dot: Dot, k: usize, n: usize, w: impl Fn(usize, usize) -> i8) -> KResult<Self> {
        match dot.width() {
            Some(width) if width.runs() => Ok(Packed::Quads(vnni::PackedQuads::new(k, n, w)?, width)),
            Some(_) => Err(KernelError::Argument(format!("int8 product: this CPU does not run {}", dot.name()))),
            None => Ok(Packed::Pairs(PackedQ::new(k, n, w)?)),
        }
    }

    fn k(&self) -> usize {
        match self {
            Packed::Pairs(w) => w.k,
            Packed::Quads(w, _) => w.k(),
        }
    }

    fn n(&self) -> usize {
        match self {
            Packed::Pairs(w) => w.n,
            Packed::Quads(w, _) => w.n(),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Packed::Pairs(w) => w.bytes(),
            Packed::Quads(w, _) => w.bytes(),
        }
    }
}

/// A value of a product's row scratch, made from an int8 input value.
trait RowValue: Copy {
    /// `v` as the tile reads it, for an input with zero point `zp`.
    fn from_input(v: i8, zp: i32) -> Self;
    /// A position outside the input (a convolution's padding, worth the zero point).
    fn padding(zp: i32) -> Self;
}

/// The pairs tile reads `x - zx`.
impl RowValue for i16 {
    #[inline(always)]
    fn from_input(v: i8, zp: i32) -> i16 {
        (i32::from(v) - zp) as i16
    }
    #[inline(always)]
    fn padding(_: i32) -> i16 {
        0
    }
}

/// The VNNI tiles read `x` itself (see `vnni.rs`).
impl RowValue for i8 {
    #[inline(always)]
    fn from_input(v: i8, _: i32) -> i8 {
        v
    }
    #[inline(always)]
    fn padding(zp: i32) -> i8 {
        zp as i8
    }
}

/// The rows of a product's left operand.
#[derive(Clone, Copy)]
enum Rows<'a> {
    /// Row `r` is `x[r·k .. (r+1)·k]`.
    Contiguous { x: &'a [i8], k: usize },
    /// Row `r` is output pixel `r`'s patch of an NHWC input, in (tap, channel) order.
    Patches { g: &'a Conv2dGeometry, output: [usize; 2], x: &'a [i8] },
}

impl Rows<'_> {
    /// Writes row `r` into `dst` (its `K` values) as the tile reads them.
    #[inline(always)]
    fn fill<T: RowValue>(&self, r: usize, zp: i32, dst: &mut [T]) {
        match *self {
            Rows::Contiguous { x, k } => convert(&x[r * k..(r + 1) * k], dst, zp),
            Rows::Patches { output: [oh, ow], .. } => {
                self.patch((r / (oh * ow), (r / ow) % oh, r % ow), zp, dst);
            }
        }
    }

    /// Writes rows `r0..r0 + dst.len() / stride` into `dst`, row `i` at `i · stride` (its `K`
    /// values, then zeros up to `stride`). A convolution's patches walk their output pixels in
    /// order rather than dividing to find each one (three divisions a row: without them
    /// mobilenet_v2's stem, 27-byte patches, ran 15-20 % faster).
    #[inline(always)]
    fn fill_block<T: RowValue + Default>(&self, r0: usize, zp: i32, k: usize, stride: usize, dst: &mut [T]) {
        let Rows::Patches { output: [oh, ow], .. } = *self else {
            for (i, row) in dst.chunks_exact_mut(stride).enumerate() {
                self.fill(r0 + i, zp, &mut row[..k]);
                row[k..].iter_mut().for_each(|v| *v = T::default());
            }
            return;
        };
        let (mut b, mut y, mut xo) = (r0 / (oh * ow), (r0 / ow) % oh, r0 % ow);
        for row in dst.chunks_exact_mut(stride) {
            self.patch((b, y, xo), zp, &mut row[..k]);
            row[k..].iter_mut().for_each(|v| *v = T::default());
            xo += 1;
            if xo == ow {
                xo = 0;
                y += 1;
                if y == oh {
                    y = 0;
                    b += 1;
                }
            }
        }
    }

    /// Output pixel `(b, y, xo)`'s patch (a [`Rows::Patches`] row) into `dst`.
    #[inline(always)]
    fn patch<T: RowValue>(&self, (b, y, xo): (usize, usize, usize), zp: i32, dst: &mut [T]) {
        let Rows::Patches { g, x, .. } = *self else { return };
        let [ih, iw] = g.input;
        let c = g.in_channels;
        let convert = |src: &[i8], dst: &mut [T]| convert(src, dst, zp);
        let kw = g.kernel[1];
        // The first input column of the patch, when the whole kernel row lies inside the image
        // and its taps are adjacent pixels: then each kernel row is one span.
        let span = (g.dilation[1] == 1)
            .then(|| (xo * g.stride[1]).checked_sub(g.padding[1]))
            .flatten()
            .filter(|&x0| x0 + kw <= iw);
        for ky in 0..g.kernel[0] {
            if let Some(x0) = span {
                let d = &mut dst[ky * kw * c..(ky + 1) * kw * c];
                match (y * g.stride[0] + ky * g.dilation[0]).checked_sub(g.padding[0]) {
                    Some(yy) if yy < ih => convert(&x[((b * ih + yy) * iw + x0) * c..][..kw * c], d),
                    _ => d.fill(T::padding(zp)),
                }
                continue;
            }
            for kx in 0..kw {
                let d = &mut dst[(ky * kw + kx) * c..][..c];
                let yy = (y * g.stride[0] + ky * g.dilation[0]).checked_sub(g.padding[0]);
                let xx = (xo * g.stride[1] + kx * g.dilation[1]).checked_sub(g.padding[1]);
                match (yy, xx) {
                    (Some(yy), Some(xx)) if yy < ih && xx < iw => {
                        convert(&x[((b * ih + yy) * iw + xx) * c..][..c], d);
                    }
                    _ => d.fill(T::padding(zp)),
                }
            }
        }
    }
}

/// `dst[i] = T::from_input(src[i])` over the shorter of the two.
#[inline(always)]
fn convert<T: RowValue>(src: &[i8], dst: &mut [T], zp: i32) {
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = T::from_input(v, zp);
    }
}

/// `out[i][j] = epilogue(Σ_p (a[i][p] - zp) · w[j][p])` for the `m` rows `rows` gives (`out` is
/// `m × n`), split over rayon's current pool when `threads > 1` (see [`split_run`]).
#[allow(clippy::too_many_arguments)]
fn qgemm<O: QOut>(
    level: Level,
    m: usize,
    rows: Rows<'_>,
    zp: i32,
    w: &Packed,
    ep: &Epilogue,
    out: &mut [O],
    threads: usize,
) -> KResult {
    let (k, n) = (w.k(), w.n());
    if out.len() != m * n {
        return Err(KernelError::Length { what: "int8 product output", expected: m * n, actual: out.len() });
    }
    if ep.channels() != n {
        return Err(KernelError::Length { what: "int8 requantization", expected: n, actual: ep.channels() });
    }
    if m == 0 {
        return Ok(());
    }
    let macs = m.saturating_mul(k).saturating_mul(n);
    let threads = (threads > 1 && macs >= PAR_MIN_MACS).then_some(threads);
    match w {
        Packed::Pairs(w) => {
            let kp = k.div_ceil(2) * 2;
            let need = micro::block_rows(kp) * kp;
            let fill = |r: usize, dst: &mut [i16]| rows.fill(r, zp, dst);
            let job = micro::Job { fill: &fill, w, ep, kp };
            split_run(out, m, n, threads, |first, chunk, panels| {
                with_scratch(&SCRATCH, need, |a| micro::gemm_task(level, a, first, &job, chunk, panels))
            })
        }
        Packed::Quads(w, width) => {
            let kq = w.kq();
            let need = vnni::scratch_len(*width, kq);
            let fill = |r0: usize, dst: &mut [i8]| rows.fill_block(r0, zp, k, kq, dst);
            let contiguous = match rows {
                Rows::Contiguous { x, .. } => Some(x),
                Rows::Patches { .. } => None,
            };
            let job = vnni::QuadJob { fill: &fill, w, ep, zero_point: zp, contiguous };
            split_run(out, m, n, threads, |first, chunk, panels| {
                with_scratch(&SCRATCH_BYTES, need, |a| vnni::quad_task(*width, a, first, &job, chunk, panels))
            })
        }
    }
}

/// Runs `task(first_row, chunk, panels)` over an `m × n` output, on one thread (`threads` None) or
/// split over rayon's current pool: by whole tiles of rows when there is a tile for every thread,
/// otherwise by weight panels (fewer rows, as in a token-by-token transformer: each thread
/// then reads only its share of the weights), the tasks writing column blocks that are copied
/// into place afterwards.
fn split_run<O: Copy + Default + Send>(
    out: &mut [O],
    m: usize,
    n: usize,
    threads: Option<usize>,
    task: impl Fn(usize, &mut [O], std::ops::Range<usize>) -> KResult + Sync,
) -> KResult {
    let panels = n.div_ceil(NR);
    let Some(threads) = threads else {
        return task(0, out, 0..panels);
    };
    let row_tiles = m.div_ceil(MR);
    // Rows whenever every thread gets a tile: the column split's fixed blocks balance worse when
    // a worker wakes late, and its result is copied into place afterwards (mobilenet_v2/q8 at two
    // threads: 4.4 -> 4.1 ms on an AVX-512 VNNI machine).
    if row_tiles >= threads || panels < 2 * threads {
        let rows = m.div_ceil(threads * 4).div_ceil(MR).max(1) * MR;
        return crate::par::try_chunks(out, rows * n, true, |c, chunk| task(c * rows, chunk, 0..panels));
    }
    // Column blocks of `per` panels: block `b` holds `m` rows of its columns.
    let per = panels.div_ceil(threads * 2);
    let mut blocks = vec![O::default(); m * n];
    crate::par::try_chunks(&mut blocks, m * per * NR, true, |b, chunk| {
        task(0, chunk, b * per..((b + 1) * per).min(panels))
    })?;
    for (b, block) in blocks.chunks(m * per * NR).enumerate() {
        let (c0, width) = micro::panel_columns(&(b * per..((b + 1) * per).min(panels)), n);
        for (r, src) in block.chunks_exact(width).enumerate() {
            out[r * n + c0..r * n + c0 + width].copy_from_slice(src);
        }
    }
    Ok(())
}

/// Runs `f` on `need` values of this thread's scratch in `key`, kept between calls (no
/// allocation or zeroing per task; it grows when a product needs more).
fn with_scratch<T: Copy + Default, R>(
    key: &'static std::thread::LocalKey<std::cell::Cell<Vec<T>>>,
    need: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    key.with(|cell| {
        let mut a = cell.take();
        if a.len() < need {
            a = vec![T::default(); need];
        }
        let result = f(&mut a[..need]);
        cell.set(a);
        result
    })
}

thread_local! {
    /// The product's row scratch (see [`qgemm`]).
    static SCRATCH: std::cell::Cell<Vec<i16>> = const { std::cell::Cell::new(Vec::new()) };
    /// The VNNI product's row scratch.
    static SCRATCH_BYTES: std::cell::Cell<Vec<i8>> = const { std::cell::Cell::new(Vec::new()) };
    /// [`QDenseDynamic`]'s quantized input.
    static QUANTIZED_INPUT: std::cell::Cell<Vec<i8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Narrows an int8 tensor minus its zero point to `i16`.
#[inline]
fn centred(src: &[i8], zero_point: i32, dst: &mut [i16]) {
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = (i32::from(v) - zero_point) as i16;
    }
}

fn check_zero_point(zero_point: i32) -> KResult {
    if (-128..=127).contains(&zero_point) {
        Ok(())
    } else {
        Err(KernelError::Argument(format!("int8 input zero point {zero_point} is outside int8")))
    }
}

/// A quantized linear layer ready to run: int8 rows `[.., K]` in, `[.., N]` out.
#[derive(Debug, Clone)]
pub struct QDense {
    level: Level,
    w: Packed,
    x_zero_point: i32,
    epilogue: Epilogue,
}

impl QDense {
    /// Packs `weight` (`[n, k]`, row-major: a linear layer's) for an input with zero point
    /// `x_zero_point`; `epilogue` has `n` channels. Multiplies with [`Dot::best`] for `level`.
    pub fn new(
        level: Level,
        k: usize,
        n: usize,
        weight: &[i8],
        x_zero_point: i32,
        epilogue: Epilogue,
    ) -> KResult<Self> {
        Self::with_dot(level, Dot::best(level), k, n, weight, x_zero_point, epilogue)
    }

    /// As [`QDense::new`], multiplying with `dot` (one of [`Dot::available`]`(level)`).
    pub fn with_dot(
        level: Level,
        dot: Dot,
        k: usize,
        n: usize,
        weight: &[i8],
        x_zero_point: i32,
        epilogue: Epilogue,
    ) -> KResult<Self> {
        check_zero_point(x_zero_point)?;
        let expected = k.checked_mul(n).ok_or_else(|| KernelError::Argument("int8 linear: too large".into()))?;
        if weight.len() != expected {
            return Err(KernelError::Length { what: "int8 linear weight", expected, actual: weight.len() });
        }
        if epilogue.channels() != n {
            return Err(KernelError::Length { what: "int8 linear epilogue", expected: n, actual: epilogue.channels() });
        }
        let w = Packed::new(dot, k, n, |j, p| weight[j * k + p])?;
        Ok(QDense { level, w, x_zero_point, epilogue })
    }

    /// Bytes of packed weights.
    pub fn packed_bytes(&self) -> usize {
        self.w.bytes()
    }

    /// Runs over the rows of `x` (`m × k`) into `out` (`m × n`).
    pub fn run<O: QOut>(&self, x: &[i8], out: &mut [O], threads: usize) -> KResult {
        let k = self.w.k();
        if !x.len().is_multiple_of(k) {
            return Err(KernelError::Shape(format!("int8 linear: {} input values are not rows of {k}", x.len())));
        }
        let rows = Rows::Contiguous { x, k };
        qgemm(self.level, x.len() / k, rows, self.x_zero_point, &self.w, &self.epilogue, out, threads)
    }
}

/// A dynamically quantized linear layer: f32 rows `[.., K]` in, f32 `[.., N]` out. Each call
/// chooses the input's int8 parameters over the whole tensor, quantizes it (ExecuTorch's
/// `choose_qparams.Tensor` and `quantize_per_tensor` arithmetic), and runs the int8 product with
/// a dequantizing epilogue.
#[derive(Debug, Clone)]
pub struct QDenseDynamic {
    level: Level,
    w: Packed,
    w_scales: Vec<f64>,
    bias: Option<Vec<f32>>,
    clamp: (f32, f32),
}

impl QDenseDynamic {
    /// Packs `weight` (`[n, k]`, int8, symmetric with per-output-channel `w_scales`), with an
    /// optional f32 `bias` and an output clamp. Multiplies with [`Dot::best`] for `level`.
    pub fn new(
        level: Level,
        k: usize,
        n: usize,
        weight: &[i8],
        w_scales: &[f64],
        bias: Option<&[f32]>,
        clamp: (f32, f32),
    ) -> KResult<Self> {
        Self::with_dot(level, Dot::best(level), k, n, weight, w_scales, bias, clamp)
    }

    /// As [`QDenseDynamic::new`], multiplying with `dot` (one of [`Dot::available`]`(level)`).
    #[allow(clippy::too_many_arguments)]
    pub fn with_dot(
        level: Level,
        dot: Dot,
        k: usize,
        n: usize,
        weight: &[i8],
        w_scales: &[f64],
        bias: Option<&[f32]>,
        clamp: (f32, f32),
    ) -> KResult<Self> {
        let expected = k.checked_mul(n).ok_or_else(|| KernelError::Argument("int8 linear: too large".into()))?;
        if weight.len() != expected {
            return Err(KernelError::Length { what: "int8 linear weight", expected, actual: weight.len() });
        }
        // Checks the scales, bias and clamp once.
        Epilogue::float(1.0, w_scales, bias, clamp)?;
        if w_scales.len() != n {
            return Err(KernelError::Length { what: "int8 linear weight scales", expected: n, actual: w_scales.len() });
        }
        let w = Packed::new(dot, k, n, |j, p| weight[j * k + p])?;
        Ok(QDenseDynamic { level, w, w_scales: w_scales.to_vec(), bias: bias.map(<[f32]>::to_vec), clamp })
    }

    /// Bytes of packed weights.
    pub fn packed_bytes(&self) -> usize {
        self.w.bytes()
    }

    /// Runs over the rows of `x` (`m × k`) into `out` (`m × n`). The quantized input lives in a
    /// buffer the calling thread keeps between calls.
    pub fn run(&self, x: &[f32], out: &mut [f32], threads: usize) -> KResult {
        QUANTIZED_INPUT.with(|cell| {
            let mut xq = cell.take();
            let result = self.run_with(x, &mut xq, out, threads);
            cell.set(xq);
            result
        })
    }

    fn run_with(&self, x: &[f32], xq: &mut Vec<i8>, out: &mut [f32], threads: usize) -> KResult {
        let k = self.w.k();
        if !x.len().is_multiple_of(k) {
            return Err(KernelError::Shape(format!("int8 linear: {} input values are not rows of {k}", x.len())));
        }
        if x.is_empty() {
            return qgemm(
                self.level,
                0,
                Rows::Contiguous { x: &[], k },
                0,
                &self.w,
                &Epilogue::float(1.0, &self.w_scales, None, self.clamp)?,
                out,
                threads,
            );
        }
        let (scale, zp) = crate::quantized::choose_qparams(x, -128, 127)?;
        xq.resize(x.len(), 0);
        crate::quantized::quantize_at(
            self.level,
            x,
            xq,
            &[crate::quantized::QuantParams::new(scale, i64::from(zp))],
            x.len(),
            -128,
            127,
        )?;
        // The product of the dequantized values: x's scale as f32, as dequantize_per_tensor uses it.
        let ep = Epilogue::float(f64::from(scale as f32), &self.w_scales, self.bias.as_deref(), self.clamp)?;
        let rows = Rows::Contiguous { x: &xq[..], k };
        qgemm(self.level, x.len() / k, rows, zp, &self.w, &ep, out, threads)
    }
}

#[derive(Debug, Clone)]
enum Strategy {
    /// Groups of one: a product over output pixels (patches gathered unless pointwise).
    Gemm { w: Packed, pointwise: bool },
    /// One input channel per group, one output channel each.
    /// The epilogue is repeated over a few pixels ([`depthwise::pixels_epilogue`]).
    Depthwise(depthwise::PackedDw, Epilogue),
}

/// A quantized NHWC convolution ready to run (see the module documentation).
#[derive(Debug, Clone)]
pub struct QConv2d {
    level: Level,
    geometry: Conv2dGeometry,
    output: [usize; 2],
    x_zero_point: i32,
    strategy: Strategy,
    epilogue: Epilogue,
}

impl QConv2d {
    /// Whether the int8 kernels run a convolution of this geometry: groups of one, or depthwise
    /// (as many groups as input and output channels).
    pub fn supports(g: &Conv2dGeometry) -> bool {
        g.groups == 1 || (g.groups == g.in_channels && g.out_channels == g.in_channels)
    }

    /// Packs `weight` (`[out, in/groups, kh, kw]`, row-major, int8) for an input with zero point
    /// `x_zero_point`; `epilogue` has one channel per output channel. Products multiply with
    /// [`Dot::best`] for `level`.
    pub fn new(
        level: Level,
        geometry: Conv2dGeometry,
        weight: &[i8],
        x_zero_point: i32,
        epilogue: Epilogue,
    ) -> KResult<Self> {
        Self::with_dot(level, Dot::best(level), geometry, weight, x_zero_point, epilogue)
    }

    /// As [`QConv2d::new`], products multiplying with `dot` (one of [`Dot::available`]`(level)`;
    /// depthwise convolutions run their own kernel at `level`).
    pub fn with_dot(
        level: Level,
        dot: Dot,
        geometry: Conv2dGeometry,
        weight: &[i8],
        x_zero_point: i32,
        epilogue: Epilogue,
    ) -> KResult<Self> {
        check_zero_point(x_zero_point)?;
        let output = geometry.output()?;
        let g = geometry;
        if !Self::supports(&g) {
            return Err(KernelError::Argument(format!(
                "int8 convolution: {} groups of {} → {} channels (only groups of one and depthwise)",
                g.groups, g.in_channels, g.out_channels
            )));
        }
        let cin_g = g.in_channels / g.groups;
        let taps = g.kernel[0]
            .checked_mul(g.kernel[1])
            .ok_or_else(|| KernelError::Argument("int8 convolution: kernel too large".into()))?;
        let expected = [g.out_channels, cin_g, taps]
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| KernelError::Argument("int8 convolution: weight size overflows".into()))?;
        if weight.len() != expected {
            return Err(KernelError::Length { what: "int8 convolution weight", expected, actual: weight.len() });
        }
        if epilogue.channels() != g.out_channels {
            return Err(KernelError::Length {
                what: "int8 convolution epilogue",
                expected: g.out_channels,
                actual: epilogue.channels(),
            });
        }
        let strategy = if g.groups == 1 {
            let pointwise = taps == 1 && g.stride == [1, 1] && g.padding == [0, 0];
            // Patch columns are ordered (tap, channel); weights are (out, channel, tap).
            let k = taps
                .checked_mul(cin_g)
                .ok_or_else(|| KernelError::Argument("int8 convolution: patch too large".into()))?;
            let w = Packed::new(dot, k, g.out_channels, |j, p| {
                let (tap, ci) = (p / cin_g, p % cin_g);
                weight[(j * cin_g + ci) * taps + tap]
            })?;
            Strategy::Gemm { w, pointwise }
        } else {
            // Each output sums `taps` products in `i32`, as a product sums `K` terms.
            if taps > MAX_K {
                return Err(KernelError::Argument(format!("int8 convolution: {taps} taps per sum (at most {MAX_K})")));
            }
            Strategy::Depthwise(
                depthwise::PackedDw::new(level, g.in_channels, taps, weight, x_zero_point, &epilogue),
                depthwise::pixels_epilogue(&epilogue),
            )
        };
        Ok(QConv2d { level, geometry, output, x_zero_point, strategy, epilogue })
    }

    /// Which strategy runs (`pointwise`, `gemm`, `depthwise`).
    pub fn strategy(&self) -> &'static str {
        match &self.strategy {
            Strategy::Gemm { pointwise: true, .. } => "pointwise",
            Strategy::Gemm { .. } => "gemm",
            Strategy::Depthwise(..) => "depthwise",
        }
    }

    /// Bytes of packed weights.
    pub fn packed_bytes(&self) -> usize {
        match &self.strategy {
            Strategy::Gemm { w, .. } => w.bytes(),
            Strategy::Depthwise(d, _) => d.bytes(),
        }
    }

    /// Runs on `x` (`[N, H, W, C]`) into `out` (`[N, OH, OW, O]`).
    pub fn run<O: QOut>(&self, x: &[i8], out: &mut [O], threads: usize) -> KResult {
        let g = &self.geometry;
        let [ih, iw] = g.input;
        let [oh, ow] = self.output;
        let c = g.in_channels;
        let need_in = [g.batch, ih, iw, c].iter().product::<usize>();
        let need_out = [g.batch, oh, ow, g.out_channels].iter().product::<usize>();
        if x.len() != need_in {
            return Err(KernelError::Length { what: "int8 convolution input", expected: need_in, actual: x.len() });
        }
        if out.len() != need_out {
            return Err(KernelError::Length { what: "int8 convolution output", expected: need_out, actual: out.len() });
        }
        let zp = self.x_zero_point;
        let m = g.batch * oh * ow;
        match &self.strategy {
            Strategy::Gemm { w, pointwise: true } => {
                qgemm(self.level, m, Rows::Contiguous { x, k: c }, zp, w, &self.epilogue, out, threads)
            }
            Strategy::Gemm { w, pointwise: false } => {
                let rows = Rows::Patches { g, output: self.output, x };
                qgemm(self.level, m, rows, zp, w, &self.epilogue, out, threads)
            }
            Strategy::Depthwise(dw, pixels) => {
                depthwise::run(self.level, dw, g, self.output, x, zp, pixels, out, threads)
            }
        }
    }
}
