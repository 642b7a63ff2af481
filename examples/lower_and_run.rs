//! Lower a program for Ferrite's backend, then run it and compare with the program as exported.
//!
//! `cargo run --release --example lower_and_run -- tests/fixtures/digits_cnn/portable.pte`

use std::sync::Arc;

use ferrite::prelude::*;
use ferrite::LowerOptions;

fn main() -> Result<(), Error> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "tests/fixtures/digits_cnn/portable.pte".into());
    // ANCHOR: lower
    let program = Arc::new(Program::mmap(&path)?);
    // Partition, compile each partition into a FerriteBackend blob, rewrite the program.
    let lowered = ferrite::lower(&program, &LowerOptions::default())?;
    println!("{}", lowered.report); // what was delegated, and why the rest was not
    let lowered_program = Arc::new(Program::from_vec(lowered.bytes)?);
    // ANCHOR_END: lower

    // ANCHOR: run
    // Runtime::new() registers the Ferrite backend: delegate calls run on it, the rest on the
    // portable kernels.
    let runtime = Runtime::new().with_threads(1)?;
    let inputs = ferrite::runtime::default_inputs(&lowered_program, "forward")?;
    let fast = runtime.load_method(&lowered_program, "forward")?.run(&inputs)?;
    // ANCHOR_END: run

    let reference = runtime.load_method(&program, "forward")?.run(&inputs)?;
    for (i, (a, b)) in fast.iter().zip(&reference).enumerate() {
        let (a, b) = (a.to_f64_vec()?, b.to_f64_vec()?);
        let diff = a.iter().zip(&b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
        println!("output {i}: max |lowered - portable| = {diff:e}");
    }
    Ok(())
}
