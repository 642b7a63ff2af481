//! Linear algebra: mm, bmm, addmm, baddbmm, linear, matmul, and ExecuTorch's LLM attention
//! operators (`llama::custom_sdpa`, `llama::sdpa_with_kv_cache`).

use super::{arg, el};
use crate::env::Env;
use crate::error::{Result, RuntimeError};
use crate::registry::KernelRegistry;
use ferrite_kernels::linalg::{self as k, Operand};
use ferrite_kernels::simd::Level;
use ferrite_kernels::Element;
use ferrite_op_support::Op;
use ferrite_program::ScalarType;

pub(super) fn register(r: &mut KernelRegistry) {
    reg!(r, Op::Mm, mm);
    reg!(r, Op::Bmm, bmm);
    reg!(r, Op::Addmm, addmm);
    reg!(r, Op::Baddbmm, baddbmm);
    reg!(r, Op::Linear, linear);
    reg!(r, Op::Matmul, matmul);
    reg!(r, Op::LlamaCustomSdpa, custom_sdpa);
    reg!(r, Op::LlamaSdpaWithKvCache, sdpa_with_kv_cache);
}

fn invalid(msg: String) -> RuntimeError {
    RuntimeError::Invalid(msg)
}

/// Checks that every tensor in `vals` has `dtype`.
fn same_dtypes(env: &Env<'_>, what: &str, vals: &[usize]) -> Result<ScalarType> {
    let d = env.dtype(vals[0])?;
    for &v in &vals[1..] {
        if env.dtype(v)? != d {
            return Err(invalid(format!("{what}: mixed dtypes {d} and {}", env.dtype(v)?)));
        }
    }
    if d == ScalarType::Bool {
        return Err(RuntimeError::Unsupported(format!("{what} of Bool tensors")));
    }
    Ok(d)
}

fn dims2(env: &Env<'_>, v: usize, what: &str) -> Result<(usize, usize)> {
    match *env.sizes(v)? {
        [a, b] => Ok((a, b)),
        ref s => Err(invalid(format!("{what} must be 2-D, got {s:?}"))),
    }
}

fn dims3(env: &Env<'_>, v: usize, what: &str) -> Result<(usize, usize, usize)> {
    match *env.sizes(v)? {
        [a, b, c] => Ok((a, b, c)),
        ref s => Err(invalid(format!("{what} must be 3-D, got {s:?}"))),
    }
}

/// Runs one batched product `out = a · b` (+ `beta * self` broadcast, scaled by `alpha`).
#[allow(clippy::too_many_arguments)]
fn run_bmm(
    env: &mut Env<'_>,
    a: usize,
    ao: Operand,
    b: usize,
    bo: Operand,
    out: usize,
    out_sizes: &[usize],
    batch: usize,
    mkn: (usize, usize, usize),
    bias: Option<(usize, f64, f64)>,
) -> Result<()> {
    let mut vals = vec![a, b, out];
    if let Some((s, _, _)) = bias {
        vals.push(s);
    }
    let dtype = same_dtypes(env, "matrix product", &vals)?;
    env.resize(out, out_sizes)?;
    // How `self` broadcasts to the (batch, m, n) output.
    let self_strides = match bias {
        Some((s, _, _)) => Some(super::copy::broadcast_strides(env.sizes(s)?, &[batch, mkn.0, mkn.2])?),
        None => None,
    };
    let inputs: Vec<usize> = [a, b].into_iter().chain(bias.map(|x| x.0)).collect();
    let (in_order, level) = (env.reference_order, env.level);
    env.run(&inputs, &[out], |ins, outs| {
        ferrite_kernels::dispatch!(all el(dtype)?, T => {
            let o = outs[0].typed::<T>()?;
            let (x, y) = (ins[0].typed::<T>()?, ins[1].typed::<T>()?);
            match (bias, &self_strides, ins.get(2)) {
                (Some((_, beta, alpha)), Some(st), Some(s)) => {
                    let s = s.typed::<T>()?;
                    with_bias::<T>(x, &ao, y, &bo, s, st, o, batch, mkn, (beta, alpha), in_order.then_some(level))?;
                }
                _ if in_order => k::bmm_in_order(x, &ao, y, &bo, o, batch, mkn, level)?,
                _ => k::bmm(x, &ao, y, &bo, o, batch, mkn, false)?,
            }
        }, else other => return Err(super::unsupported(other)));
        Ok(())
    })
}

