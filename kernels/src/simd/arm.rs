//! The aarch64 level: NEON (`float32x4_t`, 4 lanes), and the `#[target_feature]` entry points
//! that instantiate the generic kernels for it.

use std::arch::aarch64::*;

use super::{dw_row_generic, gemm_generic, DwArgs, GemmArgs, Vector};

#[derive(Clone, Copy)]
pub(crate) struct N(float32x4_t);

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
    #[inline(always)]
    unsafe fn select_sign(x: Self, if_neg: Self, otherwise: Self) -> Self {
        // SAFETY: NEON, guaranteed by the caller; the sign bit spread over the lane as a mask.
        N(unsafe {
            let neg = vreinterpretq_u32_s32(vshrq_n_s32::<31>(vreinterpretq_s32_f32(x.0)));
            vbslq_f32(neg, if_neg.0, otherwise.0)
        })
    }
    #[inline(always)]
    unsafe fn neg_abs(self) -> Self {
        // SAFETY: NEON, guaranteed by the caller.
        N(unsafe { vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(self.0), vdupq_n_u32(0x8000_0000))) })
    }
    #[inline(always)]
    unsafe fn shl23(self) -> Self {
        // SAFETY: NEON, guaranteed by the caller.
        N(unsafe { vreinterpretq_f32_u32(vshlq_n_u32::<23>(vreinterpretq_u32_f32(self.0))) })
    }
}

/// # Safety
/// The CPU supports NEON; `g` satisfies [`super::gemm`]'s checks.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn gemm_neon(g: &GemmArgs) {
    // SAFETY: forwarded from the caller.
    unsafe { gemm_generic::<N, 6, 4>(g) }
}

/// # Safety
/// The CPU supports NEON; `d` satisfies [`super::dw_row`]'s checks.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn dw_neon(d: &DwArgs) {
    // SAFETY: forwarded from the caller.
    unsafe { dw_row_generic::<N>(d) }
}

/// # Safety
/// The CPU supports NEON; the job's own preconditions hold.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn job_neon<J: super::Job>(job: &mut J) {
    // SAFETY: forwarded from the caller.
    unsafe { job.run::<N>() }
}

/// Runs `code` compiled for NEON (its `run` is `#[inline(always)]`).
///
/// # Safety
/// The CPU supports NEON.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn call_neon<C: super::Compiled>(code: C) -> C::Output {
    code.run()
}
