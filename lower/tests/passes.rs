//! The backend's ahead-of-time passes on small hand-built graphs: each pass fires where it
//! should, leaves alone what it must not touch, and the compiled partition computes what the
//! portable kernels compute on the original graph.

use std::sync::Arc;

use ferrite_blob::BlobGraph;
use ferrite_lower::{compile_partition, PassStats};
use ferrite_op_support::Op;
use ferrite_program::{Program, ProgramBuilder, ScalarType};
use ferrite_runtime::{Runtime, TensorData};

fn det(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Compiles the whole method as one partition (inputs: the method's inputs; outputs: its
/// outputs) and returns the blob graph and the program.
fn compile(b: ProgramBuilder) -> (BlobGraph, PassStats, Program<'static>) {
    let program = Program::from_vec(b.build().expect("builds")).expect("verifies");
    let plan = &program.def().plans[0];
    let instructions: Vec<usize> = (0..plan.chains[0].instructions.len()).collect();
    let (g, stats) = compile_partition(&program, plan, &instructions, &plan.inputs, &plan.outputs).expect("compiles");
    (g, stats, program)
}

/// Runs the blob through the backend (encode, decode, init, execute) and compares with the
/// portable kernels on the original program.
fn assert_same_results(g: &BlobGraph, program: &Program<'static>, inputs: &[TensorData]) {
    assert_same_results_in_turn(g, program, &[inputs.to_vec()]);
}

/// [`assert_same_results`] for several runs of one loaded method each (shapes that shrink and
/// grow between runs, for programs with dynamic shapes).
fn assert_same_results_in_turn(g: &BlobGraph, program: &Program<'static>, runs: &[Vec<TensorData>]) {
    // Verify the encoded blob decodes to the same graph.
    let bytes = g.encode().expect("encodes");
    assert_eq!(&BlobGraph::decode(&bytes).expect("decodes"), g);
    // Portable result.
    let program = Arc::new(Program::from_vec(program.bytes().to_vec()).expect("copy"));
    let mut portable = Runtime::new().with_threads(1).expect("rt").load_method(&program, "forward").expect("loads");
    // Lowered through the facade-independent path: build a program with one delegate call.
    let mut def = program.def().clone();
    let plan = &mut def.plans[0];
    let args: Vec<usize> = plan.inputs.iter().chain(&plan.outputs).copied().collect();
    plan.chains[0].instructions = vec![ferrite_program::Instruction::DelegateCall { delegate_index: 0, args }];
    plan.delegates = vec![ferrite_program::BackendDelegate {
        id: ferrite_runtime::BACKEND_ID.into(),
        processed: ferrite_program::DataLocation::Segment(def.segments.len()),
        compile_specs: Vec::new(),
    }];
    let mut segments: Vec<std::borrow::Cow<'_, [u8]>> =
        (0..def.segments.len()).map(|i| std::borrow::Cow::Borrowed(program.segment(i).unwrap_or(&[]))).collect();
    segments.push(std::borrow::Cow::Owned(bytes));
    def.segments.push(ferrite_program::DataSegment { offset: 0, size: 0 });
    let lowered = ferrite_program::ProgramWriter::new(def, segments).expect("writer").to_bytes().expect("writes");
    let lowered = Arc::new(Program::from_vec(lowered).expect("lowered verifies"));
    let mut backend = Runtime::new().with_threads(1).expect("rt").load_method(&lowered, "forward").expect("loads");
    for inputs in runs {
        let want = portable.run(inputs).expect("runs");
        let got = backend.run(inputs).expect("runs lowered");
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.sizes(), w.sizes());
            let (g, w) = (g.to_f64_vec().expect("f64"), w.to_f64_vec().expect("f64"));
            let tol = 1e-5 * w.iter().fold(1.0f64, |m, x| m.max(x.abs()));
            for (a, b) in g.iter().zip(&w) {
                assert!((a - b).abs() <= tol, "{a} vs {b}");
            }
        }
    }
}

/// conv2d (+ optional batch norm) (+ activation) on [1, 3, 6, 6].
fn conv_graph(batch_norm: bool, activation: Option<&str>, bn_stats_used: bool) -> (ProgramBuilder, usize) {
    let mut b = ProgramBuilder::new("forward");
    let x = b.input(ScalarType::Float, &[1, 3, 6, 6]);
    let w = b.constant_f32(&[4, 3, 3, 3], &det(108, 1));
    let bias = b.constant_f32(&[4], &det(4, 2));
    let (st, pd, dl) = (b.int_list(&[1, 1]), b.int_list(&[1, 1]), b.int_list(&[1, 1]));
    let (tr, op, g) = (b.bool(false), b.int_list(&[0, 0]), b.int(1));
    let y = b.tensor(ScalarType::Float, &[1, 4, 6, 6]);
    b.call(Op::Convolution.name(), &[x, w, bias, st, pd, dl, tr, op, g, y, y]);
    let mut last = y;
    let mut extra_out = None;
    if batch_norm {
        let gamma = b.constant_f32(&[4], &[1.5, 0.5, 2.0, 1.0]);
        let beta = b.constant_f32(&[4], &[0.1, -0.2, 0.3, 0.0]);
        let mean = b.constant_f32(&[4], &[0.05, -0.1, 0.2, 0.0]);
        let var = b.constant_f32(&[4], &[0.9, 1.2, 0.5, 2.0]);
        let (mom, eps) = (b.double(0.1), b.double(1e-5));
        let z = b.tensor(ScalarType::Float, &[1, 4, 6, 6]);
        let (sm, si) = (b.tensor(ScalarType::Float, &[0]), b.tensor(ScalarType::Float, &[0]));
        b.call(Op::NativeBatchNormLegitNoTraining.name(), &[y, gamma, beta, mean, var, mom, eps, z, sm, si, z, sm, si]);
        if bn_stats_used {
            extra_out = Some(y);
        }
        last = z;
    }
    if let Some(act) = activation {
        let a = b.tensor(ScalarType::Float, &[1, 4, 6, 6]);
        match act {
            "relu" => b.call(Op::Relu.name(), &[last, a, a]),
            _ => {
                let (lo, hi) = (b.double(0.0), b.double(6.0));
                b.call(Op::Hardtanh.name(), &[last, lo, hi, a, a]);
            }
        }
        last = a;
    }
    b.output(last);
    if let Some(e) = extra_out {
        b.output(e);
    }
    (b, x)
}

