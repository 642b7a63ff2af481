//! **The single source of truth for what Ferrite's CPU backend runs.**
//!
//! For every operator the backend takes: its name (`name.overload`, as programs spell it), the
//! dtypes it computes in, the quantization schemes it accepts, and its constraints — each a
//! predicate over a node of the program's [graph view](ferrite_program::graph) with a readable
//! reason. The partitioner asks [`check`] about every node; `ferrite ops`, `op-support.csv` and
//! the book's op-support table are generated from [`registry`].
//!
//! Operators are typed: [`Op`] has one variant per `name.overload` Ferrite knows, with the
//! groupings the lowering passes use ([`Op::is_reshape`], [`Op::is_layout_agnostic`],
//! [`Op::is_fusible_activation`], [`Op::is_quantize`], ...). This crate is the only place that
//! spells operator names.
//!
//! ```
//! use ferrite_op_support::{lookup, registry, Op};
//!
//! let conv = lookup(Op::Convolution).expect("supported");
//! assert_eq!(conv.op.name(), "aten::convolution.out");
//! assert!(conv.constraints.iter().any(|c| c.text.contains("constant")));
//! assert!(registry().len() >= 40);
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod node;
mod op;
mod table;

use ferrite_program::graph::{Graph, Node};
use ferrite_program::{ExecutionPlan, ScalarType};
use serde::Serialize;

pub use node::{constant_like, NodeView};
pub use op::{Op, UnknownOp};
pub use table::{delegable, registry};

/// A quantization scheme the backend runs an operator in (see the book's Quantization chapter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum QuantScheme {
    /// int8 activations and weights, static scales (PT2E's `dequantize → op → quantize`).
    StaticInt8,
    /// int8 weights, activations quantized at run time (`choose_qparams → quantize →
    /// dequantize → op`).
    DynamicInt8,
    /// int8 weights, float activations in and out of an int8 product (a static-int8 input whose
    /// output is not requantized, such as a classifier's last linear layer).
    Int8Weights,
    /// Weights in groups along the reduction with one scale each (int4 values, torchao's 8da4w),
    /// activations quantized per token at run time (`choose_qparams_per_token_asymmetric →
    /// quantize_per_token → dequantize_per_token → linear(dequantize_per_channel_group(W))`).
    GroupwiseInt4,
}

impl QuantScheme {
    /// The scheme's name in tables.
    pub fn name(self) -> &'static str {
        match self {
            QuantScheme::StaticInt8 => "static int8",
            QuantScheme::DynamicInt8 => "dynamic int8",
            QuantScheme::Int8Weights => "int8 weights, float output",
            QuantScheme::GroupwiseInt4 => "int4 groupwise weights",
        }
    }
}

/// One constraint: a predicate over a node, and the sentence that explains it.
#[derive(Clone, Copy)]
pub struct Constraint {
    /// What must hold, phrased for users ("weights must be constant").
    pub text: &'static str,
    /// Whether it holds for a node.
    pub check: fn(&NodeView<'_>) -> bool,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text)
    }
}

/// The family an operator belongs to, for grouping in tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Family {
    /// Convolutions.
    Convolution,
    /// Matrix products and linear layers.
    LinearAlgebra,
    /// Batch norm, layer norm, softmax.
    Normalization,
    /// Pooling and resizing.
    Pooling,
    /// Reductions over dimensions.
    Reduction,
    /// Element-wise arithmetic.
    Elementwise,
    /// Activation functions.
    Activation,
    /// Unary math.
    Unary,
    /// Comparisons, masks and selection.
    Comparison,
    /// Tensor creation.
    Creation,
    /// Views, copies and data movement.
    Layout,
    /// Quantize, dequantize and the operators of `quantized_decomposed`.
    Quantization,
}

impl Family {
    /// The family's name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Family::Convolution => "Convolution",
            Family::LinearAlgebra => "Linear algebra",
            Family::Normalization => "Normalization",
            Family::Pooling => "Pooling",
            Family::Reduction => "Reduction",
            Family::Elementwise => "Elementwise",
            Family::Activation => "Activation",
            Family::Unary => "Unary",
            Family::Comparison => "Comparison",
            Family::Creation => "Creation",
            Family::Layout => "Layout",
            Family::Quantization => "Quantization",
        }
    }

    /// Whether operators of this family only move data (a partition of nothing else is not
    /// worth a delegate call).
    pub fn moves_data_only(self) -> bool {
        self == Family::Layout
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An operator the backend runs.
#[derive(Debug, Clone, Copy)]
pub struct OpSpec {
    /// The operator.
    pub op: Op,
    /// Family, for grouping in tables.
    pub family: Family,
    /// Dtypes the backend computes this operator in.
    pub dtypes: &'static [ScalarType],
    /// Quantization schemes accepted (empty: float only).
    pub quantization: &'static [QuantScheme],
    /// Constraints beyond the dtype, each checked on the node.
    pub constraints: &'static [Constraint],
}

/// Constraints every delegated node must meet, whatever its operator.
pub const GENERAL: &[Constraint] = &[
    Constraint {
        text: "every tensor has a static or bounded dynamic shape (no unbounded dynamic shapes)",
        check: node::none_unbounded,
    },
    Constraint {
        text: "every scalar argument is fixed in the program (none computed at run time, as symbolic sizes are)",
        check: node::fixed_scalars,
    },
    Constraint { text: "every tensor uses the default (contiguous) dim order", check: node::all_contiguous },
    Constraint {
        text: "tensors that are not floating point are bool, uint8, int8, int32 or int64",
        check: node::integer_dtypes_supported,
    },
];

/// Why a node cannot be delegated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rejection {
    /// The backend has no implementation of the operator.
    UnsupportedOperator {
        /// The operator.
        op: String,
    },
    /// A tensor's dtype is not one the operator computes in.
    Dtype {
        /// The operator.
        op: String,
        /// The offending dtype.
        dtype: String,
        /// Dtypes supported.
        supported: Vec<String>,
    },
    /// A constraint failed.
    Constraint {
        /// The operator.
        op: String,
        /// The constraint's text.
        constraint: String,
    },
    /// Not a kernel call (a delegate call already).
    NotAKernel,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::UnsupportedOperator { op } => {
                write!(f, "{op}: the Ferrite backend does not implement this operator")
            }
            Rejection::Dtype { op, dtype, supported } => {
                write!(f, "{op}: {dtype} tensors are not supported (supported: {})", supported.join(", "))
            }
            Rejection::Constraint { op, constraint } => write!(f, "{op}: {constraint}"),
            Rejection::NotAKernel => f.write_str("already a delegate call"),
        }
    }
}

