//! Groupwise weights with per-row dynamic int8 activations: torchao's "8da4w" linear layer (int4
//! weights in groups along the reduction, one scale per group; int8 activations quantized per
//! token at every call), as XNNPACK's `qd8-f32-qb4w` kernels run it.
//!
//! `y[m][n] = clamp(sx[m] · Σ_g s[n][g] · Σ_{k∈g} (qx[m][k] - zx[m]) · w[n][k] + b[n])`: the
//! integer sum of each group (exact, in `i32`) is scaled by the group's weight scale in `f32`, and
//! the row's activation scale applies once at the end. The activations' parameters follow
//! ExecuTorch's `choose_qparams_per_token_asymmetric` and `quantize_per_token` bit for bit.

use super::micro::{self, GroupJob, NR};
use super::{centred, PackedQ};
use crate::quantized::{choose_qparams_per_token, quantize_at, QuantParams};
use crate::simd::Level;
use crate::{KResult, KernelError};
use std::ops::Range;

/// Packed groupwise weights: [`PackedQ`]'s order (panels of [`NR`] columns, steps of `i16`
/// pairs), stored as `i16` or, when every value fits four bits, as nibbles — a quarter of the
/// bytes to read, which is what bounds a product over few rows (a transformer generating token by
/// token).
#[derive(Debug, Clone)]
pub(super) enum GroupWeights {
    Wide(PackedQ),
    /// Byte `i` of a step holds value `2i` (low nibble) and `2i + 1` (high nibble), two's
    /// complement.
    Nibbles {
        k: usize,
        n: usize,
        data: Vec<u8>,
    },
}

impl GroupWeights {
    fn new(packed: PackedQ) -> Self {
        if !packed.data.iter().all(|&v| (-8..=7).contains(&v)) {
            return GroupWeights::Wide(packed);
        }
        let data = packed.data.chunks_exact(2).map(|c| (c[0] as u8 & 0x0f) | ((c[1] as u8) << 4)).collect();
        GroupWeights::Nibbles { k: packed.k, n: packed.n, data }
    }

    pub(super) fn k(&self) -> usize {
        match self {
            GroupWeights::Wide(w) => w.k(),
            GroupWeights::Nibbles { k, .. } => *k,
        }
    }

    pub(super) fn n(&self) -> usize {
        match self {
            GroupWeights::Wide(w) => w.n(),
            GroupWeights::Nibbles { n, .. } => *n,
        }
    }

    fn bytes(&self) -> usize {
        match self {
            GroupWeights::Wide(w) => w.bytes(),
            GroupWeights::Nibbles { data, .. } => data.len(),
        }
    }

    /// Panel `p`'s reduction steps `steps` as `i16` pairs ([`PackedQ`]'s layout): borrowed when
    /// stored wide, unpacked into `buf` from nibbles.
    #[inline(always)]
    pub(super) fn steps<'a>(&'a self, p: usize, steps: Range<usize>, buf: &'a mut [i16]) -> &'a [i16] {
        match self {
            GroupWeights::Wide(w) => &w.panel(p)[steps.start * 2 * NR..steps.end * 2 * NR],
            GroupWeights::Nibbles { k, data, .. } => {
                let per_panel = k.div_ceil(2) * NR;
                let src = &data[p * per_panel + steps.start * NR..p * per_panel + steps.end * NR];
                let out = &mut buf[..src.len() * 2];
                for (o, &b) in out.chunks_exact_mut(2).zip(src) {
                    // Arithmetic shifts sign-extend each nibble.
                    o[0] = i16::from(((b << 4) as i8) >> 4);
                    o[1] = i16::from((b as i8) >> 4);
                }
                out
            }
        }
    }
}

/// A dynamically quantized linear layer with groupwise weights: f32 rows `[.., K]` in, f32
/// `[.., N]` out (see the module documentation).
#[derive(Debug, Clone)]
pub struct QDenseGrouped {
    level: Level,
    w: GroupWeights,
    group: usize,
    /// `[panel][group][NR]`, zero past `N`.
    scales: Vec<f32>,
    bias: Vec<f32>,
    clamp: (f32, f32),
}

