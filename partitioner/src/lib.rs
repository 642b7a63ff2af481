//! **ferrite-partitioner**: decides, node by node, which parts of an ExecuTorch program Ferrite's
//! backend runs, groups them into delegate-sized subgraphs, and reports why it left the rest.
//!
//! ```no_run
//! use ferrite_partitioner::{Partitioner, PartitionerConfig};
//! use ferrite_program::Program;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let program = Program::mmap("model.pte")?;
//! let result = Partitioner::new(PartitionerConfig::default()).partition(&program);
//! println!("{}", result.report);                     // a readable summary
//! let json = serde_json::to_string(&result.report)?; // or the whole report as JSON
//! # let _ = json; Ok(()) }
//! ```
//!
//! The algorithm, per method: every kernel call is checked against the op-support registry
//! ([`ferrite_op_support::check`]) and the configuration. Supported nodes are then grouped in
//! execution order: a node joins the partition of one of its producers unless that would create a
//! cycle — a path from the partition back into it through a node outside it (which would make
//! the contracted graph unschedulable); otherwise it starts a new partition. Partitions that only
//! move data (views, copies) are not worth a delegate call and are dropped, with that reason.
//!
//! Then **placement** ([`MethodPartitions::schedule`]): each partition becomes one delegate call,
//! placed so that every access to planned memory keeps its order. A partition that cannot be
//! called at one point (an instruction between its members reuses memory the partition reads or
//! writes) is split there into parts that can, never dropped; every node ends delegated or
//! rejected with a [`Reason`].

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod placement;
mod report;

use std::collections::{BTreeMap, BTreeSet};

use ferrite_op_support::{check, Op};
use ferrite_program::graph::Graph;
use ferrite_program::{ExecutionPlan, Program};
use serde::Serialize;

pub use placement::Step;
pub use report::{MethodReport, PartitionReport, PartitionSummary, Reason, RejectedNode};

/// Compute precisions the partitioner may delegate (ExecuTorch's `ConfigPrecisionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// 32-bit float.
    Fp32,
    /// Static int8: `quantize_per_tensor` / `dequantize_per_tensor` and the operators they
    /// surround.
    StaticInt8,
    /// Dynamic int8: `choose_qparams` and the `.Tensor` quantize / dequantize, and the
    /// operators they feed.
    DynamicInt8,
    /// Groupwise (int4) weights with per-token dynamic int8 activations (torchao's 8da4w):
    /// `dequantize_per_channel_group`, the per-token choose / quantize / dequantize, and the
    /// operators they feed.
    Int4Weight,
}

impl Precision {
    /// Every precision, in order.
    pub const ALL: [Precision; 4] =
        [Precision::Fp32, Precision::StaticInt8, Precision::DynamicInt8, Precision::Int4Weight];

    /// The name users write (`fp32`, `static-int8`, `dynamic-int8`, `int4-weight`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::StaticInt8 => "static-int8",
            Precision::DynamicInt8 => "dynamic-int8",
            Precision::Int4Weight => "int4-weight",
        }
    }

    /// Parses a [`name`](Precision::name).
    pub fn parse(name: &str) -> Option<Precision> {
        Precision::ALL.into_iter().find(|p| p.name() == name.trim().to_ascii_lowercase())
    }
}

