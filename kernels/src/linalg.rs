//! Matrix products (through [`crate::matmul::gemm`]) and scaled dot-product attention.
//!
//! f32, f64 and f16 go straight to `gemm`; bf16 is widened to f32 and rounded back; integer
//! types use a plain triple loop with wrapping arithmetic (ExecuTorch's portable kernels accept
//! them too). The choice is made on [`Element::DTYPE`], which the compiler folds away.

use half::{bf16, f16};

use crate::matmul::{gemm, Mat};
use crate::num::{same, same_mut, DType, Element, Float, Kind, Real};
use crate::ordered::{gemm_in_order, PackedA, NR};
use crate::simd::Level;
use crate::{KResult, KernelError};

/// `a` viewed as a matrix of `U`, which is `T` (see [`same`]).
fn retype<'a, T: Element, U: Element>(a: Mat<'a, T>) -> KResult<Mat<'a, U>> {
    let data = same(a.data).ok_or_else(|| KernelError::Argument("matmul: element types differ".into()))?;
    Ok(Mat { data, rows: a.rows, cols: a.cols, row_stride: a.row_stride, col_stride: a.col_stride })
}

/// `dst = a · b`, or `dst += a · b` with `accumulate` (`dst` row-major with row stride `ldd`):
/// through `gemm` for floats (bf16 widened to f32), a wrapping triple loop for integers. Uses up
/// to `threads` rayon threads.
pub fn matmul<T: Element>(
    dst: &mut [T],
    ldd: usize,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    accumulate: bool,
    threads: usize,
) -> KResult {
    fn typed<T: Element, U: Element>(
        dst: &mut [T],
        ldd: usize,
        a: Mat<'_, T>,
        b: Mat<'_, T>,
        accumulate: bool,
        threads: usize,
    ) -> KResult {
        let dst = same_mut::<T, U>(dst).ok_or_else(|| KernelError::Argument("matmul: element types differ".into()))?;
        gemm(dst, ldd, retype::<T, U>(a)?, retype::<T, U>(b)?, accumulate, threads)
    }
    match T::DTYPE {
        DType::F32 => typed::<T, f32>(dst, ldd, a, b, accumulate, threads),
        DType::F64 => typed::<T, f64>(dst, ldd, a, b, accumulate, threads),
        DType::F16 => typed::<T, f16>(dst, ldd, a, b, accumulate, threads),
        DType::BF16 => {
            let dst = same_mut::<T, bf16>(dst).ok_or_else(|| KernelError::Argument("matmul: bf16".into()))?;
            matmul_bf16(dst, ldd, retype(a)?, retype(b)?, accumulate, threads)
        }
        // Integers: arithmetic modulo 2^64 then truncated is the type's own wrapping arithmetic.
        _ => naive(dst, ldd, a, b, accumulate, |acc: T, x: T, y: T| {
            T::from_u64(acc.to_u64().wrapping_add(x.to_u64().wrapping_mul(y.to_u64())))
        }),
    }
}

/// bf16 products: widened to f32, multiplied, rounded back.
fn matmul_bf16(
    dst: &mut [bf16],
    ldd: usize,
    a: Mat<'_, bf16>,
    b: Mat<'_, bf16>,
    accumulate: bool,
    threads: usize,
) -> KResult {
    let (m, n) = (a.rows, b.cols);
    let wa = widen(a)?;
    let wb = widen(b)?;
    let mut out = vec![0.0f32; m * n];
    gemm(&mut out, n, Mat::row_major(&wa, a.rows, a.cols), Mat::row_major(&wb, b.rows, b.cols), false, threads)?;
    for r in 0..m {
        let row =
            dst.get_mut(r * ldd..r * ldd + n).ok_or_else(|| KernelError::Shape("matmul: output too small".into()))?;
        for (d, &v) in row.iter_mut().zip(&out[r * n..(r + 1) * n]) {
            *d = bf16::from_f32(if accumulate { d.to_f32() + v } else { v });
        }
    }
    Ok(())
}

/// A strided bf16 matrix, widened to a row-major f32 copy.
fn widen(a: Mat<'_, bf16>) -> KResult<Vec<f32>> {
    let mut out = Vec::with_capacity(a.rows * a.cols);
    for r in 0..a.rows {
        for c in 0..a.cols {
            let v = a
                .data
                .get(r * a.row_stride + c * a.col_stride)
                .ok_or_else(|| KernelError::Shape("matmul: operand too small".into()))?;
            out.push(v.to_f32());
        }
    }
    Ok(out)
}

