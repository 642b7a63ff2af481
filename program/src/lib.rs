//! Read, verify and write ExecuTorch programs (`.pte` files).
//!
//! A `.pte` file is a FlatBuffer (`Program`, identifier `ET12`), optionally followed by an
//! extended header and aligned data segments holding constants, delegate blobs and named data.
//! [`Program`] loads one — from a byte slice, a file, or a memory map — and **verifies all of it
//! before returning**: the FlatBuffer verifier, every index (values, operators, delegates,
//! segments, constant buffers), every size and offset computation (overflow-checked), every
//! tensor's bytes inside its constant buffer or planned arena, scalar types and `dim_order`s.
//! After that, [`Program::def`] is a plain typed model ([`ProgramDef`]) whose indices can be
//! trusted, and constant data and delegate blobs are slices borrowed from the loaded bytes.
//!
//! [`ProgramWriter`] writes programs back, laid out the way ExecuTorch writes them.
//!
//! ```no_run
//! # fn main() -> Result<(), ferrite_program::ProgramError> {
//! let program = ferrite_program::Program::mmap("model.pte")?;
//! for plan in &program.def().plans {
//!     println!("{}: {} values", plan.name, plan.values.len());
//! }
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

#[allow(unsafe_code, unused_imports, dead_code, non_camel_case_types, clippy::all, clippy::restriction, missing_debug_implementations)]
#[rustfmt::skip]
mod generated {
    include!("generated/program_generated.rs");
}

mod builder;
mod edit;
mod error;
pub mod graph;
mod header;
mod load;
mod memory_plan;
mod model;
mod program;
mod scalar;
mod summary;
mod write;

pub use builder::ProgramBuilder;
pub use edit::compact_values;
pub use error::{ProgramError, Result};
pub use header::{ExtendedHeader, EXTENDED_HEADER_LEN};
pub use load::MAX_RANK;
pub use memory_plan::plan_memory;
pub use model::*;
pub use program::Program;
pub use scalar::ScalarType;
pub use summary::{DelegateSummary, IoSummary, MethodSummary, ProgramSummary};
pub use write::{ProgramWriter, SEGMENT_ALIGNMENT, TENSOR_ALIGNMENT};
