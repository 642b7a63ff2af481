//! The int8 kernels against a scalar reference at every SIMD level: exact `i32` sums, the same
//! requantization arithmetic, odd sizes, padding, strides, dilation, threads.

use proptest::prelude::*;

use super::*;

/// `Σ (x - zx) · w` per output, then the epilogue's arithmetic written out.
fn requant_reference(acc: i64, ep: &Epilogue, c: usize) -> f32 {
    let y = acc as f32 * ep.mult[c] + ep.offset[c];
    match ep.kind {
        EpilogueKind::Int8 { zero_point, min, max } => {
            (crate::quantized::rint(y) + zero_point as f32).clamp(min as f32, max as f32)
        }
        EpilogueKind::Float { lo, hi } => y.max(lo).min(hi),
    }
}

fn values(n: usize, seed: u64) -> Vec<i8> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8 as i8
        })
        .collect()
}

/// Every level this CPU runs with every way of multiplying it runs there.
fn configs() -> Vec<(Level, Dot)> {
    Level::available().into_iter().flat_map(|l| Dot::available(l).into_iter().map(move |d| (l, d))).collect()
}

fn epilogue(n: usize, int8: bool, seed: u64) -> Epilogue {
    let w_scales: Vec<f64> = (0..n).map(|c| 0.002 + (c as f64 * 0.37 + seed as f64).sin().abs() * 0.01).collect();
    let bias: Vec<f32> = (0..n).map(|c| ((c as f32) * 0.71).cos() * 0.5).collect();
    if int8 {
        Epilogue::int8(0.05, &w_scales, Some(&bias), 0.08, -3, (-128, 127)).unwrap()
    } else {
        Epilogue::float(0.05, &w_scales, Some(&bias), (-1.0, 2.5)).unwrap()
    }
}

#[test]
fn dense_matches_reference_at_every_level() {
    for (level, dot) in configs() {
        for &(m, k, n) in &[(1, 1, 1), (3, 7, 5), (5, 33, 17), (9, 64, 40), (2, 255, 3), (301, 300, 19), (5, 256, 200)]
        {
            for (zx, int8) in [(0, true), (-7, true), (12, false)] {
                let x = values(m * k, (m * k) as u64);
                let w = values(n * k, 99);
                let ep = epilogue(n, int8, 3);
                let dense = QDense::with_dot(level, dot, k, n, &w, zx, ep.clone()).unwrap();
                for threads in [1, 3] {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    let got: Vec<f32> = if int8 {
                        let mut out = vec![0i8; m * n];
                        pool.install(|| dense.run(&x, &mut out, threads)).unwrap();
                        out.iter().map(|&v| f32::from(v)).collect()
                    } else {
                        let mut out = vec![0f32; m * n];
                        pool.install(|| dense.run(&x, &mut out, threads)).unwrap();
                        out
                    };
                    for i in 0..m {
                        for j in 0..n {
                            let acc: i64 =
                                (0..k).map(|p| (i64::from(x[i * k + p]) - zx as i64) * i64::from(w[j * k + p])).sum();
                            let want = requant_reference(acc, &ep, j);
                            assert_eq!(got[i * n + j], want, "{level:?} {dot:?} {m}x{k}x{n} zx {zx} ({i}, {j})");
                        }
                    }
                }
            }
        }
    }
}

/// NHWC reference convolution with the same requantization.
fn conv_reference(g: &Conv2dGeometry, x: &[i8], zx: i32, w: &[i8], ep: &Epilogue) -> Vec<f32> {
    let [oh, ow] = g.output().unwrap();
    let (c, o) = (g.in_channels, g.out_channels);
    let (cin_g, cout_g) = (c / g.groups, o / g.groups);
    let [ih, iw] = g.input;
    let mut out = vec![0f32; g.batch * oh * ow * o];
    for b in 0..g.batch {
        for y in 0..oh {
            for xo in 0..ow {
                for oc in 0..o {
                    let grp = oc / cout_g;
                    let mut acc = 0i64;
                    for ci in 0..cin_g {
                        for ky in 0..g.kernel[0] {
                            for kx in 0..g.kernel[1] {
                                let yy = (y * g.stride[0] + ky * g.dilation[0]) as i64 - g.padding[0] as i64;
                                let xx = (xo * g.stride[1] + kx * g.dilation[1]) as i64 - g.padding[1] as i64;
                                if yy < 0 || xx < 0 || yy >= ih as i64 || xx >= iw as i64 {
                                    continue;
                                }
                                let v = x[((b * ih + yy as usize) * iw + xx as usize) * c + grp * cin_g + ci];
                                let wv = w[((oc * cin_g + ci) * g.kernel[0] + ky) * g.kernel[1] + kx];
                                acc += (i64::from(v) - zx as i64) * i64::from(wv);
                            }
                        }
                    }
                    out[((b * oh + y) * ow + xo) * o + oc] = requant_reference(acc, ep, oc);
                }
            }
        }
    }
    out
}

