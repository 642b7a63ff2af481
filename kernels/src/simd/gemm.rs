//! The packed GEMM: weights packed once per level ([`PackedB`]), a register-tiled microkernel
//! with the bias and clamp fused into the store.

#[cfg(target_arch = "aarch64")]
use super::arm;
#[cfg(target_arch = "x86_64")]
use super::x86;
use super::{arg, Level, Portable, Vector};
use crate::{KResult, KernelError};

/// A GEMM right-hand side packed for one level: panels of [`Level::nr`] columns, each the bias
/// row followed by the `k` rows of the panel's columns (zero past the last column).
#[derive(Debug, Clone, PartialEq)]
pub struct PackedB {
    level: Level,
    k: usize,
    n: usize,
    data: Vec<f32>,
}

impl PackedB {
    /// Packs the `k × n` matrix whose element `(p, j)` is `at(p, j)`, with `bias` (length `n`,
    /// zero when absent) added to every output row.
    pub fn new(
        level: Level,
        k: usize,
        n: usize,
        bias: Option<&[f32]>,
        at: impl Fn(usize, usize) -> f32,
    ) -> KResult<Self> {
        let mut packed = Self::zeroed(level, k, n, bias)?;
        let nr = level.nr();
        for (jp, panel) in packed.data.chunks_exact_mut((k + 1) * nr).enumerate() {
            let cols = nr.min(n - jp * nr);
            for p in 0..k {
                let row = &mut panel[(p + 1) * nr..(p + 1) * nr + cols];
                for (c, x) in row.iter_mut().enumerate() {
                    *x = at(p, jp * nr + c);
                }
            }
        }
        Ok(packed)
    }

    /// Panels holding the bias row and zero weights.
    fn zeroed(level: Level, k: usize, n: usize, bias: Option<&[f32]>) -> KResult<Self> {
        let nr = level.nr();
        if let Some(b) = bias {
            if b.len() != n {
                return Err(KernelError::Length { what: "bias", expected: n, actual: b.len() });
            }
        }
        let panels = n.div_ceil(nr);
        let len = k
            .checked_add(1)
            .and_then(|r| r.checked_mul(nr))
            .and_then(|p| p.checked_mul(panels))
            .ok_or_else(|| arg(format!("packed weights of {k} × {n} overflow")))?;
        let mut data = vec![0.0f32; len];
        if let Some(b) = bias {
            for (jp, panel) in data.chunks_exact_mut((k + 1) * nr).enumerate() {
                let cols = nr.min(n - jp * nr);
                panel[..cols].copy_from_slice(&b[jp * nr..jp * nr + cols]);
            }
        }
        Ok(PackedB { level, k, n, data })
    }

    /// [`PackedB::new`] for a row-major `k × n` matrix (`rows[p * n + j]`, a linear layer's
    /// `[K, N]` weight): each panel row is one copy of a run of the matrix, not `nr` calls.
    pub fn from_rows(level: Level, k: usize, n: usize, bias: Option<&[f32]>, rows: &[f32]) -> KResult<Self> {
        Self::from_runs(level, k, n, bias, rows, false)
    }

    /// [`PackedB::new`] for a column-major `k × n` matrix (`columns[j * k + p]`, a pointwise
    /// convolution's `[out, in]` weight): each column is read as one contiguous run.
    pub fn from_columns(level: Level, k: usize, n: usize, bias: Option<&[f32]>, columns: &[f32]) -> KResult<Self> {
        Self::from_runs(level, k, n, bias, columns, true)
    }

