//! Reductions: sum, mean, amax/amin, argmax/argmin, max/min (values and indices), any/all,
//! prod, var/std, cumsum and logsumexp.
//!
//! Floating-point results accumulate in f32 (f64 for f64 outputs), integer results in wrapping
//! i64, as ExecuTorch's portable kernels do (they accumulate in the output type, widening
//! half/bfloat16 to float).

use std::borrow::Cow;

use super::{arg, el, norm_dim};
use crate::env::Env;
use crate::error::{Result, RuntimeError};
use crate::registry::KernelRegistry;
use crate::tensor::{TensorMut, TensorRef};
use ferrite_kernels::reduce::{self as k, ReducePlan};
use ferrite_kernels::{Accumulator, DType, Element, Number};
use ferrite_op_support::Op;
use ferrite_program::ScalarType;

pub(super) fn register(r: &mut KernelRegistry) {
    reg!(r, Op::SumIntList, |e, a| {
        let dims = e.opt_int_list(arg(a, 1)?)?;
        sum_mean(e, arg(a, 0)?, dims, e.bool(arg(a, 2)?)?, arg(a, 4)?, false)
    });
    reg!(r, Op::Sum, |e, a| sum_mean(e, arg(a, 0)?, None, false, arg(a, 2)?, false));
    reg!(r, Op::Mean, |e, a| {
        let dims = e.opt_int_list(arg(a, 1)?)?;
        sum_mean(e, arg(a, 0)?, dims, e.bool(arg(a, 2)?)?, arg(a, 4)?, true)
    });
    reg!(r, Op::MeanDtype, |e, a| sum_mean(e, arg(a, 0)?, None, false, arg(a, 2)?, true));
    reg!(r, Op::Prod, |e, a| prod(e, arg(a, 0)?, None, false, arg(a, 2)?));
    reg!(r, Op::ProdInt, |e, a| {
        let dim = e.int(arg(a, 1)?)?;
        prod(e, arg(a, 0)?, Some(vec![dim]), e.bool(arg(a, 2)?)?, arg(a, 4)?)
    });
    reg!(r, Op::Amax, |e, a| {
        let dims = e.int_list(arg(a, 1)?)?;
        extreme(e, arg(a, 0)?, Some(dims), e.bool(arg(a, 2)?)?, arg(a, 3)?, true)
    });
    reg!(r, Op::Amin, |e, a| {
        let dims = e.int_list(arg(a, 1)?)?;
        extreme(e, arg(a, 0)?, Some(dims), e.bool(arg(a, 2)?)?, arg(a, 3)?, false)
    });
    reg!(r, Op::MaxUnary, |e, a| extreme_all(e, arg(a, 0)?, arg(a, 1)?, true));
    reg!(r, Op::MinUnary, |e, a| extreme_all(e, arg(a, 0)?, arg(a, 1)?, false));
    reg!(r, Op::Argmax, |e, a| {
        let dim = e.opt_int(arg(a, 1)?)?;
        arg_extreme(e, arg(a, 0)?, dim, e.bool(arg(a, 2)?)?, None, arg(a, 3)?, true)
    });
    reg!(r, Op::Argmin, |e, a| {
        let dim = e.opt_int(arg(a, 1)?)?;
        arg_extreme(e, arg(a, 0)?, dim, e.bool(arg(a, 2)?)?, None, arg(a, 3)?, false)
    });
    reg!(r, Op::MaxDimMax, |e, a| {
        let dim = e.int(arg(a, 1)?)?;
        arg_extreme(e, arg(a, 0)?, Some(dim), e.bool(arg(a, 2)?)?, Some(arg(a, 3)?), arg(a, 4)?, true)
    });
    reg!(r, Op::MinDimMin, |e, a| {
        let dim = e.int(arg(a, 1)?)?;
        arg_extreme(e, arg(a, 0)?, Some(dim), e.bool(arg(a, 2)?)?, Some(arg(a, 3)?), arg(a, 4)?, false)
    });
    reg!(r, Op::Any, |e, a| {
        let dim = e.int(arg(a, 1)?)?;
        any_all(e, arg(a, 0)?, Some(vec![dim]), e.bool(arg(a, 2)?)?, arg(a, 3)?, true)
    });
    reg!(r, Op::AnyDims, |e, a| {
        let dims = e.opt_int_list(arg(a, 1)?)?;
        any_all(e, arg(a, 0)?, dims, e.bool(arg(a, 2)?)?, arg(a, 3)?, true)
    });
    reg!(r, Op::AnyAll, |e, a| any_all(e, arg(a, 0)?, None, false, arg(a, 1)?, true));
    reg!(r, Op::All, |e, a| {
        let dim = e.int(arg(a, 1)?)?;
        any_all(e, arg(a, 0)?, Some(vec![dim]), e.bool(arg(a, 2)?)?, arg(a, 3)?, false)
    });
    reg!(r, Op::AllDims, |e, a| {
        let dims = e.opt_int_list(arg(a, 1)?)?;
        any_all(e, arg(a, 0)?, dims, e.bool(arg(a, 2)?)?, arg(a, 3)?, false)
    });
    reg!(r, Op::AllAll, |e, a| any_all(e, arg(a, 0)?, None, false, arg(a, 1)?, false));
    reg!(r, Op::VarCorrection, |e, a| var_correction(e, a, false));
    reg!(r, Op::StdCorrection, |e, a| var_correction(e, a, true));
    reg!(r, Op::Var, |e, a| var_unbiased(e, a, false));
    reg!(r, Op::Std, |e, a| var_unbiased(e, a, true));
    reg!(r, Op::VarMeanCorrection, var_mean_correction);
    reg!(r, Op::Cumsum, cumsum);
    reg!(r, Op::Logsumexp, logsumexp);
}

