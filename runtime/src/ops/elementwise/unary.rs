//! Unary operators: math to floating point, operators that keep the dtype, clamps and
//! activations.

use super::*;

/// A floating-point function of any real or bool input: computed in f64 for f64 inputs and in
/// f32 otherwise (as ExecuTorch), then cast to the (floating-point) output.
pub(super) fn unary_float(
    env: &mut Env<'_>,
    args: &[usize],
    f32f: impl Fn(f32) -> f32 + Sync,
    f64f: impl Fn(f64) -> f64 + Sync,
) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 1)?);
    let (t, out_dt) = (env.dtype(a)?, env.dtype(out)?);
    if !is_real_or_bool(t) {
        return Err(unsupported(t));
    }
    if !is_float(out_dt) {
        return Err(RuntimeError::Invalid(format!("the output must be floating point, got {out_dt}")));
    }
    if t == S::Double {
        unary_map::<f64, f64, _>(env, a, out, false, f64f)
    } else {
        unary_map::<f32, f32, _>(env, a, out, false, f32f)
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Same {
    Abs,
    Neg,
    Sign,
    Floor,
    Ceil,
    Round,
    Trunc,
    Relu,
}

/// Unary operators whose output has the input's dtype.
pub(super) fn unary_same(env: &mut Env<'_>, args: &[usize], op: Same) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 1)?);
    let t = env.dtype(a)?;
    if !is_real_or_bool(t) {
        return Err(unsupported(t));
    }
    if !is_real_or_bool(env.dtype(out)?) {
        return Err(unsupported(env.dtype(out)?));
    }
    if t == S::Bool {
        return match op {
            Same::Neg => Err(RuntimeError::Invalid("neg of a bool tensor is not supported; use logical_not".into())),
            Same::Relu => Err(RuntimeError::Invalid("relu does not support bool tensors".into())),
            _ => unary_map::<u8, u8, _>(env, a, out, false, |x| x),
        };
    }
    let ct = compute_type(t);
    if is_float(ct) {
        return dispatch_real(ct, |rt| match rt {
            RealT::F32 => unary_map::<f32, f32, _>(env, a, out, false, move |x| same_real(op, x)),
            RealT::F64 => unary_map::<f64, f64, _>(env, a, out, false, move |x| same_real(op, x)),
        });
    }
    ferrite_kernels::dispatch!(compute el(ct)?, C => unary_map::<C, C, _>(env, a, out, false, move |x: C| match op {
        Same::Abs => x.abs_val(),
        Same::Neg => x.neg_val(),
        Same::Sign => x.sign_val(),
        Same::Floor | Same::Ceil | Same::Round | Same::Trunc => x,
        Same::Relu => x.max_nan(C::ZERO),
    }), else other => Err(unsupported(other)))
}

#[inline(always)]
pub(super) fn same_real<T: Real>(op: Same, x: T) -> T {
    match op {
        Same::Abs => x.abs_val(),
        Same::Neg => -x,
        Same::Sign => x.sign_val(),
        Same::Floor => x.floor(),
        Same::Ceil => x.ceil(),
        Same::Round => x.round_even(),
        Same::Trunc => x.trunc(),
        Same::Relu => {
            if x.is_nan() || x >= T::ZERO {
                x
            } else {
                T::ZERO
            }
        }
    }
}

/// Rejects a clamp bound that does not fit the output dtype (as ExecuTorch's `check_bounds`).
pub(super) fn check_bound(s: Scalar, out: S, what: &str) -> Result<()> {
    let fits = if is_integral(out, false) {
        let v = match s {
            Scalar::Int(i) => i as f64,
            Scalar::Double(d) => d.trunc(),
            Scalar::Bool(b) => f64::from(u8::from(b)),
        };
        let (lo, hi) = match out {
            S::Byte => (0.0, 255.0),
            S::Char => (-128.0, 127.0),
            S::Short => (-32768.0, 32767.0),
            S::Int => (-2147483648.0, 2147483647.0),
            S::UInt16 => (0.0, 65535.0),
            S::UInt32 => (0.0, 4294967295.0),
            S::UInt64 => (0.0, f64::MAX),
            _ => (f64::MIN, f64::MAX),
        };
        (lo..=hi).contains(&v)
    } else if is_float(out) {
        let v = s.to_f64();
        let lim = match out {
            S::Half => 65504.0,
            S::Float => f64::from(f32::MAX),
            S::BFloat16 => f64::from(half::bf16::MAX.to_f32()),
            _ => f64::MAX,
        };
        !v.is_finite() || v.abs() <= lim
    } else {
        true
    };
    if fits {
        Ok(())
    } else {
        Err(RuntimeError::Invalid(format!("clamp: {what} value {s:?} is out of range for {out}")))
    }
}

pub(super) fn clamp_scalar(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 3)?);
    let lo = env.opt_scalar(arg(args, 1)?)?;
    let hi = env.opt_scalar(arg(args, 2)?)?;
    if lo.is_none() && hi.is_none() {
        return Err(RuntimeError::Invalid("clamp: at least one of min and max must be given".into()));
    }
    let t = env.dtype(a)?;
    if !is_real_or_bool(t) {
        return Err(unsupported(t));
    }
    let mut common = t;
    for s in [lo, hi].into_iter().flatten() {
        common = promote_scalar(common, s);
    }
    let out_dt = env.dtype(out)?;
    check_cast(common, out_dt)?;
    if let Some(s) = lo {
        check_bound(s, out_dt, "minimum")?;
    }
    if let Some(s) = hi {
        check_bound(s, out_dt, "maximum")?;
    }
    let ct = compute_type(common);
    ferrite_kernels::dispatch!(compute el(ct)?, C => {
        let lo: Option<C> = lo.map(sc);
        let hi: Option<C> = hi.map(sc);
        unary_map::<C, C, _>(env, a, out, ct == S::Bool, move |x: C| {
            let mut v = x;
            if let Some(l) = lo {
                v = v.max_nan(l);
            }
            if let Some(h) = hi {
                v = v.min_nan(h);
            }
            v
        })
    }, else other => Err(unsupported(other)))
}

