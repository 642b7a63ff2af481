//! View and copy operators, run as one-operator programs and compared with plain reference
//! implementations over random shapes (including size-1 and size-0 dimensions).

use std::sync::Arc;

use ferrite_program::{Program, ProgramBuilder, ScalarType};
use ferrite_runtime::{Runtime, TensorData};
use proptest::prelude::*;

/// Runs a one-method program built by `build` (which returns the output value) on `inputs`.
fn run(
    build: impl FnOnce(&mut ProgramBuilder) -> Vec<usize>,
    inputs: &[TensorData],
) -> Result<Vec<TensorData>, String> {
    let mut b = ProgramBuilder::new("forward");
    for out in build(&mut b) {
        b.output(out);
    }
    let program = Arc::new(Program::from_vec(b.build().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?);
    let mut method = Runtime::new()
        .with_threads(1)
        .map_err(|e| e.to_string())?
        .load_method(&program, "forward")
        .map_err(|e| e.to_string())?;
    method.run(inputs).map_err(|e| e.to_string())
}

fn iota(sizes: &[usize]) -> TensorData {
    let n: usize = sizes.iter().product();
    TensorData::from_slice(sizes.to_vec(), &(0..n).map(|i| i as f32).collect::<Vec<_>>()).expect("tensor")
}

fn strides(sizes: &[usize]) -> Vec<usize> {
    let mut s = vec![1; sizes.len()];
    for i in (0..sizes.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * sizes[i + 1];
    }
    s
}

/// Multi-index of flat index `i` in `sizes`.
fn unravel(mut i: usize, sizes: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; sizes.len()];
    for d in (0..sizes.len()).rev() {
        idx[d] = i % sizes[d];
        i /= sizes[d];
    }
    idx
}

fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..4, 1..5)
}