fn names(g: &BlobGraph) -> Vec<Op> {
    g.ops.iter().map(|o| o.op).collect()
}

const PERMUTE: Op = Op::PermuteCopy;
const NHWC_CONVOLUTION: Op = Op::FerriteConvolutionNhwc;
const DENSE: Op = Op::FerriteDense;
const NHWC_MAX_POOL: Op = Op::FerriteMaxPool2dNhwc;
const NHWC_AVG_POOL: Op = Op::FerriteAvgPool2dNhwc;

fn image() -> TensorData {
    TensorData::from_slice(vec![1, 3, 6, 6], &det(108, 9)).expect("input")
}

#[test]
fn batch_norm_folds_into_the_convolution() {
    let (b, _) = conv_graph(true, None, false);
    let (g, stats, program) = compile(b);
    assert_eq!(stats.batch_norms_folded, 1);
    // One convolution, run channels-last: converted in and out at the partition's edges.
    assert_eq!(names(&g), [PERMUTE, NHWC_CONVOLUTION, PERMUTE]);
    assert_eq!((stats.channels_last_convolutions, stats.layout_conversions), (1, 2));
    assert_same_results(&g, &program, &[image()]);
}

#[test]
fn batch_norm_stays_when_the_convolution_output_is_used_elsewhere() {
    let (b, _) = conv_graph(true, None, true);
    let (g, stats, program) = compile(b);
    assert_eq!(stats.batch_norms_folded, 0);
    // The batch norm reads the default layout: the convolution's output is converted once and
    // serves both the batch norm and the partition output.
    assert_eq!(names(&g), [PERMUTE, NHWC_CONVOLUTION, PERMUTE, Op::NativeBatchNormLegitNoTraining]);
    assert_same_results(&g, &program, &[image()]);
}

#[test]
fn activations_fuse_into_their_producer() {
    for act in ["relu", "hardtanh"] {
        let (b, _) = conv_graph(true, Some(act), false);
        let (g, stats, program) = compile(b);
        assert_eq!((stats.batch_norms_folded, stats.activations_fused), (1, 1), "{act}");
        assert_eq!(names(&g), [PERMUTE, NHWC_CONVOLUTION, PERMUTE]);
        let (lo, hi) = g.ops[1].activation.expect("fused");
        assert_eq!(lo, 0.0);
        assert_eq!(hi, if act == "relu" { f32::INFINITY } else { 6.0 });
        assert_same_results(&g, &program, &[image()]);
    }
}

/// `x * sigmoid(x)` (EfficientNet's SiLU as exported) becomes one `silu`, in either operand
/// order; a sigmoid someone else reads stays.
#[test]
fn sigmoid_times_its_input_becomes_silu() {
    for (swap, sigmoid_is_output) in [(false, false), (true, false), (false, true)] {
        let mut b = ProgramBuilder::new("forward");
        let x = b.input(ScalarType::Float, &[2, 5, 3]);
        let s = b.tensor(ScalarType::Float, &[2, 5, 3]);
        b.call(Op::Sigmoid.name(), &[x, s, s]);
        let y = b.tensor(ScalarType::Float, &[2, 5, 3]);
        let (l, r) = if swap { (s, x) } else { (x, s) };
        b.call(Op::Mul.name(), &[l, r, y, y]);
        b.output(y);
        if sigmoid_is_output {
            b.output(s);
        }
        let (g, stats, program) = compile(b);
        if sigmoid_is_output {
            assert_eq!(names(&g), [Op::Sigmoid, Op::Mul]);
            assert_eq!(stats.activations_fused, 0);
        } else {
            assert_eq!(names(&g), [Op::Silu], "swap {swap}");
            assert_eq!(stats.activations_fused, 1);
        }
        let input = TensorData::from_slice(vec![2, 5, 3], &det(30, 41).iter().map(|v| v * 12.0).collect::<Vec<_>>())
            .expect("input");
        assert_same_results(&g, &program, &[input]);
    }
}

