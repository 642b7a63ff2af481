//! Arithmetic: add, sub, mul, div (with rounding modes), floor division, remainder, fmod, pow,
//! maximum and minimum, atan2, bitwise operators.

use super::*;

/// Checks an `alpha` Scalar against the common type (no float alpha for integer results, no
/// bool alpha unless the result is bool).
pub(super) fn check_alpha(alpha: Scalar, common: S) -> Result<()> {
    let ok = match alpha {
        Scalar::Double(_) => is_float(common),
        Scalar::Int(_) | Scalar::Bool(_) => true,
    };
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::Invalid(format!("alpha {alpha:?} cannot be used with {common} operands")))
    }
}

pub(super) fn add_sub(env: &mut Env<'_>, args: &[usize], sub: bool) -> Result<()> {
    let (a, b, out) = (Operand::Tensor(arg(args, 0)?), Operand::Tensor(arg(args, 1)?), arg(args, 3)?);
    let alpha = env.scalar(arg(args, 2)?)?;
    arith_alpha(env, a, b, alpha, out, sub, false)
}

pub(super) fn add_sub_scalar(env: &mut Env<'_>, args: &[usize], sub: bool, reverse: bool) -> Result<()> {
    let (a, out) = (Operand::Tensor(arg(args, 0)?), arg(args, 3)?);
    let b = Operand::Scalar(env.scalar(arg(args, 1)?)?);
    let alpha = env.scalar(arg(args, 2)?)?;
    arith_alpha(env, a, b, alpha, out, sub, reverse)
}

/// `a + alpha * b`, `a - alpha * b`, or (reverse) `b - alpha * a`.
pub(super) fn arith_alpha(
    env: &mut Env<'_>,
    a: Operand,
    b: Operand,
    alpha: Scalar,
    out: usize,
    sub: bool,
    reverse: bool,
) -> Result<()> {
    let common = common_of(env, a, b)?;
    check_cast(common, env.dtype(out)?)?;
    check_alpha(alpha, common)?;
    if sub && common == S::Bool {
        return Err(RuntimeError::Invalid("subtraction of bool tensors is not supported; use logical_xor".into()));
    }
    let ct = compute_type(common);
    let is_bool = ct == S::Bool;
    ferrite_kernels::dispatch!(compute el(ct)?, C => {
        let al: C = sc(alpha);
        let one: C = C::from_i64(1);
        match (sub, reverse) {
            (false, _) if al == one => binary_op::<C, C, _>(env, a, b, out, is_bool, |x: C, y: C| x.add(y)),
            (false, _) => binary_op::<C, C, _>(env, a, b, out, is_bool, move |x: C, y: C| x.add(al.mul(y))),
            (true, false) if al == one => binary_op::<C, C, _>(env, a, b, out, is_bool, |x: C, y: C| x.sub(y)),
            (true, false) => binary_op::<C, C, _>(env, a, b, out, is_bool, move |x: C, y: C| x.sub(al.mul(y))),
            (true, true) => binary_op::<C, C, _>(env, a, b, out, is_bool, move |x: C, y: C| y.sub(al.mul(x))),
        }
    }, else other => Err(unsupported(other)))
}

pub(super) fn mul(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    mul_impl(env, Operand::Tensor(arg(args, 0)?), Operand::Tensor(arg(args, 1)?), arg(args, 2)?)
}

pub(super) fn mul_scalar(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let b = Operand::Scalar(env.scalar(arg(args, 1)?)?);
    mul_impl(env, Operand::Tensor(arg(args, 0)?), b, arg(args, 2)?)
}

pub(super) fn mul_impl(env: &mut Env<'_>, a: Operand, b: Operand, out: usize) -> Result<()> {
    let common = common_of(env, a, b)?;
    check_cast(common, env.dtype(out)?)?;
    let ct = compute_type(common);
    let is_bool = ct == S::Bool;
    ferrite_kernels::dispatch!(compute el(ct)?, C => binary_op::<C, C, _>(env, a, b, out, is_bool, |x: C, y: C| x.mul(y)), else other => Err(unsupported(other)))
}