fn values(t: &TensorData) -> Vec<f32> {
    t.as_slice::<f32>().expect("f32").to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn permute_matches_reference(sizes in shape(), seed in any::<u64>()) {
        let rank = sizes.len();
        let mut perm: Vec<usize> = (0..rank).collect();
        // A seeded Fisher-Yates shuffle.
        let mut s = seed;
        for i in (1..rank).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            perm.swap(i, (s >> 33) as usize % (i + 1));
        }
        let out_sizes: Vec<usize> = perm.iter().map(|&p| sizes[p]).collect();
        let x = iota(&sizes);
        let got = run(|b| {
            let i = b.input(ScalarType::Float, &sizes);
            let dims = b.int_list(&perm.iter().map(|&p| p as i64).collect::<Vec<_>>());
            let o = b.tensor(ScalarType::Float, &out_sizes);
            b.call("aten::permute_copy.out", &[i, dims, o, o]);
            vec![o]
        }, std::slice::from_ref(&x)).expect("runs");
        let st = strides(&sizes);
        let n: usize = out_sizes.iter().product();
        let want: Vec<f32> = (0..n).map(|k| {
            let idx = unravel(k, &out_sizes);
            idx.iter().zip(&perm).map(|(i, &p)| i * st[p]).sum::<usize>() as f32
        }).collect();
        prop_assert_eq!(got[0].sizes(), &out_sizes[..]);
        prop_assert_eq!(values(&got[0]), want);
    }

    #[test]
    fn expand_matches_reference(sizes in shape(), lead in 0usize..2, grow in prop::collection::vec(1usize..4, 5)) {
        // Every size-1 dimension grows; new leading dimensions are added.
        let mut out_sizes: Vec<usize> = (0..lead).map(|k| grow[k]).collect();
        out_sizes.extend(sizes.iter().enumerate().map(|(k, &s)| if s == 1 { grow[k] } else { s }));
        let x = iota(&sizes);
        let got = run(|b| {
            let i = b.input(ScalarType::Float, &sizes);
            let want = b.int_list(&out_sizes.iter().map(|&s| s as i64).collect::<Vec<_>>());
            let implicit = b.bool(false);
            let o = b.tensor(ScalarType::Float, &out_sizes);
            b.call("aten::expand_copy.out", &[i, want, implicit, o, o]);
            vec![o]
        }, std::slice::from_ref(&x)).expect("runs");
        let st = strides(&sizes);
        let n: usize = out_sizes.iter().product();
        let want: Vec<f32> = (0..n).map(|k| {
            let idx = unravel(k, &out_sizes);
            idx[lead..].iter().zip(&sizes).zip(&st).map(|((&i, &s), &t)| if s == 1 { 0 } else { i * t }).sum::<usize>() as f32
        }).collect();
        prop_assert_eq!(values(&got[0]), want);
    }

    #[test]
    fn slice_matches_reference(sizes in shape(), dim in 0usize..4, start in -5i64..5, end in -5i64..6, step in 1i64..4) {
        let dim = dim % sizes.len();
        let n = sizes[dim] as i64;
        let norm = |v: i64| (if v < 0 { v + n } else { v }).clamp(0, n);
        let (s, e) = (norm(start), norm(end).max(norm(start)));
        let kept: Vec<usize> = (s..e).step_by(step as usize).map(|v| v as usize).collect();
        let mut out_sizes = sizes.clone();
        out_sizes[dim] = kept.len();
        let x = iota(&sizes);
        let got = run(|b| {
            let i = b.input(ScalarType::Float, &sizes);
            let d = b.int(dim as i64);
            let (st, en, sp) = (b.int(start), b.int(end), b.int(step));
            let o = b.tensor(ScalarType::Float, &out_sizes);
            b.call("aten::slice_copy.Tensor_out", &[i, d, st, en, sp, o, o]);
            vec![o]
        }, std::slice::from_ref(&x)).expect("runs");
        let st = strides(&sizes);
        let total: usize = out_sizes.iter().product();
        let want: Vec<f32> = (0..total).map(|k| {
            let mut idx = unravel(k, &out_sizes);
            idx[dim] = kept[idx[dim]];
            idx.iter().zip(&st).map(|(i, s)| i * s).sum::<usize>() as f32
        }).collect();
        prop_assert_eq!(values(&got[0]), want);
    }

    #[test]
    fn cat_matches_reference(base in shape(), dim in 0usize..4, extra in prop::collection::vec(0usize..3, 3)) {
        let dim = dim % base.len();
        let shapes: Vec<Vec<usize>> = extra.iter().map(|&e| { let mut s = base.clone(); s[dim] = e; s }).collect();
        let inputs: Vec<TensorData> = shapes.iter().enumerate().map(|(k, s)| {
            let n: usize = s.iter().product();
            TensorData::from_slice(s.clone(), &(0..n).map(|i| (k * 1000 + i) as f32).collect::<Vec<_>>()).expect("t")
        }).collect();
        let mut out_sizes = base.clone();
        out_sizes[dim] = extra.iter().sum();
        let got = run(|b| {
            let ids: Vec<usize> = shapes.iter().map(|s| b.input(ScalarType::Float, s)).collect();
            let list = b.tensor_list(&ids);
            let d = b.int(dim as i64 - base.len() as i64); // negative dim
            let o = b.tensor(ScalarType::Float, &out_sizes);
            b.call("aten::cat.out", &[list, d, o, o]);
            vec![o]
        }, &inputs).expect("runs");
        let total: usize = out_sizes.iter().product();
        let want: Vec<f32> = (0..total).map(|k| {
            let mut idx = unravel(k, &out_sizes);
            let mut which = 0;
            while idx[dim] >= extra[which] { idx[dim] -= extra[which]; which += 1; }
            let st = strides(&shapes[which]);
            (which * 1000 + idx.iter().zip(&st).map(|(i, s)| i * s).sum::<usize>()) as f32
        }).collect();
        prop_assert_eq!(values(&got[0]), want);
    }
}

