//! Read a program and write it back with Ferrite's writer (a copy with ExecuTorch's layout).
//!
//! `cargo run -p ferrite-program --example rewrite_program -- IN.pte OUT.pte`
//!
//! `scripts/et_roundtrip.sh` uses this to check that stock ExecuTorch runs rewritten files.

use ferrite_program::{Program, ProgramError, ProgramWriter};

fn main() -> Result<(), ProgramError> {
    let mut args = std::env::args().skip(1);
    let (Some(input), Some(output)) = (args.next(), args.next()) else {
        eprintln!("usage: rewrite_program IN.pte OUT.pte");
        std::process::exit(2);
    };
    // ANCHOR: rewrite
    let program = Program::mmap(&input)?;
    let writer = ProgramWriter::from_program(&program); // borrows constants and blobs
    writer.write_to_path(&output)?; // temp file + rename: never a half-written OUT
                                    // ANCHOR_END: rewrite
    println!("wrote {output}");
    Ok(())
}
