//! The typed, owned description of a program: everything in the FlatBuffer except the bulk
//! bytes (constants, delegate blobs, named data), which stay in the file and are reached
//! through [`crate::Program`].
//!
//! The model keeps every field ExecuTorch serializes, so a program read and written back keeps
//! its structure. Indices (values, operators, delegates, segments, buffers) are checked when a
//! program is loaded; code holding a [`ProgramDef`] from a loaded program may rely on them.

use crate::ScalarType;
use serde::Serialize;

/// The whole program apart from bulk data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgramDef {
    /// Schema version written by the exporter.
    pub version: u32,
    /// One plan per method (`forward`, ...).
    pub plans: Vec<ExecutionPlan>,
    /// Legacy inline constant buffers: their sizes (data stays in the file). Entry 0 is the
    /// reserved empty buffer. Empty in modern files.
    pub constant_buffer_sizes: Vec<u64>,
    /// Sizes of the inline delegate blobs in `Program.backend_delegate_data`.
    pub inline_delegate_data_sizes: Vec<u64>,
    /// Segments after the FlatBuffer: offsets relative to the segment base.
    pub segments: Vec<DataSegment>,
    /// Where constants live in the modern layout.
    pub constant_segment: Option<SubsegmentOffsets>,
    /// Initial values of mutable (planned) tensors.
    pub mutable_data_segments: Vec<SubsegmentOffsets>,
    /// Blobs by name (XNNPACK keys them by sha256 of the bytes).
    pub named_data: Vec<NamedData>,
}

/// A byte range after the FlatBuffer data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DataSegment {
    /// Offset from the segment base offset of the extended header.
    pub offset: u64,
    /// Bytes of valid data.
    pub size: u64,
}

/// Offsets of several items inside one segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubsegmentOffsets {
    /// Index into [`ProgramDef::segments`].
    pub segment_index: u32,
    /// Byte offsets into that segment; entry 0 is reserved for "no data".
    pub offsets: Vec<u64>,
}

/// A named blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedData {
    /// The key (unique by convention).
    pub key: String,
    /// Index into [`ProgramDef::segments`].
    pub segment_index: u32,
}

/// One method.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutionPlan {
    /// Method name.
    pub name: String,
    /// Pytree specs of inputs and outputs, if the exporter wrote them.
    pub container_meta: Option<ContainerMeta>,
    /// The value table.
    pub values: Vec<Value>,
    /// Indices into `values` of the method's inputs.
    pub inputs: Vec<usize>,
    /// Indices into `values` of the method's outputs.
    pub outputs: Vec<usize>,
    /// Instruction chains (programs have one).
    pub chains: Vec<Chain>,
    /// Operators the kernel calls use.
    pub operators: Vec<Operator>,
    /// Delegates the delegate calls use.
    pub delegates: Vec<BackendDelegate>,
    /// Arena sizes in bytes; entry 0 is reserved.
    pub non_const_buffer_sizes: Vec<u64>,
    /// Device placement of arenas (absent for CPU-only programs).
    pub non_const_buffer_device: Vec<BufferDevice>,
}

/// Pytree specs of a method's inputs and outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerMeta {
    /// Encoded input spec.
    pub encoded_inp_str: String,
    /// Encoded output spec.
    pub encoded_out_str: String,
}

/// Device placement of one arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BufferDevice {
    /// Arena index.
    pub buffer_idx: i32,
    /// 0 = CPU, 1 = CUDA.
    pub device_type: i8,
    /// Device ordinal.
    pub device_index: i8,
}

/// A sequence of instructions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chain {
    /// Value indices the chain reads.
    pub inputs: Vec<usize>,
    /// Value indices the chain writes.
    pub outputs: Vec<usize>,
    /// The instructions, in order.
    pub instructions: Vec<Instruction>,
    /// Optional stack trace per instruction (`None` when absent from the file).
    pub stacktrace: Option<Vec<Vec<Frame>>>,
}

/// One source frame of an instruction's stack trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Frame {
    /// File name.
    pub filename: String,
    /// Line number.
    pub lineno: i32,
    /// Function name.
    pub name: String,
    /// Source text.
    pub context: String,
}

/// An operator reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Operator {
    /// Qualified name, e.g. `aten::convolution`.
    pub name: String,
    /// Overload, e.g. `out`; empty means `default`.
    pub overload: String,
}

impl Operator {
    /// `name.overload`, with `default` for an empty overload — the key kernels are registered by.
    pub fn qualified(&self) -> String {
        let overload = if self.overload.is_empty() { "default" } else { &self.overload };
        format!("{}.{}", self.name, overload)
    }
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Instruction {
    /// Run `operators[op_index]` on `values[args]` (outputs last).
    KernelCall {
        /// Index into the plan's operators.
        op_index: usize,
        /// Value indices.
        args: Vec<usize>,
    },
    /// Run `delegates[delegate_index]` on `values[args]`.
    DelegateCall {
        /// Index into the plan's delegates.
        delegate_index: usize,
        /// Value indices.
        args: Vec<usize>,
    },
    /// Copy value `from` into value `to`.
    MoveCall {
        /// Source value.
        from: usize,
        /// Destination value.
        to: usize,
    },
    /// Jump to `destination` when the bool value `cond` is false.
    JumpFalseCall {
        /// Bool value index.
        cond: usize,
        /// Instruction index to continue at.
        destination: usize,
    },
    /// Release the data of a tensor value.
    FreeCall {
        /// Tensor value index.
        value: usize,
    },
}

/// A value-table entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Value {
    /// None.
    Null,
    /// An integer (also enums such as memory formats).
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A double.
    Double(f64),
    /// A string.
    String(String),
    /// A list of integers: indices of `Int` values in the same table.
    IntList(Vec<usize>),
    /// A list of doubles.
    DoubleList(Vec<f64>),
    /// A list of booleans.
    BoolList(Vec<bool>),
    /// A tensor.
    Tensor(Tensor),
    /// Indices of tensor values.
    TensorList(Vec<usize>),
    /// Indices of tensor values, `None` for absent ones.
    OptionalTensorList(Vec<Option<usize>>),
}

