//! Partitioning real fixtures (reports snapshotted with `insta`) and small hand-built graphs
//! (cycles, configuration, per-op mode).

use std::collections::BTreeSet;
use std::path::Path;

use ferrite_partitioner::{Partitioner, PartitionerConfig, Reason};
use ferrite_program::{Program, ProgramBuilder, ScalarType};

fn fixture(rel: &str) -> Program<'static> {
    Program::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(rel)).expect("fixture loads")
}

#[test]
fn fixture_reports() {
    for name in [
        "elementwise",
        "mlp",
        "mlp_dynamic",
        "two_methods",
        "running_sum",
        "digits_cnn",
        "tiny_transformer",
        "tiny_gpt",
    ] {
        let program = fixture(&format!("{name}/portable.pte"));
        let result = Partitioner::default().partition(&program);
        insta::assert_json_snapshot!(format!("report_{name}"), result.report);
    }
}

#[test]
fn large_models_are_almost_entirely_delegated() {
    for name in ["tiny_transformer", "tiny_gpt"] {
        let report = Partitioner::default().partition(&fixture(&format!("{name}/portable.pte"))).report;
        assert!(report.delegated_share() >= 0.95, "{name}: {}", report.delegated_share());
    }
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/mobilenet_v2/portable.pte");
    if shared.exists() {
        let report = Partitioner::default().partition(&Program::read(&shared).expect("loads")).report;
        assert!(report.delegated_share() >= 0.95, "mobilenet_v2: {}", report.delegated_share());
    }
}

#[test]
fn bounded_dynamic_shapes_are_delegated_and_state_updates_left_out_with_reasons() {
    let report = Partitioner::default().partition(&fixture("mlp_dynamic/portable.pte")).report;
    let m = &report.methods[0];
    assert_eq!((m.delegated_calls, m.kernel_calls), (6, 6), "{report}");
    let report = Partitioner::default().partition(&fixture("running_sum/portable.pte")).report;
    let copy = report.methods[0].rejected.iter().find(|r| r.op == "aten::copy_.default").expect("copy_ left out");
    assert!(copy.reason.to_string().contains("does not implement"));
}

/// A view whose sizes are computed at run time (`sym_size` of a dynamic input, as
/// `torch.export` writes a dynamic reshape) stays out: a blob would freeze the sizes.
#[test]
fn operators_reading_symbolic_sizes_are_left_out() {
    let mut b = ProgramBuilder::new("forward");
    let x = b.dynamic_input(ScalarType::Float, &[4, 8]);
    let (zero, rows) = (b.int(0), b.int(4));
    b.call("aten::sym_size.int", &[x, zero, rows]);
    let (two, four) = (b.int(2), b.int(4));
    let sizes = b.int_list_of(&[rows, two, four]);
    let y = b.dynamic_tensor(ScalarType::Float, &[4, 2, 4]);
    b.call("aten::view_copy.out", &[x, sizes, y, y]);
    let z = b.dynamic_tensor(ScalarType::Float, &[4, 2, 4]);
    b.call("aten::relu.out", &[y, z, z]);
    b.output(z);
    let program = Program::from_vec(b.build().expect("builds")).expect("verifies");
    let report = Partitioner::default().partition(&program).report;
    let m = &report.methods[0];
    let view = m.rejected.iter().find(|r| r.op == "aten::view_copy.out").expect("the view is left out");
    assert!(view.reason.to_string().contains("computed at run time"), "{}", view.reason);
    assert_eq!(m.delegated_calls, 1, "relu on the bounded dynamic tensor is delegated: {report}");
}

/// x -> relu (supported) -> cumsum (unsupported) -> add(relu, cumsum) (supported).
/// The add cannot join relu's partition: the path relu -> cumsum -> add leaves it.
fn diamond() -> Program<'static> {
    let mut b = ProgramBuilder::new("forward");
    let x = b.input(ScalarType::Float, &[4]);
    let r = b.tensor(ScalarType::Float, &[4]);
    b.call("aten::relu.out", &[x, r, r]);
    let (dim, none) = (b.int(0), b.none());
    let c = b.tensor(ScalarType::Float, &[4]);
    b.call("aten::cumsum.out", &[r, dim, none, c, c]);
    let one = b.int(1);
    let y = b.tensor(ScalarType::Float, &[4]);
    b.call("aten::add.out", &[r, c, one, y, y]);
    b.output(y);
    Program::from_vec(b.build().expect("builds")).expect("verifies")
}

#[test]
fn no_partition_creates_a_cycle() {
    let result = Partitioner::default().partition(&diamond());
    let parts = &result.methods[0].partitions;
    assert_eq!(parts.len(), 2, "{}", result.report);
    assert_eq!(parts[0].instructions, vec![0]);
    assert_eq!(parts[1].instructions, vec![2]);
    // relu's output feeds both cumsum (outside) and the second partition.
    assert_eq!(parts[0].outputs.len(), 1);
    assert_eq!(parts[1].inputs.len(), 2);
    assert!(
        result.report.methods[0].partitions.iter().any(|p| p.notes.iter().any(|n| n.contains("cycle"))),
        "{}",
        result.report
    );
    let rejected = &result.report.methods[0].rejected;
    assert_eq!(rejected.len(), 1);
    assert!(matches!(rejected[0].reason, Reason::Unsupported { .. }));
}