fn check_conv((level, dot): (Level, Dot), g: Conv2dGeometry, zx: i32, threads: usize) {
    let [ih, iw] = g.input;
    let x = values(g.batch * ih * iw * g.in_channels, 5);
    let taps = g.kernel[0] * g.kernel[1];
    let w = values(g.out_channels * (g.in_channels / g.groups) * taps, 11);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    // Requantized into int8, and dequantized into f32.
    for int8 in [true, false] {
        let ep = epilogue(g.out_channels, int8, 1);
        let conv = QConv2d::with_dot(level, dot, g, &w, zx, ep.clone()).unwrap();
        let [oh, ow] = conv.output;
        let len = g.batch * oh * ow * g.out_channels;
        let got: Vec<f32> = if int8 {
            let mut out = vec![0i8; len];
            pool.install(|| conv.run(&x, &mut out, threads)).unwrap();
            out.iter().map(|&v| f32::from(v)).collect()
        } else {
            let mut out = vec![0f32; len];
            pool.install(|| conv.run(&x, &mut out, threads)).unwrap();
            out
        };
        let want = conv_reference(&g, &x, zx, &w, &ep);
        for (i, (&a, &b)) in got.iter().zip(&want).enumerate() {
            assert_eq!(a, b, "{level:?} {dot:?} {} {g:?} int8 {int8} at {i}", conv.strategy());
        }
    }
}

fn geometry(
    batch: usize,
    [h, w]: [usize; 2],
    (cin, cout, groups): (usize, usize, usize),
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
) -> Conv2dGeometry {
    Conv2dGeometry {
        batch,
        input: [h, w],
        in_channels: cin,
        out_channels: cout,
        kernel,
        stride,
        padding,
        dilation,
        groups,
    }
}

#[test]
fn convolutions_match_reference_at_every_level() {
    let cases = [
        geometry(1, [5, 6], (8, 20, 1), [1, 1], [1, 1], [0, 0], [1, 1]), // pointwise
        geometry(2, [7, 5], (3, 17, 1), [3, 3], [2, 2], [1, 1], [1, 1]), // stem-like
        geometry(1, [6, 6], (5, 9, 1), [3, 2], [1, 2], [2, 1], [2, 1]),  // odd kernel, dilation
        geometry(1, [9, 7], (24, 24, 24), [3, 3], [1, 1], [1, 1], [1, 1]), // depthwise
        geometry(2, [8, 8], (19, 19, 19), [3, 3], [2, 2], [1, 1], [1, 1]), // depthwise, stride 2
        geometry(1, [7, 6], (32, 32, 32), [5, 5], [1, 1], [2, 2], [2, 1]), // depthwise 5 × 5, dilated
        geometry(2, [5, 9], (48, 48, 48), [2, 2], [2, 1], [0, 1], [1, 1]), // depthwise, even taps
        geometry(1, [1, 11], (40, 40, 40), [1, 3], [1, 2], [0, 1], [1, 1]), // depthwise 1-D
        geometry(1, [1, 12], (4, 6, 1), [1, 3], [1, 1], [0, 1], [1, 1]), // 1-D
    ];
    for config in configs() {
        for g in cases {
            for (zx, threads) in [(0, 1), (-17, 3), (100, 2), (-128, 1), (127, 1)] {
                check_conv(config, g, zx, threads);
            }
        }
    }
}

