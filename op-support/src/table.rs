//! The operator table. Argument positions follow each `.out` overload's schema (the program's
//! argument order).

use ferrite_program::ScalarType;

use crate::node::NodeView;
use crate::{Constraint, Family, Op, OpSpec, QuantScheme};

const F32: &[ScalarType] = &[ScalarType::Float];
/// float32 data with float64 quantization parameters (the `.Tensor` overloads' scales).
const F32_F64: &[ScalarType] = &[ScalarType::Float, ScalarType::Double];

fn weight_constant(v: &NodeView<'_>) -> bool {
    v.is_constant(1)
}
fn bias_constant_or_absent_2(v: &NodeView<'_>) -> bool {
    v.is_none(2) || v.is_constant(2)
}
fn conv_not_transposed(v: &NodeView<'_>) -> bool {
    v.bool(6) == Some(false)
}
fn conv_1d_or_2d(v: &NodeView<'_>) -> bool {
    matches!(v.rank(1), Some(3 | 4))
}
fn addmm_weight_constant(v: &NodeView<'_>) -> bool {
    v.is_constant(2)
}
fn addmm_bias_constant(v: &NodeView<'_>) -> bool {
    v.is_constant(0)
}
fn addmm_unit_scales(v: &NodeView<'_>) -> bool {
    v.number(3) == Some(1.0) && v.number(4) == Some(1.0)
}
fn bn_params_constant(v: &NodeView<'_>) -> bool {
    (1..=4).all(|i| v.is_none(i) || v.is_constant(i))
}
fn rank4_input(v: &NodeView<'_>) -> bool {
    v.rank(0) == Some(4)
}
fn rank3_or_4_input(v: &NodeView<'_>) -> bool {
    matches!(v.rank(0), Some(3 | 4))
}
fn pool_indices_unused(v: &NodeView<'_>) -> bool {
    !v.output_used(1)
}
fn avg_pool_no_divisor_override(v: &NodeView<'_>) -> bool {
    v.is_none(6)
}
fn softmax_last_dim(v: &NodeView<'_>) -> bool {
    match (v.int(1), v.rank(0)) {
        (Some(d), Some(r)) => d == -1 || d == r as i64 - 1,
        _ => false,
    }
}
fn softmax_no_half_to_float(v: &NodeView<'_>) -> bool {
    v.bool(2) != Some(true)
}
fn reduce_no_dtype(v: &NodeView<'_>) -> bool {
    v.is_none(3)
}
fn layer_norm_params_constant(v: &NodeView<'_>) -> bool {
    (2..=3).all(|i| v.is_none(i) || v.is_constant(i))
}
fn layer_norm_stats_unused(v: &NodeView<'_>) -> bool {
    !v.output_used(1) && !v.output_used(2)
}
fn clamp_bounds_numbers(v: &NodeView<'_>) -> bool {
    (1..=2).all(|i| v.is_none(i) || v.number(i).is_some())
}
fn gelu_known_approximation(v: &NodeView<'_>) -> bool {
    matches!(v.arg(1), Some(ferrite_program::Value::String(s)) if s == "none" || s == "tanh") || v.is_none(1)
}
fn embedding_weight_constant(v: &NodeView<'_>) -> bool {
    v.is_constant(0)
}
fn dim_order_contiguous_or_absent(v: &NodeView<'_>) -> bool {
    v.is_none(2)
        || v.int_list(2)
            .is_some_and(|d| Some(d.len()) == v.rank(0) && d.iter().enumerate().all(|(i, &x)| x == i as i64))
}
fn alpha_is_one(v: &NodeView<'_>) -> bool {
    v.is_none(2) || v.number(2) == Some(1.0)
}