pub(super) fn clamp_tensor(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 3)?);
    let lo = if env.is_none(arg(args, 1)?)? { None } else { Some(arg(args, 1)?) };
    let hi = if env.is_none(arg(args, 2)?)? { None } else { Some(arg(args, 2)?) };
    if lo.is_none() && hi.is_none() {
        return Err(RuntimeError::Invalid("clamp: at least one of min and max must be given".into()));
    }
    let mut common = env.dtype(a)?;
    for t in [lo, hi].into_iter().flatten() {
        common = promote(common, env.dtype(t)?)?;
    }
    check_cast(common, env.dtype(out)?)?;
    let (lo_t, hi_t) = (lo.unwrap_or(a), hi.unwrap_or(a));
    let so = k::broadcast_shape(&k::broadcast_shape(env.sizes(a)?, env.sizes(lo_t)?)?, env.sizes(hi_t)?)?;
    env.resize(out, &so)?;
    let (has_lo, has_hi) = (lo.is_some(), hi.is_some());
    let ct = compute_type(common);
    ferrite_kernels::dispatch!(compute el(ct)?, C => env.run(&[a, lo_t, hi_t], &[out], |ins, outs| {
        let x = load::<C>(&ins[0])?;
        let l = load::<C>(&ins[1])?;
        let h = load::<C>(&ins[2])?;
        write_out::<C>(&mut outs[0], ct == S::Bool, &mut |o| {
            Ok(k::ternary(&x, ins[0].sizes, &l, ins[1].sizes, &h, ins[2].sizes, o, &so, |v: C, l: C, h: C| {
                let mut v = v;
                if has_lo {
                    v = v.max_nan(l);
                }
                if has_hi {
                    v = v.min_nan(h);
                }
                v
            })?)
        })
    }), else other => Err(unsupported(other)))
}

pub(super) fn hardtanh(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 3)?);
    let (lo, hi) = (env.scalar(arg(args, 1)?)?, env.scalar(arg(args, 2)?)?);
    let t = env.dtype(a)?;
    if env.dtype(out)? != t {
        return Err(RuntimeError::Invalid("hardtanh: the output dtype must match the input's".into()));
    }
    if !is_real_or_bool(t) || t == S::Bool {
        return Err(unsupported(t));
    }
    ferrite_kernels::dispatch!(compute el(compute_type(t))?, C => {
        let (l, h): (C, C) = (sc(lo), sc(hi));
        unary_map::<C, C, _>(env, a, out, false, move |x: C| x.max_nan(l).min_nan(h))
    }, else other => Err(unsupported(other)))
}

/// A floating-point activation with the output's dtype equal to the input's.
pub(super) fn activation(
    env: &mut Env<'_>,
    a: usize,
    out: usize,
    f32f: impl Fn(f32) -> f32 + Sync,
    f64f: impl Fn(f64) -> f64 + Sync,
) -> Result<()> {
    let t = env.dtype(a)?;
    if !is_float(t) {
        return Err(RuntimeError::Invalid(format!("this activation needs a floating-point tensor, got {t}")));
    }
    let out_dt = env.dtype(out)?;
    if !is_float(out_dt) {
        return Err(RuntimeError::Invalid(format!("the output must be floating point, got {out_dt}")));
    }
    if t == S::Double {
        unary_map::<f64, f64, _>(env, a, out, false, f64f)
    } else {
        unary_map::<f32, f32, _>(env, a, out, false, f32f)
    }
}