impl QDenseGrouped {
    /// Packs `weight` (`[n, k]`, row-major, symmetric — zero points of zero — with values in
    /// `[-128, 127]`; int4 weights use `[-8, 7]`) whose groups of `group` reduction indices have
    /// scales `scales` (`[n, k / group]`), with an optional f32 `bias` and an output clamp.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        level: Level,
        k: usize,
        n: usize,
        weight: &[i8],
        group: usize,
        scales: &[f32],
        bias: Option<&[f32]>,
        clamp: (f32, f32),
    ) -> KResult<Self> {
        let bad = |m: String| KernelError::Argument(format!("groupwise linear: {m}"));
        if group == 0 || !group.is_multiple_of(2) || !k.is_multiple_of(group) {
            return Err(bad(format!("groups of {group} must be even and divide K = {k}")));
        }
        let expected = k.checked_mul(n).ok_or_else(|| bad("too large".into()))?;
        if weight.len() != expected {
            return Err(KernelError::Length { what: "groupwise linear weight", expected, actual: weight.len() });
        }
        let groups = k / group;
        if scales.len() != n * groups {
            return Err(KernelError::Length {
                what: "groupwise linear scales",
                expected: n * groups,
                actual: scales.len(),
            });
        }
        if let Some(s) = scales.iter().find(|s| !s.is_finite()) {
            return Err(bad(format!("weight scale {s} is not finite")));
        }
        if let Some(b) = bias {
            if b.len() != n {
                return Err(KernelError::Length { what: "groupwise linear bias", expected: n, actual: b.len() });
            }
        }
        if clamp.0.is_nan() || clamp.1.is_nan() || clamp.0 > clamp.1 {
            return Err(bad(format!("invalid clamp [{}, {}]", clamp.0, clamp.1)));
        }
        let w = GroupWeights::new(PackedQ::new(k, n, |j, p| weight[j * k + p])?);
        let panels = n.div_ceil(NR);
        let mut packed = vec![0f32; panels * groups * NR];
        for j in 0..n {
            let (p, jj) = (j / NR, j % NR);
            for g in 0..groups {
                packed[(p * groups + g) * NR + jj] = scales[j * groups + g];
            }
        }
        let bias = bias.map_or_else(|| vec![0.0; n], <[f32]>::to_vec);
        Ok(QDenseGrouped { level, w, group, scales: packed, bias, clamp })
    }

    /// Reduction length.
    pub fn k(&self) -> usize {
        self.w.k()
    }

    /// Output columns.
    pub fn n(&self) -> usize {
        self.w.n()
    }

    /// Whether the weights are stored as four-bit values.
    pub fn is_int4(&self) -> bool {
        matches!(self.w, GroupWeights::Nibbles { .. })
    }

    /// Bytes of packed weights and scales.
    pub fn packed_bytes(&self) -> usize {
        self.w.bytes() + self.scales.len() * 4
    }

    /// Runs over the rows of `x` (`m × k`) into `out` (`m × n`): quantizes each row with its own
    /// parameters, then the integer product.
    pub fn run(&self, x: &[f32], out: &mut [f32], threads: usize) -> KResult {
        let (k, n) = (self.k(), self.n());
        if !x.len().is_multiple_of(k) {
            return Err(KernelError::Shape(format!("groupwise linear: {} input values are not rows of {k}", x.len())));
        }
        let m = x.len() / k;
        if out.len() != m * n {
            return Err(KernelError::Length { what: "groupwise linear output", expected: m * n, actual: out.len() });
        }
        if m == 0 {
            return Ok(());
        }
        let (mut scales, mut zps) = (vec![0f64; m], vec![0i64; m]);
        choose_qparams_per_token(x, k, -128, 127, &mut scales, &mut zps)?;
        let params: Vec<QuantParams> = scales.iter().zip(&zps).map(|(&s, &z)| QuantParams::new(s, z)).collect();
        let mut xq = vec![0i8; x.len()];
        quantize_at(self.level, x, &mut xq, &params, k, -128, 127)?;
        // dequantize_per_token uses the scale as f32.
        let row_scales: Vec<f32> = scales.iter().map(|&s| s as f32).collect();
        let fill = |r: usize, dst: &mut [i16]| centred(&xq[r * k..(r + 1) * k], zps[r] as i32, dst);
        let job = GroupJob {
            fill: &fill,
            w: &self.w,
            group: self.group,
            scales: &self.scales,
            row_scales: &row_scales,
            bias: &self.bias,
            clamp: self.clamp,
        };
        let macs = m.saturating_mul(k).saturating_mul(n);
        let parallel = threads > 1 && macs >= super::PAR_MIN_MACS;
        let need = micro::block_rows(k) * k;
        let level = self.level;
        super::split_run(out, m, n, parallel.then_some(threads), |first, chunk, panels| {
            // The row scratch the other products keep per thread.
            super::with_scratch(&super::SCRATCH, need, |a| micro::group_task(level, a, first, &job, chunk, panels))
        })
    }
}
