//! The quantizer's calibration reader and what consumes it: any bytes as a calibration `.npy`
//! (leading axis = samples), read with `Calibration::open`, every sample taken, then a static
//! int8 quantization of a fixture observing them. A wrong dtype, rank or sample shape must be a
//! coded error; any values (NaN, infinities, denormals) must give parameters or a coded error.
#![no_main]

use ferrite_program::Program;
use ferrite_quantizer::{Calibration, Quantizer, Scheme};
use libfuzzer_sys::fuzz_target;

const MLP: &[u8] = include_bytes!("../../tests/fixtures/mlp/portable.pte");

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("ferrite-fuzz-calibration-{}.npy", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(calibration) = Calibration::open(&path) else { return };
    for i in 0..calibration.len().min(64) {
        let _ = calibration.sample(i);
    }
    if calibration.len() <= 16 {
        let program = Program::from_bytes(MLP).expect("fixture");
        let _ = Quantizer::new(Scheme::StaticInt8).quantize(&program, &calibration);
    }
});