pub(super) fn gelu(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 2)?);
    let approx = if env.is_none(arg(args, 1)?)? { "none".to_string() } else { env.string(arg(args, 1)?)?.to_string() };
    match approx.as_str() {
        // 0.5·x·(1 + erf(x/√2)), evaluated in f64 as ExecuTorch's C++ does (M_SQRT1_2 is double).
        "none" => activation(
            env,
            a,
            out,
            |x| {
                if x == f32::NEG_INFINITY {
                    0.0
                } else {
                    let xd = f64::from(x);
                    (0.5 * xd * (1.0 + k::erf_f64(xd * std::f64::consts::FRAC_1_SQRT_2))) as f32
                }
            },
            |x| {
                if x == f64::NEG_INFINITY {
                    0.0
                } else {
                    0.5 * x * (1.0 + k::erf_f64(x * std::f64::consts::FRAC_1_SQRT_2))
                }
            },
        ),
        // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))): inner in the input precision, outer in f64.
        "tanh" => activation(
            env,
            a,
            out,
            |x| {
                if x.is_infinite() {
                    return if x > 0.0 { x } else { 0.0 };
                }
                let beta = (std::f64::consts::SQRT_2 * std::f64::consts::FRAC_2_SQRT_PI * 0.5) as f32;
                let kappa = 0.044715f32;
                let inner = beta * (x + kappa * (x * x * x));
                (0.5 * f64::from(x) * (1.0 + f64::from(inner.tanh()))) as f32
            },
            |x| {
                if x.is_infinite() {
                    return if x > 0.0 { x } else { 0.0 };
                }
                let beta = std::f64::consts::SQRT_2 * std::f64::consts::FRAC_2_SQRT_PI * 0.5;
                let kappa = f64::from(0.044715f32);
                let inner = beta * (x + kappa * (x * x * x));
                0.5 * x * (1.0 + inner.tanh())
            },
        ),
        other => Err(RuntimeError::Invalid(format!("gelu: approximate must be 'none' or 'tanh', got {other:?}"))),
    }
}

pub(super) fn leaky_relu(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 2)?);
    let slope = env.scalar(arg(args, 1)?)?;
    if env.dtype(out)? != env.dtype(a)? {
        return Err(RuntimeError::Invalid("leaky_relu: the output dtype must match the input's".into()));
    }
    let (s32, s64): (f32, f64) = (sc(slope), sc(slope));
    activation(env, a, out, move |x| if x > 0.0 { x } else { x * s32 }, move |x| if x > 0.0 { x } else { x * s64 })
}

pub(super) fn elu(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 4)?);
    let (alpha, scale, input_scale) =
        (env.scalar(arg(args, 1)?)?, env.scalar(arg(args, 2)?)?, env.scalar(arg(args, 3)?)?);
    if env.dtype(out)? != env.dtype(a)? {
        return Err(RuntimeError::Invalid("elu: the output dtype must match the input's".into()));
    }
    let (al32, sc32, is32): (f32, f32, f32) = (sc(alpha), sc(scale), sc(input_scale));
    let (al64, sc64, is64): (f64, f64, f64) = (sc(alpha), sc(scale), sc(input_scale));
    let (neg32, neg64) = (al32 * sc32, al64 * sc64);
    activation(
        env,
        a,
        out,
        move |x| if x <= 0.0 { (x * is32).exp_m1() * neg32 } else { x * sc32 },
        move |x| if x <= 0.0 { (x * is64).exp_m1() * neg64 } else { x * sc64 },
    )
}

pub(super) fn softplus(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 3)?);
    let (beta, threshold) = (env.scalar(arg(args, 1)?)?, env.scalar(arg(args, 2)?)?);
    let (b32, t32): (f32, f32) = (sc(beta), sc(threshold));
    let (b64, t64): (f64, f64) = (sc(beta), sc(threshold));
    activation(
        env,
        a,
        out,
        move |x| if x * b32 > t32 { x } else { (x * b32).exp().ln_1p() / b32 },
        move |x| if x * b64 > t64 { x } else { (x * b64).exp().ln_1p() / b64 },
    )
}

pub(super) fn glu(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 2)?);
    let sizes = env.sizes(a)?.to_vec();
    let dim = crate::ops::norm_dim(env.int(arg(args, 1)?)?, sizes.len())?;
    let t = env.dtype(a)?;
    if !is_float(t) || !is_float(env.dtype(out)?) {
        return Err(RuntimeError::Invalid("glu needs floating-point input and output".into()));
    }
    let n = sizes.get(dim).copied().unwrap_or(1);
    if n % 2 != 0 {
        return Err(RuntimeError::Invalid(format!("glu: dimension {dim} has odd size {n}")));
    }
    let mut out_sizes = sizes.clone();
    if let Some(d) = out_sizes.get_mut(dim) {
        *d = n / 2;
    }
    let outer: usize = sizes.iter().take(dim).product();
    let inner: usize = sizes.iter().skip(dim + 1).product();
    env.resize(out, &out_sizes)?;
    dispatch_real(compute_type(t), |rt| {
        env.run(&[a], &[out], |ins, outs| match rt {
            RealT::F32 => {
                let x = load::<f32>(&ins[0])?;
                write_out::<f32>(&mut outs[0], false, &mut |o| Ok(k::glu(&x, o, outer, n / 2, inner)?))
            }
            RealT::F64 => {
                let x = load::<f64>(&ins[0])?;
                write_out::<f64>(&mut outs[0], false, &mut |o| Ok(k::glu(&x, o, outer, n / 2, inner)?))
            }
        })
    })
}
