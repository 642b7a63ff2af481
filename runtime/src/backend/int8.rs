//! The backend's int8 operators ([`Op::FerriteQuantizedConvolutionNhwc`],
//! [`Op::FerriteQuantizedDense`]): argument checks against the blob's tensors, and the kernels
//! (`ferrite_kernels::int8`) built with their weights packed.

use std::sync::Arc;

use ferrite_blob::{returned_count, BlobOp, BlobValue};

use super::Graph;
use ferrite_kernels::int8::{AddParams, Epilogue, QConv2d, QDense, QDenseDynamic, QDenseGrouped};
use ferrite_kernels::nhwc::Conv2dGeometry;
use ferrite_kernels::simd::Level;
use ferrite_op_support::Op;
use ferrite_program::ScalarType;

use super::err;
use crate::error::Result;

/// An int8 kernel and the values it reads and writes.
#[derive(Debug, Clone)]
pub(super) enum Int8Kernel {
    Conv { conv: Arc<QConv2d>, input: usize, output: usize },
    Dense { dense: Arc<QDense>, input: usize, output: usize, float_out: bool },
    Dynamic { dense: Arc<QDenseDynamic>, input: usize, output: usize },
    Grouped { dense: Arc<QDenseGrouped>, input: usize, output: usize },
    Add { params: AddParams, a: usize, b: usize, output: usize },
}

/// The `quant` list: `[x_scale, x_zero_point, out_scale, out_zero_point, out_min, out_max]`.
struct Quant {
    x_scale: f64,
    x_zero_point: i32,
    out_scale: f64,
    out_zero_point: i32,
    range: (i32, i32),
}

fn quant(graph: &Graph<'_>, v: usize, bad: &dyn Fn(&str) -> crate::RuntimeError) -> Result<Quant> {
    let Some(BlobValue::DoubleList(q)) = graph.values.get(v) else {
        return Err(bad("quant must be a list of six numbers"));
    };
    let &[x_scale, xz, out_scale, oz, lo, hi] = q.as_slice() else {
        return Err(bad("quant must be a list of six numbers"));
    };
    let int = |x: f64| int8_value(x).ok_or_else(|| bad(&format!("{x} is not an int8 value")));
    Ok(Quant { x_scale, x_zero_point: int(xz)?, out_scale, out_zero_point: int(oz)?, range: (int(lo)?, int(hi)?) })
}

/// `x` as an int8 value, when it is one (the `quant` lists carry zero points and ranges as doubles).
fn int8_value(x: f64) -> Option<i32> {
    (x.fract() == 0.0 && (-128.0..=127.0).contains(&x)).then_some(x as i32)
}

/// A constant int8 tensor's values and sizes.
fn constant_i8(graph: &Graph<'_>, v: usize) -> Option<(Vec<i8>, Vec<usize>)> {
    let t = graph.tensor(v).filter(|t| t.dtype == ScalarType::Char)?;
    let bytes = graph.constant(t.constant?)?;
    (Some(bytes.len()) == t.sizes.iter().try_fold(1usize, |a, &d| a.checked_mul(d)))
        .then(|| (bytes.iter().map(|&b| b as i8).collect(), t.sizes.clone()))
}

/// The weight scales and bias (f32 constants of `n` values; the bias may be None).
fn scales_and_bias(
    graph: &Graph<'_>,
    scales: usize,
    bias: usize,
    n: usize,
    bad: &dyn Fn(&str) -> crate::RuntimeError,
) -> Result<(Vec<f64>, Option<Vec<f32>>)> {
    let s = super::constant_f32(graph, scales)
        .filter(|s| s.len() == n)
        .ok_or_else(|| bad(&format!("weight scales must be a constant of {n} f32")))?;
    Ok((s.iter().copied().map(f64::from).collect(), bias_of(graph, bias, n, bad)?))
}

