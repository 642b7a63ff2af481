//! Operators the backend runs with its SIMD row kernels ([`ferrite_kernels::rowwise`]) instead of
//! the portable kernels: broadcasting arithmetic, activations, softmax over the last dimension,
//! layer norm, sums and means over adjacent dimensions, and the NHWC pooling the channels-last
//! pass emits.
//!
//! At init, [`RowKernel::recognise`] matches an operation of the blob graph against the forms
//! these kernels cover (float tensors, the arguments each form needs) and makes its plan for the
//! tensors' sizes (their bounds, for dynamic shapes: [`RowKernel::run_resized`] handles other
//! sizes); anything else stays with the portable kernel, which validates its own arguments.
//! Kernels that approximate (`exp`, `erf`) or sum in another order keep the portable kernel as a
//! fallback for programs run with the reference accumulation order ([`RowKernel::exact`]).

use ferrite_blob::{BlobOp, BlobValue};

use super::Graph;
use ferrite_op_support::Op;
use ferrite_program::ScalarType;

use crate::env::Env;
use crate::error::Result;
use ferrite_kernels::rowwise::{self, Broadcast};
use ferrite_kernels::simd::rows::{Binary, Pool, Unary};
use ferrite_kernels::simd::{Level, Window};

/// An operation planned for a row kernel; the `usize`s are value indices of the blob graph.
#[derive(Debug)]
pub(super) enum RowKernel {
    Binary { op: Binary, plan: Broadcast, a: usize, b: usize, out: usize },
    Unary { op: Unary, x: usize, out: usize },
    Softmax { x: usize, out: usize, n: usize, dim: usize, safe: bool },
    LayerNorm { x: usize, weight: Option<usize>, bias: Option<usize>, eps: f32, n: usize, outs: [usize; 3] },
    Sum { x: usize, out: usize, dims: (usize, usize, usize), divisor: f32 },
    Pool { x: usize, out: usize, images: usize, geometry: Window, pool: Pool },
}

/// The float tensor `v`'s sizes.
fn float<'g>(graph: &'g Graph<'_>, v: usize) -> Option<&'g [usize]> {
    graph.tensor(v).filter(|t| t.dtype == ScalarType::Float).map(|t| t.sizes.as_slice())
}

/// An int or float scalar as f32 (`None` for any other value).
fn scalar(graph: &Graph<'_>, v: usize) -> Option<f32> {
    graph.number(v).map(|x| x as f32)
}

fn is_none(graph: &Graph<'_>, v: usize) -> bool {
    graph.is_none(v)
}

/// `d` (possibly negative) as an index into `rank` dimensions.
fn dim(d: i64, rank: usize) -> Option<usize> {
    let r = i64::try_from(rank).ok()?;
    let d = if d < 0 { d + r } else { d };
    (0..r.max(1)).contains(&d).then_some(d as usize)
}

fn numel(sizes: &[usize]) -> Option<usize> {
    sizes.iter().try_fold(1usize, |p, &d| p.checked_mul(d))
}