pub(super) fn square(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 1)?);
    let common = promote_scalar(env.dtype(a)?, Scalar::Int(2));
    check_cast(common, env.dtype(out)?)?;
    ferrite_kernels::dispatch!(compute el(compute_type(common))?, C => binary_op::<C, C, _>(env, Operand::Tensor(a), Operand::Scalar(Scalar::Int(0)), out, false, |x: C, _y: C| x.mul(x)), else other => Err(unsupported(other)))
}

/// `div` with an optional rounding mode.
pub(super) fn div(env: &mut Env<'_>, a: usize, b: Operand, mode: Option<&str>, out: usize) -> Result<()> {
    let a_op = Operand::Tensor(a);
    let out_dt = env.dtype(out)?;
    match mode {
        None => {
            // True division: integer operands give Float.
            let (ta, tb) = (env.dtype(a)?, dtype_of(env, b)?);
            if !is_real_or_bool(ta) {
                return Err(unsupported(ta));
            }
            let common = match b {
                Operand::Tensor(_) => match (is_float(ta), is_float(tb)) {
                    (true, true) => promote(ta, tb)?,
                    (true, false) => ta,
                    (false, true) => tb,
                    (false, false) => S::Float,
                },
                Operand::Scalar(_) => {
                    if is_float(ta) {
                        ta
                    } else {
                        S::Float
                    }
                }
            };
            if !is_float(out_dt) {
                return Err(RuntimeError::Invalid(format!("div: the output must be floating point, got {out_dt}")));
            }
            dispatch_real(compute_type(common), |ct| match ct {
                RealT::F32 => binary_op::<f32, f32, _>(env, a_op, b, out, false, |x, y| x / y),
                RealT::F64 => binary_op::<f64, f64, _>(env, a_op, b, out, false, |x, y| x / y),
            })
        }
        Some(m) => {
            let trunc = match m {
                "trunc" => true,
                "floor" => false,
                other => {
                    return Err(RuntimeError::Invalid(format!(
                        "div: rounding_mode must be 'trunc' or 'floor', got {other:?}"
                    )))
                }
            };
            let common = common_of(env, a_op, b)?;
            check_cast(common, out_dt)?;
            if common == S::Bool {
                return Err(RuntimeError::Invalid("div with a rounding mode does not support bool operands".into()));
            }
            let ct = compute_type(common);
            if is_integral(ct, true) {
                check_no_zero_divisor(env, b, "div")?;
            }
            ferrite_kernels::dispatch!(compute el(ct)?, C => {
                if trunc {
                    binary_op::<C, C, _>(env, a_op, b, out, false, |x: C, y: C| x.trunc_div(y))
                } else {
                    binary_op::<C, C, _>(env, a_op, b, out, false, |x: C, y: C| x.floor_div(y))
                }
            }, else other => Err(unsupported(other)))
        }
    }
}

