//! Lowering whole programs: the rewritten program verifies, calls the backend where the
//! partitioner placed each partition, and computes what the program as exported computes.

use std::sync::Arc;

use ferrite_lower::{lower, LowerOptions};
use ferrite_op_support::Op;
use ferrite_program::{Instruction, Program, ProgramBuilder, ScalarType};
use ferrite_runtime::{Runtime, TensorData};

fn run(program: &Arc<Program<'static>>, inputs: &[TensorData]) -> Vec<Vec<f64>> {
    let runtime = Runtime::new().with_threads(1).expect("runtime");
    let mut method = runtime.load_method(program, "forward").expect("loads");
    method.run(inputs).expect("runs").iter().map(|t| t.to_f64_vec().expect("numeric")).collect()
}

/// `w = relu(x) + cumsum(z)`, with `cumsum`'s output planned where `x` was: the partition
/// {relu, add} cannot be called at one point (see the partitioner's test of the same program).
fn memory_reuse_across_a_partition() -> Program<'static> {
    let mut b = ProgramBuilder::new("forward");
    let x = b.input(ScalarType::Float, &[4]);
    let z = b.input(ScalarType::Float, &[4]);
    let a = b.tensor(ScalarType::Float, &[4]);
    b.call(Op::Relu.name(), &[x, a, a]);
    let (dim, none) = (b.int(0), b.none());
    let y = b.tensor(ScalarType::Float, &[4]);
    b.call(Op::Cumsum.name(), &[z, dim, none, y, y]);
    let (alpha, w) = (b.int(1), b.tensor(ScalarType::Float, &[4]));
    b.call(Op::Add.name(), &[a, y, alpha, w, w]);
    b.output(w);
    b.plan_memory(x, 1, 0);
    b.plan_memory(a, 1, 16);
    b.plan_memory(y, 1, 0);
    Program::from_vec(b.build().expect("builds")).expect("verifies")
}

#[test]
fn a_split_partition_is_delegated_in_placeable_parts_and_computes_the_same() {
    let program = Arc::new(memory_reuse_across_a_partition());
    let lowered = lower(&program, &LowerOptions::default()).expect("lowers");
    assert_eq!(lowered.report.methods[0].delegated_calls, 2, "{}", lowered.report);
    let lowered_program = Arc::new(Program::from_vec(lowered.bytes).expect("verifies"));
    let kinds: Vec<&str> = lowered_program.def().plans[0].chains[0]
        .instructions
        .iter()
        .map(|i| match i {
            Instruction::DelegateCall { .. } => "delegate",
            Instruction::KernelCall { .. } => "kernel",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["delegate", "kernel", "delegate"]);
    let inputs = [
        TensorData::from_slice(vec![4], &[-1.0f32, 2.0, -3.0, 4.0]).expect("x"),
        TensorData::from_slice(vec![4], &[1.0f32, 10.0, 100.0, 1000.0]).expect("z"),
    ];
    let want = run(&program, &inputs);
    assert_eq!(want, [vec![1.0, 13.0, 111.0, 1115.0]]);
    assert_eq!(run(&lowered_program, &inputs), want);
}

/// PT2E's static int8 programs become one partition whose convolutions and linear layers are the
/// backend's int8 operators (their fidelity to ExecuTorch is checked by the conformance suite).
#[test]
fn static_int8_programs_lower_to_int8_operators() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    // (fixture, convolutions and linear layers in the program)
    for (name, products) in [("digits_cnn", 3), ("mlp", 2)] {
        let bytes = std::fs::read(fixtures.join(name).join("q8.pte")).expect("fixture");
        let program = Program::from_vec(bytes).expect("verifies");
        let lowered = lower(&program, &LowerOptions::default()).expect("lowers");
        let method = &lowered.report.methods[0];
        assert_eq!(method.delegated_calls, method.kernel_calls, "{name}: {}", lowered.report);
        assert_eq!(lowered.passes.quantized_operators, products, "{name}: {:?}", lowered.passes);
    }
}

#[test]
fn groupwise_8da4w_linears_lower_to_groupwise_dense_layers() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/groupwise/linear_8da4w.pte");
    let program = Program::from_vec(std::fs::read(path).expect("fixture")).expect("verifies");
    let lowered = lower(&program, &LowerOptions::default()).expect("lowers");
    let method = &lowered.report.methods[0];
    assert_eq!(method.delegated_calls, method.kernel_calls, "{}", lowered.report);
    // Both linears (their per-token and groupwise dequantizations consumed).
    assert_eq!(lowered.passes.quantized_operators, 2, "{:?}", lowered.passes);
    let text = String::from_utf8_lossy(&lowered.bytes);
    assert!(text.contains("ferrite::groupwise_dense.out"), "the blob names the groupwise dense operator");
    // With the int4-weight precision off, nothing quantized is delegated.
    let mut options = LowerOptions::default();
    options.partitioner.precisions = vec![ferrite_partitioner::Precision::Fp32];
    let lowered = lower(&program, &options).expect("lowers");
    assert_eq!(lowered.passes.quantized_operators, 0);
}