/// `_safe_softmax` as ExecuTorch exports it (scaled dot-product attention's softmax):
/// `_softmax`, `eq(x, −inf) → logical_not → any(dim, keepdim) → logical_not`, and
/// `where(mask, full_like(s, 0), s)`. Seven operators become one `ferrite::safe_softmax`; a
/// chain whose mask someone else reads, or over another dimension, stays. Fully masked rows
/// give zeros, as the chain does.
#[test]
fn the_safe_softmax_chain_becomes_one_operator() {
    let sizes = [2usize, 3, 6];
    let safe_softmax = |dim: i64, mask_is_output: bool| {
        let mut b = ProgramBuilder::new("forward");
        let x = b.input(ScalarType::Float, &sizes);
        let t = |b: &mut ProgramBuilder, dtype: ScalarType, s: &[usize]| b.tensor(dtype, s);
        let (d, no) = (b.int(dim), b.bool(false));
        let s = t(&mut b, ScalarType::Float, &sizes);
        b.call(Op::Softmax.name(), &[x, d, no, s, s]);
        let neg_inf = b.double(f64::NEG_INFINITY);
        let eq = t(&mut b, ScalarType::Bool, &sizes);
        b.call(Op::EqScalar.name(), &[x, neg_inf, eq, eq]);
        let kept = t(&mut b, ScalarType::Bool, &sizes);
        b.call(Op::LogicalNot.name(), &[eq, kept, kept]);
        let mut reduced = sizes.to_vec();
        reduced[usize::try_from(dim.rem_euclid(3)).expect("dim")] = 1;
        let (d2, keep) = (b.int(dim), b.bool(true));
        let any = t(&mut b, ScalarType::Bool, &reduced);
        b.call(Op::Any.name(), &[kept, d2, keep, any, any]);
        let mask = t(&mut b, ScalarType::Bool, &reduced);
        b.call(Op::LogicalNot.name(), &[any, mask, mask]);
        let (zero, format) = (b.int(0), b.none());
        let zeros = t(&mut b, ScalarType::Float, &sizes);
        b.call(Op::FullLike.name(), &[s, zero, format, zeros, zeros]);
        let y = t(&mut b, ScalarType::Float, &sizes);
        b.call(Op::WhereSelf.name(), &[mask, zeros, s, y, y]);
        b.output(y);
        if mask_is_output {
            b.output(mask);
        }
        compile(b)
    };
    // Rows (of the last dimension) 0 and 4 fully masked, row 2 partly.
    let mut values = det(36, 7);
    values[..6].fill(f32::NEG_INFINITY);
    values[24..30].fill(f32::NEG_INFINITY);
    values[13] = f32::NEG_INFINITY;
    let input = TensorData::from_slice(sizes.to_vec(), &values).expect("input");

    let (g, stats, program) = safe_softmax(-1, false);
    assert_eq!(names(&g), [Op::FerriteSafeSoftmax]);
    assert_eq!(stats.activations_fused, 1);
    assert_same_results(&g, &program, std::slice::from_ref(&input));
    let (g, _, program) = safe_softmax(2, false);
    assert_eq!(names(&g), [Op::FerriteSafeSoftmax], "dim 2 is the last");
    assert_same_results(&g, &program, std::slice::from_ref(&input));

    let (g, stats, _) = safe_softmax(-1, true);
    assert_eq!(g.ops.len(), 7, "the mask is returned: {:?}", names(&g));
    assert_eq!(stats.activations_fused, 0);
    let (g, _, _) = safe_softmax(1, false);
    assert_eq!(g.ops.len(), 7, "not the last dimension: {:?}", names(&g));
}

#[test]
fn views_of_constants_fold_and_reshapes_become_aliases() {
    // linear as ExecuTorch exports it: permute_copy(weight) then addmm; then a reshape.
    let mut b = ProgramBuilder::new("forward");
    let x = b.input(ScalarType::Float, &[2, 3]);
    let w = b.constant_f32(&[4, 3], &det(12, 3));
    let bias = b.constant_f32(&[4], &det(4, 4));
    let perm = b.int_list(&[1, 0]);
    let wt = b.tensor(ScalarType::Float, &[3, 4]);
    b.call(Op::PermuteCopy.name(), &[w, perm, wt, wt]);
    let (beta, alpha) = (b.int(1), b.int(1));
    let y = b.tensor(ScalarType::Float, &[2, 4]);
    b.call(Op::Addmm.name(), &[bias, x, wt, beta, alpha, y, y]);
    let shape = b.int_list(&[8]);
    let flat = b.tensor(ScalarType::Float, &[8]);
    b.call(Op::ViewCopy.name(), &[y, shape, flat, flat]);
    let r = b.tensor(ScalarType::Float, &[8]);
    b.call(Op::Relu.name(), &[flat, r, r]);
    b.output(r);
    let (g, stats, program) = compile(b);
    assert_eq!(stats.constants_folded, 1);
    assert_eq!(stats.reshapes_elided, 1);
    // The product with a constant weight becomes the packed dense layer.
    assert_eq!(names(&g), [DENSE, Op::Relu]);
    assert_eq!(stats.dense_layers, 1);
    // The original weight is gone; only the transposed one and the bias remain.
    assert_eq!(g.constants.len(), 2);
    let input = TensorData::from_slice(vec![2, 3], &det(6, 8)).expect("input");
    assert_same_results(&g, &program, &[input]);
}

/// Copies that change nothing — `expand_copy` to the input's own shape (as attention is
/// exported), then viewed, and `clone` — become aliases too; an expand that broadcasts stays.
#[test]
fn copies_that_change_nothing_become_aliases() {
    let mut b = ProgramBuilder::new("forward");
    let x = b.input(ScalarType::Float, &[2, 3, 4]);
    let a = b.tensor(ScalarType::Float, &[2, 3, 4]);
    b.call(Op::Tanh.name(), &[x, a, a]);
    let (same, no) = (b.int_list(&[2, 3, 4]), b.bool(false));
    let e = b.tensor(ScalarType::Float, &[2, 3, 4]);
    b.call(Op::ExpandCopy.name(), &[a, same, no, e, e]);
    let shape = b.int_list(&[6, 4]);
    let v = b.tensor(ScalarType::Float, &[6, 4]);
    b.call(Op::ViewCopy.name(), &[e, shape, v, v]);
    let format = b.none();
    let c = b.tensor(ScalarType::Float, &[6, 4]);
    b.call(Op::Clone.name(), &[v, format, c, c]);
    let r = b.tensor(ScalarType::Float, &[6, 4]);
    b.call(Op::Relu.name(), &[c, r, r]);
    b.output(r);
    let y = b.input(ScalarType::Float, &[1, 4]);
    let (wide, no2) = (b.int_list(&[3, 4]), b.bool(false));
    let big = b.tensor(ScalarType::Float, &[3, 4]);
    b.call(Op::ExpandCopy.name(), &[y, wide, no2, big, big]);
    let s = b.tensor(ScalarType::Float, &[3, 4]);
    b.call(Op::Sigmoid.name(), &[big, s, s]);
    b.output(s);
    let (g, stats, program) = compile(b);
    assert_eq!(stats.reshapes_elided, 3);
    assert_eq!(names(&g), [Op::Tanh, Op::Relu, Op::ExpandCopy, Op::Sigmoid]);
    // Every alias names the root, never another alias.
    for t in g.values.iter().filter_map(|v| if let ferrite_blob::BlobValue::Tensor(t) = v { Some(t) } else { None }) {
        if let Some(root) = t.alias_of {
            assert!(g.tensor(root).is_some_and(|r| r.alias_of.is_none()));
        }
    }
    let inputs = [
        TensorData::from_slice(vec![2, 3, 4], &det(24, 9)).expect("input"),
        TensorData::from_slice(vec![1, 4], &det(4, 10)).expect("input"),
    ];
    assert_same_results(&g, &program, &inputs);
}

