//! An int8 linear layer with `ferrite_kernels::int8`: quantize a float layer's weights per output
//! channel, pack them once, run the int8 product at every SIMD level this CPU has, and compare
//! with the float layer.
//!
//! `cargo run -p ferrite-kernels --example int8_dense`

use ferrite_kernels::int8::{Epilogue, QDense};
use ferrite_kernels::quantized::{choose_qparams, quantize, QuantParams};
use ferrite_kernels::simd::Level;

fn main() -> Result<(), ferrite_kernels::KernelError> {
    let (m, k, n) = (8, 64, 24);
    let x: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    let w: Vec<f32> = (0..n * k).map(|i| ((i * 13 % 29) as f32 / 29.0 - 0.5) * 0.2).collect();
    let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.01).collect();

    // Symmetric per-channel weights in [-127, 127], as PT2E's XNNPACK quantizer makes them.
    let w_scales: Vec<f64> =
        (0..n).map(|j| w[j * k..(j + 1) * k].iter().fold(0f32, |a, v| a.max(v.abs())) as f64 / 127.0).collect();
    let wq: Vec<i8> = (0..n * k).map(|i| (w[i] as f64 / w_scales[i / k]).round().clamp(-127.0, 127.0) as i8).collect();

    // The input quantized per tensor (ExecuTorch's choose_qparams / quantize_per_tensor).
    let (x_scale, x_zp) = choose_qparams(&x, -128, 127)?;
    let mut xq = vec![0i8; x.len()];
    quantize(&x, &mut xq, &[QuantParams::new(x_scale, i64::from(x_zp))], x.len(), -128, 127)?;

    // The float layer, for comparison.
    let want: Vec<f32> =
        (0..m * n).map(|o| (0..k).map(|p| x[o / n * k + p] * w[o % n * k + p]).sum::<f32>() + bias[o % n]).collect();
    for level in Level::available() {
        let ep = Epilogue::float(x_scale, &w_scales, Some(&bias), (f32::NEG_INFINITY, f32::INFINITY))?;
        let dense = QDense::new(level, k, n, &wq, x_zp, ep)?;
        let mut y = vec![0f32; m * n];
        dense.run(&xq, &mut y, 1)?;
        let err = y.iter().zip(&want).fold(0f32, |a, (p, q)| a.max((p - q).abs()));
        let peak = want.iter().fold(0f32, |a, v| a.max(v.abs()));
        println!(
            "{:>8}: {} × {k} → {n}, weights packed in {} bytes, max |int8 − float| = {err:.4} (outputs up to {peak:.2})",
            level.name(),
            m,
            dense.packed_bytes()
        );
        assert!(err < 0.05 * peak, "the int8 layer drifted from the float one");
    }
    Ok(())
}