/// Which dimensions a reduction covers: `None` or an empty list means all of them.
fn reduce_mask(sizes: &[usize], dims: Option<&[i64]>) -> Result<Vec<bool>> {
    let rank = sizes.len();
    match dims {
        None | Some([]) => Ok(vec![true; rank]),
        Some(dims) => {
            let mut mask = vec![false; rank];
            for &d in dims {
                let d = norm_dim(d, rank)?;
                if rank == 0 {
                    continue;
                }
                if std::mem::replace(&mut mask[d], true) {
                    return Err(RuntimeError::Invalid(format!("dimension {d} appears more than once in {dims:?}")));
                }
            }
            Ok(mask)
        }
    }
}

/// Output sizes of a reduction.
fn reduced_sizes(sizes: &[usize], mask: &[bool], keepdim: bool) -> Vec<usize> {
    sizes
        .iter()
        .zip(mask)
        .filter_map(|(&s, &m)| {
            if !m {
                Some(s)
            } else if keepdim {
                Some(1)
            } else {
                None
            }
        })
        .collect()
}

/// Plans a reduction and resizes `outs` to its output shape.
fn plan(env: &mut Env<'_>, input: usize, dims: Option<&[i64]>, keepdim: bool, outs: &[usize]) -> Result<ReducePlan> {
    let sizes = env.sizes(input)?.to_vec();
    let mask = reduce_mask(&sizes, dims)?;
    let out_sizes = reduced_sizes(&sizes, &mask, keepdim);
    for &o in outs {
        env.resize(o, &out_sizes)?;
    }
    Ok(ReducePlan::new(&sizes, &mask)?)
}

