//! Compiling one partition: extraction, then the passes, in order.

use ferrite_blob::BlobGraph;
use ferrite_program::{ExecutionPlan, Program};

use crate::passes;
use crate::PassStats;

/// Why a partition could not be compiled (wrapped into [`crate::LowerError::Compile`] with the
/// method and partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError(pub String);

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CompileError {}

pub(crate) type Result<T, E = CompileError> = std::result::Result<T, E>;

pub(crate) fn err(message: impl Into<String>) -> CompileError {
    CompileError(message.into())
}

/// Builds the blob graph of the partition made of `instructions` of `plan` (kernel calls, in
/// execution order), reading `inputs` and handing back `outputs` (plan value indices), then
/// runs the passes:
///
/// 1. constant folding ([`passes::fold_constants`]),
/// 2. batch-norm folding ([`passes::batch_norm`]),
/// 3. activation fusion ([`passes::fuse`]; SiLU, hard-swish, hard-sigmoid and the safe
///    softmax of attention after the int8 rewrite, outside methods that requantize),
/// 4. int8 operators from `dequantize → op → quantize` chains ([`passes::quantized`]),
/// 5. channels-last and dense layers ([`passes::channels_last`], [`passes::dense`]); in methods
///    that requantize only the int8 convolutions go channels-last, and float operators keep
///    ExecuTorch's layout and summation order,
/// 6. free reshapes ([`passes::reshapes`]),
/// 7. dead code and compaction ([`passes::dead_code`]).
pub fn compile_partition(
    program: &Program<'_>,
    plan: &ExecutionPlan,
    instructions: &[usize],
    inputs: &[usize],
    outputs: &[usize],
) -> Result<(BlobGraph, PassStats)> {
    let mut g = crate::extract::extract(program, plan, instructions, inputs, outputs)?;
    let mut stats = PassStats::default();
    passes::fold_constants::fold_constants(&mut g, &mut stats)?;
    passes::batch_norm::fold_batch_norms(&mut g, &mut stats)?;
    passes::fuse::fuse_activations(&mut g, &mut stats);
    passes::quantized::quantized_operators(&mut g, &mut stats);
    let float_in_reference_order = ferrite_op_support::requantizes(plan);
    if !float_in_reference_order {
        passes::fuse::fuse_silu(&mut g, &mut stats);
        passes::fuse::fuse_safe_softmax(&mut g, &mut stats);
        passes::fuse::fuse_hard_activations(&mut g, &mut stats);
    }
    passes::channels_last::channels_last(&mut g, &mut stats, !float_in_reference_order);
    if !float_in_reference_order {
        passes::dense::dense_layers(&mut g, &mut stats);
    }
    passes::reshapes::elide_reshapes(&mut g, &mut stats);
    passes::dead_code::remove_dead_ops(&mut g, &mut stats);
    passes::dead_code::compact(&mut g);
    g.check_semantics().map_err(|e| err(e.to_string()))?;
    Ok((g, stats))
}
