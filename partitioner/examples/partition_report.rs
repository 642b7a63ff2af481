//! Partition a program and print the report (text, or JSON with `--json`).
//!
//! `cargo run -p ferrite-partitioner --example partition_report -- tests/fixtures/tiny_gpt/portable.pte`

use ferrite_partitioner::{Partitioner, PartitionerConfig};
use ferrite_program::Program;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "tests/fixtures/tiny_gpt/portable.pte".into());
    let json = args.next().as_deref() == Some("--json");
    // ANCHOR: partition
    let program = Program::mmap(&path)?;
    let config = PartitionerConfig { per_op: false, ..PartitionerConfig::default() };
    let result = Partitioner::new(config).partition(&program);
    for method in &result.methods {
        for p in &method.partitions {
            println!("{}: partition {} runs instructions {:?}", method.method, p.id, p.instructions);
        }
    }
    // ANCHOR_END: partition
    if json {
        println!("{}", serde_json::to_string_pretty(&result.report)?);
    } else {
        print!("{}", result.report);
        println!("delegated share: {:.1}%", 100.0 * result.report.delegated_share());
    }
    Ok(())
}
