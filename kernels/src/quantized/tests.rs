//! Quantize, dequantize, choose_qparams and the embeddings against references in f64 and
//! ExecuTorch's own arithmetic.
#![allow(clippy::unwrap_used)]

use super::*;
use half::{bf16, f16};
use proptest::prelude::*;

/// Independent reference for quantize in f64 arithmetic (exact for moderate magnitudes).
fn ref_quantize(x: f32, scale: f64, zp: i64, qmin: i64, qmax: i64) -> i64 {
    let inv = 1.0f32 / scale as f32;
    let prod = (inv as f64 * x as f64) as f32; // single rounding of the product
    let r = (prod as f64).round_ties_even() as i64;
    (r + zp).max(qmin).min(qmax)
}

#[test]
fn rint_is_round_half_to_even() {
    let specials = [0.0f32, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 8_388_607.5, 8_388_608.0, 16_777_217.0, 1e30, -1e30];
    let edges = [f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE, f32::MAX, 4_194_303.5, -4_194_304.5];
    for v in specials.into_iter().chain(edges) {
        assert_eq!(rint(v).to_bits(), v.round_ties_even().to_bits(), "{v}");
    }
    assert!(rint(f32::NAN).is_nan());
    // Every float between -2^24 and 2^24 on a coarse grid, plus halves near integers.
    let mut state = 0x2545_f491_u32;
    for _ in 0..200_000 {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let v = f32::from_bits(state);
        if v.is_nan() {
            continue;
        }
        assert_eq!(rint(v).to_bits(), v.round_ties_even().to_bits(), "{v}");
        let h = (state % 40_000) as f32 / 2.0 - 10_000.0;
        assert_eq!(rint(h).to_bits(), h.round_ties_even().to_bits(), "{h}");
    }
}

#[test]
fn vectorised_quantize_equals_quantize_value() {
    // Random bit patterns (NaN, infinities, huge and tiny values) and ordinary values.
    let mut state = 0x9e37_79b9_u32;
    let xs: Vec<f32> = (0..20_000)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            if i % 2 == 0 {
                f32::from_bits(state)
            } else {
                (state % 100_000) as f32 / 97.0 - 500.0
            }
        })
        .collect();
    for ((scale, zp), level) in [(0.5, 3), (0.0123, -7), (1e-30, 0), (3.7, 100)]
        .into_iter()
        .flat_map(|p| crate::simd::Level::available().into_iter().map(move |l| (p, l)))
    {
        let p = QuantParams::new(scale, zp);
        let mut o8 = vec![0i8; xs.len()];
        quantize_at(level, &xs, &mut o8, &[p], xs.len(), -128, 127).unwrap();
        let mut ou = vec![0u8; xs.len()];
        quantize_at(level, &xs, &mut ou, &[p], xs.len(), 3, 250).unwrap();
        let mut o32 = vec![0i32; xs.len()];
        quantize_at(level, &xs, &mut o32, &[p], xs.len(), i32::MIN as i64, i32::MAX as i64).unwrap();
        for (i, &x) in xs.iter().enumerate() {
            assert_eq!(o8[i] as i64, quantize_value(x, p, -128, 127), "{x}");
            assert_eq!(ou[i] as i64, quantize_value(x, p, 3, 250), "{x}");
            assert_eq!(o32[i] as i64, quantize_value(x, p, i32::MIN as i64, i32::MAX as i64), "{x}");
        }
    }
    let mut o = [0i8; 2];
    assert!(quantize(&[0.0f32, 1.0], &mut o, &[QuantParams::new(1.0, 0)], 2, 5, 4).is_err());
    assert!(quantize(&[0.0f32, 1.0], &mut o, &[QuantParams::new(1.0, 0)], 2, -200, 4).is_err());
}

