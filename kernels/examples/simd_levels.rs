//! The SIMD levels this CPU runs, and one kernel at each: a dense layer (weights packed once per
//! level) checked against a plain loop, then a broadcast add dispatched on a run-time dtype.
//!
//! `cargo run -p ferrite-kernels --example simd_levels`

use ferrite_kernels::dense::Dense;
use ferrite_kernels::elementwise::binary;
use ferrite_kernels::num::{DType, Element};
use ferrite_kernels::simd::Level;
use ferrite_kernels::KernelError;

fn main() -> Result<(), KernelError> {
    // ANCHOR: levels
    let (m, k, n) = (5, 33, 20);
    let x: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 * 0.25 - 1.5).collect();
    let w: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 11) as f32 * 0.125 - 0.5).collect();
    let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.01).collect();
    // y = x · w + bias, summed in order, for reference.
    let want: Vec<f32> =
        (0..m * n).map(|i| bias[i % n] + (0..k).map(|p| x[i / n * k + p] * w[p * n + i % n]).sum::<f32>()).collect();
    println!("this CPU runs {:?}; the runtime would pick {:?}", Level::available(), Level::detect());
    for level in Level::available() {
        // Weights packed once for the level, as the Ferrite backend does at init.
        let dense = Dense::new(level, k, n, &w, Some(&bias), (f32::NEG_INFINITY, f32::INFINITY))?;
        let mut y = vec![0.0f32; m * n];
        dense.run(&x, &mut y, 1)?;
        let diff = y.iter().zip(&want).fold(0.0f32, |d, (a, b)| d.max((a - b).abs()));
        println!(
            "{:>8}: {} lanes, {}×{} tiles, max |diff| vs a plain loop {diff:e}",
            level.name(),
            level.lanes(),
            level.mr(),
            level.nr()
        );
    }
    // ANCHOR_END: levels

    // ANCHOR: dispatch
    // One kernel, written once; the element type chosen at run time.
    fn add_rows(dtype: DType) -> Result<String, KernelError> {
        ferrite_kernels::dispatch!(all dtype, T => {
            let a: Vec<T> = (0..6).map(|i| T::from_f64(i as f64)).collect();
            let b = [T::from_f64(10.0), T::from_f64(20.0), T::from_f64(30.0)];
            let mut out = vec![T::ZERO; 6];
            binary(&a, &[2, 3], &b, &[3], &mut out, &[2, 3], |x: T, y: T| T::from_f64(x.to_f64() + y.to_f64()))?;
            Ok(format!("{dtype}: {out:?}"))
        }, else other => Err(KernelError::Argument(format!("{other}"))))
    }
    for dtype in [DType::F32, DType::I64, DType::F16] {
        println!("{}", add_rows(dtype)?);
    }
    // ANCHOR_END: dispatch
    Ok(())
}
