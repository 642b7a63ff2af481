//! Serve one program from many threads: the `Program` is shared (`Arc`, `Send + Sync`), each
//! thread loads its own `Method` (its own planned memory), so executions never contend.
//!
//! `cargo run --release -p ferrite-runtime --example serve_threads -- tests/fixtures/digits_cnn/portable.pte 4`

use std::sync::Arc;
use std::time::Instant;

use ferrite_program::Program;
use ferrite_runtime::{Runtime, TensorData};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "tests/fixtures/digits_cnn/portable.pte".into());
    let workers: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(4);
    // ANCHOR: serve
    let program = Arc::new(Program::mmap(&path)?);
    // Each worker runs its kernels on one thread; parallelism comes from the workers.
    let runtime = Arc::new(Runtime::new().with_threads(1)?);
    let start = Instant::now();
    let results: Vec<Result<usize, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (program, runtime) = (Arc::clone(&program), Arc::clone(&runtime));
                s.spawn(move || -> Result<usize, String> {
                    let mut method = runtime.load_method(&program, "forward").map_err(|e| e.to_string())?;
                    let (_, sizes) = method.input_spec(0).ok_or("input 0 is not a tensor")?;
                    let sizes = sizes.to_vec();
                    let n: usize = sizes.iter().product();
                    let input = TensorData::from_slice(sizes, &vec![w as f32 * 0.1; n]).map_err(|e| e.to_string())?;
                    for _ in 0..100 {
                        method.run(std::slice::from_ref(&input)).map_err(|e| e.to_string())?;
                    }
                    Ok(100)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("worker panicked".into()))).collect()
    });
    // ANCHOR_END: serve
    let mut total = 0;
    for r in results {
        total += r?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{workers} workers ran {total} executions in {secs:.3} s ({:.0} per second)", total as f64 / secs);
    Ok(())
}
