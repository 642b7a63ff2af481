//! Data movement that does not look at element values: strided gathers (permute, expand,
//! slice, select, split, cat, dim-order conversion) work on raw bytes with the element size as a
//! parameter, so one implementation serves every dtype.

use super::{KResult, KernelError};

/// Copies a strided view of `src` into contiguous `dst`.
///
/// `dst` holds `prod(sizes)` elements of `elem` bytes in row-major order; element `idx` of the
/// view is read from `src` at element offset `offset + sum(idx[d] * strides[d])`. A stride of 0
/// broadcasts. Every read is bounds-checked up front, so a bad view is an error, not a panic.
pub fn gather(dst: &mut [u8], src: &[u8], elem: usize, sizes: &[usize], strides: &[usize], offset: usize) -> KResult {
    if sizes.len() != strides.len() {
        return Err(KernelError::Shape(format!("gather: {} sizes but {} strides", sizes.len(), strides.len())));
    }
    let n = super::numel(sizes).ok_or_else(|| KernelError::Shape(format!("gather: shape {sizes:?} overflows")))?;
    if dst.len() != n.saturating_mul(elem) {
        return Err(KernelError::Length { what: "gather output", expected: n, actual: dst.len() / elem.max(1) });
    }
    if n == 0 || elem == 0 {
        return Ok(());
    }
    // Largest element offset touched, overflow-checked.
    let mut last = offset;
    for (&s, &st) in sizes.iter().zip(strides) {
        last = (s - 1)
            .checked_mul(st)
            .and_then(|x| last.checked_add(x))
            .ok_or_else(|| KernelError::Shape("gather: strides overflow".into()))?;
    }
    if last.checked_add(1).and_then(|x| x.checked_mul(elem)).is_none_or(|end| end > src.len()) {
        return Err(KernelError::Shape(format!(
            "gather: view {sizes:?} with strides {strides:?} at offset {offset} reads past the source ({} bytes)",
            src.len()
        )));
    }
    // Merge dimensions that are contiguous with each other to lengthen the inner run.
    let mut dims: Vec<(usize, usize)> = Vec::with_capacity(sizes.len());
    for (&s, &st) in sizes.iter().zip(strides) {
        if s == 1 {
            continue;
        }
        match dims.last_mut() {
            Some((ps, pst)) if *pst == st * s => {
                *ps *= s;
                *pst = st;
            }
            _ => dims.push((s, st)),
        }
    }
    if dims.is_empty() {
        dst.copy_from_slice(&src[offset * elem..(offset + 1) * elem]);
        return Ok(());
    }
    let (inner, inner_stride) = dims[dims.len() - 1];
    // A transposition of the last two dimensions (the one before the innermost has stride 1:
    // NCHW → NHWC and back, `permute_copy` of a matrix): copy in tiles, so each step reads a
    // run of the source instead of one element per output run.
    if dims.len() >= 2 && inner_stride > 1 && dims[dims.len() - 2].1 == 1 {
        let rows = dims[dims.len() - 2].0;
        let outer = &dims[..dims.len() - 2];
        let mut idx = vec![0usize; outer.len()];
        let mut base = offset;
        for plane in dst.chunks_exact_mut(rows * inner * elem) {
            match elem {
                4 => transpose::<4>(plane, src, base, rows, inner, inner_stride),
                2 => transpose::<2>(plane, src, base, rows, inner, inner_stride),
                8 => transpose::<8>(plane, src, base, rows, inner, inner_stride),
                1 => transpose::<1>(plane, src, base, rows, inner, inner_stride),
                _ => {
                    for (r, row) in plane.chunks_exact_mut(inner * elem).enumerate() {
                        for (c, out) in row.chunks_exact_mut(elem).enumerate() {
                            let at = (base + r + c * inner_stride) * elem;
                            out.copy_from_slice(&src[at..at + elem]);
                        }
                    }
                }
            }
            advance(&mut idx, &mut base, outer);
        }
        return Ok(());
    }
    let outer = &dims[..dims.len() - 1];
    let run = inner * elem;
    let mut idx = vec![0usize; outer.len()];
    let mut base = offset;
    for chunk in dst.chunks_exact_mut(run) {
        if inner_stride == 1 {
            chunk.copy_from_slice(&src[base * elem..base * elem + run]);
        } else if inner_stride == 0 {
            let v = &src[base * elem..(base + 1) * elem];
            for out in chunk.chunks_exact_mut(elem) {
                out.copy_from_slice(v);
            }
        } else {
            match elem {
                4 => strided::<4>(chunk, src, base, inner_stride),
                2 => strided::<2>(chunk, src, base, inner_stride),
                8 => strided::<8>(chunk, src, base, inner_stride),
                1 => strided::<1>(chunk, src, base, inner_stride),
                _ => {
                    for (k, out) in chunk.chunks_exact_mut(elem).enumerate() {
                        let at = (base + k * inner_stride) * elem;
                        out.copy_from_slice(&src[at..at + elem]);
                    }
                }
            }
        }
        advance(&mut idx, &mut base, outer);
    }
    Ok(())
}

