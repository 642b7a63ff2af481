//! Quantization time: static int8 with the histogram observer, calibration on 4 samples, Q/DQ
//! output (target for mobilenet_v2: under 10 s), and dynamic int8 (no calibration).
//!
//! `cargo bench -p ferrite-quantizer --bench quantize` (mobilenet_v2 from `../shared/fixtures`
//! when present, digits_cnn always; the samples are deterministic pseudo-random inputs).

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use ferrite_program::Program;
use ferrite_quantizer::{Calibration, Emit, Quantizer, Scheme};
use ferrite_runtime::TensorData;

fn samples(sizes: &[usize], n: usize) -> Calibration {
    let len: usize = sizes.iter().product();
    let mut state = 0x2545_f491u32;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state as f32 / u32::MAX as f32) * 2.0 - 1.0
    };
    let all = (0..n)
        .map(|_| {
            let v: Vec<f32> = (0..len).map(|_| next()).collect();
            vec![TensorData::from_slice(sizes.to_vec(), &v).expect("sample")]
        })
        .collect();
    Calibration::from_samples(all)
}

fn bench_quantize(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut group = c.benchmark_group("quantize");
    group.sample_size(10);
    for (name, rel, sizes) in [
        ("mobilenet_v2", "../shared/fixtures/mobilenet_v2/portable.pte", vec![1, 3, 224, 224]),
        ("digits_cnn", "tests/fixtures/digits_cnn/portable.pte", vec![1, 1, 8, 8]),
    ] {
        let path = root.join(rel);
        if !path.exists() {
            continue;
        }
        let program = Program::read(&path).expect("fixture");
        let calibration = samples(&sizes, 4);
        group.bench_function(format!("static_int8_4_samples/{name}"), |b| {
            b.iter(|| {
                Quantizer::new(Scheme::StaticInt8).emit(Emit::Qdq).quantize(&program, &calibration).expect("quantize")
            })
        });
        group.bench_function(format!("dynamic_int8/{name}"), |b| {
            b.iter(|| {
                Quantizer::new(Scheme::DynamicInt8)
                    .emit(Emit::Qdq)
                    .quantize(&program, &Calibration::none())
                    .expect("quantize")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_quantize);
criterion_main!(benches);
