//! Element-wise operators against references, dtype rules, edge values.
#![allow(clippy::unwrap_used, clippy::float_cmp)]

use super::*;
use crate::env::{RValue, Storage, TensorSlot};
use crate::tensor::{AlignedBuf, TensorData};
use ferrite_program::{Program, ShapeDynamism};
use proptest::prelude::*;
use std::sync::OnceLock;

fn program() -> &'static Program<'static> {
    static P: OnceLock<&'static Program<'static>> = OnceLock::new();
    P.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/elementwise/portable.pte");
        Box::leak(Box::new(Program::read(path).unwrap()))
    })
}

/// A minimal method state to call adapters on.
#[derive(Default)]
struct H {
    values: Vec<RValue>,
    owned: Vec<AlignedBuf>,
}

impl H {
    fn push(&mut self, v: RValue) -> usize {
        self.values.push(v);
        self.values.len() - 1
    }
    fn t(&mut self, t: &TensorData) -> usize {
        self.owned.push(AlignedBuf::from_bytes(t.bytes()));
        let rank = t.sizes().len();
        self.push(RValue::Tensor(TensorSlot {
            dtype: t.dtype(),
            sizes: t.sizes().to_vec(),
            bound: t.sizes().to_vec(),
            dim_order: (0..rank as u8).collect(),
            dynamism: ShapeDynamism::DynamicUnbound,
            storage: Storage::Owned { index: self.owned.len() - 1 },
        }))
    }
    fn f32(&mut self, sizes: &[usize], v: &[f32]) -> usize {
        self.t(&TensorData::from_slice(sizes.to_vec(), v).unwrap())
    }
    fn out(&mut self, dtype: S, rank: usize) -> usize {
        self.push(RValue::Tensor(TensorSlot {
            dtype,
            sizes: vec![0; rank],
            bound: vec![0; rank],
            dim_order: (0..rank as u8).collect(),
            dynamism: ShapeDynamism::DynamicUnbound,
            storage: Storage::Empty,
        }))
    }
    fn int(&mut self, v: i64) -> usize {
        self.push(RValue::Int(v))
    }
    fn dbl(&mut self, v: f64) -> usize {
        self.push(RValue::Double(v))
    }
    fn none(&mut self) -> usize {
        self.push(RValue::None)
    }
    fn string(&mut self, s: &str) -> usize {
        self.push(RValue::String(s.into()))
    }
    fn call(&mut self, op: Op, args: &[usize]) -> Result<()> {
        let mut r = KernelRegistry::empty();
        register(&mut r);
        let f = r.get(op.name()).unwrap_or_else(|| panic!("{op} not registered"));
        let mut env = Env::owned(
            &mut self.values,
            &mut self.owned,
            program().bytes(),
            false,
            ferrite_kernels::simd::Level::detect(),
        );
        f(&mut env, args)
    }
    fn read(&mut self, v: usize) -> (S, Vec<usize>, Vec<f64>) {
        let env = Env::owned(
            &mut self.values,
            &mut self.owned,
            program().bytes(),
            false,
            ferrite_kernels::simd::Level::detect(),
        );
        let t = env.read(v).unwrap();
        (t.dtype, t.sizes.to_vec(), t.to_f64_vec().unwrap())
    }
    fn raw<T: Element>(&mut self, v: usize) -> Vec<T> {
        let env = Env::owned(
            &mut self.values,
            &mut self.owned,
            program().bytes(),
            false,
            ferrite_kernels::simd::Level::detect(),
        );
        env.read(v).unwrap().typed::<T>().unwrap().to_vec()
    }
}

