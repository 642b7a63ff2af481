//! Reductions against plain reference implementations.

use crate::ops::harness::{close, rand_vec, H};
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
    close(&h.f64s(o).1, &rows.iter().map(|r| r.iter().map(|v| v.exp()).sum::<f64>().ln()).collect::<Vec<_>>(), 1e-5);
    let (o1, o2) = (h.out(S::Float, 1), h.out(S::Float, 1));
    h.call(Op::VarMeanCorrection, &[x, d, n, k, o1, o2]).expect("test");
    close(&h.f64s(o2).1, &rows.iter().map(|r| r.iter().sum::<f64>() / 4.0).collect::<Vec<_>>(), 1e-5);
}
