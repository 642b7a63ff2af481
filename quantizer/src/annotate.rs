//! Deciding what to quantize, the way PT2E's XNNPACK quantizer annotates a graph: which
//! constant weights become per-channel int8, which activations get a quantize/dequantize pair,
//! and which activations share one observer (and so one scale).
//!
//! Patterns for static int8 below. Dynamic int8 takes only the linear and convolution weights
//! and quantizes their inputs per call; 8da4w takes linears whose input dimension the group
//! divides and quantizes their inputs per token; the weight-only schemes take linear and
//! embedding weights (fp16 also convolution weights) and leave activations alone.
//! - `convolution` with a constant weight, `linear`, `addmm`/`mm` whose weight is
//!   `permute_copy` of a constant `[N, K]` matrix: input activation, per-channel weight, float
//!   bias, output activation — taken after a following `relu`/`hardtanh` when that is the
//!   output's only reader (the activation is fused, as XNNPACK runs it).
//! - `add`, `mul` of two activations: both inputs and the output (after a fused `relu`).
//! - `cat`: every input and the output share one observer.
//! - `max_pool2d`, adaptive average pooling (also `mean` over the two spatial dims, which is
//!   how `adaptive_avg_pool2d(1)` reaches a program), views, `permute_copy`, `squeeze`,
//!   `unsqueeze`, stand-alone `relu`/`hardtanh`: the output shares its input's observer when
//!   the input is quantized.

use std::collections::{BTreeMap, BTreeSet};

use ferrite_op_support::Op;
use ferrite_program::graph::{Graph, Node};
use ferrite_program::{ScalarType, Value};

use crate::Selector;

/// A constant weight to quantize per output channel (axis 0).
#[derive(Debug, Clone)]
pub(crate) struct WeightSite {
    /// The float constant.
    pub value: usize,
    /// The node whose weight it is.
    pub node: usize,
}

/// What kind of quantized operator a node became (for reports and selectors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Conv,
    Linear,
    Add,
    Mul,
    Cat,
    Shared,
    Embedding,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Conv => "conv",
            Family::Linear => "linear",
            Family::Add => "add",
            Family::Mul => "mul",
            Family::Cat => "cat",
            Family::Shared => "shared",
            Family::Embedding => "embedding",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Annotation {
    pub weights: Vec<WeightSite>,
    /// Values quantized after their producer, for every reader.
    pub outputs: BTreeSet<usize>,
    /// `(node, value)`: the node reads a quantized copy of the value.
    pub edges: BTreeSet<(usize, usize)>,
    /// `(node, value)`: the node reads a copy quantized at run time (dynamic int8).
    pub dynamic: BTreeSet<(usize, usize)>,
    /// `(node, value)`: the node reads a copy quantized per token at run time (8da4w).
    pub per_token: BTreeSet<(usize, usize)>,
    /// Observer groups: values sharing parameters, in the order they are computed.
    pub groups: Vec<Vec<usize>>,
    /// Quantized nodes and their family.
    pub nodes: BTreeMap<usize, Family>,
}

impl Annotation {
    /// Every value that gets a quantize/dequantize pair.
    pub fn quantized_values(&self) -> BTreeSet<usize> {
        self.outputs.iter().copied().chain(self.edges.iter().map(|e| e.1)).collect()
    }

    pub fn group_of(&self, v: usize) -> Option<usize> {
        self.groups.iter().position(|g| g.contains(&v))
    }
}

struct Ctx<'g> {
    graph: &'g Graph<'g>,
    ann: Annotation,
    parent: BTreeMap<usize, usize>,
}

