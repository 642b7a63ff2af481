//! SIMD levels chosen at run time, and the vector microkernels of the Ferrite backend: a
//! register-tiled GEMM over pre-packed weights with a fused bias and clamp and a
//! depthwise-convolution row (for `super::nhwc` and `super::dense`), and the row kernels of
//! [`rows`] (element-wise arithmetic and activations, softmax, layer norm, reductions, NHWC
//! pooling).
//!
//! This is a kernel leaf: the only module of the backend's kernels with `unsafe`. Each public
//! function checks every bound it relies on before entering the raw-pointer loops, so safe
//! callers cannot cause out-of-bounds access whatever they pass; a failed check is a
//! [`KernelError`], never a panic.
//!
//! One generic implementation serves every level: it is written against the [`Vector`] trait and
//! instantiated for AVX-512 (`__m512`, 16 lanes), AVX2+FMA (`__m256`, 8 lanes), NEON on aarch64
//! (`float32x4_t`, 4 lanes) and a portable 8-lane array that compiles to whatever the target's
//! baseline has. Which level runs is decided once per process by [`Level::detect`];
//! `FERRITE_SIMD=avx512|avx2|neon|portable` asks for a lower one (for debugging and for comparing
//! levels), and tests run every level the machine has.
#![allow(unsafe_code)]

use std::sync::OnceLock;

use super::{KResult, KernelError};

pub mod rows;

/// An instruction-set level the NHWC kernels are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// x86_64 AVX-512F: 16 lanes, 32 registers.
    Avx512,
    /// x86_64 AVX2 with FMA: 8 lanes, 16 registers.
    Avx2,
    /// aarch64 Advanced SIMD (NEON): 4 lanes, 32 registers.
    Neon,
    /// Plain Rust over 8-lane arrays: vectorised by the compiler for the baseline target.
    Portable,
}

impl Level {
    /// The best level this CPU runs, unless `FERRITE_SIMD` asks for a lower one. Decided once.
    pub fn detect() -> Level {
        static LEVEL: OnceLock<Level> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            let best = Level::available()[0];
            let Ok(wanted) = std::env::var("FERRITE_SIMD") else { return best };
            match Level::parse(&wanted) {
                Some(level) if Level::available().contains(&level) => level,
                _ => {
                    tracing::warn!(
                        target: "ferrite::runtime",
                        "FERRITE_SIMD={wanted:?} is not a level this CPU runs ({}); using {}",
                        Level::available().iter().map(|l| l.name()).collect::<Vec<_>>().join(", "),
                        best.name()
                    );
                    best
                }
            }
        })
    }

    /// Every level this CPU runs, best first (always ends with [`Level::Portable`]).
    pub fn available() -> Vec<Level> {
        let mut levels = Vec::with_capacity(3);
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                levels.push(Level::Neon);
            }
        }
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                levels.push(Level::Avx512);
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                levels.push(Level::Avx2);
            }
        }
        levels.push(Level::Portable);
        levels
    }

    /// Parses a level's [`name`](Level::name).
    pub fn parse(name: &str) -> Option<Level> {
        match name.trim().to_ascii_lowercase().as_str() {
            "avx512" | "avx-512" | "avx512f" => Some(Level::Avx512),
            "avx2" | "avx2+fma" | "avx2,fma" => Some(Level::Avx2),
            "neon" | "asimd" => Some(Level::Neon),
            "portable" | "scalar" | "none" => Some(Level::Portable),
            _ => None,
        }
    }

    /// A short name (`avx512`, `avx2`, `portable`).
    pub fn name(self) -> &'static str {
        match self {
            Level::Avx512 => "avx512",
            Level::Avx2 => "avx2",
            Level::Neon => "neon",
            Level::Portable => "portable",
        }
    }

    /// f32 lanes per vector.
    pub fn lanes(self) -> usize {
        match self {
            Level::Avx512 => 16,
            Level::Avx2 | Level::Portable => 8,
            Level::Neon => 4,
        }
    }

    /// Columns of one GEMM register tile (and of one packed weight panel).
    pub fn nr(self) -> usize {
        match self {
            Level::Avx512 => 32,
            Level::Avx2 | Level::Neon => 16,
            Level::Portable => 8,
        }
    }

    /// Rows of one GEMM register tile.
    pub fn mr(self) -> usize {
        match self {
            Level::Avx512 => 8,
            Level::Avx2 | Level::Neon => 6,
            Level::Portable => 4,
        }
    }
}