#[test]
fn bad_arguments_are_errors() {
    let level = Level::detect();
    let ep = epilogue(4, true, 0);
    assert!(QDense::new(level, 3, 4, &[0; 11], 0, ep.clone()).is_err(), "weight too short");
    assert!(QDense::new(level, 3, 4, &[0; 12], 300, ep.clone()).is_err(), "zero point outside int8");
    assert!(QDense::new(level, 3, 5, &[0; 15], 0, ep.clone()).is_err(), "epilogue of the wrong width");
    assert!(QDense::new(level, MAX_K + 1, 1, &vec![0; MAX_K + 1], 0, epilogue(1, true, 0)).is_err(), "too long");
    let dense = QDense::new(level, 3, 4, &[1; 12], 0, ep.clone()).unwrap();
    assert!(dense.run(&[0i8; 7], &mut [0i8; 8], 1).is_err(), "input not whole rows");
    assert!(dense.run(&[0i8; 6], &mut [0f32; 8], 1).is_err(), "int8 epilogue into f32");
    let grouped = geometry(1, [4, 4], (4, 4, 2), [1, 1], [1, 1], [0, 0], [1, 1]);
    assert!(QConv2d::new(level, grouped, &[0; 8], 0, ep.clone()).is_err(), "grouped, not depthwise");
    assert!(Epilogue::int8(0.0, &[1.0], None, 1.0, 0, (-128, 127)).is_err(), "zero input scale");
    assert!(Epilogue::int8(1.0, &[f64::NAN], None, 1.0, 0, (-128, 127)).is_err(), "NaN weight scale");
    assert!(Epilogue::int8(1.0, &[1.0], None, 1.0, 0, (5, 4)).is_err(), "empty range");
    assert!(Epilogue::float(1.0, &[1.0], Some(&[0.0, 1.0]), (0.0, 1.0)).is_err(), "bias of the wrong length");
}

#[test]
fn dynamic_dense_quantizes_per_tensor_as_executorch_does() {
    let (m, k, n) = (3, 20, 7);
    let x: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 23) as f32 - 9.0) * 0.13).collect();
    let w = values(n * k, 4);
    let w_scales: Vec<f64> = (0..n).map(|c| 0.01 + c as f64 * 0.002).collect();
    let bias: Vec<f32> = (0..n).map(|c| c as f32 * 0.1 - 0.3).collect();
    let (scale, zp) = crate::quantized::choose_qparams(&x, -128, 127).unwrap();
    let p = crate::quantized::QuantParams::new(scale, i64::from(zp));
    let xq: Vec<i64> = x.iter().map(|&v| crate::quantized::quantize_value(v, p, -128, 127)).collect();
    for (level, dot) in configs() {
        let dense = QDenseDynamic::with_dot(level, dot, k, n, &w, &w_scales, Some(&bias), (-1.0, 1.0)).unwrap();
        let mut out = vec![0f32; m * n];
        dense.run(&x, &mut out, 1).unwrap();
        for i in 0..m {
            for j in 0..n {
                let acc: i64 = (0..k).map(|q| (xq[i * k + q] - i64::from(zp)) * i64::from(w[j * k + q])).sum();
                let want = (acc as f32 * ((scale as f32) as f64 * w_scales[j]) as f32 + bias[j]).clamp(-1.0, 1.0);
                assert_eq!(out[i * n + j], want, "{level:?} {dot:?} ({i}, {j})");
            }
        }
    }
}