#[test]
fn dead_operations_are_removed() {
    let mut b = ProgramBuilder::new("forward");
    let x = b.input(ScalarType::Float, &[4]);
    let unused = b.tensor(ScalarType::Float, &[4]);
    b.call(Op::Sigmoid.name(), &[x, unused, unused]);
    let y = b.tensor(ScalarType::Float, &[4]);
    b.call(Op::Tanh.name(), &[x, y, y]);
    b.output(y);
    let (g, stats, program) = compile(b);
    assert_eq!(stats.dead_ops_removed, 1);
    assert_eq!(g.ops.len(), 1);
    assert_eq!(g.ops[0].op, Op::Tanh);
    let input = TensorData::from_slice(vec![4], &[-1.0f32, 0.0, 0.5, 3.0]).expect("input");
    assert_same_results(&g, &program, &[input]);
}

/// x → conv 3×3 → a; conv 1×1 (a) → b; add(a, b) → c; depthwise 3×3 (c) → d;
/// mean over H, W keeping dims → e; view to [1, 8] → output.
fn residual_graph(mut b: ProgramBuilder) -> ProgramBuilder {
    let x = b.input(ScalarType::Float, &[1, 3, 9, 7]);
    let conv = |b: &mut ProgramBuilder, x: usize, cin: usize, k: usize, groups: usize, seed: u32| {
        let w = b.constant_f32(&[8, cin / groups, k, k], &det(8 * cin / groups * k * k, seed));
        let bias = b.constant_f32(&[8], &det(8, seed + 1));
        let p = (k / 2) as i64;
        let (st, pd, dl) = (b.int_list(&[1, 1]), b.int_list(&[p, p]), b.int_list(&[1, 1]));
        let (tr, op, g) = (b.bool(false), b.int_list(&[0, 0]), b.int(groups as i64));
        let y = b.tensor(ScalarType::Float, &[1, 8, 9, 7]);
        b.call(Op::Convolution.name(), &[x, w, bias, st, pd, dl, tr, op, g, y, y]);
        y
    };
    let a = conv(&mut b, x, 3, 3, 1, 11);
    let bb = conv(&mut b, a, 8, 1, 1, 13);
    let alpha = b.int(1);
    let c = b.tensor(ScalarType::Float, &[1, 8, 9, 7]);
    b.call(Op::Add.name(), &[a, bb, alpha, c, c]);
    let d = conv(&mut b, c, 8, 3, 8, 15);
    let (dims, keep, none) = (b.int_list(&[-1, -2]), b.bool(true), b.none());
    let e = b.tensor(ScalarType::Float, &[1, 8, 1, 1]);
    b.call(Op::Mean.name(), &[d, dims, keep, none, e, e]);
    let shape = b.int_list(&[1, 8]);
    let f = b.tensor(ScalarType::Float, &[1, 8]);
    b.call(Op::ViewCopy.name(), &[e, shape, f, f]);
    b.output(f);
    b
}

#[test]
fn channels_last_follows_chains_and_converts_only_at_the_edges() {
    let (g, stats, program) = compile(residual_graph(ProgramBuilder::new("forward")));
    assert_eq!(stats.channels_last_convolutions, 3);
    // In: the image. Out: the mean's [1, 1, 1, 8] back to [1, 8, 1, 1] for the view (which
    // became an alias). The add and the mean stay channels-last.
    assert_eq!(names(&g), [PERMUTE, NHWC_CONVOLUTION, NHWC_CONVOLUTION, Op::Add, NHWC_CONVOLUTION, Op::Mean, PERMUTE]);
    assert_eq!(stats.layout_conversions, 2);
    let input = TensorData::from_slice(vec![1, 3, 9, 7], &det(189, 21)).expect("input");
    assert_same_results(&g, &program, &[input]);
}

