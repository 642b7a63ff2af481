//! [`Op`]: every operator Ferrite knows, as a typed identity — one variant per `name.overload`.
//!
//! Programs name operators by string (`aten::convolution.out`); everything inside Ferrite names
//! them by variant (`Op::Convolution`). An operator's whole story can be followed from its
//! variant: its support rule in [`crate::registry`], the partitioner's decision (through
//! [`crate::check`]), the lowering passes that rewrite it, the portable kernel the runtime
//! registers for it and the backend kernel that runs it, and its row in the book's op-support
//! table.
//!
//! Variant names follow the operator's name: namespace dropped for `aten`, `dim_order_ops` and
//! `quantized_decomposed` (prefix `Prim`, `Llama`, `Ferrite` for the others), the name in
//! CamelCase, then the overload without `out` (`aten::add.Scalar_out` is `AddScalar`). Two
//! names would collide under that rule: `aten::adaptive_avg_pool2d.out` is
//! `AdaptiveAvgPool2dComposite` (the core-ATen `_adaptive_avg_pool2d` is `AdaptiveAvgPool2d`)
//! and `quantized_decomposed::add.out` is `QuantizedAdd`.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

macro_rules! operators {
    ($( $(#[$meta:meta])* $variant:ident = $name:literal, )*) => {
        /// An operator Ferrite knows: its portable kernels run it, or (for `ferrite::*`) its
        /// backend does. The variant's documentation is the name programs spell it with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Op {
            $( #[doc = concat!("`", $name, "`")] $(#[$meta])* $variant, )*
        }

        impl Op {
            /// Every operator, in the order of this table.
            pub const ALL: &'static [Op] = &[$( Op::$variant, )*];

            /// The name programs use (`namespace::name.overload`).
            pub const fn name(self) -> &'static str {
                match self {
                    $( Op::$variant => $name, )*
                }
            }

            /// The operator a program names `name` (`namespace::name.overload`), if Ferrite knows it.
            pub fn from_name(name: &str) -> Option<Op> {
                match name {
                    $( $name => Some(Op::$variant), )*
                    _ => None,
                }
            }
        }
    };
}

operators! {
    // ATen (`aten::`)
    AdaptiveAvgPool2d = "aten::_adaptive_avg_pool2d.out",
    LocalScalarDense = "aten::_local_scalar_dense",
    LocalScalarDenseDefault = "aten::_local_scalar_dense.default",
    LogSoftmax = "aten::_log_softmax.out",
    NativeBatchNormLegitNoStats = "aten::_native_batch_norm_legit.no_stats_out",
    NativeBatchNormLegit = "aten::_native_batch_norm_legit.out",
    NativeBatchNormLegitNoTraining = "aten::_native_batch_norm_legit_no_training.out",
    Softmax = "aten::_softmax.out",
    ToCopy = "aten::_to_copy.out",
    UnsafeView = "aten::_unsafe_view.out",
    Abs = "aten::abs.out",
    Acos = "aten::acos.out",
    Acosh = "aten::acosh.out",
    AdaptiveAvgPool2dComposite = "aten::adaptive_avg_pool2d.out",
    AdaptiveMaxPool2d = "aten::adaptive_max_pool2d.out",
    AddScalar = "aten::add.Scalar_out",
    Add = "aten::add.out",
    Addmm = "aten::addmm.out",
    AliasCopy = "aten::alias_copy.out",
    AllAll = "aten::all.all_out",
    AllDims = "aten::all.dims_out",
    All = "aten::all.out",
    Amax = "aten::amax.out",
    Amin = "aten::amin.out",
    AnyAll = "aten::any.all_out",
    AnyDims = "aten::any.dims_out",
    Any = "aten::any.out",
    Arange = "aten::arange.out",
    ArangeStart = "aten::arange.start_out",
    Argmax = "aten::argmax.out",
    Argmin = "aten::argmin.out",
    Asin = "aten::asin.out",
    Asinh = "aten::asinh.out",
    Atan = "aten::atan.out",
    Atan2 = "aten::atan2.out",
    Atanh = "aten::atanh.out",
    AvgPool2d = "aten::avg_pool2d.out",
    Baddbmm = "aten::baddbmm.out",
    BitwiseAndScalar = "aten::bitwise_and.Scalar_out",
    BitwiseAndTensor = "aten::bitwise_and.Tensor_out",
    BitwiseNot = "aten::bitwise_not.out",
    BitwiseOrScalar = "aten::bitwise_or.Scalar_out",
    BitwiseOrTensor = "aten::bitwise_or.Tensor_out",
    BitwiseXorScalar = "aten::bitwise_xor.Scalar_out",
    BitwiseXorTensor = "aten::bitwise_xor.Tensor_out",
    Bmm = "aten::bmm.out",
    Cat = "aten::cat.out",
    Ceil = "aten::ceil.out",
    ClampTensor = "aten::clamp.Tensor_out",
    Clamp = "aten::clamp.out",
    Clone = "aten::clone.out",
    Concat = "aten::concat.out",
    ConstantPadNd = "aten::constant_pad_nd.out",
    Convolution = "aten::convolution.out",
    Copy = "aten::copy.out",
    CopyDefault = "aten::copy_.default",
    Cos = "aten::cos.out",
    Cosh = "aten::cosh.out",
    Cumsum = "aten::cumsum.out",
    DivScalarMode = "aten::div.Scalar_mode_out",
    DivScalar = "aten::div.Scalar_out",
    Div = "aten::div.out",
    DivMode = "aten::div.out_mode",
    Elu = "aten::elu.out",
    Embedding = "aten::embedding.out",
    EqScalar = "aten::eq.Scalar_out",
    EqTensor = "aten::eq.Tensor_out",
    Erf = "aten::erf.out",
    Exp = "aten::exp.out",
    ExpandCopy = "aten::expand_copy.out",
    Expm1 = "aten::expm1.out",
    FillScalar = "aten::fill.Scalar_out",
    Flip = "aten::flip.out",
    Floor = "aten::floor.out",
    FloorDivideScalar = "aten::floor_divide.Scalar_out",
    FloorDivide = "aten::floor_divide.out",
    FmodScalar = "aten::fmod.Scalar_out",
    FmodTensor = "aten::fmod.Tensor_out",
    Full = "aten::full.out",
    FullLike = "aten::full_like.out",
    Gather = "aten::gather.out",
    GeScalar = "aten::ge.Scalar_out",
    GeTensor = "aten::ge.Tensor_out",
    Gelu = "aten::gelu.out",
    Glu = "aten::glu.out",
    GtScalar = "aten::gt.Scalar_out",
    GtTensor = "aten::gt.Tensor_out",
    Hardsigmoid = "aten::hardsigmoid.out",
    Hardswish = "aten::hardswish.out",
    Hardtanh = "aten::hardtanh.out",
    IndexTensor = "aten::index.Tensor_out",
    IndexPut = "aten::index_put.out",
    IndexPutDefault = "aten::index_put_.default",
    IndexSelect = "aten::index_select.out",
    Isinf = "aten::isinf.out",
    Isnan = "aten::isnan.out",
    LeScalar = "aten::le.Scalar_out",
    LeTensor = "aten::le.Tensor_out",
    LeakyRelu = "aten::leaky_relu.out",
    Linear = "aten::linear.out",
    Log = "aten::log.out",
    Log10 = "aten::log10.out",
    Log1p = "aten::log1p.out",
    Log2 = "aten::log2.out",
    LogSoftmaxInt = "aten::log_softmax.int_out",
    LogicalAnd = "aten::logical_and.out",
    LogicalNot = "aten::logical_not.out",
    LogicalOr = "aten::logical_or.out",
    LogicalXor = "aten::logical_xor.out",
    Logsumexp = "aten::logsumexp.out",
    LtScalar = "aten::lt.Scalar_out",
    LtTensor = "aten::lt.Tensor_out",
    MaskedFillScalar = "aten::masked_fill.Scalar_out",
    Matmul = "aten::matmul.out",
    MaxDimMax = "aten::max.dim_max",
    MaxUnary = "aten::max.unary_out",
    MaxPool2dWithIndices = "aten::max_pool2d_with_indices.out",
    Maximum = "aten::maximum.out",
    MeanDtype = "aten::mean.dtype_out",
    Mean = "aten::mean.out",
    MinDimMin = "aten::min.dim_min",
    MinUnary = "aten::min.unary_out",
    Minimum = "aten::minimum.out",
    Mm = "aten::mm.out",
    MulScalar = "aten::mul.Scalar_out",
    Mul = "aten::mul.out",
    NarrowCopy = "aten::narrow_copy.out",
    NativeBatchNorm = "aten::native_batch_norm.out",
    NativeGroupNorm = "aten::native_group_norm.out",
    NativeLayerNorm = "aten::native_layer_norm.out",
    NeScalar = "aten::ne.Scalar_out",
    NeTensor = "aten::ne.Tensor_out",
    Neg = "aten::neg.out",
    Ones = "aten::ones.out",
    OnesLike = "aten::ones_like.out",
    PermuteCopy = "aten::permute_copy.out",
    PowScalar = "aten::pow.Scalar_out",
    PowTensorScalar = "aten::pow.Tensor_Scalar_out",
    PowTensorTensor = "aten::pow.Tensor_Tensor_out",
    ProdInt = "aten::prod.int_out",
    Prod = "aten::prod.out",
    Reciprocal = "aten::reciprocal.out",
    Relu = "aten::relu.out",
    RemainderScalar = "aten::remainder.Scalar_out",
    RemainderTensor = "aten::remainder.Tensor_out",
    Repeat = "aten::repeat.out",
    ReshapeCopy = "aten::reshape_copy.out",
    Round = "aten::round.out",
    Rsqrt = "aten::rsqrt.out",
    RsubScalar = "aten::rsub.Scalar_out",
    ScalarTensor = "aten::scalar_tensor.out",
    ScatterSrc = "aten::scatter.src_out",
    ScatterValue = "aten::scatter.value_out",
    ScatterAdd = "aten::scatter_add.out",
    SelectCopyInt = "aten::select_copy.int_out",
    Sigmoid = "aten::sigmoid.out",
    Sign = "aten::sign.out",
    Silu = "aten::silu.out",
    Sin = "aten::sin.out",
    Sinh = "aten::sinh.out",
    SliceCopyTensor = "aten::slice_copy.Tensor_out",
    SoftmaxInt = "aten::softmax.int_out",
    Softplus = "aten::softplus.out",
    SplitCopyTensor = "aten::split_copy.Tensor_out",
    SplitWithSizesCopy = "aten::split_with_sizes_copy.out",
    Sqrt = "aten::sqrt.out",
    Square = "aten::square.out",
    SqueezeCopyDim = "aten::squeeze_copy.dim_out",
    SqueezeCopyDims = "aten::squeeze_copy.dims_out",
    SqueezeCopy = "aten::squeeze_copy.out",
    Stack = "aten::stack.out",
    StdCorrection = "aten::std.correction_out",
    Std = "aten::std.out",
    SubScalar = "aten::sub.Scalar_out",
    Sub = "aten::sub.out",
    SumIntList = "aten::sum.IntList_out",
    Sum = "aten::sum.out",
    SymNumel = "aten::sym_numel",
    SymNumelDefault = "aten::sym_numel.default",
    SymSizeInt = "aten::sym_size.int",
    TCopy = "aten::t_copy.out",
    Tan = "aten::tan.out",
    Tanh = "aten::tanh.out",
    TransposeCopyInt = "aten::transpose_copy.int_out",
    Trunc = "aten::trunc.out",
    UnbindCopyInt = "aten::unbind_copy.int_out",
    UnsqueezeCopy = "aten::unsqueeze_copy.out",
    UpsampleBilinear2d = "aten::upsample_bilinear2d.out",
    UpsampleBilinear2dVec = "aten::upsample_bilinear2d.vec_out",
    UpsampleNearest2d = "aten::upsample_nearest2d.out",
    UpsampleNearest2dVec = "aten::upsample_nearest2d.vec_out",
    VarCorrection = "aten::var.correction_out",
    Var = "aten::var.out",
    VarMeanCorrection = "aten::var_mean.correction_out",
    ViewCopy = "aten::view_copy.out",
    WhereSelf = "aten::where.self_out",
    Zeros = "aten::zeros.out",
    ZerosLike = "aten::zeros_like.out",
    // Dim-order operators (`dim_order_ops::`)
    CloneDimOrder = "dim_order_ops::_clone_dim_order.out",
    ToDimOrderCopy = "dim_order_ops::_to_dim_order_copy.out",
    // ExecuTorch's symbolic-integer operators (`executorch_prim::`)
    PrimAddScalar = "executorch_prim::add.Scalar",
    PrimCeilScalar = "executorch_prim::ceil.Scalar",
    PrimEqScalar = "executorch_prim::eq.Scalar",
    PrimEtViewDefault = "executorch_prim::et_view.default",
    PrimFloordivScalar = "executorch_prim::floordiv.Scalar",
    PrimFloordivInt = "executorch_prim::floordiv.int",
    PrimGeScalar = "executorch_prim::ge.Scalar",
    PrimGtScalar = "executorch_prim::gt.Scalar",
    PrimLeScalar = "executorch_prim::le.Scalar",
    PrimLtScalar = "executorch_prim::lt.Scalar",
    PrimModScalar = "executorch_prim::mod.Scalar",
    PrimModInt = "executorch_prim::mod.int",
    PrimMulScalar = "executorch_prim::mul.Scalar",
    PrimNegScalar = "executorch_prim::neg.Scalar",
    PrimRoundScalar = "executorch_prim::round.Scalar",
    PrimSubScalar = "executorch_prim::sub.Scalar",
    PrimSymFloatScalar = "executorch_prim::sym_float.Scalar",
    PrimSymIntScalar = "executorch_prim::sym_int.Scalar",
    PrimSymMaxScalar = "executorch_prim::sym_max.Scalar",
    PrimSymMinScalar = "executorch_prim::sym_min.Scalar",
    PrimSymNotScalar = "executorch_prim::sym_not.Scalar",
    PrimTruedivScalar = "executorch_prim::truediv.Scalar",
    PrimTruncScalar = "executorch_prim::trunc.Scalar",
    // Quantize / dequantize (`quantized_decomposed::`)
    QuantizedAdd = "quantized_decomposed::add.out",
    ChooseQparamsTensor = "quantized_decomposed::choose_qparams.Tensor_out",
    ChooseQparamsPerTokenAsymmetric = "quantized_decomposed::choose_qparams_per_token_asymmetric.out",
    DequantizePerChannel = "quantized_decomposed::dequantize_per_channel.out",
    /// PyTorch's groupwise dequantization of 2-D weights (`(input, scales, zero_points?,
    /// quant_min, quant_max, dtype, group_size, output_dtype, *, out)`): ExecuTorch has no kernel
    /// for it, but its emitter writes it (torchao's 8da4w linears), and Ferrite runs it.
    DequantizePerChannelGroup = "quantized_decomposed::dequantize_per_channel_group.out",
    DequantizePerTensorTensor = "quantized_decomposed::dequantize_per_tensor.Tensor_out",
    DequantizePerTensor = "quantized_decomposed::dequantize_per_tensor.out",
    DequantizePerToken = "quantized_decomposed::dequantize_per_token.out",
    Embedding2bitDtype = "quantized_decomposed::embedding_2bit.dtype_out",
    Embedding2bit = "quantized_decomposed::embedding_2bit.out",
    Embedding4bitDtype = "quantized_decomposed::embedding_4bit.dtype_out",
    Embedding4bit = "quantized_decomposed::embedding_4bit.out",
    EmbeddingByteDtype = "quantized_decomposed::embedding_byte.dtype_out",
    EmbeddingByte = "quantized_decomposed::embedding_byte.out",
    MixedLinear = "quantized_decomposed::mixed_linear.out",
    MixedMm = "quantized_decomposed::mixed_mm.out",
    QuantizePerChannel = "quantized_decomposed::quantize_per_channel.out",
    QuantizePerTensorTensor = "quantized_decomposed::quantize_per_tensor.Tensor_out",
    QuantizePerTensor = "quantized_decomposed::quantize_per_tensor.out",
    QuantizePerToken = "quantized_decomposed::quantize_per_token.out",
    // ExecuTorch's LLM custom operators (`llama::`)
    LlamaCustomSdpa = "llama::custom_sdpa.out",
    LlamaSdpaWithKvCache = "llama::sdpa_with_kv_cache.out",
    // The Ferrite backend's own operators, written by lowering (`ferrite::`)
    /// The backend's channels-last average pooling: the arguments of
    /// [`Op::FerriteMaxPool2dNhwc`], dilation `[1, 1]`, with `avg_pool2d`'s `count_include_pad`
    /// (bool) and `divisor_override` (int or None).
    FerriteAvgPool2dNhwc = "ferrite::avg_pool2d_nhwc.out",
    /// The backend's 2-D (or 1-D) convolution over channels-last tensors: `aten::convolution.out`'s
    /// arguments, with the input and output tensors channels-last (`[N, H, W, C]`, or `[N, L, C]`
    /// for a 1-D convolution) and the weight still `[out, in/groups, kh, kw]`; the backend packs
    /// the weight when it initialises.
    FerriteConvolutionNhwc = "ferrite::convolution_nhwc.out",
    /// The backend's dense layer: `(input [.., K], weight [K, N] constant, bias [N] constant or
    /// None, out, out)`; the backend packs the weight when it initialises.
    FerriteDense = "ferrite::dense.out",
    /// The backend's channels-last max pooling: `(x, kernel_size, stride, padding, dilation,
    /// count_include_pad, divisor_override, out, out)` with `x` NHWC (`[N, H, W, C]`), the four
    /// int lists of two entries each, `out` NHWC (`[N, OH, OW, C]`, sizes from the original
    /// operator, so `ceil_mode` is already applied); the two averaging arguments are `false` and
    /// `None`. Written by the channels-last pass for `max_pool2d_with_indices` whose indices
    /// nobody reads.
    FerriteMaxPool2dNhwc = "ferrite::max_pool2d_nhwc.out",
    /// The backend's int8 convolution over channels-last tensors: `(x, weight, bias, stride,
    /// padding, dilation, transposed, output_padding, groups, weight_scales, quant, out, out)` —
    /// `aten::convolution.out`'s arguments with `x` and `out` int8 NHWC (`[N, H, W, C]`, or
    /// `[N, L, C]`), `weight` int8 `[out, in/groups, kh, kw]` (symmetric, per output channel),
    /// `bias` f32 `[out]` or None, `weight_scales` f32 `[out]`, and `quant` the double list
    /// `[x_scale, x_zero_point, out_scale, out_zero_point, out_min, out_max]` (a fused ReLU or
    /// hardtanh narrows `[out_min, out_max]`). Written by lowering for `dequantize → convolution
    /// → quantize` chains; the backend packs the weight when it initialises.
    FerriteQuantizedConvolutionNhwc = "ferrite::quantized_convolution_nhwc.out",
    /// The backend's int8 linear layer: `(x, weight, bias, weight_scales, quant, out, out)` with
    /// `x` int8 `[.., K]`, `weight` int8 `[N, K]` (symmetric, per output channel), `bias` f32
    /// `[N]` or None, `weight_scales` f32 `[N]`, `quant` as for
    /// [`Op::FerriteQuantizedConvolutionNhwc`], and `out` `[.., N]`: int8 (requantized), or f32
    /// (then `quant`'s output entries are unused and a fused activation clamps it).
    FerriteQuantizedDense = "ferrite::quantized_dense.out",
    /// The backend's dynamically quantized linear layer: `(x, weight, bias, weight_scales, out,
    /// out)` with `x` and `out` f32 (`[.., K]`, `[.., N]`), `weight` int8 `[N, K]` (symmetric, per
    /// output channel), `bias` f32 `[N]` or None, `weight_scales` f32 `[N]`; each call chooses
    /// `x`'s int8 parameters over the whole tensor (`choose_qparams.Tensor`), quantizes it and
    /// multiplies in int8. Written by lowering for `choose_qparams → quantize → dequantize →
    /// linear | addmm` chains.
    FerriteDynamicQuantizedDense = "ferrite::dynamic_quantized_dense.out",
    /// The backend's groupwise-weight linear layer with per-token dynamic int8 activations
    /// (torchao's 8da4w): `(x, weight, bias, weight_scales, group_size, out, out)` with `x` and
    /// `out` f32 (`[.., K]`, `[.., N]`), `weight` int8 `[N, K]` (symmetric; int4 values in
    /// `[-8, 7]` for 8da4w), `bias` f32 `[N]` or None, `weight_scales` f32 `[N, K / group_size]`
    /// and `group_size` an even int dividing `K`; each call quantizes every row of `x` with its own
    /// parameters (`choose_qparams_per_token_asymmetric`, `quantize_per_token`). Written by
    /// lowering for `choose_qparams_per_token_asymmetric → quantize_per_token →
    /// dequantize_per_token → linear | addmm` over `dequantize_per_channel_group` weights.
    FerriteGroupwiseDense = "ferrite::groupwise_dense.out",
    /// The backend's int8 addition: `(a, b, quant, out, out)` with `a`, `b` and `out` int8 of one
    /// shape and `quant` the double list `[a_scale, a_zero_point, b_scale, b_zero_point,
    /// out_scale, out_zero_point, out_min, out_max]`; computes ExecuTorch's `dequantize → add →
    /// quantize` exactly. Written by lowering for that chain.
    FerriteQuantizedAdd = "ferrite::quantized_add.out",
    /// The backend's softmax that gives zeros for a row whose inputs are all `−inf` (PyTorch's
    /// `_safe_softmax`, which scaled dot-product attention uses, where `_softmax` gives NaN):
    /// `aten::_softmax.out`'s arguments `(x, dim, half_to_float, out, out)`, f32, over the last
    /// dimension. Written by lowering for the chain ExecuTorch exports `_safe_softmax` as —
    /// `_softmax`, then `eq(x, −inf) → logical_not → any(dim, keepdim) → logical_not` and
    /// `where(mask, full_like(0), softmax)` — one pass instead of seven.
    FerriteSafeSoftmax = "ferrite::safe_softmax.out",
}

impl Op {
    /// Whether this is one of the Ferrite backend's own operators (`ferrite::*`), which only
    /// lowering writes and only the backend runs.
    pub const fn is_backend_only(self) -> bool {
        matches!(
            self,
            Op::FerriteConvolutionNhwc
                | Op::FerriteDense
                | Op::FerriteMaxPool2dNhwc
                | Op::FerriteAvgPool2dNhwc
                | Op::FerriteQuantizedConvolutionNhwc
                | Op::FerriteQuantizedDense
                | Op::FerriteDynamicQuantizedDense
                | Op::FerriteGroupwiseDense
                | Op::FerriteQuantizedAdd
                | Op::FerriteSafeSoftmax
        )
    }

    /// Whether the operator requantizes: a `quantize_per_*` of `quantized_decomposed`. A method
    /// that calls one sums convolutions and products in ExecuTorch's order (see the runtime's
    /// `Accumulation`), and lowering keeps its layout.
    pub const fn is_quantize(self) -> bool {
        matches!(
            self,
            Op::QuantizePerTensor | Op::QuantizePerTensorTensor | Op::QuantizePerChannel | Op::QuantizePerToken
        )
    }

    /// Whether the operator dequantizes (a `dequantize_per_*` of `quantized_decomposed`).
    pub const fn is_dequantize(self) -> bool {
        matches!(
            self,
            Op::DequantizePerTensor
                | Op::DequantizePerTensorTensor
                | Op::DequantizePerChannel
                | Op::DequantizePerChannelGroup
                | Op::DequantizePerToken
        )
    }

    /// Whether the output is the input's bytes under another shape (a reshape): lowering makes
    /// these aliases of their input, and folds them when the input is constant.
    pub const fn is_reshape(self) -> bool {
        matches!(
            self,
            Op::ViewCopy
                | Op::UnsafeView
                | Op::UnsqueezeCopy
                | Op::SqueezeCopyDims
                | Op::SqueezeCopyDim
                | Op::SqueezeCopy
        )
    }

    /// Whether the output holds exactly the input's bytes (a reshape or a contiguous copy).
    pub const fn copies_bytes(self) -> bool {
        self.is_reshape() || matches!(self, Op::Clone | Op::AliasCopy | Op::CloneDimOrder)
    }

    /// Whether the output is a permutation of the input's dimensions.
    pub const fn is_permutation(self) -> bool {
        matches!(self, Op::PermuteCopy | Op::TCopy | Op::TransposeCopyInt)
    }

    /// Element-wise operators that compute the same thing in any memory layout when every tensor
    /// operand has the output's shape (the channels-last pass lets them follow NHWC tensors).
    pub const fn is_layout_agnostic(self) -> bool {
        matches!(
            self,
            Op::Add
                | Op::Sub
                | Op::Mul
                | Op::Div
                | Op::Relu
                | Op::Hardtanh
                | Op::Clamp
                | Op::Sigmoid
                | Op::Tanh
                | Op::Hardswish
                | Op::Hardsigmoid
                | Op::Silu
                | Op::Gelu
                | Op::LeakyRelu
                | Op::Elu
                | Op::Neg
                | Op::Abs
                | Op::Exp
                | Op::Sqrt
                | Op::Rsqrt
                | Op::Clone
                | Op::QuantizePerTensor
                | Op::DequantizePerTensor
                | Op::QuantizedAdd
                | Op::FerriteQuantizedAdd
                | Op::FerriteSafeSoftmax
        )
    }

    /// Activations lowering fuses into their producer as a clamp of its output (`relu`,
    /// `hardtanh`, `clamp`).
    pub const fn is_fusible_activation(self) -> bool {
        matches!(self, Op::Relu | Op::Hardtanh | Op::Clamp)
    }

    /// Operators that can apply a fused activation to their output.
    pub const fn takes_fused_activation(self) -> bool {
        matches!(self, Op::Convolution | Op::Addmm | Op::Linear | Op::Mm | Op::Bmm | Op::Add | Op::Sub | Op::Mul)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Op {
    type Err = UnknownOp;

    fn from_str(s: &str) -> Result<Op, UnknownOp> {
        Op::from_name(s).ok_or_else(|| UnknownOp(s.to_string()))
    }
}

impl Serialize for Op {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// A name that is no operator Ferrite knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownOp(pub String);

impl fmt::Display for UnknownOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not an operator Ferrite knows", self.0)
    }
}

impl std::error::Error for UnknownOp {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for &op in Op::ALL {
            assert_eq!(Op::from_name(op.name()), Some(op));
            assert!(seen.insert(op.name()), "{} twice", op.name());
            assert!(op.name().contains("::"), "{} has no namespace", op.name());
        }
        assert_eq!(Op::from_name("aten::not_an_op.out"), None);
        assert_eq!("aten::add.out".parse::<Op>(), Ok(Op::Add));
    }

    #[test]
    fn groupings_hold_what_their_names_say() {
        for &op in Op::ALL {
            let n = op.name();
            assert_eq!(op.is_quantize(), n.starts_with("quantized_decomposed::quantize_per_"), "{n}");
            assert_eq!(op.is_dequantize(), n.starts_with("quantized_decomposed::dequantize_per_"), "{n}");
            assert_eq!(op.is_backend_only(), n.starts_with("ferrite::"), "{n}");
            assert!(!op.is_reshape() || op.copies_bytes(), "{n}");
        }
    }
}