/// An optional f32 bias of `n` values: None, or a constant.
fn bias_of(
    graph: &Graph<'_>,
    bias: usize,
    n: usize,
    bad: &dyn Fn(&str) -> crate::RuntimeError,
) -> Result<Option<Vec<f32>>> {
    match graph.values.get(bias) {
        Some(BlobValue::None) => Ok(None),
        _ => super::constant_f32(graph, bias)
            .filter(|b| b.len() == n)
            .map(|b| Some(b.into_owned()))
            .ok_or_else(|| bad(&format!("bias must be None or a constant of {n} f32"))),
    }
}

/// The operands a dense layer quantizing its f32 input at run time shares: f32 input `x` and
/// output `out` whose rows fit the int8 constant weight `w` (`[N, K]`). Returns the weight, N and K.
fn float_rows(
    graph: &Graph<'_>,
    (x, w, out): (usize, usize, usize),
    bad: &dyn Fn(&str) -> crate::RuntimeError,
) -> Result<(Vec<i8>, usize, usize)> {
    let float = |v: usize, what: &str| {
        graph
            .tensor(v)
            .filter(|t| t.dtype == ScalarType::Float)
            .ok_or_else(|| bad(&format!("{what} must be an f32 tensor")))
    };
    let (x, out) = (float(x, "input")?, float(out, "output")?);
    let (weight, wsizes) = constant_i8(graph, w).ok_or_else(|| bad("weight must be an int8 constant"))?;
    let &[n, k] = wsizes.as_slice() else { return Err(bad("weight must be [N, K]")) };
    if !super::rows_fit(&x.sizes, &out.sizes, k, n) {
        return Err(bad(&format!("input {:?} and output {:?} do not fit a {n} × {k} weight", x.sizes, out.sizes)));
    }
    Ok((weight, n, k))
}

fn epilogue(
    q: &Quant,
    scales: &[f64],
    bias: Option<&[f32]>,
    float_out: bool,
    act: Option<(f32, f32)>,
) -> Result<Epilogue> {
    let e = if float_out {
        Epilogue::float(q.x_scale, scales, bias, act.unwrap_or((f32::NEG_INFINITY, f32::INFINITY)))
    } else {
        Epilogue::int8(q.x_scale, scales, bias, q.out_scale, q.out_zero_point, q.range)
    };
    e.map_err(Into::into)
}

/// Builds the int8 convolution of `op`.
pub(super) fn convolution(graph: &Graph<'_>, op: &BlobOp, level: Level) -> Result<Int8Kernel> {
    let bad = |m: &str| err(format!("{}: {m}", Op::FerriteQuantizedConvolutionNhwc));
    let a = &op.args;
    if a.len() != 13 || returned_count(a) != 1 {
        return Err(bad("expects (x, weight, bias, stride, padding, dilation, transposed, output_padding, groups, weight_scales, quant, out, out)"));
    }
    if op.activation.is_some() {
        return Err(bad("a fused activation belongs in the output range"));
    }
    let int8 = |v: usize, what: &str| {
        graph
            .tensor(v)
            .filter(|t| t.dtype == ScalarType::Char)
            .ok_or_else(|| bad(&format!("{what} must be an int8 tensor")))
    };
    let (x, out) = (int8(a[0], "input")?, int8(a[11], "output")?);
    let (weight, wsizes) = constant_i8(graph, a[1]).ok_or_else(|| bad("weight must be an int8 constant"))?;
    if !matches!(graph.values.get(a[6]), Some(BlobValue::Bool(false))) {
        return Err(bad("transposed convolutions are not supported"));
    }
    let nchw: Vec<usize> = match *x.sizes.as_slice() {
        [n, h, w, c] => vec![n, c, h, w],
        [n, l, c] => vec![n, c, l],
        _ => return Err(bad("input must be 3-D or 4-D")),
    };
    let list = |v: usize| graph.int_list(v).ok_or_else(|| bad("stride, padding and dilation must be int lists"));
    let groups = graph.int(a[8]).ok_or_else(|| bad("groups must be an int"))?;
    if wsizes.len() != nchw.len() || out.sizes.len() != nchw.len() {
        return Err(bad("input, weight and output ranks differ"));
    }
    let geometry = Conv2dGeometry::from_nchw(&nchw, &wsizes, &list(a[3])?, &list(a[4])?, &list(a[5])?, groups)
        .ok_or_else(|| bad("invalid geometry"))?;
    let [oh, ow] = geometry.output()?;
    let (n, o) = (geometry.batch, geometry.out_channels);
    let expected = if nchw.len() == 4 { vec![n, oh, ow, o] } else { vec![n, ow, o] };
    if out.sizes != expected {
        return Err(bad(&format!("output {:?} does not match the geometry ({expected:?})", out.sizes)));
    }
    let q = quant(graph, a[10], &bad)?;
    let (scales, bias) = scales_and_bias(graph, a[9], a[2], o, &bad)?;
    let ep = epilogue(&q, &scales, bias.as_deref(), false, None)?;
    let conv = QConv2d::new(level, geometry, &weight, q.x_zero_point, ep)?;
    tracing::debug!(
        target: "ferrite::backend",
        strategy = conv.strategy(),
        level = level.name(),
        packed_bytes = conv.packed_bytes(),
        "packed an int8 convolution"
    );
    Ok(Int8Kernel::Conv { conv: Arc::new(conv), input: a[0], output: a[11] })
}

