//! Quantizes a float program to static int8 from its calibration data, prints the report, and
//! checks the quantized program against the float one on the same data.
//!
//! `cargo run -p ferrite-quantizer --example quantize_program -- MODEL.pte CALIBRATION.npy OUT.pte`

use std::path::PathBuf;

use ferrite_program::Program;
use ferrite_quantizer::{Calibration, Emit, ObserverKind, Quantizer, Scheme};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [model, calibration, output] = args.as_slice() else {
        return Err("usage: quantize_program MODEL.pte CALIBRATION.npy OUT.pte".into());
    };
    // ANCHOR: quantize
    let program = Program::read(model)?;
    let calibration = Calibration::open(calibration)?;
    let mut quantized = Quantizer::new(Scheme::StaticInt8)
        .observer(ObserverKind::Histogram) // PT2E's: the same data gives PT2E's parameters
        .emit(Emit::Ferrite) // lowered for Ferrite's int8 kernels; Emit::Qdq for stock ExecuTorch
        .quantize(&program, &calibration)?;
    // Float vs quantized on the calibration data: output SQNR, top-1 agreement, per-tensor SQNR.
    let metrics = quantized.evaluate(&calibration, None)?;
    println!("output SQNR {:.1} dB, top-1 agreement {:.1}%", metrics.output_sqnr_db, metrics.top1_agreement * 100.0);
    print!("{}", quantized.report.table());
    ferrite_quantizer::write_atomic(output, &quantized.program)?;
    // ANCHOR_END: quantize
    println!("wrote {} ({} bytes)", output.display(), quantized.program.len());
    Ok(())
}
