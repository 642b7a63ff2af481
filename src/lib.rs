//! **Ferrite** — an ExecuTorch backend and runtime for CPUs, in Rust.
//!
//! This facade re-exports the member crates so one dependency gives the whole toolkit, and adds
//! the entry points the `ferrite` command-line tool uses:
//!
//! | module | crate | what it does |
//! |---|---|---|
//! | [`program`] | `ferrite-program` | read, verify and write `.pte` programs |
//! | [`op_support`] | `ferrite-op-support` | which operators the Ferrite backend runs, and when |
//! | [`partitioner`] | `ferrite-partitioner` | choose the subgraphs the backend runs, with reasons |
//! | [`runtime`] | `ferrite-runtime` | execute programs with Ferrite's CPU kernels |
//!
//! ```no_run
//! use ferrite::prelude::*;
//!
//! # fn main() -> Result<(), ferrite::Error> {
//! let program = ferrite::load("model.pte")?;
//! println!("{}", ProgramSummary::of(&program));
//! let inputs = ferrite::default_inputs(&program, "forward")?;
//! let outputs = ferrite::execute(&program, "forward", &inputs)?;
//! println!("{}", ferrite::describe(&outputs[0]));
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]

pub use ferrite_op_support as op_support;
pub use ferrite_partitioner as partitioner;
pub use ferrite_program as program;
pub use ferrite_runtime as runtime;

pub mod demo;
mod error;
mod exec;
mod lower;
mod npy;

pub use error::Error;
pub use exec::{default_inputs, describe, execute, load};
pub use lower::{lower, lower_file, LowerOptions, Lowered};
pub use npy::{read_npy, write_npy};

/// The types most programs need.
pub mod prelude {
    pub use crate::Error;
    pub use ferrite_program::{Program, ProgramSummary, ProgramWriter};
    pub use ferrite_runtime::{Method, Runtime, TensorData};
}
