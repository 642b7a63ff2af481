//! Reductions: sum, mean, amax/amin, argmax/argmin, max/min (values and indices), any/all,
//! prod, var/std, cumsum and logsumexp.
//!
//! Floating-point results accumulate in f32 (f64 for f64 outputs), integer results in wrapping
//! i64, as ExecuTorch's portable kernels do (they accumulate in the output type, widening
//! half/bfloat16 to float).

use super::{arg, dispatch_all, dispatch_float, norm_dim};
use crate::env::Env;
use crate::error::{Result, RuntimeError};
use crate::registry::KernelRegistry;
use crate::tensor::{TensorMut, TensorRef};
use ferrite_kernels::reduce::{self as k, Acc, ReducePlan};
use ferrite_kernels::Element;
use ferrite_op_support::Op;
use ferrite_program::ScalarType;

pub(super) fn register(r: &mut KernelRegistry) {
    r.register(Op::SumIntList, |e, a| {
        let dims = e.opt_int_list(arg(a, 1)?)?;
        sum_mean(e, arg(a, 0)?, dims, e.bool(arg(a, 2)?)?, arg(a, 4)?, false)
    });
    r.register(Op::Sum, |e, a| sum_mean(e, arg(a, 0)?, None, false, arg(a, 2)?, false));
    r.register(Op::Mean, |e, a| {
        let dims = e.opt_int_list(arg(a, 1)?)?;
        sum_mean(e, arg(a, 0)?, dims, e.bool(arg(a, 2)?)?, arg(a, 4)?, true)
    });
    r.register(Op::MeanDtype, |e, a| sum_mean(e, arg(a, 0)?, None, false, arg(a, 2)?, true));
    r.register(Op::Prod, |e, a| prod(e, arg(a, 0)?, None, false, arg(a, 2)?));
    r.register(Op::ProdInt, |e, a| {
        let dim = e.int(arg(a, 1)?)?;
        prod(e, arg(a, 0)?, Some(vec![dim]), e.bool(arg(a, 2)?)?, arg(a, 4)?)
    });
    r.register(Op::Amax, |e, a| {
        let dims = e.int_list(arg(a, 1)?)?;
        extreme(e, arg(a, 0)?, Some(dims), e.bool(arg(a, 2)?)?, arg(a, 3)?, true)
    });
    r.register(Op::Amin, |e, a| {
        let dims = e.int_list(arg(a, 1)?)?;
        extreme(e, arg(a, 0)?, Some(dims), e.bool(arg(a, 2)?)?, arg(a, 3)?, false)
    });
    r.register(Op::MaxUnary, |e, a| extreme_all(e, arg(a, 0)?, arg(a, 1)?, true));
    r.register(Op::MinUnary, |e, a| extreme_all(e, arg(a, 0)?, arg(a, 1)?, false));
    r.register(Op::Argmax, |e, a| {
        let dim = e.opt_int(arg(a, 1)?)?;
        arg_extreme(e, arg(a, 0)?, dim, e.bool(arg(a, 2)?)?, None, arg(a, 3)?, true)
    });
    r.register(Op::Argmin, |e, a| {
        let dim = e.opt_int(arg(a, 1)?)?;
        arg_extreme(e, arg(a, 0)?, dim, e.bool(arg(a, 2)?)?, None, arg(a, 3)?, false)
    });
    r.register(Op::MaxDimMax, |e, a| {
        let dim = e.int(arg(a, 1)?)?;
        arg_extreme(e, arg(a, 0)?, Some(dim), e.bool(arg(a, 2)?)?, Some(arg(a, 3)?), arg(a, 4)?, true)
    });
    r.register(Op::MinDimMin, |e, a| {
        let dim = e.int(arg(a, 1)?)?;
        arg_extreme(e, arg(a, 0)?, Some(dim), e.bool(arg(a, 2)?)?, Some(arg(a, 3)?), arg(a, 4)?, false)
    });
    r.register(Op::Any, |e, a| {
        let dim = e.int(arg(a, 1)?)?;
        any_all(e, arg(a, 0)?, Some(vec![dim]), e.bool(arg(a, 2)?)?, arg(a, 3)?, true)
    });
    r.register(Op::AnyDims, |e, a| {
        let dims = e.opt_int_list(arg(a, 1)?)?;
        any_all(e, arg(a, 0)?, dims, e.bool(arg(a, 2)?)?, arg(a, 3)?, true)
    });
    r.register(Op::AnyAll, |e, a| any_all(e, arg(a, 0)?, None, false, arg(a, 1)?, true));
    r.register(Op::All, |e, a| {
        let dim = e.int(arg(a, 1)?)?;
        any_all(e, arg(a, 0)?, Some(vec![dim]), e.bool(arg(a, 2)?)?, arg(a, 3)?, false)
    });
    r.register(Op::AllDims, |e, a| {
        let dims = e.opt_int_list(arg(a, 1)?)?;
        any_all(e, arg(a, 0)?, dims, e.bool(arg(a, 2)?)?, arg(a, 3)?, false)
    });
    r.register(Op::AllAll, |e, a| any_all(e, arg(a, 0)?, None, false, arg(a, 1)?, false));
    r.register(Op::VarCorrection, |e, a| var_correction(e, a, false));
    r.register(Op::StdCorrection, |e, a| var_correction(e, a, true));
    r.register(Op::Var, |e, a| var_unbiased(e, a, false));
    r.register(Op::Std, |e, a| var_unbiased(e, a, true));
    r.register(Op::VarMeanCorrection, var_mean_correction);
    r.register(Op::Cumsum, cumsum);
    r.register(Op::Logsumexp, logsumexp);
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

macro_rules! with_acc {
    ($dtype:expr, $a:ident => $body:expr) => {{
        match $dtype {
            ScalarType::Double => {
                type $a = f64;
                $body
            }
            ScalarType::Float | ScalarType::Half | ScalarType::BFloat16 => {
                type $a = f32;
                $body
            }
            _ => {
                type $a = i64;
                $body
            }
        }
    }};
}

/// Folds `input` into `out` with `op` (starting at `init`) in the accumulator type `A`, then
/// maps each result with `finish` and stores it in the output's dtype.
fn fold_acc<A: Acc>(
    plan: &ReducePlan,
    input: &TensorRef<'_>,
    out: &mut TensorMut<'_>,
    init: A,
    op: impl Fn(A, A) -> A + Sync + Copy,
    finish: impl Fn(A) -> A + Sync + Copy,
) -> Result<()> {
    if input.dtype == out.dtype && out.dtype != ScalarType::Bool {
        dispatch_all!(out.dtype, T => {
            plan.fold(input.typed::<T>()?, out.typed::<T>()?, init, |a, v, _| op(a, A::from_elem(v)), |a| finish(a).to_elem::<T>())?;
        });
        return Ok(());
    }
    let conv: Vec<A> = dispatch_all!(input.dtype, T => input.typed::<T>()?.iter().map(|&v| A::from_elem(v)).collect());
    if out.dtype == ScalarType::Bool {
        let mut tmp = vec![init; plan.out_numel()];
        plan.fold(&conv, &mut tmp, init, |a, v, _| op(a, v), finish)?;
        for (o, v) in out.typed::<u8>()?.iter_mut().zip(tmp) {
            *o = u8::from(v.to_elem::<f64>() != 0.0);
        }
        return Ok(());
    }
    dispatch_all!(out.dtype, R => {
        plan.fold(&conv, out.typed::<R>()?, init, |a, v, _| op(a, v), |a| finish(a).to_elem::<R>())?;
    });
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
        with_acc!(od, A => {
            if mean {
                let n = A::from_elem(count as f32);
                fold_acc::<A>(&plan, &ins[0], &mut outs[0], A::ZERO, A::add, move |a| div(a, n))
            } else {
                fold_acc::<A>(&plan, &ins[0], &mut outs[0], A::ZERO, A::add, |a| a)
            }
        })
    })
}