fn chain() -> Program<'static> {
    let mut b = ProgramBuilder::new("forward");
    let x = b.input(ScalarType::Float, &[4]);
    let r = b.tensor(ScalarType::Float, &[4]);
    b.call("aten::relu.out", &[x, r, r]);
    let s = b.tensor(ScalarType::Float, &[4]);
    b.call("aten::sigmoid.out", &[r, s, s]);
    let t = b.tensor(ScalarType::Float, &[4]);
    b.call("aten::tanh.out", &[s, t, t]);
    b.output(t);
    Program::from_vec(b.build().expect("builds")).expect("verifies")
}

#[test]
fn configuration_is_honoured() {
    let program = chain();
    let all = Partitioner::default().partition(&program);
    assert_eq!(all.methods[0].partitions.len(), 1);
    assert_eq!(all.methods[0].partitions[0].instructions, vec![0, 1, 2]);

    let per_op = Partitioner::new(PartitionerConfig { per_op: true, ..Default::default() }).partition(&program);
    assert_eq!(per_op.methods[0].partitions.len(), 3);

    let exclude =
        PartitionerConfig { exclude_ops: BTreeSet::from(["aten::sigmoid.out".to_string()]), ..Default::default() };
    let r = Partitioner::new(exclude).partition(&program);
    assert_eq!(r.methods[0].partitions.len(), 2);
    assert_eq!(r.report.methods[0].rejected[0].reason, Reason::ExcludedByConfig);

    let include =
        PartitionerConfig { include_ops: Some(BTreeSet::from(["aten::tanh.out".to_string()])), ..Default::default() };
    let r = Partitioner::new(include).partition(&program);
    assert_eq!(r.methods[0].partitions[0].instructions, vec![2]);
    assert!(r.report.methods[0].rejected.iter().all(|x| x.reason == Reason::NotIncluded));

    let none = PartitionerConfig { precisions: vec![], ..Default::default() };
    let r = Partitioner::new(none).partition(&program);
    assert!(r.methods[0].partitions.is_empty());
}

#[test]
fn report_serializes_and_reads_well() {
    let result = Partitioner::default().partition(&diamond());
    let json = serde_json::to_value(&result.report).expect("serializes");
    assert_eq!(json["methods"][0]["rejected"][0]["reason"]["kind"], "unsupported");
    let text = result.report.to_string();
    assert!(text.contains("2 of 3 kernel calls delegated in 2 partition(s)"), "{text}");
    assert!(text.contains("aten::cumsum.out: the Ferrite backend does not implement this operator"), "{text}");
}

/// `w = relu(x) + cumsum(z)` where the memory plan puts `cumsum`'s output where `x` was (`x` is
/// dead once `relu` has read it), as ExecuTorch's planner does. `relu` and `add` group into one
/// partition, but no single delegate call can run them: it would have to read `x` before
/// `cumsum` overwrites it and read `cumsum`'s output after it is written.
pub fn memory_reuse_across_a_partition() -> Program<'static> {
    use ferrite_op_support::Op;
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
fn a_partition_that_cannot_be_placed_whole_is_split_not_dropped() {
    let program = memory_reuse_across_a_partition();
    let result = Partitioner::default().partition(&program);
    let (method, report) = (&result.methods[0], &result.report.methods[0]);
    // Both supported nodes stay delegated, in two partitions placed around `cumsum`.
    assert_eq!(report.delegated_calls, 2, "{}", result.report);
    let parts: Vec<&[usize]> = method.partitions.iter().map(|p| p.instructions.as_slice()).collect();
    assert_eq!(parts, [&[0][..], &[2][..]]);
    use ferrite_partitioner::Step;
    assert_eq!(method.schedule, [Step::Partition(0), Step::Instruction(1), Step::Partition(1)]);
    assert!(report.partitions.iter().all(|p| p.notes.iter().any(|n| n.contains("split"))), "{}", result.report);
    // Every kernel call is delegated or left out with a reason.
    let rejected: Vec<usize> = report.rejected.iter().map(|r| r.instruction).collect();
    assert_eq!(rejected, [1]);
    assert_eq!(report.kernel_calls, report.delegated_calls + report.rejected.len());
}

#[test]
fn every_kernel_call_is_delegated_or_rejected_with_a_reason() {
    for name in [
        "elementwise",
        "mlp",
        "mlp_dynamic",
        "two_methods",
        "running_sum",
        "digits_cnn",
        "tiny_transformer",
        "tiny_gpt",
    ] {
        let result = Partitioner::default().partition(&fixture(&format!("{name}/portable.pte")));
        for (m, r) in result.methods.iter().zip(&result.report.methods) {
            let delegated: usize = m.partitions.iter().map(|p| p.instructions.len()).sum();
            assert_eq!(r.delegated_calls, delegated, "{name}");
            assert_eq!(r.kernel_calls, delegated + r.rejected.len(), "{name}: {}", result.report);
            // The schedule calls every partition once and keeps every other instruction.
            let calls = m.schedule.iter().filter(|s| matches!(s, ferrite_partitioner::Step::Partition(_))).count();
            assert_eq!(calls, m.partitions.len(), "{name}");
        }
    }
}

