//! The numerical debugger on real programs: a lowered program agrees with the program it was
//! lowered from, operator by operator; a deliberately perturbed node is named first; a float
//! program and its quantized twin are compared by alignment.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use ferrite_blob::{BlobGraph, BlobValue};
use ferrite_op_support::Op;
use ferrite_program::{DataLocation, Program, ProgramWriter};
use ferrite_runtime::Runtime;
use ferrite_troubleshooting::{compare_numerics, Tolerance};

fn fixture(name: &str) -> Program<'static> {
    Program::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)).expect("fixture")
}

fn lowered(program: &Program<'_>) -> Program<'static> {
    let lowered = ferrite_lower::lower(program, &ferrite_lower::LowerOptions::default()).unwrap();
    Program::from_vec(lowered.bytes).unwrap()
}

fn compare(target: Program<'static>, reference: Program<'static>) -> ferrite_troubleshooting::NumericsReport {
    let inputs = ferrite_runtime::default_inputs(&reference, "forward").unwrap();
    compare_on(target, reference, &inputs)
}

fn compare_on(
    target: Program<'static>,
    reference: Program<'static>,
    inputs: &[ferrite_runtime::TensorData],
) -> ferrite_troubleshooting::NumericsReport {
    let (target, reference) = (Arc::new(target), Arc::new(reference));
    let runtime = Runtime::new().with_threads(1).unwrap();
    let mut t = runtime.load_method(&target, "forward").unwrap();
    let mut r = runtime.load_method(&reference, "forward").unwrap();
    compare_numerics(&mut t, &mut r, inputs, Tolerance::default()).unwrap()
}

#[test]
fn a_lowered_program_agrees_with_its_source_node_by_node() {
    for name in ["digits_cnn/portable.pte", "digits_cnn/q8.pte", "tiny_transformer/portable.pte"] {
        let source = fixture(name);
        let report = compare(lowered(&source), fixture(name));
        assert!(report.origins_used, "{name}: {}", report.table(0));
        assert_eq!(report.first_divergence, None, "{name}: {}", report.table(0));
        // Every node the backend ran that stands for an instruction was compared with it.
        assert!(report.rows.iter().filter(|r| r.target_node.is_some()).count() >= 3, "{name}: {}", report.table(0));
        assert!(report.outputs.iter().all(|e| e.sqnr_db() > 60.0), "{name}: {}", report.table(0));
    }
}

#[test]
fn a_perturbed_node_is_named_first() {
    let source = fixture("digits_cnn/portable.pte");
    let program = lowered(&source);
    let delegate = program.def().plans[0].delegates[0].clone();
    let mut graph = BlobGraph::decode(program.delegate_data(&delegate).unwrap()).unwrap();
    // Scale the weights of the backend's second convolution.
    let (node, op) = graph
        .ops
        .iter()
        .enumerate()
        .filter(|(_, op)| op.op == Op::FerriteConvolutionNhwc)
        .nth(1)
        .map(|(k, op)| (k, op.clone()))
        .expect("two NHWC convolutions");
    let Some(BlobValue::Tensor(w)) = graph.values.get(op.args[1]) else { panic!("weight") };
    let c = w.constant.unwrap();
    let scaled: Vec<u8> = graph.constants[c]
        .chunks_exact(4)
        .flat_map(|b| (f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * 1.5).to_le_bytes())
        .collect();
    graph.constants[c] = scaled;
    let mut writer = ProgramWriter::from_program(&program);
    let segment = writer.push_segment(graph.encode().unwrap());
    writer.def_mut().plans[0].delegates[0].processed = DataLocation::Segment(segment);
    let perturbed = Program::from_vec(writer.to_bytes().unwrap()).unwrap();

    let report = compare(perturbed, source);
    let first = &report.rows[report.first_divergence.expect("a divergence")];
    assert_eq!(first.target_node, Some(node), "{}", report.table(0));
    assert!(report.table(5).contains(&format!("node {node} ({})", Op::FerriteConvolutionNhwc.name())));
    // Everything before it agrees.
    let k = report.first_divergence.unwrap();
    assert!(report.rows[..k].iter().all(|r| !r.diverges));
}

#[test]
fn a_quantized_program_is_compared_with_the_float_one_by_alignment() {
    // The image the q8 program was calibrated for (the default inputs are outside its range).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/digits_cnn");
    let image = ferrite_runtime::read_npy(&dir.join("input_0.npy")).unwrap();
    let report = compare_on(fixture("digits_cnn/q8.pte"), fixture("digits_cnn/portable.pte"), &[image]);
    assert!(!report.origins_used);
    // PT2E folded the batch norms into the quantized convolutions, so the first convolution's
    // output means something else in the two programs; the activations after it line up.
    let relus: Vec<_> = report.rows.iter().filter(|r| r.op == Op::Relu.name()).collect();
    assert!(relus.len() >= 2, "{}", report.table(0));
    // Quantization costs precision, but not all of it.
    assert!(relus.iter().all(|r| r.sqnr_db.is_finite() && r.sqnr_db > 30.0), "{}", report.table(0));
    assert!(report.outputs[0].sqnr_db() > 25.0, "{}", report.table(0));
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert!(json["rows"].as_array().is_some_and(|r| !r.is_empty()));
}