/// Folds `input` into `out` with `op` (starting at `init`) in the accumulator type `A`, then
/// divides each result by `divisor` (a mean) when given and stores it in the output's dtype.
/// The input is read as `A` first (borrowed when it already is): one fold per output type.
fn fold_acc<A: Accumulator>(
    plan: &ReducePlan,
    input: &TensorRef<'_>,
    out: &mut TensorMut<'_>,
    init: A,
    op: impl Fn(A, A) -> A + Sync + Copy,
    divisor: Option<A>,
) -> Result<()> {
    let finish = move |a: A| match divisor {
        Some(n) => div(a, n),
        None => a,
    };
    let conv: Cow<'_, [A]> = if crate::tensor::viewable_as::<A>(input.dtype) && input.dtype != ScalarType::Bool {
        Cow::Borrowed(input.typed::<A>()?)
    } else {
        Cow::Owned(
            ferrite_kernels::dispatch!(all el(input.dtype)?, T => input.typed::<T>()?.iter().map(|&v| A::from_elem(v)).collect(), else other => return Err(super::unsupported(other))),
        )
    };
    // Folded into `A`s, then written as the output's type: one fold per accumulator, not per
    // (accumulator, output type) pair (outputs are small beside the input).
    let mut acc = vec![init; plan.out_numel()];
    plan.fold(&conv, &mut acc, init, |a, v, _| op(a, v), finish)?;
    if out.dtype == ScalarType::Bool {
        for (o, v) in out.typed::<u8>()?.iter_mut().zip(acc) {
            *o = u8::from(v.to_elem::<f64>() != 0.0);
        }
        return Ok(());
    }
    ferrite_kernels::dispatch!(all el(out.dtype)?, R => {
        for (o, v) in out.typed::<R>()?.iter_mut().zip(acc) {
            *o = v.to_elem::<R>();
        }
    }, else other => return Err(super::unsupported(other)));
    Ok(())
}

fn check_dtype_arg(env: &Env<'_>, out: usize, float_only: bool) -> Result<ScalarType> {
    let od = env.dtype(out)?;
    if float_only && !od.is_float() {
        return Err(RuntimeError::Invalid(format!("the output must be floating point, got {od}")));
    }
    Ok(od)
}

fn sum_mean(
    env: &mut Env<'_>,
    input: usize,
    dims: Option<Vec<i64>>,
    keepdim: bool,
    out: usize,
    mean: bool,
) -> Result<()> {
    let od = check_dtype_arg(env, out, mean)?;
    let plan = plan(env, input, dims.as_deref(), keepdim, &[out])?;
    let count = plan.count();
    env.run(&[input], &[out], |ins, outs| {
        ferrite_kernels::dispatch!(accumulator el(od).unwrap_or(DType::I64), A => {
            let divisor = mean.then(|| A::from_elem(count as f32));
            fold_acc::<A>(&plan, &ins[0], &mut outs[0], A::ZERO, Number::add, divisor)
        })
    })
}

/// Division in the accumulator type (only reached for floating-point accumulators).
fn div<A: Accumulator>(a: A, b: A) -> A {
    A::from_elem(a.to_elem::<f64>() / b.to_elem::<f64>())
}

fn prod(env: &mut Env<'_>, input: usize, dims: Option<Vec<i64>>, keepdim: bool, out: usize) -> Result<()> {
    let od = env.dtype(out)?;
    let plan = plan(env, input, dims.as_deref(), keepdim, &[out])?;
    env.run(
        &[input],
        &[out],
        |ins, outs| ferrite_kernels::dispatch!(accumulator el(od).unwrap_or(DType::I64), A => fold_acc::<A>(&plan, &ins[0], &mut outs[0], A::ONE, Number::mul, None)),
    )
}

fn empty_reduction(what: &str, plan: &ReducePlan) -> Result<()> {
    if plan.count() == 0 && plan.out_numel() > 0 {
        return Err(RuntimeError::Invalid(format!("{what}: cannot reduce over an empty dimension")));
    }
    Ok(())
}

fn extreme(
    env: &mut Env<'_>,
    input: usize,
    dims: Option<Vec<i64>>,
    keepdim: bool,
    out: usize,
    max: bool,
) -> Result<()> {
    same_dtype(env, input, out)?;
    let plan = plan(env, input, dims.as_deref(), keepdim, &[out])?;
    empty_reduction(if max { "amax" } else { "amin" }, &plan)?;
    env.run(&[input], &[out], |ins, outs| {
        ferrite_kernels::dispatch!(all el(ins[0].dtype)?, T => {
            let step = if max { k::max_step::<T> } else { k::min_step::<T> };
            plan.fold(ins[0].typed::<T>()?, outs[0].typed::<T>()?, None, |a, v, _| step(a, v), |a| a.unwrap_or_default())?;
        }, else other => return Err(super::unsupported(other)));
        Ok(())
    })
}

