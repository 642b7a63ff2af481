//! A dataflow view of one method: its kernel and delegate calls as nodes, which values each
//! node reads and writes, and who produces and consumes each value. The partitioner and the
//! lowering passes work on this view.
//!
//! A `.pte` file does not record which arguments of a call are outputs; ExecuTorch's emitter
//! does leave a reliable trace of it: it appends a call's returned values after its arguments,
//! and an out-variant returns its `out` tensors, so the last `k` arguments repeat the `k` before
//! them. Where nothing repeats (operators returning nothing, such as
//! `split_with_sizes_copy.out`, whose outputs form a trailing tensor list), the trailing tensor
//! list — or else the last tensor argument — is the output.

use std::collections::BTreeSet;

use crate::model::*;

/// One call: a kernel call or a delegate call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Index of the instruction in the method's (single) chain.
    pub instruction: usize,
    /// What the node runs.
    pub kind: NodeKind,
    /// All argument value indices, as serialized.
    pub args: Vec<usize>,
    /// Tensor values the node reads (constants and method inputs included), in argument order,
    /// without duplicates.
    pub inputs: Vec<usize>,
    /// Tensor values the node writes, in order.
    pub outputs: Vec<usize>,
}

/// What a node runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// An operator, by `name.overload` (`aten::add.out`).
    Kernel(String),
    /// A delegate, by its index in the plan's delegate table.
    Delegate(usize),
}

impl Node {
    /// The operator name for kernel calls.
    pub fn op(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Kernel(op) => Some(op),
            NodeKind::Delegate(_) => None,
        }
    }
}

/// The dataflow graph of one method.
#[derive(Debug, Clone)]
pub struct Graph<'p> {
    plan: &'p ExecutionPlan,
    nodes: Vec<Node>,
    /// For each value: the node that writes it, if any.
    producer: Vec<Option<usize>>,
    /// For each value: the nodes that read it (or a memory alias of it).
    consumers: Vec<Vec<usize>>,
    /// For each value: the earlier-written value whose memory it aliases, if any.
    alias: Vec<Option<usize>>,
    /// Control flow (jumps or moves) present: such methods are left alone by the partitioner.
    has_control_flow: bool,
    /// For each value: whether a kernel call writes it as a scalar (the symbolic sizes
    /// `sym_size` and ExecuTorch's `executorch_prim` arithmetic compute at run time).
    computed_scalar: Vec<bool>,
}

/// The tensor value indices an argument refers to (itself, or a list's members).
fn tensors_of(plan: &ExecutionPlan, v: usize) -> Vec<usize> {
    match plan.values.get(v) {
        Some(Value::Tensor(_)) => vec![v],
        Some(Value::TensorList(items)) => items.clone(),
        Some(Value::OptionalTensorList(items)) => items.iter().flatten().copied().collect(),
        _ => Vec::new(),
    }
}

/// How many trailing arguments of a call repeat the ones before them: the values ExecuTorch's
/// emitter appends after an out-variant's arguments (its returned `out` tensors). Zero when
/// nothing repeats.
pub fn returned_count(args: &[usize]) -> usize {
    (1..=args.len() / 2)
        .rev()
        .find(|&k| args[args.len() - 2 * k..args.len() - k] == args[args.len() - k..])
        .unwrap_or(0)
}