fn is_int8_code(v: &NodeView<'_>, i: usize) -> bool {
    v.int(i) == Some(ScalarType::Char as i64)
}
fn int8_range(v: &NodeView<'_>, lo: usize, hi: usize) -> bool {
    matches!((v.int(lo), v.int(hi)), (Some(a), Some(b)) if -128 <= a && a <= b && b <= 127)
}
fn quantize_to_int8(v: &NodeView<'_>) -> bool {
    is_int8_code(v, 5) && int8_range(v, 3, 4)
}
fn dequantize_from_int8(v: &NodeView<'_>) -> bool {
    v.tensor(0).is_some_and(|t| t.scalar_type == ScalarType::Char) && is_int8_code(v, 5) && int8_range(v, 3, 4)
}
fn dequantize_to_float(v: &NodeView<'_>) -> bool {
    v.is_none(6) || v.int(6) == Some(ScalarType::Float as i64)
}
fn per_channel_int8_constant(v: &NodeView<'_>) -> bool {
    v.tensor(0).is_some_and(|t| t.scalar_type == ScalarType::Char)
        && v.is_constant(0)
        && is_int8_code(v, 6)
        && int8_range(v, 4, 5)
}
fn per_channel_params_constant(v: &NodeView<'_>) -> bool {
    v.is_constant(1) && (v.is_none(2) || v.is_constant(2))
}
fn per_channel_to_float(v: &NodeView<'_>) -> bool {
    v.is_none(7) || v.int(7) == Some(ScalarType::Float as i64)
}
fn choose_qparams_int8(v: &NodeView<'_>) -> bool {
    is_int8_code(v, 4) && int8_range(v, 1, 2)
}
fn choose_per_token_int8(v: &NodeView<'_>) -> bool {
    is_int8_code(v, 1)
}
fn group_int8_constant(v: &NodeView<'_>) -> bool {
    v.tensor(0).is_some_and(|t| t.scalar_type == ScalarType::Char && t.sizes.len() == 2)
        && v.is_constant(0)
        && is_int8_code(v, 5)
        && int8_range(v, 3, 4)
}
fn group_to_float(v: &NodeView<'_>) -> bool {
    v.int(7) == Some(ScalarType::Float as i64)
}
/// Every floating-point tensor but argument `params` (the scales, which ExecuTorch keeps in
/// float64) is float32: the backend computes quantized values from and into float32 alone.
fn values_f32_but(v: &NodeView<'_>, params: usize) -> bool {
    (0..v.node().args.len())
        .filter(|&i| i != params)
        .all(|i| v.tensor(i).is_none_or(|t| !t.scalar_type.is_float() || t.scalar_type == ScalarType::Float))
}
fn values_f32_scale_1(v: &NodeView<'_>) -> bool {
    values_f32_but(v, 1)
}
fn values_f32_scale_2(v: &NodeView<'_>) -> bool {
    values_f32_but(v, 2)
}
fn values_f32_scale_5(v: &NodeView<'_>) -> bool {
    values_f32_but(v, 5)
}
fn quantized_add_int8(v: &NodeView<'_>) -> bool {
    [0, 5, 14].iter().all(|&i| v.tensor(i).is_some_and(|t| t.scalar_type == ScalarType::Char))
        && int8_range(v, 3, 4)
        && int8_range(v, 8, 9)
        && int8_range(v, 12, 13)
}

macro_rules! c {
    ($text:expr, $f:expr) => {
        Constraint { text: $text, check: $f }
    };
}

macro_rules! op {
    ($op:expr, $family:expr) => {
        OpSpec { op: $op, family: $family, dtypes: F32, quantization: &[], constraints: &[] }
    };
    ($op:expr, $family:expr, [$($c:expr),* $(,)?]) => {
        OpSpec { op: $op, family: $family, dtypes: F32, quantization: &[], constraints: &[$($c),*] }
    };
    ($op:expr, $family:expr, quant $q:expr, [$($c:expr),* $(,)?]) => {
        OpSpec { op: $op, family: $family, dtypes: F32, quantization: $q, constraints: &[$($c),*] }
    };
    ($op:expr, $family:expr, dtypes $d:expr, quant $q:expr, [$($c:expr),* $(,)?]) => {
        OpSpec { op: $op, family: $family, dtypes: $d, quantization: $q, constraints: &[$($c),*] }
    };
}

