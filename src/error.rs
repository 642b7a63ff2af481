//! The facade's error: any member crate's error, with its stable code and hint.

use ferrite_program::ProgramError;
use ferrite_runtime::RuntimeError;

/// Any error Ferrite reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading, verifying or writing a program failed.
    #[error(transparent)]
    Program(#[from] ProgramError),
    /// Loading or running a method failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A `.npy` file is unreadable or invalid.
    #[error("{path}: {reason}")]
    Npy {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Lowering a program failed.
    #[error("lowering failed: {0}")]
    Lower(String),
    /// A command-line argument is invalid.
    #[error("{0}")]
    Usage(String),
    /// An output could not be written.
    #[error("cannot write {path}: {source}")]
    Output {
        /// Path being written.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
}

impl Error {
    /// The stable error code (`P0xx` program, `C0xx` command line).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Program(e) => e.code(),
            Error::Runtime(e) => e.code(),
            Error::Npy { .. } => "C003",
            Error::Lower(_) => "L001",
            Error::Usage(_) => "C001",
            Error::Output { .. } => "C002",
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            Error::Program(e) => e.hint(),
            Error::Runtime(e) => e.hint(),
            Error::Npy { .. } => "pass a C-order .npy file written by numpy.save with a numeric or bool dtype",
            Error::Usage(_) => "run `ferrite help` for the commands and their flags",
            Error::Lower(_) => "run `ferrite partition MODEL.pte` to see the partitions; exclude the operator named with --exclude-ops, and report the file",
            Error::Output { .. } => "check that the directory exists and is writable",
        }
    }
}