/// `out = beta * self + alpha * (a · b)` with `self` read through broadcast strides. In
/// reference order (`in_order`, with the level the in-order tiles run at) the product is summed first and `self` added last, as
/// ExecuTorch's `addmm` does; otherwise the product accumulates onto `self`.
#[allow(clippy::too_many_arguments)]
fn with_bias<T: Element>(
    x: &[T],
    ao: &Operand,
    y: &[T],
    bo: &Operand,
    s: &[T],
    st: &[usize],
    o: &mut [T],
    batch: usize,
    (m, kk, n): (usize, usize, usize),
    (beta, alpha): (f64, f64),
    in_order: Option<Level>,
) -> Result<()> {
    let self_at = |bi: usize, i: usize, j: usize| -> Result<T> {
        s.get(bi * st[0] + i * st[1] + j * st[2]).copied().ok_or_else(|| invalid("addmm: self is too small".into()))
    };
    if alpha == 1.0 && beta == 1.0 && in_order.is_none() {
        // Copy self into the output, then accumulate the product onto it.
        for bi in 0..batch {
            for i in 0..m {
                for j in 0..n {
                    o[(bi * m + i) * n + j] = self_at(bi, i, j)?;
                }
            }
        }
        k::bmm(x, ao, y, bo, o, batch, (m, kk, n), true)?;
    } else {
        if let Some(level) = in_order {
            k::bmm_in_order(x, ao, y, bo, o, batch, (m, kk, n), level)?;
        } else {
            k::bmm(x, ao, y, bo, o, batch, (m, kk, n), false)?;
        }
        for bi in 0..batch {
            for i in 0..m {
                for j in 0..n {
                    let idx = (bi * m + i) * n + j;
                    o[idx] = k::axpby(o[idx], alpha, if beta == 0.0 { T::default() } else { self_at(bi, i, j)? }, beta);
                }
            }
        }
    }
    Ok(())
}

fn mm(env: &mut Env<'_>, a: &[usize]) -> Result<()> {
    let (x, y, out) = (arg(a, 0)?, arg(a, 1)?, arg(a, 2)?);
    let (m, kk) = dims2(env, x, "mm self")?;
    let (k2, n) = dims2(env, y, "mm mat2")?;
    if kk != k2 {
        return Err(invalid(format!("mm: {m}x{kk} times {k2}x{n}")));
    }
    run_bmm(env, x, Operand::row_major(1, m, kk), y, Operand::row_major(1, kk, n), out, &[m, n], 1, (m, kk, n), None)
}

fn bmm(env: &mut Env<'_>, a: &[usize]) -> Result<()> {
    let (x, y, out) = (arg(a, 0)?, arg(a, 1)?, arg(a, 2)?);
    let (b, m, kk) = dims3(env, x, "bmm self")?;
    let (b2, k2, n) = dims3(env, y, "bmm mat2")?;
    if kk != k2 || b != b2 {
        return Err(invalid(format!("bmm: {b}x{m}x{kk} times {b2}x{k2}x{n}")));
    }
    run_bmm(env, x, Operand::row_major(b, m, kk), y, Operand::row_major(b, kk, n), out, &[b, m, n], b, (m, kk, n), None)
}

fn scalars(env: &Env<'_>, beta: usize, alpha: usize) -> Result<(f64, f64)> {
    Ok((env.scalar(beta)?.to_f64(), env.scalar(alpha)?.to_f64()))
}

