//! Convolution kernels over MobileNet V2's layer shapes (224×224, batch 1, one thread).
//!
//! `cargo bench -p ferrite-runtime --bench conv` — `all_layers` is the sum over the network's
//! 52 convolutions; `pointwise`, `depthwise` and `stem` split it by kind. `mobilenet_v2/…` is the
//! portable NCHW kernel; `nhwc_<level>/…` is the Ferrite backend's channels-last kernel with
//! weights packed for each SIMD level this CPU runs (AVX-512, AVX2+FMA, portable).
//! `expand_dw_<level>/…` times a pointwise expansion and the depthwise convolution after it,
//! apart and fused band by band; `dw_<level>/…` each depthwise layer alone.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ferrite_kernels::conv::{conv, ConvShape};
use ferrite_kernels::nhwc::{Conv2d, Conv2dGeometry};
use ferrite_kernels::simd::Level;

struct Layer {
    shape: ConvShape,
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    y: Vec<f32>,
}

fn layer(cin: usize, cout: usize, groups: usize, hw: usize, k: usize, stride: usize) -> Layer {
    let shape = ConvShape {
        batch: 1,
        in_channels: cin,
        out_channels: cout,
        groups,
        input: [1, hw, hw],
        kernel: [1, k, k],
        stride: [1, stride, stride],
        padding: [0, k / 2, k / 2],
        dilation: [1, 1, 1],
        output_padding: [0, 0, 0],
        transposed: false,
    };
    let o = shape.output().expect("valid layer");
    let fill = |n: usize| (0..n).map(|i| ((i * 2654435761) % 1000) as f32 / 1000.0 - 0.5).collect::<Vec<f32>>();
    Layer {
        x: fill(cin * hw * hw),
        w: fill(shape.weight_len()),
        b: fill(cout),
        y: vec![0.0; cout * o[1] * o[2]],
        shape,
    }
}

/// (kind, layer): kind 0 = stem, 1 = depthwise, 2 = pointwise.
fn mobilenet_v2() -> Vec<(u8, Layer)> {
    let mut v = vec![(0, layer(3, 32, 1, 224, 3, 2))];
    let mut hw = 112;
    let mut c = 32;
    // (expansion, channels, repeats, stride)
    for &(t, out, n, s) in
        &[(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let hidden = c * t;
            if t != 1 {
                v.push((2, layer(c, hidden, 1, hw, 1, 1)));
            }
            v.push((1, layer(hidden, hidden, hidden, hw, 3, stride)));
            hw = hw.div_ceil(stride);
            v.push((2, layer(hidden, out, 1, hw, 1, 1)));
            c = out;
        }
    }
    v.push((2, layer(320, 1280, 1, 7, 1, 1)));
    v
}

fn run(layers: &mut [(u8, Layer)], kind: Option<u8>) {
    for (k, l) in layers.iter_mut() {
        if kind.is_none_or(|kind| kind == *k) {
            conv(&l.x, &l.w, Some(&l.b), &mut l.y, &l.shape, 1, Level::detect()).expect("conv");
            black_box(&l.y);
        }
    }
}

/// The same layers as NHWC convolutions packed for `level` (the data is the same; only the
/// layout the kernel reads differs, which does not change its speed).
fn packed(layers: &[(u8, Layer)], level: Level) -> Vec<(u8, Conv2d, Vec<f32>, Vec<f32>)> {
    layers
        .iter()
        .map(|(k, l)| {
            let s = &l.shape;
            let geometry = Conv2dGeometry {
                batch: 1,
                input: [s.input[1], s.input[2]],
                in_channels: s.in_channels,
                out_channels: s.out_channels,
                kernel: [s.kernel[1], s.kernel[2]],
                stride: [s.stride[1], s.stride[2]],
                padding: [s.padding[1], s.padding[2]],
                dilation: [1, 1],
                groups: s.groups,
            };
            let c = Conv2d::new(level, geometry, &l.w, Some(&l.b), (0.0, 6.0)).expect("packs");
            (*k, c, l.x.clone(), vec![0.0; l.y.len()])
        })
        .collect()
}