/// Integer division by zero is an error (PyTorch raises `ZeroDivisionError`).
pub(super) fn check_no_zero_divisor(env: &mut Env<'_>, b: Operand, op: &str) -> Result<()> {
    let zero = match b {
        Operand::Scalar(s) => s.to_f64() == 0.0,
        Operand::Tensor(t) => env.run(&[t], &[], |ins, _| Ok(ins[0].to_f64_vec()?.contains(&0.0)))?,
    };
    if zero {
        Err(RuntimeError::Invalid(format!("{op}: integer division by zero")))
    } else {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DivKind {
    Floor,
    Remainder,
    Fmod,
}

/// `floor_divide`, `remainder` and `fmod` (tensor or Scalar divisor).
pub(super) fn int_div_like(env: &mut Env<'_>, args: &[usize], kind: DivKind, scalar: bool) -> Result<()> {
    let a = Operand::Tensor(arg(args, 0)?);
    let b = if scalar { Operand::Scalar(env.scalar(arg(args, 1)?)?) } else { Operand::Tensor(arg(args, 1)?) };
    let out = arg(args, 2)?;
    let common = common_of(env, a, b)?;
    check_cast(common, env.dtype(out)?)?;
    if common == S::Bool {
        return Err(RuntimeError::Invalid(format!("{kind:?} does not support bool operands")));
    }
    let mut ct = compute_type(common);
    if kind == DivKind::Fmod && is_float(ct) && ct != S::Float {
        ct = S::Double;
    }
    if is_integral(ct, true) {
        check_no_zero_divisor(env, b, "division")?;
    }
    ferrite_kernels::dispatch!(compute el(ct)?, C => match kind {
        DivKind::Floor => binary_op::<C, C, _>(env, a, b, out, false, |x: C, y: C| x.floor_div(y)),
        DivKind::Remainder => binary_op::<C, C, _>(env, a, b, out, false, |x: C, y: C| x.py_rem(y)),
        DivKind::Fmod => binary_op::<C, C, _>(env, a, b, out, false, |x: C, y: C| x.c_fmod(y)),
    }, else other => Err(unsupported(other)))
}

/// `pow`: computed in f32 when the common type is f32/f16/bf16, otherwise in f64 (integers
/// included, then cast back), as ExecuTorch does.
pub(super) fn pow(env: &mut Env<'_>, a: Operand, b: Operand, out: usize) -> Result<()> {
    let common = match (a, b) {
        (Operand::Scalar(s), Operand::Tensor(t)) => {
            // pow(Scalar, Tensor): the scalar's category wins when higher.
            let tt = env.dtype(t)?;
            promote_scalar(tt, s)
        }
        _ => common_of(env, a, b)?,
    };
    let out_dt = env.dtype(out)?;
    check_cast(common, out_dt)?;
    if common == S::Bool {
        return Err(RuntimeError::Invalid("pow does not support bool operands".into()));
    }
    if compute_type(common) == S::Float {
        binary_op::<f32, f32, _>(env, a, b, out, false, |x, y| x.powf(y))
    } else if is_integral(common, false) {
        // Integer pow: exact integer power (PyTorch), negative exponents give 0 except for ±1.
        ferrite_kernels::dispatch!(compute el(common)?, C => binary_op::<C, C, _>(env, a, b, out, false, |x: C, y: C| int_pow(x, y)), else other => Err(unsupported(other)))
    } else {
        binary_op::<f64, f64, _>(env, a, b, out, false, |x, y| x.powf(y))
    }
}

/// Integer power with wrapping multiplication, as PyTorch's `powi`.
pub(super) fn int_pow<C: Number>(base: C, exp: C) -> C {
    let e = exp.to_i64();
    let one = C::from_i64(1);
    if e < 0 {
        let b = base.to_i64();
        return if b == 1 {
            one
        } else if b == -1 {
            if e % 2 == 0 {
                one
            } else {
                base
            }
        } else {
            C::ZERO
        };
    }
    let (mut result, mut b, mut e) = (one, base, e as u64);
    while e > 0 {
        if e & 1 == 1 {
            result = result.mul(b);
        }
        b = b.mul(b);
        e >>= 1;
    }
    result
}

pub(super) fn min_max(env: &mut Env<'_>, args: &[usize], max: bool) -> Result<()> {
    let (a, b, out) = (Operand::Tensor(arg(args, 0)?), Operand::Tensor(arg(args, 1)?), arg(args, 2)?);
    let common = common_of(env, a, b)?;
    check_cast(common, env.dtype(out)?)?;
    let ct = compute_type(common);
    ferrite_kernels::dispatch!(compute el(ct)?, C => {
        if max {
            binary_op::<C, C, _>(env, a, b, out, false, |x: C, y: C| x.max_nan(y))
        } else {
            binary_op::<C, C, _>(env, a, b, out, false, |x: C, y: C| x.min_nan(y))
        }
    }, else other => Err(unsupported(other)))
}

pub(super) fn atan2(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (ai, bi, out) = (arg(args, 0)?, arg(args, 1)?, arg(args, 2)?);
    let (ta, tb) = (env.dtype(ai)?, env.dtype(bi)?);
    let (a, b) = (Operand::Tensor(ai), Operand::Tensor(bi));
    let common = match (is_float(ta), is_float(tb)) {
        (true, true) => promote(ta, tb)?,
        (true, false) => ta,
        (false, true) => tb,
        (false, false) => S::Float,
    };
    let out_dt = env.dtype(out)?;
    if !is_float(out_dt) {
        return Err(RuntimeError::Invalid(format!("atan2: the output must be floating point, got {out_dt}")));
    }
    dispatch_real(compute_type(common), |ct| match ct {
        RealT::F32 => binary_op::<f32, f32, _>(env, a, b, out, false, |x, y| x.atan2(y)),
        RealT::F64 => binary_op::<f64, f64, _>(env, a, b, out, false, |x, y| x.atan2(y)),
    })
}

#[derive(Debug, Clone, Copy)]
pub(super) enum BitOp {
    And,
    Or,
    Xor,
}

pub(super) fn bitwise(env: &mut Env<'_>, args: &[usize], op: BitOp, scalar: bool) -> Result<()> {
    let a = Operand::Tensor(arg(args, 0)?);
    let b = if scalar { Operand::Scalar(env.scalar(arg(args, 1)?)?) } else { Operand::Tensor(arg(args, 1)?) };
    let out = arg(args, 2)?;
    let common = common_of(env, a, b)?;
    if !is_integral(common, true) {
        return Err(RuntimeError::Invalid(format!("bitwise operators need integer or bool operands, got {common}")));
    }
    check_cast(common, env.dtype(out)?)?;
    let is_bool = common == S::Bool;
    ferrite_kernels::dispatch!(compute el(common)?, C => match op {
        BitOp::And => binary_op::<C, C, _>(env, a, b, out, is_bool, |x: C, y: C| bits_of(x).and(bits_of(y)).into_c()),
        BitOp::Or => binary_op::<C, C, _>(env, a, b, out, is_bool, |x: C, y: C| bits_of(x).or(bits_of(y)).into_c()),
        BitOp::Xor => binary_op::<C, C, _>(env, a, b, out, is_bool, |x: C, y: C| bits_of(x).xor(bits_of(y)).into_c()),
    }, else other => Err(unsupported(other)))
}

/// Bit operations on any compute type, through i64/u64 (floats never reach here: the callers
/// reject floating-point operands).
#[derive(Clone, Copy)]
pub(super) struct Wide(u64);
pub(super) fn bits_of<C: Element>(x: C) -> Wide {
    Wide(x.to_u64())
}
impl Wide {
    fn and(self, o: Wide) -> Wide {
        Wide(Integer::and(self.0, o.0))
    }
    fn or(self, o: Wide) -> Wide {
        Wide(Integer::or(self.0, o.0))
    }
    fn xor(self, o: Wide) -> Wide {
        Wide(Integer::xor(self.0, o.0))
    }
    fn into_c<C: Element>(self) -> C {
        C::from_u64(self.0)
    }
}

pub(super) fn bitwise_not(env: &mut Env<'_>, args: &[usize]) -> Result<()> {
    let (a, out) = (arg(args, 0)?, arg(args, 1)?);
    let t = env.dtype(a)?;
    if env.dtype(out)? != t {
        return Err(RuntimeError::Invalid("bitwise_not: the output dtype must match the input's".into()));
    }
    if t == S::Bool {
        return unary_map::<u8, u8, _>(env, a, out, false, |x| u8::from(x == 0));
    }
    if !is_integral(t, false) {
        return Err(RuntimeError::Invalid(format!("bitwise_not needs an integer or bool tensor, got {t}")));
    }
    ferrite_kernels::dispatch!(compute el(t)?, C => unary_map::<C, C, _>(env, a, out, false, |x: C| C::from_u64(Integer::not(x.to_u64()))), else other => Err(unsupported(other)))
}
