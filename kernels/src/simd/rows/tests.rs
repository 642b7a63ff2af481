//! Every row kernel at every level against the portable arithmetic: tails, NaN, ±∞.

use super::*;

fn data(n: usize, seed: usize) -> Vec<f32> {
    (0..n).map(|i| (((i * 37 + seed * 11) % 101) as f32 - 50.0) / 9.0).collect()
}

fn close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = (f64::from(g) - w).abs() <= tol * w.abs().max(1.0) || (g.is_nan() && w.is_nan());
        assert!(ok, "{what}[{i}]: {g} vs {w}");
    }
}

#[test]
fn binary_matches_scalar_arithmetic_with_scalars_and_tails() {
    for level in Level::available() {
        for n in [0, 1, 5, 8, 17, 33] {
            let (a, b) = (data(n, 1), data(n, 2));
            for op in [Binary::Add, Binary::Sub, Binary::Mul, Binary::Div, Binary::Max, Binary::Min] {
                let f = |x: f32, y: f32| match op {
                    Binary::Add => x + y,
                    Binary::Sub => x - y,
                    Binary::Mul => x * y,
                    Binary::Div => x / y,
                    Binary::Max => x.max(y),
                    Binary::Min => x.min(y),
                };
                let mut out = vec![0.0; n];
                binary(level, op, Side::Slice(&a), Side::Slice(&b), &mut out, f32::NEG_INFINITY, f32::INFINITY)
                    .unwrap();
                for i in 0..n {
                    assert_eq!(out[i].to_bits(), f(a[i], b[i]).to_bits(), "{level:?} {op:?} {n}");
                }
                binary(level, op, Side::Scalar(1.5), Side::Slice(&b), &mut out, -2.0, 2.0).unwrap();
                for i in 0..n {
                    assert_eq!(out[i], f(1.5, b[i]).clamp(-2.0, 2.0), "{level:?} {op:?} scalar lhs");
                }
                binary(level, op, Side::Slice(&a), Side::Scalar(-0.5), &mut out, 0.0, f32::INFINITY).unwrap();
                for i in 0..n {
                    assert_eq!(out[i], f(a[i], -0.5).max(0.0), "{level:?} {op:?} scalar rhs");
                }
            }
        }
        let mut out = [0.0; 3];
        assert!(binary(level, Binary::Add, Side::Slice(&[1.0; 2]), Side::Scalar(1.0), &mut out, 0.0, 1.0).is_err());
    }
}

#[test]
fn max_and_min_propagate_nan_from_either_side() {
    for level in Level::available() {
        let a = [f32::NAN, 1.0, 2.0, f32::NAN, 0.0, 0.0, 0.0, 0.0, 0.0];
        let b = [1.0, f32::NAN, 3.0, f32::NAN, 0.0, 0.0, 0.0, 0.0, f32::NAN];
        for op in [Binary::Max, Binary::Min] {
            let mut out = [0.0; 9];
            binary(level, op, Side::Slice(&a), Side::Slice(&b), &mut out, f32::NEG_INFINITY, f32::INFINITY).unwrap();
            assert!(out[0].is_nan() && out[1].is_nan() && out[3].is_nan() && out[8].is_nan(), "{level:?} {out:?}");
            assert!(!out[2].is_nan());
        }
    }
}