/// `x * alpha + y * beta` in the element type (for addmm and baddbmm; `beta` = 0 ignores `y`):
/// computed in f64 for floats; for integers `alpha` and `beta` are converted first and the
/// arithmetic wraps.
#[inline(always)]
pub fn axpby<T: Element>(x: T, alpha: f64, y: T, beta: f64) -> T {
    match T::KIND {
        Kind::Float => {
            let x = x.to_f64() * alpha;
            T::from_f64(if beta == 0.0 { x } else { x + y.to_f64() * beta })
        }
        Kind::Signed | Kind::Unsigned => {
            let (a, b) = (T::from_f64(alpha).to_u64(), T::from_f64(beta).to_u64());
            T::from_u64(x.to_u64().wrapping_mul(a).wrapping_add(y.to_u64().wrapping_mul(b)))
        }
    }
}

/// `dst = a · b` with every output summed in ExecuTorch's portable order (see
/// [`matmul_in_order_real`]) for f32 and f64; other types keep [`matmul`] (integer products are
/// exact in any order; f16 products accumulate in f16 either way).
pub fn matmul_in_order<T: Element>(
    dst: &mut [T],
    ldd: usize,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    threads: usize,
    level: Level,
) -> KResult {
    fn typed<T: Element, U: Real>(
        dst: &mut [T],
        ldd: usize,
        a: Mat<'_, T>,
        b: Mat<'_, T>,
        threads: usize,
        level: Level,
    ) -> KResult {
        let dst = same_mut::<T, U>(dst).ok_or_else(|| KernelError::Argument("matmul: element types differ".into()))?;
        matmul_in_order_real(dst, ldd, retype::<T, U>(a)?, retype::<T, U>(b)?, threads, level)
    }
    match T::DTYPE {
        DType::F32 => typed::<T, f32>(dst, ldd, a, b, threads, level),
        DType::F64 => typed::<T, f64>(dst, ldd, a, b, threads, level),
        _ => matmul(dst, ldd, a, b, false, threads),
    }
}

/// `dst = a · b` where each output is `((0 + a₀b₀) + a₁b₁) + …` in `k` order with one rounding
/// per multiply and per add — what ExecuTorch's portable `mm`/`bmm`/`addmm` compute, bit for
/// bit. Rows are independent, so they may run on rayon threads; each row keeps one accumulator
/// per output column, so the inner loop vectorises without reordering any sum.
pub fn matmul_in_order_real<T: Real>(
    dst: &mut [T],
    ldd: usize,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    threads: usize,
    level: Level,
) -> KResult {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k {
        return Err(KernelError::Shape(format!("matmul: {m}x{k} times {}x{n}", b.rows)));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let need = (m - 1).checked_mul(ldd).and_then(|x| x.checked_add(n));
    if ldd < n || need.is_none_or(|need| need > dst.len()) {
        return Err(KernelError::Shape(format!("matmul: a {m}x{n} output with row stride {ldd} does not fit")));
    }
    a.check("matmul lhs")?;
    b.check("matmul rhs")?;
    // `check` proved every addressed element is inside its slice.
    let pa = PackedA::new(m, k, |i, p| a.data[i * a.row_stride + p * a.col_stride]);
    let pack = |j: usize, bp: &mut [T]| {
        let width = NR.min(n - j * NR);
        for (p, dst) in bp.chunks_exact_mut(NR).enumerate() {
            for (jj, v) in dst.iter_mut().enumerate().take(width) {
                *v = b.data[p * b.row_stride + (j * NR + jj) * b.col_stride];
            }
        }
    };
    gemm_in_order(dst, ldd, n, &pa, pack, threads, level)
}

fn naive<T: Element>(
    dst: &mut [T],
    ldd: usize,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    accumulate: bool,
    fma: impl Fn(T, T, T) -> T,
) -> KResult {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k {
        return Err(KernelError::Shape(format!("matmul: {m}x{k} times {}x{n}", b.rows)));
    }
    let get = |x: &Mat<'_, T>, r: usize, c: usize| {
        x.data
            .get(r * x.row_stride + c * x.col_stride)
            .copied()
            .ok_or_else(|| KernelError::Shape("matmul: operand too small".into()))
    };
    for i in 0..m {
        for j in 0..n {
            let d = dst.get_mut(i * ldd + j).ok_or_else(|| KernelError::Shape("matmul: output too small".into()))?;
            let mut acc = if accumulate { *d } else { T::default() };
            for p in 0..k {
                acc = fma(acc, get(&a, i, p)?, get(&b, p, j)?);
            }
            *d = acc;
        }
    }
    Ok(())
}