/// MobileNetV3-shaped blocks: a shifted, clamped product written out (`x * clamp(x + 3, 0, 5)
/// / 6`, the 3 an int64 constant converted by `_to_dim_order_copy`; not hard-swish, whose clamp
/// ends at 6, so its element-wise operators stay) and a squeeze-excitation scale (`mean`
/// keeping dims, then `x * s` with `s` of `[1, C, 1, 1]`).
#[test]
fn channels_last_follows_scalar_and_broadcast_operands() {
    let mut b = ProgramBuilder::new("forward");
    let x = b.input(ScalarType::Float, &[1, 3, 9, 7]);
    let w = b.constant_f32(&[8, 3, 3, 3], &det(8 * 27, 31));
    let none = b.none();
    let (st, pd, dl) = (b.int_list(&[1, 1]), b.int_list(&[1, 1]), b.int_list(&[1, 1]));
    let (tr, op, groups) = (b.bool(false), b.int_list(&[0, 0]), b.int(1));
    let shape = [1, 8, 9, 7];
    let a = b.tensor(ScalarType::Float, &shape);
    b.call(Op::Convolution.name(), &[x, w, none, st, pd, dl, tr, op, groups, a, a]);
    // hard-swish
    let three = b.constant(ScalarType::Long, &[], &3i64.to_le_bytes());
    let (no_copy, order) = (b.bool(false), b.int_list(&[]));
    let three_f = b.tensor(ScalarType::Float, &[]);
    b.call(Op::ToDimOrderCopy.name(), &[three, no_copy, order, three_f, three_f]);
    let alpha = b.int(1);
    let plus = b.tensor(ScalarType::Float, &shape);
    b.call(Op::Add.name(), &[a, three_f, alpha, plus, plus]);
    let (zero, five) = (b.int(0), b.int(5));
    let clamped = b.tensor(ScalarType::Float, &shape);
    b.call(Op::Clamp.name(), &[plus, zero, five, clamped, clamped]);
    let prod = b.tensor(ScalarType::Float, &shape);
    b.call(Op::Mul.name(), &[a, clamped, prod, prod]);
    let six_f = b.constant_f32(&[], &[6.0]);
    let hs = b.tensor(ScalarType::Float, &shape);
    b.call(Op::Div.name(), &[prod, six_f, hs, hs]);
    // squeeze-excitation scale
    let (dims, keep) = (b.int_list(&[-1, -2]), b.bool(true));
    let s = b.tensor(ScalarType::Float, &[1, 8, 1, 1]);
    b.call(Op::Mean.name(), &[hs, dims, keep, none, s, s]);
    let y = b.tensor(ScalarType::Float, &shape);
    b.call(Op::Mul.name(), &[hs, s, y, y]);
    b.output(y);
    let (g, stats, program) = compile(b);
    // One conversion in (the image), one out (the result); everything between stays NHWC.
    assert_eq!(stats.layout_conversions, 2, "{:?}", names(&g));
    assert_eq!(names(&g).iter().filter(|&&n| n == PERMUTE).count(), 2, "{:?}", names(&g));
    let input = TensorData::from_slice(vec![1, 3, 9, 7], &det(189, 33)).expect("input");
    assert_same_results(&g, &program, &[input]);
}

/// `nn.Hardswish` and `nn.Hardsigmoid` as ExecuTorch exports them — `x * clamp(x + 3, 0, 6) / 6`
/// and `clamp(x + 3, 0, 6) / 6`, the clamp as two (`min=0`, then `max=6`), the 3 and the 6
/// int64 constants converted by `_to_dim_order_copy` — become one operator each; the same
/// shape with another divisor stays as it is.
#[test]
fn hard_swish_and_hard_sigmoid_written_out_become_one_operator() {
    for divisor in [6i64, 5] {
        let mut b = ProgramBuilder::new("forward");
        let shape = [1, 4, 3, 3];
        let x = b.input(ScalarType::Float, &shape);
        let float = |b: &mut ProgramBuilder, v: i64| {
            let c = b.constant(ScalarType::Long, &[], &v.to_le_bytes());
            let (no_copy, order) = (b.bool(false), b.int_list(&[]));
            let f = b.tensor(ScalarType::Float, &[]);
            b.call(Op::ToDimOrderCopy.name(), &[c, no_copy, order, f, f]);
            f
        };
        let (three, den) = (float(&mut b, 3), float(&mut b, divisor));
        let shifted_clamp = |b: &mut ProgramBuilder| {
            let alpha = b.int(1);
            let a = b.tensor(ScalarType::Float, &shape);
            b.call(Op::Add.name(), &[x, three, alpha, a, a]);
            let (zero, six, none) = (b.int(0), b.int(6), b.none());
            let lo = b.tensor(ScalarType::Float, &shape);
            b.call(Op::Clamp.name(), &[a, zero, none, lo, lo]);
            let hi = b.tensor(ScalarType::Float, &shape);
            b.call(Op::Clamp.name(), &[lo, none, six, hi, hi]);
            hi
        };
        let h = shifted_clamp(&mut b);
        let m = b.tensor(ScalarType::Float, &shape);
        b.call(Op::Mul.name(), &[x, h, m, m]);
        let swish = b.tensor(ScalarType::Float, &shape);
        b.call(Op::Div.name(), &[m, den, swish, swish]);
        let h2 = shifted_clamp(&mut b);
        let sigmoid = b.tensor(ScalarType::Float, &shape);
        b.call(Op::Div.name(), &[h2, den, sigmoid, sigmoid]);
        b.output(swish);
        b.output(sigmoid);
        let (g, stats, program) = compile(b);
        assert_eq!(stats.constants_folded, 2, "the int64 3 and {divisor} become float constants");
        if divisor == 6 {
            assert_eq!(names(&g), [Op::Hardswish, Op::Hardsigmoid]);
        } else {
            // The clamps still merge into one range fused into each add.
            assert_eq!(names(&g), [Op::Add, Op::Mul, Op::Div, Op::Add, Op::Div]);
            assert_eq!(g.ops[0].activation, Some((0.0, 6.0)));
        }
        let input = TensorData::from_slice(shape.to_vec(), &det(36, 51).iter().map(|v| v * 5.0).collect::<Vec<_>>())
            .expect("input");
        assert_same_results(&g, &program, &[input]);
    }
}

