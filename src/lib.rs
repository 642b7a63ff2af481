//! **Ferrite** — an ExecuTorch backend and runtime for CPUs, in Rust.
//!
//! This facade re-exports the member crates, so one dependency gives the whole toolkit, and adds
//! the two entry points: [`lower`] (the ahead-of-time path) and [`execute`] (running a method).
//!
//! | module | crate | what it does |
//! |---|---|---|
//! | [`program`] | `ferrite-program` | read, verify and write `.pte` programs |
//! | [`op_support`] | `ferrite-op-support` | every operator Ferrite knows ([`op_support::Op`]), and when the backend runs it |
//! | [`partitioner`] | `ferrite-partitioner` | choose and place the subgraphs the backend runs, with reasons |
//! | [`lower`](mod@lowering) | `ferrite-lower` | compile partitions into backend blobs, rewrite the program |
//! | [`blob`] | `ferrite-blob` | the backend's delegate blob format |
//! | [`kernels`] | `ferrite-kernels` | the compute library, SIMD chosen at run time |
//! | [`runtime`] | `ferrite-runtime` | execute programs: portable kernels and the Ferrite backend |
//! | [`quantizer`] | `ferrite-quantizer` | post-training quantization of float programs, with an accuracy report |
//! | [`troubleshooting`] | `ferrite-troubleshooting` | per-operator profiles (inside the backend too) and traces |
//!
//! A device app that only runs lowered programs needs just `ferrite-runtime`; the command-line
//! tool is the `ferrite-cli` crate.
//!
//! ```no_run
//! use ferrite::prelude::*;
//!
//! # fn main() -> Result<(), ferrite::Error> {
//! let program = ferrite::load("model.pte")?;
//! let lowered = ferrite::lower(&program, &ferrite::LowerOptions::default())?;
//! println!("{}", lowered.report);
//! let lowered = std::sync::Arc::new(Program::from_vec(lowered.bytes)?);
//! let inputs = ferrite::runtime::default_inputs(&lowered, "forward")?;
//! let outputs = ferrite::execute(&lowered, "forward", &inputs)?;
//! println!("{}", outputs[0].summary());
//! # Ok(()) }
//! ```
//!
//! Feature `npy` (on by default) adds `.npy` reading and writing ([`runtime::read_npy`]).

#![deny(unsafe_code)]
#![warn(missing_docs)]

use std::path::Path;
use std::sync::Arc;

pub use ferrite_blob as blob;
pub use ferrite_kernels as kernels;
pub use ferrite_lower as lowering;
pub use ferrite_op_support as op_support;
pub use ferrite_partitioner as partitioner;
pub use ferrite_program as program;
pub use ferrite_quantizer as quantizer;
pub use ferrite_runtime as runtime;
pub use ferrite_troubleshooting as troubleshooting;

pub use ferrite_lower::{LowerError, LowerOptions, Lowered};
use ferrite_program::{Program, ProgramError};
use ferrite_runtime::{Runtime, RuntimeError, TensorData};

/// The types most programs need.
pub mod prelude {
    pub use crate::Error;
    pub use ferrite_program::{Program, ProgramSummary, ProgramWriter};
    pub use ferrite_runtime::{Method, Runtime, TensorData};
}

/// Any error Ferrite reports: a member crate's error, with its stable code and hint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading, verifying or writing a program failed.
    #[error(transparent)]
    Program(#[from] ProgramError),
    /// Loading or running a method failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Lowering failed.
    #[error(transparent)]
    Lower(#[from] LowerError),
    /// Quantizing failed.
    #[error(transparent)]
    Quantize(#[from] ferrite_quantizer::QuantizeError),
    /// Profiling or another troubleshooting tool failed.
    #[error(transparent)]
    Troubleshoot(#[from] ferrite_troubleshooting::TroubleshootError),
}

impl Error {
    /// The stable error code (`P0xx`, `R0xx`, `L0xx`, `Q0xx`, `T0xx`, `C0xx`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Program(e) => e.code(),
            Error::Runtime(e) => e.code(),
            Error::Lower(e) => e.code(),
            Error::Quantize(e) => e.code(),
            Error::Troubleshoot(e) => e.code(),
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            Error::Program(e) => e.hint(),
            Error::Runtime(e) => e.hint(),
            Error::Lower(e) => e.hint(),
            Error::Quantize(e) => e.hint(),
            Error::Troubleshoot(e) => e.hint(),
        }
    }
}

/// Loads (memory-maps) and verifies a program.
pub fn load(path: impl AsRef<Path>) -> Result<Arc<Program<'static>>, Error> {
    Ok(Arc::new(Program::mmap(path)?))
}

/// Lowers `program` for the Ferrite backend: supported subgraphs become delegate calls to
/// `FerriteBackend` (see [`ferrite_lower`]).
pub fn lower(program: &Program<'_>, options: &LowerOptions) -> Result<Lowered, Error> {
    Ok(ferrite_lower::lower(program, options)?)
}

/// Lowers the file at `input` and writes the result to `output` atomically.
pub fn lower_file(input: &Path, output: &Path, options: &LowerOptions) -> Result<Lowered, Error> {
    Ok(ferrite_lower::lower_file(input, output, options)?)
}

/// Runs `method` of `program` once on `inputs` with a default [`Runtime`] (portable kernels and
/// the Ferrite backend) and returns its outputs. For repeated runs, load a
/// [`ferrite_runtime::Method`] once with [`Runtime::load_method`] instead.
pub fn execute(program: &Arc<Program<'static>>, method: &str, inputs: &[TensorData]) -> Result<Vec<TensorData>, Error> {
    let mut m = Runtime::new().load_method(program, method)?;
    Ok(m.run(inputs)?)
}
