//! Lower a program for the Ferrite backend and print what happened: the partitions, the passes,
//! and every kernel call left out with its reason.
//!
//! `cargo run -p ferrite-lower --example lower_program -- tests/fixtures/digits_cnn/portable.pte`

use ferrite_lower::{lower, LowerError, LowerOptions};
use ferrite_program::{Program, ProgramSummary};

fn main() -> Result<(), LowerError> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "tests/fixtures/digits_cnn/portable.pte".into());
    // ANCHOR: lower
    let program = Program::mmap(&path)?;
    let lowered = lower(&program, &LowerOptions::default())?;
    print!("{}", lowered.report); // partitions, and why each node left out stayed out
    let p = &lowered.passes;
    println!(
        "passes: {} constants folded, {} batch norms folded, {} activations fused, {} convolutions channels-last ({} layout conversions), {} dense layers",
        p.constants_folded, p.batch_norms_folded, p.activations_fused, p.channels_last_convolutions, p.layout_conversions, p.dense_layers
    );
    // The result is a program like any other (already verified by `lower`).
    let summary = ProgramSummary::of(&Program::from_bytes(&lowered.bytes)?);
    // ANCHOR_END: lower
    for m in &summary.methods {
        println!("{}: {} kernel calls, {} delegate calls", m.name, m.kernel_calls, m.delegate_calls);
    }
    Ok(())
}