#[test]
fn channels_last_is_skipped_in_methods_that_quantize() {
    // The same graph after a quantize/dequantize pair: its convolutions must keep ExecuTorch's
    // summation order, so they stay `aten::convolution.out`.
    let mut b = ProgramBuilder::new("forward");
    let raw = b.input(ScalarType::Float, &[4]);
    let (scale, zp, lo, hi, dt) = (b.double(0.1), b.int(0), b.int(-128), b.int(127), b.int(1));
    let q = b.tensor(ScalarType::Char, &[4]);
    b.call(Op::QuantizePerTensor.name(), &[raw, scale, zp, lo, hi, dt, q, q]);
    b.output(q);
    let b = residual_graph(b);
    let program = Program::from_vec(b.build().expect("builds")).expect("verifies");
    let plan = &program.def().plans[0];
    // The partition: everything after the quantize.
    let instructions: Vec<usize> = (1..plan.chains[0].instructions.len()).collect();
    let inputs = vec![plan.inputs[1]];
    let outputs = vec![plan.outputs[1]];
    let (g, stats) = compile_partition(&program, plan, &instructions, &inputs, &outputs).expect("compiles");
    assert_eq!(stats.channels_last_convolutions, 0);
    assert!(names(&g).iter().all(|n| *n != NHWC_CONVOLUTION && *n != PERMUTE), "{:?}", names(&g));
}

#[test]
fn linear_and_mm_with_constant_weights_become_dense_layers() {
    // linear (weight [N, K]) with a fused relu, then mm with a constant [K, N], then addmm whose
    // beta is not 1 (stays portable).
    let mut b = ProgramBuilder::new("forward");
    let x = b.input(ScalarType::Float, &[2, 3, 5]);
    let w = b.constant_f32(&[4, 5], &det(20, 31));
    let bias = b.constant_f32(&[4], &det(4, 32));
    let h = b.tensor(ScalarType::Float, &[2, 3, 4]);
    b.call(Op::Linear.name(), &[x, w, bias, h, h]);
    let r = b.tensor(ScalarType::Float, &[2, 3, 4]);
    b.call(Op::Relu.name(), &[h, r, r]);
    let shape = b.int_list(&[6, 4]);
    let flat = b.tensor(ScalarType::Float, &[6, 4]);
    b.call(Op::ViewCopy.name(), &[r, shape, flat, flat]);
    let m2 = b.constant_f32(&[4, 7], &det(28, 33));
    let y = b.tensor(ScalarType::Float, &[6, 7]);
    b.call(Op::Mm.name(), &[flat, m2, y, y]);
    let m3 = b.constant_f32(&[7, 2], &det(14, 34));
    let b3 = b.constant_f32(&[2], &det(2, 35));
    let (beta, alpha) = (b.double(0.5), b.int(1));
    let z = b.tensor(ScalarType::Float, &[6, 2]);
    b.call(Op::Addmm.name(), &[b3, y, m3, beta, alpha, z, z]);
    b.output(z);
    let (g, stats, program) = compile(b);
    assert_eq!(stats.dense_layers, 2);
    assert_eq!(names(&g), [DENSE, DENSE, Op::Addmm]);
    assert_eq!(g.ops[0].activation, Some((0.0, f32::INFINITY)));
    let input = TensorData::from_slice(vec![2, 3, 5], &det(30, 36)).expect("input");
    assert_same_results(&g, &program, &[input]);
}

#[test]
fn one_dimensional_convolutions_run_channels_last_too() {
    // conv1d (stride 2, padding 2, dilation 2) → relu → depthwise conv1d → add → output, as an
    // audio model would export them ([N, C, L] tensors).
    let mut b = ProgramBuilder::new("forward");
    let x = b.input(ScalarType::Float, &[2, 3, 20]);
    let conv = |b: &mut ProgramBuilder, x: usize, cin: usize, groups: usize, s: i64, p: i64, d: i64, l: usize, seed| {
        let w = b.constant_f32(&[6, cin / groups, 3], &det(6 * cin / groups * 3, seed));
        let bias = b.constant_f32(&[6], &det(6, seed + 1));
        let (st, pd, dl) = (b.int_list(&[s]), b.int_list(&[p]), b.int_list(&[d]));
        let (tr, op, g) = (b.bool(false), b.int_list(&[0]), b.int(groups as i64));
        let y = b.tensor(ScalarType::Float, &[2, 6, l]);
        b.call(Op::Convolution.name(), &[x, w, bias, st, pd, dl, tr, op, g, y, y]);
        y
    };
    // (20 + 4 - 4 - 1) / 2 + 1 = 10
    let a = conv(&mut b, x, 3, 1, 2, 2, 2, 10, 41);
    let r = b.tensor(ScalarType::Float, &[2, 6, 10]);
    b.call(Op::Relu.name(), &[a, r, r]);
    let d = conv(&mut b, r, 6, 6, 1, 1, 1, 10, 43);
    let alpha = b.int(1);
    let s = b.tensor(ScalarType::Float, &[2, 6, 10]);
    b.call(Op::Add.name(), &[d, r, alpha, s, s]);
    b.output(s);
    let (g, stats, program) = compile(b);
    assert_eq!(stats.channels_last_convolutions, 2);
    assert_eq!(names(&g), [PERMUTE, NHWC_CONVOLUTION, NHWC_CONVOLUTION, Op::Add, PERMUTE]);
    let input = TensorData::from_slice(vec![2, 3, 20], &det(120, 45)).expect("input");
    assert_same_results(&g, &program, &[input]);
}