/// Layout of one operand of a batched product: batch `i` starts at `offsets[i]` and each
/// matrix has the given strides.
#[derive(Debug, Clone)]
pub struct Operand {
    /// Start of each batch's matrix (one entry per batch).
    pub offsets: Vec<usize>,
    /// Elements between consecutive rows.
    pub row_stride: usize,
    /// Elements between consecutive columns.
    pub col_stride: usize,
}

impl Operand {
    /// `batch` contiguous row-major `rows × cols` matrices.
    pub fn row_major(batch: usize, rows: usize, cols: usize) -> Self {
        Operand { offsets: (0..batch).map(|i| i * rows * cols).collect(), row_stride: cols, col_stride: 1 }
    }

    /// One matrix with the given strides, shared by `batch` products.
    pub fn broadcast(batch: usize, row_stride: usize, col_stride: usize) -> Self {
        Operand { offsets: vec![0; batch], row_stride, col_stride }
    }
}

fn sub_mat<'a, T>(data: &'a [T], op: &Operand, batch: usize, rows: usize, cols: usize) -> KResult<Mat<'a, T>> {
    let start = *op.offsets.get(batch).ok_or_else(|| KernelError::Shape("matmul: missing batch offset".into()))?;
    let data = if rows == 0 || cols == 0 {
        &data[data.len().min(start)..]
    } else {
        data.get(start..).ok_or_else(|| KernelError::Shape("matmul: operand too small".into()))?
    };
    Ok(Mat { data, rows, cols, row_stride: op.row_stride, col_stride: op.col_stride })
}

/// `out[b] (+)= a[b] · b[b]` for `batch` products of `(m × k) · (k × n)`; `out` is contiguous
/// `(batch, m, n)`. Batches run on rayon threads when there are several.
#[allow(clippy::too_many_arguments)]
pub fn bmm<T: Element>(
    a: &[T],
    ao: &Operand,
    b: &[T],
    bo: &Operand,
    out: &mut [T],
    batch: usize,
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
) -> KResult {
    batched(a, ao, b, bo, out, batch, (m, k, n), |dst, x, y, threads| matmul(dst, n, x, y, accumulate, threads))
}

/// [`bmm`] with every product summed in ExecuTorch's portable order ([`matmul_in_order`]);
/// `out` is overwritten.
#[allow(clippy::too_many_arguments)]
pub fn bmm_in_order<T: Element>(
    a: &[T],
    ao: &Operand,
    b: &[T],
    bo: &Operand,
    out: &mut [T],
    batch: usize,
    (m, k, n): (usize, usize, usize),
    level: Level,
) -> KResult {
    batched(a, ao, b, bo, out, batch, (m, k, n), |dst, x, y, threads| matmul_in_order(dst, n, x, y, threads, level))
}

/// Runs `product(dst, a[i], b[i], threads)` for each of `batch` products into contiguous
/// `(batch, m, n)` output; batches run on rayon threads when there are enough of them.
#[allow(clippy::too_many_arguments)]
fn batched<T: Element>(
    a: &[T],
    ao: &Operand,
    b: &[T],
    bo: &Operand,
    out: &mut [T],
    batch: usize,
    (m, k, n): (usize, usize, usize),
    product: impl Fn(&mut [T], Mat<'_, T>, Mat<'_, T>, usize) -> KResult + Sync,
) -> KResult {
    let per = m.checked_mul(n).ok_or_else(|| KernelError::Shape("bmm: shape overflows".into()))?;
    let total = per.checked_mul(batch).ok_or_else(|| KernelError::Shape("bmm: shape overflows".into()))?;
    if out.len() != total {
        return Err(KernelError::Length { what: "bmm output", expected: total, actual: out.len() });
    }
    if total == 0 {
        return Ok(());
    }
    let threads = crate::threads();
    // Batches on threads when there are enough of them; otherwise each product threaded.
    let par = !(batch == 1 || threads <= 1 || batch < threads / 2);
    let product_threads = if par { 1 } else { threads };
    crate::par::try_chunks(out, per, par, |i, dst| {
        product(dst, sub_mat(a, ao, i, m, k)?, sub_mat(b, bo, i, k, n)?, product_threads)
    })
}

