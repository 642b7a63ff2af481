//! Every strategy against a direct reference; the in-order kernel bit for bit against
//! ExecuTorch's loop order.

#![allow(clippy::unwrap_used)]
use super::*;
use crate::norm::{batch_norm, batch_stats};
use proptest::prelude::*;

/// Direct-loop reference (f64), straight from the definition.
pub(crate) fn reference(x: &[f64], w: &[f64], bias: Option<&[f64]>, s: &ConvShape) -> Vec<f64> {
    let o = s.output().unwrap();
    let g = s.groups;
    let (cg_in, cg_out) = (s.in_channels / g, s.out_channels / g);
    let [id_, ih_, iw_] = s.input;
    let [od_, oh_, ow_] = o;
    let [kd_, kh_, kw_] = s.kernel;
    let mut y = vec![0f64; s.batch * s.out_channels * od_ * oh_ * ow_];
    let yi =
        |n: usize, c: usize, d: usize, h: usize, ww: usize| (((n * s.out_channels + c) * od_ + d) * oh_ + h) * ow_ + ww;
    let xi =
        |n: usize, c: usize, d: usize, h: usize, ww: usize| (((n * s.in_channels + c) * id_ + d) * ih_ + h) * iw_ + ww;
    for n in 0..s.batch {
        for oc in 0..s.out_channels {
            let b = bias.map_or(0.0, |b| b[oc]);
            for d in 0..od_ {
                for h in 0..oh_ {
                    for ww in 0..ow_ {
                        y[yi(n, oc, d, h, ww)] = b;
                    }
                }
            }
        }
        for gi in 0..g {
            for icg in 0..cg_in {
                for ocg in 0..cg_out {
                    for kd in 0..kd_ {
                        for kh in 0..kh_ {
                            for kw in 0..kw_ {
                                let (ic, oc) = (gi * cg_in + icg, gi * cg_out + ocg);
                                let wv = if s.transposed {
                                    w[((ic * cg_out + ocg) * kd_ + kd) * kh_ * kw_ + kh * kw_ + kw]
                                } else {
                                    w[((oc * cg_in + icg) * kd_ + kd) * kh_ * kw_ + kh * kw_ + kw]
                                };
                                if s.transposed {
                                    for d in 0..id_ {
                                        for h in 0..ih_ {
                                            for ww in 0..iw_ {
                                                let od = (d * s.stride[0] + kd * s.dilation[0]) as isize
                                                    - s.padding[0] as isize;
                                                let oh = (h * s.stride[1] + kh * s.dilation[1]) as isize
                                                    - s.padding[1] as isize;
                                                let ow = (ww * s.stride[2] + kw * s.dilation[2]) as isize
                                                    - s.padding[2] as isize;
                                                if (0..od_ as isize).contains(&od)
                                                    && (0..oh_ as isize).contains(&oh)
                                                    && (0..ow_ as isize).contains(&ow)
                                                {
                                                    y[yi(n, oc, od as usize, oh as usize, ow as usize)] +=
                                                        wv * x[xi(n, ic, d, h, ww)];
                                                }
                                            }
                                        }
                                    }
                                } else {
                                    for d in 0..od_ {
                                        for h in 0..oh_ {
                                            for ww in 0..ow_ {
                                                let id = (d * s.stride[0] + kd * s.dilation[0]) as isize
                                                    - s.padding[0] as isize;
                                                let ih = (h * s.stride[1] + kh * s.dilation[1]) as isize
                                                    - s.padding[1] as isize;
                                                let iw = (ww * s.stride[2] + kw * s.dilation[2]) as isize
                                                    - s.padding[2] as isize;
                                                if (0..id_ as isize).contains(&id)
                                                    && (0..ih_ as isize).contains(&ih)
                                                    && (0..iw_ as isize).contains(&iw)
                                                {
                                                    y[yi(n, oc, d, h, ww)] +=
                                                        wv * x[xi(n, ic, id as usize, ih as usize, iw as usize)];
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    y
}

fn data(n: usize, seed: u64) -> Vec<f64> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) % 2001) as f64 / 1000.0 - 1.0
        })
        .collect()
}

fn run_case(s: &ConvShape, with_bias: bool, threads: usize) {
    let o = s.output().unwrap();
    let xlen = s.batch * s.in_channels * s.input.iter().product::<usize>();
    let ylen = s.batch * s.out_channels * o.iter().product::<usize>();
    let x = data(xlen, 1);
    let w = data(s.weight_len(), 2);
    let b = data(s.out_channels, 3);
    let bias = with_bias.then_some(&b[..]);
    let want = reference(&x, &w, bias, s);
    // f64
    for level in Level::available() {
        let mut y = vec![f64::NAN; ylen];
        conv(&x, &w, bias, &mut y, s, threads, level).unwrap();
        for (a, b) in y.iter().zip(&want) {
            assert!((a - b).abs() < 1e-9, "f64 {s:?} at {level:?}: {a} vs {b}");
        }
    }
    // f32
    let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let wf: Vec<f32> = w.iter().map(|&v| v as f32).collect();
    let bf: Vec<f32> = b.iter().map(|&v| v as f32).collect();
    let mut yf = vec![f32::NAN; ylen];
    conv(&xf, &wf, with_bias.then_some(&bf[..]), &mut yf, s, threads, Level::detect()).unwrap();
    for (a, b) in yf.iter().zip(&want) {
        assert!((*a as f64 - b).abs() < 1e-3 * (1.0 + b.abs()), "f32 {s:?}: {a} vs {b}");
    }
}

fn shape2d(batch: usize, cin: usize, cout: usize, groups: usize, hw: [usize; 2], k: [usize; 2]) -> ConvShape {
    ConvShape {
        batch,
        in_channels: cin,
        out_channels: cout,
        groups,
        input: [1, hw[0], hw[1]],
        kernel: [1, k[0], k[1]],
        stride: [1, 1, 1],
        padding: [0, 0, 0],
        dilation: [1, 1, 1],
        output_padding: [0, 0, 0],
        transposed: false,
    }
}

#[test]
fn pointwise_general_depthwise() {
    run_case(&shape2d(2, 8, 16, 1, [5, 7], [1, 1]), true, 1);
    let mut s = shape2d(1, 3, 8, 1, [9, 9], [3, 3]);
    s.stride = [1, 2, 2];
    s.padding = [0, 1, 1];
    run_case(&s, true, 1);
    let mut s = shape2d(2, 6, 6, 6, [8, 7], [3, 3]);
    s.padding = [0, 1, 1];
    run_case(&s, true, 2);
    s.stride = [1, 2, 2];
    run_case(&s, false, 1);
    let mut s = shape2d(1, 4, 8, 4, [6, 6], [3, 3]);
    s.dilation = [1, 2, 2];
    s.padding = [0, 2, 1];
    run_case(&s, true, 1);
}

#[test]
fn grouped_3d_and_transposed() {
    let mut s = shape2d(1, 4, 6, 2, [5, 6], [2, 3]);
    s.input = [4, 5, 6];
    s.kernel = [2, 2, 3];
    s.padding = [1, 0, 1];
    run_case(&s, true, 1);
    let mut t = shape2d(2, 4, 6, 2, [3, 4], [3, 3]);
    t.transposed = true;
    t.stride = [1, 2, 2];
    t.padding = [0, 1, 1];
    t.output_padding = [0, 1, 0];
    run_case(&t, true, 2);
}

#[test]
fn rejects_bad_shapes() {
    let s = shape2d(1, 3, 4, 2, [4, 4], [3, 3]);
    let mut y = vec![0f32; 16];
    assert!(conv(&[0f32; 48], &[0f32; 54], None, &mut y, &s, 1, Level::detect()).is_err());
    let s = shape2d(1, 1, 1, 1, [2, 2], [3, 3]);
    assert!(s.output().is_err());
    let s = shape2d(1, 1, 1, 1, [4, 4], [3, 3]);
    assert!(conv(&[0f32; 16], &[0f32; 9], None, &mut [0f32; 3], &s, 1, Level::detect()).is_err());
}

#[test]
fn batch_norm_matches_formula() {
    let x: Vec<f32> = (0..24).map(|i| i as f32 * 0.25 - 2.0).collect();
    let mean = [0.5f32, -1.0, 2.0];
    let var = [1.0f32, 4.0, 0.25];
    let w = [1.0f32, 2.0, -1.0];
    let b = [0.0f32, 1.0, 0.5];
    let mut y = vec![0f32; 24];
    batch_norm(&x, &mean, &var, Some(&w), Some(&b), 1e-5, 3, 4, &mut y).unwrap();
    for (i, (&a, &v)) in y.iter().zip(&x).enumerate() {
        let c = (i / 4) % 3;
        let inv = (1.0 / ((var[c] as f64) + 1e-5).sqrt()) as f32;
        assert_eq!(a, (v - mean[c]) * inv * w[c] + b[c]);
    }
    let (m, inv) = batch_stats(&x, 3, 4, 0.0).unwrap();
    assert!((m[0] + 0.125).abs() < 1e-6, "{m:?}");
    assert!(inv.iter().all(|v| v.is_finite()));
}

/// ExecuTorch's portable `conv2d_impl` loop (extended to 3-D), in f32: per output, a sum
/// over (channel, depth, row, column) in that order skipping padded taps, bias last.
fn executorch_order(x: &[f32], w: &[f32], bias: Option<&[f32]>, s: &ConvShape) -> Vec<f32> {
    let o = s.output().unwrap();
    let (cg_in, cg_out) = (s.in_channels / s.groups, s.out_channels / s.groups);
    let [id_, ih_, iw_] = s.input;
    let [kd_, kh_, kw_] = s.kernel;
    let mut y = Vec::new();
    for n in 0..s.batch {
        for oc in 0..s.out_channels {
            let g = oc / cg_out;
            for od in 0..o[0] {
                for oh in 0..o[1] {
                    for ow in 0..o[2] {
                        let mut acc = 0.0f32;
                        for c in 0..cg_in {
                            for kd in 0..kd_ {
                                let d = (od * s.stride[0] + kd * s.dilation[0]) as isize - s.padding[0] as isize;
                                for kh in 0..kh_ {
                                    let h = (oh * s.stride[1] + kh * s.dilation[1]) as isize - s.padding[1] as isize;
                                    for kw in 0..kw_ {
                                        let ww =
                                            (ow * s.stride[2] + kw * s.dilation[2]) as isize - s.padding[2] as isize;
                                        let inside = (0..id_ as isize).contains(&d)
                                            && (0..ih_ as isize).contains(&h)
                                            && (0..iw_ as isize).contains(&ww);
                                        if inside {
                                            let xv = x[(((n * s.in_channels + g * cg_in + c) * id_ + d as usize)
                                                * ih_
                                                + h as usize)
                                                * iw_
                                                + ww as usize];
                                            let wv = w[(((oc * cg_in + c) * kd_ + kd) * kh_ + kh) * kw_ + kw];
                                            acc += xv * wv;
                                        }
                                    }
                                }
                            }
                        }
                        if let Some(b) = bias {
                            acc += b[oc];
                        }
                        y.push(acc);
                    }
                }
            }
        }
    }
    y
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn in_order_conv_is_bit_identical_to_executorch_loop(
        batch in 1usize..3, g in 1usize..4, cin_g in 1usize..5, cout_g in 1usize..3, three_d in any::<bool>(),
        d in 1usize..4, h in 1usize..9, wdt in 1usize..12, k in proptest::array::uniform3(1usize..4),
        st in proptest::array::uniform3(1usize..4), pd in proptest::array::uniform3(0usize..3),
        dl in proptest::array::uniform3(1usize..3), bias in any::<bool>(), threads in 1usize..3, seed in 0u64..1000,
    ) {
        let mut s = shape2d(batch, g * cin_g, g * cout_g, g, [h, wdt], [k[1], k[2]]);
        s.stride = [1, st[1], st[2]];
        s.padding = [0, pd[1], pd[2]];
        s.dilation = [1, dl[1], dl[2]];
        if three_d {
            s.input[0] = d;
            s.kernel[0] = k[0];
            s.stride[0] = st[0];
            s.padding[0] = pd[0];
            s.dilation[0] = dl[0];
        }
        prop_assume!(s.output().is_ok());
        // Values with long mantissas, so any change of summation order shows.
        let x: Vec<f32> = data(s.batch * s.in_channels * s.input.iter().product::<usize>(), seed)
            .iter().map(|v| (*v * 0.7371) as f32).collect();
        let w: Vec<f32> = data(s.weight_len(), seed + 1).iter().map(|v| (*v * 0.3119) as f32).collect();
        let b: Vec<f32> = (0..s.out_channels).map(|i| i as f32 * 0.173 - 0.25).collect();
        let b = bias.then_some(b.as_slice());
        let want = executorch_order(&x, &w, b, &s);
        for level in Level::available() {
            let mut y = vec![f32::NAN; want.len()];
            conv_in_order(&x, &w, b, &mut y, &s, threads, level).unwrap();
            prop_assert!(y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{s:?} at {level:?}");
        }
    }
}

#[test]
fn in_order_conv_rejects_transposed_and_bad_lengths() {
    let mut s = shape2d(1, 2, 2, 1, [3, 3], [2, 2]);
    let (x, w, mut y) = (vec![1.0f32; 18], vec![1.0f32; 16], vec![0.0f32; 8]);
    assert!(conv_in_order(&x, &w, None, &mut y, &s, 1, Level::detect()).is_ok());
    assert!(conv_in_order(&x[..17], &w, None, &mut y, &s, 1, Level::detect()).is_err());
    s.transposed = true;
    assert!(conv_in_order(&x, &w, None, &mut y, &s, 1, Level::detect()).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn conv_matches_reference(
        batch in 1usize..3, g in 1usize..4, cin_g in 1usize..4, cout_g in 1usize..4,
        one_d in any::<bool>(), h in 1usize..9, wdt in 1usize..10, kh in 1usize..4, kw in 1usize..4,
        sh in 1usize..4, sw in 1usize..4, ph in 0usize..3, pw in 0usize..3, dh in 1usize..3, dw in 1usize..3,
        transposed in any::<bool>(), oph in 0usize..3, opw in 0usize..3, bias in any::<bool>(), threads in 1usize..3,
    ) {
        let (h, kh, sh, ph, dh) = if one_d { (1, 1, 1, 0, 1) } else { (h, kh, sh, ph, dh) };
        let mut s = shape2d(batch, g * cin_g, g * cout_g, g, [h, wdt], [kh, kw]);
        s.stride = [1, sh, sw];
        s.padding = [0, ph, pw];
        s.dilation = [1, dh, dw];
        s.transposed = transposed;
        if transposed {
            s.output_padding = [0, oph % sh.max(dh), opw % sw.max(dw)];
        }
        prop_assume!(s.output().is_ok());
        run_case(&s, bias, threads);
    }
}