impl Ctx<'_> {
    fn find(&mut self, v: usize) -> usize {
        let p = *self.parent.entry(v).or_insert(v);
        if p == v {
            return v;
        }
        let r = self.find(p);
        self.parent.insert(v, r);
        r
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent.insert(rb, ra);
        }
    }

    fn is_float_activation(&self, v: usize) -> bool {
        self.graph.tensor(v).is_some_and(|t| t.scalar_type == ScalarType::Float) && !self.graph.is_constant(v)
    }

    fn quantize_input(&mut self, node: usize, v: usize) {
        self.find(v);
        self.ann.edges.insert((node, v));
    }

    fn quantize_output(&mut self, v: usize) {
        self.find(v);
        self.ann.outputs.insert(v);
    }

    fn is_quantized(&self, v: usize) -> bool {
        self.ann.outputs.contains(&v) || self.ann.edges.iter().any(|e| e.1 == v)
    }

    /// The value an activation fused after `out` writes, if `out`'s only reader is a `relu` or
    /// `hardtanh`; else `out`.
    fn fused_output(&self, out: usize) -> (usize, Option<usize>) {
        let readers = self.graph.consumers(out);
        if readers.len() == 1 && !self.graph.is_method_output(out) {
            let n = &self.graph.nodes()[readers[0]];
            if matches!(op_of(n), Some(Op::Relu | Op::Hardtanh)) && n.inputs.first() == Some(&out) {
                if let Some(&o) = n.outputs.first() {
                    return (o, Some(readers[0]));
                }
            }
        }
        (out, None)
    }
}

pub(crate) fn op_of(node: &Node) -> Option<Op> {
    node.op().and_then(Op::from_name)
}

fn int_arg(graph: &Graph<'_>, v: usize) -> Option<i64> {
    match graph.value(v) {
        Some(Value::Int(i)) => Some(*i),
        _ => None,
    }
}

fn int_list(graph: &Graph<'_>, v: usize) -> Option<Vec<i64>> {
    match graph.value(v) {
        Some(Value::IntList(items)) => items.iter().map(|&i| int_arg(graph, i)).collect(),
        _ => None,
    }
}

/// For a linear-like node: (activation input, constant `[N, K]` weight, the permute node).
fn linear_parts(graph: &Graph<'_>, n: usize) -> Option<(usize, usize, Option<usize>)> {
    let node = &graph.nodes()[n];
    let permuted_constant = |wt: usize| -> Option<(usize, usize)> {
        let p = graph.producer(wt)?;
        let pn = &graph.nodes()[p];
        if op_of(pn) != Some(Op::PermuteCopy) || graph.consumers(wt).len() != 1 {
            return None;
        }
        let w = *pn.inputs.first()?;
        let dims = int_list(graph, *pn.args.get(1)?)?;
        (graph.is_constant(w) && graph.tensor(w)?.sizes.len() == 2 && dims == [1, 0]).then_some((w, p))
    };
    match op_of(node)? {
        Op::Linear => {
            let (x, w) = (*node.args.first()?, *node.args.get(1)?);
            (graph.is_constant(w) && graph.tensor(w)?.sizes.len() == 2).then_some((x, w, None))
        }
        Op::Addmm => {
            let (x, wt) = (*node.args.get(1)?, *node.args.get(2)?);
            let (beta, alpha) = (int_arg(graph, *node.args.get(3)?), int_arg(graph, *node.args.get(4)?));
            if beta != Some(1) || alpha != Some(1) {
                return None;
            }
            let (w, p) = permuted_constant(wt)?;
            Some((x, w, Some(p)))
        }
        Op::Mm => {
            let (x, wt) = (*node.args.first()?, *node.args.get(1)?);
            let (w, p) = permuted_constant(wt)?;
            Some((x, w, Some(p)))
        }
        _ => None,
    }
}

/// For a convolution node: (activation input, constant weight).
fn conv_parts(graph: &Graph<'_>, n: usize) -> Option<(usize, usize)> {
    let node = &graph.nodes()[n];
    if op_of(node)? != Op::Convolution {
        return None;
    }
    let (x, w) = (*node.args.first()?, *node.args.get(1)?);
    let transposed = matches!(graph.value(*node.args.get(6)?), Some(Value::Bool(true)));
    (graph.is_constant(w) && !transposed).then_some((x, w))
}