/// Precisions (ExecuTorch's `config_precisions`): a quantized program is delegated only where its
/// precision is enabled, and every node left out says which precision it needs.
#[test]
fn precisions_select_what_is_delegated() {
    use ferrite_partitioner::Precision;
    let share = |rel: &str, precisions: &[Precision]| {
        let config = PartitionerConfig { precisions: precisions.to_vec(), ..Default::default() };
        let p = Partitioner::new(config).partition(&fixture(rel));
        (p.report.delegated_share(), p.report)
    };
    for rel in ["mlp/q8.pte", "digits_cnn/q8.pte", "mlp/qd8.pte"] {
        assert_eq!(share(rel, &Precision::ALL).0, 1.0, "{rel}: everything with every precision");
    }
    let (s, report) = share("mlp/q8.pte", &[Precision::Fp32, Precision::DynamicInt8]);
    assert!(s < 0.5, "static int8 off: {report}");
    let needs_static = report.methods[0]
        .rejected
        .iter()
        .filter(|r| matches!(&r.reason, Reason::PrecisionNotEnabled { precision } if precision == "static-int8"))
        .count();
    assert!(needs_static >= 6, "{report}");
    let (s, report) = share("mlp/qd8.pte", &[Precision::Fp32, Precision::StaticInt8]);
    assert!(s < 0.5, "dynamic int8 off: {report}");
    // A float program is unaffected by the int8 precisions.
    assert_eq!(share("mlp/portable.pte", &[Precision::Fp32]).0, share("mlp/portable.pte", &Precision::ALL).0);
    assert_eq!(Precision::parse("Static-Int8"), Some(Precision::StaticInt8));
    assert_eq!(Precision::parse("int4"), None);
}

/// `_to_dim_order_copy` (ExecuTorch's `.to(dtype)`, e.g. hard-swish's int64 `3` made float)
/// joins partitions when it keeps the default dim order, and is left out with the reason when
/// it asks for another.
#[test]
fn dtype_conversions_are_delegated_in_the_default_dim_order_only() {
    let program = |order: &[i64]| {
        let mut b = ProgramBuilder::new("forward");
        let x = b.input(ScalarType::Long, &[2, 3]);
        let (no_copy, order) = (b.bool(false), b.int_list(order));
        let f = b.tensor(ScalarType::Float, &[2, 3]);
        b.call("dim_order_ops::_to_dim_order_copy.out", &[x, no_copy, order, f, f]);
        let r = b.tensor(ScalarType::Float, &[2, 3]);
        b.call("aten::relu.out", &[f, r, r]);
        b.output(r);
        Program::from_vec(b.build().expect("builds")).expect("verifies")
    };
    let report = Partitioner::default().partition(&program(&[0, 1])).report;
    assert_eq!(report.methods[0].delegated_calls, 2, "{report}");
    let report = Partitioner::default().partition(&program(&[1, 0])).report;
    let m = &report.methods[0];
    let left = m.rejected.iter().find(|r| r.op == "dim_order_ops::_to_dim_order_copy.out").expect("left out");
    assert!(left.reason.to_string().contains("default dim order"), "{report}");
}

/// Integer tensors of the types the backend's kernels are built for are delegated (positions and
/// masks are int64 and bool); `int16` and the unsigned types wider than a byte stay out.
#[test]
fn integer_tensors_are_delegated_in_the_types_the_backend_is_built_for() {
    let program = |dtype: ScalarType| {
        let mut b = ProgramBuilder::new("forward");
        let x = b.input(dtype, &[2, 3]);
        let (one, alpha) = (b.int(1), b.int(1));
        let y = b.tensor(dtype, &[2, 3]);
        b.call("aten::add.Scalar_out", &[x, one, alpha, y, y]);
        b.output(y);
        Program::from_vec(b.build().expect("builds")).expect("verifies")
    };
    for dtype in [ScalarType::Long, ScalarType::Int, ScalarType::Char, ScalarType::Byte] {
        let report = Partitioner::default().partition(&program(dtype)).report;
        assert_eq!(report.methods[0].delegated_calls, 1, "{dtype}: {report}");
    }
    for dtype in [ScalarType::Short, ScalarType::UInt16, ScalarType::UInt32, ScalarType::UInt64] {
        let report = Partitioner::default().partition(&program(dtype)).report;
        let m = &report.methods[0];
        assert_eq!(m.delegated_calls, 0, "{dtype}: {report}");
        assert!(m.rejected[0].reason.to_string().contains("int32 or int64"), "{dtype}: {report}");
    }
}