/// Builds the int8 dense layer of `op`.
pub(super) fn dense(graph: &Graph<'_>, op: &BlobOp, level: Level) -> Result<Int8Kernel> {
    let bad = |m: &str| err(format!("{}: {m}", Op::FerriteQuantizedDense));
    let a = &op.args;
    if a.len() != 7 || returned_count(a) != 1 {
        return Err(bad("expects (x, weight, bias, weight_scales, quant, out, out)"));
    }
    let x = graph
        .tensor(a[0])
        .filter(|t| t.dtype == ScalarType::Char)
        .ok_or_else(|| bad("input must be an int8 tensor"))?;
    let out = graph.tensor(a[5]).ok_or_else(|| bad("output must be a tensor"))?;
    let float_out = match out.dtype {
        ScalarType::Char => false,
        ScalarType::Float => true,
        other => return Err(bad(&format!("output must be int8 or f32, not {other}"))),
    };
    if !float_out && op.activation.is_some() {
        return Err(bad("a fused activation on an int8 output belongs in the output range"));
    }
    let (weight, wsizes) = constant_i8(graph, a[1]).ok_or_else(|| bad("weight must be an int8 constant"))?;
    let &[n, k] = wsizes.as_slice() else { return Err(bad("weight must be [N, K]")) };
    if !super::rows_fit(&x.sizes, &out.sizes, k, n) {
        return Err(bad(&format!("input {:?} and output {:?} do not fit a {n} × {k} weight", x.sizes, out.sizes)));
    }
    let q = quant(graph, a[4], &bad)?;
    let (scales, bias) = scales_and_bias(graph, a[3], a[2], n, &bad)?;
    let ep = epilogue(&q, &scales, bias.as_deref(), float_out, op.activation)?;
    let dense = QDense::new(level, k, n, &weight, q.x_zero_point, ep)?;
    tracing::debug!(target: "ferrite::backend", k, n, float_out, level = level.name(), "packed an int8 dense layer");
    Ok(Int8Kernel::Dense { dense: Arc::new(dense), input: a[0], output: a[5], float_out })
}

