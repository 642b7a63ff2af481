//! Load a program, verify it, and walk its methods, values and constants.
//!
//! `cargo run -p ferrite-program --example inspect_program -- tests/fixtures/mlp/portable.pte`

use ferrite_program::{Instruction, Program, ProgramError, Value};

fn main() -> Result<(), ProgramError> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "tests/fixtures/mlp/portable.pte".into());
    // ANCHOR: load
    // Memory-map and verify: every index, size and offset is checked here, once.
    let program = Program::mmap(&path)?;
    // ANCHOR_END: load

    // ANCHOR: walk
    for plan in &program.def().plans {
        println!("method {} ({} values)", plan.name, plan.values.len());
        for ins in plan.chains.iter().flat_map(|c| &c.instructions) {
            if let Instruction::KernelCall { op_index, args } = ins {
                // Indices were verified at load: indexing cannot go out of range.
                println!("  {} {:?}", plan.operators[*op_index].qualified(), args);
            }
        }
        let constant_bytes: usize = plan
            .values
            .iter()
            .filter_map(Value::as_tensor)
            .filter_map(|t| program.tensor_data(t)) // borrowed from the file, never copied
            .map(<[u8]>::len)
            .sum();
        println!("  constants referenced: {constant_bytes} bytes");
    }
    // ANCHOR_END: walk
    Ok(())
}
