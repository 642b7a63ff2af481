//! Normalisation: softmax and log-softmax, layer norm and group norm.

use super::{arg, el, norm_dim};
use crate::env::Env;
use crate::error::{Result, RuntimeError};
use crate::registry::KernelRegistry;
use crate::tensor::{TensorMut, TensorRef};
use ferrite_kernels::norm as k;
use ferrite_kernels::Element;
use ferrite_op_support::Op;
use ferrite_program::ScalarType;

pub(super) fn register(r: &mut KernelRegistry) {
    reg!(r, Op::Softmax, |e, a| softmax(e, arg(a, 0)?, arg(a, 1)?, arg(a, 3)?, false));
    reg!(r, Op::LogSoftmax, |e, a| softmax(e, arg(a, 0)?, arg(a, 1)?, arg(a, 3)?, true));
    reg!(r, Op::SoftmaxInt, |e, a| softmax(e, arg(a, 0)?, arg(a, 1)?, arg(a, 3)?, false));
    reg!(r, Op::LogSoftmaxInt, |e, a| softmax(e, arg(a, 0)?, arg(a, 1)?, arg(a, 3)?, true));
    reg!(r, Op::NativeLayerNorm, layer_norm);
    reg!(r, Op::NativeGroupNorm, group_norm);
}

/// `(outer, n, inner)` around dimension `d` of `sizes` (a 0-d tensor is one element).
fn split_at_dim(sizes: &[usize], d: usize) -> (usize, usize, usize) {
    if sizes.is_empty() {
        return (1, 1, 1);
    }
    (sizes[..d].iter().product(), sizes[d], sizes[d + 1..].iter().product())
}

fn softmax(env: &mut Env<'_>, input: usize, dim: usize, out: usize, log: bool) -> Result<()> {
    let sizes = env.sizes(input)?.to_vec();
    let d = norm_dim(env.int(dim)?, sizes.len())?;
    let (outer, n, inner) = split_at_dim(&sizes, d);
    let (id, od) = (env.dtype(input)?, env.dtype(out)?);
    // The output dtype decides: equal to the input's, or Float for a Half input with
    // half_to_float (or softmax.int with a dtype).
    if id != od && !(id.is_float() && od.is_float()) {
        return Err(RuntimeError::Invalid(format!("softmax: input is {id} but the output is {od}")));
    }
    env.resize(out, &sizes)?;
    env.run(&[input], &[out], |ins, outs| {
        ferrite_kernels::dispatch!(float el(id)?, T => {
            let x = ins[0].typed::<T>()?;
            ferrite_kernels::dispatch!(float el(od)?, U => k::softmax::<T, U>(x, outs[0].typed::<U>()?, outer, n, inner, log)?, else other => return Err(super::float_only(other)));
        }, else other => return Err(super::float_only(other)));
        Ok(())
    })
}

/// Input indices of the optional tensors that are present, and their positions.
fn present(env: &Env<'_>, vals: &[usize]) -> Result<(Vec<usize>, Vec<Option<usize>>)> {
    let mut list = Vec::new();
    let mut pos = Vec::new();
    for &v in vals {
        if env.is_none(v)? {
            pos.push(None);
        } else {
            pos.push(Some(list.len() + 1));
            list.push(v);
        }
    }
    Ok((list, pos))
}

fn typed_opt<'a, T: Element>(ins: &[TensorRef<'a>], p: Option<usize>) -> Result<Option<&'a [T]>> {
    p.map(|i| ins.get(i).ok_or_else(|| RuntimeError::Invalid("missing input".into())).and_then(|t| t.typed::<T>()))
        .transpose()
}

fn three<'a, 'b>(
    outs: &'a mut [TensorMut<'b>],
) -> Result<(&'a mut TensorMut<'b>, &'a mut TensorMut<'b>, &'a mut TensorMut<'b>)> {
    match outs {
        [a, b, c] => Ok((a, b, c)),
        _ => Err(RuntimeError::Invalid("expected three outputs".into())),
    }
}

fn check_same(env: &Env<'_>, what: &str, v: usize, dtype: ScalarType) -> Result<()> {
    let d = env.dtype(v)?;
    if d != dtype {
        return Err(RuntimeError::Invalid(format!("{what} is {d}, expected {dtype}")));
    }
    Ok(())
}

