//! [`LowerError`]: why lowering failed, each with a stable code (`L0xx`) and what to do.

use ferrite_blob::BlobError;
use ferrite_program::ProgramError;

/// Why a program could not be lowered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LowerError {
    /// The input program could not be read, or the lowered one written.
    #[error(transparent)]
    Program(#[from] ProgramError),
    /// A partition could not be compiled into a blob.
    #[error("method {method:?}, partition {partition}: {message}")]
    Compile {
        /// Method name.
        method: String,
        /// Partition number within the method.
        partition: usize,
        /// What went wrong.
        message: String,
    },
    /// A compiled partition could not be encoded.
    #[error("method {method:?}, partition {partition}: {source}")]
    Blob {
        /// Method name.
        method: String,
        /// Partition number within the method.
        partition: usize,
        /// The encoder's error.
        source: BlobError,
    },
    /// The lowered program does not verify (a bug in lowering).
    #[error("the lowered program does not verify: {0}")]
    Verify(ProgramError),
    /// The output file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The output path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl LowerError {
    /// One example of every lowering error (for the book's error table).
    pub fn catalog() -> Vec<LowerError> {
        vec![
            LowerError::Compile {
                method: "forward".into(),
                partition: 0,
                message: "value 12 is not in the default dim order".into(),
            },
            LowerError::Blob {
                method: "forward".into(),
                partition: 0,
                source: BlobError("too many values, ops or constants".into()),
            },
            LowerError::Verify(ProgramError::Inconsistent(
                "instruction 3 names value 99; the plan has 40 values".into(),
            )),
            LowerError::Write {
                path: "out/model.ferrite.pte".into(),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            },
        ]
    }

    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            LowerError::Program(e) => e.code(),
            LowerError::Compile { .. } => "L001",
            LowerError::Blob { .. } => "L002",
            LowerError::Verify(_) => "L003",
            LowerError::Write { .. } => "L004",
        }
    }

    /// A one-line title for the error's kind.
    pub fn title(&self) -> &'static str {
        match self {
            LowerError::Program(e) => e.title(),
            LowerError::Compile { .. } => "a partition could not be compiled",
            LowerError::Blob { .. } => "a compiled partition could not be encoded",
            LowerError::Verify(_) => "the lowered program does not verify",
            LowerError::Write { .. } => "the lowered program could not be written",
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            LowerError::Program(e) => e.hint(),
            LowerError::Compile { .. } | LowerError::Blob { .. } | LowerError::Verify(_) => {
                "run `ferrite partition MODEL.pte` to see the partitions; exclude the operator named with --exclude-ops, and report the file"
            }
            LowerError::Write { .. } => "check that the directory exists and is writable",
        }
    }
}

/// Result with a [`LowerError`].
pub type Result<T, E = LowerError> = std::result::Result<T, E>;
