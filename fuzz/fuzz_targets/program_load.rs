//! Program load and verify, then everything that reads a verified program without running it:
//! method plans, constants, delegate data, and the partitioner's analysis.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(program) = ferrite_program::Program::copy_from(data) else { return };
    let _ = program.constant_bytes();
    for plan in &program.def().plans {
        for delegate in &plan.delegates {
            let _ = program.delegate_data(delegate);
        }
    }
    let partitioner = ferrite_partitioner::Partitioner::new(Default::default());
    let _ = partitioner.partition(&program);
});