/// Static int8: `dequantize → op → quantize` chains become one int8 operator.
const STATIC: &[QuantScheme] = &[QuantScheme::StaticInt8];
/// Static or dynamic int8, or int8 weights with a float output (a dequantized linear layer).
const STATIC_LINEAR: &[QuantScheme] =
    &[QuantScheme::StaticInt8, QuantScheme::DynamicInt8, QuantScheme::Int8Weights, QuantScheme::GroupwiseInt4];
/// Per-token activations and groupwise weights (torchao's 8da4w).
const GROUPWISE: &[QuantScheme] = &[QuantScheme::GroupwiseInt4];
/// Runs on int8 (the quantize / dequantize operators themselves).
const INT8: &[QuantScheme] = &[QuantScheme::StaticInt8, QuantScheme::DynamicInt8];

static REGISTRY: &[OpSpec] = &[
    // Convolution and linear algebra.
    op!(
        Op::Convolution,
        Family::Convolution,
        quant STATIC,
        [
            c!("weights must be constant", weight_constant),
            c!("bias must be constant or absent", bias_constant_or_absent_2),
            c!("transposed convolution is not supported", conv_not_transposed),
            c!("1-D or 2-D convolution (weight rank 3 or 4)", conv_1d_or_2d),
        ]
    ),
    op!(
        Op::Addmm,
        Family::LinearAlgebra,
        quant STATIC_LINEAR,
        [
            c!("weights (mat2) must be constant", addmm_weight_constant),
            c!("bias (self) must be constant", addmm_bias_constant),
            c!("beta and alpha must be 1", addmm_unit_scales),
        ]
    ),
    op!(
        Op::Linear,
        Family::LinearAlgebra,
        quant STATIC_LINEAR,
        [
            c!("weights must be constant", weight_constant),
            c!("bias must be constant or absent", bias_constant_or_absent_2),
        ]
    ),
    op!(Op::Mm, Family::LinearAlgebra),
    op!(Op::Bmm, Family::LinearAlgebra),
    // Normalisation.
    op!(
        Op::NativeBatchNormLegitNoTraining,
        Family::Normalization,
        [
            c!("running statistics, weight and bias must be constant", bn_params_constant),
            c!("input must be 3-D or 4-D", rank3_or_4_input),
        ]
    ),
    op!(
        Op::NativeLayerNorm,
        Family::Normalization,
        [
            c!("weight and bias must be constant or absent", layer_norm_params_constant),
            c!("the mean and rstd outputs must be unused", layer_norm_stats_unused),
        ]
    ),
    op!(
        Op::Softmax,
        Family::Normalization,
        [
            c!("dim must be the last dimension", softmax_last_dim),
            c!("half_to_float must be false", softmax_no_half_to_float),
        ]
    ),
    op!(
        Op::LogSoftmax,
        Family::Normalization,
        [
            c!("dim must be the last dimension", softmax_last_dim),
            c!("half_to_float must be false", softmax_no_half_to_float),
        ]
    ),
    // Pooling and resizing.
    op!(
        Op::MaxPool2dWithIndices,
        Family::Pooling,
        [
            c!("input must be 4-D (N, C, H, W)", rank4_input),
            c!("the indices output must be unused", pool_indices_unused),
        ]
    ),
    op!(
        Op::AvgPool2d,
        Family::Pooling,
        [
            c!("input must be 4-D (N, C, H, W)", rank4_input),
            c!("divisor_override must be absent", avg_pool_no_divisor_override),
        ]
    ),
    op!(Op::AdaptiveAvgPool2d, Family::Pooling, [c!("input must be 4-D (N, C, H, W)", rank4_input)]),
    op!(Op::Mean, Family::Reduction, [c!("dtype must be absent", reduce_no_dtype)]),
    op!(Op::SumIntList, Family::Reduction, [c!("dtype must be absent", reduce_no_dtype)]),
    op!(Op::Amax, Family::Reduction),
    op!(Op::UpsampleNearest2dVec, Family::Pooling, [c!("input must be 4-D (N, C, H, W)", rank4_input)]),
    op!(Op::UpsampleBilinear2dVec, Family::Pooling, [c!("input must be 4-D (N, C, H, W)", rank4_input)]),
    // Element-wise arithmetic.
    op!(Op::Add, Family::Elementwise, quant STATIC, [c!("alpha must be 1", alpha_is_one)]),
    op!(Op::Sub, Family::Elementwise, [c!("alpha must be 1", alpha_is_one)]),
    op!(Op::Mul, Family::Elementwise),
    op!(Op::Div, Family::Elementwise),
    op!(Op::AddScalar, Family::Elementwise, [c!("alpha must be 1", alpha_is_one)]),
    op!(Op::SubScalar, Family::Elementwise, [c!("alpha must be 1", alpha_is_one)]),
    op!(Op::MulScalar, Family::Elementwise),
    op!(Op::DivScalar, Family::Elementwise),
    op!(Op::Maximum, Family::Elementwise),
    op!(Op::Minimum, Family::Elementwise),
    op!(Op::PowTensorScalar, Family::Elementwise),
    // Activations and unary math.
    op!(Op::Relu, Family::Activation),
    op!(Op::Hardtanh, Family::Activation),
    op!(Op::Clamp, Family::Activation, [c!("min and max must be numbers or absent", clamp_bounds_numbers)]),
    op!(Op::Sigmoid, Family::Activation),
    op!(Op::Tanh, Family::Activation),
    op!(Op::Gelu, Family::Activation, [c!("approximate must be \"none\" or \"tanh\"", gelu_known_approximation)]),
    op!(Op::Hardswish, Family::Activation),
    op!(Op::Hardsigmoid, Family::Activation),
    op!(Op::Silu, Family::Activation),
    op!(Op::LeakyRelu, Family::Activation),
    op!(Op::Elu, Family::Activation),
    op!(Op::Abs, Family::Unary),
    op!(Op::Neg, Family::Unary),
    op!(Op::Sqrt, Family::Unary),
    op!(Op::Rsqrt, Family::Unary),
    op!(Op::Exp, Family::Unary),
    op!(Op::Log, Family::Unary),
    op!(Op::Floor, Family::Unary),
    op!(Op::Ceil, Family::Unary),
    op!(Op::Reciprocal, Family::Unary),
    // Comparisons, masks and tensor creation (attention masks and positions are built from these).
    op!(Op::EqScalar, Family::Comparison),
    op!(Op::LeScalar, Family::Comparison),
    op!(Op::LtScalar, Family::Comparison),
    op!(Op::GeScalar, Family::Comparison),
    op!(Op::GtScalar, Family::Comparison),
    op!(Op::EqTensor, Family::Comparison),
    op!(Op::LogicalAnd, Family::Comparison),
    op!(Op::LogicalNot, Family::Comparison),
    op!(Op::Any, Family::Reduction),
    op!(Op::WhereSelf, Family::Comparison),
    op!(Op::MaskedFillScalar, Family::Comparison),
    op!(Op::ArangeStart, Family::Creation),
    op!(Op::Full, Family::Creation),
    op!(Op::FullLike, Family::Creation),
    op!(Op::ScalarTensor, Family::Creation),
    // Layout and data movement.
    op!(Op::ViewCopy, Family::Layout),
    op!(Op::PermuteCopy, Family::Layout),
    op!(Op::SqueezeCopyDims, Family::Layout),
    op!(Op::UnsqueezeCopy, Family::Layout),
    op!(Op::ExpandCopy, Family::Layout),
    op!(Op::SliceCopyTensor, Family::Layout),
    op!(Op::SelectCopyInt, Family::Layout),
    op!(Op::Cat, Family::Layout),
    op!(Op::SplitWithSizesCopy, Family::Layout),
    op!(Op::Clone, Family::Layout),
    op!(Op::CloneDimOrder, Family::Layout),
    op!(
        Op::ToDimOrderCopy,
        Family::Layout,
        [c!("keeps the default dim order (`dim_order` absent or 0, 1, …, n-1)", dim_order_contiguous_or_absent)]
    ),
    op!(Op::ConstantPadNd, Family::Layout),
    op!(Op::Embedding, Family::Layout, [c!("the embedding table must be constant", embedding_weight_constant)]),
    // Quantization: run as they are, or consumed by lowering into int8 operators.
    op!(
        Op::QuantizePerTensor,
        Family::Quantization,
        quant INT8,
        [c!("int8 output (dtype torch.int8, range within [-128, 127])", quantize_to_int8)]
    ),
    op!(
        Op::QuantizePerTensorTensor,
        Family::Quantization,
        dtypes F32_F64,
        quant INT8,
        [c!("int8 output (dtype torch.int8, range within [-128, 127])", quantize_to_int8), c!("float32 values (float64 only for the scales)", values_f32_scale_1)]
    ),
    op!(
        Op::DequantizePerTensor,
        Family::Quantization,
        quant INT8,
        [
            c!("int8 input (dtype torch.int8, range within [-128, 127])", dequantize_from_int8),
            c!("float32 output", dequantize_to_float),
        ]
    ),
    op!(
        Op::DequantizePerTensorTensor,
        Family::Quantization,
        dtypes F32_F64,
        quant INT8,
        [
            c!("int8 input (dtype torch.int8, range within [-128, 127])", dequantize_from_int8),
            c!("float32 output", dequantize_to_float),
            c!("float32 values (float64 only for the scales)", values_f32_scale_1),
        ]
    ),
    op!(
        Op::DequantizePerChannel,
        Family::Quantization,
        quant INT8,
        [
            c!("constant int8 input (weights; dtype torch.int8, range within [-128, 127])", per_channel_int8_constant),
            c!("scales and zero points must be constant", per_channel_params_constant),
            c!("float32 output", per_channel_to_float),
        ]
    ),
    op!(
        Op::ChooseQparamsTensor,
        Family::Quantization,
        dtypes F32_F64,
        quant INT8,
        [c!("int8 parameters (dtype torch.int8, range within [-128, 127])", choose_qparams_int8), c!("float32 values (float64 only for the scales)", values_f32_scale_5)]
    ),
    op!(
        Op::ChooseQparamsPerTokenAsymmetric,
        Family::Quantization,
        dtypes F32_F64,
        quant GROUPWISE,
        [c!("int8 parameters (dtype torch.int8)", choose_per_token_int8), c!("float32 values (float64 only for the scales)", values_f32_scale_2)]
    ),
    op!(
        Op::QuantizePerToken,
        Family::Quantization,
        dtypes F32_F64,
        quant GROUPWISE,
        [c!("int8 output (dtype torch.int8, range within [-128, 127])", quantize_to_int8), c!("float32 values (float64 only for the scales)", values_f32_scale_1)]
    ),
    op!(
        Op::DequantizePerToken,
        Family::Quantization,
        dtypes F32_F64,
        quant GROUPWISE,
        [
            c!("int8 input (dtype torch.int8, range within [-128, 127])", dequantize_from_int8),
            c!("float32 output", dequantize_to_float),
            c!("float32 values (float64 only for the scales)", values_f32_scale_1),
        ]
    ),
    op!(
        Op::DequantizePerChannelGroup,
        Family::Quantization,
        quant GROUPWISE,
        [
            c!("constant 2-D int8 input (weights; dtype torch.int8, range within [-128, 127])", group_int8_constant),
            c!("scales and zero points must be constant", per_channel_params_constant),
            c!("float32 output", group_to_float),
        ]
    ),
    op!(
        Op::QuantizedAdd,
        Family::Quantization,
        quant INT8,
        [c!("int8 operands and output, ranges within [-128, 127]", quantized_add_int8)]
    ),
];

/// Whether `op` is in [`registry`]: an operator a delegate can hand the backend (besides the
/// `ferrite::` operators lowering writes, which the backend runs itself). Evaluated at compile
/// time, it decides which portable kernels a delegate-only build of the runtime contains.
pub const fn delegable(op: Op) -> bool {
    let mut i = 0;
    while i < REGISTRY.len() {
        if REGISTRY[i].op as usize == op as usize {
            return true;
        }
        i += 1;
    }
    false
}

/// Every operator the backend runs, in table order.
pub fn registry() -> &'static [OpSpec] {
    REGISTRY
}