fn layer_norm(env: &mut Env<'_>, a: &[usize]) -> Result<()> {
    let input = arg(a, 0)?;
    let shape = env.int_list(arg(a, 1)?)?;
    let (w, b) = (arg(a, 2)?, arg(a, 3)?);
    let eps = env.double(arg(a, 4)?)?;
    let (out, mean, rstd) = (arg(a, 5)?, arg(a, 6)?, arg(a, 7)?);
    let sizes = env.sizes(input)?.to_vec();
    let dtype = env.dtype(input)?;
    let k_dims = shape.len();
    if k_dims == 0 || k_dims > sizes.len() {
        return Err(RuntimeError::Invalid(format!(
            "layer_norm: normalized_shape {shape:?} does not fit input {sizes:?}"
        )));
    }
    let lead = sizes.len() - k_dims;
    if sizes[lead..].iter().zip(&shape).any(|(&s, &n)| s as i64 != n) {
        return Err(RuntimeError::Invalid(format!(
            "layer_norm: normalized_shape {shape:?} does not match input {sizes:?}"
        )));
    }
    let m: usize = sizes[..lead].iter().product();
    let n: usize = sizes[lead..].iter().product();
    let (opt, pos) = present(env, &[w, b])?;
    for &v in &opt {
        check_same(env, "layer_norm weight/bias", v, dtype)?;
        if crate::tensor::numel(env.sizes(v)?)? != n {
            return Err(RuntimeError::Invalid(format!(
                "layer_norm: weight/bias of shape {:?} for normalized_shape {shape:?}",
                env.sizes(v)?
            )));
        }
    }
    for o in [out, mean, rstd] {
        check_same(env, "layer_norm output", o, dtype)?;
    }
    let stat_sizes: Vec<usize> = sizes.iter().enumerate().map(|(i, &s)| if i < lead { s } else { 1 }).collect();
    env.resize(out, &sizes)?;
    env.resize(mean, &stat_sizes)?;
    env.resize(rstd, &stat_sizes)?;
    let mut inputs = vec![input];
    inputs.extend(&opt);
    env.run(&inputs, &[out, mean, rstd], |ins, outs| {
        let (o, mo, ro) = three(outs)?;
        ferrite_kernels::dispatch!(float el(dtype)?, T => {
            k::layer_norm::<T>(
                ins[0].typed::<T>()?,
                typed_opt::<T>(ins, pos[0])?,
                typed_opt::<T>(ins, pos[1])?,
                o.typed::<T>()?,
                mo.typed::<T>()?,
                ro.typed::<T>()?,
                m,
                n,
                eps,
            )?;
        }, else other => return Err(super::float_only(other)));
        Ok(())
    })
}