fn arg(msg: String) -> KernelError {
    KernelError::Argument(msg)
}

/// A GEMM right-hand side packed for one level: panels of [`Level::nr`] columns, each the bias
/// row followed by the `k` rows of the panel's columns (zero past the last column).
#[derive(Debug, Clone)]
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
        for (jp, panel) in data.chunks_exact_mut((k + 1) * nr).enumerate() {
            let cols = nr.min(n - jp * nr);
            if let Some(b) = bias {
                panel[..cols].copy_from_slice(&b[jp * nr..jp * nr + cols]);
            }
            for p in 0..k {
                let row = &mut panel[(p + 1) * nr..(p + 1) * nr + cols];
                for (c, x) in row.iter_mut().enumerate() {
                    *x = at(p, jp * nr + c);
                }
            }
        }
        Ok(PackedB { level, k, n, data })
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
fn fits(what: &'static str, len: usize, rows: usize, cols: usize, ld: usize) -> KResult {
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

/// [`gemm`] with the weight panels split into about `tasks` groups of columns, run on rayon's
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
    use rayon::prelude::*;
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
    (0..panels.div_ceil(per)).into_par_iter().try_for_each(|t| {
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
fn gemm_checks(a: &[f32], lda: usize, m: usize, b: &PackedB, c: &[f32], ldc: usize) -> KResult {
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
unsafe fn gemm_dispatch(level: Level, g: &GemmArgs) -> KResult {
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
struct GemmArgs {
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

/// A kernel body written once over [`Vector`] and run at a level by [`run_job`].
pub(crate) trait Job {
    /// # Safety
    /// `V`'s level is supported by the CPU; the job's fields satisfy the checks of the function
    /// that built it.
    unsafe fn run<V: Vector>(&mut self);
}

/// Runs `job` at `level`: inside a `#[target_feature]` function for that level, so the job's
/// `#[inline(always)]` body is compiled for it.
///
/// # Safety
/// The job's fields satisfy the checks of the function that built it.
pub(crate) unsafe fn run_job<J: Job>(level: Level, job: &mut J) -> KResult {
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU runs AVX-512F (checked); the job's preconditions are the caller's.
        Level::Avx512 if std::is_x86_feature_detected!("avx512f") => unsafe { x86::job_avx512(job) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU runs AVX2 and FMA (checked); as above.
        Level::Avx2 if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") => unsafe {
            x86::job_avx2(job)
        },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: the CPU runs NEON (checked); as above.
        Level::Neon if std::arch::is_aarch64_feature_detected!("neon") => unsafe { arm::job_neon(job) },
        // SAFETY: the portable vector needs no CPU feature; as above.
        Level::Portable => unsafe { job.run::<Portable>() },
        other => return Err(arg(format!("{} is not a level this CPU runs", other.name()))),
    }
    Ok(())
}

/// A SIMD vector of f32 lanes. Every method is `unsafe`: the caller guarantees the CPU runs the
/// level and that pointers are valid for `LANES` elements.
pub(crate) trait Vector: Copy {
    const LANES: usize;
    unsafe fn splat(x: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(self, p: *mut f32);
    /// `a · b + c`.
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
    /// `clamp(x, lo, hi)` keeping NaN.
    unsafe fn clamp(self, lo: Self, hi: Self) -> Self;
    unsafe fn add(a: Self, b: Self) -> Self;
    unsafe fn sub(a: Self, b: Self) -> Self;
    unsafe fn mul(a: Self, b: Self) -> Self;
    unsafe fn div(a: Self, b: Self) -> Self;
    /// Lane-wise maximum; NaN in either operand gives NaN.
    unsafe fn max(a: Self, b: Self) -> Self;
    /// Lane-wise minimum; NaN in either operand gives NaN.
    unsafe fn min(a: Self, b: Self) -> Self;
    /// Rounds to the nearest integer, ties to even.
    unsafe fn round(self) -> Self;
    /// `2ⁿ` for lanes holding integers `n` in `-126..=127`.
    unsafe fn pow2i(self) -> Self;
    /// Lane-wise `if x < 0 { if_neg } else { otherwise }` (NaN is not negative).
    unsafe fn select_neg(x: Self, if_neg: Self, otherwise: Self) -> Self;

    /// Loads `n < LANES` elements, zero past them.
    #[inline(always)]
    unsafe fn load_partial(p: *const f32, n: usize) -> Self {
        let mut tmp = [0.0f32; 16];
        // SAFETY: the caller guarantees `p` is valid for `n` reads; `tmp` holds 16 ≥ LANES.
        unsafe {
            std::ptr::copy_nonoverlapping(p, tmp.as_mut_ptr(), n);
            Self::load(tmp.as_ptr())
        }
    }

    /// Loads `n < LANES` elements, `fill` past them.
    #[inline(always)]
    unsafe fn load_partial_or(p: *const f32, n: usize, fill: f32) -> Self {
        let mut tmp = [fill; 16];
        // SAFETY: as `load_partial`.
        unsafe {
            std::ptr::copy_nonoverlapping(p, tmp.as_mut_ptr(), n);
            Self::load(tmp.as_ptr())
        }
    }

    /// Stores the first `n < LANES` lanes.
    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, n: usize) {
        let mut tmp = [0.0f32; 16];
        // SAFETY: `tmp` holds 16 ≥ LANES; the caller guarantees `p` is valid for `n` writes.
        unsafe {
            self.store(tmp.as_mut_ptr());
            std::ptr::copy_nonoverlapping(tmp.as_ptr(), p, n);
        }
    }

    /// The lanes, in order (the first `LANES` of the array).
    #[inline(always)]
    unsafe fn lanes(self) -> [f32; 16] {
        let mut tmp = [0.0f32; 16];
        // SAFETY: `tmp` holds 16 ≥ LANES.
        unsafe { self.store(tmp.as_mut_ptr()) };
        tmp
    }

    /// The sum of the lanes (pairwise, in a fixed order).
    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        // SAFETY: forwarded from the caller.
        let mut t = unsafe { self.lanes() };
        let mut n = Self::LANES;
        while n > 1 {
            n /= 2;
            for i in 0..n {
                t[i] += t[i + n];
            }
        }
        t[0]
    }

    /// The largest lane (NaN if any lane is NaN).
    #[inline(always)]
    unsafe fn max_lane(self) -> f32 {
        // SAFETY: forwarded from the caller.
        let t = unsafe { self.lanes() };
        t[..Self::LANES]
            .iter()
            .fold(f32::NEG_INFINITY, |m, &x| if x.is_nan() || m.is_nan() { f32::NAN } else { m.max(x) })
    }
}

/// Eight lanes in plain Rust.
#[derive(Clone, Copy)]
struct Portable([f32; 8]);

impl Vector for Portable {
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        Portable([x; 8])
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller guarantees 8 readable elements at `p`.
        Portable(unsafe { p.cast::<[f32; 8]>().read_unaligned() })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller guarantees 8 writable elements at `p`.
        unsafe { p.cast::<[f32; 8]>().write_unaligned(self.0) }
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        Portable(std::array::from_fn(|i| a.0[i] * b.0[i] + c.0[i]))
    }
    #[inline(always)]
    unsafe fn clamp(self, lo: Self, hi: Self) -> Self {
        Portable(std::array::from_fn(|i| {
            let x = self.0[i];
            if x < lo.0[i] {
                lo.0[i]
            } else if x > hi.0[i] {
                hi.0[i]
            } else {
                x
            }
        }))
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        Portable(std::array::from_fn(|i| a.0[i] + b.0[i]))
    }
    #[inline(always)]
    unsafe fn sub(a: Self, b: Self) -> Self {
        Portable(std::array::from_fn(|i| a.0[i] - b.0[i]))
    }
    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        Portable(std::array::from_fn(|i| a.0[i] * b.0[i]))
    }
    #[inline(always)]
    unsafe fn div(a: Self, b: Self) -> Self {
        Portable(std::array::from_fn(|i| a.0[i] / b.0[i]))
    }
    #[inline(always)]
    unsafe fn max(a: Self, b: Self) -> Self {
        Portable(std::array::from_fn(
            |i| if a.0[i].is_nan() || b.0[i].is_nan() { f32::NAN } else { a.0[i].max(b.0[i]) },
        ))
    }
    #[inline(always)]
    unsafe fn min(a: Self, b: Self) -> Self {
        Portable(std::array::from_fn(
            |i| if a.0[i].is_nan() || b.0[i].is_nan() { f32::NAN } else { a.0[i].min(b.0[i]) },
        ))
    }
    #[inline(always)]
    unsafe fn round(self) -> Self {
        Portable(self.0.map(f32::round_ties_even))
    }
    #[inline(always)]
    unsafe fn pow2i(self) -> Self {
        Portable(self.0.map(|n| f32::from_bits(((n as i32 + 127) as u32) << 23)))
    }
    #[inline(always)]
    unsafe fn select_neg(x: Self, if_neg: Self, otherwise: Self) -> Self {
        Portable(std::array::from_fn(|i| if x.0[i] < 0.0 { if_neg.0[i] } else { otherwise.0[i] }))
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{dw_row_generic, gemm_generic, DwArgs, GemmArgs, Vector};

    #[derive(Clone, Copy)]
    pub(super) struct Z(__m512);

    impl Vector for Z {
        const LANES: usize = 16;
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            // SAFETY: only reached from `avx512f` functions.
            Z(unsafe { _mm512_set1_ps(x) })
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: the caller guarantees 16 readable elements and AVX-512F.
            Z(unsafe { _mm512_loadu_ps(p) })
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: the caller guarantees 16 writable elements and AVX-512F.
            unsafe { _mm512_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            // SAFETY: AVX-512F, guaranteed by the caller.
            Z(unsafe { _mm512_fmadd_ps(a.0, b.0, c.0) })
        }
        #[inline(always)]
        unsafe fn clamp(self, lo: Self, hi: Self) -> Self {
            // SAFETY: AVX-512F, guaranteed by the caller. With one NaN operand max/min return the
            // second one, so `x` goes second to keep NaN.
            Z(unsafe { _mm512_min_ps(hi.0, _mm512_max_ps(lo.0, self.0)) })
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            // SAFETY: AVX-512F, guaranteed by the caller.
            Z(unsafe { _mm512_add_ps(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn sub(a: Self, b: Self) -> Self {
            // SAFETY: AVX-512F, guaranteed by the caller.
            Z(unsafe { _mm512_sub_ps(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn mul(a: Self, b: Self) -> Self {
            // SAFETY: AVX-512F, guaranteed by the caller.
            Z(unsafe { _mm512_mul_ps(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn div(a: Self, b: Self) -> Self {
            // SAFETY: AVX-512F, guaranteed by the caller.
            Z(unsafe { _mm512_div_ps(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn max(a: Self, b: Self) -> Self {
            // SAFETY: AVX-512F, guaranteed by the caller. `max_ps` returns its second operand
            // when either is NaN; lanes where `a` is NaN take `a`.
            Z(unsafe {
                _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(a.0, a.0), _mm512_max_ps(a.0, b.0), a.0)
            })
        }
        #[inline(always)]
        unsafe fn min(a: Self, b: Self) -> Self {
            // SAFETY: as `max`.
            Z(unsafe {
                _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(a.0, a.0), _mm512_min_ps(a.0, b.0), a.0)
            })
        }
        #[inline(always)]
        unsafe fn round(self) -> Self {
            // SAFETY: AVX-512F, guaranteed by the caller.
            Z(unsafe { _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(self.0) })
        }
        #[inline(always)]
        unsafe fn pow2i(self) -> Self {
            // SAFETY: AVX-512F, guaranteed by the caller; the exponent field of n + 127.
            Z(unsafe {
                _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(
                    _mm512_cvtps_epi32(self.0),
                    _mm512_set1_epi32(127),
                )))
            })
        }
        #[inline(always)]
        unsafe fn select_neg(x: Self, if_neg: Self, otherwise: Self) -> Self {
            // SAFETY: AVX-512F, guaranteed by the caller.
            Z(unsafe {
                _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(x.0, _mm512_setzero_ps()), otherwise.0, if_neg.0)
            })
        }
    }

    #[derive(Clone, Copy)]
    pub(super) struct Y(__m256);

    impl Vector for Y {
        const LANES: usize = 8;
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            // SAFETY: only reached from `avx2,fma` functions.
            Y(unsafe { _mm256_set1_ps(x) })
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: the caller guarantees 8 readable elements and AVX.
            Y(unsafe { _mm256_loadu_ps(p) })
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: the caller guarantees 8 writable elements and AVX.
            unsafe { _mm256_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            // SAFETY: FMA, guaranteed by the caller.
            Y(unsafe { _mm256_fmadd_ps(a.0, b.0, c.0) })
        }
        #[inline(always)]
        unsafe fn clamp(self, lo: Self, hi: Self) -> Self {
            // SAFETY: AVX, guaranteed by the caller; `x` second keeps NaN (see `Z::clamp`).
            Y(unsafe { _mm256_min_ps(hi.0, _mm256_max_ps(lo.0, self.0)) })
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            // SAFETY: AVX, guaranteed by the caller.
            Y(unsafe { _mm256_add_ps(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn sub(a: Self, b: Self) -> Self {
            // SAFETY: AVX, guaranteed by the caller.
            Y(unsafe { _mm256_sub_ps(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn mul(a: Self, b: Self) -> Self {
            // SAFETY: AVX, guaranteed by the caller.
            Y(unsafe { _mm256_mul_ps(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn div(a: Self, b: Self) -> Self {
            // SAFETY: AVX, guaranteed by the caller.
            Y(unsafe { _mm256_div_ps(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn max(a: Self, b: Self) -> Self {
            // SAFETY: AVX, guaranteed by the caller; NaN in `a` kept as in `Z::max`.
            Y(unsafe { _mm256_blendv_ps(_mm256_max_ps(a.0, b.0), a.0, _mm256_cmp_ps::<_CMP_UNORD_Q>(a.0, a.0)) })
        }
        #[inline(always)]
        unsafe fn min(a: Self, b: Self) -> Self {
            // SAFETY: as `max`.
            Y(unsafe { _mm256_blendv_ps(_mm256_min_ps(a.0, b.0), a.0, _mm256_cmp_ps::<_CMP_UNORD_Q>(a.0, a.0)) })
        }
        #[inline(always)]
        unsafe fn round(self) -> Self {
            // SAFETY: AVX, guaranteed by the caller.
            Y(unsafe { _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(self.0) })
        }
        #[inline(always)]
        unsafe fn pow2i(self) -> Self {
            // SAFETY: AVX2, guaranteed by the caller; the exponent field of n + 127.
            Y(unsafe {
                _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
                    _mm256_cvtps_epi32(self.0),
                    _mm256_set1_epi32(127),
                )))
            })
        }
        #[inline(always)]
        unsafe fn select_neg(x: Self, if_neg: Self, otherwise: Self) -> Self {
            // SAFETY: AVX, guaranteed by the caller.
            Y(unsafe { _mm256_blendv_ps(otherwise.0, if_neg.0, _mm256_cmp_ps::<_CMP_LT_OQ>(x.0, _mm256_setzero_ps())) })
        }
    }

    /// # Safety
    /// The CPU supports AVX-512F; `g` satisfies [`super::gemm`]'s checks.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gemm_avx512(g: &GemmArgs) {
        // SAFETY: forwarded from the caller.
        unsafe { gemm_generic::<Z, 8, 2>(g) }
    }

    /// # Safety
    /// The CPU supports AVX2 and FMA; `g` satisfies [`super::gemm`]'s checks.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gemm_avx2(g: &GemmArgs) {
        // SAFETY: forwarded from the caller.
        unsafe { gemm_generic::<Y, 6, 2>(g) }
    }

    /// # Safety
    /// The CPU supports AVX-512F; the job's own preconditions hold.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn job_avx512<J: super::Job>(job: &mut J) {
        // SAFETY: forwarded from the caller.
        unsafe { job.run::<Z>() }
    }

    /// # Safety
    /// The CPU supports AVX2 and FMA; the job's own preconditions hold.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn job_avx2<J: super::Job>(job: &mut J) {
        // SAFETY: forwarded from the caller.
        unsafe { job.run::<Y>() }
    }

    /// # Safety
    /// The CPU supports AVX-512F; `d` satisfies [`super::dw_row`]'s checks.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dw_avx512(d: &DwArgs) {
        // SAFETY: forwarded from the caller.
        unsafe { dw_row_generic::<Z>(d) }
    }

    /// # Safety
    /// The CPU supports AVX2 and FMA; `d` satisfies [`super::dw_row`]'s checks.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dw_avx2(d: &DwArgs) {
        // SAFETY: forwarded from the caller.
        unsafe { dw_row_generic::<Y>(d) }
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::*;

    use super::{dw_row_generic, gemm_generic, DwArgs, GemmArgs, Vector};

    #[derive(Clone, Copy)]
    pub(super) struct N(float32x4_t);

    impl Vector for N {
        const LANES: usize = 4;
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            // SAFETY: only reached from `neon` functions.
            N(unsafe { vdupq_n_f32(x) })
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: the caller guarantees 4 readable elements and NEON.
            N(unsafe { vld1q_f32(p) })
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: the caller guarantees 4 writable elements and NEON.
            unsafe { vst1q_f32(p, self.0) }
        }
        #[inline(always)]
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            // SAFETY: NEON, guaranteed by the caller. `vfmaq_f32(c, a, b)` is `c + a · b`.
            N(unsafe { vfmaq_f32(c.0, a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn clamp(self, lo: Self, hi: Self) -> Self {
            // SAFETY: NEON, guaranteed by the caller; FMAX/FMIN return NaN when either is NaN.
            N(unsafe { vminq_f32(hi.0, vmaxq_f32(lo.0, self.0)) })
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            // SAFETY: NEON, guaranteed by the caller.
            N(unsafe { vaddq_f32(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn sub(a: Self, b: Self) -> Self {
            // SAFETY: NEON, guaranteed by the caller.
            N(unsafe { vsubq_f32(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn mul(a: Self, b: Self) -> Self {
            // SAFETY: NEON, guaranteed by the caller.
            N(unsafe { vmulq_f32(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn div(a: Self, b: Self) -> Self {
            // SAFETY: NEON, guaranteed by the caller.
            N(unsafe { vdivq_f32(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn max(a: Self, b: Self) -> Self {
            // SAFETY: NEON, guaranteed by the caller; FMAX propagates NaN.
            N(unsafe { vmaxq_f32(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn min(a: Self, b: Self) -> Self {
            // SAFETY: NEON, guaranteed by the caller; FMIN propagates NaN.
            N(unsafe { vminq_f32(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn round(self) -> Self {
            // SAFETY: NEON, guaranteed by the caller (FRINTN: to nearest, ties to even).
            N(unsafe { vrndnq_f32(self.0) })
        }
        #[inline(always)]
        unsafe fn pow2i(self) -> Self {
            // SAFETY: NEON, guaranteed by the caller; the exponent field of n + 127.
            N(unsafe { vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(vcvtq_s32_f32(self.0), vdupq_n_s32(127)))) })
        }
        #[inline(always)]
        unsafe fn select_neg(x: Self, if_neg: Self, otherwise: Self) -> Self {
            // SAFETY: NEON, guaranteed by the caller.
            N(unsafe { vbslq_f32(vcltzq_f32(x.0), if_neg.0, otherwise.0) })
        }
    }

    /// # Safety
    /// The CPU supports NEON; `g` satisfies [`super::gemm`]'s checks.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn gemm_neon(g: &GemmArgs) {
        // SAFETY: forwarded from the caller.
        unsafe { gemm_generic::<N, 6, 4>(g) }
    }

    /// # Safety
    /// The CPU supports NEON; `d` satisfies [`super::dw_row`]'s checks.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn dw_neon(d: &DwArgs) {
        // SAFETY: forwarded from the caller.
        unsafe { dw_row_generic::<N>(d) }
    }

    /// # Safety
    /// The CPU supports NEON; the job's own preconditions hold.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn job_neon<J: super::Job>(job: &mut J) {
        // SAFETY: forwarded from the caller.
        unsafe { job.run::<N>() }
    }
}

/// Rows of the left-hand side kept hot in cache while every weight panel passes over them.
const ROW_BLOCK: usize = 64;

/// # Safety
/// `V`'s level is supported; `NV · V::LANES` is the packing's panel width; `g` satisfies the
/// checks of [`gemm`].
#[inline(always)]
unsafe fn gemm_generic<V: Vector, const MR: usize, const NV: usize>(g: &GemmArgs) {
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
unsafe fn tile<V: Vector, const MR: usize, const NV: usize>(
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
    /// (`[N, OH, OW, C]`), when the sizes agree and every window starts inside the padded image
    /// (as PyTorch's output sizes guarantee); `None` otherwise.
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
    fn check_row(&self, what: &str, oy: usize, x_len: usize, y_len: usize) -> KResult {
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
        let input = self.h.checked_mul(self.w).and_then(|s| s.checked_mul(self.c));
        let output = self.ow.checked_mul(self.c);
        match (input, output) {
            (Some(i), Some(o)) if x_len >= i && y_len >= o => Ok(()),
            _ => Err(arg(format!("{what}: buffers are smaller than the geometry"))),
        }
    }
}

/// Raw arguments of one depthwise row, valid as [`dw_row`] checked.
struct DwArgs {
    x: *const f32,
    y: *mut f32,
    w: *const f32,
    g: Window,
    oy: usize,
    lo: f32,
    hi: f32,
}

/// Output row `oy` (`ow × c`, NHWC) of a depthwise convolution of the image `x` (`h × w × c`),
/// bias and clamp fused.
pub fn dw_row(x: &[f32], g: &Window, oy: usize, packed: &PackedDw, y: &mut [f32], lo: f32, hi: f32) -> KResult {
    g.check_row("depthwise", oy, x.len(), y.len())?;
    if packed.channels != g.c || packed.taps != g.kernel[0] * g.kernel[1] {
        return Err(arg("depthwise: packed weights do not match the geometry".into()));
    }
    // Every tap the loops read is inside the image: they skip rows/columns outside
    // `0..h`/`0..w` using checked arithmetic below.
    if g.c == 0 || g.ow == 0 {
        return Ok(());
    }
    let d = DwArgs { x: x.as_ptr(), y: y.as_mut_ptr(), w: packed.data.as_ptr(), g: *g, oy, lo, hi };
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
unsafe fn dw_row_generic<V: Vector>(d: &DwArgs) {
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
unsafe fn dw_row_kw<V: Vector, const KW: usize>(d: &DwArgs) {
    let g = &d.g;
    let l = V::LANES;
    let kh = g.kernel[0];
    let kw = if KW == 0 { g.kernel[1] } else { KW };
    let taps = kh * kw;
    let blocks = g.c.div_ceil(l);
    let (sx, dx, px) = (g.stride[1], g.dilation[1], g.padding[1]);
    // SAFETY: the level is supported (caller).
    let (lo, hi) = unsafe { (V::splat(d.lo), V::splat(d.hi)) };
    // Input rows this output row reads: (tap row, input row).
    // (On the stack for kernels up to 8 rows: this runs once per output row.)
    let valid = (0..kh).filter_map(|ki| {
        let iy = (d.oy * g.stride[0] + ki * g.dilation[0]).checked_sub(g.padding[0])?;
        (iy < g.h).then_some((ki, iy))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn reference_gemm(a: &[f32], lda: usize, m: usize, k: usize, b: &[f32], n: usize, bias: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = f64::from(bias[j]);
                for p in 0..k {
                    s += f64::from(a[i * lda + p]) * f64::from(b[p * n + j]);
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    #[test]
    fn gemm_matches_reference_at_every_level_and_edge() {
        for level in Level::available() {
            for &(m, k, n) in &[(1, 1, 1), (7, 3, 5), (9, 17, 33), (13, 0, 40), (65, 24, 17), (3, 64, 96)] {
                let lda = k + 2;
                let a: Vec<f32> = (0..m * lda).map(|i| ((i * 7 % 13) as f32 - 6.0) / 4.0).collect();
                let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 8.0).collect();
                let bias: Vec<f32> = (0..n).map(|j| j as f32 / 3.0).collect();
                let packed = PackedB::new(level, k, n, Some(&bias), |p, j| b[p * n + j]).unwrap();
                let mut c = vec![f32::NAN; m * n];
                gemm(&a, lda, m, &packed, &mut c, n, f32::NEG_INFINITY, f32::INFINITY).unwrap();
                let want = reference_gemm(&a, lda, m, k, &b, n, &bias);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() <= 1e-4 * y.abs().max(1.0), "{level:?} {m}x{k}x{n}: {x} vs {y}");
                }
                // Clamped, and the output's stride respected.
                let mut c2 = vec![7.0f32; m * (n + 3)];
                gemm(&a, lda, m, &packed, &mut c2, n + 3, -0.5, 0.5).unwrap();
                for i in 0..m {
                    for j in 0..n + 3 {
                        let got = c2[i * (n + 3) + j];
                        if j < n {
                            assert!((got - want[i * n + j].clamp(-0.5, 0.5)).abs() <= 1e-4);
                        } else {
                            assert_eq!(got, 7.0, "wrote past the row");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn column_split_gemm_matches_the_whole_product() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for level in Level::available() {
            for &(m, k, n, tasks) in &[(1, 7, 100, 3), (5, 16, 33, 2), (3, 4, 8, 5), (2, 9, 200, 64)] {
                let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 4.0).collect();
                let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 8.0).collect();
                let bias: Vec<f32> = (0..n).map(|j| j as f32 / 7.0).collect();
                let packed = PackedB::new(level, k, n, Some(&bias), |p, j| b[p * n + j]).unwrap();
                let mut whole = vec![0.0f32; m * (n + 1)];
                gemm(&a, k, m, &packed, &mut whole, n + 1, -1.0, 2.0).unwrap();
                let mut split = vec![0.0f32; m * (n + 1)];
                pool.install(|| gemm_split_columns(&a, k, m, &packed, &mut split, n + 1, -1.0, 2.0, tasks)).unwrap();
                assert_eq!(whole, split, "{level:?} {m}x{k}x{n} in {tasks}");
            }
            let packed = PackedB::new(level, 2, 3, None, |_, _| 1.0).unwrap();
            assert!(gemm_split_columns(&[0.0; 3], 2, 2, &packed, &mut [0.0; 6], 3, 0.0, 1.0, 2).is_err());
        }
    }

    #[test]
    fn clamp_keeps_nan() {
        for level in Level::available() {
            let packed = PackedB::new(level, 1, 3, None, |_, _| 1.0).unwrap();
            let a = [f32::NAN, 5.0];
            let mut c = [0.0f32; 6];
            gemm(&a, 1, 2, &packed, &mut c, 3, 0.0, 1.0).unwrap();
            assert!(c[..3].iter().all(|x| x.is_nan()), "{level:?}: {c:?}");
            assert_eq!(&c[3..], &[1.0, 1.0, 1.0]);
        }
    }

    #[test]
    fn bad_bounds_are_errors() {
        let level = Level::Portable;
        let packed = PackedB::new(level, 4, 4, None, |_, _| 1.0).unwrap();
        let mut c = [0.0f32; 8];
        assert!(gemm(&[0.0; 7], 4, 2, &packed, &mut c, 4, 0.0, 1.0).is_err());
        assert!(gemm(&[0.0; 8], 4, 2, &packed, &mut c[..7], 4, 0.0, 1.0).is_err());
        assert!(gemm(&[0.0; 8], 3, 2, &packed, &mut c, 4, 0.0, 1.0).is_err());
        let dw = PackedDw::new(level, 3, 1, &[1.0; 3], None).unwrap();
        let g = Window {
            h: 2,
            w: 2,
            c: 3,
            oh: 2,
            ow: 2,
            kernel: [1, 1],
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
        };
        let mut y = [0.0f32; 6];
        assert!(dw_row(&[0.0; 11], &g, 0, &dw, &mut y, 0.0, 1.0).is_err());
        assert!(dw_row(&[0.0; 12], &g, 2, &dw, &mut y, 0.0, 1.0).is_err());
        assert!(dw_row(&[0.0; 12], &g, 1, &dw, &mut y, 0.0, 1.0).is_ok());
    }

    #[test]
    fn levels_parse_by_name() {
        for level in [Level::Avx512, Level::Avx2, Level::Neon, Level::Portable] {
            assert_eq!(Level::parse(level.name()), Some(level));
        }
        // NEON is part of every aarch64 target: the tests there must run it.
        #[cfg(target_arch = "aarch64")]
        assert_eq!(Level::available(), [Level::Neon, Level::Portable]);
        assert_eq!(Level::parse("sse9"), None);
        assert_eq!(Level::available().last(), Some(&Level::Portable));
    }
}