#[test]
fn quantize_rounds_half_to_even_and_clamps() {
    let p = QuantParams::new(0.5, 3);
    // x / 0.5 = 2x: 0.25 -> 0.5 -> 0; 0.75 -> 1.5 -> 2; -0.25 -> -0.5 -> -0; 1.25 -> 2.5 -> 2
    let xs = [0.25f32, 0.75, -0.25, 1.25, 100.0, -100.0];
    let mut out = [0i8; 6];
    quantize(&xs, &mut out, &[p], xs.len(), -128, 127).unwrap();
    assert_eq!(out, [3, 5, 3, 5, 127, -128]);
    let mut out = [0u8; 6];
    quantize(&xs, &mut out, &[p], xs.len(), 0, 10).unwrap();
    assert_eq!(out, [3, 5, 3, 5, 10, 0]);
}

#[test]
fn quantize_uses_float_reciprocal_not_division() {
    // scale 0.1: 1/0.1f = 10.0f exactly? (0.1f = 0.100000001490116; 1/0.1f rounds to 10.0f)
    // x = 0.35f: 0.35f * 10.0f = 3.5000000 (rounded) -> 4 (ties to even), while 0.35f/0.1 = 3.4999999... -> 3.
    let p = QuantParams::new(0.1, 0);
    assert_eq!(p.inv_scale, 10.0);
    assert_eq!(quantize_value(0.35f32, p, -128, 127), 4);
    assert_eq!(quantize_value(0.25f32, p, -128, 127), 2);
    assert_eq!(quantize_value(0.45f32, p, -128, 127), 4);
}

#[test]
fn quantize_nan_and_infinity_follow_x86() {
    let p = QuantParams::new(1.0, 0);
    assert_eq!(quantize_value(f32::NAN, p, -128, 127), -128);
    assert_eq!(quantize_value(f32::INFINITY, p, -128, 127), -128);
    assert_eq!(quantize_value(f32::NEG_INFINITY, p, -128, 127), -128);
    assert_eq!(quantize_value(1e30f32, p, 0, 255), 0);
}

#[test]
fn quantize_other_float_types() {
    let p = QuantParams::new(0.25, -2);
    assert_eq!(quantize_value(f16::from_f32(1.0), p, -128, 127), 2);
    assert_eq!(quantize_value(bf16::from_f32(-1.0), p, -128, 127), -6);
    // f64: the product is taken in double, then rounded to float.
    assert_eq!(quantize_value(0.125f64, p, -128, 127), -2); // 0.5 -> 0 (even)
    assert_eq!(quantize_value(0.375f64, p, -128, 127), 0); // 1.5 -> 2
}

#[test]
fn quantize_i32_adds_zero_point_in_float() {
    // 2^24 + 1 is not a float: (float)zp + 0 loses the 1.
    let p = QuantParams::new(1.0, (1 << 24) + 1);
    assert_eq!(quantize_value(0.0f32, p, i32::MIN as i64, i32::MAX as i64), 1 << 24);
}

#[test]
fn per_channel_quantize_and_dequantize() {
    // shape [2, 3], axis 1: inner 1, 3 channels.
    let x = [1.0f32, 2.0, 3.0, -1.0, -2.0, -3.0];
    let params = [QuantParams::new(1.0, 0), QuantParams::new(0.5, 1), QuantParams::new(2.0, -1)];
    let mut q = [0i8; 6];
    quantize(&x, &mut q, &params, 1, -128, 127).unwrap();
    assert_eq!(q, [1, 5, 1, -1, -3, -3]); // 3/2 = 1.5 -> 2, -1 -> 1; -3/2 = -1.5 -> -2, -1 -> -3
    let dp = [
        DequantParams { scale: 1.0, zero_point: 0 },
        DequantParams { scale: 0.5, zero_point: 1 },
        DequantParams { scale: 2.0, zero_point: -1 },
    ];
    let mut y = [0f32; 6];
    dequantize(&q, &mut y, &dp, 1, false).unwrap();
    assert_eq!(y, [1.0, 2.0, 4.0, -1.0, -2.0, -4.0]);
    // axis 0: inner 3, 2 channels.
    let params = [QuantParams::new(1.0, 0), QuantParams::new(0.5, 0)];
    quantize(&x, &mut q, &params, 3, -128, 127).unwrap();
    assert_eq!(q, [1, 2, 3, -2, -4, -6]);
    assert!(quantize(&x, &mut q, &params, 4, -128, 127).is_err());
}