impl<'p> Graph<'p> {
    /// Builds the view of `plan` (its first chain; ExecuTorch emits one).
    pub fn new(plan: &'p ExecutionPlan) -> Self {
        let mut nodes = Vec::new();
        let mut has_control_flow = false;
        let empty = Vec::new();
        let instructions = plan.chains.first().map_or(&empty, |c| &c.instructions);
        for (i, ins) in instructions.iter().enumerate() {
            let (kind, args) = match ins {
                Instruction::KernelCall { op_index, args } => {
                    let op = plan
                        .operators
                        .get(*op_index)
                        .map_or_else(|| format!("<operator {op_index}>"), Operator::qualified);
                    (NodeKind::Kernel(op), args.clone())
                }
                Instruction::DelegateCall { delegate_index, args } => {
                    (NodeKind::Delegate(*delegate_index), args.clone())
                }
                Instruction::MoveCall { .. } | Instruction::JumpFalseCall { .. } => {
                    has_control_flow = true;
                    continue;
                }
                Instruction::FreeCall { .. } => continue,
            };
            let (inputs, outputs) = match kind {
                NodeKind::Kernel(_) => Self::split_kernel_args(plan, &args),
                // Delegate calls list inputs then outputs; the outputs are the method-level
                // values they write, which ExecuTorch does not mark either: treat the values no
                // earlier node produced and that are not inputs or constants as outputs.
                NodeKind::Delegate(_) => Self::split_delegate_args(plan, &args),
            };
            nodes.push(Node { instruction: i, kind, args, inputs, outputs });
        }
        // Producers and consumers, in execution order. ExecuTorch turns static views into plain
        // memory aliases (a second tensor value planned at the same arena offset, with no
        // instruction at all); a read of such a value depends on whoever last wrote that memory.
        let mut producer = vec![None; plan.values.len()];
        let mut consumers = vec![Vec::new(); plan.values.len()];
        let mut alias = vec![None; plan.values.len()];
        let mut last_writer: std::collections::HashMap<(u32, u64, usize), usize> = std::collections::HashMap::new();
        let key = |v: usize| match plan.values.get(v).and_then(Value::as_tensor) {
            Some(t) => match t.storage() {
                TensorStorage::Planned { alloc, .. } => Some((alloc.memory_id, alloc.offset, t.nbytes())),
                _ => None,
            },
            None => None,
        };
        for (n, node) in nodes.iter().enumerate() {
            for &v in &node.inputs {
                if v >= producer.len() {
                    continue;
                }
                if producer[v].is_none() && !plan.inputs.contains(&v) {
                    if let Some(&u) = key(v).and_then(|k| last_writer.get(&k)) {
                        if u != v {
                            producer[v] = producer[u];
                            alias[v] = Some(u);
                        }
                    }
                }
                consumers[v].push(n);
                if let Some(u) = alias[v] {
                    if !consumers[u].contains(&n) {
                        consumers[u].push(n);
                    }
                }
            }
            for &v in &node.outputs {
                if let Some(p) = producer.get_mut(v) {
                    p.get_or_insert(n);
                }
                if let Some(k) = key(v) {
                    last_writer.insert(k, v);
                }
            }
        }
        // A kernel call returning a scalar writes it as its last argument.
        let mut computed_scalar = vec![false; plan.values.len()];
        for node in nodes.iter().filter(|n| matches!(n.kind, NodeKind::Kernel(_))) {
            if let Some(&v) = node.args.last() {
                if matches!(plan.values.get(v), Some(Value::Int(_) | Value::Double(_) | Value::Bool(_))) {
                    computed_scalar[v] = true;
                }
            }
        }
        Graph { plan, nodes, producer, consumers, alias, has_control_flow, computed_scalar }
    }

    fn split_kernel_args(plan: &ExecutionPlan, args: &[usize]) -> (Vec<usize>, Vec<usize>) {
        let k = returned_count(args);
        let (head, outs): (&[usize], Vec<usize>) = if k > 0 {
            let body = &args[..args.len() - k];
            let outs = args[args.len() - k..].iter().flat_map(|&v| tensors_of(plan, v)).collect();
            (&body[..body.len() - k], outs)
        } else {
            // No returned values: the trailing tensor list, else the last tensor argument.
            match args.iter().rposition(|&v| !tensors_of(plan, v).is_empty()) {
                Some(p) => (&args[..p], tensors_of(plan, args[p])),
                None => (args, Vec::new()),
            }
        };
        let mut inputs = Vec::new();
        for &v in head {
            for t in tensors_of(plan, v) {
                if !inputs.contains(&t) && !outs.contains(&t) {
                    inputs.push(t);
                }
            }
        }
        (inputs, outs)
    }

    fn split_delegate_args(plan: &ExecutionPlan, args: &[usize]) -> (Vec<usize>, Vec<usize>) {
        let method_inputs: BTreeSet<usize> = plan.inputs.iter().copied().collect();
        let k = returned_count(args);
        let args = &args[..args.len() - k];
        let n_out = plan.outputs.iter().filter(|o| args.contains(o)).count().max(k);
        let split = args.len().saturating_sub(n_out.max(1));
        let (ins, outs) = args.split_at(split);
        let inputs = ins.iter().flat_map(|&v| tensors_of(plan, v)).collect();
        let outputs = outs.iter().flat_map(|&v| tensors_of(plan, v)).filter(|v| !method_inputs.contains(v)).collect();
        (inputs, outputs)
    }