/// The precision a node computes in: the quantization operators by kind; another operator by the
/// dequantize operators feeding it (a float operator between `dequantize` and `quantize` is part
/// of the int8 chain lowering turns into an int8 operator); float otherwise. A per-channel weight
/// dequantization belongs to whichever int8 precision is enabled.
fn node_precisions(graph: &Graph<'_>, node: &ferrite_program::graph::Node) -> &'static [Precision] {
    const STATIC: &[Precision] = &[Precision::StaticInt8];
    const DYNAMIC: &[Precision] = &[Precision::DynamicInt8];
    const EITHER: &[Precision] = &[Precision::StaticInt8, Precision::DynamicInt8];
    const FLOAT: &[Precision] = &[Precision::Fp32];
    const INT4: &[Precision] = &[Precision::Int4Weight];
    let kind = |op: Option<Op>| match op {
        Some(Op::QuantizePerTensor | Op::DequantizePerTensor | Op::QuantizedAdd) => Some(STATIC),
        Some(Op::QuantizePerTensorTensor | Op::DequantizePerTensorTensor | Op::ChooseQparamsTensor) => Some(DYNAMIC),
        Some(Op::DequantizePerChannel) => Some(EITHER),
        Some(
            Op::DequantizePerChannelGroup
            | Op::ChooseQparamsPerTokenAsymmetric
            | Op::QuantizePerToken
            | Op::DequantizePerToken,
        ) => Some(INT4),
        _ => None,
    };
    let op = node.op().and_then(Op::from_name);
    if let Some(k) = kind(op) {
        return k;
    }
    let fed_by = |want: Op| {
        node.inputs.iter().any(|&v| {
            graph.producer(v).and_then(|p| graph.nodes().get(p)).and_then(|n| n.op()).and_then(Op::from_name)
                == Some(want)
        })
    };
    if fed_by(Op::DequantizePerTensor) {
        STATIC
    } else if fed_by(Op::DequantizePerTensorTensor) {
        DYNAMIC
    } else if fed_by(Op::DequantizePerToken) {
        INT4
    } else {
        FLOAT
    }
}

/// Options, in the spirit of XNNPACK's partitioner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionerConfig {
    /// Only these operators (`name.overload`) are delegated, when set.
    pub include_ops: Option<BTreeSet<String>>,
    /// These operators are never delegated.
    pub exclude_ops: BTreeSet<String>,
    /// Precisions to delegate.
    pub precisions: Vec<Precision>,
    /// One partition per operator (no grouping) — useful to isolate a numerical problem.
    pub per_op: bool,
    /// Log every decision at `info` level (otherwise `debug`).
    pub verbose: bool,
}

impl Default for PartitionerConfig {
    fn default() -> Self {
        PartitionerConfig {
            include_ops: None,
            exclude_ops: BTreeSet::new(),
            precisions: Precision::ALL.to_vec(),
            per_op: false,
            verbose: false,
        }
    }
}

/// One subgraph the backend will run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    /// Partition number within its method (0-based, in execution order).
    pub id: usize,
    /// Instruction indices of its nodes, in execution order.
    pub instructions: Vec<usize>,
    /// Non-constant tensor values it reads from outside (method inputs or other nodes' outputs),
    /// in first-use order.
    pub inputs: Vec<usize>,
    /// Constant tensors it reads (weights).
    pub constants: Vec<usize>,
    /// Tensor values it writes that are read after it or are method outputs.
    pub outputs: Vec<usize>,
}

/// The partitions of one method, placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MethodPartitions {
    /// Method name.
    pub method: String,
    /// Its partitions, in execution order of their first node.
    pub partitions: Vec<Partition>,
    /// The method's instructions with each partition contracted into one delegate call, in an
    /// order that keeps every access to planned memory in its original order (empty when the
    /// method has no partitions: it stays as it is).
    pub schedule: Vec<Step>,
}

/// What [`Partitioner::partition`] returns.
#[derive(Debug, Clone)]
pub struct Partitioning {
    /// Partitions per method, in plan order.
    pub methods: Vec<MethodPartitions>,
    /// Every decision, with reasons.
    pub report: PartitionReport,
}

/// The partitioner.
#[derive(Debug, Clone, Default)]
pub struct Partitioner {
    config: PartitionerConfig,
}

impl Partitioner {
    /// A partitioner with `config`.
    pub fn new(config: PartitionerConfig) -> Self {
        Partitioner { config }
    }

    /// The configuration.
    pub fn config(&self) -> &PartitionerConfig {
        &self.config
    }

    /// Partitions every method of `program`.
    pub fn partition(&self, program: &Program<'_>) -> Partitioning {
        let mut methods = Vec::new();
        let mut reports = Vec::new();
        for plan in &program.def().plans {
            let (m, r) = self.partition_plan(plan);
            methods.push(m);
            reports.push(r);
        }
        Partitioning { methods, report: PartitionReport { methods: reports } }
    }

