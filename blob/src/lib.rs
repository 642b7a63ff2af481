//! The Ferrite backend's delegate blob: format, encoding and full verification.
//!
//! ```text
//! offset 0   header (64 bytes, little-endian)
//!            magic  b"FRBK"          u8[4]
//!            version (2)             u32   1: first release; 2: adds the backend's own
//!                                          operators (`ferrite::convolution_nhwc.out`)
//!            graph_offset            u64   FlatBuffer (`schema/ferrite_blob.fbs`, id "FRB1")
//!            graph_len               u64
//!            constants_offset        u64   a multiple of 64
//!            constants_len           u64
//!            zero padding to 64
//! then       the FlatBuffer
//! then       the constant section; every constant starts at a multiple of 64 within it
//! ```
//!
//! [`BlobGraph::decode`] verifies everything before anything uses it: the header's offsets, the
//! FlatBuffer (with the verifier), every value index, every constant's range and size, aliases,
//! and every operator name (each must be an [`Op`] Ferrite knows).
//!
//! This crate is the format only: `ferrite-lower` builds and writes blobs ([`BlobGraph::encode`]),
//! `ferrite-runtime`'s `FerriteBackend` reads them ([`BlobGraph::decode`]) and runs them.
//!
//! ```
//! use ferrite_blob::{BlobGraph, BlobOp, BlobTensor, BlobValue};
//! use ferrite_op_support::Op;
//! use ferrite_program::ScalarType;
//!
//! # fn main() -> Result<(), ferrite_blob::BlobError> {
//! let t = |sizes: &[usize]| {
//!     BlobValue::Tensor(BlobTensor { dtype: ScalarType::Float, sizes: sizes.to_vec(), constant: None, alias_of: None, dynamic: false })
//! };
//! let graph = BlobGraph {
//!     values: vec![t(&[4]), t(&[4])],
//!     inputs: vec![0],
//!     outputs: vec![1],
//!     ops: vec![BlobOp { op: Op::Relu, args: vec![0, 1, 1], activation: None }],
//!     constants: vec![],
//!     debug: vec![],
//! };
//! let bytes = graph.encode()?;
//! assert_eq!(BlobGraph::decode(&bytes)?, graph);
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

#[allow(
    unsafe_code,
    unused_imports,
    dead_code,
    non_camel_case_types,
    clippy::all,
    clippy::restriction,
    missing_debug_implementations
)]
#[rustfmt::skip]
mod generated {
    include!("generated/ferrite_blob_generated.rs");
}

mod decode;
mod encode;
#[cfg(test)]
mod tests;

use ferrite_op_support::Op;
use ferrite_program::ScalarType;

/// The id delegates name to be run by the Ferrite backend.
pub const BACKEND_ID: &str = "FerriteBackend";

/// Magic bytes at the start of a blob.
pub const MAGIC: &[u8; 4] = b"FRBK";
/// The blob version this runtime writes. Versions `1..=VERSION` are read: version 2 only added
/// operators, so a version-1 blob is a valid version-2 blob.
pub const VERSION: u32 = 2;
/// Header size; the FlatBuffer follows it.
pub const HEADER_LEN: usize = 64;
/// Alignment of the constant section and of each constant in it.
pub const CONSTANT_ALIGNMENT: usize = 64;
/// Upper bound on values, ops and constants in one blob (a sanity limit against hostile files).
pub const MAX_ITEMS: usize = 1 << 20;

/// A blob that cannot be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid blob: {0}")]
pub struct BlobError(pub String);

/// Result with a [`BlobError`].
pub type Result<T, E = BlobError> = std::result::Result<T, E>;

/// A tensor of the partition.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobTensor {
    /// Element type.
    pub dtype: ScalarType,
    /// Sizes: the tensor's shape, or its upper bounds when it is [`BlobTensor::dynamic`].
    pub sizes: Vec<usize>,
    /// Index into [`BlobGraph::constants`] when the tensor is constant.
    pub constant: Option<usize>,
    /// Another tensor whose memory this one shares (a free reshape).
    pub alias_of: Option<usize>,
    /// Whether the shape is bounded dynamic: each run sizes the tensor from the actual inputs,
    /// within [`BlobTensor::sizes`] (memory is planned for the bounds).
    pub dynamic: bool,
}

/// A value of the partition.
#[derive(Debug, Clone, PartialEq)]
pub enum BlobValue {
    /// None.
    None,
    /// int.
    Int(i64),
    /// float.
    Double(f64),
    /// bool.
    Bool(bool),
    /// str.
    String(String),
    /// int[] (the integers themselves).
    IntList(Vec<i64>),
    /// float[].
    DoubleList(Vec<f64>),
    /// bool[].
    BoolList(Vec<bool>),
    /// A tensor.
    Tensor(BlobTensor),
    /// Tensor[] (value indices).
    TensorList(Vec<usize>),
    /// Tensor?[] (value indices).
    OptionalTensorList(Vec<Option<usize>>),
}

