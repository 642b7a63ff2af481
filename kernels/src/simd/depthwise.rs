//! Depthwise rows: one output row of a channels-last depthwise convolution, weights packed
//! per level ([`PackedDw`]), and the pooling [`Window`] geometry shared with the row kernels.

#[cfg(target_arch = "aarch64")]
use super::arm;
#[cfg(target_arch = "x86_64")]
use super::x86;
use super::{arg, Level, Portable, Vector};
use crate::{KResult, KernelError};

/// Depthwise weights packed for one level: per block of [`Level::lanes`] channels, the bias
/// vector then one vector per kernel tap (row-major over the window), zero past the last channel.
#[derive(Debug, Clone)]
pub struct PackedDw {
    level: Level,
    channels: usize,
    taps: usize,
    data: Vec<f32>,
}

impl PackedDw {
    /// Packs `weight` (`[channels, 1, kh, kw]`, i.e. `channels × taps`) and `bias`.
    pub fn new(level: Level, channels: usize, taps: usize, weight: &[f32], bias: Option<&[f32]>) -> KResult<Self> {
        let l = level.lanes();
        let need = channels.checked_mul(taps).ok_or_else(|| arg("depthwise weight size overflows".into()))?;
        if weight.len() != need {
            return Err(KernelError::Length { what: "depthwise weight", expected: need, actual: weight.len() });
        }
        if let Some(b) = bias {
            if b.len() != channels {
                return Err(KernelError::Length { what: "bias", expected: channels, actual: b.len() });
            }
        }
        let blocks = channels.div_ceil(l);
        let mut data = vec![0.0f32; blocks * (taps + 1) * l];
        for c in 0..channels {
            let (blk, lane) = (c / l, c % l);
            let base = blk * (taps + 1) * l;
            data[base + lane] = bias.map_or(0.0, |b| b[c]);
            for t in 0..taps {
                data[base + (t + 1) * l + lane] = weight[c * taps + t];
            }
        }
        Ok(PackedDw { level, channels, taps, data })
    }

    /// The level the weights were packed for.
    pub fn level(&self) -> Level {
        self.level
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * 4
    }
}

/// A 2-D sliding window over one NHWC image (`h × w × c` in, `oh × ow × c` out): the geometry
/// of a depthwise convolution or of a pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Channels (input = output).
    pub c: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride (≥ 1).
    pub stride: [usize; 2],
    /// Padding at the top/left.
    pub padding: [usize; 2],
    /// Dilation (≥ 1).
    pub dilation: [usize; 2],
}

impl Window {
    /// The images and window of a 2-D pooling from NHWC `x` (`[N, H, W, C]`) to NHWC `out`
    /// (`[N, OH, OW, C]`), when the sizes agree, the padding is at most half the window (as
    /// PyTorch requires) and every window starts inside the padded image (as PyTorch's output
    /// sizes guarantee); `None` otherwise.
    pub fn pooling(
        x: &[usize],
        out: &[usize],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
    ) -> Option<(usize, Window)> {
        let (&[n, h, w, c], &[on, oh, ow, oc]) = (x, out) else { return None };
        if (on, oc) != (n, c) || stride.contains(&0) || dilation.contains(&0) || kernel.contains(&0) {
            return None;
        }
        // PyTorch's bound: padding at most half the (dilated) window, so no window lies wholly in
        // the padding.
        for i in 0..2 {
            if padding[i].checked_mul(2)? > (kernel[i] - 1).checked_mul(dilation[i])?.checked_add(1)? {
                return None;
            }
        }
        for (o, i, s, p) in [(oh, h, stride[0], padding[0]), (ow, w, stride[1], padding[1])] {
            if o > 0 && (o - 1).checked_mul(s)? >= i.checked_add(p.checked_mul(2)?)? {
                return None;
            }
        }
        Some((n, Window { h, w, c, oh, ow, kernel, stride, padding, dilation }))
    }

    /// The checks a row kernel over this window relies on: kernel, stride and dilation at least
    /// 1, window positions that fit in `usize`, row `oy` inside the output, and an input of
    /// `x_len` and an output row of `y_len` elements at least as large as the geometry says.
    pub(crate) fn check_row(&self, what: &str, oy: usize, x_len: usize, y_len: usize) -> KResult {
        self.check_output_row(what, oy, y_len)?;
        match self.h.checked_mul(self.w).and_then(|s| s.checked_mul(self.c)) {
            Some(i) if x_len >= i => Ok(()),
            _ => Err(arg(format!("{what}: buffers are smaller than the geometry"))),
        }
    }

