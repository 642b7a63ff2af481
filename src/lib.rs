//! **Ferrite** — an ExecuTorch backend and runtime for CPUs, in Rust.
//!
//! This facade re-exports the member crates so one dependency gives the whole toolkit:
//!
//! | module | crate | what it does |
//! |---|---|---|
//! | [`program`] | `ferrite-program` | read, verify and write `.pte` programs |
//! | [`runtime`] | `ferrite-runtime` | execute programs with Ferrite's CPU kernels |
//!
//! ```no_run
//! use ferrite::prelude::*;
//!
//! # fn main() -> Result<(), ferrite::Error> {
//! let program = Program::mmap("model.pte")?;
//! println!("{}", ProgramSummary::of(&program));
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]

pub use ferrite_program as program;
pub use ferrite_runtime as runtime;

mod error;
pub use error::Error;

/// The types most programs need.
pub mod prelude {
    pub use crate::Error;
    pub use ferrite_program::{Program, ProgramSummary, ProgramWriter};
}