#[test]
fn select_split_squeeze_and_view() {
    let x = iota(&[2, 3, 4]);
    let got = run(
        |b| {
            let i = b.input(ScalarType::Float, &[2, 3, 4]);
            let (d, idx) = (b.int(1), b.int(-1));
            let sel = b.tensor(ScalarType::Float, &[2, 4]);
            b.call("aten::select_copy.int_out", &[i, d, idx, sel, sel]);
            let sizes = b.int_list(&[1, 3]);
            let d2 = b.int(0);
            let (s0, s1) = (b.tensor(ScalarType::Float, &[1, 2]), b.tensor(ScalarType::Float, &[3, 2]));
            let outs = b.tensor_list(&[s0, s1]);
            let sel_t = b.tensor(ScalarType::Float, &[4, 2]);
            let dims = b.int_list(&[1, 0]);
            b.call("aten::permute_copy.out", &[sel, dims, sel_t, sel_t]);
            let split_sizes = sizes;
            b.call("aten::split_with_sizes_copy.out", &[sel_t, split_sizes, d2, outs]);
            let shape = b.int_list(&[-1]);
            let flat = b.tensor(ScalarType::Float, &[6]);
            b.call("aten::view_copy.out", &[s1, shape, flat, flat]);
            let sq_dims = b.int_list(&[0]);
            let sq = b.tensor(ScalarType::Float, &[2]);
            b.call("aten::squeeze_copy.dims_out", &[s0, sq_dims, sq, sq]);
            vec![sel, flat, sq]
        },
        &[x],
    )
    .expect("runs");
    assert_eq!(values(&got[0]), vec![8.0, 9.0, 10.0, 11.0, 20.0, 21.0, 22.0, 23.0]);
    // sel^T = [[8, 20], [9, 21], [10, 22], [11, 23]]; rows 1..4, flattened.
    assert_eq!(values(&got[1]), vec![9.0, 21.0, 10.0, 22.0, 11.0, 23.0]);
    assert_eq!(values(&got[2]), vec![8.0, 20.0]);
}

#[test]
fn constant_pad_and_dtype_conversion() {
    let x = iota(&[2, 3]);
    let got = run(
        |b| {
            let i = b.input(ScalarType::Float, &[2, 3]);
            let pad = b.int_list(&[1, -1, 0, 1]); // last dim: 1 before, crop 1 after; dim 0: 1 after
            let v = b.double(-1.0);
            let p = b.tensor(ScalarType::Float, &[3, 3]);
            b.call("aten::constant_pad_nd.out", &[i, pad, v, p, p]);
            let nb = b.bool(false);
            let none = b.none();
            let l = b.tensor(ScalarType::Long, &[3, 3]);
            b.call("dim_order_ops::_to_dim_order_copy.out", &[p, nb, none, l, l]);
            vec![p, l]
        },
        &[x],
    )
    .expect("runs");
    assert_eq!(values(&got[0]), vec![-1.0, 0.0, 1.0, -1.0, 3.0, 4.0, -1.0, -1.0, -1.0]);
    assert_eq!(got[1].as_slice::<i64>().expect("i64"), &[-1, 0, 1, -1, 3, 4, -1, -1, -1]);
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let x = iota(&[2, 3]);
    // A reshape to the wrong element count.
    let err = run(
        |b| {
            let i = b.input(ScalarType::Float, &[2, 3]);
            let shape = b.int_list(&[4, 2]);
            let o = b.tensor(ScalarType::Float, &[4, 2]);
            b.call("aten::view_copy.out", &[i, shape, o, o]);
            vec![o]
        },
        std::slice::from_ref(&x),
    )
    .expect_err("must fail");
    assert!(err.contains("aten::view_copy.out"), "{err}");
    // Select out of range, permute with a repeated dimension, too few arguments.
    for (op, build) in [
        (
            "select",
            Box::new(|b: &mut ProgramBuilder, i: usize| {
                let (d, idx) = (b.int(0), b.int(5));
                let o = b.tensor(ScalarType::Float, &[3]);
                b.call("aten::select_copy.int_out", &[i, d, idx, o, o]);
                o
            }) as Box<dyn Fn(&mut ProgramBuilder, usize) -> usize>,
        ),
        (
            "permute",
            Box::new(|b: &mut ProgramBuilder, i: usize| {
                let dims = b.int_list(&[0, 0]);
                let o = b.tensor(ScalarType::Float, &[2, 3]);
                b.call("aten::permute_copy.out", &[i, dims, o, o]);
                o
            }),
        ),
        (
            "arity",
            Box::new(|b: &mut ProgramBuilder, i: usize| {
                b.call("aten::cat.out", &[i]);
                i
            }),
        ),
    ] {
        let result = run(
            |b| {
                let i = b.input(ScalarType::Float, &[2, 3]);
                vec![build(b, i)]
            },
            std::slice::from_ref(&x),
        );
        assert!(result.is_err(), "{op} should fail");
    }
}