/// One operation.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobOp {
    /// The operator (stored by name in the blob).
    pub op: Op,
    /// Value indices (schema order, then outputs).
    pub args: Vec<usize>,
    /// Fused output activation: clamp the first output to `[min, max]`.
    pub activation: Option<(f32, f32)>,
}

/// A compiled partition.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BlobGraph<C = Vec<u8>> {
    /// The value table.
    pub values: Vec<BlobValue>,
    /// Values the delegate call passes in.
    pub inputs: Vec<usize>,
    /// Values handed back.
    pub outputs: Vec<usize>,
    /// Operations in execution order.
    pub ops: Vec<BlobOp>,
    /// Constant data: owned (`Vec<u8>`, as lowering builds graphs) or borrowed from the blob
    /// (`&[u8]`, as [`BlobGraph::decode_borrowed`] reads them: no copy of the weights).
    pub constants: Vec<C>,
    /// Where values came from in the program that was lowered (numerical debugging; empty in
    /// blobs written before it existed). Not every value has an entry.
    pub debug: Vec<DebugValue>,
}

/// A value of the partition whose data is that of a value of the un-lowered program: what
/// `ferrite debug numerics` compares a node's output with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebugValue {
    /// The blob value.
    pub value: usize,
    /// The execution-plan value of the un-lowered program.
    pub origin: usize,
    /// The blob value holds the data channels-last (`[N, H, W, C]` for the plan's
    /// `[N, C, H, W]`, `[N, L, C]` for `[N, C, L]`).
    pub channels_last: bool,
}

fn bad(msg: impl Into<String>) -> BlobError {
    BlobError(msg.into())
}

/// How many trailing arguments of an operation repeat the ones before them: ExecuTorch's
/// returned values (see [`ferrite_program::graph::returned_count`]).
pub fn returned_count(args: &[usize]) -> usize {
    ferrite_program::graph::returned_count(args)
}

impl<C: AsRef<[u8]>> BlobGraph<C> {
    /// The same graph with its constants borrowed (the values and operations copied).
    pub fn borrowed(&self) -> BlobGraph<&[u8]> {
        BlobGraph {
            values: self.values.clone(),
            inputs: self.inputs.clone(),
            outputs: self.outputs.clone(),
            ops: self.ops.clone(),
            constants: self.constants.iter().map(AsRef::as_ref).collect(),
            debug: self.debug.clone(),
        }
    }

    /// The same graph owning its constants.
    pub fn into_owned(self) -> BlobGraph {
        BlobGraph {
            values: self.values,
            inputs: self.inputs,
            outputs: self.outputs,
            ops: self.ops,
            constants: self.constants.iter().map(|c| c.as_ref().to_vec()).collect(),
            debug: self.debug,
        }
    }

    /// Constant `c`'s bytes.
    pub fn constant(&self, c: usize) -> Option<&[u8]> {
        self.constants.get(c).map(AsRef::as_ref)
    }

    /// A tensor value.
    pub fn tensor(&self, v: usize) -> Option<&BlobTensor> {
        match self.values.get(v) {
            Some(BlobValue::Tensor(t)) => Some(t),
            _ => None,
        }
    }

    /// The tensor values argument `v` refers to: itself, or a list's members.
    pub fn tensors_in(&self, v: usize) -> Vec<usize> {
        match self.values.get(v) {
            Some(BlobValue::Tensor(_)) => vec![v],
            Some(BlobValue::TensorList(items)) => items.clone(),
            Some(BlobValue::OptionalTensorList(items)) => items.iter().flatten().copied().collect(),
            _ => Vec::new(),
        }
    }

    /// Whether operation `op` reads or writes a tensor with a dynamic shape.
    pub fn touches_dynamic(&self, op: &BlobOp) -> bool {
        op.args.iter().flat_map(|&a| self.tensors_in(a)).any(|t| self.tensor(t).is_some_and(|t| t.dynamic))
    }

    /// Value `v` as an int.
    pub fn int(&self, v: usize) -> Option<i64> {
        match self.values.get(v)? {
            BlobValue::Int(x) => Some(*x),
            _ => None,
        }
    }

    /// Value `v` as a number: an int or a float (`None` for any other value).
    pub fn number(&self, v: usize) -> Option<f64> {
        match self.values.get(v)? {
            BlobValue::Int(x) => Some(*x as f64),
            BlobValue::Double(x) => Some(*x),
            _ => None,
        }
    }

    /// Value `v` as an int list (a single int counts as a list of one).
    pub fn int_list(&self, v: usize) -> Option<Vec<i64>> {
        match self.values.get(v)? {
            BlobValue::IntList(items) => Some(items.clone()),
            BlobValue::Int(x) => Some(vec![*x]),
            _ => None,
        }
    }

    /// Whether value `v` is `None`.
    pub fn is_none(&self, v: usize) -> bool {
        matches!(self.values.get(v), Some(BlobValue::None))
    }
}

/// Bytes of a tensor of `dtype` and `sizes`, or `None` on overflow.
pub fn tensor_bytes(dtype: ScalarType, sizes: &[usize]) -> Option<usize> {
    sizes.iter().try_fold(dtype.element_size(), |a, &d| a.checked_mul(d))
}
