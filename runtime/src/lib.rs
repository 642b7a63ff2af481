//! Ferrite's runtime: executes verified ExecuTorch programs.
//!
//! ```no_run
//! use std::sync::Arc;
//! use ferrite_program::Program;
//! use ferrite_runtime::{Runtime, TensorData};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let program = Arc::new(Program::mmap("model.pte")?);
//! let runtime = Runtime::new().with_threads(1)?;
//! let mut method = runtime.load_method(&program, "forward")?;
//! let input = TensorData::from_slice(vec![1, 16], &[0.5f32; 16])?;
//! let outputs = method.run(&[input])?;
//! println!("{:?}", outputs[0]);
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod backend;
mod env;
mod error;
mod inputs;
mod method;
#[cfg(feature = "npy")]
mod npy;
pub mod ops;
mod profile;
mod registry;
mod tensor;

pub use backend::{EmbeddedDelegate, FerriteBackend, BACKEND_ID};
pub use env::{Env, Scalar};
pub use error::{Result, RuntimeError};
pub use ferrite_kernels::int8::Dot;
pub use ferrite_kernels::simd::Level;
pub use inputs::default_inputs;
pub use method::{Accumulation, Method, Observer, Runtime};
pub use ops::portable_kernels;
pub use profile::{Inspector, Intermediate, LoadEvent, ProfileEvent};
pub use registry::{Backend, BackendInit, BackendRegistry, Delegate, KernelRegistry, OpFn};
pub use tensor::{element_type, nbytes, numel, scalar_type, AlignedBuf, TensorData, TensorMut, TensorRef};

#[cfg(feature = "npy")]
pub use npy::{read_npy, read_npy_bytes, write_npy};
