//! Load a program, run its `forward` method once on inputs of ones, and print the outputs.
//!
//! `cargo run -p ferrite-runtime --example run_program -- tests/fixtures/mlp/portable.pte`

use std::sync::Arc;

use ferrite_program::{Program, ScalarType};
use ferrite_runtime::{Runtime, RuntimeError, TensorData};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "tests/fixtures/mlp/portable.pte".into());
    // ANCHOR: run
    // Verify and memory-map the file; constants stay in the mapping (never copied).
    let program = Arc::new(Program::mmap(&path)?);
    // One runtime (kernel registry + thread pool) serves any number of methods.
    let runtime = Runtime::new().with_threads(1)?;
    // Loading resolves every operator to a kernel and plans memory: a program Ferrite cannot run
    // fails here, naming the operators, not halfway through an execution.
    let mut method = runtime.load_method(&program, "forward")?;

    let mut inputs = Vec::new();
    for i in 0..method.input_count() {
        let (dtype, sizes) = method.input_spec(i).ok_or(RuntimeError::Unsupported("non-tensor input".into()))?;
        if dtype != ScalarType::Float {
            return Err(format!("input {i} is {dtype}; this example only builds float inputs").into());
        }
        let n = sizes.iter().product();
        inputs.push(TensorData::from_slice(sizes.to_vec(), &vec![1.0f32; n])?);
    }
    let outputs = method.run(&inputs)?;
    // ANCHOR_END: run
    for (i, out) in outputs.iter().enumerate() {
        let values = out.to_f64_vec()?;
        println!("output {i}: {} {:?} {:?}", out.dtype(), out.sizes(), &values[..values.len().min(8)]);
    }
    Ok(())
}
