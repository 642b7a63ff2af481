//! Element-wise activations of the backend's row kernels, per SIMD level this CPU runs.
//!
//! `cargo bench -p ferrite-kernels --bench activations` — each case maps 32,768 floats (128 KiB
//! in, 128 KiB out: cache-resident, so the figure is the arithmetic's cost, not memory's) on
//! one thread; criterion reports elements per second.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferrite_kernels::simd::rows::{unary, Unary};
use ferrite_kernels::simd::Level;

const N: usize = 32 * 1024;

fn activations(c: &mut Criterion) {
    // Values across the range activations see (−12 … 12), with a few outside.
    let x: Vec<f32> = (0..N).map(|i| ((i * 2_654_435_761) % 24_001) as f32 / 1000.0 - 12.0).collect();
    let mut y = vec![0.0f32; N];
    let ops = [
        ("silu", Unary::Silu),
        ("sigmoid", Unary::Sigmoid),
        ("exp", Unary::Exp),
        ("tanh", Unary::Tanh),
        ("gelu", Unary::Gelu),
        ("hardswish", Unary::Hardswish),
        ("relu6", Unary::Clamp(0.0, 6.0)),
    ];
    let mut group = c.benchmark_group("activations");
    group.throughput(Throughput::Elements(N as u64));
    for level in Level::available() {
        for (name, op) in ops {
            group.bench_function(format!("{}/{name}", level.name()), |b| {
                b.iter(|| unary(level, op, black_box(&x), black_box(&mut y)).expect("unary"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, activations);
criterion_main!(benches);