    fn from_runs(level: Level, k: usize, n: usize, bias: Option<&[f32]>, m: &[f32], by_column: bool) -> KResult<Self> {
        let need = k.checked_mul(n).ok_or_else(|| arg(format!("weights of {k} × {n} overflow")))?;
        if m.len() != need {
            return Err(KernelError::Length { what: "weight", expected: need, actual: m.len() });
        }
        let mut packed = Self::zeroed(level, k, n, bias)?;
        let nr = level.nr();
        let panel_len = (k + 1) * nr;
        if by_column {
            for (jp, panel) in packed.data.chunks_exact_mut(panel_len).enumerate() {
                let (j0, cols) = (jp * nr, nr.min(n - jp * nr));
                for c in 0..cols {
                    let column = &m[(j0 + c) * k..(j0 + c + 1) * k];
                    for (row, &v) in panel[nr..].chunks_exact_mut(nr).zip(column) {
                        row[c] = v;
                    }
                }
            }
        } else {
            // Blocks of rows, every panel per block: the source is read a few pages at a time
            // (a whole panel at a time reads one run per row: a page, and a TLB miss, per 64
            // bytes of a large weight).
            const BLOCK: usize = 16;
            for p0 in (0..k).step_by(BLOCK) {
                let rows = BLOCK.min(k - p0);
                let src = &m[p0 * n..(p0 + rows) * n];
                for (jp, panel) in packed.data.chunks_exact_mut(panel_len).enumerate() {
                    let (j0, cols) = (jp * nr, nr.min(n - jp * nr));
                    let body = &mut panel[(p0 + 1) * nr..(p0 + 1 + rows) * nr];
                    for (row, src) in body.chunks_exact_mut(nr).zip(src.chunks_exact(n)) {
                        row[..cols].copy_from_slice(&src[j0..j0 + cols]);
                    }
                }
            }
        }
        Ok(packed)
    }

    /// The level the panels were packed for.
    pub fn level(&self) -> Level {
        self.level
    }

    /// Rows (the reduction length).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns (outputs per row).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * 4
    }
}

/// Checks that a `rows × cols` matrix with row stride `ld` fits in `len` elements.
pub(crate) fn fits(what: &'static str, len: usize, rows: usize, cols: usize, ld: usize) -> KResult {
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    if ld < cols {
        return Err(arg(format!("{what}: row stride {ld} is shorter than a row of {cols}")));
    }
    let need = (rows - 1)
        .checked_mul(ld)
        .and_then(|x| x.checked_add(cols))
        .ok_or_else(|| arg(format!("{what}: size overflows")))?;
    if len < need {
        return Err(KernelError::Length { what, expected: need, actual: len });
    }
    Ok(())
}

/// `c[i·ldc + j] = clamp(bias[j] + Σₚ a[i·lda + p] · B[p][j], lo, hi)` for `i < m`, `j < n`
/// (runs on the calling thread; callers split rows across threads). NaN propagates through the
/// clamp.
#[allow(clippy::too_many_arguments)]
pub fn gemm(a: &[f32], lda: usize, m: usize, b: &PackedB, c: &mut [f32], ldc: usize, lo: f32, hi: f32) -> KResult {
    let (k, n) = (b.k, b.n);
    if m == 0 || n == 0 {
        return Ok(());
    }
    gemm_checks(a, lda, m, b, c, ldc)?;
    let g = GemmArgs { a: a.as_ptr(), lda, m, k, b: b.data.as_ptr(), n, c: c.as_mut_ptr(), ldc, lo, hi };
    // SAFETY: `gemm_checks` checked every bound the loops rely on.
    unsafe { gemm_dispatch(b.level, &g) }
}