impl RowKernel {
    /// The row kernel for `op`, when it has one of the forms these kernels cover.
    pub(super) fn recognise(graph: &Graph<'_>, op: &BlobOp) -> Option<RowKernel> {
        let a = &op.args;
        let at = |i: usize| a.get(i).copied();
        let same = |x: usize, out: usize| float(graph, x).is_some() && float(graph, x) == float(graph, out);
        let unary = |op: Unary, out_at: usize| -> Option<RowKernel> {
            let (x, out) = (at(0)?, at(out_at)?);
            same(x, out).then_some(RowKernel::Unary { op, x, out })
        };
        match op.op {
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Maximum | Op::Minimum => {
                let (bop, out_at) = match op.op {
                    Op::Add => (Binary::Add, 3),
                    Op::Sub => (Binary::Sub, 3),
                    Op::Mul => (Binary::Mul, 2),
                    Op::Div => (Binary::Div, 2),
                    Op::Maximum => (Binary::Max, 2),
                    _ => (Binary::Min, 2),
                };
                if out_at == 3 && scalar(graph, at(2)?) != Some(1.0) {
                    return None; // alpha ≠ 1
                }
                let (x, y, out) = (at(0)?, at(1)?, at(out_at)?);
                let plan = Broadcast::new(float(graph, x)?, float(graph, y)?, float(graph, out)?)?;
                Some(RowKernel::Binary { op: bop, plan, a: x, b: y, out })
            }
            Op::Relu => unary(Unary::Clamp(0.0, f32::INFINITY), 1),
            Op::Hardtanh => {
                let (lo, hi) = (scalar(graph, at(1)?)?, scalar(graph, at(2)?)?);
                (lo <= hi).then(|| unary(Unary::Clamp(lo, hi), 3)).flatten()
            }
            Op::Clamp => {
                let bound = |v: usize, open: f32| if is_none(graph, v) { Some(open) } else { scalar(graph, v) };
                let (lo, hi) = (bound(at(1)?, f32::NEG_INFINITY)?, bound(at(2)?, f32::INFINITY)?);
                let given = !(is_none(graph, at(1)?) && is_none(graph, at(2)?));
                (given && lo <= hi).then(|| unary(Unary::Clamp(lo, hi), 3)).flatten()
            }
            Op::Sigmoid => unary(Unary::Sigmoid, 1),
            Op::Tanh => unary(Unary::Tanh, 1),
            Op::Exp => unary(Unary::Exp, 1),
            Op::Silu => unary(Unary::Silu, 1),
            Op::Hardswish => unary(Unary::Hardswish, 1),
            Op::Hardsigmoid => unary(Unary::Hardsigmoid, 1),
            Op::Gelu => {
                let form = match graph.values.get(at(1)?)? {
                    BlobValue::None => Unary::Gelu,
                    BlobValue::String(s) if s == "none" => Unary::Gelu,
                    BlobValue::String(s) if s == "tanh" => Unary::GeluTanh,
                    _ => return None,
                };
                unary(form, 2)
            }
            Op::Softmax | Op::FerriteSafeSoftmax => {
                let (x, out) = (at(0)?, at(3)?);
                let sizes = float(graph, x)?;
                let d = dim(graph.int(at(1)?)?, sizes.len())?;
                let half_to_float = matches!(graph.values.get(at(2)?)?, BlobValue::Bool(true));
                // Softmax over the last dimension (or one followed only by ones).
                let last = sizes.get(d + 1..).is_none_or(|rest| rest.iter().all(|&s| s == 1));
                let n = sizes.get(d).copied().unwrap_or(1);
                let safe = op.op == Op::FerriteSafeSoftmax;
                (same(x, out) && last && !half_to_float && n > 0).then_some(RowKernel::Softmax {
                    x,
                    out,
                    n,
                    dim: d,
                    safe,
                })
            }
            Op::NativeLayerNorm => {
                let x = at(0)?;
                let sizes = float(graph, x)?;
                let BlobValue::IntList(shape) = graph.values.get(at(1)?)? else { return None };
                let k = shape.len();
                if k == 0 || k > sizes.len() {
                    return None;
                }
                let tail = &sizes[sizes.len() - k..];
                if !shape.iter().zip(tail).all(|(&s, &t)| usize::try_from(s) == Ok(t)) {
                    return None;
                }
                let n = numel(tail)?;
                let rows = numel(&sizes[..sizes.len() - k])?;
                let affine = |v: usize| -> Option<Option<usize>> {
                    if is_none(graph, v) {
                        Some(None)
                    } else {
                        (numel(float(graph, v)?)? == n).then_some(Some(v))
                    }
                };
                let (weight, bias) = (affine(at(2)?)?, affine(at(3)?)?);
                let eps = match graph.values.get(at(4)?)? {
                    BlobValue::Double(e) => *e as f32,
                    _ => return None,
                };
                let outs = [at(5)?, at(6)?, at(7)?];
                let stats_ok = outs[1..].iter().all(|&s| float(graph, s).and_then(numel) == Some(rows));
                (same(x, outs[0]) && stats_ok && n > 0).then_some(RowKernel::LayerNorm {
                    x,
                    weight,
                    bias,
                    eps,
                    n,
                    outs,
                })
            }
            Op::Mean | Op::SumIntList => {
                let (x, out) = (at(0)?, at(4)?);
                let sizes = float(graph, x)?;
                float(graph, out)?;
                if !is_none(graph, at(3)?) {
                    return None; // an explicit dtype
                }
                let rank = sizes.len();
                let mut dims: Vec<usize> = match graph.values.get(at(1)?)? {
                    BlobValue::None => (0..rank).collect(),
                    BlobValue::IntList(l) if l.is_empty() => (0..rank).collect(),
                    BlobValue::IntList(l) => l.iter().map(|&d| dim(d, rank)).collect::<Option<_>>()?,
                    _ => return None,
                };
                dims.sort_unstable();
                dims.dedup();
                let (&d0, &d1) = (dims.first()?, dims.last()?);
                if d1 - d0 + 1 != dims.len() || rank == 0 {
                    return None; // not adjacent dimensions
                }
                let (outer, r, inner) = (numel(&sizes[..d0])?, numel(&sizes[d0..=d1])?, numel(&sizes[d1 + 1..])?);
                if numel(float(graph, out)?)? != outer.checked_mul(inner)? {
                    return None;
                }
                let divisor = if op.op == Op::Mean { r as f32 } else { 1.0 };
                (r > 0).then_some(RowKernel::Sum { x, out, dims: (outer, r, inner), divisor })
            }
            Op::FerriteMaxPool2dNhwc | Op::FerriteAvgPool2dNhwc => Self::pool(graph, op),
            _ => None,
        }
    }