#[test]
fn activations_match_libm_within_a_few_ulp() {
    let x: Vec<f32> = (0..4001).map(|i| (i as f32 - 2000.0) / 100.0).chain([0.0, -0.0, 1e-6, -1e-6]).collect();
    for level in Level::available() {
        type Case = (Unary, fn(f64) -> f64, f64);
        let cases: [Case; 8] = [
            (Unary::Sigmoid, |x| 1.0 / (1.0 + (-x).exp()), 1e-6),
            (Unary::Silu, |x| x / (1.0 + (-x).exp()), 1e-6),
            (Unary::Tanh, f64::tanh, 1e-6),
            (Unary::Exp, f64::exp, 1e-6),
            (Unary::Gelu, |x| 0.5 * x * (1.0 + crate::elementwise::erf_f64(x / 2f64.sqrt())), 1e-6),
            (
                Unary::GeluTanh,
                |x| 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh()),
                1e-6,
            ),
            (Unary::Hardswish, |x| x * (x + 3.0).clamp(0.0, 6.0) / 6.0, 1e-6),
            (Unary::Hardsigmoid, |x| (x + 3.0).clamp(0.0, 6.0) / 6.0, 1e-6),
        ];
        for (op, f, tol) in cases {
            let mut out = vec![0.0; x.len()];
            unary(level, op, &x, &mut out).unwrap();
            let want: Vec<f64> = x.iter().map(|&v| f(f64::from(v))).collect();
            close(&out, &want, tol, &format!("{level:?} {op:?}"));
        }
        let mut out = vec![0.0; x.len()];
        unary(level, Unary::Clamp(0.0, 6.0), &x, &mut out).unwrap();
        assert!(out.iter().zip(&x).all(|(o, v)| *o == v.clamp(0.0, 6.0)));
        let mut nan = [0.0; 3];
        unary(level, Unary::Sigmoid, &[f32::NAN, 0.0, f32::NAN], &mut nan).unwrap();
        assert!(nan[0].is_nan() && nan[2].is_nan() && nan[1] == 0.5, "{level:?} {nan:?}");
        let inf = [f32::NEG_INFINITY, f32::INFINITY, -100.0];
        let mut out3 = [1.0; 3];
        unary(level, Unary::Exp, &inf, &mut out3).unwrap();
        assert_eq!((out3[0], out3[1], out3[2]), (0.0, f32::INFINITY, 0.0), "{level:?}");
        unary(level, Unary::Gelu, &inf, &mut out3).unwrap();
        assert_eq!((out3[0], out3[1]), (0.0, f32::INFINITY), "{level:?}");
        unary(level, Unary::Sigmoid, &inf, &mut out3).unwrap();
        assert_eq!((out3[0], out3[1]), (0.0, 1.0), "{level:?}");
        // As the portable kernel's x / (1 + e⁻ˣ): −∞ / ∞.
        unary(level, Unary::Silu, &inf, &mut out3).unwrap();
        assert!(out3[0].is_nan() && out3[1] == f32::INFINITY, "{level:?} {out3:?}");
        unary(level, Unary::Tanh, &inf, &mut out3).unwrap();
        assert_eq!((out3[0], out3[1]), (-1.0, 1.0), "{level:?}");
        unary(level, Unary::Tanh, &[-0.0, 0.0, f32::NAN], &mut out3).unwrap();
        assert!(out3[0] == 0.0 && out3[0].is_sign_negative() && out3[1].is_sign_positive(), "{level:?} {out3:?}");
        assert!(out3[2].is_nan());
        assert!(unary(level, Unary::Clamp(1.0, 0.0), &x, &mut out).is_err());
    }
}

/// Sigmoid and SiLU keep their relative accuracy where the values are tiny (large negative
/// `x`, down to f32's normal range), not only the absolute accuracy the test above checks.
#[test]
fn sigmoid_is_accurate_relative_to_its_value_down_to_the_normal_range() {
    let x: Vec<f32> = (0..=17_400).map(|i| -87.0 + i as f32 * 0.006).collect();
    for level in Level::available() {
        for op in [Unary::Sigmoid, Unary::Silu] {
            let mut out = vec![0.0; x.len()];
            unary(level, op, &x, &mut out).unwrap();
            for (&v, &got) in x.iter().zip(&out) {
                let v = f64::from(v);
                let want = if op == Unary::Silu { v } else { 1.0 } / (1.0 + (-v).exp());
                let rel = (f64::from(got) - want).abs() / want.abs().max(f64::MIN_POSITIVE);
                assert!(rel <= 4e-7 || want == 0.0, "{level:?} {op:?}({v}) = {got}, want {want} (relative {rel:e})");
            }
        }
        // Below the normal range the value is 0, never garbage.
        let mut out = [1.0f32; 3];
        unary(level, Unary::Sigmoid, &[-87.5, -100.0, -1e30], &mut out).unwrap();
        assert!(out.iter().all(|&o| (0.0..1.2e-38).contains(&o)), "{level:?} {out:?}");
    }
}

