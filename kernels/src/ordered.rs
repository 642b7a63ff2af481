//! Matrix products summed in ExecuTorch's reference order, fast.
//!
//! `c = a · b` where every output is `((0 + a₀b₀) + a₁b₁) + …` over `k` in index order, one
//! rounding per multiply and per add (never a fused multiply-add): what ExecuTorch's portable
//! `vec_matmul` and convolution loops compute, bit for bit. Order is a property of each output
//! alone, so the usual GEMM structure still applies: `a` is packed into panels of [`MR`] rows,
//! `b` into panels of [`NR`] columns, and a register tile of `MR × NR` accumulators walks the
//! whole `k` range (each lane is one output, so vectorising across lanes keeps every sum's
//! order). The microkernel is plain safe Rust, compiled for the SIMD level the caller runs at
//! ([`simd::compiled_for`]).

use crate::num::Real;
use crate::simd::{self, Level};
use crate::{KResult, KernelError};

/// Rows of `a` per register tile.
pub const MR: usize = 4;
/// Columns of `b` per register tile.
pub const NR: usize = 16;

/// `a` packed into panels of [`MR`] rows: panel `r`, step `p`, row `i` at `(r·k + p)·MR + i`;
/// rows past the end are zero.
#[derive(Debug, Clone)]
pub struct PackedA<T> {
    data: Vec<T>,
    rows: usize,
    k: usize,
}

impl<T: Real> PackedA<T> {
    /// Packs the `rows × k` matrix whose element `(i, p)` is `at(i, p)`.
    pub fn new(rows: usize, k: usize, at: impl Fn(usize, usize) -> T) -> Self {
        let panels = rows.div_ceil(MR);
        let mut data = vec![T::ZERO; panels * k * MR];
        for r in 0..panels {
            for p in 0..k {
                for i in 0..MR {
                    if r * MR + i < rows {
                        data[(r * k + p) * MR + i] = at(r * MR + i, p);
                    }
                }
            }
        }
        PackedA { data, rows, k }
    }

    /// Rows of the packed matrix.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// Computes the `rows × cols` block `c` (row stride `ldc`) of `A · B` where `B`'s column panel
/// `j` (`k × NR`, row-major, zero past the last column) is produced by `pack_b(j, panel)`.
/// Column panels are spread over rayon threads when `threads > 1`; each output is summed in
/// `k` order either way. The tiles are compiled for `level`.
pub fn gemm_in_order<T: Real>(
    c: &mut [T],
    ldc: usize,
    cols: usize,
    a: &PackedA<T>,
    pack_b: impl Fn(usize, &mut [T]) + Sync,
    threads: usize,
    level: Level,
) -> KResult {
    let (rows, k) = (a.rows, a.k);
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let need = (rows - 1).checked_mul(ldc).and_then(|x| x.checked_add(cols));
    if ldc < cols || need.is_none_or(|n| n > c.len()) {
        return Err(KernelError::Shape(format!(
            "matmul: a {rows}x{cols} output with row stride {ldc} does not fit {} elements",
            c.len()
        )));
    }
    let panels = cols.div_ceil(NR);
    // Column panel `j` of the result, dense `rows × width`.
    let panel = |j: usize, bp: &mut Vec<T>, dense: &mut Vec<T>| {
        bp.clear();
        bp.resize(k * NR, T::ZERO);
        pack_b(j, bp);
        let width = NR.min(cols - j * NR);
        dense.clear();
        for r in 0..rows.div_ceil(MR) {
            let ap = &a.data[r * k * MR..(r + 1) * k * MR];
            let tile = simd::compiled_for(level, Tile { ap, bp, k });
            for trow in tile.iter().take(MR.min(rows - r * MR)) {
                dense.extend_from_slice(&trow[..width]);
            }
        }
    };
    let store = |c: &mut [T], j: usize, dense: &[T]| {
        let width = NR.min(cols - j * NR);
        for (i, src) in dense.chunks_exact(width).enumerate() {
            c[i * ldc + j * NR..][..width].copy_from_slice(src);
        }
    };
    if threads > 1 && panels > 1 {
        // Panels are independent; compute them in parallel, then store them in order.
        let dense: Vec<Vec<T>> = crate::par::map_indices_with(panels, true, &Vec::new, &|bp, j| {
            let mut d = Vec::new();
            panel(j, bp, &mut d);
            d
        });
        for (j, d) in dense.iter().enumerate() {
            store(c, j, d);
        }
    } else {
        let (mut bp, mut d) = (Vec::new(), Vec::new());
        for j in 0..panels {
            panel(j, &mut bp, &mut d);
            store(c, j, &d);
        }
    }
    Ok(())
}

/// [`tile`], to compile for a SIMD level.
struct Tile<'a, T> {
    ap: &'a [T],
    bp: &'a [T],
    k: usize,
}

impl<T: Real> simd::Compiled for Tile<'_, T> {
    type Output = [[T; NR]; MR];
    #[inline(always)]
    fn run(self) -> Self::Output {
        tile(self.ap, self.bp, self.k)
    }
}

/// One `MR × NR` tile: `acc[i][j] = Σₚ ap[p·MR + i] · bp[p·NR + j]`, in `p` order.
#[inline(always)]
fn tile<T: Real>(ap: &[T], bp: &[T], k: usize) -> [[T; NR]; MR] {
    let mut acc = [[T::ZERO; NR]; MR];
    for (a, b) in ap.chunks_exact(MR).zip(bp.chunks_exact(NR)).take(k) {
        for i in 0..MR {
            let av = a[i];
            for j in 0..NR {
                acc[i][j] += av * b[j];
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tiles_match_a_sequential_sum_bit_for_bit() {
        for (m, k, n) in [(1, 1, 1), (5, 37, 33), (4, 0, 16), (9, 3, 70)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1013) as f32 * 0.0137 - 6.9).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 104_729) % 991) as f32 * 0.0071 - 3.3).collect();
            let pa = PackedA::new(m, k, |i, p| a[i * k + p]);
            for (threads, level) in [1, 2].into_iter().flat_map(|t| Level::available().into_iter().map(move |l| (t, l)))
            {
                let mut c = vec![f32::NAN; m * (n + 3)];
                gemm_in_order(
                    &mut c,
                    n + 3,
                    n,
                    &pa,
                    |j, bp| {
                        for p in 0..k {
                            for jj in 0..NR.min(n - j * NR) {
                                bp[p * NR + jj] = b[p * n + j * NR + jj];
                            }
                        }
                    },
                    threads,
                    level,
                )
                .unwrap();
                for i in 0..m {
                    for j in 0..n {
                        let mut s = 0.0f32;
                        for p in 0..k {
                            s += a[i * k + p] * b[p * n + j];
                        }
                        assert_eq!(c[i * (n + 3) + j].to_bits(), s.to_bits(), "{m}x{k}x{n} ({i}, {j}) at {level:?}");
                    }
                }
            }
        }
    }
}
