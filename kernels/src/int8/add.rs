//! int8 addition with ExecuTorch's portable arithmetic — each operand dequantized to `f32`
//! (`(x − zero_point) · scale`), the sum quantized (`rint(sum · (1/scale)) + zero_point`,
//! clamped) — in one pass over int8 data, so the result is exactly the `dequantize → add →
//! quantize` ExecuTorch computes. AVX2 levels compile the loop with AVX2 enabled.

#![allow(unsafe_code)]

use crate::quantized::rint;
use crate::simd::Level;
use crate::{KResult, KernelError};

/// The parameters of an int8 addition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AddParams {
    /// `a`'s scale (as `f32`, as `dequantize_per_tensor` uses it) and zero point.
    pub a: (f32, i32),
    /// `b`'s scale and zero point.
    pub b: (f32, i32),
    /// `1 / out_scale` (in `f32`, as `quantize_per_tensor` computes it) and the zero point.
    pub out: (f32, i32),
    /// The output range (a fused ReLU narrows it).
    pub range: (i32, i32),
}

impl AddParams {
    /// From the operator's parameters: scales as the program gives them (double).
    pub fn new(a: (f64, i32), b: (f64, i32), out: (f64, i32), range: (i32, i32)) -> KResult<Self> {
        let ok = |s: f64| s.is_finite() && s > 0.0;
        if !ok(a.0) || !ok(b.0) || !ok(out.0) {
            return Err(KernelError::Argument(format!(
                "int8 add: scales {}, {}, {} must be positive",
                a.0, b.0, out.0
            )));
        }
        let int8 = |v: i32| (-128..=127).contains(&v);
        if ![a.1, b.1, out.1, range.0, range.1].into_iter().all(int8) || range.0 > range.1 {
            return Err(KernelError::Argument(format!(
                "int8 add: zero points {}, {}, {} and range [{}, {}] must be int8",
                a.1, b.1, out.1, range.0, range.1
            )));
        }
        Ok(AddParams { a: (a.0 as f32, a.1), b: (b.0 as f32, b.1), out: (1.0f32 / out.0 as f32, out.1), range })
    }
}

const MAGIC: f32 = 12_582_912.0;
const MAGIC_BITS: i32 = 0x4b40_0000;

#[inline(always)]
fn add_run(a: &[i8], b: &[i8], p: AddParams, out: &mut [i8]) {
    let (lo, hi) = (p.range.0 as f32, p.range.1 as f32);
    let zo = p.out.1 as f32;
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        let sum = (i32::from(x) - p.a.1) as f32 * p.a.0 + (i32::from(y) - p.b.1) as f32 * p.b.0;
        // quantize_per_tensor's value, clamped in f32 (an integer, so the same integer; `max`
        // turns NaN into `lo`). Adding 1.5 · 2²³ puts that integer in the low mantissa bits: a
        // conversion that vectorises, where `as i8` (saturating) went one value at a time.
        let v = (zo + rint(sum * p.out.0)).max(lo).min(hi);
        *o = ((v + MAGIC).to_bits() as i32 - MAGIC_BITS) as i8;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_run_avx2(a: &[i8], b: &[i8], p: AddParams, out: &mut [i8]) {
    add_run(a, b, p, out)
}

/// `out = quantize(dequantize(a) + dequantize(b))` element by element (same shapes), split over
/// rayon's current pool when `threads > 1`.
pub fn add(level: Level, a: &[i8], b: &[i8], p: AddParams, out: &mut [i8], threads: usize) -> KResult {
    if a.len() != out.len() || b.len() != out.len() {
        return Err(KernelError::Shape(format!("int8 add: {} and {} elements into {}", a.len(), b.len(), out.len())));
    }
    const CHUNK: usize = 1 << 14;
    crate::par::chunks(out, CHUNK, threads > 1 && out.len() > CHUNK, |c, o| {
        let (a, b) = (&a[c * CHUNK..][..o.len()], &b[c * CHUNK..][..o.len()]);
        #[cfg(target_arch = "x86_64")]
        {
            if matches!(level, Level::Avx2 | Level::Avx512) && std::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is present (checked just above); the function is safe Rust
                // compiled with AVX2 enabled.
                unsafe { add_run_avx2(a, b, p, o) };
                return;
            }
        }
        let _ = level;
        add_run(a, b, p, o);
    });
    Ok(())
}