fn run_nhwc(layers: &mut [(u8, Conv2d, Vec<f32>, Vec<f32>)], kind: Option<u8>) {
    for (k, c, x, y) in layers.iter_mut() {
        if kind.is_none_or(|kind| kind == *k) {
            c.run(x, y, 1).expect("conv");
            black_box(&y);
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut layers = mobilenet_v2();
    for level in Level::available() {
        let mut nhwc = packed(&layers, level);
        let name = level.name();
        c.bench_function(&format!("nhwc_{name}/all_layers"), |b| b.iter(|| run_nhwc(&mut nhwc, None)));
        c.bench_function(&format!("nhwc_{name}/stem"), |b| b.iter(|| run_nhwc(&mut nhwc, Some(0))));
        c.bench_function(&format!("nhwc_{name}/depthwise"), |b| b.iter(|| run_nhwc(&mut nhwc, Some(1))));
        c.bench_function(&format!("nhwc_{name}/pointwise"), |b| b.iter(|| run_nhwc(&mut nhwc, Some(2))));
    }
    // `threads = 1`: the kernels stay on the calling thread.
    c.bench_function("mobilenet_v2/all_layers", |b| b.iter(|| run(&mut layers, None)));
    c.bench_function("mobilenet_v2/stem", |b| b.iter(|| run(&mut layers, Some(0))));
    c.bench_function("mobilenet_v2/depthwise", |b| b.iter(|| run(&mut layers, Some(1))));
    c.bench_function("mobilenet_v2/pointwise", |b| b.iter(|| run(&mut layers, Some(2))));
}

/// MobileNet V2's expansions whose output is too large for L2 (112×112×96, 56×56×144), run
/// apart (pointwise into an intermediate image, then depthwise) and fused (band by band, the
/// intermediate never written), one thread, best level.
fn expand_depthwise(c: &mut Criterion) {
    let level = Level::detect();
    for (hw, cin, hidden, stride) in [(112, 16, 96, 2), (56, 24, 144, 1), (56, 24, 144, 2)] {
        let (pw, dw) = (layer(cin, hidden, 1, hw, 1, 1), layer(hidden, hidden, hidden, hw, 3, stride));
        let nhwc = packed(&[(2, pw), (1, dw)], level);
        let ((_, a, x, mid), (_, b, _, y)) = (&nhwc[0], &nhwc[1]);
        let (mut mid, mut y) = (mid.clone(), y.clone());
        let name = format!("expand_dw_{}/{hw}x{hw}_{cin}to{hidden}_s{stride}", level.name());
        c.bench_function(&format!("{name}/apart"), |bch| {
            bch.iter(|| {
                a.run(x, &mut mid, 1).expect("pointwise");
                b.run(&mid, &mut y, 1).expect("depthwise");
                black_box(&y);
            })
        });
        c.bench_function(&format!("{name}/fused"), |bch| {
            bch.iter(|| {
                a.run_into_depthwise(b, None, x, &mut y, 1).expect("fused");
                black_box(&y);
            })
        });
    }
}

/// MobileNet V2's depthwise convolutions one by one (input warm in cache after the first
/// iteration), one thread, best level: `dw_<level>/<h>x<w>x<c>_s<stride>`.
fn depthwise_layers(c: &mut Criterion) {
    let level = Level::detect();
    for (hw, ch, stride) in [(112, 32, 1), (112, 96, 2), (56, 144, 1), (28, 192, 1), (14, 576, 1), (7, 960, 1)] {
        let mut l = packed(&[(1, layer(ch, ch, ch, hw, 3, stride))], level);
        let (_, conv, x, y) = &mut l[0];
        c.bench_function(&format!("dw_{}/{hw}x{hw}x{ch}_s{stride}", level.name()), |b| {
            b.iter(|| {
                conv.run(x, y, 1).expect("depthwise");
                black_box(&y);
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench, expand_depthwise, depthwise_layers
}
criterion_main!(benches);