/// Scaled dot-product attention in ExecuTorch's `llama::custom_sdpa` layout: `q` is
/// `(batch, q_len, heads, dim)`, `k` and `v` are `(batch, kv_len, kv_heads, dim)` (heads a
/// multiple of kv_heads; query head `h` uses kv head `h / (heads / kv_heads)`). Only the first
/// `kv_used` keys are attended to; with `causal`, query `i` sees keys `0 ..= start_pos + i`; an
/// optional additive `mask` is `(q_len, kv_used)`.
#[allow(clippy::too_many_arguments)]
pub fn sdpa<T: Float>(
    q: &[T],
    k: &[T],
    v: &[T],
    mask: Option<&[f32]>,
    out: &mut [T],
    (batch, q_len, heads, dim): (usize, usize, usize, usize),
    (kv_len, kv_heads): (usize, usize),
    kv_used: usize,
    causal: bool,
    start_pos: usize,
    scale: f64,
) -> KResult {
    if kv_heads == 0 || heads % kv_heads != 0 {
        return Err(KernelError::Argument(format!("sdpa: {heads} query heads cannot share {kv_heads} kv heads")));
    }
    if kv_used > kv_len {
        return Err(KernelError::Argument(format!("sdpa: {kv_used} keys requested but only {kv_len} exist")));
    }
    let qn = batch * q_len * heads * dim;
    let kn = batch * kv_len * kv_heads * dim;
    for (what, len, want) in [
        ("sdpa query", q.len(), qn),
        ("sdpa key", k.len(), kn),
        ("sdpa value", v.len(), kn),
        ("sdpa output", out.len(), qn),
    ] {
        if len != want {
            return Err(KernelError::Length { what, expected: want, actual: len });
        }
    }
    if let Some(m) = mask {
        if m.len() != q_len * kv_used {
            return Err(KernelError::Length { what: "sdpa mask", expected: q_len * kv_used, actual: m.len() });
        }
    }
    if qn == 0 {
        return Ok(());
    }
    let reps = heads / kv_heads;
    let scale = <T::Compute as Element>::from_f64(scale);
    // One output row (b, i, h) at a time; rows are independent.
    let body = |row: usize, o: &mut [T]| {
        let h = row % heads;
        let i = (row / heads) % q_len;
        let b = row / (heads * q_len);
        let kh = h / reps;
        let qrow = &q[row * dim..(row + 1) * dim];
        let limit = if causal { kv_used.min(start_pos + i + 1) } else { kv_used };
        let mut scores: Vec<T::Compute> = Vec::with_capacity(limit);
        let mut max = <T::Compute as Real>::NEG_INFINITY;
        for j in 0..limit {
            let base = ((b * kv_len + j) * kv_heads + kh) * dim;
            let krow = &k[base..base + dim];
            let mut s = <T::Compute as Element>::ZERO;
            for (&x, &y) in qrow.iter().zip(krow) {
                s += x.to_compute() * y.to_compute();
            }
            s = s * scale;
            if let Some(m) = mask {
                s += <T::Compute as Element>::from_f64(f64::from(m[i * kv_used + j]));
            }
            if s > max {
                max = s;
            }
            scores.push(s);
        }
        let mut sum = <T::Compute as Element>::ZERO;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        let mut acc = vec![<T::Compute as Element>::ZERO; dim];
        for (j, &p) in scores.iter().enumerate() {
            let base = ((b * kv_len + j) * kv_heads + kh) * dim;
            for (a, &y) in acc.iter_mut().zip(&v[base..base + dim]) {
                *a += p * y.to_compute();
            }
        }
        for (d, a) in o.iter_mut().zip(acc) {
            *d = T::from_compute(a / sum);
        }
    };
    // Eight rows per task at least.
    crate::par::chunks(out, 8 * dim, super::threads() > 1, |c, rows| {
        for (r, o) in rows.chunks_mut(dim).enumerate() {
            body(c * 8 + r, o);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_f64(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn bmm_broadcast_and_types() {
        let (batch, m, k, n) = (3, 2, 4, 5);
        let a: Vec<f64> = (0..batch * m * k).map(|i| (i % 7) as f64 - 3.0).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i % 5) as f64 * 0.5).collect();
        let mut out = vec![0.0f64; batch * m * n];
        let bo = Operand::broadcast(batch, n, 1);
        let ao = Operand::row_major(batch, m, k);
        bmm(&a, &ao, &b, &bo, &mut out, batch, (m, k, n), false).expect("test");
        for i in 0..batch {
            assert_eq!(&out[i * m * n..(i + 1) * m * n], &naive_f64(&a[i * m * k..(i + 1) * m * k], &b, m, k, n)[..]);
        }
        let ai: Vec<i32> = a.iter().map(|&x| x as i32).collect();
        let bi: Vec<i32> = (0..k * n).map(|i| (i % 5) as i32).collect();
        let mut oi = vec![0i32; batch * m * n];
        bmm(&ai, &ao, &bi, &bo, &mut oi, batch, (m, k, n), false).expect("test");
        let bf: Vec<f64> = bi.iter().map(|&x| x as f64).collect();
        let af: Vec<f64> = ai.iter().map(|&x| x as f64).collect();
        assert_eq!(
            oi.iter().map(|&x| x as f64).collect::<Vec<_>>()[..m * n],
            naive_f64(&af[..m * k], &bf, m, k, n)[..]
        );
        let ab: Vec<bf16> = a.iter().map(|&x| bf16::from_f64(x)).collect();
        let bb: Vec<bf16> = b.iter().map(|&x| bf16::from_f64(x)).collect();
        let mut ob = vec![bf16::ZERO; batch * m * n];
        bmm(&ab, &ao, &bb, &bo, &mut ob, batch, (m, k, n), false).expect("test");
        assert_eq!(ob.iter().map(|x| x.to_f64()).collect::<Vec<_>>(), out);
    }

    /// ExecuTorch's `vec_matmul`: `sum = 0; for k { sum += a[i][k] * b[k][j] }` in f32.
    fn executorch_matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut z = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut sum = 0.0f32;
                for p in 0..k {
                    sum += a[i * k + p] * b[p * n + j];
                }
                z[i * n + j] = sum;
            }
        }
        z
    }

    #[test]
    fn in_order_products_are_bit_identical_to_executorch_loop() {
        for (m, k, n, batch) in
            [(1, 1, 1, 1), (3, 17, 5, 1), (70, 33, 40, 1), (2, 300, 9, 3), (0, 4, 3, 2), (4, 0, 3, 1)]
        {
            let a: Vec<f32> = (0..batch * m * k).map(|i| ((i * 7919) % 1013) as f32 * 0.0137 - 6.9).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 104_729) % 991) as f32 * 0.0071 - 3.3).collect();
            // b as given, and b read through a transposed layout (the `linear` case).
            let bt: Vec<f32> = (0..n).flat_map(|j| (0..k).map(move |p| (j, p))).map(|(j, p)| b[p * n + j]).collect();
            let layouts = [(Operand::broadcast(batch, n, 1), &b), (Operand::broadcast(batch, 1, k), &bt)];
            for ((bo, bdata), level) in layouts.iter().flat_map(|l| Level::available().into_iter().map(move |v| (l, v)))
            {
                let mut out = vec![f32::NAN; batch * m * n];
                let a_op = Operand::row_major(batch, m, k);
                bmm_in_order(&a, &a_op, bdata, bo, &mut out, batch, (m, k, n), level).unwrap();
                for i in 0..batch {
                    let want = executorch_matmul(&a[i * m * k..(i + 1) * m * k], &b, m, k, n);
                    let got = &out[i * m * n..(i + 1) * m * n];
                    assert!(got.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()), "{m}x{k}x{n}");
                }
            }
        }
    }

    #[test]
    fn sdpa_causal_matches_reference() {
        let (b, s, h, d) = (1, 3, 2, 4);
        let q: Vec<f32> = (0..b * s * h * d).map(|i| ((i * 7) % 11) as f32 * 0.1 - 0.5).collect();
        let k: Vec<f32> = (0..b * s * h * d).map(|i| ((i * 5) % 13) as f32 * 0.1 - 0.6).collect();
        let v: Vec<f32> = (0..b * s * h * d).map(|i| (i % 9) as f32 - 4.0).collect();
        let mut out = vec![0.0f32; q.len()];
        sdpa(&q, &k, &v, None, &mut out, (b, s, h, d), (s, h), s, true, 0, 0.5).expect("test");
        for i in 0..s {
            for hh in 0..h {
                let qr = &q[(i * h + hh) * d..][..d];
                let sc: Vec<f64> = (0..=i)
                    .map(|j| {
                        qr.iter().zip(&k[(j * h + hh) * d..][..d]).map(|(&x, &y)| f64::from(x * y)).sum::<f64>() * 0.5
                    })
                    .collect();
                let mx = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = sc.iter().map(|x| (x - mx).exp()).collect();
                let z: f64 = e.iter().sum();
                for dd in 0..d {
                    let want: f64 = (0..=i).map(|j| e[j] / z * f64::from(v[(j * h + hh) * d + dd])).sum();
                    assert!((f64::from(out[(i * h + hh) * d + dd]) - want).abs() < 1e-4);
                }
            }
        }
    }
}
