//! Errors from reading, verifying and writing programs.
//!
//! Every error has a stable code (`P0xx`), says what was wrong and where, and
//! [`ProgramError::hint`] says what to do. The book's troubleshooting chapter lists them by code.

use std::path::PathBuf;

/// Why a program could not be read, verified or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProgramError {
    /// The file could not be opened, read or mapped.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The data is shorter than the smallest possible program.
    #[error("the data is {len} bytes long, too short to be an ExecuTorch program")]
    TooShort {
        /// Length in bytes.
        len: usize,
    },
    /// Bytes 4..8 are not the `ET12` file identifier.
    #[error("bytes 4..8 are {found:?}, not the ExecuTorch program identifier \"ET12\"")]
    NotAProgram {
        /// What was found, escaped.
        found: String,
    },
    /// The extended header (`eh00`) is inconsistent.
    #[error("the extended header is invalid: {reason}")]
    BadHeader {
        /// What is wrong.
        reason: String,
    },
    /// The FlatBuffer verifier rejected the data.
    #[error("the program's FlatBuffer is malformed: {0}")]
    FlatBuffer(#[from] flatbuffers::InvalidFlatbuffer),
    /// An index points outside the table it indexes.
    #[error("{at}: {what} index {index} is out of range (there are {len})")]
    IndexOutOfRange {
        /// Where in the program.
        at: String,
        /// Which kind of index.
        what: &'static str,
        /// The index found (may be negative in the file).
        index: i64,
        /// Length of the table.
        len: usize,
    },
    /// A value index refers to a value of the wrong kind.
    #[error("{at}: value {index} is a {found}, expected a {expected}")]
    WrongValueKind {
        /// Where in the program.
        at: String,
        /// The value index.
        index: usize,
        /// Expected kind.
        expected: &'static str,
        /// Found kind.
        found: &'static str,
    },
    /// An enum or union tag has a value this schema does not define.
    #[error("{at}: unknown {what} {code}")]
    UnknownTag {
        /// Where in the program.
        at: String,
        /// Which enum or union.
        what: &'static str,
        /// The raw value.
        code: i64,
    },
    /// A tensor's metadata is invalid (sizes, dim_order, storage offset).
    #[error("{at}: invalid tensor: {reason}")]
    BadTensor {
        /// Where in the program.
        at: String,
        /// What is wrong.
        reason: String,
    },
    /// A byte range (tensor data, segment, blob) lies outside the memory that holds it.
    #[error("{at}: bytes {start}..{end} lie outside {container} ({size} bytes)")]
    OutOfBounds {
        /// Where in the program.
        at: String,
        /// Start of the range.
        start: u64,
        /// End of the range (saturated on overflow).
        end: u64,
        /// What should contain the range.
        container: String,
        /// Size of the container.
        size: u64,
    },
    /// Fields that must agree do not (e.g. both constant layouts used).
    #[error("{0}")]
    Inconsistent(String),
    /// The program uses a feature Ferrite does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The program cannot be written.
    #[error("cannot write the program: {0}")]
    Write(String),
}

impl ProgramError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            ProgramError::Io { .. } => "P001",
            ProgramError::TooShort { .. } => "P002",
            ProgramError::NotAProgram { .. } => "P003",
            ProgramError::BadHeader { .. } => "P004",
            ProgramError::FlatBuffer(_) => "P005",
            ProgramError::IndexOutOfRange { .. } => "P010",
            ProgramError::WrongValueKind { .. } => "P011",
            ProgramError::UnknownTag { .. } => "P012",
            ProgramError::BadTensor { .. } => "P020",
            ProgramError::OutOfBounds { .. } => "P021",
            ProgramError::Inconsistent(_) => "P030",
            ProgramError::Unsupported(_) => "P040",
            ProgramError::Write(_) => "P050",
        }
    }

    /// A one-line title for the error's kind (the book's error table uses it).
    pub fn title(&self) -> &'static str {
        match self {
            ProgramError::Io { .. } => "the file cannot be read",
            ProgramError::TooShort { .. } => "the data is too short to be a program",
            ProgramError::NotAProgram { .. } => "not an ExecuTorch program (no ET12 identifier)",
            ProgramError::BadHeader { .. } => "invalid extended header",
            ProgramError::FlatBuffer(_) => "malformed FlatBuffer",
            ProgramError::IndexOutOfRange { .. } => "an index is out of range",
            ProgramError::WrongValueKind { .. } => "a value has the wrong kind",
            ProgramError::UnknownTag { .. } => "unknown enum or union tag",
            ProgramError::BadTensor { .. } => "invalid tensor metadata",
            ProgramError::OutOfBounds { .. } => "bytes outside their buffer, arena or segment",
            ProgramError::Inconsistent(_) => "fields that must agree do not",
            ProgramError::Unsupported(_) => "unsupported feature",
            ProgramError::Write(_) => "the program cannot be written",
        }
    }

    /// One example of every error kind, in code order: the source of the book's error table.
    pub fn catalog() -> Vec<ProgramError> {
        let at = String::from("method \"forward\" (plan 0), value 3");
        vec![
            ProgramError::Io { path: "model.pte".into(), source: std::io::ErrorKind::NotFound.into() },
            ProgramError::TooShort { len: 4 },
            ProgramError::NotAProgram { found: "PK\\x03\\x04".into() },
            ProgramError::BadHeader { reason: "program_size 99999 is outside the file (1752 bytes)".into() },
            ProgramError::FlatBuffer(flatbuffers::InvalidFlatbuffer::MissingRequiredField {
                required: "root".into(),
                error_trace: Default::default(),
            }),
            ProgramError::IndexOutOfRange { at: at.clone(), what: "operator", index: 12, len: 4 },
            ProgramError::WrongValueKind { at: at.clone(), index: 7, expected: "Int", found: "Tensor" },
            ProgramError::UnknownTag { at: at.clone(), what: "scalar type", code: 9 },
            ProgramError::BadTensor { at: at.clone(), reason: "dim_order [0, 0] is not a permutation of 0..2".into() },
            ProgramError::OutOfBounds { at, start: 4096, end: 8192, container: "arena 1".into(), size: 6144 },
            ProgramError::Inconsistent("the program uses both the legacy constant_buffer and constant_segment".into()),
            ProgramError::Unsupported("external tensor data (.ptd files)".into()),
            ProgramError::Write("segments too large".into()),
        ]
    }

    /// What the user can do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            ProgramError::Io { .. } => "check the path and the file's permissions",
            ProgramError::TooShort { .. } | ProgramError::NotAProgram { .. } => {
                "pass a .pte file written by ExecuTorch's `to_executorch().buffer`"
            }
            ProgramError::FlatBuffer(_)
            | ProgramError::BadHeader { .. }
            | ProgramError::IndexOutOfRange { .. }
            | ProgramError::WrongValueKind { .. }
            | ProgramError::OutOfBounds { .. }
            | ProgramError::Inconsistent(_) => {
                "the file is corrupt or truncated, or was not written by ExecuTorch; re-export it, and if a fresh export fails too, report it with the file"
            }
            ProgramError::UnknownTag { .. } | ProgramError::BadTensor { .. } => {
                "the file is corrupt or comes from a newer ExecuTorch than Ferrite knows; re-export it with ExecuTorch 1.x"
            }
            ProgramError::Unsupported(_) => {
                "re-export without the feature named, or open an issue asking Ferrite to support it"
            }
            ProgramError::Write(_) => "check the output path and free disk space",
        }
    }
}

/// Result with a [`ProgramError`].
pub type Result<T, E = ProgramError> = std::result::Result<T, E>;