/// Division in the accumulator type (only reached for floating-point accumulators).
fn div<A: Acc>(a: A, b: A) -> A {
    A::from_elem(a.to_elem::<f64>() / b.to_elem::<f64>())
}

fn prod(env: &mut Env<'_>, input: usize, dims: Option<Vec<i64>>, keepdim: bool, out: usize) -> Result<()> {
    let od = env.dtype(out)?;
    let plan = plan(env, input, dims.as_deref(), keepdim, &[out])?;
    env.run(
        &[input],
        &[out],
        |ins, outs| with_acc!(od, A => fold_acc::<A>(&plan, &ins[0], &mut outs[0], A::ONE, A::mul, |a| a)),
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
        dispatch_all!(ins[0].dtype, T => {
            let step = if max { k::max_step::<T> } else { k::min_step::<T> };
            plan.fold(ins[0].typed::<T>()?, outs[0].typed::<T>()?, None, |a, v, _| step(a, v), |a| a.unwrap_or_default())?;
        });
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
        dispatch_all!(od, R => {
            let o = outs[0].typed::<R>()?;
            // An empty input gives the type's lower (upper) bound; `as` saturates integers.
            let v = if acc.is_infinite() && !od.is_float() { R::from_f64(if max { f64::MIN } else { f64::MAX }) } else { R::from_f64(acc) };
            if let Some(slot) = o.first_mut() {
                *slot = v;
            }
        });
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
        dispatch_all!(ins[0].dtype, T => {
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
        });
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
        dispatch_all!(ins[0].dtype, T => {
            let x = ins[0].typed::<T>()?;
            if any {
                plan.fold(x, o, false, |a, v, _| a || v != T::default(), u8::from)?;
            } else {
                plan.fold(x, o, true, |a, v, _| a && v != T::default(), u8::from)?;
            }
        });
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
        with_acc!(od, A => {
            let x: Vec<A> = dispatch_float!(ins[0].dtype, T => ins[0].typed::<T>()?.iter().map(|&v| A::from_elem(v)).collect());
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
            dispatch_float!(od, R => {
                for (o, &s) in first.typed::<R>()?.iter_mut().zip(&dev) {
                    let v = if count == 0 || denom <= 0.0 { f64::NAN } else { s.to_elem::<f64>() / denom };
                    *o = R::from_f64(if std { v.sqrt() } else { v });
                }
                if let Some(m) = rest.first_mut() {
                    for (o, &v) in m.typed::<R>()?.iter_mut().zip(&means) {
                        *o = v.to_elem::<R>();
                    }
                }
            });
            Ok(())
        })
    })
}

