//! Criterion benchmarks of Ferrite's hot kernels, each run as a one-operator program through the
//! runtime (so argument handling and output resizing are included, as in real models), at one
//! thread: `cargo bench --bench kernels`.
//!
//! Shapes are taken from mobilenet_v2 and small transformers.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use ferrite::op_support::Op;
use ferrite::program::{Program, ProgramBuilder, ScalarType};
use ferrite::runtime::{Method, Runtime, TensorData};

fn det(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) - 0.5
        })
        .collect()
}

fn method(b: ProgramBuilder) -> Method {
    let program = Arc::new(Program::from_vec(b.build().expect("builds")).expect("verifies"));
    Runtime::new().with_threads(1).expect("runtime").load_method(&program, "forward").expect("loads")
}

fn input(sizes: &[usize]) -> TensorData {
    TensorData::from_slice(sizes.to_vec(), &det(sizes.iter().product(), 7)).expect("input")
}

/// conv2d: input [1, cin, h, w], weight [cout, cin/groups, k, k].
fn conv(cin: usize, cout: usize, hw: usize, k: usize, stride: usize, groups: usize) -> (Method, TensorData) {
    let mut b = ProgramBuilder::new("forward");
    let x = b.input(ScalarType::Float, &[1, cin, hw, hw]);
    let wsizes = [cout, cin / groups, k, k];
    let w = b.constant_f32(&wsizes, &det(wsizes.iter().product(), 3));
    let bias = b.constant_f32(&[cout], &det(cout, 5));
    let pad = (k / 2) as i64;
    let (st, pd, dl) = (b.int_list(&[stride as i64; 2]), b.int_list(&[pad; 2]), b.int_list(&[1, 1]));
    let (tr, op, g) = (b.bool(false), b.int_list(&[0, 0]), b.int(groups as i64));
    let ohw = (hw + 2 * pad as usize - k) / stride + 1;
    let out = b.tensor(ScalarType::Float, &[1, cout, ohw, ohw]);
    b.call(Op::Convolution.name(), &[x, w, bias, st, pd, dl, tr, op, g, out, out]);
    b.output(out);
    (method(b), input(&[1, cin, hw, hw]))
}

fn linear(m: usize, k: usize, n: usize) -> (Method, TensorData) {
    let mut b = ProgramBuilder::new("forward");
    let x = b.input(ScalarType::Float, &[m, k]);
    let w = b.constant_f32(&[k, n], &det(k * n, 3));
    let bias = b.constant_f32(&[n], &det(n, 5));
    let (beta, alpha) = (b.int(1), b.int(1));
    let out = b.tensor(ScalarType::Float, &[m, n]);
    b.call(Op::Addmm.name(), &[bias, x, w, beta, alpha, out, out]);
    b.output(out);
    (method(b), input(&[m, k]))
}

fn unary(op: &str, sizes: &[usize], extra: impl FnOnce(&mut ProgramBuilder) -> Vec<usize>) -> (Method, TensorData) {
    let mut b = ProgramBuilder::new("forward");
    let x = b.input(ScalarType::Float, sizes);
    let mut args = vec![x];
    args.extend(extra(&mut b));
    let out = b.tensor(ScalarType::Float, sizes);
    args.extend([out, out]);
    b.call(op, &args);
    b.output(out);
    (method(b), input(sizes))
}

fn bench(c: &mut Criterion) {
    let mut cases: Vec<(&str, (Method, TensorData))> = vec![
        ("conv3x3_s2_3to32_224", conv(3, 32, 224, 3, 2, 1)),
        ("conv1x1_32to192_56", conv(32, 192, 56, 1, 1, 1)),
        ("dwconv3x3_192_56", conv(192, 192, 56, 3, 1, 192)),
        ("conv1x1_960to320_7", conv(960, 320, 7, 1, 1, 1)),
        ("addmm_16x256x1024", linear(16, 256, 1024)),
        ("softmax_64x256", unary(Op::Softmax.name(), &[64, 256], |b| vec![b.int(-1), b.bool(false)])),
        ("relu_1x96x112x112", unary(Op::Relu.name(), &[1, 96, 112, 112], |_| vec![])),
        ("gelu_16x1024", unary(Op::Gelu.name(), &[16, 1024], |b| vec![b.string("none")])),
    ];
    let mut group = c.benchmark_group("kernels");
    for (name, (m, x)) in &mut cases {
        group.bench_function(*name, |bench| {
            bench.iter(|| black_box(m.run(std::slice::from_ref(x)).expect("runs")));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
