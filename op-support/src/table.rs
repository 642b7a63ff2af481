//! The operator table. Argument positions follow each `.out` overload's schema (the program's
//! argument order).

use ferrite_program::ScalarType;

use crate::node::NodeView;
use crate::{Constraint, OpSpec};

const F32: &[ScalarType] = &[ScalarType::Float];

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
fn alpha_is_one(v: &NodeView<'_>) -> bool {
    v.is_none(2) || v.number(2) == Some(1.0)
}

macro_rules! c {
    ($text:expr, $f:expr) => {
        Constraint { text: $text, check: $f }
    };
}

macro_rules! op {
    ($name:expr, $family:expr) => {
        OpSpec { name: $name, family: $family, dtypes: F32, quantization: &[], constraints: &[] }
    };
    ($name:expr, $family:expr, [$($c:expr),* $(,)?]) => {
        OpSpec { name: $name, family: $family, dtypes: F32, quantization: &[], constraints: &[$($c),*] }
    };
}

static REGISTRY: &[OpSpec] = &[
    // Convolution and linear algebra.
    op!(
        "aten::convolution.out",
        "Convolution",
        [
            c!("weights must be constant", weight_constant),
            c!("bias must be constant or absent", bias_constant_or_absent_2),
            c!("transposed convolution is not supported", conv_not_transposed),
            c!("1-D or 2-D convolution (weight rank 3 or 4)", conv_1d_or_2d),
        ]
    ),
    op!(
        "aten::addmm.out",
        "Linear algebra",
        [
            c!("weights (mat2) must be constant", addmm_weight_constant),
            c!("bias (self) must be constant", addmm_bias_constant),
            c!("beta and alpha must be 1", addmm_unit_scales),
        ]
    ),
    op!(
        "aten::linear.out",
        "Linear algebra",
        [
            c!("weights must be constant", weight_constant),
            c!("bias must be constant or absent", bias_constant_or_absent_2),
        ]
    ),
    op!("aten::mm.out", "Linear algebra"),
    op!("aten::bmm.out", "Linear algebra"),
    // Normalisation.
    op!(
        "aten::_native_batch_norm_legit_no_training.out",
        "Normalization",
        [
            c!("running statistics, weight and bias must be constant", bn_params_constant),
            c!("input must be 3-D or 4-D", rank3_or_4_input),
        ]
    ),
    op!(
        "aten::native_layer_norm.out",
        "Normalization",
        [
            c!("weight and bias must be constant or absent", layer_norm_params_constant),
            c!("the mean and rstd outputs must be unused", layer_norm_stats_unused),
        ]
    ),
    op!(
        "aten::_softmax.out",
        "Normalization",
        [
            c!("dim must be the last dimension", softmax_last_dim),
            c!("half_to_float must be false", softmax_no_half_to_float),
        ]
    ),
    op!(
        "aten::_log_softmax.out",
        "Normalization",
        [
            c!("dim must be the last dimension", softmax_last_dim),
            c!("half_to_float must be false", softmax_no_half_to_float),
        ]
    ),
    // Pooling and resizing.
    op!(
        "aten::max_pool2d_with_indices.out",
        "Pooling",
        [
            c!("input must be 4-D (N, C, H, W)", rank4_input),
            c!("the indices output must be unused", pool_indices_unused),
        ]
    ),
    op!(
        "aten::avg_pool2d.out",
        "Pooling",
        [
            c!("input must be 4-D (N, C, H, W)", rank4_input),
            c!("divisor_override must be absent", avg_pool_no_divisor_override),
        ]
    ),
    op!("aten::_adaptive_avg_pool2d.out", "Pooling", [c!("input must be 4-D (N, C, H, W)", rank4_input)]),
    op!("aten::mean.out", "Reduction", [c!("dtype must be absent", reduce_no_dtype)]),
    op!("aten::sum.IntList_out", "Reduction", [c!("dtype must be absent", reduce_no_dtype)]),
    op!("aten::amax.out", "Reduction"),
    op!("aten::upsample_nearest2d.vec_out", "Pooling", [c!("input must be 4-D (N, C, H, W)", rank4_input)]),
    op!("aten::upsample_bilinear2d.vec_out", "Pooling", [c!("input must be 4-D (N, C, H, W)", rank4_input)]),
    // Element-wise arithmetic.
    op!("aten::add.out", "Elementwise", [c!("alpha must be 1", alpha_is_one)]),
    op!("aten::sub.out", "Elementwise", [c!("alpha must be 1", alpha_is_one)]),
    op!("aten::mul.out", "Elementwise"),
    op!("aten::div.out", "Elementwise"),
    op!("aten::add.Scalar_out", "Elementwise", [c!("alpha must be 1", alpha_is_one)]),
    op!("aten::sub.Scalar_out", "Elementwise", [c!("alpha must be 1", alpha_is_one)]),
    op!("aten::mul.Scalar_out", "Elementwise"),
    op!("aten::div.Scalar_out", "Elementwise"),
    op!("aten::maximum.out", "Elementwise"),
    op!("aten::minimum.out", "Elementwise"),
    op!("aten::pow.Tensor_Scalar_out", "Elementwise"),
    // Activations and unary math.
    op!("aten::relu.out", "Activation"),
    op!("aten::hardtanh.out", "Activation"),
    op!("aten::clamp.out", "Activation", [c!("min and max must be numbers or absent", clamp_bounds_numbers)]),
    op!("aten::sigmoid.out", "Activation"),
    op!("aten::tanh.out", "Activation"),
    op!("aten::gelu.out", "Activation", [c!("approximate must be \"none\" or \"tanh\"", gelu_known_approximation)]),
    op!("aten::hardswish.out", "Activation"),
    op!("aten::hardsigmoid.out", "Activation"),
    op!("aten::silu.out", "Activation"),
    op!("aten::leaky_relu.out", "Activation"),
    op!("aten::elu.out", "Activation"),
    op!("aten::abs.out", "Unary"),
    op!("aten::neg.out", "Unary"),
    op!("aten::sqrt.out", "Unary"),
    op!("aten::rsqrt.out", "Unary"),
    op!("aten::exp.out", "Unary"),
    op!("aten::log.out", "Unary"),
    op!("aten::floor.out", "Unary"),
    op!("aten::ceil.out", "Unary"),
    op!("aten::reciprocal.out", "Unary"),
    // Comparisons, masks and tensor creation (attention masks and positions are built from these).
    op!("aten::eq.Scalar_out", "Comparison"),
    op!("aten::le.Scalar_out", "Comparison"),
    op!("aten::lt.Scalar_out", "Comparison"),
    op!("aten::ge.Scalar_out", "Comparison"),
    op!("aten::gt.Scalar_out", "Comparison"),
    op!("aten::eq.Tensor_out", "Comparison"),
    op!("aten::logical_and.out", "Comparison"),
    op!("aten::logical_not.out", "Comparison"),
    op!("aten::any.out", "Reduction"),
    op!("aten::where.self_out", "Comparison"),
    op!("aten::masked_fill.Scalar_out", "Comparison"),
    op!("aten::arange.start_out", "Creation"),
    op!("aten::full.out", "Creation"),
    op!("aten::full_like.out", "Creation"),
    op!("aten::scalar_tensor.out", "Creation"),
    // Layout and data movement.
    op!("aten::view_copy.out", "Layout"),
    op!("aten::permute_copy.out", "Layout"),
    op!("aten::squeeze_copy.dims_out", "Layout"),
    op!("aten::unsqueeze_copy.out", "Layout"),
    op!("aten::expand_copy.out", "Layout"),
    op!("aten::slice_copy.Tensor_out", "Layout"),
    op!("aten::select_copy.int_out", "Layout"),
    op!("aten::cat.out", "Layout"),
    op!("aten::split_with_sizes_copy.out", "Layout"),
    op!("aten::clone.out", "Layout"),
    op!("dim_order_ops::_clone_dim_order.out", "Layout"),
    op!("aten::constant_pad_nd.out", "Layout"),
    op!("aten::embedding.out", "Layout", [c!("the embedding table must be constant", embedding_weight_constant)]),
];

/// Every operator the backend runs, in table order.
pub fn registry() -> &'static [OpSpec] {
    REGISTRY
}

/// Whether `family` only moves data (a partition of nothing else is not worth a delegate).
pub fn moves_data_only(family: &str) -> bool {
    family == "Layout"
}