/// `max.unary_out` / `min.unary_out`: the extreme of every element (±inf, or the type's bound,
/// for an empty input, as ExecuTorch does).
fn extreme_all(env: &mut Env<'_>, input: usize, out: usize, max: bool) -> Result<()> {
    env.resize(out, &[])?;
    env.run(&[input], &[out], |ins, outs| {
        let vals = ins[0].to_f64_vec()?;
        let mut acc = if max { f64::NEG_INFINITY } else { f64::INFINITY };
        for v in vals {
            if v.is_nan() {
                acc = v;
                break;
            }
            if (max && v > acc) || (!max && v < acc) {
                acc = v;
            }
        }
        let od = outs[0].dtype;
        ferrite_kernels::dispatch!(all el(od)?, R => {
            let o = outs[0].typed::<R>()?;
            // An empty input gives the type's lower (upper) bound; `as` saturates integers.
            let v = if acc.is_infinite() && !od.is_float() { R::from_f64(if max { f64::MIN } else { f64::MAX }) } else { R::from_f64(acc) };
            if let Some(slot) = o.first_mut() {
                *slot = v;
            }
        }, else other => return Err(super::unsupported(other)));
        Ok(())
    })
}

fn same_dtype(env: &Env<'_>, a: usize, b: usize) -> Result<()> {
    let (da, db) = (env.dtype(a)?, env.dtype(b)?);
    if da != db {
        return Err(RuntimeError::Invalid(format!("input is {da} but the output is {db}")));
    }
    Ok(())
}

/// argmax/argmin (`values` = None) and max.dim/min.dim (values and indices).
fn arg_extreme(
    env: &mut Env<'_>,
    input: usize,
    dim: Option<i64>,
    keepdim: bool,
    values: Option<usize>,
    indices: usize,
    max: bool,
) -> Result<()> {
    if env.dtype(indices)? != ScalarType::Long {
        return Err(RuntimeError::Invalid(format!("indices must be Long, got {}", env.dtype(indices)?)));
    }
    let sizes = env.sizes(input)?.to_vec();
    let (plan, out_sizes) = match dim {
        Some(d) => {
            let mask = reduce_mask(&sizes, Some(&[d]))?;
            (ReducePlan::new(&sizes, &mask)?, reduced_sizes(&sizes, &mask, keepdim))
        }
        None => {
            // Over the flattened input; keepdim keeps every dim as 1.
            let n = crate::tensor::numel(&sizes)?;
            let out_sizes = if keepdim { vec![1; sizes.len()] } else { vec![] };
            (ReducePlan::new(&[n], &[true])?, out_sizes)
        }
    };
    empty_reduction(if max { "argmax" } else { "argmin" }, &plan)?;
    env.resize(indices, &out_sizes)?;
    let mut outs = vec![indices];
    if let Some(v) = values {
        same_dtype(env, input, v)?;
        env.resize(v, &out_sizes)?;
        outs.insert(0, v);
    }
    env.run(&[input], &outs, |ins, outs| {
        ferrite_kernels::dispatch!(all el(ins[0].dtype)?, T => {
            let step = if max { k::argmax_step::<T> } else { k::argmin_step::<T> };
            let x = ins[0].typed::<T>()?;
            let mut pairs = vec![(T::default(), 0usize); plan.out_numel()];
            plan.fold(x, &mut pairs, None, step, |a| a.unwrap_or_default())?;
            let (vals, idx) = match outs {
                [v, i] => (Some(v), i),
                [i] => (None, i),
                _ => return Err(RuntimeError::Invalid("arg reduction: wrong number of outputs".into())),
            };
            for (o, p) in idx.typed::<i64>()?.iter_mut().zip(&pairs) {
                *o = p.1 as i64;
            }
            if let Some(v) = vals {
                for (o, p) in v.typed::<T>()?.iter_mut().zip(&pairs) {
                    *o = p.0;
                }
            }
        }, else other => return Err(super::unsupported(other)));
        Ok(())
    })
}

