//! Comparisons, logical operators and selection (`where`, `masked_fill`).

use super::*;

#[derive(Debug, Clone, Copy)]
pub(super) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    /// Whether `x cmp y` (IEEE: every comparison with NaN but `Ne` is false).
    #[inline(always)]
    fn holds<C: PartialOrd>(self, x: C, y: C) -> bool {
        match self {
            Cmp::Eq => x == y,
            Cmp::Ne => x != y,
            Cmp::Lt => x < y,
            Cmp::Le => x <= y,
            Cmp::Gt => x > y,
            Cmp::Ge => x >= y,
        }
    }
}

pub(super) fn compare(env: &mut Env<'_>, args: &[usize], cmp: Cmp, scalar: bool) -> Result<()> {
    let a = Operand::Tensor(arg(args, 0)?);
    let b = if scalar { Operand::Scalar(env.scalar(arg(args, 1)?)?) } else { Operand::Tensor(arg(args, 1)?) };
    let out = arg(args, 2)?;
    let mut common = common_of(env, a, b)?;
    if let (Operand::Tensor(x), Operand::Tensor(y)) = (a, b) {
        // As ExecuTorch: mixed-dtype floating comparisons are done in f32.
        if is_float(common) && env.dtype(x)? != env.dtype(y)? {
            common = S::Float;
        }
    }
    let out_dt = env.dtype(out)?;
    if !is_real_or_bool(out_dt) {
        return Err(unsupported(out_dt));
    }
    // One kernel per compute type, the comparison chosen per element: masks are small and built
    // once per run, and six copies of every broadcast loop per type only added code.
    ferrite_kernels::dispatch!(compute el(compute_type(common))?, C => {
        binary_op::<C, u8, _>(env, a, b, out, false, move |x: C, y: C| u8::from(cmp.holds(x, y)))
    }, else other => Err(unsupported(other)))
}

pub(super) fn float_predicate(env: &mut Env<'_>, args: &[usize], inf: bool) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 1)?);
    let t = env.dtype(a)?;
    if !is_real_or_bool(t) {
        return Err(unsupported(t));
    }
    if !is_float(t) {
        return unary_map::<u8, u8, _>(env, a, out, false, |_| 0u8);
    }
    dispatch_real(compute_type(t), |ct| match ct {
        RealT::F32 => unary_map::<f32, u8, _>(env, a, out, false, move |x| {
            u8::from(if inf { x.is_infinite() } else { x.is_nan() })
        }),
        RealT::F64 => unary_map::<f64, u8, _>(env, a, out, false, move |x| {
            u8::from(if inf { x.is_infinite() } else { x.is_nan() })
        }),
    })
}

pub(super) fn logical(env: &mut Env<'_>, args: &[usize], f: fn(u8, u8) -> u8) -> Result<()> {
    let (a, b, out) = (arg(args, 0)?, arg(args, 1)?, arg(args, 2)?);
    let so = k::broadcast_shape(env.sizes(a)?, env.sizes(b)?)?;
    let out_dt = env.dtype(out)?;
    if !is_real_or_bool(out_dt) {
        return Err(unsupported(out_dt));
    }
    env.resize(out, &so)?;
    env.run(&[a, b], &[out], |ins, outs| {
        let x = load_bool(&ins[0])?;
        let y = load_bool(&ins[1])?;
        write_out::<u8>(&mut outs[0], false, &mut |o| Ok(k::binary(&x, ins[0].sizes, &y, ins[1].sizes, o, &so, f)?))
    })
}

pub(super) fn logical_not(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 1)?);
    let sizes = env.sizes(a)?.to_vec();
    env.resize(out, &sizes)?;
    env.run(&[a], &[out], |ins, outs| {
        let x = load_bool(&ins[0])?;
        write_out::<u8>(&mut outs[0], false, &mut |o| Ok(k::unary(&x, o, |v| v ^ 1)?))
    })
}

pub(super) fn where_self(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (cond, a, b, out) = (arg(args, 0)?, arg(args, 1)?, arg(args, 2)?, arg(args, 3)?);
    let common = promote(env.dtype(a)?, env.dtype(b)?)?;
    check_cast(common, env.dtype(out)?)?;
    let cd = env.dtype(cond)?;
    if cd != S::Bool && cd != S::Byte {
        return Err(RuntimeError::Invalid(format!("where: the condition must be bool or uint8, got {cd}")));
    }
    let so = k::broadcast_shape(&k::broadcast_shape(env.sizes(cond)?, env.sizes(a)?)?, env.sizes(b)?)?;
    env.resize(out, &so)?;
    ferrite_kernels::dispatch!(compute el(compute_type(common))?, C => env.run(&[cond, a, b], &[out], |ins, outs| {
        let c = ins[0].typed::<u8>()?;
        let x = load::<C>(&ins[1])?;
        let y = load::<C>(&ins[2])?;
        write_out::<C>(&mut outs[0], false, &mut |o| {
            Ok(k::ternary(c, ins[0].sizes, &x, ins[1].sizes, &y, ins[2].sizes, o, &so, |m: u8, p: C, q: C| if m != 0 { p } else { q })?)
        })
    }), else other => Err(unsupported(other)))
}

pub(super) fn masked_fill(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, mask, out) = (arg(args, 0)?, arg(args, 1)?, arg(args, 3)?);
    let value = env.scalar(arg(args, 2)?)?;
    let t = env.dtype(a)?;
    if env.dtype(out)? != t {
        return Err(RuntimeError::Invalid("masked_fill: the output dtype must match the input's".into()));
    }
    if env.dtype(mask)? != S::Bool {
        return Err(RuntimeError::Invalid("masked_fill: the mask must be a bool tensor".into()));
    }
    if matches!(value, Scalar::Double(_)) && is_integral(t, true) {
        return Err(RuntimeError::Invalid(format!("masked_fill: cannot fill a {t} tensor with a float value")));
    }
    let so = k::broadcast_shape(env.sizes(a)?, env.sizes(mask)?)?;
    env.resize(out, &so)?;
    ferrite_kernels::dispatch!(all el(t)?, T => env.run(&[a, mask], &[out], |ins, outs| {
        let v: T = if t == S::Bool { T::from_i64(i64::from(sc::<f64>(value) != 0.0)) } else { sc::<T>(value) };
        let x = ins[0].typed::<T>()?;
        let m = ins[1].typed::<u8>()?;
        let o = outs[0].typed::<T>()?;
        Ok(k::binary(x, ins[0].sizes, m, ins[1].sizes, o, &so, |p: T, mm: u8| if mm != 0 { v } else { p })?)
    }), else other => Err(super::unsupported(other)))
}
