//! Lowering of any program that verifies: it either fails with an error or writes a program
//! that verifies again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(program) = ferrite_program::Program::copy_from(data) else { return };
    let Ok(lowered) = ferrite_lower::lower(&program, &ferrite_lower::LowerOptions::default()) else { return };
    if let Err(e) = ferrite_program::Program::from_vec(lowered.bytes) {
        panic!("lowering wrote a program that does not verify: {e}");
    }
});