/// conv → max pool → average pools (padding counted and not, ceil mode, a divisor override).
fn pooling_graph(indices_out: bool) -> ProgramBuilder {
    let mut b = ProgramBuilder::new("forward");
    let x = b.input(ScalarType::Float, &[1, 3, 9, 7]);
    let w = b.constant_f32(&[8, 3, 3, 3], &det(216, 51));
    let bias = b.constant_f32(&[8], &det(8, 52));
    let (st, pd, dl) = (b.int_list(&[1, 1]), b.int_list(&[1, 1]), b.int_list(&[1, 1]));
    let (tr, op, g) = (b.bool(false), b.int_list(&[0, 0]), b.int(1));
    let y = b.tensor(ScalarType::Float, &[1, 8, 9, 7]);
    b.call(Op::Convolution.name(), &[x, w, bias, st, pd, dl, tr, op, g, y, y]);
    // max k3 s2 p1: [1, 8, 5, 4]
    let (k, s, p, d, f) =
        (b.int_list(&[3, 3]), b.int_list(&[2]), b.int_list(&[1, 1]), b.int_list(&[1, 1]), b.bool(false));
    let (m, idx) = (b.tensor(ScalarType::Float, &[1, 8, 5, 4]), b.tensor(ScalarType::Long, &[1, 8, 5, 4]));
    let ret = b.tensor_list(&[m, idx]);
    b.call(Op::MaxPool2dWithIndices.name(), &[y, k, s, p, d, f, m, idx, ret]);
    // avg k3 s1 p1, padding counted: [1, 8, 5, 4]
    let (k3, s1, p1, t, none) = (b.int_list(&[3, 3]), b.int_list(&[1, 1]), b.int_list(&[1]), b.bool(true), b.none());
    let a1 = b.tensor(ScalarType::Float, &[1, 8, 5, 4]);
    b.call(Op::AvgPool2d.name(), &[m, k3, s1, p1, f, t, none, a1, a1]);
    // avg k2 s2, ceil mode, padding not counted: [1, 8, 3, 2]
    let (k2, s2, p0) = (b.int_list(&[2, 2]), b.int_list(&[2, 2]), b.int_list(&[0, 0]));
    let a2 = b.tensor(ScalarType::Float, &[1, 8, 3, 2]);
    b.call(Op::AvgPool2d.name(), &[a1, k2, s2, p0, t, f, none, a2, a2]);
    // avg k3 s1 p1 with a divisor override of 5: [1, 8, 3, 2]
    let five = b.int(5);
    let a3 = b.tensor(ScalarType::Float, &[1, 8, 3, 2]);
    b.call(Op::AvgPool2d.name(), &[a2, k3, s1, p1, f, t, five, a3, a3]);
    b.output(a3);
    if indices_out {
        b.output(idx);
    }
    b
}

#[test]
fn pooling_of_channels_last_tensors_stays_channels_last() {
    let (g, stats, program) = compile(pooling_graph(false));
    assert_eq!(
        names(&g),
        [PERMUTE, NHWC_CONVOLUTION, NHWC_MAX_POOL, NHWC_AVG_POOL, NHWC_AVG_POOL, NHWC_AVG_POOL, PERMUTE]
    );
    assert_eq!(stats.layout_conversions, 2);
    let input = TensorData::from_slice(vec![1, 3, 9, 7], &det(189, 53)).expect("input");
    assert_same_results(&g, &program, std::slice::from_ref(&input));

    // Indices someone reads: the max pool stays the portable operator (in NCHW).
    let (g, _, program) = compile(pooling_graph(true));
    assert_eq!(names(&g)[..4], [PERMUTE, NHWC_CONVOLUTION, PERMUTE, Op::MaxPool2dWithIndices]);
    assert_same_results(&g, &program, &[input]);
}

#[test]
fn row_kernels_compute_what_the_portable_kernels_compute() {
    // A transformer-ish block: broadcasting arithmetic, layer norm, softmax, activations, a mean
    // and a sum over adjacent dimensions, maximum with NaN-free inputs.
    let mut b = ProgramBuilder::new("forward");
    let x = b.input(ScalarType::Float, &[2, 3, 37]);
    let row = b.constant_f32(&[37], &det(37, 61));
    let col = b.constant_f32(&[2, 3, 1], &det(6, 62));
    let alpha = b.int(1);
    let t = |b: &mut ProgramBuilder, sizes: &[usize]| b.tensor(ScalarType::Float, sizes);
    let a = t(&mut b, &[2, 3, 37]);
    b.call(Op::Add.name(), &[x, row, alpha, a, a]);
    let m = t(&mut b, &[2, 3, 37]);
    b.call(Op::Mul.name(), &[a, col, m, m]);
    let (shape, eps, none) = (b.int_list(&[37]), b.double(1e-5), b.none());
    let w = b.constant_f32(&[37], &det(37, 63));
    let (ln, mean, rstd) = (t(&mut b, &[2, 3, 37]), t(&mut b, &[2, 3, 1]), t(&mut b, &[2, 3, 1]));
    let ret = b.tensor_list(&[ln, mean, rstd]);
    b.call(Op::NativeLayerNorm.name(), &[m, shape, w, none, eps, ln, mean, rstd, ret]);
    let gelu = b.string("none");
    let ge = t(&mut b, &[2, 3, 37]);
    b.call(Op::Gelu.name(), &[ln, gelu, ge, ge]);
    let (last, f) = (b.int(-1), b.bool(false));
    let sm = t(&mut b, &[2, 3, 37]);
    b.call(Op::Softmax.name(), &[ge, last, f, sm, sm]);
    let sg = t(&mut b, &[2, 3, 37]);
    b.call(Op::Sigmoid.name(), &[a, sg, sg]);
    let mx = t(&mut b, &[2, 3, 37]);
    b.call(Op::Maximum.name(), &[sm, sg, mx, mx]);
    let (dims, keep) = (b.int_list(&[0, 1]), b.bool(false));
    let mn = t(&mut b, &[37]);
    b.call(Op::Mean.name(), &[mx, dims, keep, none, mn, mn]);
    let (d2, k2) = (b.int_list(&[-1]), b.bool(true));
    let sum = t(&mut b, &[2, 3, 1]);
    b.call(Op::SumIntList.name(), &[mx, d2, k2, none, sum, sum]);
    let dv = t(&mut b, &[2, 3, 37]);
    b.call(Op::Div.name(), &[mx, sum, dv, dv]);
    b.output(mn);
    b.output(dv);
    b.output(rstd);
    let (g, _, program) = compile(b);
    let input = TensorData::from_slice(vec![2, 3, 37], &det(222, 64)).expect("input");
    assert_same_results(&g, &program, &[input]);
}

