//! The `.npy` reader (the CLI's and the quantizer's inputs): any bytes as a file. Read from
//! memory (`read_npy_bytes`, the same parser `read_npy` runs on a file) so that each input costs
//! no file system calls.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ferrite_runtime::read_npy_bytes("fuzz.npy", data);
});