/// Builds the dynamically quantized dense layer of `op`.
pub(super) fn dynamic_dense(graph: &Graph<'_>, op: &BlobOp, level: Level) -> Result<Int8Kernel> {
    let bad = |m: &str| err(format!("{}: {m}", Op::FerriteDynamicQuantizedDense));
    let a = &op.args;
    if a.len() != 6 || returned_count(a) != 1 {
        return Err(bad("expects (x, weight, bias, weight_scales, out, out)"));
    }
    let (weight, n, k) = float_rows(graph, (a[0], a[1], a[4]), &bad)?;
    let (scales, bias) = scales_and_bias(graph, a[3], a[2], n, &bad)?;
    let clamp = op.activation.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
    let dense = QDenseDynamic::new(level, k, n, &weight, &scales, bias.as_deref(), clamp)?;
    tracing::debug!(target: "ferrite::backend", k, n, level = level.name(), "packed a dynamic int8 dense layer");
    Ok(Int8Kernel::Dynamic { dense: Arc::new(dense), input: a[0], output: a[4] })
}

/// Builds the groupwise-weight dense layer of `op` (per-token dynamic activations).
pub(super) fn grouped_dense(graph: &Graph<'_>, op: &BlobOp, level: Level) -> Result<Int8Kernel> {
    let bad = |m: &str| err(format!("{}: {m}", Op::FerriteGroupwiseDense));
    let a = &op.args;
    if a.len() != 7 || returned_count(a) != 1 {
        return Err(bad("expects (x, weight, bias, weight_scales, group_size, out, out)"));
    }
    let (weight, n, k) = float_rows(graph, (a[0], a[1], a[5]), &bad)?;
    let group = match graph.values.get(a[4]) {
        Some(BlobValue::Int(g)) => usize::try_from(*g).ok().filter(|&g| g >= 2 && g % 2 == 0 && k % g == 0),
        _ => None,
    }
    .ok_or_else(|| bad(&format!("group_size must be an even int dividing K = {k}")))?;
    let groups = k / group;
    let scales = super::constant_f32(graph, a[3])
        .filter(|s| s.len() == n * groups)
        .ok_or_else(|| bad(&format!("weight scales must be a constant of {n} × {groups} f32")))?;
    let bias = bias_of(graph, a[2], n, &bad)?;
    let clamp = op.activation.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
    let dense = QDenseGrouped::new(level, k, n, &weight, group, &scales, bias.as_deref(), clamp)?;
    tracing::debug!(target: "ferrite::backend", k, n, group, level = level.name(), "packed a groupwise dense layer");
    Ok(Int8Kernel::Grouped { dense: Arc::new(dense), input: a[0], output: a[5] })
}

/// Checks the int8 addition of `op`.
pub(super) fn add(graph: &Graph<'_>, op: &BlobOp) -> Result<Int8Kernel> {
    let bad = |m: &str| err(format!("{}: {m}", Op::FerriteQuantizedAdd));
    let a = &op.args;
    if a.len() != 5 || returned_count(a) != 1 || op.activation.is_some() {
        return Err(bad("expects (a, b, quant, out, out) and no fused activation"));
    }
    let int8 = |v: usize| graph.tensor(v).filter(|t| t.dtype == ScalarType::Char).map(|t| t.sizes.clone());
    match (int8(a[0]), int8(a[1]), int8(a[3])) {
        (Some(x), Some(y), Some(o)) if x == o && y == o => {}
        _ => return Err(bad("a, b and out must be int8 tensors of one shape")),
    }
    let Some(BlobValue::DoubleList(q)) = graph.values.get(a[2]) else {
        return Err(bad("quant must be a list of eight numbers"));
    };
    let &[sa, za, sb, zb, so, zo, lo, hi] = q.as_slice() else {
        return Err(bad("quant must be a list of eight numbers"));
    };
    let int = |x: f64| int8_value(x).ok_or_else(|| bad(&format!("{x} is not an int8 value")));
    let params = AddParams::new((sa, int(za)?), (sb, int(zb)?), (so, int(zo)?), (int(lo)?, int(hi)?))?;
    Ok(Int8Kernel::Add { params, a: a[0], b: a[1], output: a[3] })
}