/// Reference broadcasting in f64.
fn ref_binary(a: &[f64], sa: &[usize], b: &[f64], sb: &[usize], f: impl Fn(f64, f64) -> f64) -> (Vec<f64>, Vec<usize>) {
    let so = k::broadcast_shape(sa, sb).unwrap();
    let n: usize = so.iter().product();
    let idx = |shape: &[usize], multi: &[usize]| {
        let lead = multi.len() - shape.len();
        shape.iter().enumerate().fold(0, |acc, (d, &s)| acc * s + if s == 1 { 0 } else { multi[d + lead] })
    };
    let out = (0..n)
        .map(|flat| {
            let mut multi = vec![0; so.len()];
            let mut r = flat;
            for d in (0..so.len()).rev() {
                multi[d] = r % so[d];
                r /= so[d];
            }
            f(a[idx(sa, &multi)], b[idx(sb, &multi)])
        })
        .collect();
    (out, so)
}

fn shapes() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    prop::collection::vec((0usize..4, any::<bool>(), any::<bool>()), 0..4).prop_flat_map(|dims| {
        let a: Vec<usize> = dims.iter().map(|&(s, ba, _)| if ba { 1 } else { s }).collect();
        let b: Vec<usize> = dims.iter().map(|&(s, _, bb)| if bb { 1 } else { s }).collect();
        (0..=a.len(), 0..=b.len()).prop_map(move |(da, db)| (a[da..].to_vec(), b[db..].to_vec()))
    })
}