#[test]
fn dequantize_formula() {
    let p = DequantParams { scale: 0.1f64 as f32, zero_point: 5 };
    let q = [0u8, 5, 255];
    let mut y = [0f32; 3];
    dequantize(&q, &mut y, &[p], 3, false).unwrap();
    assert_eq!(y, [-5.0 * 0.1f32, 0.0, 250.0 * 0.1f32]);
    // f64 output: float product widened.
    let mut y = [0f64; 3];
    dequantize(&q, &mut y, &[p], 3, false).unwrap();
    assert_eq!(y[2], (250.0f32 * 0.1f32) as f64);
    // 1-D per-channel path: double product.
    dequantize(&q, &mut y, &[p], 3, true).unwrap();
    assert_eq!(y[2], 250.0f64 * (0.1f32 as f64));
    // i32 wraps like C++ int arithmetic.
    let q = [i32::MIN];
    let mut y = [0f32; 1];
    dequantize(&q, &mut y, &[DequantParams { scale: 1.0, zero_point: 1 }], 1, false).unwrap();
    assert_eq!(y[0], i32::MAX as f32);
}

/// PyTorch/ExecuTorch reference values computed by hand.
#[test]
fn choose_qparams_known_values() {
    // [-1, 1] to [-128, 127]: scale 2/255, zero point: from_min = -128 + 127.5 = -0.5,
    // from_max = 127 - 127.5 = -0.5 -> nearbyint(-0.5) = -0.
    let (s, z) = choose_qparams(&[-1.0, 0.5, 1.0], -128, 127).unwrap();
    assert_eq!(s, 2.0 / 255.0);
    assert_eq!(z, 0);
    // [0, 2.55] to [0, 255]: min extended to 0 -> zero point 0.
    let (s, z) = choose_qparams(&[0.5, 2.55], 0, 255).unwrap();
    assert_eq!(s, 2.55f32 as f64 / 255.0);
    assert_eq!(z, 0);
    // all negative to u8: max extended to 0 -> zero point 255.
    let (s, z) = choose_qparams(&[-3.0, -1.0], 0, 255).unwrap();
    assert_eq!(s, 3.0 / 255.0);
    assert_eq!(z, 255);
}

#[test]
fn choose_qparams_degenerate_inputs() {
    // All zeros: scale 0 -> 0.1, zero point from min=max=0: qmin - 0 = -128 vs qmax = 127,
    // errors 128 vs 127 -> from_max = 127.
    let (s, z) = choose_qparams(&[0.0; 8], -128, 127).unwrap();
    assert_eq!((s, z), (0.1, 127));
    let (s, z) = choose_qparams(&[0.0; 8], 0, 255).unwrap();
    assert_eq!((s, z), (0.1, 0)); // errors 0 vs 255 -> from_min = 0
                                  // Constant positive input: range [0, c].
    let (s, z) = choose_qparams(&[3.0; 4], -128, 127).unwrap();
    assert_eq!(s, 3.0 / 255.0);
    assert_eq!(z, -128);
    // Tiny range: scale cut to 6.1e-5f, max rescaled.
    let (s, z) = choose_qparams(&[0.0, 1e-4], 0, 255).unwrap();
    assert_eq!(s, SMALL_SCALE_THRESHOLD as f64);
    assert_eq!(z, 0);
    let (s, z) = choose_qparams(&[-1e-4, 1e-4], -128, 127).unwrap();
    assert_eq!(s, SMALL_SCALE_THRESHOLD as f64);
    assert!(z == 0 || z == -1, "{z}");
    assert!(choose_qparams(&[], -128, 127).is_err());
    assert!(choose_qparams(&[f32::NAN, 1.0], -128, 127).is_err());
}

