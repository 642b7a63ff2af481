//! [`PartitionReport`]: every partitioning decision, for people (`Display`) and tools (JSON).

use std::collections::BTreeMap;
use std::fmt;

use ferrite_op_support::Rejection;
use serde::Serialize;

/// Why a kernel call was left to the portable kernels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// The op-support registry rejected it (unsupported operator, dtype or a failed constraint).
    Unsupported {
        /// The registry's answer.
        rejection: Rejection,
    },
    /// `exclude_ops` names the operator.
    ExcludedByConfig,
    /// `include_ops` is set and does not name the operator.
    NotIncluded,
    /// The operator's precision is not enabled.
    PrecisionNotEnabled {
        /// The precision.
        precision: String,
    },
    /// The method has control flow (jumps), which the partitioner does not split.
    ControlFlow,
    /// Its partition would only have moved data (views, copies): not worth a delegate call.
    DataMovementOnly,
    /// Its delegate call could not be placed without reordering accesses to planned memory.
    Unplaceable,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Unsupported { rejection } => write!(f, "{rejection}"),
            Reason::ExcludedByConfig => f.write_str("excluded by the configuration (exclude_ops)"),
            Reason::NotIncluded => f.write_str("not in the configuration's include_ops"),
            Reason::PrecisionNotEnabled { precision } => write!(f, "{precision} is not among the enabled precisions"),
            Reason::ControlFlow => f.write_str("the method has control flow, which is not partitioned"),
            Reason::DataMovementOnly => f.write_str("its partition would only move data (views and copies)"),
            Reason::Unplaceable => {
                f.write_str("its delegate call could not be placed without reordering planned memory accesses")
            }
        }
    }
}

/// A kernel call left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedNode {
    /// Instruction index.
    pub instruction: usize,
    /// Operator (`name.overload`).
    pub op: String,
    /// Why.
    pub reason: Reason,
}

/// One partition, summarised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionSummary {
    /// Partition number within the method.
    pub id: usize,
    /// Its instructions.
    pub instructions: Vec<usize>,
    /// Operator counts.
    pub operators: BTreeMap<String, usize>,
    /// Number of non-constant tensors it reads from outside.
    pub inputs: usize,
    /// Number of tensors it hands back.
    pub outputs: usize,
    /// Remarks (e.g. why a node started a new partition).
    pub notes: Vec<String>,
}

/// The decisions for one method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MethodReport {
    /// Method name.
    pub name: String,
    /// Kernel calls in the method.
    pub kernel_calls: usize,
    /// Kernel calls placed in partitions.
    pub delegated_calls: usize,
    /// The partitions.
    pub partitions: Vec<PartitionSummary>,
    /// Every kernel call left out, in instruction order.
    pub rejected: Vec<RejectedNode>,
}

/// The decisions for a whole program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionReport {
    /// One entry per method.
    pub methods: Vec<MethodReport>,
}

impl PartitionReport {
    /// Share of kernel calls delegated, over all methods (1.0 when there are none).
    pub fn delegated_share(&self) -> f64 {
        let total: usize = self.methods.iter().map(|m| m.kernel_calls).sum();
        let delegated: usize = self.methods.iter().map(|m| m.delegated_calls).sum();
        if total == 0 {
            1.0
        } else {
            delegated as f64 / total as f64
        }
    }
}

impl fmt::Display for PartitionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for m in &self.methods {
            writeln!(
                f,
                "method {:?}: {} of {} kernel calls delegated in {} partition(s)",
                m.name,
                m.delegated_calls,
                m.kernel_calls,
                m.partitions.len()
            )?;
            for p in &m.partitions {
                let ops: Vec<String> = p.operators.iter().map(|(op, n)| format!("{op} x{n}")).collect();
                writeln!(
                    f,
                    "  partition {}: {} nodes, {} in / {} out: {}",
                    p.id,
                    p.instructions.len(),
                    p.inputs,
                    p.outputs,
                    ops.join(", ")
                )?;
                for note in &p.notes {
                    writeln!(f, "    note: {note}")?;
                }
            }
            // Group rejections by reason so long programs stay readable.
            let mut by_reason: BTreeMap<String, Vec<usize>> = BTreeMap::new();
            for r in &m.rejected {
                by_reason.entry(r.reason.to_string()).or_default().push(r.instruction);
            }
            for (reason, ins) in by_reason {
                let list: Vec<String> = ins.iter().map(usize::to_string).collect();
                writeln!(f, "  left out ({}): {reason} [instructions {}]", ins.len(), list.join(", "))?;
            }
        }
        Ok(())
    }
}
