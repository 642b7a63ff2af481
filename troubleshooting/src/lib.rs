//! Ferrite's troubleshooting tools:
//! - **profiling** — [`profile`] runs a method several times with every kernel call, delegate
//!   call and node inside Ferrite's backend timed, and [`Profile`] gives the per-operator table
//!   `ferrite profile` prints, JSON, and a Chrome/Perfetto trace;
//! - **numerical debugging** — [`compare_numerics`] runs two programs of one model (a lowered
//!   program and its source, or a float program and its quantized one) and reports every
//!   operator's error and the first one past a [`Tolerance`] (`ferrite debug numerics`).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let program = Arc::new(ferrite_program::Program::read("model.pte")?);
//! let mut method = ferrite_runtime::Runtime::new().load_method(&program, "forward")?;
//! let inputs = ferrite_runtime::default_inputs(&program, "forward")?;
//! let profile = ferrite_troubleshooting::profile(&mut method, &inputs, 3, 20)?;
//! print!("{}", profile.table(20));
//! std::fs::write("trace.json", profile.chrome_trace())?;
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod doctor;
pub mod etdump;
pub mod flops;
pub mod numerics;
mod profile;

pub use doctor::{diagnose, Diagnosis, Finding, Severity};
pub use numerics::{compare_numerics, ErrorStats, NumericsReport, NumericsRow, Tolerance};
pub use profile::{profile, Profile, ProfileRow};

/// Why troubleshooting failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TroubleshootError {
    /// Running the method failed.
    #[error(transparent)]
    Runtime(#[from] ferrite_runtime::RuntimeError),
    /// An option is out of range.
    #[error("invalid option: {0}")]
    Option(String),
    /// The numerical debugger was given a lowered program and nothing to compare it with.
    #[error("{model} is already lowered for Ferrite's backend, so the program it was lowered from cannot be rebuilt from it")]
    NeedsReference {
        /// The program.
        model: String,
    },
}

impl TroubleshootError {
    /// The stable error code (`T001`; runtime errors keep their `R0xx`).
    pub fn code(&self) -> &'static str {
        match self {
            TroubleshootError::Runtime(e) => e.code(),
            TroubleshootError::Option(_) => "T001",
            TroubleshootError::NeedsReference { .. } => "T002",
        }
    }

    /// A one-line title for the error's kind.
    pub fn title(&self) -> &'static str {
        match self {
            TroubleshootError::Runtime(e) => e.title(),
            TroubleshootError::Option(_) => "invalid troubleshooting option",
            TroubleshootError::NeedsReference { .. } => "no reference to compare a lowered program with",
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            TroubleshootError::Runtime(e) => e.hint(),
            TroubleshootError::Option(_) => "see `ferrite profile --help` or `ferrite debug numerics --help`",
            TroubleshootError::NeedsReference { .. } => {
                "pass the un-lowered program with --reference, or give the un-lowered program itself (it is lowered in memory)"
            }
        }
    }

    /// One example of each error this crate raises itself, for the book's error table.
    pub fn catalog() -> Vec<TroubleshootError> {
        vec![
            TroubleshootError::Option("--iters must be at least 1".into()),
            TroubleshootError::NeedsReference { model: "model_ferrite.pte".into() },
        ]
    }
}

/// Result with [`TroubleshootError`].
pub type Result<T> = std::result::Result<T, TroubleshootError>;