/// [`gemm()`] with the weight panels split into about `tasks` groups of columns, run on rayon's
/// current pool: for products with few rows and many columns (late convolution layers, dense
/// layers on one row), where splitting rows would make every task stream all the weights.
#[allow(clippy::too_many_arguments)]
pub fn gemm_split_columns(
    a: &[f32],
    lda: usize,
    m: usize,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
    lo: f32,
    hi: f32,
    tasks: usize,
) -> KResult {
    let (k, n, nr) = (b.k, b.n, b.level.nr());
    if m == 0 || n == 0 {
        return Ok(());
    }
    gemm_checks(a, lda, m, b, c, ldc)?;
    let panels = n.div_ceil(nr);
    let per = panels.div_ceil(tasks.clamp(1, panels));
    /// The output's base pointer, shared by tasks that write disjoint columns.
    #[derive(Clone, Copy)]
    struct Out(*mut f32);
    // SAFETY: tasks write disjoint column ranges of the output (below); the pointer is only
    // dereferenced inside the GEMM loops.
    unsafe impl Send for Out {}
    // SAFETY: as above.
    unsafe impl Sync for Out {}
    impl Out {
        /// The pointer (a method, so closures capture the whole `Out`, not its field).
        fn ptr(self) -> *mut f32 {
            self.0
        }
    }
    let out = Out(c.as_mut_ptr());
    crate::par::try_indices(panels.div_ceil(per), true, &|t| {
        let (p0, p1) = (t * per, ((t + 1) * per).min(panels));
        let cols = (p1 * nr).min(n) - p0 * nr;
        // SAFETY: panels p0..p1 lie inside the packed data; columns p0·nr..p0·nr + cols ≤ n of
        // every row lie inside `c` (checked by `gemm_checks`), and no other task writes them.
        unsafe {
            let g = GemmArgs {
                a: a.as_ptr(),
                lda,
                m,
                k,
                b: b.data.as_ptr().add(p0 * (k + 1) * nr),
                n: cols,
                c: out.ptr().add(p0 * nr),
                ldc,
                lo,
                hi,
            };
            gemm_dispatch(b.level, &g)
        }
    })
}

/// The bounds [`gemm`]'s loops rely on.
pub(crate) fn gemm_checks(a: &[f32], lda: usize, m: usize, b: &PackedB, c: &[f32], ldc: usize) -> KResult {
    fits("gemm lhs", a.len(), m, b.k, lda)?;
    fits("gemm output", c.len(), m, b.n, ldc)?;
    if b.data.len() != b.n.div_ceil(b.level.nr()) * (b.k + 1) * b.level.nr() {
        return Err(arg("gemm: packed weights are inconsistent".into()));
    }
    Ok(())
}

/// Runs the GEMM loops at `level`.
///
/// # Safety
/// `g` satisfies [`gemm_checks`] (for its column range) and its panels were packed for `level`.
pub(crate) unsafe fn gemm_dispatch(level: Level, g: &GemmArgs) -> KResult {
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the level was packed for only when the CPU runs it (`Level::available`), which
        // is all `gemm_avx512` requires; the bounds are the caller's.
        Level::Avx512 if std::is_x86_feature_detected!("avx512f") => unsafe { x86::gemm_avx512(g) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, for AVX2 and FMA.
        Level::Avx2 if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") => unsafe {
            x86::gemm_avx2(g)
        },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: as above, for NEON.
        Level::Neon if std::arch::is_aarch64_feature_detected!("neon") => unsafe { arm::gemm_neon(g) },
        // SAFETY: the bounds are the caller's; the portable vector needs no CPU feature.
        Level::Portable => unsafe { gemm_generic::<Portable, 4, 1>(g) },
        other => return Err(arg(format!("gemm: weights packed for {} but this CPU lacks it", other.name()))),
    }
    Ok(())
}

/// Raw arguments of the GEMM loops, valid as [`gemm`] checked.
pub(crate) struct GemmArgs {
    a: *const f32,
    lda: usize,
    m: usize,
    k: usize,
    b: *const f32,
    n: usize,
    c: *mut f32,
    ldc: usize,
    lo: f32,
    hi: f32,
}

/// Rows of the left-hand side kept hot in cache while every weight panel passes over them.
pub(crate) const ROW_BLOCK: usize = 64;