    /// The input rows output row `oy` reads (`lo..hi`, inside `0..h`; empty when its whole
    /// window lies in the padding). Call after [`Window::check_output_row`].
    fn rows_read(&self, oy: usize) -> std::ops::Range<usize> {
        let top = oy * self.stride[0];
        let span = (self.kernel[0] - 1) * self.dilation[0];
        let first = (0..self.kernel[0]).map(|k| top + k * self.dilation[0]).find(|&r| r >= self.padding[0]);
        match first {
            Some(r) if r - self.padding[0] < self.h => {
                let lo = r - self.padding[0];
                // The last tap row inside the image.
                let last = (top + span - self.padding[0]).min(self.h - 1);
                let last = lo + (last - lo) / self.dilation[0] * self.dilation[0];
                lo..last + 1
            }
            _ => 0..0,
        }
    }

    /// [`Window::check_row`] for an input band: `x_len` elements holding input rows `row0..`
    /// (each `w × c`) that must cover every row output row `oy` reads.
    pub(crate) fn check_band(&self, what: &str, oy: usize, row0: usize, x_len: usize, y_len: usize) -> KResult {
        self.check_output_row(what, oy, y_len)?;
        let rows = self.rows_read(oy);
        if rows.is_empty() {
            return Ok(());
        }
        let row_len = self.w.checked_mul(self.c).ok_or_else(|| arg(format!("{what}: geometry overflows")))?;
        let need = (rows.end.checked_sub(row0)).and_then(|r| r.checked_mul(row_len));
        match need {
            Some(n) if rows.start >= row0 && x_len >= n => Ok(()),
            _ => Err(arg(format!(
                "{what}: output row {oy} reads input rows {}..{}, the band holds {row0}..{}",
                rows.start,
                rows.end,
                row0 + x_len / row_len.max(1)
            ))),
        }
    }

    /// The checks on the geometry and the output row shared by [`Window::check_row`] and
    /// [`Window::check_band`].
    fn check_output_row(&self, what: &str, oy: usize, y_len: usize) -> KResult {
        if self.stride.contains(&0) || self.dilation.contains(&0) || self.kernel.contains(&0) {
            return Err(arg(format!("{what}: kernel, stride and dilation must be at least 1")));
        }
        // The loops index with `o·stride + (k − 1)·dilation` and `input + padding`: both must fit.
        for (o, k, s, d, i, p) in [
            (self.oh, self.kernel[0], self.stride[0], self.dilation[0], self.h, self.padding[0]),
            (self.ow, self.kernel[1], self.stride[1], self.dilation[1], self.w, self.padding[1]),
        ] {
            let reach = o.checked_mul(s).and_then(|x| (k - 1).checked_mul(d).and_then(|y| x.checked_add(y)));
            if reach.is_none() || i.checked_add(p).is_none() {
                return Err(arg(format!("{what}: geometry overflows")));
            }
        }
        if oy >= self.oh {
            return Err(arg(format!("{what}: row {oy} is past the output's {}", self.oh)));
        }
        match self.ow.checked_mul(self.c) {
            Some(o) if y_len >= o => Ok(()),
            _ => Err(arg(format!("{what}: buffers are smaller than the geometry"))),
        }
    }
}

/// Raw arguments of one depthwise row, valid as [`dw_row`] checked.
pub(crate) struct DwArgs {
    x: *const f32,
    y: *mut f32,
    w: *const f32,
    g: Window,
    oy: usize,
    /// The input row `x` starts at (`x` holds a band of the image).
    row0: usize,
    lo: f32,
    hi: f32,
}

/// Output row `oy` (`ow × c`, NHWC) of a depthwise convolution of the image `x` (`h × w × c`),
/// bias and clamp fused.
pub fn dw_row(x: &[f32], g: &Window, oy: usize, packed: &PackedDw, y: &mut [f32], lo: f32, hi: f32) -> KResult {
    g.check_row("depthwise", oy, x.len(), y.len())?;
    dw_row_band(x, 0, g, oy, packed, y, lo, hi)
}