#[test]
fn min_max_like_std() {
    assert_eq!(min_max(&[3.0, -1.0, 2.0]), Some((-1.0, 3.0)));
    let (lo, hi) = min_max(&[f32::NAN, 1.0]).unwrap();
    assert!(lo.is_nan() && hi.is_nan());
    assert_eq!(min_max(&[1.0, f32::NAN, -1.0]), Some((-1.0, 1.0)));
}

#[test]
fn per_token_qparams() {
    let x = [-1.0f32, 1.0, 0.0, 0.0, 2.0, 4.0];
    let mut s = [0f64; 3];
    let mut z = [0i64; 3];
    choose_qparams_per_token(&x, 2, -128, 127, &mut s, &mut z).unwrap();
    assert_eq!(s, [2.0 / 255.0, 0.1, 4.0 / 255.0]);
    assert_eq!(z, [0, 127, -128]);
}

#[test]
fn embedding_kinds() {
    // 2 rows, 4 values per row.
    let w8 = [1u8, 2, 3, 4, 250, 251, 252, 253];
    let scales = [0.5f32, 2.0, 1.0, 1.0]; // 2 groups per row
    let zps = [1.0f32, 0.0, 250.0, 250.0];
    let mut out = [0f32; 8];
    embedding(EmbeddingWeight::U8, &w8, 2, 4, &scales, Some(&zps), 2, &[1, 0], &mut out).unwrap();
    assert_eq!(out, [0.0, 1.0, 2.0, 3.0, 0.0, 0.5, 6.0, 8.0]);
    let mut out = [0f32; 4];
    embedding(EmbeddingWeight::I8, &w8, 2, 4, &scales, None, 2, &[1], &mut out).unwrap();
    assert_eq!(out, [-6.0, -5.0, -4.0, -3.0]);
    // 4-bit: byte 0x9F = values (9-8, 15-8) = (1, 7); 0x08 = (-8, 0).
    let w4 = [0x9Fu8, 0x08];
    let mut out = [0f32; 4];
    embedding(EmbeddingWeight::Bits4, &w4, 1, 2, &[2.0f32], None, 1, &[0], &mut out).unwrap();
    assert_eq!(out, [2.0, 14.0, -16.0, 0.0]);
    // 2-bit: 0b11_10_01_00 = values (0-2, 1-2, 2-2, 3-2) lowest bits first.
    let w2 = [0b1110_0100u8];
    let mut out = [0f32; 4];
    embedding(EmbeddingWeight::Bits2, &w2, 1, 1, &[1.0f32], None, 1, &[0], &mut out).unwrap();
    assert_eq!(out, [-2.0, -1.0, 0.0, 1.0]);
    assert!(embedding(EmbeddingWeight::Bits2, &w2, 1, 1, &[1.0f32], None, 1, &[1], &mut out).is_err());
    assert!(embedding(EmbeddingWeight::Bits2, &w2, 1, 1, &[1.0f32], None, 1, &[-1], &mut out).is_err());
}

#[test]
fn quantized_add_is_dequant_add_quant() {
    let a = [10u8, 20, 255];
    let b = [5u8, 0, 255];
    let pa = DequantParams { scale: 0.5, zero_point: 10 };
    let pb = DequantParams { scale: 0.25, zero_point: 0 };
    let mut out = [0u8; 3];
    add(&a, pa, &b, pb, &mut out, QuantParams::new(0.5, 3), 0, 255).unwrap();
    // (0 + 1.25) / 0.5 = 2.5 -> 2 (+3); (5 + 0) / 0.5 = 10 (+3); (122.5 + 63.75) / 0.5 = 372.5 -> clamp
    assert_eq!(out, [5, 13, 255]);
}

