//! The Ferrite backend's dense (fully connected) layer: `y = clamp(x · W + b)` with `W` packed
//! once, when a partition initialises, for the SIMD level chosen at start-up. Also the row-split
//! driver the pointwise convolution shares.

use super::simd::{self, Level, PackedB};
use super::{KResult, KernelError};

/// Products below this many multiply-adds stay on one thread (a fork-join costs more).
pub(crate) const PAR_MIN_MACS: usize = 1 << 16;

/// `y = clamp(x · B + bias)` over rows of `x` (`m × k`, contiguous) into `y` (`m × n`), rows
/// split over rayon's current pool in whole register tiles when `threads > 1`.
pub(crate) fn gemm_rows(x: &[f32], y: &mut [f32], b: &PackedB, clamp: (f32, f32), threads: usize) -> KResult {
    let (k, n) = (b.k(), b.n());
    if k == 0 || n == 0 {
        return Err(KernelError::Argument(format!("dense: empty weights ({k} × {n})")));
    }
    let m = x.len() / k;
    if x.len() != m * k || m.checked_mul(n) != Some(y.len()) {
        return Err(KernelError::Shape(format!(
            "dense: input of {} and output of {} elements do not match {k} × {n} weights",
            x.len(),
            y.len()
        )));
    }
    if m == 0 {
        return Ok(());
    }
    let mr = b.level().mr();
    // Few rows and wide weights (late convolution layers, a dense layer on a few rows): split
    // the columns, so each task streams only its share of the weights.
    let panels = n.div_ceil(b.level().nr());
    if threads > 1 && m.div_ceil(mr) < threads * 4 && panels >= threads && m * k * n >= PAR_MIN_MACS {
        return simd::gemm_split_columns(x, k, m, b, y, n, clamp.0, clamp.1, threads * 2);
    }
    // Several tasks per thread for balance, each a whole number of register tiles.
    let rows =
        if threads > 1 && m * k * n >= PAR_MIN_MACS { m.div_ceil(threads * 4).div_ceil(mr).max(1) * mr } else { m };
    if threads > 1 && rows < m {
        crate::par::try_chunks(y, rows * n, true, |c, yc| {
            let xa = &x[c * rows * k..][..(yc.len() / n) * k];
            simd::gemm(xa, k, xa.len() / k, b, yc, n, clamp.0, clamp.1)
        })
    } else {
        simd::gemm(x, k, m, b, y, n, clamp.0, clamp.1)
    }
}

/// A dense layer ready to run.
#[derive(Debug, Clone)]
pub struct Dense {
    packed: PackedB,
    clamp: (f32, f32),
}

impl Dense {
    /// Packs the `k × n` weight `w` (row-major, as `mm`'s second operand) and `bias` (`n`) for
    /// `level`, with the output clamped to `clamp` (`(-inf, inf)` for none).
    pub fn new(level: Level, k: usize, n: usize, w: &[f32], bias: Option<&[f32]>, clamp: (f32, f32)) -> KResult<Self> {
        if k == 0 || n == 0 {
            return Err(KernelError::Argument(format!("dense: empty weights ({k} × {n})")));
        }
        let expected = k.checked_mul(n).ok_or_else(|| KernelError::Argument("dense: weight size overflows".into()))?;
        if w.len() != expected {
            return Err(KernelError::Length { what: "dense weight", expected, actual: w.len() });
        }
        if clamp.0.is_nan() || clamp.1.is_nan() || clamp.0 > clamp.1 {
            return Err(KernelError::Argument(format!("dense: invalid clamp [{}, {}]", clamp.0, clamp.1)));
        }
        Ok(Dense { packed: PackedB::from_rows(level, k, n, bias, w)?, clamp })
    }

    /// Input features.
    pub fn k(&self) -> usize {
        self.packed.k()
    }

    /// Output features.
    pub fn n(&self) -> usize {
        self.packed.n()
    }

    /// Bytes of packed weights held.
    pub fn packed_bytes(&self) -> usize {
        self.packed.bytes()
    }

    /// Runs on `x` (`m × k`) into `y` (`m × n`).
    pub fn run(&self, x: &[f32], y: &mut [f32], threads: usize) -> KResult {
        gemm_rows(x, y, &self.packed, self.clamp, threads)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn matches_a_plain_product_at_every_level(
            m in 0usize..40, k in 1usize..50, n in 1usize..70, bias in any::<bool>(), seed in any::<u32>(),
            clamp in prop_oneof![Just((f32::NEG_INFINITY, f32::INFINITY)), Just((0.0f32, 6.0f32))],
        ) {
            let mut s = seed.max(1);
            let mut next = move || { s ^= s << 13; s ^= s >> 17; s ^= s << 5; (s as f32 / u32::MAX as f32) * 2.0 - 1.0 };
            let x: Vec<f32> = (0..m * k).map(|_| next()).collect();
            let w: Vec<f32> = (0..k * n).map(|_| next()).collect();
            let b: Option<Vec<f32>> = bias.then(|| (0..n).map(|_| next()).collect());
            let mut want = vec![0.0f32; m * n];
            for i in 0..m {
                for j in 0..n {
                    let mut acc = b.as_ref().map_or(0.0, |b| f64::from(b[j]));
                    for p in 0..k {
                        acc += f64::from(x[i * k + p]) * f64::from(w[p * n + j]);
                    }
                    want[i * n + j] = (acc as f32).clamp(clamp.0, clamp.1);
                }
            }
            let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
            for level in Level::available() {
                let d = Dense::new(level, k, n, &w, b.as_deref(), clamp).unwrap();
                let mut got = vec![f32::NAN; m * n];
                d.run(&x, &mut got, 1).unwrap();
                let mut par = vec![f32::NAN; m * n];
                pool.install(|| d.run(&x, &mut par, 3)).unwrap();
                prop_assert_eq!(&got, &par);
                for (a, b) in got.iter().zip(&want) {
                    prop_assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{:?}: {} vs {}", level, a, b);
                }
            }
        }
    }

    #[test]
    fn mismatched_buffers_are_errors() {
        let d = Dense::new(Level::Portable, 3, 2, &[1.0; 6], None, (f32::NEG_INFINITY, f32::INFINITY)).unwrap();
        assert!(d.run(&[0.0; 7], &mut [0.0; 4], 1).is_err());
        assert!(d.run(&[0.0; 6], &mut [0.0; 5], 1).is_err());
        assert!(d.run(&[0.0; 6], &mut [0.0; 4], 1).is_ok());
        assert!(Dense::new(Level::Portable, 3, 2, &[1.0; 5], None, (0.0, 1.0)).is_err());
        assert!(Dense::new(Level::Portable, 0, 2, &[], None, (0.0, 1.0)).is_err());
    }
}