/// [`dw_row`] over a band of the image: `x` holds input rows `row0..` (each `w × c`), which must
/// include every row that output row `oy` reads.
#[allow(clippy::too_many_arguments)] // dw_row's arguments and the band's first row
pub fn dw_row_band(
    x: &[f32],
    row0: usize,
    g: &Window,
    oy: usize,
    packed: &PackedDw,
    y: &mut [f32],
    lo: f32,
    hi: f32,
) -> KResult {
    g.check_band("depthwise", oy, row0, x.len(), y.len())?;
    if packed.channels != g.c || packed.taps != g.kernel[0] * g.kernel[1] {
        return Err(arg("depthwise: packed weights do not match the geometry".into()));
    }
    // Every tap the loops read is inside the image: they skip rows/columns outside
    // `0..h`/`0..w` using checked arithmetic below.
    if g.c == 0 || g.ow == 0 {
        return Ok(());
    }
    let d = DwArgs { x: x.as_ptr(), y: y.as_mut_ptr(), w: packed.data.as_ptr(), g: *g, oy, row0, lo, hi };
    match packed.level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU runs AVX-512F (checked); the bounds were checked above.
        Level::Avx512 if std::is_x86_feature_detected!("avx512f") => unsafe { x86::dw_avx512(&d) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU runs AVX2 and FMA (checked); the bounds were checked above.
        Level::Avx2 if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") => unsafe {
            x86::dw_avx2(&d)
        },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: the CPU runs NEON (checked); the bounds were checked above.
        Level::Neon if std::arch::is_aarch64_feature_detected!("neon") => unsafe { arm::dw_neon(&d) },
        // SAFETY: the bounds were checked above.
        Level::Portable => unsafe { dw_row_generic::<Portable>(&d) },
        other => return Err(arg(format!("depthwise: weights packed for {} but this CPU lacks it", other.name()))),
    }
    Ok(())
}

/// # Safety
/// `d` satisfies [`dw_row`]'s checks; `V`'s level is supported and matches the packing.
#[inline(always)]
pub(crate) unsafe fn dw_row_generic<V: Vector>(d: &DwArgs) {
    match d.g.kernel[1] {
        // SAFETY: forwarded from the caller; KW is the kernel width.
        3 => unsafe { dw_row_kw::<V, 3>(d) },
        // SAFETY: as above.
        5 => unsafe { dw_row_kw::<V, 5>(d) },
        // SAFETY: forwarded from the caller; KW = 0 reads the width at run time.
        _ => unsafe { dw_row_kw::<V, 0>(d) },
    }
}

