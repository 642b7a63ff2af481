//! Method execution with arbitrary inputs: a fixture (as exported or lowered), then for each
//! input a dtype, a rank, sizes and values taken from the fuzzer's bytes. Wrong dtypes, shapes
//! and ranks must give coded errors; any values (NaN, infinities, huge indices) must give
//! outputs or coded errors, never a panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use ferrite_program::{Program, ScalarType};
use ferrite_runtime::{Runtime, TensorData};
use libfuzzer_sys::fuzz_target;

const FIXTURES: &[&[u8]] = &[
    include_bytes!("../../tests/fixtures/mlp/portable.pte"),
    include_bytes!("../../tests/fixtures/digits_cnn/portable.pte"),
    include_bytes!("../../tests/fixtures/tiny_gpt/portable.pte"),
    include_bytes!("../../tests/fixtures/elementwise/portable.pte"),
    include_bytes!("../../tests/fixtures/mlp_dynamic/portable.pte"),
    include_bytes!("../../tests/fixtures/digits_cnn/q8.pte"),
];

/// Every fixture as exported and lowered.
fn programs() -> &'static [Arc<Program<'static>>] {
    static PROGRAMS: OnceLock<Vec<Arc<Program<'static>>>> = OnceLock::new();
    PROGRAMS.get_or_init(|| {
        let mut out = Vec::new();
        for bytes in FIXTURES {
            let program = Program::copy_from(bytes).expect("fixture");
            if let Ok(lowered) = ferrite_lower::lower(&program, &Default::default()) {
                out.push(Arc::new(Program::from_vec(lowered.bytes).expect("lowered fixture")));
            }
            out.push(Arc::new(program));
        }
        out
    })
}

const DTYPES: [ScalarType; 6] =
    [ScalarType::Float, ScalarType::Long, ScalarType::Int, ScalarType::Char, ScalarType::Bool, ScalarType::Half];

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.iter().copied();
    let mut next = || bytes.next().unwrap_or(0);
    let programs = programs();
    let program = &programs[usize::from(next()) % programs.len()];
    let runtime = Runtime::new().with_threads(1).expect("one thread").with_memory_limit(256 << 20);
    let Ok(mut method) = runtime.load_method(program, "forward") else { return };
    let mut inputs = Vec::new();
    for i in 0..method.input_count() {
        let spec = method.input_spec(i).map(|(d, s)| (d, s.to_vec()));
        let choice = next();
        // Mostly the declared dtype and shape (so execution is reached), sometimes anything.
        let (dtype, sizes) = match (choice % 4, spec) {
            (0..=2, Some((d, s))) => (
                d,
                s.iter()
                    .map(|&b| if choice & 0x80 != 0 { b.min(1 + usize::from(next()) % b.max(1)) } else { b })
                    .collect(),
            ),
            _ => {
                let rank = usize::from(next() % 5);
                (
                    DTYPES[usize::from(next()) % DTYPES.len()],
                    (0..rank).map(|_| usize::from(next() % 9)).collect::<Vec<_>>(),
                )
            }
        };
        let Ok(n) = ferrite_runtime::nbytes(dtype, &sizes) else { return };
        if n > 1 << 20 {
            return;
        }
        let values: Vec<u8> = (0..n).map(|_| next()).collect();
        let Ok(t) = TensorData::from_bytes(dtype, sizes, &values) else { return };
        inputs.push(t);
    }
    let _ = method.run(&inputs);
});