fn values(n: usize, seed: u64) -> Vec<f32> {
    (0..n).map(|i| ((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 37.0 - 13.0).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn f32_binary_ops_match_reference((sa, sb) in shapes(), seed in 0u64..1000, op in 0usize..6) {
        let a = values(sa.iter().product(), seed);
        let b = values(sb.iter().product(), seed + 1);
        let (name, f): (Op, fn(f64, f64) -> f64) = match op {
            0 => (Op::Add, |x, y| x + 2.0 * y),
            1 => (Op::Sub, |x, y| x - 2.0 * y),
            2 => (Op::Mul, |x, y| x * y),
            3 => (Op::Div, |x, y| x / y),
            4 => (Op::Maximum, |x, y| x.max(y)),
            _ => (Op::Minimum, |x, y| x.min(y)),
        };
        let a64: Vec<f64> = a.iter().map(|&v| f64::from(v)).collect();
        let b64: Vec<f64> = b.iter().map(|&v| f64::from(v)).collect();
        let (want, so) = ref_binary(&a64, &sa, &b64, &sb, f);
        let mut h = H::default();
        let (ta, tb) = (h.f32(&sa, &a), h.f32(&sb, &b));
        let out = h.out(S::Float, so.len());
        let mut args = vec![ta, tb];
        if op < 2 {
            args.push(h.int(2));
        }
        args.extend([out, out]);
        h.call(name, &args).unwrap();
        let got = h.raw::<f32>(out);
        let want32: Vec<f32> = want.iter().map(|&v| v as f32).collect();
        prop_assert_eq!(h.read(out).1, so);
        prop_assert_eq!(got, want32);
    }

    #[test]
    fn comparisons_and_where_match_reference((sa, sb) in shapes(), seed in 0u64..1000, op in 0usize..6) {
        let a = values(sa.iter().product(), seed).iter().map(|v| v.round()).collect::<Vec<_>>();
        let b = values(sb.iter().product(), seed + 7).iter().map(|v| v.round()).collect::<Vec<_>>();
        let (name, f): (Op, fn(f64, f64) -> bool) = match op {
            0 => (Op::EqTensor, |x, y| x == y),
            1 => (Op::NeTensor, |x, y| x != y),
            2 => (Op::LtTensor, |x, y| x < y),
            3 => (Op::LeTensor, |x, y| x <= y),
            4 => (Op::GtTensor, |x, y| x > y),
            _ => (Op::GeTensor, |x, y| x >= y),
        };
        let a64: Vec<f64> = a.iter().map(|&v| f64::from(v)).collect();
        let b64: Vec<f64> = b.iter().map(|&v| f64::from(v)).collect();
        let (want, so) = ref_binary(&a64, &sa, &b64, &sb, |x, y| f64::from(u8::from(f(x, y))));
        let mut h = H::default();
        let (ta, tb) = (h.f32(&sa, &a), h.f32(&sb, &b));
        let out = h.out(S::Bool, so.len());
        h.call(name, &[ta, tb, out, out]).unwrap();
        prop_assert_eq!(h.read(out).2, want.clone());
        // where(cond, a, b) with the comparison as the condition.
        let sel = h.out(S::Float, so.len());
        h.call(Op::WhereSelf, &[out, ta, tb, sel, sel]).unwrap();
        let (wa, _) = ref_binary(&a64, &sa, &b64, &sb, |x, _| x);
        let (wb, _) = ref_binary(&a64, &sa, &b64, &sb, |_, y| y);
        let expect: Vec<f64> = want.iter().zip(wa.iter().zip(&wb)).map(|(&c, (&x, &y))| if c != 0.0 { x } else { y }).collect();
        prop_assert_eq!(h.read(sel).2, expect);
    }

    #[test]
    fn int_ops_match_python(a in prop::collection::vec(-50i64..50, 1..20), b in -7i64..7) {
        prop_assume!(b != 0);
        let mut h = H::default();
        let n = a.len();
        let ta = h.t(&TensorData::from_slice(vec![n], &a).unwrap());
        let tb = h.t(&TensorData::from_slice(vec![1], &[b]).unwrap());
        let out = h.out(S::Long, 1);
        h.call(Op::RemainderTensor, &[ta, tb, out, out]).unwrap();
        prop_assert_eq!(h.raw::<i64>(out), a.iter().map(|&x| x.rem_euclid(b) + if b < 0 && x.rem_euclid(b) != 0 { b } else { 0 }).collect::<Vec<_>>());
        let out2 = h.out(S::Long, 1);
        h.call(Op::FloorDivide, &[ta, tb, out2, out2]).unwrap();
        prop_assert_eq!(h.raw::<i64>(out2), a.iter().map(|&x| (x as f64 / b as f64).floor() as i64).collect::<Vec<_>>());
        let out3 = h.out(S::Long, 1);
        let mode = h.string("trunc");
        h.call(Op::DivMode, &[ta, tb, mode, out3, out3]).unwrap();
        prop_assert_eq!(h.raw::<i64>(out3), a.iter().map(|&x| x / b).collect::<Vec<_>>());
        let out4 = h.out(S::Long, 1);
        h.call(Op::FmodTensor, &[ta, tb, out4, out4]).unwrap();
        prop_assert_eq!(h.raw::<i64>(out4), a.iter().map(|&x| x % b).collect::<Vec<_>>());
    }
}

#[test]
fn promotion_int_plus_float_and_scalars() {
    let mut h = H::default();
    let i = h.t(&TensorData::from_slice(vec![3], &[1i32, 2, 3]).unwrap());
    let f = h.f32(&[3], &[0.5, 0.25, -1.0]);
    let one = h.int(1);
    let out = h.out(S::Float, 1);
    h.call(Op::Add, &[i, f, one, out, out]).unwrap();
    assert_eq!(h.raw::<f32>(out), vec![1.5, 2.25, 2.0]);
    // int tensor + float scalar -> float
    let s = h.dbl(0.5);
    let out2 = h.out(S::Float, 1);
    h.call(Op::AddScalar, &[i, s, one, out2, out2]).unwrap();
    assert_eq!(h.raw::<f32>(out2), vec![1.5, 2.5, 3.5]);
    // float result into an int output is rejected
    let bad = h.out(S::Int, 1);
    assert!(h.call(Op::Add, &[i, f, one, bad, bad]).is_err());
    // int / int -> float
    let out3 = h.out(S::Float, 1);
    h.call(Op::Div, &[i, i, out3, out3]).unwrap();
    assert_eq!(h.raw::<f32>(out3), vec![1.0, 1.0, 1.0]);
    // u8 + i8 -> i16
    assert_eq!(promote(S::Byte, S::Char).unwrap(), S::Short);
    assert_eq!(promote(S::Half, S::BFloat16).unwrap(), S::Float);
    assert_eq!(promote(S::Bool, S::Int).unwrap(), S::Int);
    assert_eq!(promote(S::Long, S::Half).unwrap(), S::Half);
    assert_eq!(promote_scalar(S::Bool, Scalar::Int(1)), S::Long);
    assert_eq!(promote_scalar(S::Int, Scalar::Double(1.0)), S::Float);
    assert_eq!(promote_scalar(S::Half, Scalar::Double(1.0)), S::Half);
}

#[test]
fn bool_arithmetic_and_i64_wrap() {
    let mut h = H::default();
    let b = h.t(&TensorData::from_bools(vec![4], &[true, true, false, false]).unwrap());
    let c = h.t(&TensorData::from_bools(vec![4], &[true, false, true, false]).unwrap());
    let one = h.int(1);
    let out = h.out(S::Bool, 1);
    h.call(Op::Add, &[b, c, one, out, out]).unwrap();
    assert_eq!(h.raw::<u8>(out), vec![1, 1, 1, 0]);
    let out2 = h.out(S::Bool, 1);
    h.call(Op::Mul, &[b, c, out2, out2]).unwrap();
    assert_eq!(h.raw::<u8>(out2), vec![1, 0, 0, 0]);
    assert!(h.call(Op::Sub, &[b, c, one, out2, out2]).is_err());
    let big = h.t(&TensorData::from_slice(vec![2], &[i64::MAX, i64::MIN]).unwrap());
    let out3 = h.out(S::Long, 1);
    h.call(Op::AddScalar, &[big, one, one, out3, out3]).unwrap();
    assert_eq!(h.raw::<i64>(out3), vec![i64::MIN, i64::MIN + 1]);
    let out4 = h.out(S::Long, 1);
    h.call(Op::Mul, &[big, big, out4, out4]).unwrap();
    assert_eq!(h.raw::<i64>(out4), vec![i64::MAX.wrapping_mul(i64::MAX), 0]);
    // bool + int scalar -> long
    let out5 = h.out(S::Long, 1);
    let two = h.int(2);
    h.call(Op::AddScalar, &[b, two, one, out5, out5]).unwrap();
    assert_eq!(h.raw::<i64>(out5), vec![3, 3, 2, 2]);
}

#[test]
fn half_inputs_compute_in_f32() {
    let mut h = H::default();
    let x: Vec<half::f16> = [1.0f32, 2.0, 1000.0].iter().map(|&v| half::f16::from_f32(v)).collect();
    let a = h.t(&TensorData::from_slice(vec![3], &x).unwrap());
    let out = h.out(S::Half, 1);
    let s = h.dbl(0.1);
    h.call(Op::MulScalar, &[a, s, out, out]).unwrap();
    let got: Vec<f32> = h.raw::<half::f16>(out).iter().map(|v| v.to_f32()).collect();
    let want: Vec<f32> = x.iter().map(|v| half::f16::from_f32(v.to_f32() * 0.1f32).to_f32()).collect();
    assert_eq!(got, want);
}

#[test]
fn unary_edge_values() {
    let edge = [0.0f32, -0.0, 1.0, -1.0, 0.5, -2.5, 2.5, 3.7, -3.7, 100.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
    type Case = (Op, fn(f64) -> f64);
    let cases: Vec<Case> = vec![
        (Op::Abs, f64::abs),
        (Op::Neg, |x| -x),
        (Op::Sqrt, f64::sqrt),
        (Op::Rsqrt, |x| 1.0 / x.sqrt()),
        (Op::Exp, f64::exp),
        (Op::Expm1, f64::exp_m1),
        (Op::Log, f64::ln),
        (Op::Log1p, f64::ln_1p),
        (Op::Log2, f64::log2),
        (Op::Log10, f64::log10),
        (Op::Sin, f64::sin),
        (Op::Cos, f64::cos),
        (Op::Tan, f64::tan),
        (Op::Tanh, f64::tanh),
        (Op::Asin, f64::asin),
        (Op::Acos, f64::acos),
        (Op::Atan, f64::atan),
        (Op::Sinh, f64::sinh),
        (Op::Cosh, f64::cosh),
        (Op::Erf, k::erf_f64),
        (Op::Floor, f64::floor),
        (Op::Ceil, f64::ceil),
        (Op::Round, f64::round_ties_even),
        (Op::Trunc, f64::trunc),
        (Op::Sign, |x| {
            if x.is_nan() {
                x
            } else if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }),
        (Op::Reciprocal, |x| 1.0 / x),
        (Op::Sigmoid, |x| 1.0 / (1.0 + (-x).exp())),
        (Op::Relu, |x| if x.is_nan() || x >= 0.0 { x } else { 0.0 }),
        (Op::Silu, |x| x / (1.0 + (-x).exp())),
        (Op::Hardswish, |x| x * (x + 3.0).clamp(0.0, 6.0) / 6.0),
        (Op::Hardsigmoid, |x| (x + 3.0).clamp(0.0, 6.0) / 6.0),
    ];
    for (name, f) in cases {
        let mut h = H::default();
        let a = h.f32(&[edge.len()], &edge);
        let out = h.out(S::Float, 1);
        h.call(name, &[a, out, out]).unwrap();
        let got = h.raw::<f32>(out);
        for (&x, &g) in edge.iter().zip(&got) {
            let w = f(f64::from(x)) as f32;
            let ok = (w.is_nan() && g.is_nan()) || w == g || (w - g).abs() <= 2.0 * f32::EPSILON * w.abs().max(1e-30);
            assert!(ok, "{name}({x}) = {g}, want {w}");
        }
    }
}

#[test]
fn int_input_to_float_function_and_int_unary() {
    let mut h = H::default();
    let a = h.t(&TensorData::from_slice(vec![3], &[-4i64, 0, 9]).unwrap());
    let out = h.out(S::Float, 1);
    h.call(Op::Sqrt, &[a, out, out]).unwrap();
    let got = h.raw::<f32>(out);
    assert!(got[0].is_nan());
    assert_eq!(&got[1..], &[0.0, 3.0]);
    let out2 = h.out(S::Long, 1);
    h.call(Op::Abs, &[a, out2, out2]).unwrap();
    assert_eq!(h.raw::<i64>(out2), vec![4, 0, 9]);
    let out3 = h.out(S::Long, 1);
    h.call(Op::Sign, &[a, out3, out3]).unwrap();
    assert_eq!(h.raw::<i64>(out3), vec![-1, 0, 1]);
    let out4 = h.out(S::Bool, 1);
    h.call(Op::Isnan, &[out, out4, out4]).unwrap();
    assert_eq!(h.raw::<u8>(out4), vec![1, 0, 0]);
    assert!(h.call(Op::Sqrt, &[a, out2, out2]).is_err());
}

#[test]
fn gelu_forms() {
    let xs = [-3.0f32, -1.0, -0.5, 0.0, 0.3, 1.0, 2.5, f32::INFINITY, f32::NEG_INFINITY];
    let mut h = H::default();
    let a = h.f32(&[xs.len()], &xs);
    let none = h.string("none");
    let out = h.out(S::Float, 1);
    h.call(Op::Gelu, &[a, none, out, out]).unwrap();
    let got = h.raw::<f32>(out);
    // Values from torch.nn.functional.gelu (float32).
    let want = [
        -0.004_049_694_f32,
        -0.158_655_25,
        -0.154_268_77,
        0.0,
        0.185_373_44,
        0.841_344_7,
        2.484_475_8,
        f32::INFINITY,
        0.0,
    ];
    for (g, w) in got.iter().zip(want) {
        assert!(*g == w || (g - w).abs() <= 1e-6 * w.abs().max(1.0), "{g} vs {w}");
    }
    let tanh = h.string("tanh");
    let out2 = h.out(S::Float, 1);
    h.call(Op::Gelu, &[a, tanh, out2, out2]).unwrap();
    let got = h.raw::<f32>(out2);
    for (&x, g) in xs.iter().zip(got) {
        let xd = f64::from(x);
        let w = if x.is_infinite() {
            if x > 0.0 {
                xd
            } else {
                0.0
            }
        } else {
            0.5 * xd * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (xd + 0.044715 * xd.powi(3))).tanh())
        };
        assert!(f64::from(g) == w || (f64::from(g) - w).abs() <= 1e-6 * w.abs().max(1.0), "{g} vs {w}");
    }
}

#[test]
fn clamp_hardtanh_activations() {
    let xs = [-3.0f32, -0.5, 0.0, 0.5, 3.0, f32::NAN];
    let mut h = H::default();
    let a = h.f32(&[2, 3], &xs);
    let (lo, hi, none) = (h.dbl(-1.0), h.dbl(1.0), h.none());
    let out = h.out(S::Float, 2);
    h.call(Op::Clamp, &[a, lo, none, out, out]).unwrap();
    let got = h.raw::<f32>(out);
    assert_eq!(&got[..5], &[-1.0, -0.5, 0.0, 0.5, 3.0]);
    assert!(got[5].is_nan());
    let out2 = h.out(S::Float, 2);
    h.call(Op::Hardtanh, &[a, lo, hi, out2, out2]).unwrap();
    assert_eq!(&h.raw::<f32>(out2)[..5], &[-1.0, -0.5, 0.0, 0.5, 1.0]);
    let t_lo = h.f32(&[3], &[-2.0, 0.0, 1.0]);
    let out3 = h.out(S::Float, 2);
    h.call(Op::ClampTensor, &[a, t_lo, none, out3, out3]).unwrap();
    assert_eq!(&h.raw::<f32>(out3)[..5], &[-2.0, 0.0, 1.0, 0.5, 3.0]);
    let slope = h.dbl(0.1);
    let out4 = h.out(S::Float, 2);
    h.call(Op::LeakyRelu, &[a, slope, out4, out4]).unwrap();
    assert_eq!(&h.raw::<f32>(out4)[..5], &[-3.0 * 0.1, -0.5 * 0.1, 0.0, 0.5, 3.0]);
    let (one, two) = (h.int(1), h.dbl(2.0));
    let out5 = h.out(S::Float, 2);
    h.call(Op::Elu, &[a, two, one, one, out5, out5]).unwrap();
    let got = h.raw::<f32>(out5);
    assert_eq!(got[0], (-3.0f32).exp_m1() * 2.0);
    assert_eq!(got[4], 3.0);
    let dim = h.int(-1);
    let g = h.f32(&[2, 2], &[1.0, 2.0, 0.0, -1.0]);
    let out6 = h.out(S::Float, 2);
    h.call(Op::Glu, &[g, dim, out6, out6]).unwrap();
    assert_eq!(h.read(out6).1, vec![2, 1]);
    let got = h.raw::<f32>(out6);
    assert_eq!(got, vec![1.0 / (1.0 + (-2.0f32).exp()), 0.0]);
}

#[test]
fn logical_bitwise_masked_fill() {
    let mut h = H::default();
    let a = h.t(&TensorData::from_slice(vec![4], &[0i32, 1, 2, -1]).unwrap());
    let b = h.f32(&[4], &[0.0, 0.0, 3.0, f32::NAN]);
    let out = h.out(S::Bool, 1);
    h.call(Op::LogicalAnd, &[a, b, out, out]).unwrap();
    assert_eq!(h.raw::<u8>(out), vec![0, 0, 1, 1]);
    let out2 = h.out(S::Bool, 1);
    h.call(Op::LogicalXor, &[a, b, out2, out2]).unwrap();
    assert_eq!(h.raw::<u8>(out2), vec![0, 1, 0, 0]);
    let out3 = h.out(S::Bool, 1);
    h.call(Op::LogicalNot, &[a, out3, out3]).unwrap();
    assert_eq!(h.raw::<u8>(out3), vec![1, 0, 0, 0]);
    let six = h.int(6);
    let out4 = h.out(S::Int, 1);
    h.call(Op::BitwiseAndScalar, &[a, six, out4, out4]).unwrap();
    assert_eq!(h.raw::<i32>(out4), vec![0, 0, 2, 6]);
    let out5 = h.out(S::Int, 1);
    h.call(Op::BitwiseNot, &[a, out5, out5]).unwrap();
    assert_eq!(h.raw::<i32>(out5), vec![-1, -2, -3, 0]);
    let val = h.dbl(-9.0);
    let out6 = h.out(S::Float, 1);
    h.call(Op::MaskedFillScalar, &[b, out3, val, out6, out6]).unwrap();
    assert_eq!(h.raw::<f32>(out6)[..3], [-9.0, 0.0, 3.0]);
    assert!(h.call(Op::BitwiseOrTensor, &[a, b, out4, out4]).is_err());
}

#[test]
fn pow_and_division_errors() {
    let mut h = H::default();
    let a = h.t(&TensorData::from_slice(vec![4], &[2i64, -3, 0, 5]).unwrap());
    let e = h.int(3);
    let out = h.out(S::Long, 1);
    h.call(Op::PowTensorScalar, &[a, e, out, out]).unwrap();
    assert_eq!(h.raw::<i64>(out), vec![8, -27, 0, 125]);
    let f = h.f32(&[2], &[4.0, 9.0]);
    let half = h.dbl(0.5);
    let out2 = h.out(S::Float, 1);
    h.call(Op::PowTensorScalar, &[f, half, out2, out2]).unwrap();
    assert_eq!(h.raw::<f32>(out2), vec![2.0, 3.0]);
    let two = h.int(2);
    let out3 = h.out(S::Float, 1);
    h.call(Op::PowScalar, &[two, f, out3, out3]).unwrap();
    assert_eq!(h.raw::<f32>(out3), vec![16.0, 512.0]);
    let zero = h.int(0);
    let out4 = h.out(S::Long, 1);
    assert!(h.call(Op::RemainderScalar, &[a, zero, out4, out4]).is_err());
    assert!(h.call(Op::FloorDivide, &[a, a, out4, out4]).is_err());
    let out5 = h.out(S::Float, 1);
    h.call(Op::DivScalar, &[a, zero, out5, out5]).unwrap();
    let got = h.raw::<f32>(out5);
    assert_eq!(got[0], f32::INFINITY);
    assert!(got[2].is_nan());
}

#[test]
fn empty_and_zero_size_broadcast() {
    let mut h = H::default();
    let a = h.f32(&[0, 3], &[]);
    let b = h.f32(&[3], &[1.0, 2.0, 3.0]);
    let one = h.int(1);
    let out = h.out(S::Float, 2);
    h.call(Op::Add, &[a, b, one, out, out]).unwrap();
    assert_eq!(h.read(out).1, vec![0, 3]);
    let c = h.f32(&[2, 1], &[1.0, 2.0]);
    let d = h.f32(&[1, 0], &[]);
    let out2 = h.out(S::Float, 2);
    h.call(Op::Mul, &[c, d, out2, out2]).unwrap();
    assert_eq!(h.read(out2).1, vec![2, 0]);
    let e = h.f32(&[2, 3], &[0.0; 6]);
    let f = h.f32(&[4], &[0.0; 4]);
    let out3 = h.out(S::Float, 2);
    assert!(h.call(Op::Add, &[e, f, one, out3, out3]).is_err());
}