/// One depthwise output row. `KW` is the kernel width when known at compile time (the inner tap
/// loop unrolls), 0 for any width.
///
/// Channel blocks are the outer loop, so each block's bias and weights stay in L1 while the row
/// is swept; pixels whose whole window lies inside the image take a branch-free path.
///
/// # Safety
/// As [`dw_row_generic`]; `KW` is 0 or `d.g.kernel[1]`.
#[inline(always)]
pub(crate) unsafe fn dw_row_kw<V: Vector, const KW: usize>(d: &DwArgs) {
    let g = &d.g;
    let l = V::LANES;
    let kh = g.kernel[0];
    let kw = if KW == 0 { g.kernel[1] } else { KW };
    let taps = kh * kw;
    let blocks = g.c.div_ceil(l);
    let (sx, dx, px) = (g.stride[1], g.dilation[1], g.padding[1]);
    // SAFETY: the level is supported (caller).
    let (lo, hi) = unsafe { (V::splat(d.lo), V::splat(d.hi)) };
    // Input rows this output row reads: (tap row, row of the band `x` holds).
    // (On the stack for kernels up to 8 rows: this runs once per output row.)
    let valid = (0..kh).filter_map(|ki| {
        let iy = (d.oy * g.stride[0] + ki * g.dilation[0]).checked_sub(g.padding[0])?;
        // The band holds every row read (checked), so `iy - row0` does not underflow.
        (iy < g.h).then_some((ki, iy - d.row0))
    });
    let (mut fixed, mut spilled, mut count) = ([(0usize, 0usize); 8], Vec::new(), 0);
    for r in valid {
        if count < fixed.len() {
            fixed[count] = r;
        } else {
            if spilled.is_empty() {
                spilled.extend_from_slice(&fixed);
            }
            spilled.push(r);
        }
        count += 1;
    }
    let rows: &[(usize, usize)] = if count <= fixed.len() { &fixed[..count] } else { &spilled };
    // Output columns whose window lies inside the image: ox·sx ≥ px and ox·sx − px + (kw−1)·dx < w.
    let span = (kw - 1) * dx;
    let first = px.div_ceil(sx);
    let last = if g.w + px > span { ((g.w + px - span - 1) / sx + 1).min(g.ow) } else { 0 };
    let (first, last) = (first.min(last), last);
    for blk in 0..blocks {
        let c0 = blk * l;
        let nc = l.min(g.c - c0);
        // SAFETY: block `blk` of the packed weights holds (taps + 1) vectors, the bias first.
        let (wb, bias) = unsafe {
            let wb = d.w.add(blk * (taps + 1) * l);
            (wb, V::load(wb))
        };
        let store = |ox: usize, acc: V| {
            // SAFETY: ox < ow and c0 + nc ≤ c: inside the output row.
            unsafe {
                let yp = d.y.add(ox * g.c + c0);
                let out = acc.clamp(lo, hi);
                if nc == l {
                    out.store(yp);
                } else {
                    out.store_partial(yp, nc);
                }
            }
        };
        // Border pixels (and partial channel blocks): every tap checked.
        let border = |ox: usize| {
            let mut acc = bias;
            for &(ki, iy) in rows {
                for kj in 0..kw {
                    let Some(ix) = (ox * sx + kj * dx).checked_sub(px).filter(|&ix| ix < g.w) else { continue };
                    // SAFETY: iy < h, ix < w, c0 + nc ≤ c: inside `x`; the weight vector is
                    // inside block `blk`.
                    unsafe {
                        let xp = d.x.add((iy * g.w + ix) * g.c + c0);
                        let xv = if nc == l { V::load(xp) } else { V::load_partial(xp, nc) };
                        acc = V::fma(xv, V::load(wb.add((1 + ki * kw + kj) * l)), acc);
                    }
                }
            }
            acc
        };
        if nc < l {
            for ox in 0..g.ow {
                store(ox, border(ox));
            }
            continue;
        }
        for ox in (0..first).chain(last..g.ow) {
            store(ox, border(ox));
        }
        let mut ox = first;
        if KW == 3 && kh == 3 && rows.len() == 3 {
            // 3×3 with every window row inside the image: the nine weight vectors stay in
            // registers, and four pixels at a time give four independent FMA chains.
            // SAFETY: block `blk` holds 10 vectors.
            let wv: [V; 9] = std::array::from_fn(|t| unsafe { V::load(wb.add((1 + t) * l)) });
            // Row starts; `wrapping_add` as pointer arithmetic only (all reads are checked above).
            let xr: [*const f32; 3] = std::array::from_fn(|r| d.x.wrapping_add(rows[r].1 * g.w * g.c + c0));
            let (step, tap) = (sx * g.c, dx * g.c);
            while ox + 4 <= last {
                let base = (ox * sx - px) * g.c;
                let mut acc = [bias; 4];
                for r in 0..3 {
                    for kj in 0..3 {
                        for (q, a) in acc.iter_mut().enumerate() {
                            // SAFETY: pixel ox + q < last has its whole window inside the row.
                            *a = unsafe { V::fma(V::load(xr[r].add(base + q * step + kj * tap)), wv[r * 3 + kj], *a) };
                        }
                    }
                }
                for (q, a) in acc.into_iter().enumerate() {
                    store(ox + q, a);
                }
                ox += 4;
            }
        }
        for ox in ox..last {
            let ix0 = ox * sx - px;
            let mut acc = bias;
            for &(ki, iy) in rows {
                // SAFETY: the window [ix0, ix0 + span] lies inside the row (first..last), so
                // every read is inside `x`; the weights are inside block `blk`.
                unsafe {
                    let xrow = d.x.add((iy * g.w + ix0) * g.c + c0);
                    let wrow = wb.add((1 + ki * kw) * l);
                    for kj in 0..kw {
                        acc = V::fma(V::load(xrow.add(kj * dx * g.c)), V::load(wrow.add(kj * l)), acc);
                    }
                }
            }
            store(ox, acc);
        }
    }
}