/// # Safety
/// `V`'s level is supported; `NV · V::LANES` is the packing's panel width; `g` satisfies the
/// checks of [`gemm`].
#[inline(always)]
pub(crate) unsafe fn gemm_generic<V: Vector, const MR: usize, const NV: usize>(g: &GemmArgs) {
    let nr = NV * V::LANES;
    let panels = g.n.div_ceil(nr);
    // SAFETY: the level is supported (caller).
    let (lo, hi) = unsafe { (V::splat(g.lo), V::splat(g.hi)) };
    let mut i0 = 0;
    while i0 < g.m {
        let mb = ROW_BLOCK.min(g.m - i0);
        for jp in 0..panels {
            let cols = nr.min(g.n - jp * nr);
            let mut i = i0;
            while i < i0 + mb {
                let rows = MR.min(i0 + mb - i);
                // SAFETY: rows `i..i + rows` < m and columns `jp·nr..jp·nr + cols` ≤ n lie inside
                // `a` and `c` (checked by `gemm`); panel `jp` lies inside the packed data.
                unsafe {
                    tile::<V, MR, NV>(
                        g.a.add(i * g.lda),
                        g.lda,
                        rows,
                        g.k,
                        g.b.add(jp * (g.k + 1) * nr),
                        g.c.add(i * g.ldc + jp * nr),
                        g.ldc,
                        cols,
                        lo,
                        hi,
                    )
                }
                i += MR;
            }
        }
        i0 += mb;
    }
}

/// One `rows × cols` register tile (`rows ≤ MR`, `cols ≤ NV · LANES`).
///
/// # Safety
/// `a` is valid for `rows` rows of `k` (stride `lda`); `panel` for `(k + 1) · NV · LANES`
/// elements; `c` for `rows` rows of `cols` (stride `ldc`); the level is supported.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn tile<V: Vector, const MR: usize, const NV: usize>(
    a: *const f32,
    lda: usize,
    rows: usize,
    k: usize,
    panel: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    lo: V,
    hi: V,
) {
    let nr = NV * V::LANES;
    // Rows past `rows` recompute the last valid row and are never stored.
    // `wrapping_add`: with k = 0 the rows are never read and may lie outside `a`.
    let rowp: [*const f32; MR] = std::array::from_fn(|i| a.wrapping_add(i.min(rows - 1) * lda));
    // SAFETY: the panel's first row (the bias) holds NV vectors.
    let mut acc: [[V; NV]; MR] = [std::array::from_fn(|v| unsafe { V::load(panel.add(v * V::LANES)) }); MR];
    // SAFETY: row 1 of the panel; the panel holds k + 1 rows.
    let mut bp = unsafe { panel.add(nr) };
    for p in 0..k {
        // SAFETY: `bp` is row p + 1 of the panel, NV vectors wide.
        let bv: [V; NV] = std::array::from_fn(|v| unsafe { V::load(bp.add(v * V::LANES)) });
        for (row, acc) in rowp.iter().zip(acc.iter_mut()) {
            // SAFETY: p < k, and every row pointer is one of the `rows` valid rows.
            let av = unsafe { V::splat(*row.add(p)) };
            for (b, x) in bv.iter().zip(acc.iter_mut()) {
                // SAFETY: the level is supported (caller).
                *x = unsafe { V::fma(av, *b, *x) };
            }
        }
        // SAFETY: at most one past the panel's last row.
        bp = unsafe { bp.add(nr) };
    }
    for (i, row) in acc.iter().enumerate().take(rows) {
        for (v, x) in row.iter().enumerate() {
            let start = v * V::LANES;
            if start >= cols {
                break;
            }
            let n = V::LANES.min(cols - start);
            // SAFETY: row i < rows and columns start..start + n ≤ cols lie inside `c`.
            unsafe {
                let y = x.clamp(lo, hi);
                if n == V::LANES {
                    y.store(c.add(i * ldc + start));
                } else {
                    y.store_partial(c.add(i * ldc + start), n);
                }
            }
        }
    }
}