/// Subtraction in the accumulator type (floating-point accumulators only).
fn sub<A: Acc>(a: A, b: A) -> A {
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
    let od = env.dtype(out)?;
    env.run(&[input], &[out], |ins, outs| {
        dispatch_all!(ins[0].dtype, T => {
            let x = ins[0].typed::<T>()?;
            dispatch_all!(od, R => {
                with_acc!(od, A => k::cumsum::<T, A, R>(x, outs[0].typed::<R>()?, outer, n, inner)?);
            });
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
        dispatch_float!(od, R => {
            for (o, &v) in outs[0].typed::<R>()?.iter_mut().zip(&res) {
                *o = R::from_f64(v);
            }
        });
        Ok(())
    })
}

/// A tiny method environment for operator tests: values are created one by one, tensors own
/// their data, outputs are unbound-dynamic so the operator's resize decides their shape.
#[cfg(test)]
pub(crate) mod harness {
    use crate::env::{Env, RValue, Storage, TensorSlot};
    use crate::error::Result;
    use crate::registry::KernelRegistry;
    use crate::tensor::{AlignedBuf, Pod, TensorData};
    use ferrite_program::{Program, ScalarType, ShapeDynamism};
    use std::sync::OnceLock;

    fn program() -> &'static Program<'static> {
        static P: OnceLock<Program<'static>> = OnceLock::new();
        P.get_or_init(|| {
            Program::from_bytes(include_bytes!("../../../tests/fixtures/mlp/portable.pte")).expect("fixture program")
        })
    }

    fn registry() -> &'static KernelRegistry {
        static R: OnceLock<KernelRegistry> = OnceLock::new();
        R.get_or_init(crate::ops::portable_kernels)
    }

    /// Values of one test call.
    #[derive(Default)]
    pub(crate) struct H {
        values: Vec<RValue>,
        owned: Vec<AlignedBuf>,
    }

    impl H {
        pub fn new() -> Self {
            Self::default()
        }

        fn push(&mut self, v: RValue) -> usize {
            self.values.push(v);
            self.values.len() - 1
        }

        pub fn tensor_bytes(&mut self, dtype: ScalarType, sizes: &[usize], bytes: &[u8]) -> usize {
            self.owned.push(AlignedBuf::from_bytes(bytes));
            let index = self.owned.len() - 1;
            self.push(RValue::Tensor(TensorSlot {
                dtype,
                sizes: sizes.to_vec(),
                bound: sizes.to_vec(),
                dim_order: (0..sizes.len() as u8).collect(),
                dynamism: ShapeDynamism::DynamicUnbound,
                storage: Storage::Owned { index },
            }))
        }

        pub fn t<T: Pod>(&mut self, sizes: &[usize], data: &[T]) -> usize {
            assert_eq!(sizes.iter().product::<usize>(), data.len());
            self.tensor_bytes(T::DTYPE, sizes, bytemuck::cast_slice(data))
        }

        pub fn bools(&mut self, sizes: &[usize], data: &[bool]) -> usize {
            let b: Vec<u8> = data.iter().map(|&x| u8::from(x)).collect();
            self.tensor_bytes(ScalarType::Bool, sizes, &b)
        }

        /// An output tensor of `rank` dims (shape decided by the operator).
        pub fn out(&mut self, dtype: ScalarType, rank: usize) -> usize {
            self.push(RValue::Tensor(TensorSlot {
                dtype,
                sizes: vec![0; rank],
                bound: vec![0; rank],
                dim_order: (0..rank as u8).collect(),
                dynamism: ShapeDynamism::DynamicUnbound,
                storage: Storage::Empty,
            }))
        }

        pub fn int(&mut self, i: i64) -> usize {
            self.push(RValue::Int(i))
        }
        pub fn double(&mut self, d: f64) -> usize {
            self.push(RValue::Double(d))
        }
        pub fn bool(&mut self, b: bool) -> usize {
            self.push(RValue::Bool(b))
        }
        pub fn none(&mut self) -> usize {
            self.push(RValue::None)
        }
        pub fn ints(&mut self, l: &[i64]) -> usize {
            let ids: Vec<usize> = l.iter().map(|&i| self.int(i)).collect();
            self.push(RValue::IntList(ids))
        }
        pub fn opt_tensors(&mut self, l: &[Option<usize>]) -> usize {
            self.push(RValue::OptionalTensorList(l.to_vec()))
        }

        pub fn call(&mut self, op: ferrite_op_support::Op, args: &[usize]) -> Result<()> {
            let f = registry().get(op.name()).unwrap_or_else(|| panic!("{op} is not registered"));
            let mut env =
                Env::owned(&mut self.values, &mut self.owned, program(), false, ferrite_kernels::simd::Level::detect());
            f(&mut env, args)
        }

        pub fn get(&mut self, v: usize) -> TensorData {
            let env =
                Env::owned(&mut self.values, &mut self.owned, program(), false, ferrite_kernels::simd::Level::detect());
            let t = env.read(v).expect("readable tensor");
            TensorData::from_bytes(t.dtype, t.sizes.to_vec(), t.data).expect("tensor data")
        }

        pub fn f64s(&mut self, v: usize) -> (Vec<usize>, Vec<f64>) {
            let t = self.get(v);
            (t.sizes().to_vec(), t.to_f64_vec().expect("numeric"))
        }
    }

    /// Asserts two float vectors agree within `tol` (relative to magnitude), NaN matching NaN.
    pub fn close(got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len(), "lengths differ: {got:?} vs {want:?}");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= tol * w.abs().max(1.0);
            assert!(ok, "element {i}: got {g}, want {w}\n got {got:?}\nwant {want:?}");
        }
    }

    /// Deterministic pseudo-random values in [-2, 2).
    pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::harness::{close, rand_vec, H};
    use ferrite_op_support::Op;
    use ferrite_program::ScalarType as S;
    use proptest::prelude::*;

    /// Reference reduction: groups elements by their kept coordinates, folds in input order.
    fn reference(x: &[f64], sizes: &[usize], mask: &[bool], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
        let out_sizes: Vec<usize> = sizes.iter().zip(mask).map(|(&s, &m)| if m { 1 } else { s }).collect();
        let n_out: usize = out_sizes.iter().product();
        let strides = ferrite_kernels::contiguous_strides(&out_sizes);
        let mut groups = vec![Vec::new(); n_out];
        let mut idx = vec![0usize; sizes.len()];
        for &v in x {
            let o: usize = idx.iter().zip(mask).zip(&strides).map(|((&i, &m), &s)| if m { 0 } else { i * s }).sum();
            groups[o].push(v);
            for d in (0..sizes.len()).rev() {
                idx[d] += 1;
                if idx[d] < sizes[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        groups.iter().map(|g| f(g)).collect()
    }

    fn case() -> impl Strategy<Value = (Vec<usize>, Vec<bool>, bool, u64)> {
        prop::collection::vec((0usize..4, any::<bool>()), 0..4).prop_flat_map(|v| {
            let (s, m): (Vec<usize>, Vec<bool>) = v.into_iter().unzip();
            (Just(s), Just(m), any::<bool>(), 0u64..1000)
        })
    }

    fn dims_of(mask: &[bool], neg: bool) -> Vec<i64> {
        let r = mask.len() as i64;
        mask.iter().enumerate().filter(|(_, &m)| m).map(|(d, _)| if neg { d as i64 - r } else { d as i64 }).collect()
    }

    fn kept(sizes: &[usize], mask: &[bool], keepdim: bool) -> Vec<usize> {
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn sum_mean_amax_match_reference((sizes, mask, keepdim, seed) in case()) {
            let n: usize = sizes.iter().product();
            let x = rand_vec(n, seed);
            let xd: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            // An empty dim list means "all dims" for sum/mean.
            let eff: Vec<bool> = if mask.iter().any(|&m| m) { mask.clone() } else { vec![true; sizes.len()] };
            let dims = dims_of(&mask, seed % 2 == 0);
            for (op, f) in [(Op::SumIntList, 0), (Op::Mean, 1)] {
                let mut h = H::new();
                let xi = h.t(&sizes, &x);
                let (d, k, none) = (h.ints(&dims), h.bool(keepdim), h.none());
                let o = h.out(S::Float, kept(&sizes, &eff, keepdim).len());
                h.call(op, &[xi, d, k, none, o]).expect("test");
                let (os, got) = h.f64s(o);
                prop_assert_eq!(os, kept(&sizes, &eff, keepdim));
                let want = reference(&xd, &sizes, &eff, |g| {
                    let s: f64 = g.iter().sum();
                    if f == 0 { s } else { s / g.len() as f64 }
                });
                close(&got, &want, 1e-5);
            }
            // amax over the explicit dims; empty reductions are errors.
            let mut h = H::new();
            let xi = h.t(&sizes, &x);
            let (d, k) = (h.ints(&dims), h.bool(keepdim));
            let o = h.out(S::Float, kept(&sizes, &eff, keepdim).len());
            let count: usize = sizes.iter().zip(&eff).filter(|(_, &m)| m).map(|(&s, _)| s).product();
            let out_n: usize = sizes.iter().zip(&eff).filter(|(_, &m)| !m).map(|(&s, _)| s).product();
            let r = h.call(Op::Amax, &[xi, d, k, o]);
            if count == 0 && out_n > 0 {
                prop_assert!(r.is_err());
            } else {
                r.expect("test");
                let want = reference(&xd, &sizes, &eff, |g| g.iter().cloned().fold(f64::NEG_INFINITY, f64::max));
                close(&h.f64s(o).1, &want, 0.0);
            }
        }
    }

    #[test]
    fn sum_dtypes_and_keepdim() {
        let mut h = H::new();
        let x = h.t(&[2, 3], &[1i32, 2, 3, 4, 5, 6]);
        let (d, k, none) = (h.ints(&[-1]), h.bool(true), h.none());
        let o = h.out(S::Long, 2);
        h.call(Op::SumIntList, &[x, d, k, none, o]).expect("test");
        assert_eq!(h.get(o).as_slice::<i64>().expect("test"), &[6, 15]);
        assert_eq!(h.get(o).sizes(), &[2, 1]);
        // Half input summed into a Float output.
        let xs: Vec<half::f16> = [0.5f32, 1.5, 2.0, 4.0].iter().map(|&v| half::f16::from_f32(v)).collect();
        let x = h.t(&[4], &xs);
        let (n, k) = (h.none(), h.bool(false));
        let o = h.out(S::Float, 0);
        h.call(Op::SumIntList, &[x, n, k, n, o]).expect("test");
        assert_eq!(h.get(o).as_slice::<f32>().expect("test"), &[8.0]);
        // Bool sum into Long.
        let x = h.bools(&[3], &[true, false, true]);
        let o = h.out(S::Long, 0);
        h.call(Op::SumIntList, &[x, n, k, n, o]).expect("test");
        assert_eq!(h.get(o).as_slice::<i64>().expect("test"), &[2]);
        // Sum of an empty tensor is 0; mean of one is NaN.
        let x = h.t::<f32>(&[0, 2], &[]);
        let d = h.ints(&[0]);
        let o = h.out(S::Float, 1);
        h.call(Op::SumIntList, &[x, d, k, n, o]).expect("test");
        assert_eq!(h.get(o).as_slice::<f32>().expect("test"), &[0.0, 0.0]);
        let o = h.out(S::Float, 1);
        h.call(Op::Mean, &[x, d, k, n, o]).expect("test");
        assert!(h.get(o).as_slice::<f32>().expect("test").iter().all(|v| v.is_nan()));
    }

    #[test]
    fn arg_reductions_and_max_dim() {
        let mut h = H::new();
        let x = h.t(&[2, 3], &[1.0f32, 5.0, 5.0, -1.0, -3.0, -3.0]);
        let (d, k, nd) = (h.int(1), h.bool(false), h.none());
        let o = h.out(S::Long, 1);
        h.call(Op::Argmax, &[x, d, k, o]).expect("test");
        assert_eq!(h.get(o).as_slice::<i64>().expect("test"), &[1, 0]);
        let o = h.out(S::Long, 1);
        h.call(Op::Argmin, &[x, d, k, o]).expect("test");
        assert_eq!(h.get(o).as_slice::<i64>().expect("test"), &[0, 1]);
        let o = h.out(S::Long, 0);
        h.call(Op::Argmin, &[x, nd, k, o]).expect("test");
        assert_eq!(h.get(o).as_slice::<i64>().expect("test"), &[4]);
        let kd = h.bool(true);
        let (v, i) = (h.out(S::Float, 2), h.out(S::Long, 2));
        let d0 = h.int(-2);
        h.call(Op::MaxDimMax, &[x, d0, kd, v, i]).expect("test");
        assert_eq!(h.get(v).as_slice::<f32>().expect("test"), &[1.0, 5.0, 5.0]);
        assert_eq!(h.get(i).as_slice::<i64>().expect("test"), &[0, 0, 0]);
        assert_eq!(h.get(v).sizes(), &[1, 3]);
        let (v, i) = (h.out(S::Float, 1), h.out(S::Long, 1));
        h.call(Op::MinDimMin, &[x, d, k, v, i]).expect("test");
        assert_eq!(h.get(v).as_slice::<f32>().expect("test"), &[1.0, -3.0]);
        assert_eq!(h.get(i).as_slice::<i64>().expect("test"), &[0, 1]);
        let o = h.out(S::Float, 0);
        h.call(Op::MaxUnary, &[x, o]).expect("test");
        assert_eq!(h.get(o).as_slice::<f32>().expect("test"), &[5.0]);
        // Empty dimension: error.
        let e = h.t::<f32>(&[2, 0], &[]);
        let o = h.out(S::Long, 1);
        assert!(h.call(Op::Argmax, &[e, d, k, o]).is_err());
    }

    #[test]
    fn any_all_prod_cumsum() {
        let mut h = H::new();
        let x = h.t(&[2, 2], &[0.0f32, 0.0, 0.0, 2.0]);
        let (d, k) = (h.int(1), h.bool(false));
        let o = h.out(S::Bool, 1);
        h.call(Op::Any, &[x, d, k, o]).expect("test");
        assert_eq!(h.get(o).bytes(), &[0, 1]);
        let o = h.out(S::Bool, 0);
        h.call(Op::AnyAll, &[x, o]).expect("test");
        assert_eq!(h.get(o).bytes(), &[1]);
        let o = h.out(S::Bool, 0);
        h.call(Op::AllAll, &[x, o]).expect("test");
        assert_eq!(h.get(o).bytes(), &[0]);
        // any.dims with an empty list reduces nothing.
        let (e, n) = (h.ints(&[]), h.none());
        let o = h.out(S::Bool, 2);
        h.call(Op::AnyDims, &[x, e, k, o]).expect("test");
        assert_eq!(h.get(o).bytes(), &[0, 0, 0, 1]);
        let o = h.out(S::Bool, 0);
        h.call(Op::AnyDims, &[x, n, k, o]).expect("test");
        assert_eq!(h.get(o).bytes(), &[1]);
        let y = h.t(&[2, 3], &[1i64, 2, 3, 4, 5, 6]);
        let o = h.out(S::Long, 1);
        h.call(Op::ProdInt, &[y, d, k, n, o]).expect("test");
        assert_eq!(h.get(o).as_slice::<i64>().expect("test"), &[6, 120]);
        let o = h.out(S::Long, 0);
        h.call(Op::Prod, &[y, n, o]).expect("test");
        assert_eq!(h.get(o).as_slice::<i64>().expect("test"), &[720]);
        let d0 = h.int(0);
        let o = h.out(S::Float, 2);
        h.call(Op::Cumsum, &[y, d0, n, o]).expect("test");
        assert_eq!(h.get(o).as_slice::<f32>().expect("test"), &[1.0, 2.0, 3.0, 5.0, 7.0, 9.0]);
    }

    #[test]
    fn var_std_logsumexp() {
        let mut h = H::new();
        let vals = rand_vec(12, 3);
        let x = h.t(&[3, 4], &vals);
        let (d, k, n) = (h.ints(&[1]), h.bool(false), h.none());
        let o = h.out(S::Float, 1);
        h.call(Op::VarCorrection, &[x, d, n, k, o]).expect("test");
        let rows: Vec<Vec<f64>> = vals.chunks(4).map(|r| r.iter().map(|&v| f64::from(v)).collect()).collect();
        let var = |r: &Vec<f64>, c: f64| {
            let m = r.iter().sum::<f64>() / r.len() as f64;
            r.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (r.len() as f64 - c)
        };
        close(&h.f64s(o).1, &rows.iter().map(|r| var(r, 1.0)).collect::<Vec<_>>(), 1e-5);
        let unb = h.bool(false);
        let o = h.out(S::Float, 1);
        h.call(Op::Std, &[x, d, unb, k, o]).expect("test");
        close(&h.f64s(o).1, &rows.iter().map(|r| var(r, 0.0).sqrt()).collect::<Vec<_>>(), 1e-5);
        let o = h.out(S::Float, 1);
        h.call(Op::Logsumexp, &[x, d, k, o]).expect("test");
        close(
            &h.f64s(o).1,
            &rows.iter().map(|r| r.iter().map(|v| v.exp()).sum::<f64>().ln()).collect::<Vec<_>>(),
            1e-5,
        );
        let (o1, o2) = (h.out(S::Float, 1), h.out(S::Float, 1));
        h.call(Op::VarMeanCorrection, &[x, d, n, k, o1, o2]).expect("test");
        close(&h.f64s(o2).1, &rows.iter().map(|r| r.iter().sum::<f64>() / 4.0).collect::<Vec<_>>(), 1e-5);
    }
}