fn addmm(env: &mut Env<'_>, a: &[usize]) -> Result<()> {
    let (s, x, y, out) = (arg(a, 0)?, arg(a, 1)?, arg(a, 2)?, arg(a, 5)?);
    let (beta, alpha) = scalars(env, arg(a, 3)?, arg(a, 4)?)?;
    let (m, kk) = dims2(env, x, "addmm mat1")?;
    let (k2, n) = dims2(env, y, "addmm mat2")?;
    if kk != k2 {
        return Err(invalid(format!("addmm: {m}x{kk} times {k2}x{n}")));
    }
    run_bmm(
        env,
        x,
        Operand::row_major(1, m, kk),
        y,
        Operand::row_major(1, kk, n),
        out,
        &[m, n],
        1,
        (m, kk, n),
        Some((s, beta, alpha)),
    )
}

fn baddbmm(env: &mut Env<'_>, a: &[usize]) -> Result<()> {
    let (s, x, y, out) = (arg(a, 0)?, arg(a, 1)?, arg(a, 2)?, arg(a, 5)?);
    let (beta, alpha) = scalars(env, arg(a, 3)?, arg(a, 4)?)?;
    let (b, m, kk) = dims3(env, x, "baddbmm batch1")?;
    let (b2, k2, n) = dims3(env, y, "baddbmm batch2")?;
    if kk != k2 || b != b2 {
        return Err(invalid(format!("baddbmm: {b}x{m}x{kk} times {b2}x{k2}x{n}")));
    }
    run_bmm(
        env,
        x,
        Operand::row_major(b, m, kk),
        y,
        Operand::row_major(b, kk, n),
        out,
        &[b, m, n],
        b,
        (m, kk, n),
        Some((s, beta, alpha)),
    )
}

/// `linear(input [*, in], weight [out, in], bias [out]?) = input · weightᵀ + bias`.
fn linear(env: &mut Env<'_>, a: &[usize]) -> Result<()> {
    let (x, w, bias, out) = (arg(a, 0)?, arg(a, 1)?, arg(a, 2)?, arg(a, 3)?);
    let in_sizes = env.sizes(x)?.to_vec();
    let (of, inf) = dims2(env, w, "linear weight")?;
    let Some((&last, lead)) = in_sizes.split_last() else {
        return Err(invalid("linear: input must have at least one dimension".into()));
    };
    if last != inf {
        return Err(invalid(format!("linear: input {in_sizes:?} does not match weight [{of}, {inf}]")));
    }
    let m: usize = lead.iter().product();
    let mut out_sizes = lead.to_vec();
    out_sizes.push(of);
    let wt = Operand { offsets: vec![0], row_stride: 1, col_stride: inf };
    let b = if env.is_none(bias)? { None } else { Some((bias, 1.0, 1.0)) };
    if let Some((bv, _, _)) = b {
        if env.sizes(bv)?.iter().product::<usize>() != of && env.sizes(bv)?.iter().product::<usize>() != 1 {
            return Err(invalid(format!("linear: bias {:?} for {of} outputs", env.sizes(bv)?)));
        }
    }
    // Run as a single (m x in) · (in x out) product; the bias broadcasts over rows.
    run_linear(env, x, w, wt, out, &out_sizes, (m, inf, of), b)
}

