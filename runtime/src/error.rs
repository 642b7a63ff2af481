//! Runtime errors. Each has a stable code (`R0xx`) and a hint; the book lists them.

use ferrite_kernels::KernelError;
use ferrite_program::{ProgramError, ScalarType};

/// Why a method could not be loaded or executed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The program itself is invalid.
    #[error(transparent)]
    Program(#[from] ProgramError),
    /// No method of that name.
    #[error("the program has no method {name:?} (it has: {available})")]
    NoSuchMethod {
        /// Requested name.
        name: String,
        /// Methods present, comma-separated.
        available: String,
    },
    /// Operators without a Ferrite kernel; found when the method loads.
    #[error("method {method:?} uses operators Ferrite has no kernel for: {}", list_missing(missing))]
    MissingKernels {
        /// Method name.
        method: String,
        /// (operator, instruction indices using it).
        missing: Vec<(String, Vec<usize>)>,
    },
    /// A delegate's backend is not registered.
    #[error("delegate {delegate} of method {method:?} needs backend {id:?}, which is not registered (registered: {registered})")]
    BackendNotRegistered {
        /// Method name.
        method: String,
        /// Delegate index.
        delegate: usize,
        /// Backend id.
        id: String,
        /// Registered backend ids.
        registered: String,
    },
    /// A backend failed to initialise or run a delegate.
    #[error("backend {id:?}: {message}")]
    Backend {
        /// Backend id.
        id: String,
        /// What went wrong.
        message: String,
    },
    /// Wrong number of inputs.
    #[error("method {method:?} takes {expected} inputs, {given} were given")]
    InputCount {
        /// Method name.
        method: String,
        /// Inputs expected.
        expected: usize,
        /// Inputs given.
        given: usize,
    },
    /// An input has the wrong dtype.
    #[error("input {index} of method {method:?} must be {expected}, got {given}")]
    InputDtype {
        /// Method name.
        method: String,
        /// Input index.
        index: usize,
        /// Expected dtype.
        expected: ScalarType,
        /// Given dtype.
        given: ScalarType,
    },
    /// An input has the wrong shape.
    #[error("input {index} of method {method:?}: shape {given:?} does not fit {expected:?} ({reason})")]
    InputShape {
        /// Method name.
        method: String,
        /// Input index.
        index: usize,
        /// Expected (or upper-bound) sizes.
        expected: Vec<usize>,
        /// Given sizes.
        given: Vec<usize>,
        /// Why it does not fit.
        reason: &'static str,
    },
    /// An input is not a tensor value (the method takes an Int, Bool, ...).
    #[error("input {index} of method {method:?} is a {kind}; only tensor inputs can be set")]
    InputKind {
        /// Method name.
        method: String,
        /// Input index.
        index: usize,
        /// Value kind.
        kind: &'static str,
    },
    /// A kernel call failed.
    #[error("instruction {instruction} ({op}) failed: {message}")]
    Kernel {
        /// Instruction index.
        instruction: usize,
        /// Operator name.
        op: String,
        /// What went wrong.
        message: String,
    },
    /// An argument or intermediate value has an invalid kind, dtype, shape or value.
    #[error("{0}")]
    Invalid(String),
    /// A feature the runtime does not support yet.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Loading would allocate more memory than the runtime's limit allows (a program or blob
    /// declaring huge buffers); nothing was allocated.
    #[error("{what}: {needed} bytes needed, more than the memory limit of {limit} bytes")]
    MemoryLimit {
        /// What would have been allocated.
        what: String,
        /// Bytes it needs.
        needed: u64,
        /// The runtime's limit.
        limit: u64,
    },
    /// An `.npy` file is unreadable or invalid.
    #[error("{path}: {reason}")]
    Npy {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An output file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

fn list_missing(missing: &[(String, Vec<usize>)]) -> String {
    missing
        .iter()
        .map(|(op, ins)| {
            let ins: Vec<String> = ins.iter().map(usize::to_string).collect();
            format!("{op} (instructions {})", ins.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<KernelError> for RuntimeError {
    fn from(e: KernelError) -> Self {
        RuntimeError::Invalid(e.to_string())
    }
}

impl RuntimeError {
    /// One example of every runtime error kind (for the book's error table).
    pub fn catalog() -> Vec<RuntimeError> {
        vec![
            RuntimeError::NoSuchMethod { name: "encode".into(), available: "forward".into() },
            RuntimeError::MissingKernels {
                method: "forward".into(),
                missing: vec![("custom::stft.out".into(), vec![4])],
            },
            RuntimeError::BackendNotRegistered {
                method: "forward".into(),
                delegate: 0,
                id: "XnnpackBackend".into(),
                registered: "none".into(),
            },
            RuntimeError::Backend {
                id: "FerriteBackend".into(),
                message: "blob version 9 is newer than this runtime".into(),
            },
            RuntimeError::InputCount { method: "forward".into(), expected: 1, given: 2 },
            RuntimeError::InputDtype {
                method: "forward".into(),
                index: 0,
                expected: ScalarType::Float,
                given: ScalarType::Long,
            },
            RuntimeError::InputShape {
                method: "forward".into(),
                index: 0,
                expected: vec![1, 16],
                given: vec![2, 16],
                reason: "the input's shape is static",
            },
            RuntimeError::InputKind { method: "forward".into(), index: 1, kind: "Int" },
            RuntimeError::Kernel {
                instruction: 7,
                op: ferrite_op_support::Op::ViewCopy.name().into(),
                message: "cannot reshape [3, 4] to [5]".into(),
            },
            RuntimeError::Invalid(
                "value 12: shape [17, 16] does not fit the planned DynamicBound tensor [16, 16]".into(),
            ),
            RuntimeError::Unsupported(
                "value 3 has dim order [0, 2, 3, 1]; this operator needs the default order".into(),
            ),
            RuntimeError::Write {
                path: "out/output_0.npy".into(),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            },
            RuntimeError::Npy { path: "x.npy".into(), reason: "Fortran-order arrays are not supported".into() },
            RuntimeError::MemoryLimit {
                what: "method \"forward\": memory-planned buffers".into(),
                needed: 618_475_299_840,
                limit: 16_777_216_000,
            },
        ]
    }

    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            RuntimeError::Program(e) => e.code(),
            RuntimeError::NoSuchMethod { .. } => "R001",
            RuntimeError::MissingKernels { .. } => "R002",
            RuntimeError::BackendNotRegistered { .. } => "R003",
            RuntimeError::Backend { .. } => "R004",
            RuntimeError::InputCount { .. } => "R010",
            RuntimeError::InputDtype { .. } => "R011",
            RuntimeError::InputShape { .. } => "R012",
            RuntimeError::InputKind { .. } => "R013",
            RuntimeError::Kernel { .. } => "R020",
            RuntimeError::Invalid(_) => "R021",
            RuntimeError::Unsupported(_) => "R030",
            RuntimeError::MemoryLimit { .. } => "R040",
            RuntimeError::Write { .. } => "C002",
            RuntimeError::Npy { .. } => "C003",
        }
    }

    /// A one-line title for the error's kind.
    pub fn title(&self) -> &'static str {
        match self {
            RuntimeError::Program(e) => e.title(),
            RuntimeError::NoSuchMethod { .. } => "no such method",
            RuntimeError::MissingKernels { .. } => "operators without a kernel",
            RuntimeError::BackendNotRegistered { .. } => "delegate backend not registered",
            RuntimeError::Backend { .. } => "a backend failed",
            RuntimeError::InputCount { .. } => "wrong number of inputs",
            RuntimeError::InputDtype { .. } => "input has the wrong dtype",
            RuntimeError::InputShape { .. } => "input has the wrong shape",
            RuntimeError::InputKind { .. } => "input is not a tensor",
            RuntimeError::Kernel { .. } => "a kernel failed",
            RuntimeError::Invalid(_) => "invalid value",
            RuntimeError::Unsupported(_) => "unsupported feature",
            RuntimeError::MemoryLimit { .. } => "over the memory limit",
            RuntimeError::Write { .. } => "an output could not be written",
            RuntimeError::Npy { .. } => "an `.npy` file could not be read",
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            RuntimeError::Program(e) => e.hint(),
            RuntimeError::NoSuchMethod { .. } => "pass one of the listed method names (`ferrite inspect` lists them)",
            RuntimeError::MissingKernels { .. } => {
                "export with core ATen operators only, or lower the program so a backend runs these operators; open an issue naming the operator"
            }
            RuntimeError::BackendNotRegistered { .. } => {
                "run the non-delegated (portable) export of the model instead; XNNPACK blobs cannot run on Ferrite"
            }
            RuntimeError::Backend { .. } => "re-export or re-lower the program; if it persists, report it with the file",
            RuntimeError::InputCount { .. }
            | RuntimeError::InputDtype { .. }
            | RuntimeError::InputShape { .. }
            | RuntimeError::InputKind { .. } => "pass inputs matching the method's signature (`ferrite inspect MODEL.pte` shows it)",
            RuntimeError::Kernel { .. } | RuntimeError::Invalid(_) => {
                "the program computes something its own metadata does not allow (e.g. a dynamic shape beyond its bound); check the inputs, then report it with the file"
            }
            RuntimeError::Unsupported(_) => "open an issue with the program; meanwhile re-export without the feature",
            RuntimeError::MemoryLimit { .. } => {
                "a valid program this large needs a bigger limit (`Runtime::with_memory_limit`, `--memory-limit`); a small model declaring this much is damaged or malicious: re-export it"
            }
            RuntimeError::Write { .. } => "check that the directory exists and is writable",
            RuntimeError::Npy { .. } => {
                "pass a C-order `.npy` of a numeric or bool dtype, e.g. saved with `np.save(path, np.ascontiguousarray(x))`"
            }
        }
    }
}

/// Result with a [`RuntimeError`].
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
