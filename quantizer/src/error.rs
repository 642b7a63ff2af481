//! [`QuantizeError`]: everything that can stop a quantization, each with a stable code and a
//! hint.

use thiserror::Error;

/// Result with [`QuantizeError`].
pub type Result<T> = std::result::Result<T, QuantizeError>;

/// Why a program could not be quantized.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum QuantizeError {
    /// The program has no method of that name.
    #[error("the program has no method {0:?}")]
    NoMethod(String),
    /// A static scheme needs calibration data and none was given.
    #[error("the {scheme} scheme needs calibration data and none was given")]
    NoCalibration {
        /// The scheme's name.
        scheme: String,
    },
    /// A calibration sample does not fit the method's inputs.
    #[error("calibration sample {sample}, input {input}: {message}")]
    CalibrationMismatch {
        /// Sample index.
        sample: usize,
        /// Input index.
        input: usize,
        /// What differs.
        message: String,
    },
    /// Calibration data could not be read.
    #[error("cannot read calibration data {path}: {message}")]
    CalibrationData {
        /// The file or folder.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The program is already quantized (it has quantize/dequantize operators).
    #[error("method {method:?} is already quantized (it calls {op})")]
    AlreadyQuantized {
        /// The method.
        method: String,
        /// The quantized operator found.
        op: String,
    },
    /// The program cannot be quantized as it is (control flow, a form the quantizer does not
    /// rewrite).
    #[error("cannot quantize method {method:?}: {message}")]
    Unsupported {
        /// The method.
        method: String,
        /// Why.
        message: String,
    },
    /// An `--exclude` selector or another option is malformed.
    #[error("invalid option: {0}")]
    Option(String),
    /// Running the float or quantized program failed.
    #[error(transparent)]
    Runtime(#[from] ferrite_runtime::RuntimeError),
    /// Reading or writing the program failed.
    #[error(transparent)]
    Program(#[from] ferrite_program::ProgramError),
    /// Lowering the quantized program for Ferrite's backend failed.
    #[error(transparent)]
    Lower(#[from] ferrite_lower::LowerError),
    /// Writing the output failed (nothing was left at the output path).
    #[error("cannot write {path}: {source}")]
    Write {
        /// The output path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl QuantizeError {
    /// The stable error code (`Q001`...; wrapped errors keep their own).
    pub fn code(&self) -> &'static str {
        match self {
            QuantizeError::NoMethod(_) => "Q001",
            QuantizeError::NoCalibration { .. } => "Q002",
            QuantizeError::CalibrationMismatch { .. } => "Q003",
            QuantizeError::CalibrationData { .. } => "Q004",
            QuantizeError::AlreadyQuantized { .. } => "Q005",
            QuantizeError::Unsupported { .. } => "Q006",
            QuantizeError::Option(_) => "Q007",
            QuantizeError::Write { .. } => "Q008",
            QuantizeError::Runtime(e) => e.code(),
            QuantizeError::Program(e) => e.code(),
            QuantizeError::Lower(e) => e.code(),
        }
    }

    /// A one-line title for the error's kind.
    pub fn title(&self) -> &'static str {
        match self {
            QuantizeError::NoMethod(_) => "no such method",
            QuantizeError::NoCalibration { .. } => "calibration data missing",
            QuantizeError::CalibrationMismatch { .. } => "a calibration sample does not fit the method",
            QuantizeError::CalibrationData { .. } => "calibration data unreadable",
            QuantizeError::AlreadyQuantized { .. } => "the program is already quantized",
            QuantizeError::Unsupported { .. } => "the method cannot be quantized",
            QuantizeError::Option(_) => "invalid quantizer option",
            QuantizeError::Write { .. } => "the quantized program could not be written",
            QuantizeError::Runtime(e) => e.title(),
            QuantizeError::Program(e) => e.title(),
            QuantizeError::Lower(e) => e.title(),
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            QuantizeError::NoMethod(_) => "`ferrite inspect MODEL.pte` lists the methods; pass one with --method",
            QuantizeError::NoCalibration { .. } => "pass --calibration DATA (a .npy whose first axis indexes samples, or a folder of input_<i>.npy files), or choose --scheme dynamic-int8, which needs none",
            QuantizeError::CalibrationMismatch { .. } => "each sample must have the dtype and shape of the method's input (`ferrite inspect` shows them); a stacked .npy adds one leading axis",
            QuantizeError::CalibrationData { .. } => "check the path: a .npy file, or a folder of input_<i>.npy (one sample each) or of sample folders holding input_<j>.npy",
            QuantizeError::AlreadyQuantized { .. } => "quantize the float program (exported without a quantizer); `ferrite lower` runs an already quantized program in the backend",
            QuantizeError::Unsupported { .. } => "exclude the operators involved with --exclude, or quantize with PT2E in Python and lower the result",
            QuantizeError::Option(_) => "see `ferrite quantize --help`",
            QuantizeError::Write { .. } => "check that the output folder exists and is writable",
            QuantizeError::Runtime(e) => e.hint(),
            QuantizeError::Program(e) => e.hint(),
            QuantizeError::Lower(e) => e.hint(),
        }
    }

    /// One example of each error this crate raises itself, for the book's error table.
    pub fn catalog() -> Vec<QuantizeError> {
        vec![
            QuantizeError::NoMethod("encode".into()),
            QuantizeError::NoCalibration { scheme: "static-int8".into() },
            QuantizeError::CalibrationMismatch {
                sample: 3,
                input: 0,
                message: "got float32 [1, 3, 32, 32], the method takes float32 [1, 3, 224, 224]".into(),
            },
            QuantizeError::CalibrationData {
                path: "calib/".into(),
                message: "the folder has no input_<i>.npy files and no sample folders holding them".into(),
            },
            QuantizeError::AlreadyQuantized {
                method: "forward".into(),
                op: ferrite_op_support::Op::QuantizePerTensor.name().into(),
            },
            QuantizeError::Unsupported {
                method: "forward".into(),
                message: "the method has control flow (moves or jumps)".into(),
            },
            QuantizeError::Option(
                "unknown observer \"p99\" (minmax, moving-average, histogram, percentile[:P], mse, entropy)".into(),
            ),
            QuantizeError::Write {
                path: "out/model_q8.pte".into(),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            },
        ]
    }
}
