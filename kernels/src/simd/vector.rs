//! [`Vector`]: the operations every level provides, and [`Portable`], plain Rust over eight
//! lanes.

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
    /// Lane-wise `if` the sign bit of `x` is set `{ if_neg } else { otherwise }` (−0 and a NaN
    /// with its sign bit set count as negative): one instruction where `select_neg` takes two.
    unsafe fn select_sign(x: Self, if_neg: Self, otherwise: Self) -> Self;
    /// `−|x|`: the sign bit set (NaN stays NaN).
    unsafe fn neg_abs(self) -> Self;
    /// Each lane's bits shifted left by 23 as an integer: with `n + 127` in the low bits of
    /// the mantissa (a float near 1.5·2²³ holds an integer there), the float `2ⁿ`.
    unsafe fn shl23(self) -> Self;

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
pub(crate) struct Portable([f32; 8]);

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
    #[inline(always)]
    unsafe fn select_sign(x: Self, if_neg: Self, otherwise: Self) -> Self {
        Portable(std::array::from_fn(|i| if x.0[i].is_sign_negative() { if_neg.0[i] } else { otherwise.0[i] }))
    }
    #[inline(always)]
    unsafe fn neg_abs(self) -> Self {
        Portable(self.0.map(|x| f32::from_bits(x.to_bits() | 0x8000_0000)))
    }
    #[inline(always)]
    unsafe fn shl23(self) -> Self {
        Portable(self.0.map(|x| f32::from_bits(x.to_bits() << 23)))
    }
}
