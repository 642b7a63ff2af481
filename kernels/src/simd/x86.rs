//! The x86-64 levels: AVX-512F (`__m512`, 16 lanes) and AVX2+FMA (`__m256`, 8 lanes), and the
//! `#[target_feature]` entry points that instantiate the generic kernels for them.

use std::arch::x86_64::*;

use super::{dw_row_generic, gemm_generic, DwArgs, GemmArgs, Vector};

#[derive(Clone, Copy)]
pub(crate) struct Z(__m512);

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
        Z(unsafe { _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(a.0, a.0), _mm512_max_ps(a.0, b.0), a.0) })
    }
    #[inline(always)]
    unsafe fn min(a: Self, b: Self) -> Self {
        // SAFETY: as `max`.
        Z(unsafe { _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(a.0, a.0), _mm512_min_ps(a.0, b.0), a.0) })
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
    #[inline(always)]
    unsafe fn select_sign(x: Self, if_neg: Self, otherwise: Self) -> Self {
        // SAFETY: AVX-512F, guaranteed by the caller; the sign bit read as an integer's.
        Z(unsafe {
            let neg = _mm512_cmplt_epi32_mask(_mm512_castps_si512(x.0), _mm512_setzero_si512());
            _mm512_mask_blend_ps(neg, otherwise.0, if_neg.0)
        })
    }
    #[inline(always)]
    unsafe fn neg_abs(self) -> Self {
        // SAFETY: AVX-512F, guaranteed by the caller.
        Z(unsafe { _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(self.0), _mm512_set1_epi32(i32::MIN))) })
    }
    #[inline(always)]
    unsafe fn shl23(self) -> Self {
        // SAFETY: AVX-512F, guaranteed by the caller.
        Z(unsafe { _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_castps_si512(self.0))) })
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Y(__m256);

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
    #[inline(always)]
    unsafe fn select_sign(x: Self, if_neg: Self, otherwise: Self) -> Self {
        // SAFETY: AVX, guaranteed by the caller; `blendv` selects on each mask lane's sign bit.
        Y(unsafe { _mm256_blendv_ps(otherwise.0, if_neg.0, x.0) })
    }
    #[inline(always)]
    unsafe fn neg_abs(self) -> Self {
        // SAFETY: AVX, guaranteed by the caller.
        Y(unsafe { _mm256_or_ps(self.0, _mm256_set1_ps(-0.0)) })
    }
    #[inline(always)]
    unsafe fn shl23(self) -> Self {
        // SAFETY: AVX2, guaranteed by the caller.
        Y(unsafe { _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_castps_si256(self.0))) })
    }
}

/// # Safety
/// The CPU supports AVX-512F; `g` satisfies [`super::gemm`]'s checks.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn gemm_avx512(g: &GemmArgs) {
    // SAFETY: forwarded from the caller.
    unsafe { gemm_generic::<Z, 8, 2>(g) }
}

/// # Safety
/// The CPU supports AVX2 and FMA; `g` satisfies [`super::gemm`]'s checks.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn gemm_avx2(g: &GemmArgs) {
    // SAFETY: forwarded from the caller.
    unsafe { gemm_generic::<Y, 6, 2>(g) }
}

/// # Safety
/// The CPU supports AVX-512F; the job's own preconditions hold.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn job_avx512<J: super::Job>(job: &mut J) {
    // SAFETY: forwarded from the caller.
    unsafe { job.run::<Z>() }
}

/// # Safety
/// The CPU supports AVX2 and FMA; the job's own preconditions hold.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn job_avx2<J: super::Job>(job: &mut J) {
    // SAFETY: forwarded from the caller.
    unsafe { job.run::<Y>() }
}

/// Runs `code` compiled for AVX2 and FMA (its `run` is `#[inline(always)]`).
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn call_avx2<C: super::Compiled>(code: C) -> C::Output {
    code.run()
}

/// # Safety
/// The CPU supports AVX-512F; `d` satisfies [`super::dw_row`]'s checks.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn dw_avx512(d: &DwArgs) {
    // SAFETY: forwarded from the caller.
    unsafe { dw_row_generic::<Z>(d) }
}

/// # Safety
/// The CPU supports AVX2 and FMA; `d` satisfies [`super::dw_row`]'s checks.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dw_avx2(d: &DwArgs) {
    // SAFETY: forwarded from the caller.
    unsafe { dw_row_generic::<Y>(d) }
}
