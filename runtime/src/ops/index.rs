//! Indexing: embedding, index_select, gather, advanced indexing (`index.Tensor`), index_put,
//! scatter (src, value, add).
//!
//! Pure data movement copies raw elements (any dtype); only accumulating writes dispatch on the
//! element type. Index tensors (Long or Int; Bool/Byte masks for advanced indexing) are read
//! before the kernel runs; negative indices count from the end like PyTorch, out-of-range
//! indices are errors.

use super::{arg, el, norm_dim};
use crate::env::{Env, Scalar};
use crate::error::{Result, RuntimeError};
use crate::registry::KernelRegistry;
use ferrite_kernels::contiguous_strides;
use ferrite_kernels::Element;
use ferrite_op_support::Op;
use ferrite_program::ScalarType;

pub(super) fn register(r: &mut KernelRegistry) {
    reg!(r, Op::Embedding, embedding);
    reg!(r, Op::IndexSelect, index_select);
    reg!(r, Op::Gather, gather);
    reg!(r, Op::IndexTensor, index_tensor);
    reg!(r, Op::IndexPut, index_put);
    reg!(r, Op::IndexPutDefault, index_put_inplace);
    reg!(r, Op::ScatterSrc, |e, a| scatter(e, a, ScatterKind::Src));
    reg!(r, Op::ScatterValue, |e, a| scatter(e, a, ScatterKind::Value));
    reg!(r, Op::ScatterAdd, |e, a| scatter(e, a, ScatterKind::Add));
}

fn invalid(msg: String) -> RuntimeError {
    RuntimeError::Invalid(msg)
}

/// Reads an integer index tensor (Long or Int).
fn read_indices(env: &Env<'_>, v: usize) -> Result<Vec<i64>> {
    let t = env.read(v)?;
    match t.dtype {
        ScalarType::Long => Ok(t.typed::<i64>()?.to_vec()),
        ScalarType::Int => Ok(t.typed::<i32>()?.iter().map(|&x| i64::from(x)).collect()),
        other => Err(invalid(format!("index tensors must be Long or Int, got {other}"))),
    }
}

/// Wraps a possibly negative index into `0..size`.
fn wrap(i: i64, size: usize, what: &str) -> Result<usize> {
    let s = size as i64;
    let j = if i < 0 { i + s } else { i };
    if (0..s).contains(&j) {
        Ok(j as usize)
    } else {
        Err(invalid(format!("{what}: index {i} is out of bounds for size {size}")))
    }
}

fn same_dtype(env: &Env<'_>, a: usize, b: usize, what: &str) -> Result<ScalarType> {
    let (da, db) = (env.dtype(a)?, env.dtype(b)?);
    if da != db {
        return Err(invalid(format!("{what}: {da} and {db} differ")));
    }
    Ok(da)
}