fn qrange() -> impl Strategy<Value = (i64, i64)> {
    prop_oneof![Just((-128i64, 127i64)), Just((0, 255)), Just((-8, 7)), Just((0, 15)), Just((-32768, 32767))]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_quantize_matches_reference(
        xs in prop::collection::vec(-1000.0f32..1000.0, 1..64),
        scale in 1e-3f64..10.0,
        zp in -10i64..10,
        (qmin, qmax) in qrange(),
    ) {
        let mut out = vec![0i32; xs.len()];
        quantize(&xs, &mut out, &[QuantParams::new(scale, zp)], xs.len(), qmin, qmax).unwrap();
        for (&x, &q) in xs.iter().zip(&out) {
            prop_assert_eq!(q as i64, ref_quantize(x, scale, zp, qmin, qmax));
            prop_assert!(q as i64 >= qmin && q as i64 <= qmax);
        }
    }

    #[test]
    fn prop_round_trip_within_half_step(
        xs in prop::collection::vec(-100.0f32..100.0, 1..64),
        lo in -100.0f32..0.0,
        span in 1.0f32..200.0,
    ) {
        // Parameters covering [lo, lo + span] ∪ {0}; values inside that range round-trip within
        // half a step (plus float slack).
        let (scale, zp) = scale_and_zero_point(lo, lo + span, -128, 127).unwrap();
        let p = QuantParams::new(scale, zp as i64);
        let mut q = vec![0i8; xs.len()];
        quantize(&xs, &mut q, &[p], xs.len(), -128, 127).unwrap();
        let mut y = vec![0f32; xs.len()];
        dequantize(&q, &mut y, &[DequantParams { scale: scale as f32, zero_point: zp }], xs.len(), false).unwrap();
        let rmin = (-128 - zp) as f64 * scale;
        let rmax = (127 - zp) as f64 * scale;
        for (&x, &y) in xs.iter().zip(&y) {
            let x = x as f64;
            if x >= rmin && x <= rmax {
                prop_assert!((x - y as f64).abs() <= scale * 0.5 + 1e-4 * x.abs().max(1.0), "x {} y {} scale {}", x, y, scale);
            } else {
                // clamped to the nearest end
                let end = if x < rmin { rmin } else { rmax };
                prop_assert!((end - y as f64).abs() <= 1e-4 * end.abs().max(1.0));
            }
        }
    }

    #[test]
    fn prop_per_channel_every_axis(
        dims in prop::collection::vec(1usize..4, 1..4),
        axis_seed in 0usize..4,
        seed in prop::collection::vec(-50.0f32..50.0, 64),
    ) {
        let axis = axis_seed % dims.len();
        let n: usize = dims.iter().product();
        let x: Vec<f32> = (0..n).map(|i| seed[i % seed.len()]).collect();
        let channels = dims[axis];
        let inner: usize = dims[axis + 1..].iter().product();
        let scales: Vec<f64> = (0..channels).map(|c| 0.1 + c as f64 * 0.3).collect();
        let zps: Vec<i64> = (0..channels).map(|c| c as i64 - 1).collect();
        let params: Vec<QuantParams> = scales.iter().zip(&zps).map(|(&s, &z)| QuantParams::new(s, z)).collect();
        let mut q = vec![0u8; n];
        quantize(&x, &mut q, &params, inner, 0, 255).unwrap();
        // Reference: explicit multi-index walk.
        let strides = crate::contiguous_strides(&dims);
        for (i, (&xv, &qv)) in x.iter().zip(&q).enumerate() {
            let c = (i / strides[axis]) % dims[axis];
            prop_assert_eq!(qv as i64, ref_quantize(xv, scales[c], zps[c], 0, 255));
        }
    }

    #[test]
    fn prop_choose_qparams_matches_reference(
        xs in prop::collection::vec(prop_oneof![-1e3f32..1e3, -1e-3f32..1e-3, Just(0.0f32)], 1..64),
        (qmin, qmax) in qrange(),
    ) {
        let (scale, zp) = choose_qparams(&xs, qmin as i32, qmax as i32).unwrap();
        // Independent f64 transcription of PyTorch's ChooseQuantizationParams.
        let mut lo = xs.iter().copied().fold(f32::INFINITY, f32::min).min(0.0);
        let mut hi = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max).max(0.0);
        let mut s = (hi as f64 - lo as f64) / (qmax - qmin) as f64;
        if s as f32 == 0.0 || (1.0 / s as f32).is_infinite() { s = 0.1; }
        if s < 6.1e-5f32 as f64 {
            let org = s as f32;
            s = 6.1e-5f32 as f64;
            if lo == 0.0 { hi = 6.1e-5f32 * (qmax - qmin) as f32; }
            else if hi == 0.0 { lo = -6.1e-5f32 * (qmax - qmin) as f32; }
            else { lo *= 6.1e-5f32 / org; hi *= 6.1e-5f32 / org; }
        }
        prop_assert_eq!(scale, s);
        let zmin = qmin as f64 - lo as f64 / s;
        let zmax = qmax as f64 - hi as f64 / s;
        let init = if (qmin.abs() as f64 - (lo as f64 / s).abs()) < (qmax.abs() as f64 - (hi as f64 / s).abs()) { zmin } else { zmax };
        let z = if init < qmin as f64 { qmin } else if init > qmax as f64 { qmax } else { (init as f32).round_ties_even() as i64 };
        prop_assert_eq!(zp as i64, z);
        prop_assert!(scale > 0.0);
        prop_assert!(zp as i64 >= qmin && zp as i64 <= qmax);
        // Zero is exactly representable.
        let q0 = quantize_value(0.0f32, QuantParams::new(scale, zp as i64), qmin, qmax);
        prop_assert_eq!(q0, zp as i64);
    }
}

