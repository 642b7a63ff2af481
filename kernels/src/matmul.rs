//! Matrix multiplication through the `gemm` crate (runtime SIMD dispatch, cache blocking),
//! behind a safe, bounds-checked interface. This is the only place that calls `gemm::gemm`.

#![allow(unsafe_code)]

use crate::num::{DType, Element};
use crate::{KResult, KernelError};

/// A strided read-only matrix: element `(r, c)` is `data[r * row_stride + c * col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct Mat<'a, T> {
    /// Backing elements.
    pub data: &'a [T],
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Elements between consecutive rows.
    pub row_stride: usize,
    /// Elements between consecutive columns.
    pub col_stride: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A row-major `rows × cols` matrix.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        Mat { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// The transpose of a row-major `cols × rows` matrix, viewed as `rows × cols`.
    pub fn transposed(data: &'a [T], rows: usize, cols: usize) -> Self {
        Mat { data, rows, cols, row_stride: 1, col_stride: rows }
    }

    /// Whether every element the shape and strides address lies inside `data`.
    pub(crate) fn check(&self, what: &'static str) -> KResult {
        if self.rows == 0 || self.cols == 0 {
            return Ok(());
        }
        let last = (self.rows - 1)
            .checked_mul(self.row_stride)
            .and_then(|a| (self.cols - 1).checked_mul(self.col_stride).and_then(|b| a.checked_add(b)));
        match last {
            Some(l)
                if l < self.data.len()
                    && self.row_stride <= isize::MAX as usize
                    && self.col_stride <= isize::MAX as usize =>
            {
                Ok(())
            }
            _ => Err(KernelError::Shape(format!(
                "{what}: a {}x{} matrix with strides ({}, {}) does not fit {} elements",
                self.rows,
                self.cols,
                self.row_stride,
                self.col_stride,
                self.data.len()
            ))),
        }
    }
}

/// `dst = a · b` (or `dst += a · b` with `accumulate`), `dst` row-major `m × n` with row
/// stride `ldd` (≥ n). Uses up to `threads` rayon threads (1 = the calling thread only).
/// `T` is f32, f64 or f16 (the types `gemm` multiplies; others are an error).
pub fn gemm<T: Element>(
    dst: &mut [T],
    ldd: usize,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    accumulate: bool,
    threads: usize,
) -> KResult {
    if !matches!(T::DTYPE, DType::F32 | DType::F64 | DType::F16) {
        return Err(KernelError::Argument(format!("gemm does not multiply {}", T::DTYPE)));
    }
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k {
        return Err(KernelError::Shape(format!("matmul: {}x{} times {}x{}", a.rows, a.cols, b.rows, b.cols)));
    }
    a.check("matmul lhs")?;
    b.check("matmul rhs")?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let need = (m - 1).checked_mul(ldd).and_then(|x| x.checked_add(n));
    if ldd < n || need.is_none_or(|need| need > dst.len()) || ldd > isize::MAX as usize {
        return Err(KernelError::Shape(format!(
            "matmul: a {m}x{n} output with row stride {ldd} does not fit {} elements",
            dst.len()
        )));
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * ldd..r * ldd + n].fill(T::ZERO);
            }
        }
        return Ok(());
    }
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: every pointer comes from a live slice; `Mat::check` proved that the largest
    // element offset `(rows-1)*row_stride + (cols-1)*col_stride` of `a` and `b` lies inside
    // their slices, and the check above proved the same for `dst` (`(m-1)*ldd + n <= len`).
    // Strides fit in `isize`. `dst` is borrowed mutably, so it cannot alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            ldd as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn matches_naive() {
        for &(m, k, n) in &[(1, 1, 1), (3, 5, 7), (17, 33, 9), (64, 1, 3), (2, 0, 2)] {
            let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.5).collect();
            let mut c = vec![1.0; m * n];
            gemm(&mut c, n, Mat::row_major(&a, m, k), Mat::row_major(&b, k, n), false, 1).unwrap();
            assert_eq!(c, naive(&a, &b, m, k, n));
        }
    }

    #[test]
    fn transposed_rhs_and_bad_shapes() {
        let a = [1.0f32, 2.0, 3.0, 4.0];
        let bt = [1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0]; // 3x2, used as 2x3
        let mut c = [0.0f32; 6];
        gemm(&mut c, 3, Mat::row_major(&a, 2, 2), Mat::transposed(&bt, 2, 3), false, 1).unwrap();
        assert_eq!(c, [1.0, 2.0, 3.0, 3.0, 4.0, 7.0]);
        assert!(gemm(&mut c, 3, Mat::row_major(&a, 2, 3), Mat::transposed(&bt, 3, 3), false, 1).is_err());
        assert!(gemm(&mut c[..5], 3, Mat::row_major(&a, 2, 2), Mat::transposed(&bt, 2, 3), false, 1).is_err());
    }
}
