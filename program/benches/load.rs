//! Load-and-verify time. The target for a 14 MB program (mobilenet_v2) is under 5 ms: constants
//! are borrowed, so the cost is the FlatBuffer walk, not the bytes.
//!
//! `cargo bench -p ferrite-program --bench load` (uses `../shared/fixtures` when present for
//! mobilenet_v2, and the bundled fixtures otherwise).

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use ferrite_program::Program;

fn candidates() -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = Vec::new();
    for (name, rel) in [
        ("mobilenet_v2", "../shared/fixtures/mobilenet_v2/portable.pte"),
        ("tiny_gpt", "tests/fixtures/tiny_gpt/portable.pte"),
        ("digits_cnn", "tests/fixtures/digits_cnn/portable.pte"),
    ] {
        let p = root.join(rel);
        if p.exists() {
            out.push((name.to_string(), p));
        }
    }
    out
}

fn bench_load(c: &mut Criterion) {
    for (name, path) in candidates() {
        let bytes = std::fs::read(&path).expect("read fixture");
        c.bench_function(&format!("verify_from_bytes/{name}"), |b| {
            b.iter(|| Program::from_bytes(black_box(&bytes)).expect("valid"))
        });
        c.bench_function(&format!("mmap_and_verify/{name}"), |b| {
            b.iter(|| Program::mmap(black_box(&path)).expect("valid"))
        });
    }
}

criterion_group!(benches, bench_load);
criterion_main!(benches);