fn any_all(
    env: &mut Env<'_>,
    input: usize,
    dims: Option<Vec<i64>>,
    keepdim: bool,
    out: usize,
    any: bool,
) -> Result<()> {
    let od = env.dtype(out)?;
    if !matches!(od, ScalarType::Bool | ScalarType::Byte) {
        return Err(RuntimeError::Invalid(format!("any/all: the output must be Bool or Byte, got {od}")));
    }
    let sizes = env.sizes(input)?.to_vec();
    // An explicit empty dim list reduces nothing (any.dims / all.dims).
    let mask = match dims.as_deref() {
        Some([]) => vec![false; sizes.len()],
        d => reduce_mask(&sizes, d)?,
    };
    env.resize(out, &reduced_sizes(&sizes, &mask, keepdim))?;
    let plan = ReducePlan::new(&sizes, &mask)?;
    env.run(&[input], &[out], |ins, outs| {
        let o = outs[0].typed::<u8>()?;
        ferrite_kernels::dispatch!(all el(ins[0].dtype)?, T => {
            let x = ins[0].typed::<T>()?;
            if any {
                plan.fold(x, o, false, |a, v, _| a || v != T::default(), u8::from)?;
            } else {
                plan.fold(x, o, true, |a, v, _| a && v != T::default(), u8::from)?;
            }
        }, else other => return Err(super::unsupported(other)));
        Ok(())
    })
}

#[allow(clippy::too_many_arguments)]
fn variance(
    env: &mut Env<'_>,
    input: usize,
    dims: Option<Vec<i64>>,
    correction: f64,
    keepdim: bool,
    out: usize,
    mean_out: Option<usize>,
    std: bool,
) -> Result<()> {
    let od = check_dtype_arg(env, out, true)?;
    let id = env.dtype(input)?;
    if !id.is_float() {
        return Err(RuntimeError::Invalid(format!("var/std: the input must be floating point, got {id}")));
    }
    let mut outs = vec![out];
    outs.extend(mean_out);
    let plan = plan(env, input, dims.as_deref(), keepdim, &outs)?;
    let count = plan.count();
    let denom = count as f64 - correction;
    env.run(&[input], &outs, |ins, outs| {
        ferrite_kernels::dispatch!(accumulator el(od).unwrap_or(DType::I64), A => {
            let x: Vec<A> = ferrite_kernels::dispatch!(float el(ins[0].dtype)?, T => ins[0].typed::<T>()?.iter().map(|&v| A::from_elem(v)).collect(), else other => return Err(super::float_only(other)));
            let n = A::from_elem(count as f64);
            let mut means = vec![A::ZERO; plan.out_numel()];
            plan.fold(&x, &mut means, A::ZERO, |a, v, _| a.add(v), |a| div(a, n))?;
            // Second pass: squared deviations from each output's mean.
            let mut dev = vec![A::ZERO; plan.out_numel()];
            plan.fold_with(
                &x,
                &mut dev,
                |o| (means.get(o).copied().unwrap_or(A::ZERO), A::ZERO),
                |(m, s), v, _| {
                    let d = sub(v, m);
                    (m, s.add(d.mul(d)))
                },
                |(_, s)| s,
            )?;
            let (first, rest) = outs.split_first_mut().ok_or_else(|| RuntimeError::Invalid("var: no output".into()))?;
            ferrite_kernels::dispatch!(float el(od)?, R => {
                for (o, &s) in first.typed::<R>()?.iter_mut().zip(&dev) {
                    let v = if count == 0 || denom <= 0.0 { f64::NAN } else { s.to_elem::<f64>() / denom };
                    *o = R::from_f64(if std { v.sqrt() } else { v });
                }
                if let Some(m) = rest.first_mut() {
                    for (o, &v) in m.typed::<R>()?.iter_mut().zip(&means) {
                        *o = v.to_elem::<R>();
                    }
                }
            }, else other => return Err(super::float_only(other)));
            Ok(())
        })
    })
}

/// Subtraction in the accumulator type (floating-point accumulators only).
fn sub<A: Accumulator>(a: A, b: A) -> A {
    a.add(A::from_elem(-b.to_elem::<f64>()))
}

