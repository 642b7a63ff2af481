//! Ask the op-support registry about every kernel call of a program.
//!
//! `cargo run -p ferrite-op-support --example check_node -- tests/fixtures/mlp_dynamic/portable.pte`

use ferrite_program::graph::Graph;
use ferrite_program::Program;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "tests/fixtures/mlp_dynamic/portable.pte".into());
    let program = Program::mmap(&path)?;
    for plan in &program.def().plans {
        // ANCHOR: check
        let graph = Graph::new(plan);
        for node in graph.nodes() {
            match ferrite_op_support::check(&graph, node) {
                Ok(spec) => {
                    println!("{} #{}: {} — supported ({})", plan.name, node.instruction, spec.op, spec.family)
                }
                Err(why) => println!("{} #{}: {why}", plan.name, node.instruction),
            }
        }
        // ANCHOR_END: check
    }
    Ok(())
}