/// Safe softmax: a row of all −inf gives zeros; partly masked rows, NaN rows and plain rows
/// are the ordinary softmax (NaN stays NaN).
#[test]
fn safe_softmax_zeroes_fully_masked_rows_only() {
    let inf = f32::NEG_INFINITY;
    for level in Level::available() {
        for n in [1, 3, 8, 19] {
            let mut x = data(4 * n, n);
            x[..n].fill(inf); // row 0: every element masked
            x[n] = inf; // row 1: one masked
            x[2 * n + n / 2] = f32::NAN; // row 2: a NaN
            let (mut safe, mut plain) = (vec![1.0; 4 * n], vec![1.0; 4 * n]);
            softmax(level, &x, &mut safe, n, true).unwrap();
            softmax(level, &x, &mut plain, n, false).unwrap();
            assert!(safe[..n].iter().all(|&v| v == 0.0), "{level:?} {n}: {:?}", &safe[..n]);
            assert!(plain[..n].iter().all(|v| v.is_nan()), "{level:?} {n}: plain softmax of −inf is NaN");
            assert!(safe[2 * n..3 * n].iter().all(|v| v.is_nan()), "{level:?} {n}: NaN stays");
            for r in 1..4 {
                let masked = x[r * n..(r + 1) * n].iter().all(|&v| v == inf); // row 1 when n = 1
                for i in r * n..(r + 1) * n {
                    let (a, b) = (safe[i], plain[i]);
                    let ok = if masked { a == 0.0 } else { a == b || (a.is_nan() && b.is_nan()) };
                    assert!(ok, "{level:?} {n} [{i}]: {a} vs {b}");
                }
            }
        }
    }
}

#[test]
fn softmax_and_layer_norm_match_a_double_reference() {
    for level in Level::available() {
        for n in [1, 3, 8, 19, 64] {
            let rows = 3;
            let x = data(rows * n, n);
            let mut y = vec![0.0; rows * n];
            softmax(level, &x, &mut y, n, false).unwrap();
            let mut want = Vec::new();
            for r in x.chunks(n) {
                let m = r.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
                let s: f64 = r.iter().map(|&v| (f64::from(v) - m).exp()).sum();
                want.extend(r.iter().map(|&v| (f64::from(v) - m).exp() / s));
            }
            close(&y, &want, 1e-6, &format!("{level:?} softmax {n}"));

            let w = data(n, 5);
            let b = data(n, 6);
            let (mut mean, mut rstd) = (vec![0.0; rows], vec![0.0; rows]);
            layer_norm(level, &x, &mut y, n, Some(&w), Some(&b), 1e-5, &mut mean, &mut rstd).unwrap();
            let mut want = Vec::new();
            for (k, r) in x.chunks(n).enumerate() {
                let mu = r.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
                let var = r.iter().map(|&v| (f64::from(v) - mu).powi(2)).sum::<f64>() / n as f64;
                let rs = 1.0 / (var + 1e-5).sqrt();
                assert!((f64::from(mean[k]) - mu).abs() <= 1e-5 && (f64::from(rstd[k]) - rs).abs() <= 1e-3 * rs);
                want.extend(
                    r.iter().enumerate().map(|(j, &v)| (f64::from(v) - mu) * rs * f64::from(w[j]) + f64::from(b[j])),
                );
            }
            close(&y, &want, 1e-5, &format!("{level:?} layer_norm {n}"));
        }
        assert!(softmax(level, &[0.0; 5], &mut [0.0; 5], 2, false).is_err());
        assert!(layer_norm(level, &[0.0; 4], &mut [0.0; 4], 2, Some(&[1.0]), None, 1e-5, &mut [0.0; 2], &mut [0.0; 2])
            .is_err());
    }
}

#[test]
fn sums_over_an_axis_match_plain_loops() {
    for level in Level::available() {
        for (outer, r, inner) in [(1, 1, 1), (2, 7, 1), (3, 5, 9), (1, 49, 32), (2, 3, 17)] {
            let x = data(outer * r * inner, r);
            let mut y = vec![0.0; outer * inner];
            sum_axis(level, &x, outer, r, inner, r as f32, &mut y).unwrap();
            let mut want = vec![0.0f64; outer * inner];
            for o in 0..outer {
                for j in 0..r {
                    for i in 0..inner {
                        want[o * inner + i] += f64::from(x[(o * r + j) * inner + i]) / r as f64;
                    }
                }
            }
            close(&y, &want, 1e-5, &format!("{level:?} sum {outer}x{r}x{inner}"));
        }
        assert!(sum_axis(level, &[0.0; 5], 2, 3, 1, 1.0, &mut [0.0; 2]).is_err());
    }
}

