//! Writes seed corpora for the fuzz targets: `cargo +nightly run --release --bin seeds -- OUT_DIR
//! FIXTURE.pte...` writes each program to OUT_DIR/programs/ and each Ferrite blob of each program,
//! once lowered, to OUT_DIR/blobs/. `fuzz/seeds/blobs/` holds its blobs of the small fixtures
//! (re-run it there after a blob format change); scripts/fuzz.sh seeds the program targets from
//! the fixtures directly.

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().expect("usage: seeds OUT_DIR FIXTURE.pte..."));
    let (programs, blobs) = (out.join("programs"), out.join("blobs"));
    std::fs::create_dir_all(&programs).expect("programs dir");
    std::fs::create_dir_all(&blobs).expect("blobs dir");
    let (mut n_programs, mut n_blobs) = (0, 0);
    for (i, path) in args.enumerate() {
        let Ok(bytes) = std::fs::read(&path) else { continue };
        std::fs::write(programs.join(format!("{i:03}.pte")), &bytes).expect("write");
        n_programs += 1;
        let Ok(program) = ferrite_program::Program::copy_from(&bytes) else { continue };
        let Ok(lowered) = ferrite_lower::lower(&program, &Default::default()) else { continue };
        let Ok(lowered) = ferrite_program::Program::from_vec(lowered.bytes) else { continue };
        for plan in &lowered.def().plans {
            for (k, delegate) in plan.delegates.iter().enumerate() {
                if let Some(blob) = lowered.delegate_data(delegate) {
                    std::fs::write(blobs.join(format!("{i:03}-{}-{k}.blob", plan.name)), blob).expect("write");
                    n_blobs += 1;
                }
            }
        }
    }
    println!("{n_programs} programs, {n_blobs} blobs in {}", out.display());
}
