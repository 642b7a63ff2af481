//! **ferrite-lower**: the ahead-of-time path. Partitions a program ([`ferrite_partitioner`]),
//! compiles each partition into a Ferrite backend blob ([`compile_partition`]: extraction, then
//! the passes in [`passes`]), and writes a new program whose partitions are delegate calls to
//! `FerriteBackend`.
//!
//! ```no_run
//! use ferrite_lower::{lower, LowerOptions};
//! use ferrite_program::Program;
//!
//! # fn main() -> Result<(), ferrite_lower::LowerError> {
//! let program = Program::mmap("model.pte")?;
//! let lowered = lower(&program, &LowerOptions::default())?;
//! println!("{}", lowered.report); // what was delegated, and why the rest was not
//! std::fs::write("model.ferrite.pte", &lowered.bytes).expect("write");
//! # Ok(()) }
//! ```
//!
//! The rewrite keeps everything ExecuTorch relies on: the memory plan (delegate outputs are
//! written where the plan put them), the order of every access to planned memory (each delegate
//! call goes where the partitioner's placement put it), mutable state, and the other methods.
//! Values and constants no instruction uses any more are removed. The result is verified like
//! any program Ferrite loads.
//!
//! This crate is only needed ahead of time: the runtime runs lowered programs without it.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod compile;
mod error;
mod extract;
mod graph;
pub mod passes;
mod rewrite;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use ferrite_blob::BACKEND_ID;
use ferrite_partitioner::{PartitionReport, Partitioner, PartitionerConfig, Step};
use ferrite_program::{BackendDelegate, DataLocation, Instruction, Program, ProgramWriter};
use serde::Serialize;

pub use compile::{compile_partition, CompileError};
pub use error::{LowerError, Result};

/// Lowering options.
#[derive(Debug, Clone, Default)]
pub struct LowerOptions {
    /// How to partition.
    pub partitioner: PartitionerConfig,
}

/// What the passes did (for reports and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PassStats {
    /// Operations folded into constants.
    pub constants_folded: usize,
    /// Batch norms folded into convolutions.
    pub batch_norms_folded: usize,
    /// Activations fused into their producer.
    pub activations_fused: usize,
    /// Reshapes turned into aliases.
    pub reshapes_elided: usize,
    /// Dead operations removed.
    pub dead_ops_removed: usize,
    /// Convolutions run channels-last by Ferrite's NHWC kernels.
    pub channels_last_convolutions: usize,
    /// Layout conversions (`permute_copy`) the channels-last pass inserted.
    pub layout_conversions: usize,
    /// Linear layers and products with constant weights run by the packed dense kernel.
    pub dense_layers: usize,
    /// `dequantize → op → quantize` chains rewritten into int8 operators.
    pub quantized_operators: usize,
}

impl std::ops::AddAssign<&PassStats> for PassStats {
    fn add_assign(&mut self, o: &PassStats) {
        self.constants_folded += o.constants_folded;
        self.batch_norms_folded += o.batch_norms_folded;
        self.activations_fused += o.activations_fused;
        self.reshapes_elided += o.reshapes_elided;
        self.dead_ops_removed += o.dead_ops_removed;
        self.channels_last_convolutions += o.channels_last_convolutions;
        self.layout_conversions += o.layout_conversions;
        self.dense_layers += o.dense_layers;
        self.quantized_operators += o.quantized_operators;
    }
}

/// A lowered program and what happened.
#[derive(Debug, Clone)]
pub struct Lowered {
    /// The new `.pte` bytes.
    pub bytes: Vec<u8>,
    /// The partitioner's decisions: every kernel call delegated or left out with a reason.
    pub report: PartitionReport,
    /// What the backend's passes did, summed over partitions.
    pub passes: PassStats,
}

/// Lowers `program` for the Ferrite backend.
pub fn lower(program: &Program<'_>, options: &LowerOptions) -> Result<Lowered> {
    // Programs with legacy inline data are modernised first so every byte lives in a segment.
    let def = program.def();
    if def.constant_buffer_sizes.len() > 1 || !def.inline_delegate_data_sizes.is_empty() {
        let bytes = ProgramWriter::from_program(program).to_bytes()?;
        let modern = Program::from_vec(bytes)?;
        return lower(&modern, options);
    }
    let _span = tracing::debug_span!("lower").entered();
    let partitioning = Partitioner::new(options.partitioner.clone()).partition(program);
    let mut new_def = def.clone();
    let mut segments: Vec<Cow<'_, [u8]>> =
        (0..def.segments.len()).map(|i| Cow::Borrowed(program.segment(i).unwrap_or(&[]))).collect();
    let mut passes = PassStats::default();

    for (pi, (plan, method)) in def.plans.iter().zip(&partitioning.methods).enumerate() {
        if method.partitions.is_empty() {
            continue;
        }
        let Some(chain) = plan.chains.first() else { continue };
        let new_plan = &mut new_def.plans[pi];
        let mut delegate_of: BTreeMap<usize, usize> = BTreeMap::new();
        for (k, part) in method.partitions.iter().enumerate() {
            let (blob, stats) = compile_partition(program, plan, &part.instructions, &part.inputs, &part.outputs)
                .map_err(|e| LowerError::Compile { method: plan.name.clone(), partition: k, message: e.0 })?;
            passes += &stats;
            let bytes =
                blob.encode().map_err(|source| LowerError::Blob { method: plan.name.clone(), partition: k, source })?;
            segments.push(Cow::Owned(bytes));
            new_def.segments.push(ferrite_program::DataSegment { offset: 0, size: 0 });
            new_plan.delegates.push(BackendDelegate {
                id: BACKEND_ID.to_string(),
                processed: DataLocation::Segment(new_def.segments.len() - 1),
                compile_specs: Vec::new(),
            });
            delegate_of.insert(k, new_plan.delegates.len() - 1);
        }
        let mut instructions = Vec::with_capacity(method.schedule.len());
        for step in &method.schedule {
            instructions.push(match *step {
                Step::Instruction(i) => chain.instructions[i].clone(),
                Step::Partition(k) => {
                    let part = &method.partitions[k];
                    let args: Vec<usize> = part.inputs.iter().chain(&part.outputs).copied().collect();
                    Instruction::DelegateCall { delegate_index: delegate_of[&k], args }
                }
            });
        }
        let new_chain = &mut new_plan.chains[0];
        new_chain.instructions = instructions;
        new_chain.stacktrace = None;
    }
    for plan in &mut new_def.plans {
        ferrite_program::compact_values(plan);
    }
    let segments = rewrite::compact_constants(program, &mut new_def, segments)?;
    let bytes = ProgramWriter::new(new_def, segments)?.to_bytes()?;
    // The result must verify like any program we load.
    Program::from_bytes(&bytes).map_err(LowerError::Verify)?;
    Ok(Lowered { bytes, report: partitioning.report, passes })
}

/// Lowers the file at `input` and writes `output` atomically: a failed lowering or write never
/// leaves a partial file at `output`.
pub fn lower_file(input: &Path, output: &Path, options: &LowerOptions) -> Result<Lowered> {
    let program = Program::mmap(input)?;
    let lowered = lower(&program, options)?;
    let dir = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out.pte".into());
    let tmp = dir.join(format!(".{name}.ferrite-tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        std::fs::write(&tmp, &lowered.bytes)?;
        std::fs::rename(&tmp, output)
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        LowerError::Write { path: output.display().to_string(), source }
    })?;
    Ok(lowered)
}