fn is_spatial_mean(graph: &Graph<'_>, node: &Node) -> bool {
    let Some(&x) = node.inputs.first() else { return false };
    let Some(rank) = graph.tensor(x).map(|t| t.sizes.len() as i64) else { return false };
    let dims = node.args.get(1).and_then(|&d| int_list(graph, d)).unwrap_or_default();
    let keep = matches!(node.args.get(2).and_then(|&k| graph.value(k)), Some(Value::Bool(true)));
    let mut d: Vec<i64> = dims.iter().map(|&d| if d < 0 { d + rank } else { d }).collect();
    d.sort_unstable();
    rank == 4 && keep && d == [2, 3]
}

/// How activations are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Observed during calibration, quantized with fixed parameters.
    Static,
    /// Quantized per call over the whole tensor (dynamic int8).
    Dynamic,
    /// Quantized per call, per token (row), for linears whose input dim divides by the group
    /// (torchao's 8da4w).
    PerToken { group: usize },
    /// Left in float: only weights are quantized (or stored in half precision); convolutions
    /// take part when `conv` is set.
    WeightOnly { group: Option<usize>, conv: bool },
}

/// For an `embedding` node: its constant `[V, D]` table.
fn embedding_table(graph: &Graph<'_>, n: usize) -> Option<usize> {
    let node = &graph.nodes()[n];
    if op_of(node)? != Op::Embedding {
        return None;
    }
    let w = *node.args.first()?;
    (graph.is_constant(w) && graph.tensor(w)?.sizes.len() == 2).then_some(w)
}

