//! [`NodeView`]: what constraints see of a node — its arguments by schema position, their
//! tensor metadata, whether they are constant, and how their outputs are used.

use ferrite_program::graph::{Graph, Node};
use ferrite_program::{ScalarType, ShapeDynamism, Tensor, Value};

/// A node of a method's graph, with typed access to its arguments (schema order).
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'g> {
    graph: &'g Graph<'g>,
    node: &'g Node,
}

impl<'g> NodeView<'g> {
    /// A view of `node`.
    pub fn new(graph: &'g Graph<'g>, node: &'g Node) -> Self {
        NodeView { graph, node }
    }

    /// The node.
    pub fn node(&self) -> &'g Node {
        self.node
    }

    /// The graph.
    pub fn graph(&self) -> &'g Graph<'g> {
        self.graph
    }

    /// Argument `i` (schema order).
    pub fn arg(&self, i: usize) -> Option<&'g Value> {
        self.node.args.get(i).and_then(|&v| self.graph.value(v))
    }

    /// Argument `i` as a tensor.
    pub fn tensor(&self, i: usize) -> Option<&'g Tensor> {
        self.arg(i).and_then(Value::as_tensor)
    }

    /// Whether argument `i` is absent (`None`).
    pub fn is_none(&self, i: usize) -> bool {
        matches!(self.arg(i), Some(Value::Null) | None)
    }

    /// Argument `i` as an integer.
    pub fn int(&self, i: usize) -> Option<i64> {
        match self.arg(i)? {
            Value::Int(x) => Some(*x),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// Argument `i` as a bool.
    pub fn bool(&self, i: usize) -> Option<bool> {
        match self.arg(i)? {
            Value::Bool(b) => Some(*b),
            Value::Int(x) => Some(*x != 0),
            _ => None,
        }
    }

    /// Argument `i` as a number (int or double).
    pub fn number(&self, i: usize) -> Option<f64> {
        match self.arg(i)? {
            Value::Int(x) => Some(*x as f64),
            Value::Double(d) => Some(*d),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        }
    }

    /// Argument `i` as an integer list.
    pub fn int_list(&self, i: usize) -> Option<Vec<i64>> {
        match self.arg(i)? {
            Value::IntList(items) => items
                .iter()
                .map(|&v| match self.graph.value(v) {
                    Some(Value::Int(x)) => Some(*x),
                    _ => None,
                })
                .collect(),
            Value::Int(x) => Some(vec![*x]),
            _ => None,
        }
    }

    /// Whether argument `i` is constant: constant data in the program, or a view, copy or
    /// per-channel dequantization of constants only (such as the `permute_copy` ExecuTorch puts
    /// before a linear layer's weight, or the `dequantize_per_channel` of a quantized weight).
    pub fn is_constant(&self, i: usize) -> bool {
        self.node.args.get(i).is_some_and(|&v| constant_like(self.graph, v, 0))
    }

    /// Rank of tensor argument `i`.
    pub fn rank(&self, i: usize) -> Option<usize> {
        self.tensor(i).map(|t| t.sizes.len())
    }

    /// Every tensor the node reads or writes.
    pub fn tensors(&self) -> impl Iterator<Item = &'g Tensor> + '_ {
        self.node.inputs.iter().chain(&self.node.outputs).filter_map(|&v| self.graph.tensor(v))
    }

    /// The dtypes of the node's floating-point tensors, deduplicated. (Integer tensors such as
    /// indices are governed by the operator's own constraints.)
    pub fn float_dtypes(&self) -> Vec<ScalarType> {
        let mut out: Vec<ScalarType> = Vec::new();
        for t in self.tensors() {
            if t.scalar_type.is_float() && !out.contains(&t.scalar_type) {
                out.push(t.scalar_type);
            }
        }
        out
    }

    /// Output `k` of the node.
    pub fn output(&self, k: usize) -> Option<usize> {
        self.node.outputs.get(k).copied()
    }

    /// Whether output `k` is read by anything (a later node or the method's outputs).
    pub fn output_used(&self, k: usize) -> bool {
        self.output(k).is_some_and(|v| !self.graph.consumers(v).is_empty() || self.graph.is_method_output(v))
    }
}

/// Whether value `v` is constant data or derived from constants by data movement alone.
pub fn constant_like(graph: &Graph<'_>, v: usize, depth: usize) -> bool {
    if graph.is_constant(v) {
        return true;
    }
    if depth > 16 {
        return false;
    }
    let Some(p) = graph.producer(graph.alias_of(v).unwrap_or(v)) else { return false };
    let Some(node) = graph.nodes().get(p) else { return false };
    // Data movement, and dequantization of constant int8 weights: lowering folds the first and
    // packs the second (or runs it once per call).
    let op = node.op().and_then(crate::lookup_name);
    let moves = op.is_some_and(|s| {
        s.family.moves_data_only()
            || matches!(s.op, crate::Op::DequantizePerChannel | crate::Op::DequantizePerChannelGroup)
    });
    moves && !node.inputs.is_empty() && node.inputs.iter().all(|&u| constant_like(graph, u, depth + 1))
}

pub(crate) fn none_unbounded(v: &NodeView<'_>) -> bool {
    v.tensors().all(|t| t.dynamism != ShapeDynamism::DynamicUnbound)
}

/// Whether every scalar the node reads (int, float and bool arguments, and the items of int
/// lists) is fixed in the program: a partition's blob copies them.
pub(crate) fn fixed_scalars(v: &NodeView<'_>) -> bool {
    let graph = v.graph();
    let node = v.node();
    let returned = ferrite_program::graph::returned_count(&node.args);
    node.args[..node.args.len() - returned].iter().all(|&a| match graph.value(a) {
        Some(Value::IntList(items)) => items.iter().all(|&i| !graph.is_computed_scalar(i)),
        _ => !graph.is_computed_scalar(a),
    })
}

/// Whether every tensor that is not floating point (those the operator's dtypes govern) is
/// `bool`, `uint8`, `int8`, `int32` or `int64`: the element types the backend's kernels are
/// built for besides the floats.
pub(crate) fn integer_dtypes_supported(v: &NodeView<'_>) -> bool {
    use ScalarType::{Bool, Byte, Char, Int, Long};
    v.tensors().all(|t| t.scalar_type.is_float() || matches!(t.scalar_type, Bool | Byte | Char | Int | Long))
}

pub(crate) fn all_contiguous(v: &NodeView<'_>) -> bool {
    v.tensors().all(Tensor::is_contiguous)
}