fn var_correction(env: &mut Env<'_>, a: &[usize], std: bool) -> Result<()> {
    let dims = env.opt_int_list(arg(a, 1)?)?;
    let correction = env.opt_scalar(arg(a, 2)?)?.map_or(1.0, |s| s.to_f64());
    variance(env, arg(a, 0)?, dims, correction, env.bool(arg(a, 3)?)?, arg(a, 4)?, None, std)
}

fn var_unbiased(env: &mut Env<'_>, a: &[usize], std: bool) -> Result<()> {
    let dims = env.opt_int_list(arg(a, 1)?)?;
    let correction = if env.bool(arg(a, 2)?)? { 1.0 } else { 0.0 };
    variance(env, arg(a, 0)?, dims, correction, env.bool(arg(a, 3)?)?, arg(a, 4)?, None, std)
}

fn var_mean_correction(env: &mut Env<'_>, a: &[usize]) -> Result<()> {
    let dims = env.opt_int_list(arg(a, 1)?)?;
    let correction = env.opt_scalar(arg(a, 2)?)?.map_or(1.0, |s| s.to_f64());
    variance(env, arg(a, 0)?, dims, correction, env.bool(arg(a, 3)?)?, arg(a, 4)?, Some(arg(a, 5)?), false)
}

fn cumsum(env: &mut Env<'_>, a: &[usize]) -> Result<()> {
    let (input, out) = (arg(a, 0)?, arg(a, 3)?);
    let sizes = env.sizes(input)?.to_vec();
    let d = norm_dim(env.int(arg(a, 1)?)?, sizes.len())?;
    let (outer, n, inner) = if sizes.is_empty() {
        (1, 1, 1)
    } else {
        (sizes[..d].iter().product(), sizes[d], sizes[d + 1..].iter().product())
    };
    env.resize(out, &sizes)?;
    let od = el(env.dtype(out)?)?;
    env.run(&[input], &[out], |ins, outs| {
        // The input in the accumulator type first (as the kernel would convert each element):
        // one conversion per input type and one kernel per output type, not one per pair.
        ferrite_kernels::dispatch!(accumulator od, A => {
            let x: Vec<A> = ferrite_kernels::dispatch!(all el(ins[0].dtype)?, T => {
                ins[0].typed::<T>()?.iter().map(|&v| A::from_elem(v)).collect()
            }, else other => return Err(super::unsupported(other)));
            ferrite_kernels::dispatch!(all od, R => {
                k::cumsum::<A, A, R>(&x, outs[0].typed::<R>()?, outer, n, inner)?;
            }, else other => return Err(super::unsupported(other)));
        });
        Ok(())
    })
}

fn logsumexp(env: &mut Env<'_>, a: &[usize]) -> Result<()> {
    let (input, out) = (arg(a, 0)?, arg(a, 3)?);
    let dims = env.int_list(arg(a, 1)?)?;
    let keepdim = env.bool(arg(a, 2)?)?;
    let od = check_dtype_arg(env, out, true)?;
    let plan = plan(env, input, Some(&dims), keepdim, &[out])?;
    env.run(&[input], &[out], |ins, outs| {
        let x: Vec<f64> = ins[0].to_f64_vec()?;
        let mut maxes = vec![0.0f64; plan.out_numel()];
        plan.fold(&x, &mut maxes, None, |a, v, _| k::max_step(a, v), |m| m.unwrap_or(f64::NEG_INFINITY))?;
        let mut res = vec![0.0f64; plan.out_numel()];
        plan.fold_with(
            &x,
            &mut res,
            |o| (maxes.get(o).copied().unwrap_or(0.0), 0.0f64),
            |(m, s), v, _| (m, if m.is_infinite() { s } else { s + (v - m).exp() }),
            |(m, s)| if m.is_infinite() || m.is_nan() { m } else { m + s.ln() },
        )?;
        ferrite_kernels::dispatch!(float el(od)?, R => {
            for (o, &v) in outs[0].typed::<R>()?.iter_mut().zip(&res) {
                *o = R::from_f64(v);
            }
        }, else other => return Err(super::float_only(other)));
        Ok(())
    })
}

#[cfg(test)]
mod tests;
