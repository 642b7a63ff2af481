//! The quantizer's calibration reader and what consumes it: any bytes as a calibration `.npy`
//! (leading axis = samples), read with `Calibration::from_npy_bytes` (the reader
//! `Calibration::open` runs on a file, without a file system call per input), every sample
//! taken, then a static int8 quantization of a fixture observing them. A wrong dtype, rank or
//! sample shape must be a coded error; any values (NaN, infinities, denormals) must give
//! parameters or a coded error.
#![no_main]

use std::sync::OnceLock;

use ferrite_program::Program;
use ferrite_quantizer::{Calibration, Quantizer, Scheme};
use libfuzzer_sys::fuzz_target;

const MLP: &[u8] = include_bytes!("../../tests/fixtures/mlp/portable.pte");

fn mlp() -> &'static Program<'static> {
    static PROGRAM: OnceLock<Program<'static>> = OnceLock::new();
    PROGRAM.get_or_init(|| Program::from_bytes(MLP).expect("fixture"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(calibration) = Calibration::from_npy_bytes("fuzz.npy", data) else { return };
    for i in 0..calibration.len().min(64) {
        let _ = calibration.sample(i);
    }
    if calibration.len() <= 16 {
        let _ = Quantizer::new(Scheme::StaticInt8).quantize(mlp(), &calibration);
    }
});