    /// A channels-last pooling (see [`Op::FerriteMaxPool2dNhwc`] for the arguments).
    fn pool(graph: &Graph<'_>, op: &BlobOp) -> Option<RowKernel> {
        let a = &op.args;
        let pair = |v: usize| -> Option<[usize; 2]> {
            match graph.values.get(*a.get(v)?)? {
                BlobValue::IntList(l) if l.len() == 2 => {
                    Some([usize::try_from(l[0]).ok()?, usize::try_from(l[1]).ok()?])
                }
                _ => None,
            }
        };
        let (kernel, stride, padding, dilation) = (pair(1)?, pair(2)?, pair(3)?, pair(4)?);
        let flag = |v: usize| match graph.values.get(*a.get(v)?)? {
            BlobValue::Bool(b) => Some(*b),
            _ => None,
        };
        let pool = if op.op == Op::FerriteMaxPool2dNhwc {
            Pool::Max
        } else {
            let divisor = match graph.values.get(*a.get(6)?)? {
                BlobValue::None => None,
                BlobValue::Int(d) if *d != 0 => Some(*d as f32),
                _ => return None,
            };
            Pool::Avg { count_include_pad: flag(5)?, divisor }
        };
        let (x, out) = (*a.first()?, *a.get(7)?);
        let (images, geometry) =
            Window::pooling(float(graph, x)?, float(graph, out)?, kernel, stride, padding, dilation)?;
        Some(RowKernel::Pool { x, out, images, geometry, pool })
    }

    /// Whether the kernel's results are bit-identical to the portable kernel's.
    pub(super) fn exact(&self) -> bool {
        match self {
            RowKernel::Binary { .. } | RowKernel::Pool { pool: Pool::Max, .. } => true,
            RowKernel::Unary { op, .. } => op.exact(),
            _ => false,
        }
    }

    /// The values the kernel reads and writes.
    fn operands(&self) -> (Vec<usize>, Vec<usize>) {
        match *self {
            RowKernel::Binary { a, b, out, .. } => (vec![a, b], vec![out]),
            RowKernel::Unary { x, out, .. }
            | RowKernel::Softmax { x, out, .. }
            | RowKernel::Sum { x, out, .. }
            | RowKernel::Pool { x, out, .. } => (vec![x], vec![out]),
            RowKernel::LayerNorm { x, weight, bias, outs, .. } => {
                (std::iter::once(x).chain(weight).chain(bias).collect(), outs.to_vec())
            }
        }
    }