/// Annotates method graph `graph` for the activation `mode`.
pub(crate) fn annotate(graph: &Graph<'_>, mode: Mode, exclude: &[Selector]) -> Annotation {
    let dynamic = mode != Mode::Static;
    let mut cx = Ctx { graph, ann: Annotation::default(), parent: BTreeMap::new() };
    let excluded = |n: usize| {
        let node = &graph.nodes()[n];
        exclude.iter().any(|s| s.matches(n, node))
    };
    for n in 0..graph.nodes().len() {
        if excluded(n) {
            continue;
        }
        let node = &graph.nodes()[n];
        let Some(op) = op_of(node) else { continue };
        let out = node.outputs.first().copied();
        let float_out = out.filter(|&o| cx.is_float_activation(o) || graph.is_method_output(o));
        // Linear-like and convolutions.
        let weighted = conv_parts(graph, n)
            .map(|(x, w)| (x, w, Family::Conv))
            .or_else(|| linear_parts(graph, n).map(|(x, w, _)| (x, w, Family::Linear)));
        let float_weight = |w: usize| graph.tensor(w).is_some_and(|t| t.scalar_type == ScalarType::Float);
        if let (Mode::WeightOnly { group, .. }, Some(w)) = (mode, embedding_table(graph, n)) {
            let fits = group.is_none_or(|g| graph.tensor(w).is_some_and(|t| t.sizes[1].is_multiple_of(g)));
            if float_weight(w) && fits {
                cx.ann.weights.push(WeightSite { value: w, node: n });
                cx.ann.nodes.insert(n, Family::Embedding);
            }
            continue;
        }
        if let (Some((x, w, family)), Some(out)) = (weighted, float_out) {
            if !cx.is_float_activation(x) || !float_weight(w) {
                continue;
            }
            let k = graph.tensor(w).map_or(0, |t| t.numel() / t.sizes.first().copied().unwrap_or(1).max(1));
            match mode {
                Mode::PerToken { group } if family != Family::Linear || !k.is_multiple_of(group) => continue,
                Mode::WeightOnly { group: Some(g), .. } if family != Family::Linear || !k.is_multiple_of(g) => continue,
                Mode::WeightOnly { conv: false, .. } if family != Family::Linear => continue,
                _ => {}
            }
            cx.ann.weights.push(WeightSite { value: w, node: n });
            cx.ann.nodes.insert(n, family);
            if let Mode::PerToken { .. } = mode {
                cx.ann.per_token.insert((n, x));
            } else if mode == Mode::Dynamic {
                cx.ann.dynamic.insert((n, x));
            } else if dynamic {
                // Weight-only: the activation stays float.
            } else {
                cx.quantize_input(n, x);
                let (o, _) = cx.fused_output(out);
                cx.quantize_output(o);
            }
            continue;
        }
        if dynamic {
            continue;
        }
        match op {
            Op::Add | Op::Mul => {
                let (Some(&a), Some(&b), Some(out)) = (node.args.first(), node.args.get(1), float_out) else {
                    continue;
                };
                if !cx.is_float_activation(a) || !cx.is_float_activation(b) {
                    continue;
                }
                if op == Op::Add && int_arg(graph, node.args.get(2).copied().unwrap_or(usize::MAX)) != Some(1) {
                    continue;
                }
                cx.ann.nodes.insert(n, if op == Op::Add { Family::Add } else { Family::Mul });
                cx.quantize_input(n, a);
                cx.quantize_input(n, b);
                let (o, _) = cx.fused_output(out);
                cx.quantize_output(o);
            }
            Op::Cat => {
                let (Some(list), Some(out)) = (node.args.first(), float_out) else { continue };
                let Some(Value::TensorList(items)) = graph.value(*list) else { continue };
                if items.is_empty() || !items.iter().all(|&i| cx.is_float_activation(i)) {
                    continue;
                }
                cx.ann.nodes.insert(n, Family::Cat);
                for &i in items {
                    cx.quantize_input(n, i);
                    cx.union(items[0], i);
                }
                cx.quantize_output(out);
                cx.union(items[0], out);
            }
            Op::MaxPool2dWithIndices
            | Op::AdaptiveAvgPool2d
            | Op::AdaptiveAvgPool2dComposite
            | Op::ViewCopy
            | Op::UnsafeView
            | Op::PermuteCopy
            | Op::SqueezeCopy
            | Op::SqueezeCopyDim
            | Op::SqueezeCopyDims
            | Op::UnsqueezeCopy
            | Op::Relu
            | Op::Hardtanh
            | Op::Mean => {
                if op == Op::Mean && !is_spatial_mean(graph, node) {
                    continue;
                }
                let (Some(&x), Some(out)) = (node.inputs.first(), float_out) else { continue };
                if !cx.is_quantized(x) || cx.is_quantized(out) {
                    continue;
                }
                cx.ann.nodes.insert(n, Family::Shared);
                cx.quantize_input(n, x);
                cx.quantize_output(out);
                cx.union(x, out);
            }
            _ => {}
        }
        // Views planned as memory aliases (no instruction) of this node's output.
        if let Some(out) = out {
            alias_views(&mut cx, out);
        }
    }
    // Aliases of method inputs or of quantized outputs from earlier rounds.
    for &i in &graph.plan().inputs {
        alias_views(&mut cx, i);
    }
    // Groups, members in the order they are computed (inputs first, aliases after their base).
    let quantized = cx.ann.quantized_values();
    let order = |v: usize| -> (usize, usize) {
        let base = graph.alias_of(v).unwrap_or(v);
        let at = graph.producer(base).map_or(0, |p| p + 1);
        (at, usize::from(graph.alias_of(v).is_some()))
    };
    let mut members: Vec<usize> = quantized.into_iter().collect();
    members.sort_by_key(|&v| (order(v), v));
    let mut roots: Vec<usize> = Vec::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for v in members {
        let r = cx.find(v);
        match roots.iter().position(|&x| x == r) {
            Some(g) => groups[g].push(v),
            None => {
                roots.push(r);
                groups.push(vec![v]);
            }
        }
    }
    cx.ann.groups = groups;
    cx.ann
}

/// A view (memory alias) of a quantized value whose readers are all quantized nodes shares
/// the value's observer, as PT2E shares a reshape's.
fn alias_views(cx: &mut Ctx<'_>, base: usize) {
    if !cx.is_quantized(base) {
        return;
    }
    let graph = cx.graph;
    let views: Vec<usize> = (0..graph.plan().values.len()).filter(|&v| graph.alias_of(v) == Some(base)).collect();
    for v in views {
        if cx.is_quantized(v) {
            continue;
        }
        cx.quantize_output(v);
        cx.union(base, v);
    }
}