    /// The plan this graph views.
    pub fn plan(&self) -> &'p ExecutionPlan {
        self.plan
    }

    /// The nodes, in execution order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Whether the method has moves or jumps (control flow), which the view does not model.
    pub fn has_control_flow(&self) -> bool {
        self.has_control_flow
    }

    /// Whether scalar value `v` is computed at run time (written by a kernel call, as symbolic
    /// sizes are) rather than fixed in the program.
    pub fn is_computed_scalar(&self, v: usize) -> bool {
        self.computed_scalar.get(v).copied().unwrap_or(false)
    }

    /// The node that writes value `v`.
    pub fn producer(&self, v: usize) -> Option<usize> {
        self.producer.get(v).copied().flatten()
    }

    /// The nodes that read value `v`.
    pub fn consumers(&self, v: usize) -> &[usize] {
        self.consumers.get(v).map_or(&[], Vec::as_slice)
    }

    /// The value whose memory `v` aliases (ExecuTorch's memory-planned static views), if any.
    pub fn alias_of(&self, v: usize) -> Option<usize> {
        self.alias.get(v).copied().flatten()
    }

    /// The tensor metadata of value `v`.
    pub fn tensor(&self, v: usize) -> Option<&'p Tensor> {
        self.plan.values.get(v).and_then(Value::as_tensor)
    }

    /// The value at index `v`.
    pub fn value(&self, v: usize) -> Option<&'p Value> {
        self.plan.values.get(v)
    }

    /// Whether value `v` is constant data in the program (weights, biases, ...).
    pub fn is_constant(&self, v: usize) -> bool {
        self.tensor(v).is_some_and(|t| matches!(t.storage(), TensorStorage::Constant { .. }))
    }

    /// Whether value `v` is one of the method's outputs.
    pub fn is_method_output(&self, v: usize) -> bool {
        self.plan.outputs.contains(&v)
    }

    /// Earlier nodes whose outputs node `n` reads. (A value written by a *later* node — a state
    /// update such as `copy_` into a mutable buffer — is not a dependency: `n` reads the value
    /// from before the update.)
    pub fn predecessors(&self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = self
            .nodes
            .get(n)
            .map(|node| node.inputs.iter().filter_map(|&v| self.producer(v)).filter(|&p| p < n).collect())
            .unwrap_or_default();
        p.sort_unstable();
        p.dedup();
        p
    }

    /// Later nodes that read node `n`'s outputs.
    pub fn successors(&self, n: usize) -> Vec<usize> {
        let mut s: Vec<usize> = self
            .nodes
            .get(n)
            .map(|node| {
                node.outputs.iter().flat_map(|&v| self.consumers(v).iter().copied()).filter(|&c| c > n).collect()
            })
            .unwrap_or_default();
        s.sort_unstable();
        s.dedup();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ProgramBuilder, ScalarType};

    #[test]
    fn outputs_follow_returned_values() {
        assert_eq!(returned_count(&[1, 2, 3, 9, 9]), 1);
        assert_eq!(returned_count(&[1, 2, 7, 8, 9, 7, 8, 9]), 3);
        assert_eq!(returned_count(&[1, 2, 3]), 0);
        assert_eq!(returned_count(&[]), 0);
    }

    #[test]
    fn producers_and_consumers() {
        let mut b = ProgramBuilder::new("forward");
        let x = b.input(ScalarType::Float, &[4]);
        let one = b.int(1);
        let y = b.tensor(ScalarType::Float, &[4]);
        b.call("aten::add.out", &[x, x, one, y, y]);
        let z = b.tensor(ScalarType::Float, &[4]);
        b.call("aten::relu.out", &[y, z, z]);
        let (a, c) = (b.tensor(ScalarType::Float, &[2]), b.tensor(ScalarType::Float, &[2]));
        let sizes = b.int_list(&[2, 2]);
        let dim = b.int(0);
        let list = b.tensor_list(&[a, c]);
        b.call("aten::split_with_sizes_copy.out", &[z, sizes, dim, list]);
        b.output(a);
        let (def, _) = b.into_def();
        let g = Graph::new(&def.plans[0]);
        assert_eq!(g.nodes().len(), 3);
        assert_eq!(g.nodes()[0].inputs, vec![x]);
        assert_eq!(g.nodes()[0].outputs, vec![y]);
        assert_eq!(g.nodes()[2].outputs, vec![a, c]);
        assert_eq!(g.nodes()[2].inputs, vec![z]);
        assert_eq!(g.producer(z), Some(1));
        assert_eq!(g.consumers(y), &[1]);
        assert_eq!(g.predecessors(2), vec![1]);
        assert_eq!(g.successors(0), vec![1]);
        assert!(!g.has_control_flow());
    }
}