/// Steps the odometer `idx` over `dims` (`(size, stride)`), keeping `base` its element offset.
#[inline]
fn advance(idx: &mut [usize], base: &mut usize, dims: &[(usize, usize)]) {
    for d in (0..dims.len()).rev() {
        idx[d] += 1;
        *base += dims[d].1;
        if idx[d] < dims[d].0 {
            break;
        }
        *base -= dims[d].1 * dims[d].0;
        idx[d] = 0;
    }
}

/// `plane[r][c] = src[base + r + c · stride]` for `r < rows`, `c < cols`, `E`-byte elements, in
/// square tiles that stay in L1 (in bounds: `gather` checked the whole view).
#[inline(always)]
fn transpose<const E: usize>(plane: &mut [u8], src: &[u8], base: usize, rows: usize, cols: usize, stride: usize) {
    const TILE: usize = 32;
    for r0 in (0..rows).step_by(TILE) {
        let r1 = (r0 + TILE).min(rows);
        for c0 in (0..cols).step_by(TILE) {
            for c in c0..(c0 + TILE).min(cols) {
                let from = (base + c * stride + r0) * E;
                let Some(run) = src.get(from..from + (r1 - r0) * E) else { return };
                for (k, v) in run.chunks_exact(E).enumerate() {
                    let at = ((r0 + k) * cols + c) * E;
                    if let (Some(o), Ok(i)) = (plane.get_mut(at..at + E), <[u8; E]>::try_from(v)) {
                        if let Ok(o) = <&mut [u8; E]>::try_from(o) {
                            *o = i;
                        }
                    }
                }
            }
        }
    }
}

/// One strided run of `E`-byte elements: element `k` of `chunk` from element
/// `base + k · stride` of `src` (in bounds: `gather` checked the whole view). A fixed `E` makes
/// each copy a single load and store instead of a `memcpy` call.
#[inline(always)]
fn strided<const E: usize>(chunk: &mut [u8], src: &[u8], base: usize, stride: usize) {
    for (k, out) in chunk.chunks_exact_mut(E).enumerate() {
        let at = (base + k * stride) * E;
        if let (Ok(o), Some(Ok(i))) = (<&mut [u8; E]>::try_from(out), src.get(at..at + E).map(<[u8; E]>::try_from)) {
            *o = i;
        }
    }
}

/// Element strides of a tensor whose logical `sizes` are stored in `dim_order`
/// (`dim_order[0]` outermost in memory).
pub fn strides_for_dim_order(sizes: &[usize], dim_order: &[u8]) -> KResult<Vec<usize>> {
    if dim_order.is_empty() {
        return Ok(super::contiguous_strides(sizes));
    }
    if dim_order.len() != sizes.len() {
        return Err(KernelError::Shape(format!("dim order {dim_order:?} does not match rank {}", sizes.len())));
    }
    let mut strides = vec![0usize; sizes.len()];
    let mut acc = 1usize;
    for &d in dim_order.iter().rev() {
        let d = d as usize;
        let s =
            sizes.get(d).ok_or_else(|| KernelError::Shape(format!("dim order {dim_order:?} is not a permutation")))?;
        strides[d] = acc;
        acc = acc.saturating_mul(*s);
    }
    Ok(strides)
}

