//! Compares a program lowered for Ferrite's backend with the program it was lowered from,
//! operator by operator, and prints where they part (if they do).
//!
//! `cargo run -p ferrite-troubleshooting --example debug_numerics -- MODEL.pte`

use std::path::PathBuf;
use std::sync::Arc;

use ferrite_program::Program;
use ferrite_runtime::Runtime;
use ferrite_troubleshooting::{compare_numerics, Tolerance};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [model] = args.as_slice() else {
        return Err("usage: debug_numerics MODEL.pte (an un-lowered program)".into());
    };
    // ANCHOR: numerics
    let source = Arc::new(Program::read(model)?);
    let lowered = ferrite_lower::lower(&source, &ferrite_lower::LowerOptions::default())?;
    let lowered = Arc::new(Program::from_vec(lowered.bytes)?);

    let runtime = Runtime::new().with_threads(1)?;
    let mut target = runtime.load_method(&lowered, "forward")?;
    let mut reference = runtime.load_method(&source, "forward")?;
    let inputs = ferrite_runtime::default_inputs(&source, "forward")?;
    let report = compare_numerics(&mut target, &mut reference, &inputs, Tolerance::default())?;
    print!("{}", report.table(5));
    if let Some(first) = report.first_divergence.map(|k| &report.rows[k]) {
        println!("look at instruction {} ({}) first", first.instruction, first.op);
    }
    // ANCHOR_END: numerics
    Ok(())
}
