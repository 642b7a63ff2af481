//! int8 products (`ferrite_kernels::int8`) at every SIMD level this CPU runs, one thread:
//! `cargo bench -p ferrite-kernels --bench int8`. Throughput is reported in multiply-adds
//! ("elements"), so criterion prints MAC/s: compare with the machine's int8 peak for the same way
//! of multiplying (`peak_<level>_<dot>`: on AVX2 `vpmaddwd` retires 16 multiply-adds per
//! instruction, AVX-VNNI's `vpdpbusd` 32, AVX-512 VNNI's 64). Products run with every
//! [`Dot`] the level has.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferrite_kernels::int8::{Dot, Epilogue, QConv2d, QDense, QDenseGrouped};
use ferrite_kernels::nhwc::Conv2dGeometry;
use ferrite_kernels::simd::Level;

fn values(n: usize, seed: usize) -> Vec<i8> {
    (0..n).map(|i| ((i * 2654435761 + seed * 97) % 255) as i32 as i8).collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("int8");
    for level in Level::available() {
        for dot in Dot::available(level) {
            // What the hardware gives: twelve independent multiply-add chains per step.
            let steps = 100_000;
            let per_step = ferrite_kernels::int8::int8_peak_macs_per_step(level, dot);
            group.throughput(Throughput::Elements((steps * per_step) as u64));
            group.bench_function(format!("peak_{}_{}", level.name(), dot.name()), |b| {
                b.iter(|| ferrite_kernels::int8::int8_peak(level, dot, black_box(steps)))
            });
            for &size in &[256usize, 512, 1024] {
                let (m, k, n) = (size, size, size);
                let (x, w) = (values(m * k, 1), values(n * k, 2));
                let scales = vec![0.01; n];
                let ep = Epilogue::int8(0.02, &scales, None, 0.05, 3, (-128, 127)).expect("epilogue");
                let dense = QDense::with_dot(level, dot, k, n, &w, -5, ep).expect("packs");
                let mut y = vec![0i8; m * n];
                group.throughput(Throughput::Elements((m * k * n) as u64));
                group.bench_function(format!("gemm_{size}_{}_{}", level.name(), dot.name()), |b| {
                    b.iter(|| dense.run(black_box(&x), &mut y, 1).expect("runs"))
                });
            }
        }
        // An int4 groupwise layer (groups of 32, per-token int8 activations) of an LLM's shape,
        // for one token (reading the weights dominates) and a prompt of 64.
        for &m in &[1usize, 64] {
            let (k, n, gs) = (2048usize, 2048usize, 32usize);
            let w: Vec<i8> = values(n * k, 5).iter().map(|&v| v >> 4).collect();
            let scales = vec![0.01f32; n * k / gs];
            let dense = QDenseGrouped::new(level, k, n, &w, gs, &scales, None, (f32::NEG_INFINITY, f32::INFINITY))
                .expect("packs");
            let x: Vec<f32> = values(m * k, 6).iter().map(|&v| f32::from(v) * 0.01).collect();
            let mut y = vec![0f32; m * n];
            group.throughput(Throughput::Elements((m * k * n) as u64));
            group.bench_function(format!("int4_group32_{m}x2048x2048_{}", level.name()), |b| {
                b.iter(|| dense.run(black_box(&x), &mut y, 1).expect("runs"))
            });
        }
        // mobilenet_v2's widest pointwise layer at 14 × 14 (576 → 160), 3 × 3 depthwise ones
        // (144 channels at 56 × 56, and its first, 32 channels at 112 × 112: fewest channels per
        // pixel, stride 1 and 2) and its stem (RGB 224 × 224, 3 × 3 stride 2: 27-byte patches).
        for (name, cin, cout, groups, hw, k, stride) in [
            ("pointwise_576_160_14", 576, 160, 1, 14, 1, 1),
            ("depthwise_144_56", 144, 144, 144, 56, 3, 1),
            ("depthwise_32_112", 32, 32, 32, 112, 3, 1),
            ("depthwise_96_112_s2", 96, 96, 96, 112, 3, 2),
            ("stem_3_32_224_s2", 3, 32, 1, 224, 3, 2),
        ] {
            let g = Conv2dGeometry {
                batch: 1,
                input: [hw, hw],
                in_channels: cin,
                out_channels: cout,
                kernel: [k, k],
                stride: [stride, stride],
                padding: [k / 2, k / 2],
                dilation: [1, 1],
                groups,
            };
            let w = values(cout * (cin / groups) * k * k, 3);
            let ep = Epilogue::int8(0.02, &vec![0.01; cout], None, 0.05, 3, (-128, 127)).expect("epilogue");
            let conv = QConv2d::new(level, g, &w, 7, ep).expect("packs");
            let x = values(hw * hw * cin, 4);
            let [oh, ow] = g.output().expect("geometry");
            let mut y = vec![0i8; oh * ow * cout];
            group.throughput(Throughput::Elements((oh * ow * cout * (cin / groups) * k * k) as u64));
            group.bench_function(format!("{name}_{}", level.name()), |b| {
                b.iter(|| conv.run(black_box(&x), &mut y, 1).expect("runs"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