fn embedding(env: &mut Env<'_>, a: &[usize]) -> Result<()> {
    let (w, idx, out) = (arg(a, 0)?, arg(a, 1)?, arg(a, 5)?);
    let ws = env.sizes(w)?.to_vec();
    let [rows, dim] = ws[..] else {
        return Err(invalid(format!("embedding: weight must be 2-D, got {ws:?}")));
    };
    same_dtype(env, w, out, "embedding weight and output")?;
    let ids = read_indices(env, idx)?;
    let mut out_sizes = env.sizes(idx)?.to_vec();
    out_sizes.push(dim);
    let rows_sel = ids
        .iter()
        .map(|&i| {
            if i < 0 || i as usize >= rows {
                Err(invalid(format!("embedding: index {i} is out of range for {rows} rows")))
            } else {
                Ok(i as usize)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    env.resize(out, &out_sizes)?;
    let es = env.dtype(w)?.element_size();
    let row = dim * es;
    env.run(&[w], &[out], |ins, outs| {
        for (dst, &r) in outs[0].data.chunks_exact_mut(row.max(1)).zip(&rows_sel) {
            dst.copy_from_slice(&ins[0].data[r * row..(r + 1) * row]);
        }
        Ok(())
    })
}

fn index_select(env: &mut Env<'_>, a: &[usize]) -> Result<()> {
    let (x, idx, out) = (arg(a, 0)?, arg(a, 2)?, arg(a, 3)?);
    let sizes = env.sizes(x)?.to_vec();
    let d = norm_dim(env.int(arg(a, 1)?)?, sizes.len())?;
    if env.sizes(idx)?.len() > 1 {
        return Err(invalid(format!("index_select: index must be 0-D or 1-D, got {:?}", env.sizes(idx)?)));
    }
    same_dtype(env, x, out, "index_select input and output")?;
    let ids = read_indices(env, idx)?;
    let dim_size = sizes.get(d).copied().unwrap_or(1);
    let sel = ids.iter().map(|&i| wrap(i, dim_size, "index_select")).collect::<Result<Vec<_>>>()?;
    let mut out_sizes = sizes.clone();
    if !out_sizes.is_empty() {
        out_sizes[d] = sel.len();
    }
    let (outer, inner): (usize, usize) =
        if sizes.is_empty() { (1, 1) } else { (sizes[..d].iter().product(), sizes[d + 1..].iter().product()) };
    env.resize(out, &out_sizes)?;
    let es = env.dtype(x)?.element_size();
    let blk = inner * es;
    env.run(&[x], &[out], |ins, outs| {
        let src = ins[0].data;
        let dst = &mut *outs[0].data;
        let mut pos = 0usize;
        for o in 0..outer {
            for &s in &sel {
                let from = (o * dim_size + s) * blk;
                dst[pos..pos + blk].copy_from_slice(&src[from..from + blk]);
                pos += blk;
            }
        }
        Ok(())
    })
}

/// Odometer increment of `idx` within `sizes`.
fn next_index(idx: &mut [usize], sizes: &[usize]) {
    for d in (0..sizes.len()).rev() {
        idx[d] += 1;
        if idx[d] < sizes[d] {
            return;
        }
        idx[d] = 0;
    }
}

/// For gather/scatter: the element offsets in `self` addressed by each element of `index`
/// (index holds positions along `dim`; other coordinates are the index element's own).
fn dim_offsets(self_sizes: &[usize], index_sizes: &[usize], ids: &[i64], dim: usize, what: &str) -> Result<Vec<usize>> {
    if self_sizes.len().max(1) != index_sizes.len().max(1) {
        return Err(invalid(format!("{what}: index {index_sizes:?} and self {self_sizes:?} differ in rank")));
    }
    for (d, (&i, &s)) in index_sizes.iter().zip(self_sizes).enumerate() {
        if d != dim && i > s {
            return Err(invalid(format!(
                "{what}: index {index_sizes:?} is larger than self {self_sizes:?} in dim {d}"
            )));
        }
    }
    let strides = contiguous_strides(self_sizes);
    let dim_size = self_sizes.get(dim).copied().unwrap_or(1);
    let mut idx = vec![0usize; index_sizes.len()];
    let mut offs = Vec::with_capacity(ids.len());
    for &v in ids {
        let p = wrap(v, dim_size, what)?;
        let off: usize =
            idx.iter().enumerate().map(|(d, &c)| if d == dim { p * strides[d] } else { c * strides[d] }).sum();
        offs.push(if self_sizes.is_empty() { 0 } else { off });
        next_index(&mut idx, index_sizes);
    }
    Ok(offs)
}

fn gather(env: &mut Env<'_>, a: &[usize]) -> Result<()> {
    let (x, idx, out) = (arg(a, 0)?, arg(a, 2)?, arg(a, 4)?);
    let sizes = env.sizes(x)?.to_vec();
    let d = norm_dim(env.int(arg(a, 1)?)?, sizes.len())?;
    same_dtype(env, x, out, "gather input and output")?;
    let isizes = env.sizes(idx)?.to_vec();
    let ids = read_indices(env, idx)?;
    let offs = dim_offsets(&sizes, &isizes, &ids, d, "gather")?;
    env.resize(out, &isizes)?;
    let es = env.dtype(x)?.element_size();
    env.run(&[x], &[out], |ins, outs| {
        for (dst, &o) in outs[0].data.chunks_exact_mut(es).zip(&offs) {
            dst.copy_from_slice(&ins[0].data[o * es..(o + 1) * es]);
        }
        Ok(())
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ScatterKind {
    Src,
    Value,
    Add,
}

/// scatter.src_out(self, dim, index, src, out), scatter.value_out(self, dim, index, value, out),
/// scatter_add.out(self, dim, index, src, out).
fn scatter(env: &mut Env<'_>, a: &[usize], kind: ScatterKind) -> Result<()> {
    let (x, idx, src, out) = (arg(a, 0)?, arg(a, 2)?, arg(a, 3)?, arg(a, 4)?);
    let sizes = env.sizes(x)?.to_vec();
    let d = norm_dim(env.int(arg(a, 1)?)?, sizes.len())?;
    let dtype = same_dtype(env, x, out, "scatter self and output")?;
    let isizes = env.sizes(idx)?.to_vec();
    let ids = read_indices(env, idx)?;
    let offs = dim_offsets(&sizes, &isizes, &ids, d, "scatter")?;
    let value = if kind == ScatterKind::Value { Some(env.scalar(src)?) } else { None };
    let mut inputs = vec![x];
    let mut src_strides = Vec::new();
    if value.is_none() {
        same_dtype(env, x, src, "scatter self and src")?;
        let ss = env.sizes(src)?.to_vec();
        if ss.len().max(1) != isizes.len().max(1) || isizes.iter().zip(&ss).any(|(i, s)| i > s) {
            return Err(invalid(format!("scatter: index {isizes:?} is larger than src {ss:?}")));
        }
        src_strides = contiguous_strides(&ss);
        inputs.push(src);
    }
    env.resize(out, &sizes)?;
    let es = dtype.element_size();
    env.run(&inputs, &[out], |ins, outs| {
        outs[0].data.copy_from_slice(ins[0].data);
        // Source element for the k-th index element (src may be larger than index).
        let mut idx = vec![0usize; isizes.len()];
        let mut src_pos = Vec::with_capacity(offs.len());
        for _ in 0..offs.len() {
            src_pos.push(idx.iter().zip(&src_strides).map(|(&c, &s)| c * s).sum::<usize>());
            next_index(&mut idx, &isizes);
        }
        match (kind, value) {
            (ScatterKind::Value, Some(v)) => ferrite_kernels::dispatch!(all el(dtype)?, T => {
                let o = outs[0].typed::<T>()?;
                let val = scalar_to::<T>(v);
                for &off in &offs {
                    o[off] = val;
                }
            }, else other => return Err(super::unsupported(other))),
            (ScatterKind::Add, _) => ferrite_kernels::dispatch!(all el(dtype)?, T => {
                let s = ins[1].typed::<T>()?;
                let o = outs[0].typed::<T>()?;
                for (&off, &sp) in offs.iter().zip(&src_pos) {
                    o[off] = o[off].add_in_type(s[sp]);
                }
            }, else other => return Err(super::unsupported(other))),
            _ => {
                let s = ins.get(1).ok_or_else(|| invalid("scatter: missing src".into()))?.data;
                for (&off, &sp) in offs.iter().zip(&src_pos) {
                    outs[0].data[off * es..(off + 1) * es].copy_from_slice(&s[sp * es..(sp + 1) * es]);
                }
            }
        }
        Ok(())
    })
}

fn scalar_to<T: Element>(v: Scalar) -> T {
    match v {
        Scalar::Int(i) => T::from_i64(i),
        other => T::from_f64(other.to_f64()),
    }
}

/// Advanced indexing plan: which `self` elements each output element reads.
struct AdvIndex {
    out_sizes: Vec<usize>,
    /// Output element `(pre, b, post)` reads `pre_offs[pre] + b_offs[b] + post_offs[post]`.
    pre_offs: Vec<usize>,
    b_offs: Vec<usize>,
    post_offs: Vec<usize>,
    /// Sizes of the broadcast index shape.
    b_sizes: Vec<usize>,
}

/// Offsets (in elements) of every coordinate of `dims` (in order), row-major.
fn offsets_of(dims: &[usize], sizes: &[usize], strides: &[usize]) -> Vec<usize> {
    let mut offs = vec![0usize];
    for &d in dims {
        let mut next = Vec::with_capacity(offs.len() * sizes[d]);
        for &o in &offs {
            for k in 0..sizes[d] {
                next.push(o + k * strides[d]);
            }
        }
        offs = next;
    }
    offs
}

fn plan_adv(env: &Env<'_>, self_sizes: &[usize], indices: &[Option<usize>]) -> Result<AdvIndex> {
    if indices.len() > self_sizes.len() {
        return Err(invalid(format!("index: {} indices for a rank-{} tensor", indices.len(), self_sizes.len())));
    }
    // Expand masks into integer indices: (dim, sizes, values).
    let mut idx: Vec<(usize, Vec<usize>, Vec<i64>)> = Vec::new();
    let mut dim = 0usize;
    for t in indices {
        let Some(t) = *t else {
            dim += 1;
            continue;
        };
        let ts = env.sizes(t)?.to_vec();
        match env.dtype(t)? {
            ScalarType::Bool | ScalarType::Byte => {
                let k = ts.len().max(1);
                if dim + k > self_sizes.len() || ts.iter().zip(&self_sizes[dim..]).any(|(a, b)| a != b) {
                    return Err(invalid(format!("index: mask {ts:?} does not match self {self_sizes:?} at dim {dim}")));
                }
                let mask = env.read(t)?.typed::<u8>()?.to_vec();
                let mut coords: Vec<Vec<i64>> = vec![Vec::new(); ts.len()];
                let mut c = vec![0usize; ts.len()];
                let mut count = 0usize;
                for &m in &mask {
                    if m != 0 {
                        for (l, &x) in coords.iter_mut().zip(&c) {
                            l.push(x as i64);
                        }
                        count += 1;
                    }
                    next_index(&mut c, &ts);
                }
                if ts.is_empty() {
                    return Err(RuntimeError::Unsupported("index: 0-d boolean masks".into()));
                }
                for (j, l) in coords.into_iter().enumerate() {
                    idx.push((dim + j, vec![count], l));
                }
                dim += k;
            }
            _ => {
                idx.push((dim, ts, read_indices(env, t)?));
                dim += 1;
            }
        }
    }
    if dim > self_sizes.len() {
        return Err(invalid(format!("index: too many indices for self {self_sizes:?}")));
    }
    if idx.is_empty() {
        return Err(RuntimeError::Unsupported("index: at least one index tensor is required".into()));
    }
    // Broadcast the index shapes.
    let rank = idx.iter().map(|i| i.1.len()).max().unwrap_or(0);
    let mut b_sizes = vec![1usize; rank];
    for (_, s, _) in &idx {
        for (j, &x) in s.iter().enumerate() {
            let slot = &mut b_sizes[rank - s.len() + j];
            if *slot == 1 {
                *slot = x;
            } else if x != 1 && x != *slot {
                return Err(invalid("index: index tensors do not broadcast".into()));
            }
        }
    }
    let b_numel: usize = b_sizes.iter().product();
    let strides = contiguous_strides(self_sizes);
    let mut b_offs = vec![0usize; b_numel];
    for (d, s, vals) in &idx {
        let bs = super::copy::broadcast_strides(s, &b_sizes)?;
        let mut c = vec![0usize; rank];
        for off in b_offs.iter_mut() {
            let k: usize = c.iter().zip(&bs).map(|(&x, &y)| x * y).sum();
            let v = *vals.get(k).ok_or_else(|| invalid("index: index tensor too small".into()))?;
            *off += wrap(v, self_sizes[*d], "index")? * strides[*d];
            next_index(&mut c, &b_sizes);
        }
    }
    let indexed: Vec<usize> = idx.iter().map(|i| i.0).collect();
    let rest: Vec<usize> = (0..self_sizes.len()).filter(|d| !indexed.contains(d)).collect();
    let (first, last) = (indexed.iter().min().copied().unwrap_or(0), indexed.iter().max().copied().unwrap_or(0));
    let adjacent = rest.iter().all(|&d| d < first || d > last);
    let (pre, post): (Vec<usize>, Vec<usize>) = if adjacent {
        (rest.iter().copied().filter(|&d| d < first).collect(), rest.iter().copied().filter(|&d| d > last).collect())
    } else {
        (Vec::new(), rest)
    };
    let mut out_sizes: Vec<usize> = pre.iter().map(|&d| self_sizes[d]).collect();
    out_sizes.extend(&b_sizes);
    out_sizes.extend(post.iter().map(|&d| self_sizes[d]));
    Ok(AdvIndex {
        out_sizes,
        pre_offs: offsets_of(&pre, self_sizes, &strides),
        b_offs,
        post_offs: offsets_of(&post, self_sizes, &strides),
        b_sizes,
    })
}

impl AdvIndex {
    /// Every addressed `self` offset, in output order.
    fn all_offsets(&self) -> Vec<usize> {
        let mut v = Vec::with_capacity(self.pre_offs.len() * self.b_offs.len() * self.post_offs.len());
        for &p in &self.pre_offs {
            for &b in &self.b_offs {
                for &q in &self.post_offs {
                    v.push(p + b + q);
                }
            }
        }
        v
    }
}

fn index_tensor(env: &mut Env<'_>, a: &[usize]) -> Result<()> {
    let (x, list, out) = (arg(a, 0)?, arg(a, 1)?, arg(a, 2)?);
    let sizes = env.sizes(x)?.to_vec();
    same_dtype(env, x, out, "index input and output")?;
    let indices = env.opt_tensor_list(list)?;
    let plan = plan_adv(env, &sizes, &indices)?;
    let _ = &plan.b_sizes;
    env.resize(out, &plan.out_sizes)?;
    let es = env.dtype(x)?.element_size();
    // Trailing post dims are contiguous: copy runs of them at once.
    let contiguous_post = plan.post_offs.iter().enumerate().all(|(i, &o)| o == i);
    env.run(&[x], &[out], |ins, outs| {
        let src = ins[0].data;
        let dst = &mut *outs[0].data;
        if contiguous_post {
            let run = plan.post_offs.len() * es;
            let mut pos = 0usize;
            for &p in &plan.pre_offs {
                for &b in &plan.b_offs {
                    let from = (p + b) * es;
                    dst[pos..pos + run].copy_from_slice(&src[from..from + run]);
                    pos += run;
                }
            }
        } else {
            for (d, o) in dst.chunks_exact_mut(es).zip(plan.all_offsets()) {
                d.copy_from_slice(&src[o * es..(o + 1) * es]);
            }
        }
        Ok(())
    })
}

/// `index_put_(self, indices, values, accumulate) -> self`: the in-place form.
fn index_put_inplace(env: &mut Env<'_>, a: &[usize]) -> Result<()> {
    let x = arg(a, 0)?;
    index_put_into(env, a, x)?;
    if let Some(&ret) = a.get(4) {
        if ret != x && env.is_tensor(ret)? {
            env.alias(x, ret)?;
        }
    }
    Ok(())
}

fn index_put(env: &mut Env<'_>, a: &[usize]) -> Result<()> {
    let out = arg(a, 4)?;
    index_put_into(env, a, out)
}

/// index_put.out(self, indices, values, accumulate, out): `out = self` with the indexed
/// elements replaced by (or, with `accumulate`, increased by) `values`, broadcast.
fn index_put_into(env: &mut Env<'_>, a: &[usize], out: usize) -> Result<()> {
    let (x, list, vals) = (arg(a, 0)?, arg(a, 1)?, arg(a, 2)?);
    let accumulate = env.bool(arg(a, 3)?)?;
    let sizes = env.sizes(x)?.to_vec();
    let dtype = same_dtype(env, x, out, "index_put self and output")?;
    same_dtype(env, x, vals, "index_put self and values")?;
    let indices = env.opt_tensor_list(list)?;
    let plan = plan_adv(env, &sizes, &indices)?;
    let vstrides = super::copy::broadcast_strides(env.sizes(vals)?, &plan.out_sizes)?;
    env.resize(out, &sizes)?;
    let es = dtype.element_size();
    let offs = plan.all_offsets();
    env.run(&[x, vals], &[out], |ins, outs| {
        outs[0].data.copy_from_slice(ins[0].data);
        let mut c = vec![0usize; plan.out_sizes.len()];
        let mut vpos = Vec::with_capacity(offs.len());
        for _ in 0..offs.len() {
            vpos.push(c.iter().zip(&vstrides).map(|(&x, &s)| x * s).sum::<usize>());
            next_index(&mut c, &plan.out_sizes);
        }
        if accumulate {
            ferrite_kernels::dispatch!(all el(dtype)?, T => {
                let v = ins[1].typed::<T>()?;
                let o = outs[0].typed::<T>()?;
                for (&off, &vp) in offs.iter().zip(&vpos) {
                    o[off] = o[off].add_in_type(v[vp]);
                }
            }, else other => return Err(super::unsupported(other)));
        } else {
            let v = ins[1].data;
            for (&off, &vp) in offs.iter().zip(&vpos) {
                outs[0].data[off * es..(off + 1) * es].copy_from_slice(&v[vp * es..(vp + 1) * es]);
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use crate::ops::harness::H;
    use ferrite_op_support::Op;
    use ferrite_program::ScalarType as S;

    #[test]
    fn embedding_and_index_select() {
        let mut h = H::new();
        let w = h.t(&[3, 2], &[0.0f32, 1.0, 10.0, 11.0, 20.0, 21.0]);
        let idx = h.t(&[2, 2], &[2i64, 0, 1, 1]);
        let (p, f) = (h.int(-1), h.bool(false));
        let o = h.out(S::Float, 3);
        h.call(Op::Embedding, &[w, idx, p, f, f, o]).expect("test");
        assert_eq!(h.get(o).sizes(), &[2, 2, 2]);
        assert_eq!(h.get(o).as_slice::<f32>().expect("test"), &[20.0, 21.0, 0.0, 1.0, 10.0, 11.0, 10.0, 11.0]);
        let bad = h.t(&[1], &[3i32]);
        let o = h.out(S::Float, 2);
        assert!(h.call(Op::Embedding, &[w, bad, p, f, f, o]).is_err());
        let sel = h.t(&[2], &[-1i32, 0]);
        let d = h.int(1);
        let o = h.out(S::Float, 2);
        h.call(Op::IndexSelect, &[w, d, sel, o]).expect("test");
        assert_eq!(h.get(o).as_slice::<f32>().expect("test"), &[1.0, 0.0, 11.0, 10.0, 21.0, 20.0]);
    }

    #[test]
    fn gather_and_scatter() {
        let mut h = H::new();
        let x = h.t(&[2, 3], &[1i64, 2, 3, 4, 5, 6]);
        let idx = h.t(&[2, 2], &[2i64, 0, 1, 1]);
        let (d, f) = (h.int(1), h.bool(false));
        let o = h.out(S::Long, 2);
        h.call(Op::Gather, &[x, d, idx, f, o]).expect("test");
        assert_eq!(h.get(o).as_slice::<i64>().expect("test"), &[3, 1, 5, 5]);
        let src = h.t(&[2, 2], &[10i64, 20, 30, 40]);
        let o = h.out(S::Long, 2);
        h.call(Op::ScatterSrc, &[x, d, idx, src, o]).expect("test");
        assert_eq!(h.get(o).as_slice::<i64>().expect("test"), &[20, 2, 10, 4, 40, 6]);
        let o = h.out(S::Long, 2);
        h.call(Op::ScatterAdd, &[x, d, idx, src, o]).expect("test");
        assert_eq!(h.get(o).as_slice::<i64>().expect("test"), &[21, 2, 13, 4, 75, 6]);
        let v = h.int(-1);
        let o = h.out(S::Long, 2);
        h.call(Op::ScatterValue, &[x, d, idx, v, o]).expect("test");
        assert_eq!(h.get(o).as_slice::<i64>().expect("test"), &[-1, 2, -1, 4, -1, 6]);
    }

    #[test]
    fn advanced_indexing() {
        let mut h = H::new();
        let data: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let x = h.t(&[2, 3, 4], &data);
        // x[:, [2, 0]] -> [2, 2, 4]
        let i1 = h.t(&[2], &[2i64, 0]);
        let l = h.opt_tensors(&[None, Some(i1)]);
        let o = h.out(S::Float, 3);
        h.call(Op::IndexTensor, &[x, l, o]).expect("test");
        assert_eq!(h.get(o).sizes(), &[2, 2, 4]);
        let got = h.get(o);
        let g = got.as_slice::<f32>().expect("test");
        assert_eq!(&g[..8], &[8.0, 9.0, 10.0, 11.0, 0.0, 1.0, 2.0, 3.0]);
        // x[[1, 0], :, [3]] (non-adjacent, broadcast) -> [2, 3]
        let a = h.t(&[2], &[1i64, 0]);
        let c = h.t(&[1], &[-1i64]);
        let l = h.opt_tensors(&[Some(a), None, Some(c)]);
        let o = h.out(S::Float, 2);
        h.call(Op::IndexTensor, &[x, l, o]).expect("test");
        assert_eq!(h.get(o).sizes(), &[2, 3]);
        assert_eq!(h.get(o).as_slice::<f32>().expect("test"), &[15.0, 19.0, 23.0, 3.0, 7.0, 11.0]);
        // Boolean mask over the first two dims.
        let m = h.bools(&[2, 3], &[true, false, false, false, false, true]);
        let l = h.opt_tensors(&[Some(m)]);
        let o = h.out(S::Float, 2);
        h.call(Op::IndexTensor, &[x, l, o]).expect("test");
        assert_eq!(h.get(o).sizes(), &[2, 4]);
        assert_eq!(h.get(o).as_slice::<f32>().expect("test"), &[0.0, 1.0, 2.0, 3.0, 20.0, 21.0, 22.0, 23.0]);
        // index_put with accumulate and repeated indices.
        let y = h.t(&[4], &[0.0f32; 4]);
        let ii = h.t(&[3], &[1i64, 1, 3]);
        let l = h.opt_tensors(&[Some(ii)]);
        let vals = h.t(&[1], &[2.5f32]);
        let acc = h.bool(true);
        let o = h.out(S::Float, 1);
        h.call(Op::IndexPut, &[y, l, vals, acc, o]).expect("test");
        assert_eq!(h.get(o).as_slice::<f32>().expect("test"), &[0.0, 5.0, 0.0, 2.5]);
        let noacc = h.bool(false);
        let o = h.out(S::Float, 1);
        h.call(Op::IndexPut, &[y, l, vals, noacc, o]).expect("test");
        assert_eq!(h.get(o).as_slice::<f32>().expect("test"), &[0.0, 2.5, 0.0, 2.5]);
        // The in-place form updates self.
        h.call(Op::IndexPutDefault, &[y, l, vals, acc, y]).expect("test");
        assert_eq!(h.get(y).as_slice::<f32>().expect("test"), &[0.0, 5.0, 0.0, 2.5]);
        // Out of range.
        let bad = h.t(&[1], &[5i64]);
        let l = h.opt_tensors(&[Some(bad)]);
        let o = h.out(S::Float, 1);
        assert!(h.call(Op::IndexTensor, &[y, l, o]).is_err());
    }
}
