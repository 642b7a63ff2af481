//! Profiles a program (lowered or not): the slowest operators, inside Ferrite's backend too,
//! and a Chrome/Perfetto trace of the last run.
//!
//! `cargo run -p ferrite-troubleshooting --example profile_program -- MODEL.pte TRACE.json`

use std::path::PathBuf;
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [model, trace] = args.as_slice() else {
        return Err("usage: profile_program MODEL.pte TRACE.json".into());
    };
    // ANCHOR: profile
    let program = Arc::new(ferrite_program::Program::read(model)?);
    let mut method = ferrite_runtime::Runtime::new().with_threads(1)?.load_method(&program, "forward")?;
    let inputs = ferrite_runtime::default_inputs(&program, "forward")?;
    // 3 warm-up runs, then 20 timed ones: medians per operator.
    let profile = ferrite_troubleshooting::profile(&mut method, &inputs, 3, 20)?;
    print!("{}", profile.table(10));
    std::fs::write(trace, profile.chrome_trace())?; // open in ui.perfetto.dev or chrome://tracing
                                                    // ANCHOR_END: profile
    Ok(())
}