/// The spec of `op`, if the backend runs it.
pub fn lookup(op: Op) -> Option<&'static OpSpec> {
    registry().iter().find(|s| s.op == op)
}

/// The spec of the operator a program names `name` (`name.overload`), if the backend runs it.
pub fn lookup_name(name: &str) -> Option<&'static OpSpec> {
    Op::from_name(name).and_then(lookup)
}

/// Whether a method requantizes: one of its kernel calls is a `quantize_per_*` operator
/// ([`Op::is_quantize`]). Such methods keep ExecuTorch's summation order and memory layout. (A
/// lowered program whose quantize operators all moved into delegates no longer does: the
/// backend's int8 operators have their own arithmetic.)
pub fn requantizes(plan: &ExecutionPlan) -> bool {
    let quantize: Vec<bool> =
        plan.operators.iter().map(|o| Op::from_name(&o.qualified()).is_some_and(Op::is_quantize)).collect();
    plan.chains.iter().flat_map(|c| &c.instructions).any(|i| match i {
        ferrite_program::Instruction::KernelCall { op_index, .. } => quantize.get(*op_index).copied().unwrap_or(false),
        _ => false,
    })
}

/// Whether the backend can run `node` of `graph`: the operator's spec, or why not.
pub fn check(graph: &Graph<'_>, node: &Node) -> Result<&'static OpSpec, Rejection> {
    let op = node.op().ok_or(Rejection::NotAKernel)?;
    let spec = lookup_name(op).ok_or_else(|| Rejection::UnsupportedOperator { op: op.to_string() })?;
    let view = NodeView::new(graph, node);
    for dtype in view.float_dtypes() {
        if !spec.dtypes.contains(&dtype) {
            return Err(Rejection::Dtype {
                op: op.to_string(),
                dtype: dtype.name().to_string(),
                supported: spec.dtypes.iter().map(|d| d.name().to_string()).collect(),
            });
        }
    }
    for c in GENERAL.iter().chain(spec.constraints) {
        if !(c.check)(&view) {
            return Err(Rejection::Constraint { op: op.to_string(), constraint: c.text.to_string() });
        }
    }
    Ok(spec)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn dtypes_text(spec: &OpSpec) -> String {
    spec.dtypes.iter().map(|d| d.name()).collect::<Vec<_>>().join(", ")
}

fn quant_text(spec: &OpSpec) -> String {
    if spec.quantization.is_empty() {
        "—".to_string()
    } else {
        spec.quantization.iter().map(|q| q.name()).collect::<Vec<_>>().join(", ")
    }
}

/// The op-support table as CSV with the backend template's columns: `Operator`, `Compute DType`,
/// `Quantization`, `Constraints`.
pub fn csv() -> String {
    let mut out = String::from("Operator,Compute DType,Quantization,Constraints\n");
    for spec in registry() {
        let constraints = spec.constraints.iter().map(|c| c.text).collect::<Vec<_>>().join("; ");
        let quant = if spec.quantization.is_empty() { String::new() } else { quant_text(spec) };
        out.push_str(&format!(
            "{},{},{},{}\n",
            csv_field(spec.op.name()),
            csv_field(&dtypes_text(spec)),
            csv_field(&quant),
            csv_field(&constraints)
        ));
    }
    out
}

/// The op-support table in Markdown (the book includes it): a compact table of operator, family,
/// dtypes and quantization that fits a page's width, then each operator's constraints as a list
/// grouped by family (operators without constraints beyond the general ones are not listed).
pub fn markdown() -> String {
    let mut out = String::from("| Operator | Family | Compute DType | Quantization |\n|---|---|---|---|\n");
    for spec in registry() {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            spec.op.name(),
            spec.family,
            dtypes_text(spec),
            quant_text(spec)
        ));
    }
    out.push_str("\n### Constraints\n\nEvery operator: ");
    out.push_str(&GENERAL.iter().map(|c| c.text).collect::<Vec<_>>().join("; "));
    out.push_str(".\n");
    let mut families: Vec<Family> = Vec::new();
    for spec in registry() {
        if !families.contains(&spec.family) {
            families.push(spec.family);
        }
    }
    for family in families {
        let specs: Vec<&OpSpec> =
            registry().iter().filter(|s| s.family == family && !s.constraints.is_empty()).collect();
        if specs.is_empty() {
            continue;
        }
        out.push_str(&format!("\n**{family}**\n\n"));
        for spec in specs {
            let constraints = spec.constraints.iter().map(|c| c.text).collect::<Vec<_>>().join("; ");
            out.push_str(&format!("- `{}`: {constraints}\n", spec.op.name()));
        }
    }
    out
}