/// Whether `dim_order` is the identity (or empty).
pub fn is_contiguous_order(dim_order: &[u8]) -> bool {
    dim_order.iter().enumerate().all(|(i, &d)| d as usize == i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gather_u8(src: &[u8], sizes: &[usize], strides: &[usize], offset: usize) -> Vec<u8> {
        let mut dst = vec![0u8; sizes.iter().product()];
        gather(&mut dst, src, 1, sizes, strides, offset).unwrap();
        dst
    }

    #[test]
    fn transpose_and_broadcast() {
        let src: Vec<u8> = (0..6).collect(); // [[0,1,2],[3,4,5]]
        assert_eq!(gather_u8(&src, &[3, 2], &[1, 3], 0), vec![0, 3, 1, 4, 2, 5]);
        assert_eq!(gather_u8(&src, &[2, 3], &[0, 1], 3), vec![3, 4, 5, 3, 4, 5]);
        assert_eq!(gather_u8(&src, &[2, 2], &[3, 1], 1), vec![1, 2, 4, 5]);
    }

    /// Every permutation of tensors of rank 2 to 4 (sizes crossing the transpose tile), every
    /// element size, against the element-by-element definition.
    #[test]
    fn permutations_match_the_definition() {
        let shapes: [&[usize]; 6] = [&[3, 5], &[40, 33], &[1, 3, 37, 35], &[2, 5, 3, 4], &[2, 34, 3], &[1, 70, 1, 9]];
        for sizes in shapes {
            let rank = sizes.len();
            let n: usize = sizes.iter().product();
            let strides = crate::contiguous_strides(sizes);
            let mut perms: Vec<Vec<usize>> = vec![(0..rank).collect()];
            for d in 0..rank {
                perms = perms
                    .into_iter()
                    .flat_map(|p| {
                        (d..rank).map(move |k| {
                            let mut q = p.clone();
                            q.swap(d, k);
                            q
                        })
                    })
                    .collect();
            }
            for perm in perms {
                let (psizes, pstrides): (Vec<usize>, Vec<usize>) = perm.iter().map(|&d| (sizes[d], strides[d])).unzip();
                for elem in [1usize, 2, 3, 4, 8] {
                    let src: Vec<u8> = (0..n * elem).map(|i| (i * 7 + i / 251) as u8).collect();
                    let mut got = vec![0u8; n * elem];
                    gather(&mut got, &src, elem, &psizes, &pstrides, 0).unwrap();
                    let mut want = Vec::with_capacity(n * elem);
                    let mut idx = vec![0usize; rank];
                    for _ in 0..n {
                        let at: usize = idx.iter().zip(&pstrides).map(|(i, s)| i * s).sum();
                        want.extend_from_slice(&src[at * elem..(at + 1) * elem]);
                        for d in (0..rank).rev() {
                            idx[d] += 1;
                            if idx[d] < psizes[d] {
                                break;
                            }
                            idx[d] = 0;
                        }
                    }
                    assert_eq!(got, want, "sizes {sizes:?} perm {perm:?} elem {elem}");
                }
            }
        }
    }

    #[test]
    fn out_of_bounds_is_an_error() {
        let src = [0u8; 4];
        let mut dst = [0u8; 4];
        assert!(gather(&mut dst, &src, 1, &[2, 2], &[2, 1], 1).is_err());
        assert!(gather(&mut dst, &src, 1, &[2, 2], &[usize::MAX, 1], 0).is_err());
    }

    #[test]
    fn dim_order_strides() {
        // NCHW sizes stored channels-last (0, 2, 3, 1).
        assert_eq!(strides_for_dim_order(&[1, 3, 4, 5], &[0, 2, 3, 1]).unwrap(), vec![60, 1, 15, 3]);
    }
}