impl Value {
    /// A short name of the value's kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "None",
            Value::Int(_) => "Int",
            Value::Bool(_) => "Bool",
            Value::Double(_) => "Double",
            Value::String(_) => "String",
            Value::IntList(_) => "IntList",
            Value::DoubleList(_) => "DoubleList",
            Value::BoolList(_) => "BoolList",
            Value::Tensor(_) => "Tensor",
            Value::TensorList(_) => "TensorList",
            Value::OptionalTensorList(_) => "OptionalTensorList",
        }
    }

    /// The tensor, if this value is one.
    pub fn as_tensor(&self) -> Option<&Tensor> {
        match self {
            Value::Tensor(t) => Some(t),
            _ => None,
        }
    }
}

/// How a tensor's shape may change at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ShapeDynamism {
    /// Fixed shape.
    Static,
    /// Sizes are upper bounds; memory is planned for them.
    DynamicBound,
    /// No bound.
    DynamicUnbound,
}

impl ShapeDynamism {
    /// Lower-case name used in reports (`static`, `dynamic_bound`, `dynamic_unbound`).
    pub fn name(self) -> &'static str {
        match self {
            ShapeDynamism::Static => "static",
            ShapeDynamism::DynamicBound => "dynamic_bound",
            ShapeDynamism::DynamicUnbound => "dynamic_unbound",
        }
    }
}

/// A tensor's metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tensor {
    /// Element type.
    pub scalar_type: ScalarType,
    /// Offset in elements into the buffer (always 0 in programs Ferrite accepts).
    pub storage_offset: i32,
    /// Sizes (upper bounds for dynamic shapes).
    pub sizes: Vec<usize>,
    /// Memory layout, outermost first; a permutation of `0..sizes.len()`.
    pub dim_order: Vec<u8>,
    /// Autograd flag (unused at inference).
    pub requires_grad: bool,
    /// Constant or initial-value buffer index (0 = none).
    pub data_buffer_idx: u32,
    /// Planned location, for non-constant tensors.
    pub allocation: Option<Allocation>,
    /// Layout code (strided = 0).
    pub layout: i8,
    /// Shape dynamism.
    pub dynamism: ShapeDynamism,
    /// Rarely needed extra information.
    pub extra: Option<ExtraTensorInfo>,
}

impl Tensor {
    /// Number of elements at the (upper-bound) sizes; checked at load, so it cannot overflow.
    pub fn numel(&self) -> usize {
        self.sizes.iter().product()
    }

    /// Bytes at the (upper-bound) sizes; checked at load, so it cannot overflow.
    pub fn nbytes(&self) -> usize {
        self.numel() * self.scalar_type.element_size()
    }

    /// Where this tensor's data comes from.
    pub fn storage(&self) -> TensorStorage {
        let external = self.extra.as_ref().is_some_and(|e| e.location_external);
        match (&self.allocation, self.data_buffer_idx) {
            _ if external => TensorStorage::External,
            (None, 0) => TensorStorage::Runtime,
            (None, idx) => TensorStorage::Constant { buffer: idx as usize },
            (Some(a), 0) => TensorStorage::Planned { alloc: *a, initial: None },
            (Some(a), idx) => TensorStorage::Planned { alloc: *a, initial: Some(idx as usize) },
        }
    }

    /// Whether the layout is contiguous (dim_order is the identity).
    pub fn is_contiguous(&self) -> bool {
        self.dim_order.iter().enumerate().all(|(i, &d)| usize::from(d) == i)
    }
}

/// Where a tensor's data lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorStorage {
    /// Constant data in the program (constant segment or legacy buffer `buffer`).
    Constant {
        /// Index into the constant table.
        buffer: usize,
    },
    /// In a memory-planned arena; `initial` indexes the mutable data offsets when the file
    /// carries an initial value.
    Planned {
        /// The planned location.
        alloc: Allocation,
        /// Initial-value index, if serialized.
        initial: Option<usize>,
    },
    /// Data provided at run time (inputs, or outputs of delegates and control flow).
    Runtime,
    /// Data stored outside the `.pte` (a `.ptd` file), keyed by fully qualified name.
    External,
}

/// A planned location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Allocation {
    /// Arena index into `non_const_buffer_sizes` (never 0).
    pub memory_id: u32,
    /// Byte offset in the arena.
    pub offset: u64,
}

/// Extra tensor information.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtraTensorInfo {
    /// Index into [`ProgramDef::mutable_data_segments`].
    pub mutable_data_segments_idx: u64,
    /// Fully qualified name, if any.
    pub fully_qualified_name: Option<String>,
    /// Data stored outside the file.
    pub location_external: bool,
    /// 0 = CPU, 1 = CUDA.
    pub device_type: i8,
    /// Device ordinal.
    pub device_index: i8,
}

/// Where a delegate's processed blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DataLocation {
    /// Index into the program's inline delegate data.
    Inline(usize),
    /// Index into the program's segments.
    Segment(usize),
}

/// A delegate: a subgraph a backend runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendDelegate {
    /// Backend id (`XnnpackBackend`, `FerriteBackend`, ...).
    pub id: String,
    /// Where the processed blob is.
    pub processed: DataLocation,
    /// Compile specs, key and raw value.
    pub compile_specs: Vec<CompileSpec>,
}

/// One compile spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompileSpec {
    /// Key.
    pub key: String,
    /// Raw value bytes.
    pub value: Vec<u8>,
}