    /// [`RowKernel::run`] in a partition with dynamic shapes: sizes the outputs from the shapes
    /// the inputs have in this run first. `Ok(false)` when the kernel's plan does not cover
    /// those shapes (nothing was written: the caller runs the portable kernel instead).
    ///
    /// Inputs at their planned bounds run the plan; element-wise kernels run any shape; softmax
    /// and layer norm any number of rows of the planned length; broadcasting arithmetic is
    /// planned again for the shapes at hand.
    pub(super) fn run_resized(
        &self,
        env: &mut Env<'_>,
        level: Level,
        bounds: (f32, f32),
        threads: usize,
    ) -> Result<bool> {
        let sizes = |env: &Env<'_>, v: usize| env.sizes(v).map(<[usize]>::to_vec);
        let (ins, outs) = self.operands();
        let mut at_bounds = true;
        for &v in &ins {
            let slot = env.slot(v)?;
            at_bounds &= slot.sizes == slot.bound;
        }
        if at_bounds {
            for &v in &outs {
                let bound = env.slot(v)?.bound.clone();
                env.resize(v, &bound)?;
            }
            self.run(env, level, bounds, threads)?;
            return Ok(true);
        }
        match *self {
            RowKernel::Unary { x, out, .. } => {
                let s = sizes(env, x)?;
                env.resize(out, &s)?;
            }
            RowKernel::Softmax { x, out, n, dim, .. } => {
                let s = sizes(env, x)?;
                if s.get(dim) != Some(&n) || !s[dim + 1..].iter().all(|&d| d == 1) {
                    return Ok(false);
                }
                env.resize(out, &s)?;
            }
            RowKernel::LayerNorm { x, n, outs: [y, mean, rstd], .. } => {
                // Normalised over the trailing dimensions whose product is `n`: those must keep
                // their planned sizes; the statistics have ones there.
                let (s, bound) = (sizes(env, x)?, env.slot(x)?.bound.clone());
                let Some(k) = (1..=bound.len()).find(|&k| numel(&bound[bound.len() - k..]) == Some(n)) else {
                    return Ok(false);
                };
                let (lead, tail) = s.split_at(s.len() - k);
                if tail != &bound[bound.len() - k..] || env.slot(mean)?.bound.len() != s.len() {
                    return Ok(false);
                }
                let stats: Vec<usize> = lead.iter().copied().chain(std::iter::repeat_n(1, k)).collect();
                env.resize(y, &s)?;
                env.resize(mean, &stats)?;
                env.resize(rstd, &stats)?;
            }
            RowKernel::Binary { op, a, b, out, .. } => {
                let (sa, sb) = (sizes(env, a)?, sizes(env, b)?);
                let Ok(shape) = ferrite_kernels::elementwise::broadcast_shape(&sa, &sb) else { return Ok(false) };
                let Some(plan) = Broadcast::new(&sa, &sb, &shape) else { return Ok(false) };
                env.resize(out, &shape)?;
                return env
                    .run(&[a, b], &[out], |ins, outs| {
                        let (x, y) = (ins[0].typed::<f32>()?, ins[1].typed::<f32>()?);
                        Ok(plan.run(level, op, x, y, outs[0].typed::<f32>()?, bounds, threads)?)
                    })
                    .map(|()| true);
            }
            RowKernel::Sum { .. } | RowKernel::Pool { .. } => return Ok(false),
        }
        self.run(env, level, bounds, threads)?;
        Ok(true)
    }