#[test]
fn groupwise_dequantize_rounds_in_the_scales_type() {
    let w: [i8; 8] = [-8, 7, 1, 0, 3, -3, 2, 5];
    let z = [1i64, -2];
    let s32 = [0.1f32, 0.3];
    let mut out = [0f32; 8];
    dequantize_per_channel_group(&w, &s32, Some(&z), 4, &mut out).unwrap();
    let want: Vec<f32> = w.iter().enumerate().map(|(i, &q)| (i64::from(q) - z[i / 4]) as f32 * s32[i / 4]).collect();
    assert_eq!(out.to_vec(), want);
    // f16 scales: the product is rounded to f16 before widening to the f32 output.
    let s16 = [f16::from_f32(0.1), f16::from_f32(0.3)];
    dequantize_per_channel_group(&w, &s16, None, 4, &mut out).unwrap();
    for (i, &q) in w.iter().enumerate() {
        assert_eq!(out[i], f16::from_f32(f32::from(q) * s16[i / 4].to_f32()).to_f32());
    }
    assert!(dequantize_per_channel_group(&w, &s32, None, 3, &mut out).is_err());
    assert!(dequantize_per_channel_group(&w, &s32[..1], None, 4, &mut out).is_err());
}

#[test]
fn mixed_linear_groups_and_ragged_tail() {
    // x [1, 5], w [2, 5], 2 groups → group size 3: columns {0,1,2} and {3,4}.
    let x = [1.0f32, 2.0, 3.0, 4.0, 5.0];
    let w: [i8; 10] = [1, 1, 1, 1, 1, -1, 2, 0, 1, -2];
    let s = [0.5f32, 2.0, 1.0, 0.25];
    let mut out = [0f32; 2];
    mixed_linear::<f32, f32>(&x, &w, &s, (1, 5, 2, 2), &mut out).unwrap();
    assert_eq!(out, [6.0 * 0.5 + 9.0 * 2.0, 3.0 * 1.0 + (4.0 - 10.0) * 0.25]);
    let mut bad = [0f32; 3];
    assert!(mixed_linear::<f32, f32>(&x, &w, &s, (1, 5, 2, 2), &mut bad).is_err());
    // mixed_mm: w [5, 2] with a scale per row.
    let w: [i8; 10] = [1, 0, 0, 1, 1, 1, -1, 0, 2, 2];
    let s = [1.0f32, 0.5, 2.0, 1.0, 0.1];
    mixed_mm::<f32>(&x, &w, &s, (1, 5, 2), &mut out).unwrap();
    assert_eq!(out[0], ((1.0f32 + 0.0) + 6.0 - 4.0) + 5.0 * 2.0 * 0.1);
}
