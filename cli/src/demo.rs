//! `ferrite demo`: the embedded digits classifier, a real model exported by ExecuTorch 1.5.1
//! (trained on scikit-learn's 8×8 digits), run on its 360 held-out test images.

use std::sync::Arc;
use std::time::Instant;

use ferrite::program::Program;
use ferrite::runtime::{Runtime, RuntimeError, TensorData};

use crate::Error;

const MODEL: &[u8] = include_bytes!("../../tests/fixtures/digits_cnn/portable.pte");
const IMAGES: &[u8] = include_bytes!("../../tests/fixtures/digits_cnn/test_images.npy");
const LABELS: &[u8] = include_bytes!("../../tests/fixtures/digits_cnn/test_labels.npy");

/// The demo's measurements.
#[derive(Debug, Clone)]
pub struct DemoResult {
    /// Correct predictions.
    pub correct: usize,
    /// Images classified.
    pub total: usize,
    /// Median latency of one image, in milliseconds.
    pub median_ms: f64,
    /// Predicted label per image.
    pub predictions: Vec<usize>,
}

fn npy_error(name: &str, e: std::io::Error) -> Error {
    RuntimeError::Npy { path: name.into(), reason: e.to_string() }.into()
}

fn embedded_npy(name: &str, bytes: &'static [u8]) -> Result<npyz::NpyFile<&'static [u8]>, Error> {
    npyz::NpyFile::new(bytes).map_err(|e| npy_error(name, e))
}

/// Classifies every test image; returns accuracy, latency and predictions.
pub fn classify(runtime: &Runtime) -> Result<(DemoResult, Vec<f32>, Vec<i64>), Error> {
    let program = Arc::new(Program::from_bytes(MODEL)?);
    let mut method = runtime.load_method(&program, "forward")?;
    let bad = npy_error;
    let images: Vec<f32> =
        embedded_npy("test_images.npy", IMAGES)?.into_vec().map_err(|e| bad("test_images.npy", e))?;
    let labels: Vec<i64> =
        embedded_npy("test_labels.npy", LABELS)?.into_vec().map_err(|e| bad("test_labels.npy", e))?;
    let total = labels.len().min(images.len() / 64);
    let mut times = Vec::with_capacity(total);
    let mut predictions = Vec::with_capacity(total);
    let mut correct = 0;
    for (k, &label) in labels.iter().enumerate().take(total) {
        let input = TensorData::from_slice(vec![1, 1, 8, 8], &images[k * 64..(k + 1) * 64])?;
        let t = Instant::now();
        let out = method.run(std::slice::from_ref(&input))?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        let logits = out.first().map(|o| o.to_f64_vec()).transpose()?.unwrap_or_default();
        // The first maximum, as torch.argmax takes it (quantized logits can tie).
        let pred = logits.iter().enumerate().fold(0, |best, (i, v)| if *v > logits[best] { i } else { best });
        predictions.push(pred);
        if pred as i64 == label {
            correct += 1;
        }
    }
    times.sort_by(f64::total_cmp);
    let median_ms = times.get(times.len() / 2).copied().unwrap_or(0.0);
    Ok((DemoResult { correct, total, median_ms, predictions }, images, labels))
}

fn art(pixels: &[f32]) -> Vec<String> {
    const RAMP: &[u8] = b" .:-=+*#%@";
    let (lo, hi) = pixels.iter().fold((f32::MAX, f32::MIN), |(l, h), &p| (l.min(p), h.max(p)));
    let span = (hi - lo).max(1e-6);
    pixels
        .chunks(8)
        .map(|row| {
            row.iter()
                .map(|&p| {
                    let level = (((p - lo) / span) * (RAMP.len() - 1) as f32).round() as usize;
                    let c = RAMP[level.min(RAMP.len() - 1)] as char;
                    format!("{c}{c}")
                })
                .collect()
        })
        .collect()
}

/// Runs the demo and returns the text it prints.
pub fn run(runtime: Runtime) -> Result<String, Error> {
    let (r, images, labels) = classify(&runtime)?;
    let mut s = String::new();
    s.push_str("Ferrite demo: a digits classifier exported by ExecuTorch 1.5.1, run by Ferrite's portable kernels\n\n");
    let shown = [0usize, 1, 2, 3, 4, 5];
    let arts: Vec<Vec<String>> =
        shown.iter().filter(|&&k| k < r.total).map(|&k| art(&images[k * 64..(k + 1) * 64])).collect();
    for row in 0..8 {
        let line: Vec<&str> = arts.iter().map(|a| a[row].as_str()).collect();
        s.push_str(&format!("  {}\n", line.join("   ")));
    }
    let tags: Vec<String> = shown
        .iter()
        .filter(|&&k| k < r.total)
        .map(|&k| {
            let ok = if r.predictions[k] as i64 == labels[k] { "ok" } else { "x" };
            format!("{:<16}", format!("pred {} ({ok})", r.predictions[k]))
        })
        .collect();
    s.push_str(&format!("  {}\n\n", tags.join("   ").trim_end()));
    s.push_str(&format!(
        "accuracy: {}/{} = {:.2}%   (ExecuTorch's eager PyTorch accuracy on these images: 97.78%)\n",
        r.correct,
        r.total,
        100.0 * r.correct as f64 / r.total.max(1) as f64
    ));
    s.push_str(&format!("latency: {:.3} ms per image (median, {} thread(s))\n", r.median_ms, runtime.threads()));
    Ok(s)
}