#[allow(clippy::too_many_arguments)]
fn run_linear(
    env: &mut Env<'_>,
    x: usize,
    w: usize,
    wt: Operand,
    out: usize,
    out_sizes: &[usize],
    mkn: (usize, usize, usize),
    bias: Option<(usize, f64, f64)>,
) -> Result<()> {
    let mut vals = vec![x, w, out];
    vals.extend(bias.map(|b| b.0));
    let dtype = same_dtypes(env, "linear", &vals)?;
    env.resize(out, out_sizes)?;
    let (m, _, n) = mkn;
    let bias_stride = match bias {
        Some((b, _, _)) => usize::from(env.sizes(b)?.iter().product::<usize>() != 1),
        None => 0,
    };
    let inputs: Vec<usize> = [x, w].into_iter().chain(bias.map(|b| b.0)).collect();
    let (in_order, level) = (env.reference_order, env.level);
    env.run(&inputs, &[out], |ins, outs| {
        ferrite_kernels::dispatch!(all el(dtype)?, T => {
            let o = outs[0].typed::<T>()?;
            let (xv, wv) = (ins[0].typed::<T>()?, ins[1].typed::<T>()?);
            let xo = Operand::row_major(1, m, mkn.1);
            if in_order {
                // As the exported `addmm`/`mm` would: the product, then the bias.
                k::bmm_in_order(xv, &xo, wv, &wt, o, 1, mkn, level)?;
                if let Some(bt) = ins.get(2) {
                    let bv = bt.typed::<T>()?;
                    for row in o.chunks_mut(n.max(1)).take(m) {
                        for (j, d) in row.iter_mut().enumerate() {
                            let b = *bv.get(j * bias_stride).ok_or_else(|| invalid("linear: bias too small".into()))?;
                            *d = k::axpby(*d, 1.0, b, 1.0);
                        }
                    }
                }
            } else if let Some(bt) = ins.get(2) {
                let bv = bt.typed::<T>()?;
                for row in o.chunks_mut(n.max(1)).take(m) {
                    for (j, d) in row.iter_mut().enumerate() {
                        *d = *bv.get(j * bias_stride).ok_or_else(|| invalid("linear: bias too small".into()))?;
                    }
                }
                k::bmm(xv, &xo, wv, &wt, o, 1, mkn, true)?;
            } else {
                k::bmm(xv, &xo, wv, &wt, o, 1, mkn, false)?;
            }
        }, else other => return Err(super::unsupported(other)));
        Ok(())
    })
}