fn group_norm(env: &mut Env<'_>, a: &[usize]) -> Result<()> {
    let input = arg(a, 0)?;
    let (w, b) = (arg(a, 1)?, arg(a, 2)?);
    let to_usize =
        |v: i64, what: &str| usize::try_from(v).map_err(|_| RuntimeError::Invalid(format!("group_norm: {what} = {v}")));
    let n = to_usize(env.int(arg(a, 3)?)?, "N")?;
    let c = to_usize(env.int(arg(a, 4)?)?, "C")?;
    let hxw = to_usize(env.int(arg(a, 5)?)?, "HxW")?;
    let groups = to_usize(env.int(arg(a, 6)?)?, "group")?;
    let eps = env.double(arg(a, 7)?)?;
    let (out, mean, rstd) = (arg(a, 8)?, arg(a, 9)?, arg(a, 10)?);
    let sizes = env.sizes(input)?.to_vec();
    let dtype = env.dtype(input)?;
    if crate::tensor::numel(&sizes)? != n * c * hxw
        || sizes.first().is_some_and(|&s| s != n)
        || sizes.get(1).is_some_and(|&s| s != c)
    {
        return Err(RuntimeError::Invalid(format!("group_norm: input {sizes:?} is not N={n}, C={c}, HxW={hxw}")));
    }
    if groups == 0 || c % groups != 0 {
        return Err(RuntimeError::Invalid(format!("group_norm: {c} channels cannot be split into {groups} groups")));
    }
    let (opt, pos) = present(env, &[w, b])?;
    for &v in &opt {
        check_same(env, "group_norm weight/bias", v, dtype)?;
    }
    for o in [out, mean, rstd] {
        check_same(env, "group_norm output", o, dtype)?;
    }
    env.resize(out, &sizes)?;
    env.resize(mean, &[n, groups])?;
    env.resize(rstd, &[n, groups])?;
    let mut inputs = vec![input];
    inputs.extend(&opt);
    env.run(&inputs, &[out, mean, rstd], |ins, outs| {
        let (o, mo, ro) = three(outs)?;
        ferrite_kernels::dispatch!(float el(dtype)?, T => {
            k::group_norm::<T>(
                ins[0].typed::<T>()?,
                typed_opt::<T>(ins, pos[0])?,
                typed_opt::<T>(ins, pos[1])?,
                o.typed::<T>()?,
                mo.typed::<T>()?,
                ro.typed::<T>()?,
                (n, c, hxw, groups),
                eps,
            )?;
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

    fn softmax_ref(x: &[f64], outer: usize, n: usize, inner: usize, log: bool) -> Vec<f64> {
        let mut y = vec![0.0; x.len()];
        for o in 0..outer {
            for i in 0..inner {
                let at = |j: usize| (o * n + j) * inner + i;
                let m = (0..n).map(|j| x[at(j)]).fold(f64::NEG_INFINITY, f64::max);
                let s: f64 = (0..n).map(|j| (x[at(j)] - m).exp()).sum();
                for j in 0..n {
                    y[at(j)] = if log { x[at(j)] - m - s.ln() } else { (x[at(j)] - m).exp() / s };
                }
            }
        }
        y
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn softmax_matches_reference(sizes in prop::collection::vec(0usize..5, 1..4), d in 0usize..3, neg in any::<bool>(), log in any::<bool>(), seed in 0u64..500) {
            let d = d % sizes.len();
            let n: usize = sizes.iter().product();
            let x = rand_vec(n, seed);
            let mut h = H::new();
            let xi = h.t(&sizes, &x);
            let dim = h.int(if neg { d as i64 - sizes.len() as i64 } else { d as i64 });
            let f = h.bool(false);
            let o = h.out(S::Float, sizes.len());
            h.call(if log { Op::LogSoftmax } else { Op::Softmax }, &[xi, dim, f, o]).expect("test");
            let xd: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            let want = softmax_ref(&xd, sizes[..d].iter().product(), sizes[d], sizes[d + 1..].iter().product(), log);
            close(&h.f64s(o).1, &want, 1e-5);
        }

        #[test]
        fn layer_norm_matches_reference(lead in prop::collection::vec(0usize..4, 0..3), norm in prop::collection::vec(1usize..6, 1..3), affine in any::<bool>(), seed in 0u64..500) {
            let mut sizes = lead.clone();
            sizes.extend(&norm);
            let m: usize = lead.iter().product();
            let nn: usize = norm.iter().product();
            let x = rand_vec(m * nn, seed);
            let w = rand_vec(nn, seed + 1);
            let b = rand_vec(nn, seed + 2);
            let mut h = H::new();
            let xi = h.t(&sizes, &x);
            let shape = h.ints(&norm.iter().map(|&v| v as i64).collect::<Vec<_>>());
            let (wi, bi) = if affine { (h.t(&norm, &w), h.t(&norm, &b)) } else { (h.none(), h.none()) };
            let eps = h.double(1e-5);
            let (o, mo, ro) = (h.out(S::Float, sizes.len()), h.out(S::Float, sizes.len()), h.out(S::Float, sizes.len()));
            h.call(Op::NativeLayerNorm, &[xi, shape, wi, bi, eps, o, mo, ro]).expect("test");
            let mut want = Vec::new();
            let mut means = Vec::new();
            for r in x.chunks(nn) {
                let r: Vec<f64> = r.iter().map(|&v| f64::from(v)).collect();
                let mu = r.iter().sum::<f64>() / nn as f64;
                let var = r.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / nn as f64;
                let rs = 1.0 / (var + 1e-5).sqrt();
                for (j, v) in r.iter().enumerate() {
                    let t = (v - mu) * rs;
                    want.push(if affine { t * f64::from(w[j]) + f64::from(b[j]) } else { t });
                }
                means.push(mu);
            }
            close(&h.f64s(o).1, &want, 1e-4);
            let (ms, mv) = h.f64s(mo);
            prop_assert_eq!(ms, sizes.iter().enumerate().map(|(i, &s)| if i < lead.len() { s } else { 1 }).collect::<Vec<_>>());
            close(&mv, &means, 1e-5);
        }
    }

    #[test]
    fn group_norm_and_half_to_float() {
        let (n, c, hw, g) = (2usize, 4usize, 3usize, 2usize);
        let x = rand_vec(n * c * hw, 9);
        let w = rand_vec(c, 10);
        let mut h = H::new();
        let xi = h.t(&[n, c, hw], &x);
        let wi = h.t(&[c], &w);
        let bn = h.none();
        let (ni, ci, hi, gi) = (h.int(n as i64), h.int(c as i64), h.int(hw as i64), h.int(g as i64));
        let eps = h.double(1e-5);
        let (o, mo, ro) = (h.out(S::Float, 3), h.out(S::Float, 2), h.out(S::Float, 2));
        h.call(Op::NativeGroupNorm, &[xi, wi, bn, ni, ci, hi, gi, eps, o, mo, ro]).expect("test");
        let per = c / g * hw;
        let mut want = Vec::new();
        for (k, grp) in x.chunks(per).enumerate() {
            let r: Vec<f64> = grp.iter().map(|&v| f64::from(v)).collect();
            let mu = r.iter().sum::<f64>() / per as f64;
            let var = r.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / per as f64;
            for (j, v) in r.iter().enumerate() {
                let ch = (k % g) * (c / g) + j / hw;
                want.push((v - mu) / (var + 1e-5).sqrt() * f64::from(w[ch]));
            }
        }
        close(&h.f64s(o).1, &want, 1e-4);
        assert_eq!(h.get(mo).sizes(), &[n, g]);
        // Half input, Float output.
        let xs: Vec<half::f16> = [1.0f32, 2.0, 3.0].iter().map(|&v| half::f16::from_f32(v)).collect();
        let xi = h.t(&[3], &xs);
        let (d, t) = (h.int(0), h.bool(true));
        let o = h.out(S::Float, 1);
        h.call(Op::Softmax, &[xi, d, t, o]).expect("test");
        close(&h.f64s(o).1, &softmax_ref(&[1.0, 2.0, 3.0], 1, 3, 1, false), 1e-6);
    }
}