    /// Runs the kernel with the activation `(lo, hi)` fused.
    pub(super) fn run(&self, env: &mut Env<'_>, level: Level, bounds: (f32, f32), threads: usize) -> Result<()> {
        let clamp = |y: &mut [f32]| {
            if bounds != (f32::NEG_INFINITY, f32::INFINITY) {
                y.iter_mut().for_each(|v| *v = v.clamp(bounds.0, bounds.1));
            }
        };
        match *self {
            RowKernel::Binary { op, ref plan, a, b, out } => env.run(&[a, b], &[out], |ins, outs| {
                let (x, y) = (ins[0].typed::<f32>()?, ins[1].typed::<f32>()?);
                Ok(plan.run(level, op, x, y, outs[0].typed::<f32>()?, bounds, threads)?)
            }),
            RowKernel::Unary { op, x, out } => env.run(&[x], &[out], |ins, outs| {
                let y = outs[0].typed::<f32>()?;
                rowwise::unary(level, op, ins[0].typed::<f32>()?, y, threads)?;
                clamp(y);
                Ok(())
            }),
            RowKernel::Softmax { x, out, n, safe, .. } => env.run(&[x], &[out], |ins, outs| {
                let y = outs[0].typed::<f32>()?;
                rowwise::softmax(level, ins[0].typed::<f32>()?, y, n, safe, threads)?;
                clamp(y);
                Ok(())
            }),
            RowKernel::LayerNorm { x, weight, bias, eps, n, outs } => {
                // (No allocation per run: the inputs present, in order, on the stack.)
                let (mut ins, mut count) = ([x; 3], 1);
                for v in [weight, bias].into_iter().flatten() {
                    ins[count] = v;
                    count += 1;
                }
                env.run(&ins[..count], &outs, |ins, o| {
                    let xs = ins[0].typed::<f32>()?;
                    let w = weight.map(|_| ins[1].typed::<f32>()).transpose()?;
                    let b = bias.map(|_| ins[ins.len() - 1].typed::<f32>()).transpose()?;
                    let [y, mean, rstd] = o else {
                        return Err(crate::error::RuntimeError::Invalid("layer_norm: three outputs expected".into()));
                    };
                    let y = y.typed::<f32>()?;
                    rowwise::layer_norm(
                        level,
                        xs,
                        y,
                        n,
                        w,
                        b,
                        eps,
                        mean.typed::<f32>()?,
                        rstd.typed::<f32>()?,
                        threads,
                    )?;
                    clamp(y);
                    Ok(())
                })
            }
            RowKernel::Sum { x, out, dims, divisor } => env.run(&[x], &[out], |ins, outs| {
                let y = outs[0].typed::<f32>()?;
                rowwise::sum_axis(level, ins[0].typed::<f32>()?, dims, divisor, y)?;
                clamp(y);
                Ok(())
            }),
            RowKernel::Pool { x, out, images, ref geometry, pool } => env.run(&[x], &[out], |ins, outs| {
                let (xs, y) = (ins[0].typed::<f32>()?, outs[0].typed::<f32>()?);
                Ok(rowwise::pool2d(level, xs, images, geometry, pool, y, bounds, threads)?)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use ferrite_blob::BlobTensor;

    use super::*;

    fn t(sizes: &[usize]) -> BlobValue {
        BlobValue::Tensor(BlobTensor {
            dtype: ScalarType::Float,
            sizes: sizes.to_vec(),
            constant: None,
            alias_of: None,
            dynamic: false,
        })
    }

    /// One operation over `values`; its arguments are the values' indices in order.
    fn recognise(op: Op, values: Vec<BlobValue>) -> Option<RowKernel> {
        let args = (0..values.len()).collect();
        let g: Graph<'_> = ferrite_blob::BlobGraph {
            values,
            inputs: vec![],
            outputs: vec![],
            ops: vec![],
            constants: vec![],
            debug: vec![],
        };
        RowKernel::recognise(&g, &BlobOp { op, args, activation: None })
    }

    #[test]
    fn recognises_the_forms_the_row_kernels_cover_and_nothing_else() {
        use BlobValue::{Bool, Double, Int, IntList, None as Nil, String as Str};
        let add = |alpha: BlobValue, b: &[usize]| recognise(Op::Add, vec![t(&[2, 3]), t(b), alpha, t(&[2, 3])]);
        assert!(matches!(add(Int(1), &[3]), Some(RowKernel::Binary { op: Binary::Add, .. })));
        assert!(matches!(add(Double(1.0), &[2, 1]), Some(RowKernel::Binary { .. })));
        assert!(add(Int(2), &[3]).is_none(), "alpha ≠ 1");
        assert!(add(Int(1), &[4]).is_none(), "does not broadcast");
        let ints = BlobValue::Tensor(BlobTensor {
            dtype: ScalarType::Int,
            sizes: vec![2, 3],
            constant: None,
            alias_of: None,
            dynamic: false,
        });
        assert!(recognise(Op::Mul, vec![ints, t(&[2, 3]), t(&[2, 3])]).is_none(), "int operand");

        let softmax =
            |dim: i64, sizes: &[usize]| recognise(Op::Softmax, vec![t(sizes), Int(dim), Bool(false), t(sizes)]);
        assert!(matches!(softmax(-1, &[2, 5]), Some(RowKernel::Softmax { n: 5, .. })));
        assert!(matches!(softmax(1, &[2, 5, 1]), Some(RowKernel::Softmax { n: 5, .. })), "trailing ones");
        assert!(softmax(0, &[2, 5]).is_none(), "not the last dimension");
        assert!(softmax(2, &[2, 5]).is_none(), "out of range");
        let safe = recognise(Op::FerriteSafeSoftmax, vec![t(&[3, 7]), Int(-1), Bool(false), t(&[3, 7])]);
        assert!(matches!(safe, Some(RowKernel::Softmax { n: 7, safe: true, .. })));
        assert!(matches!(softmax(-1, &[2, 5]), Some(RowKernel::Softmax { safe: false, .. })));

        let gelu = |form: BlobValue| recognise(Op::Gelu, vec![t(&[4]), form, t(&[4])]);
        assert!(matches!(gelu(Str("tanh".into())), Some(RowKernel::Unary { op: Unary::GeluTanh, .. })));
        assert!(matches!(gelu(Nil), Some(RowKernel::Unary { op: Unary::Gelu, .. })));
        assert!(gelu(Str("erf".into())).is_none());
        let clamp = |lo: BlobValue, hi: BlobValue| recognise(Op::Clamp, vec![t(&[4]), lo, hi, t(&[4])]);
        assert!(
            matches!(clamp(Nil, Double(6.0)), Some(RowKernel::Unary { op: Unary::Clamp(lo, 6.0), .. }) if lo == f32::NEG_INFINITY)
        );
        assert!(clamp(Nil, Nil).is_none());
        assert!(clamp(Int(3), Int(1)).is_none(), "min above max");
        assert!(recognise(Op::Relu, vec![t(&[4]), t(&[5])]).is_none(), "shape mismatch");

        let mean = |dims: BlobValue| recognise(Op::Mean, vec![t(&[2, 3, 4]), dims, Bool(false), Nil, t(&[2])]);
        assert!(matches!(mean(IntList(vec![-1, 1])), Some(RowKernel::Sum { dims: (2, 12, 1), .. })));
        assert!(mean(IntList(vec![0, 2])).is_none(), "not adjacent");
        assert!(mean(IntList(vec![0])).is_none(), "output size");
        assert!(matches!(
            recognise(Op::SumIntList, vec![t(&[2, 3, 4]), Nil, Bool(false), Nil, t(&[])]),
            Some(RowKernel::Sum { dims: (1, 24, 1), .. })
        ));

        let ln = |shape: Vec<i64>, w: BlobValue| {
            recognise(
                Op::NativeLayerNorm,
                vec![t(&[2, 3, 4]), IntList(shape), w, Nil, Double(1e-5), t(&[2, 3, 4]), t(&[2, 3, 1]), t(&[2, 3, 1])],
            )
        };
        assert!(matches!(ln(vec![4], t(&[4])), Some(RowKernel::LayerNorm { n: 4, .. })));
        assert!(ln(vec![3, 4], Nil).is_none(), "statistics of the wrong size");
        assert!(ln(vec![5], Nil).is_none(), "shape not the trailing sizes");
        assert!(ln(vec![4], t(&[3])).is_none(), "weight of the wrong size");
    }

    #[test]
    fn pooling_needs_a_consistent_geometry() {
        use BlobValue::{Bool, IntList, None as Nil};
        let pool = |kernel: Vec<i64>, out: &[usize]| {
            recognise(
                Op::FerriteMaxPool2dNhwc,
                vec![
                    t(&[1, 6, 6, 3]),
                    IntList(kernel),
                    IntList(vec![2, 2]),
                    IntList(vec![0, 0]),
                    IntList(vec![1, 1]),
                    Bool(false),
                    Nil,
                    t(out),
                ],
            )
        };
        assert!(matches!(pool(vec![2, 2], &[1, 3, 3, 3]), Some(RowKernel::Pool { images: 1, .. })));
        assert!(pool(vec![0, 2], &[1, 3, 3, 3]).is_none(), "empty window");
        assert!(pool(vec![2, 2], &[1, 4, 3, 3]).is_none(), "a window past the image");
        assert!(pool(vec![2, 2], &[1, 3, 3, 4]).is_none(), "channels differ");
        assert!(pool(vec![2], &[1, 3, 3, 3]).is_none(), "one-entry list");
    }
}