/// Pooling of an NHWC image by brute force over the padded window.
fn reference_pool(x: &[f32], g: &Window, pool: Pool) -> Vec<f32> {
    let mut y = vec![0.0; g.oh * g.ow * g.c];
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            for c in 0..g.c {
                let (mut acc, mut inside, mut padded) = (if pool == Pool::Max { f32::NEG_INFINITY } else { 0.0 }, 0, 0);
                for ki in 0..g.kernel[0] {
                    for kj in 0..g.kernel[1] {
                        let py = oy * g.stride[0] + ki * g.dilation[0];
                        let px = ox * g.stride[1] + kj * g.dilation[1];
                        if py < g.h + 2 * g.padding[0] && px < g.w + 2 * g.padding[1] {
                            padded += 1;
                        }
                        let (iy, ix) = (py as isize - g.padding[0] as isize, px as isize - g.padding[1] as isize);
                        if iy < 0 || ix < 0 || iy as usize >= g.h || ix as usize >= g.w {
                            continue;
                        }
                        inside += 1;
                        let v = x[(iy as usize * g.w + ix as usize) * g.c + c];
                        acc = if pool == Pool::Max { acc.max(v) } else { acc + v };
                    }
                }
                y[(oy * g.ow + ox) * g.c + c] = match pool {
                    Pool::Max => acc,
                    Pool::Avg { divisor: Some(d), .. } => acc / d,
                    Pool::Avg { count_include_pad: true, .. } => acc / padded as f32,
                    Pool::Avg { .. } => acc / inside as f32,
                };
            }
        }
    }
    y
}

#[test]
fn pooling_rows_match_brute_force() {
    for level in Level::available() {
        for (h, w, c, k, s, p, d) in [
            (5, 6, 3, 2, 2, 0, 1),
            (7, 7, 20, 3, 2, 1, 1),
            (6, 5, 9, 3, 1, 1, 2),
            (4, 4, 16, 4, 4, 0, 1),
            (3, 4, 2, 5, 1, 2, 1),
            (3, 3, 5, 3, 2, 2, 2),
        ] {
            let oh = (h + 2 * p - d * (k - 1) - 1) / s + 1;
            let ow = (w + 2 * p - d * (k - 1) - 1) / s + 1;
            let g = Window { h, w, c, oh, ow, kernel: [k, k], stride: [s, s], padding: [p, p], dilation: [d, d] };
            let x = data(h * w * c, c);
            let pools = [
                Pool::Max,
                Pool::Avg { count_include_pad: true, divisor: None },
                Pool::Avg { count_include_pad: false, divisor: None },
                Pool::Avg { count_include_pad: false, divisor: Some(3.0) },
            ];
            for pool in pools {
                let want = reference_pool(&x, &g, pool);
                let mut y = vec![0.0; ow * c];
                for oy in 0..oh {
                    pool_row(level, &x, &g, oy, pool, &mut y, f32::NEG_INFINITY, f32::INFINITY).unwrap();
                    let want_row: Vec<f64> =
                        want[oy * ow * c..(oy + 1) * ow * c].iter().map(|&v| f64::from(v)).collect();
                    close(&y, &want_row, 1e-6, &format!("{level:?} {pool:?} {h}x{w}x{c} row {oy}"));
                }
            }
            let mut y = vec![0.0; ow * c];
            assert!(pool_row(level, &x, &g, oh, Pool::Max, &mut y, 0.0, 1.0).is_err());
            assert!(pool_row(level, &x[1..], &g, 0, Pool::Max, &mut y, 0.0, 1.0).is_err());
        }
    }
}

/// Found by the `blob_init` fuzz target: a window vastly larger than its image visited every tap
/// (10¹⁰ per output here). Only the taps inside the image are visited now.
#[test]
fn a_window_far_larger_than_the_image_costs_only_the_image() {
    for level in Level::available() {
        let (k, p) = (100_001, 50_000);
        let g = Window {
            h: 2,
            w: 3,
            c: 4,
            oh: 2,
            ow: 3,
            kernel: [k, k],
            stride: [1, 1],
            padding: [p, p],
            dilation: [1, 1],
        };
        let x = data(2 * 3 * 4, 4);
        // Every output's window covers the whole image (and, padded, k × k taps).
        let channel = |c: usize| x.iter().skip(c).step_by(4).copied();
        let max: Vec<f64> = (0..3 * 4).map(|i| f64::from(channel(i % 4).fold(f32::NEG_INFINITY, f32::max))).collect();
        let taps = (k * k) as f32;
        let avg: Vec<f64> = (0..3 * 4).map(|i| f64::from(channel(i % 4).sum::<f32>() / taps)).collect();
        for (pool, want) in [(Pool::Max, max), (Pool::Avg { count_include_pad: true, divisor: None }, avg)] {
            let mut y = vec![0.0; 3 * 4];
            pool_row(level, &x, &g, 0, pool, &mut y, f32::NEG_INFINITY, f32::INFINITY).unwrap();
            close(&y, &want, 1e-6, &format!("{level:?} {pool:?}"));
        }
    }
}
