//! The `.npy` reader (the CLI's and the quantizer's inputs): any bytes as a file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("ferrite-fuzz-npy-{}.npy", std::process::id()));
    if std::fs::write(&path, data).is_ok() {
        let _ = ferrite_runtime::read_npy(&path);
    }
});