#[test]
fn add_is_executorchs_dequantize_add_quantize() {
    use crate::quantized::{dequantize_value, quantize_value, DequantParams, QuantParams};
    let (a, b) = (values(1000, 1), values(1000, 2));
    let (sa, za, sb, zb, so, zo) = (0.031, -3, 0.047, 9, 0.052, -1);
    let p = AddParams::new((sa, za), (sb, zb), (so, zo), (-128, 127)).unwrap();
    for level in Level::available() {
        let mut out = vec![0i8; a.len()];
        add(level, &a, &b, p, &mut out, 1).unwrap();
        for i in 0..a.len() {
            let x: f32 = dequantize_value(a[i], DequantParams { scale: sa as f32, zero_point: za });
            let y: f32 = dequantize_value(b[i], DequantParams { scale: sb as f32, zero_point: zb });
            let want = quantize_value(x + y, QuantParams::new(so, i64::from(zo)), -128, 127);
            assert_eq!(i64::from(out[i]), want, "{level:?} at {i}");
        }
    }
    assert!(AddParams::new((0.0, 0), (1.0, 0), (1.0, 0), (-128, 127)).is_err());
    assert!(AddParams::new((1.0, 0), (1.0, 0), (1.0, 200), (-128, 127)).is_err());
    assert!(add(Level::Portable, &a, &b[..10], p, &mut vec![0; 1000], 1).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn dense_tiles_agree_with_portable(m in 1usize..12, k in 1usize..80, n in 1usize..40, zx in -128i32..128) {
        let x = values(m * k, (m + k) as u64);
        let w = values(n * k, n as u64);
        let ep = epilogue(n, true, 2);
        let mut want = vec![0i8; m * n];
        QDense::new(Level::Portable, k, n, &w, zx, ep.clone()).unwrap().run(&x, &mut want, 1).unwrap();
        for (level, dot) in configs() {
            let mut got = vec![0i8; m * n];
            QDense::with_dot(level, dot, k, n, &w, zx, ep.clone()).unwrap().run(&x, &mut got, 1).unwrap();
            prop_assert_eq!(&got, &want, "{:?} {:?}", level, dot);
        }
    }
}

#[test]
fn grouped_dense_matches_reference_at_every_level() {
    for level in Level::available() {
        for &(m, k, n, group) in &[
            (1, 32, 1, 32),
            (3, 64, 5, 32),
            (5, 96, 17, 32),
            (9, 128, 40, 64),
            (2, 6, 3, 2),
            (6, 256, 210, 32),
            (40, 512, 100, 32),
        ] {
            let x: Vec<f32> = values(m * k, 7)
                .iter()
                .enumerate()
                .map(|(i, &v)| f32::from(v) * 0.013 + (i % 5) as f32 * 0.1)
                .collect();
            // int4 values (stored as nibbles), and full int8 ones when the group is 64.
            let int4 = group != 64;
            let w: Vec<i8> = values(n * k, 11).iter().map(|&v| if int4 { v >> 4 } else { v }).collect();
            let groups = k / group;
            let scales: Vec<f32> = (0..n * groups).map(|i| 0.01 + (i as f32 * 0.37).sin().abs() * 0.02).collect();
            let bias: Vec<f32> = (0..n).map(|c| (c as f32 * 0.71).cos() * 0.5).collect();
            let dense = QDenseGrouped::new(level, k, n, &w, group, &scales, Some(&bias), (-1.5, 2.0)).unwrap();
            assert_eq!(dense.is_int4(), int4);
            // The reference: ExecuTorch's per-token parameters and quantization, exact group sums.
            let (mut xs, mut zs) = (vec![0f64; m], vec![0i64; m]);
            crate::quantized::choose_qparams_per_token(&x, k, -128, 127, &mut xs, &mut zs).unwrap();
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut got = vec![0f32; m * n];
                pool.install(|| dense.run(&x, &mut got, threads)).unwrap();
                for i in 0..m {
                    let p = crate::quantized::QuantParams::new(xs[i], zs[i]);
                    let q: Vec<i64> =
                        (0..k).map(|c| crate::quantized::quantize_value(x[i * k + c], p, -128, 127) - zs[i]).collect();
                    for j in 0..n {
                        let mut acc = 0f32;
                        for g in 0..groups {
                            let s: i64 = (g * group..(g + 1) * group).map(|c| q[c] * i64::from(w[j * k + c])).sum();
                            acc += s as f32 * scales[j * groups + g];
                        }
                        let want = (acc * xs[i] as f32 + bias[j]).clamp(-1.5, 2.0);
                        assert_eq!(got[i * n + j], want, "{level:?} {m}x{k}x{n}/{group} ({i}, {j})");
                    }
                }
            }
        }
    }
    assert!(QDenseGrouped::new(Level::Portable, 48, 2, &[0; 96], 32, &[1.0; 4], None, (0.0, 1.0)).is_err());
    assert!(QDenseGrouped::new(Level::Portable, 30, 2, &[0; 60], 3, &[1.0; 20], None, (0.0, 1.0)).is_err());
}

/// The longest sums of the largest terms stay exact with every way of multiplying: `±255 · 128`
/// over [`MAX_K`] terms (VNNI's `w + 128` form and its row- and column-sum corrections included).
#[test]
fn longest_extreme_sums_are_exact() {
    let k = MAX_K;
    for (xv, zx, wv) in [(127i8, -128, -128i8), (-128, 127, -128), (127, -128, 127), (-128, 127, 127)] {
        let (x, w) = (vec![xv; 2 * k], vec![wv; 3 * k]);
        let want = (i64::from(xv) - i64::from(zx)) * i64::from(wv) * k as i64;
        let ep = Epilogue::float(1.0, &[1.0; 3], None, (f32::NEG_INFINITY, f32::INFINITY)).unwrap();
        for (level, dot) in configs() {
            let dense = QDense::with_dot(level, dot, k, 3, &w, zx, ep.clone()).unwrap();
            let mut out = vec![0f32; 6];
            dense.run(&x, &mut out, 1).unwrap();
            assert!(out.iter().all(|&v| v == want as f32), "{level:?} {dot:?}: {out:?}, want {want}");
        }
    }
}
