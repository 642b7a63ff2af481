//! The facade's error: any member crate's error, with its stable code and hint.

use ferrite_program::ProgramError;

/// Any error Ferrite reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading, verifying or writing a program failed.
    #[error(transparent)]
    Program(#[from] ProgramError),
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
            Error::Usage(_) => "C001",
            Error::Output { .. } => "C002",
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            Error::Program(e) => e.hint(),
            Error::Usage(_) => "run `ferrite help` for the commands and their flags",
            Error::Output { .. } => "check that the directory exists and is writable",
        }
    }
}
