//! Normalisation: softmax and log-softmax, layer norm and group norm.

use super::{arg, norm_dim};
use crate::env::Env;
use crate::error::{Result, RuntimeError};
use crate::kernels::norm as k;
use crate::registry::KernelRegistry;
use crate::tensor::{TensorMut, TensorRef};
use ferrite_program::ScalarType;

pub(super) fn register(r: &mut KernelRegistry) {
    r.register("aten::_softmax.out", |e, a| softmax(e, arg(a, 0)?, arg(a, 1)?, arg(a, 3)?, false));
    r.register("aten::_log_softmax.out", |e, a| softmax(e, arg(a, 0)?, arg(a, 1)?, arg(a, 3)?, true));
    r.register("aten::softmax.int_out", |e, a| softmax(e, arg(a, 0)?, arg(a, 1)?, arg(a, 3)?, false));
    r.register("aten::log_softmax.int_out", |e, a| softmax(e, arg(a, 0)?, arg(a, 1)?, arg(a, 3)?, true));
    r.register("aten::native_layer_norm.out", layer_norm);
    r.register("aten::native_group_norm.out", group_norm);
}

/// Calls `$body` with `$t` bound to a floating-point element type.
macro_rules! dispatch_fe {
    ($dtype:expr, $t:ident => $body:expr) => {{
        match $dtype {
            ScalarType::Float => {
                type $t = f32;
                $body
            }
            ScalarType::Double => {
                type $t = f64;
                $body
            }
            ScalarType::Half => {
                type $t = half::f16;
                $body
            }
            ScalarType::BFloat16 => {
                type $t = half::bf16;
                $body
            }
            other => return Err(RuntimeError::Unsupported(format!("{other} tensors in this operator (floating point only)"))),
        }
    }};
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
        dispatch_fe!(id, T => {
            let x = ins[0].typed::<T>()?;
            dispatch_fe!(od, U => k::softmax::<T, U>(x, outs[0].typed::<U>()?, outer, n, inner, log)?);
        });
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

fn typed_opt<'a, T: crate::tensor::Pod>(ins: &[TensorRef<'a>], p: Option<usize>) -> Result<Option<&'a [T]>> {
    p.map(|i| ins.get(i).ok_or_else(|| RuntimeError::Invalid("missing input".into())).and_then(|t| t.typed::<T>())).transpose()
}

fn three<'a, 'b>(outs: &'a mut [TensorMut<'b>]) -> Result<(&'a mut TensorMut<'b>, &'a mut TensorMut<'b>, &'a mut TensorMut<'b>)> {
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
        return Err(RuntimeError::Invalid(format!("layer_norm: normalized_shape {shape:?} does not fit input {sizes:?}")));
    }
    let lead = sizes.len() - k_dims;
    if sizes[lead..].iter().zip(&shape).any(|(&s, &n)| s as i64 != n) {
        return Err(RuntimeError::Invalid(format!("layer_norm: normalized_shape {shape:?} does not match input {sizes:?}")));
    }
    let m: usize = sizes[..lead].iter().product();
    let n: usize = sizes[lead..].iter().product();
    let (opt, pos) = present(env, &[w, b])?;
    for &v in &opt {
        check_same(env, "layer_norm weight/bias", v, dtype)?;
        if crate::tensor::numel(env.sizes(v)?)? != n {
            return Err(RuntimeError::Invalid(format!("layer_norm: weight/bias of shape {:?} for normalized_shape {shape:?}", env.sizes(v)?)));
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
        dispatch_fe!(dtype, T => {
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
        });
        Ok(())
    })
}

fn group_norm(env: &mut Env<'_>, a: &[usize]) -> Result<()> {
    let input = arg(a, 0)?;
    let (w, b) = (arg(a, 1)?, arg(a, 2)?);
    let to_usize = |v: i64, what: &str| usize::try_from(v).map_err(|_| RuntimeError::Invalid(format!("group_norm: {what} = {v}")));
    let n = to_usize(env.int(arg(a, 3)?)?, "N")?;
    let c = to_usize(env.int(arg(a, 4)?)?, "C")?;
    let hxw = to_usize(env.int(arg(a, 5)?)?, "HxW")?;
    let groups = to_usize(env.int(arg(a, 6)?)?, "group")?;
    let eps = env.double(arg(a, 7)?)?;
    let (out, mean, rstd) = (arg(a, 8)?, arg(a, 9)?, arg(a, 10)?);
    let sizes = env.sizes(input)?.to_vec();
    let dtype = env.dtype(input)?;
    if crate::tensor::numel(&sizes)? != n * c * hxw || sizes.first().is_some_and(|&s| s != n) || sizes.get(1).is_some_and(|&s| s != c) {
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
        dispatch_fe!(dtype, T => {
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
        });
        Ok(())
    })
}