#[test]
fn bounded_dynamic_shapes_run_every_size_within_their_bounds() {
    // Rows dynamic up to [2, 5]: broadcasting arithmetic, layer norm, GELU, softmax, a dense
    // layer with a fused ReLU, a mean (portable inside the delegate) and a broadcast division.
    let mut b = ProgramBuilder::new("forward");
    let x = b.dynamic_input(ScalarType::Float, &[2, 5, 37]);
    let t = |b: &mut ProgramBuilder, sizes: &[usize]| b.dynamic_tensor(ScalarType::Float, sizes);
    let row = b.constant_f32(&[37], &det(37, 71));
    let alpha = b.int(1);
    let a = t(&mut b, &[2, 5, 37]);
    b.call(Op::Add.name(), &[x, row, alpha, a, a]);
    let m = t(&mut b, &[2, 5, 37]);
    b.call(Op::Mul.name(), &[a, a, m, m]);
    let (shape, eps, none) = (b.int_list(&[37]), b.double(1e-5), b.none());
    let w = b.constant_f32(&[37], &det(37, 72));
    let (ln, mean, rstd) = (t(&mut b, &[2, 5, 37]), t(&mut b, &[2, 5, 1]), t(&mut b, &[2, 5, 1]));
    let ret = b.tensor_list(&[ln, mean, rstd]);
    b.call(Op::NativeLayerNorm.name(), &[m, shape, w, none, eps, ln, mean, rstd, ret]);
    let gelu = b.string("none");
    let ge = t(&mut b, &[2, 5, 37]);
    b.call(Op::Gelu.name(), &[ln, gelu, ge, ge]);
    let (last, f) = (b.int(-1), b.bool(false));
    let sm = t(&mut b, &[2, 5, 37]);
    b.call(Op::Softmax.name(), &[ge, last, f, sm, sm]);
    let lw = b.constant_f32(&[16, 37], &det(16 * 37, 73));
    let lb = b.constant_f32(&[16], &det(16, 74));
    let h = t(&mut b, &[2, 5, 16]);
    b.call(Op::Linear.name(), &[sm, lw, lb, h, h]);
    let r = t(&mut b, &[2, 5, 16]);
    b.call(Op::Relu.name(), &[h, r, r]);
    let (dims, keep) = (b.int_list(&[-1]), b.bool(true));
    let mr = t(&mut b, &[2, 5, 1]);
    b.call(Op::Mean.name(), &[r, dims, keep, none, mr, mr]);
    let dv = t(&mut b, &[2, 5, 16]);
    b.call(Op::Div.name(), &[r, mr, dv, dv]);
    b.output(dv);
    b.output(rstd);
    let (g, stats, program) = compile(b);
    assert_eq!(stats.dense_layers, 1);
    assert!(g.values.iter().any(|v| matches!(v, ferrite_blob::BlobValue::Tensor(t) if t.dynamic)));
    let runs: Vec<Vec<TensorData>> = [[2, 5], [1, 2], [2, 5], [2, 1], [1, 5]]
        .iter()
        .enumerate()
        .map(|(i, &[n, s])| vec![TensorData::from_slice(vec![n, s, 37], &det(n * s * 37, 80 + i as u32)).expect("x")])
        .collect();
    assert_same_results_in_turn(&g, &program, &runs);

    // A convolution with a dynamic batch keeps the default layout (the NHWC kernels are planned
    // for one shape) and runs the portable convolution inside the delegate.
    let mut b = ProgramBuilder::new("forward");
    let x = b.dynamic_input(ScalarType::Float, &[3, 3, 6, 6]);
    let w = b.constant_f32(&[4, 3, 3, 3], &det(108, 75));
    let bias = b.constant_f32(&[4], &det(4, 76));
    let (st, pd, dl) = (b.int_list(&[1, 1]), b.int_list(&[1, 1]), b.int_list(&[1, 1]));
    let (tr, op, groups) = (b.bool(false), b.int_list(&[0, 0]), b.int(1));
    let y = b.dynamic_tensor(ScalarType::Float, &[3, 4, 6, 6]);
    b.call(Op::Convolution.name(), &[x, w, bias, st, pd, dl, tr, op, groups, y, y]);
    let r = b.dynamic_tensor(ScalarType::Float, &[3, 4, 6, 6]);
    b.call(Op::Relu.name(), &[y, r, r]);
    b.output(r);
    let (g, stats, program) = compile(b);
    assert_eq!((stats.channels_last_convolutions, names(&g)), (0, vec![Op::Convolution]));
    let runs: Vec<Vec<TensorData>> = [3, 1, 2]
        .iter()
        .map(|&n| vec![TensorData::from_slice(vec![n, 3, 6, 6], &det(n * 108, 90 + n as u32)).expect("x")])
        .collect();
    assert_same_results_in_turn(&g, &program, &runs);
}