/// `torch.matmul`: 1-D operands are promoted (and the added dim removed), batch dims broadcast.
fn matmul(env: &mut Env<'_>, a: &[usize]) -> Result<()> {
    let (x, y, out) = (arg(a, 0)?, arg(a, 1)?, arg(a, 2)?);
    let xs = env.sizes(x)?.to_vec();
    let ys = env.sizes(y)?.to_vec();
    if xs.is_empty() || ys.is_empty() {
        return Err(invalid("matmul: both arguments need at least one dimension".into()));
    }
    let (xm, xk, xb) = if xs.len() == 1 {
        (None, xs[0], &xs[..0])
    } else {
        (Some(xs[xs.len() - 2]), xs[xs.len() - 1], &xs[..xs.len() - 2])
    };
    let (yk, yn, yb) = if ys.len() == 1 {
        (ys[0], None, &ys[..0])
    } else {
        (ys[ys.len() - 2], Some(ys[ys.len() - 1]), &ys[..ys.len() - 2])
    };
    if xk != yk {
        return Err(invalid(format!("matmul: {xs:?} times {ys:?}")));
    }
    // Broadcast batch dims.
    let rank = xb.len().max(yb.len());
    let mut batch_sizes = vec![0usize; rank];
    for (i, bsz) in batch_sizes.iter_mut().enumerate() {
        let d1 = if i + xb.len() >= rank { xb[i + xb.len() - rank] } else { 1 };
        let d2 = if i + yb.len() >= rank { yb[i + yb.len() - rank] } else { 1 };
        *bsz = if d1 == d2 || d2 == 1 {
            d1
        } else if d1 == 1 {
            d2
        } else {
            return Err(invalid(format!("matmul: batch dims of {xs:?} and {ys:?} do not broadcast")));
        };
    }
    let (m, n) = (xm.unwrap_or(1), yn.unwrap_or(1));
    let batch: usize = batch_sizes.iter().product();
    let offsets = |b: &[usize], per: usize| -> Result<Vec<usize>> {
        let st = super::copy::broadcast_strides(b, &batch_sizes)?;
        let mut offs = Vec::with_capacity(batch);
        let mut idx = vec![0usize; rank];
        for _ in 0..batch {
            offs.push(idx.iter().zip(&st).map(|(&i, &s)| i * s * per).sum());
            for d in (0..rank).rev() {
                idx[d] += 1;
                if idx[d] < batch_sizes[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        Ok(offs)
    };
    let ao = Operand { offsets: offsets(xb, m * xk)?, row_stride: xk, col_stride: 1 };
    let bo = Operand { offsets: offsets(yb, xk * n)?, row_stride: n, col_stride: 1 };
    let mut out_sizes = batch_sizes.clone();
    out_sizes.extend(xm);
    out_sizes.extend(yn);
    run_bmm(env, x, ao, y, bo, out, &out_sizes, batch, (m, xk, n), None)
}

struct Attn {
    q_shape: (usize, usize, usize, usize),
    kv: (usize, usize),
    kv_used: usize,
    causal: bool,
    start: usize,
    scale: f64,
    has_mask: bool,
}

#[allow(clippy::too_many_arguments)]
fn attn_params(
    env: &Env<'_>,
    q: usize,
    k: usize,
    v: usize,
    start: i64,
    mask: usize,
    causal: bool,
    scale: Option<f64>,
    seq_len: usize,
) -> Result<Attn> {
    let dims4 = |t: usize, what: &str| -> Result<(usize, usize, usize, usize)> {
        match *env.sizes(t)? {
            [a, b, c, d] => Ok((a, b, c, d)),
            ref s => Err(invalid(format!("sdpa: {what} must be 4-D, got {s:?}"))),
        }
    };
    let (b, s, h, d) = dims4(q, "query")?;
    let (kb, kl, kh, kd) = dims4(k, "key")?;
    if env.sizes(v)? != env.sizes(k)? || kb != b || kd != d {
        return Err(invalid(format!(
            "sdpa: query {:?}, key {:?}, value {:?} do not agree",
            env.sizes(q)?,
            env.sizes(k)?,
            env.sizes(v)?
        )));
    }
    let start = usize::try_from(start).map_err(|_| invalid(format!("sdpa: start_pos {start} is negative")))?;
    let has_mask = !env.is_none(mask)?;
    if has_mask && causal {
        return Err(invalid("sdpa: attn_mask and is_causal cannot both be set".into()));
    }
    let kv_used = if has_mask { kl } else { start + seq_len };
    if kv_used > kl {
        return Err(invalid(format!("sdpa: start_pos {start} + {seq_len} queries exceed the {kl} keys")));
    }
    if has_mask {
        if env.dtype(mask)? != ScalarType::Float {
            return Err(RuntimeError::Unsupported(format!("sdpa: attn_mask of {} (Float only)", env.dtype(mask)?)));
        }
        if env.sizes(mask)? != [s, kv_used] {
            return Err(invalid(format!("sdpa: attn_mask {:?} is not [{s}, {kv_used}]", env.sizes(mask)?)));
        }
    }
    let scale = scale.unwrap_or(1.0 / (d as f64).sqrt());
    Ok(Attn { q_shape: (b, s, h, d), kv: (kl, kh), kv_used, causal, start, scale, has_mask })
}

/// `llama::custom_sdpa.out(q, k, v, start_pos, attn_mask?, dropout_p, is_causal, scale?, out)`.
fn custom_sdpa(env: &mut Env<'_>, a: &[usize]) -> Result<()> {
    let (q, kk, v, mask, out) = (arg(a, 0)?, arg(a, 1)?, arg(a, 2)?, arg(a, 4)?, arg(a, 8)?);
    let start = env.int(arg(a, 3)?)?;
    let causal = env.bool(arg(a, 6)?)?;
    let scale = env.opt_double(arg(a, 7)?)?;
    let seq_len = env.sizes(q)?.get(1).copied().unwrap_or(0);
    let p = attn_params(env, q, kk, v, start, mask, causal, scale, seq_len)?;
    let dtype = same_dtypes(env, "sdpa", &[q, kk, v, out])?;
    let qs = env.sizes(q)?.to_vec();
    env.resize(out, &qs)?;
    let mut inputs = vec![q, kk, v];
    if p.has_mask {
        inputs.push(mask);
    }
    env.run(&inputs, &[out], |ins, outs| {
        let m = ins.get(3).map(|t| t.typed::<f32>()).transpose()?;
        ferrite_kernels::dispatch!(float el(dtype)?, T => {
            k::sdpa::<T>(
                ins[0].typed::<T>()?,
                ins[1].typed::<T>()?,
                ins[2].typed::<T>()?,
                m,
                outs[0].typed::<T>()?,
                p.q_shape,
                p.kv,
                p.kv_used,
                p.causal,
                p.start,
                p.scale,
            )?;
        }, else other => return Err(super::float_only(other)));
        Ok(())
    })
}

/// `llama::sdpa_with_kv_cache.out(q, k, v, key_cache, value_cache, start_pos, seq_len,
/// attn_mask?, dropout_p, is_causal, scale?, out)`: writes k and v into the caches at
/// `start_pos`, then attends over the caches.
fn sdpa_with_kv_cache(env: &mut Env<'_>, a: &[usize]) -> Result<()> {
    let (q, kp, vp, kc, vc, mask, out) =
        (arg(a, 0)?, arg(a, 1)?, arg(a, 2)?, arg(a, 3)?, arg(a, 4)?, arg(a, 7)?, arg(a, 11)?);
    let start = env.int(arg(a, 5)?)?;
    let seq_len = usize::try_from(env.int(arg(a, 6)?)?).map_err(|_| invalid("sdpa: negative seq_len".into()))?;
    let causal = env.bool(arg(a, 9)?)?;
    let scale = env.opt_double(arg(a, 10)?)?;
    let p = attn_params(env, q, kc, vc, start, mask, causal, scale, seq_len)?;
    let dtype = same_dtypes(env, "sdpa", &[q, kp, vp, kc, vc, out])?;
    let (b, _, _, d) = p.q_shape;
    let (kl, kh) = p.kv;
    for t in [kp, vp] {
        let s = env.sizes(t)?;
        if s.len() != 4 || s[0] != b || s[1] != seq_len || s[2] != kh || s[3] != d {
            return Err(invalid(format!(
                "sdpa: projected k/v {s:?} do not fit cache [{b}, {kl}, {kh}, {d}] with seq_len {seq_len}"
            )));
        }
    }
    let qs = env.sizes(q)?.to_vec();
    env.resize(out, &qs)?;
    let mut inputs = vec![q, kp, vp];
    if p.has_mask {
        inputs.push(mask);
    }
    env.run(&inputs, &[kc, vc, out], |ins, outs| {
        let m = ins.get(3).map(|t| t.typed::<f32>()).transpose()?;
        let [kco, vco, oo] = outs else {
            return Err(invalid("sdpa: expected three outputs".into()));
        };
        ferrite_kernels::dispatch!(float el(dtype)?, T => {
            let row = kh * d;
            for (src, cache) in [(ins[1].typed::<T>()?, kco.typed::<T>()?), (ins[2].typed::<T>()?, vco.typed::<T>()?)] {
                for bi in 0..b {
                    let dst = cache
                        .get_mut((bi * kl + p.start) * row..(bi * kl + p.start + seq_len) * row)
                        .ok_or_else(|| invalid("sdpa: cache too small".into()))?;
                    dst.copy_from_slice(&src[bi * seq_len * row..(bi + 1) * seq_len * row]);
                }
            }
            k::sdpa::<T>(ins[0].typed::<T>()?, kco.typed::<T>()?, vco.typed::<T>()?, m, oo.typed::<T>()?, p.q_shape, p.kv, p.kv_used, p.causal, p.start, p.scale)?;
        }, else other => return Err(super::float_only(other)));
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use crate::ops::harness::{close, rand_vec, H};
    use ferrite_op_support::Op;
    use ferrite_program::ScalarType as S;
    use proptest::prelude::*;

    fn mm_ref(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| f64::from(a[i * k + p]) * f64::from(b[p * n + j])).sum();
            }
        }
        c
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn addmm_and_linear_match_reference(m in 0usize..6, k in 0usize..7, n in 1usize..6, bias_kind in 0usize..3, seed in 0u64..500) {
            let a = rand_vec(m * k, seed);
            let b = rand_vec(k * n, seed + 1);
            let bias = rand_vec(n, seed + 2);
            let prod = mm_ref(&a, &b, m, k, n);
            // addmm with a [n] / [1, n] / [m, n]-shaped self, beta 1 or 0.5, alpha 1 or 2.
            let (beta, alpha) = if seed % 2 == 0 { (1.0, 1.0) } else { (0.5, 2.0) };
            let (self_sizes, self_vals): (Vec<usize>, Vec<f32>) = match bias_kind {
                0 => (vec![n], bias.clone()),
                1 => (vec![1, n], bias.clone()),
                _ => (vec![m, n], rand_vec(m * n, seed + 3)),
            };
            let mut h = H::new();
            let s = h.t(&self_sizes, &self_vals);
            let (x, y) = (h.t(&[m, k], &a), h.t(&[k, n], &b));
            let (be, al) = (h.double(beta), h.double(alpha));
            let o = h.out(S::Float, 2);
            h.call(Op::Addmm, &[s, x, y, be, al, o]).expect("test");
            let want: Vec<f64> = (0..m * n)
                .map(|i| {
                    let sv = if bias_kind < 2 { self_vals[i % n] } else { self_vals[i] };
                    alpha * prod[i] + beta * f64::from(sv)
                })
                .collect();
            close(&h.f64s(o).1, &want, 1e-4);
            // linear: weight is [n, k] (transposed operand), input [m, k] reshaped to [1, m, k].
            let wt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            let w = h.t(&[n, k], &wt);
            let xi = h.t(&[1, m, k], &a);
            let bi = h.t(&[n], &bias);
            let o = h.out(S::Float, 3);
            h.call(Op::Linear, &[xi, w, bi, o]).expect("test");
            let want: Vec<f64> = (0..m * n).map(|i| prod[i] + f64::from(bias[i % n])).collect();
            let (os, got) = h.f64s(o);
            prop_assert_eq!(os, vec![1, m, n]);
            close(&got, &want, 1e-4);
        }
    }

    #[test]
    fn bmm_matmul_and_dtypes() {
        let (b, m, k, n) = (3, 2, 4, 5);
        let x = rand_vec(b * m * k, 1);
        let y = rand_vec(b * k * n, 2);
        let mut h = H::new();
        let (xi, yi) = (h.t(&[b, m, k], &x), h.t(&[b, k, n], &y));
        let o = h.out(S::Float, 3);
        h.call(Op::Bmm, &[xi, yi, o]).expect("test");
        let want: Vec<f64> = (0..b)
            .flat_map(|i| mm_ref(&x[i * m * k..(i + 1) * m * k], &y[i * k * n..(i + 1) * k * n], m, k, n))
            .collect();
        close(&h.f64s(o).1, &want, 1e-5);
        // matmul broadcasting a 2-D rhs over the batch, and a 1-D rhs.
        let y2 = h.t(&[k, n], &y[..k * n]);
        let o = h.out(S::Float, 3);
        h.call(Op::Matmul, &[xi, y2, o]).expect("test");
        let want: Vec<f64> =
            (0..b).flat_map(|i| mm_ref(&x[i * m * k..(i + 1) * m * k], &y[..k * n], m, k, n)).collect();
        close(&h.f64s(o).1, &want, 1e-5);
        let v = h.t(&[k], &y[..k]);
        let o = h.out(S::Float, 2);
        h.call(Op::Matmul, &[xi, v, o]).expect("test");
        assert_eq!(h.get(o).sizes(), &[b, m]);
        close(&h.f64s(o).1, &mm_ref(&x, &y[..k], b * m, k, 1), 1e-5);
        // f64, f16, bf16 and integer mm.
        let a = [1.0f64, 2.0, 3.0, 4.0];
        let (ai, bi) = (h.t(&[2, 2], &a), h.t(&[2, 2], &a));
        let o = h.out(S::Double, 2);
        h.call(Op::Mm, &[ai, bi, o]).expect("test");
        assert_eq!(h.get(o).as_slice::<f64>().expect("test"), &[7.0, 10.0, 15.0, 22.0]);
        let ah: Vec<half::f16> = a.iter().map(|&v| half::f16::from_f64(v)).collect();
        let (ai, bi) = (h.t(&[2, 2], &ah), h.t(&[2, 2], &ah));
        let o = h.out(S::Half, 2);
        h.call(Op::Mm, &[ai, bi, o]).expect("test");
        close(&h.f64s(o).1, &[7.0, 10.0, 15.0, 22.0], 0.0);
        let ab: Vec<half::bf16> = a.iter().map(|&v| half::bf16::from_f64(v)).collect();
        let (ai, bi) = (h.t(&[2, 2], &ab), h.t(&[2, 2], &ab));
        let o = h.out(S::BFloat16, 2);
        h.call(Op::Mm, &[ai, bi, o]).expect("test");
        close(&h.f64s(o).1, &[7.0, 10.0, 15.0, 22.0], 0.0);
        let al = [1i64, 2, 3, 4];
        let (ai, bi) = (h.t(&[2, 2], &al), h.t(&[2, 2], &al));
        let o = h.out(S::Long, 2);
        h.call(Op::Mm, &[ai, bi, o]).expect("test");
        assert_eq!(h.get(o).as_slice::<i64>().expect("test"), &[7, 10, 15, 22]);
        // Shape mismatch is an error, not a panic.
        let o = h.out(S::Long, 2);
        let c = h.t(&[3, 1], &[1i64, 2, 3]);
        assert!(h.call(Op::Mm, &[ai, c, o]).is_err());
    }

    #[test]
    fn custom_sdpa_and_kv_cache() {
        let (b, s, hq, hkv, d) = (1, 3, 4, 2, 4);
        let q = rand_vec(b * s * hq * d, 5);
        let k = rand_vec(b * s * hkv * d, 6);
        let v = rand_vec(b * s * hkv * d, 7);
        let mut h = H::new();
        let (qi, ki, vi) = (h.t(&[b, s, hq, d], &q), h.t(&[b, s, hkv, d], &k), h.t(&[b, s, hkv, d], &v));
        let (start, none, drop, causal) = (h.int(0), h.none(), h.double(0.0), h.bool(true));
        let o = h.out(S::Float, 4);
        h.call(Op::LlamaCustomSdpa, &[qi, ki, vi, start, none, drop, causal, none, o]).expect("test");
        let scale = 1.0 / (d as f64).sqrt();
        let mut want = vec![0.0f64; q.len()];
        for i in 0..s {
            for hh in 0..hq {
                let kh = hh / (hq / hkv);
                let qr = &q[(i * hq + hh) * d..][..d];
                let sc: Vec<f64> = (0..=i)
                    .map(|j| {
                        qr.iter()
                            .zip(&k[(j * hkv + kh) * d..][..d])
                            .map(|(&x, &y)| f64::from(x) * f64::from(y))
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let mx = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = sc.iter().map(|x| (x - mx).exp()).sum();
                for dd in 0..d {
                    want[(i * hq + hh) * d + dd] =
                        (0..=i).map(|j| (sc[j] - mx).exp() / z * f64::from(v[(j * hkv + kh) * d + dd])).sum();
                }
            }
        }
        close(&h.f64s(o).1, &want, 1e-5);
        // The same through a kv cache of 5 positions, writing at start_pos 0.
        let cache = vec![0.0f32; b * 5 * hkv * d];
        let (kc, vc) = (h.t(&[b, 5, hkv, d], &cache), h.t(&[b, 5, hkv, d], &cache));
        let sl = h.int(s as i64);
        let o = h.out(S::Float, 4);
        h.call(Op::LlamaSdpaWithKvCache, &[qi, ki, vi, kc, vc, start, sl, none, drop, causal, none, o]).expect("test");
        close(&h.f64s(o).1, &want, 1e-5);
        close(&h.f64s(kc).1[..k.len()], &k.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(), 0.0);
    }
}