    fn log(&self, method: &str, instruction: usize, op: &str, decision: &str) {
        if self.config.verbose {
            tracing::info!(target: "ferrite::partitioner", method, instruction, op, "{decision}");
        } else {
            tracing::debug!(target: "ferrite::partitioner", method, instruction, op, "{decision}");
        }
    }

    /// Why the configuration excludes `node` (operator `op`), if it does.
    fn excluded(&self, graph: &Graph<'_>, node: &ferrite_program::graph::Node, op: &str) -> Option<Reason> {
        if self.config.exclude_ops.contains(op) {
            return Some(Reason::ExcludedByConfig);
        }
        if self.config.include_ops.as_ref().is_some_and(|inc| !inc.contains(op)) {
            return Some(Reason::NotIncluded);
        }
        let wanted = node_precisions(graph, node);
        if !wanted.iter().any(|p| self.config.precisions.contains(p)) {
            let names: Vec<&str> = wanted.iter().map(|p| p.name()).collect();
            return Some(Reason::PrecisionNotEnabled { precision: names.join(" or ") });
        }
        None
    }

    /// Partitions one method.
    pub fn partition_plan(&self, plan: &ExecutionPlan) -> (MethodPartitions, MethodReport) {
        let graph = Graph::new(plan);
        let nodes = graph.nodes();
        let mut rejected: Vec<RejectedNode> = Vec::new();
        let mut supported = vec![false; nodes.len()];
        for (n, node) in nodes.iter().enumerate() {
            let Some(op) = node.op() else { continue };
            let reason = if graph.has_control_flow() {
                Some(Reason::ControlFlow)
            } else if let Some(r) = self.excluded(&graph, node, op) {
                Some(r)
            } else {
                check(&graph, node).err().map(|rejection| Reason::Unsupported { rejection })
            };
            match reason {
                Some(reason) => {
                    self.log(&plan.name, node.instruction, op, &format!("left out: {reason}"));
                    rejected.push(RejectedNode { instruction: node.instruction, op: op.to_string(), reason });
                }
                None => supported[n] = true,
            }
        }

        // Group supported nodes, walking backwards from the outputs (as PyTorch's capability-based
        // partitioner does) so that nodes without inputs — `arange`, `full`, constant views —
        // join the partition of the nodes that use them. part[n]: partition of node n.
        // reach[n]: partitions n has a path to. reach_out[n]: partitions n reaches through a node
        // outside them (joining one of those would create a cycle).
        let mut part: Vec<Option<usize>> = vec![None; nodes.len()];
        let mut reach: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); nodes.len()];
        let mut reach_out: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); nodes.len()];
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut notes: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for n in (0..nodes.len()).rev() {
            let succs = graph.successors(n);
            let (mut r, mut ro) = (BTreeSet::new(), BTreeSet::new());
            for &m in &succs {
                r.extend(reach[m].iter().copied());
                ro.extend(reach_out[m].iter().copied());
                if let Some(q) = part[m] {
                    r.insert(q);
                }
                // m lies on the path from n: for every partition m reaches that m is not in, the
                // path passes outside that partition.
                for &q in &reach[m] {
                    if part[m] != Some(q) {
                        ro.insert(q);
                    }
                }
            }
            if supported[n] {
                let candidates: Vec<usize> =
                    if self.config.per_op { Vec::new() } else { succs.iter().filter_map(|&m| part[m]).collect() };
                let choice = candidates.iter().copied().find(|p| !ro.contains(p));
                let p = match choice {
                    Some(p) => p,
                    None => {
                        groups.push(Vec::new());
                        let p = groups.len() - 1;
                        if !candidates.is_empty() {
                            notes.entry(p).or_default().push(format!(
                                "instruction {} could not join the partition of its users: that would create a cycle through nodes outside it",
                                nodes[n].instruction
                            ));
                        }
                        p
                    }
                };
                groups[p].push(n);
                part[n] = Some(p);
            }
            reach[n] = r;
            reach_out[n] = ro;
        }
        // Members in execution order; partitions numbered by their first node.
        for g in &mut groups {
            g.sort_unstable();
        }
        let mut order: Vec<usize> = (0..groups.len()).collect();
        order.sort_by_key(|&p| groups[p].first().copied().unwrap_or(usize::MAX));
        let groups: Vec<Vec<usize>> = order.iter().map(|&p| std::mem::take(&mut groups[p])).collect();
        let mut notes: BTreeMap<usize, Vec<String>> =
            order.iter().enumerate().filter_map(|(new, old)| notes.remove(old).map(|v| (new, v))).collect();

        // Drop partitions that only move data.
        let mut kept: Vec<Vec<usize>> = Vec::new();
        let mut kept_notes = Vec::new();
        for (p, members) in groups.into_iter().enumerate() {
            if self.moves_data_only(&graph, &members) {
                self.reject_data_movement(&plan.name, &graph, &members, &mut rejected);
            } else {
                kept.push(members);
                kept_notes.push(notes.remove(&p).unwrap_or_default());
            }
        }
        let (kept, kept_notes, schedule) = self.place(plan, &graph, kept, kept_notes, &mut rejected);
        rejected.sort_by_key(|r| r.instruction);

        let mut partitions = Vec::new();
        let mut summaries = Vec::new();
        for (id, members) in kept.iter().enumerate() {
            let partition = describe(&graph, id, members);
            let mut operators = BTreeMap::new();
            for &n in members {
                let op = nodes[n].op().unwrap_or_default().to_string();
                self.log(&plan.name, nodes[n].instruction, &op, &format!("delegated in partition {id}"));
                *operators.entry(op).or_insert(0usize) += 1;
            }
            summaries.push(PartitionSummary {
                id,
                instructions: partition.instructions.clone(),
                operators,
                inputs: partition.inputs.len(),
                outputs: partition.outputs.len(),
                notes: kept_notes[id].clone(),
            });
            partitions.push(partition);
        }
        let kernel_calls = nodes.iter().filter(|n| n.op().is_some()).count();
        let delegated: usize = kept.iter().map(Vec::len).sum();
        let report = MethodReport {
            name: plan.name.clone(),
            kernel_calls,
            delegated_calls: delegated,
            partitions: summaries,
            rejected,
        };
        (MethodPartitions { method: plan.name.clone(), partitions, schedule }, report)
    }

    /// Whether every member of a partition only moves data.
    fn moves_data_only(&self, graph: &Graph<'_>, members: &[usize]) -> bool {
        members.iter().all(|&n| {
            graph.nodes()[n].op().and_then(ferrite_op_support::lookup_name).is_some_and(|s| s.family.moves_data_only())
        })
    }

    /// Rejects the members of a partition that only moves data.
    fn reject_data_movement(
        &self,
        method: &str,
        graph: &Graph<'_>,
        members: &[usize],
        rejected: &mut Vec<RejectedNode>,
    ) {
        for &n in members {
            let node = &graph.nodes()[n];
            let op = node.op().unwrap_or_default().to_string();
            self.log(method, node.instruction, &op, "left out: its partition only moves data");
            rejected.push(RejectedNode { instruction: node.instruction, op, reason: Reason::DataMovementOnly });
        }
    }

    /// Places the partitions (see [`placement`]): splits every partition whose delegate call
    /// cannot be placed at one point until all can, and returns them (renumbered in execution
    /// order of their first node), their notes, and the method's schedule.
    fn place(
        &self,
        plan: &ExecutionPlan,
        graph: &Graph<'_>,
        mut groups: Vec<Vec<usize>>,
        mut notes: Vec<Vec<String>>,
        rejected: &mut Vec<RejectedNode>,
    ) -> (Vec<Vec<usize>>, Vec<Vec<String>>, Vec<Step>) {
        let nodes = graph.nodes();
        let schedule = loop {
            if groups.is_empty() {
                break Vec::new();
            }
            let parts: Vec<Partition> = groups.iter().enumerate().map(|(id, m)| describe(graph, id, m)).collect();
            let placement::Stuck { partition: k, cut } = match placement::schedule(plan, graph, &parts) {
                Ok(order) => break order,
                Err(stuck) => stuck,
            };
            let members = groups.remove(k);
            let note = notes.remove(k);
            if members.len() < 2 {
                // (A single node keeps its own accesses, so it always has a place; kept for
                // safety: leave it to the portable kernels.)
                for &n in &members {
                    let op = nodes[n].op().unwrap_or_default().to_string();
                    self.log(&plan.name, nodes[n].instruction, &op, "left out: its delegate call has no place");
                    rejected.push(RejectedNode { instruction: nodes[n].instruction, op, reason: Reason::Unplaceable });
                }
                continue;
            }
            // Members before the cut, and members from it on; the middle when the cut does not
            // separate them.
            let at = cut
                .map(|c| members.partition_point(|&n| nodes[n].instruction < c))
                .filter(|&at| at > 0 && at < members.len())
                .unwrap_or(members.len() / 2);
            let first = |m: &[usize]| m.first().map_or(0, |&n| nodes[n].instruction);
            let why = match cut {
                Some(c) => format!(
                    "split from a larger partition at instruction {c}: one delegate call for all of it could not be placed without reordering planned memory accesses"
                ),
                None => "split from a larger partition whose delegate call could not be placed".to_string(),
            };
            tracing::info!(
                target: "ferrite::partitioner",
                method = %plan.name,
                first = first(&members),
                at = first(&members[at..]),
                "partition split: its delegate call cannot be placed whole"
            );
            for part in [&members[..at], &members[at..]] {
                if self.moves_data_only(graph, part) {
                    self.reject_data_movement(&plan.name, graph, part, rejected);
                } else {
                    let mut part_notes = note.clone();
                    part_notes.push(why.clone());
                    groups.push(part.to_vec());
                    notes.push(part_notes);
                }
            }
        };
        // Number partitions by their first node; the schedule follows.
        let mut order: Vec<usize> = (0..groups.len()).collect();
        order.sort_by_key(|&p| groups[p].first().copied().unwrap_or(usize::MAX));
        let mut new_id = vec![0usize; groups.len()];
        for (new, &old) in order.iter().enumerate() {
            new_id[old] = new;
        }
        let schedule = schedule
            .into_iter()
            .map(|s| match s {
                Step::Partition(k) => Step::Partition(new_id[k]),
                other => other,
            })
            .collect();
        let groups = order.iter().map(|&p| std::mem::take(&mut groups[p])).collect();
        let notes = order.iter().map(|&p| std::mem::take(&mut notes[p])).collect();
        (groups, notes, schedule)
    }
}

/// A partition's boundary: what it reads from outside and what it must hand back.
fn describe(graph: &Graph<'_>, id: usize, members: &[usize]) -> Partition {
    let nodes = graph.nodes();
    let inside: BTreeSet<usize> = members.iter().copied().collect();
    let mut inputs = Vec::new();
    let mut constants = Vec::new();
    let mut written = BTreeSet::new();
    for &n in members {
        for &v in &nodes[n].inputs {
            if written.contains(&v) || graph.alias_of(v).is_some_and(|u| written.contains(&u)) {
                continue;
            }
            let list = if graph.is_constant(v) { &mut constants } else { &mut inputs };
            if !list.contains(&v) {
                list.push(v);
            }
        }
        written.extend(nodes[n].outputs.iter().copied());
    }
    let mut outputs = Vec::new();
    for &n in members {
        for &v in &nodes[n].outputs {
            let used_outside = graph.consumers(v).iter().any(|c| !inside.contains(c));
            if (used_outside || graph.is_method_output(v)) && !outputs.contains(&v) {
                outputs.push(v);
            }
        }
    }
    Partition { id, instructions: members.iter().map(|&n| nodes[n].instruction).collect(), inputs, constants, outputs }
}
