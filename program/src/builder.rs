//! [`ProgramBuilder`]: build a small program by hand — a value table, constants and kernel calls —
//! and serialize it like any exported program. Used to test operators and passes on small
//! graphs without an exporter, and by tools that synthesise programs.
//!
//! Tensors the builder creates are unplanned (no memory-plan allocation): the runtime gives them
//! buffers of their own. Constants go into a constant segment.
//!
//! ```
//! use ferrite_program::{Program, ProgramBuilder, ScalarType};
//!
//! let mut b = ProgramBuilder::new("forward");
//! let x = b.input(ScalarType::Float, &[2, 3]);
//! let y = b.constant_f32(&[2, 3], &[1.0; 6]);
//! let alpha = b.int(1);
//! let out = b.tensor(ScalarType::Float, &[2, 3]);
//! b.call("aten::add.out", &[x, y, alpha, out, out]);
//! b.output(out);
//! let bytes = b.build().unwrap();
//! let program = Program::from_vec(bytes).unwrap();
//! assert_eq!(program.def().plans[0].chains[0].instructions.len(), 1);
//! ```

use std::borrow::Cow;

use crate::model::*;
use crate::write::TENSOR_ALIGNMENT;
use crate::{ProgramWriter, Result, ScalarType};

/// Builds one method of a program.
#[derive(Debug, Clone)]
pub struct ProgramBuilder {
    name: String,
    values: Vec<Value>,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    operators: Vec<Operator>,
    instructions: Vec<Instruction>,
    constants: Vec<u8>,
    constant_offsets: Vec<u64>,
}

impl ProgramBuilder {
    /// A builder for a method called `name`.
    pub fn new(name: &str) -> Self {
        ProgramBuilder {
            name: name.to_string(),
            values: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            operators: Vec::new(),
            instructions: Vec::new(),
            constants: Vec::new(),
            // Entry 0 is ExecuTorch's reserved "no data" buffer.
            constant_offsets: vec![0],
        }
    }

    fn push(&mut self, v: Value) -> usize {
        self.values.push(v);
        self.values.len() - 1
    }

    fn tensor_value(dtype: ScalarType, sizes: &[usize], dynamism: ShapeDynamism, buffer: u32) -> Value {
        Value::Tensor(Tensor {
            scalar_type: dtype,
            storage_offset: 0,
            sizes: sizes.to_vec(),
            dim_order: (0..sizes.len() as u8).collect(),
            requires_grad: false,
            data_buffer_idx: buffer,
            allocation: None,
            layout: 0,
            dynamism,
            extra: None,
        })
    }

    /// A method input tensor with a static shape.
    pub fn input(&mut self, dtype: ScalarType, sizes: &[usize]) -> usize {
        let v = self.push(Self::tensor_value(dtype, sizes, ShapeDynamism::Static, 0));
        self.inputs.push(v);
        v
    }

    /// A method input tensor whose `sizes` are upper bounds.
    pub fn dynamic_input(&mut self, dtype: ScalarType, sizes: &[usize]) -> usize {
        let v = self.push(Self::tensor_value(dtype, sizes, ShapeDynamism::DynamicBound, 0));
        self.inputs.push(v);
        v
    }

    /// An intermediate or output tensor (static shape).
    pub fn tensor(&mut self, dtype: ScalarType, sizes: &[usize]) -> usize {
        self.push(Self::tensor_value(dtype, sizes, ShapeDynamism::Static, 0))
    }

    /// An intermediate or output tensor whose `sizes` are upper bounds.
    pub fn dynamic_tensor(&mut self, dtype: ScalarType, sizes: &[usize]) -> usize {
        self.push(Self::tensor_value(dtype, sizes, ShapeDynamism::DynamicBound, 0))
    }

    /// A constant tensor from raw little-endian bytes (`bytes.len()` must be the tensor's size;
    /// [`ProgramBuilder::build`] reports a mismatch).
    pub fn constant(&mut self, dtype: ScalarType, sizes: &[usize], bytes: &[u8]) -> usize {
        let at = self.constants.len().div_ceil(TENSOR_ALIGNMENT) * TENSOR_ALIGNMENT;
        self.constants.resize(at, 0);
        self.constants.extend_from_slice(bytes);
        self.constant_offsets.push(at as u64);
        let buffer = (self.constant_offsets.len() - 1) as u32;
        self.push(Self::tensor_value(dtype, sizes, ShapeDynamism::Static, buffer))
    }

    /// A constant f32 tensor.
    pub fn constant_f32(&mut self, sizes: &[usize], values: &[f32]) -> usize {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(ScalarType::Float, sizes, &bytes)
    }

    /// An `int` value.
    pub fn int(&mut self, v: i64) -> usize {
        self.push(Value::Int(v))
    }

    /// A `float` value.
    pub fn double(&mut self, v: f64) -> usize {
        self.push(Value::Double(v))
    }

    /// A `bool` value.
    pub fn bool(&mut self, v: bool) -> usize {
        self.push(Value::Bool(v))
    }

    /// A `None` value.
    pub fn none(&mut self) -> usize {
        self.push(Value::Null)
    }

    /// A `str` value.
    pub fn string(&mut self, v: &str) -> usize {
        self.push(Value::String(v.to_string()))
    }

    /// An `int[]` value (its items become `Int` values, as ExecuTorch serializes them).
    pub fn int_list(&mut self, items: &[i64]) -> usize {
        let ids: Vec<usize> = items.iter().map(|&i| self.int(i)).collect();
        self.push(Value::IntList(ids))
    }

    /// An `int[]` value of existing `Int` values (such as sizes a `sym_size` call writes at run
    /// time, as `torch.export` serializes a dynamic reshape).
    pub fn int_list_of(&mut self, items: &[usize]) -> usize {
        self.push(Value::IntList(items.to_vec()))
    }

    /// A `float[]` value.
    pub fn double_list(&mut self, items: &[f64]) -> usize {
        self.push(Value::DoubleList(items.to_vec()))
    }

    /// A `bool[]` value.
    pub fn bool_list(&mut self, items: &[bool]) -> usize {
        self.push(Value::BoolList(items.to_vec()))
    }

    /// A `Tensor[]` value.
    pub fn tensor_list(&mut self, tensors: &[usize]) -> usize {
        self.push(Value::TensorList(tensors.to_vec()))
    }

    /// A `Tensor?[]` value.
    pub fn optional_tensor_list(&mut self, tensors: &[Option<usize>]) -> usize {
        self.push(Value::OptionalTensorList(tensors.to_vec()))
    }

    /// A kernel call of `op` (`namespace::name.overload`, e.g. `aten::add.out`) on `args`
    /// (schema order, then the outputs).
    pub fn call(&mut self, op: &str, args: &[usize]) {
        let (name, overload) = op.rsplit_once('.').unwrap_or((op, ""));
        let overload = if overload == "default" { "" } else { overload };
        let operator = Operator { name: name.to_string(), overload: overload.to_string() };
        let op_index = match self.operators.iter().position(|o| *o == operator) {
            Some(i) => i,
            None => {
                self.operators.push(operator);
                self.operators.len() - 1
            }
        };
        self.instructions.push(Instruction::KernelCall { op_index, args: args.to_vec() });
    }

    /// Marks value `v` as a method output.
    pub fn output(&mut self, v: usize) {
        self.outputs.push(v);
    }

    /// Plans tensor `v` in memory arena `arena` (1 or more: arena 0 is ExecuTorch's reserved one)
    /// at byte `offset`, as ExecuTorch's memory planner does; the arena grows to hold it. Tensors
    /// not planned are left to the runtime. Does nothing for values that are not tensors.
    pub fn plan_memory(&mut self, v: usize, arena: u32, offset: u64) {
        if let Some(Value::Tensor(t)) = self.values.get_mut(v) {
            t.allocation = Some(Allocation { memory_id: arena.max(1), offset });
        }
    }

    /// The program model (one method) and its segments.
    pub fn into_def(self) -> (ProgramDef, Vec<Vec<u8>>) {
        let non_const_buffer_sizes = arena_sizes(&self.values);
        let plan = ExecutionPlan {
            name: self.name,
            container_meta: None,
            values: self.values,
            inputs: self.inputs.clone(),
            outputs: self.outputs.clone(),
            chains: vec![Chain {
                inputs: self.inputs,
                outputs: self.outputs,
                instructions: self.instructions,
                stacktrace: None,
            }],
            operators: self.operators,
            delegates: Vec::new(),
            non_const_buffer_sizes,
            non_const_buffer_device: Vec::new(),
        };
        let has_constants = self.constant_offsets.len() > 1;
        let mut segments = Vec::new();
        let mut def = ProgramDef {
            version: 0,
            plans: vec![plan],
            constant_buffer_sizes: Vec::new(),
            inline_delegate_data_sizes: Vec::new(),
            segments: Vec::new(),
            constant_segment: None,
            mutable_data_segments: Vec::new(),
            named_data: Vec::new(),
        };
        if has_constants {
            def.segments.push(DataSegment { offset: 0, size: self.constants.len() as u64 });
            def.constant_segment = Some(SubsegmentOffsets { segment_index: 0, offsets: self.constant_offsets });
            segments.push(self.constants);
        } else {
            def.constant_segment = Some(SubsegmentOffsets { segment_index: 0, offsets: vec![0] });
            def.segments.push(DataSegment { offset: 0, size: 0 });
            segments.push(Vec::new());
        }
        (def, segments)
    }

    /// Serializes the program (verify it by loading the bytes).
    pub fn build(self) -> Result<Vec<u8>> {
        let (def, segments) = self.into_def();
        ProgramWriter::new(def, segments.into_iter().map(Cow::Owned).collect())?.to_bytes()
    }
}

/// `non_const_buffer_sizes` for the planned tensors among `values`: entry 0 empty, then each
/// arena as large as its furthest tensor end.
fn arena_sizes(values: &[Value]) -> Vec<u64> {
    let mut sizes = vec![0u64];
    for v in values {
        if let Value::Tensor(t) = v {
            if let Some(a) = t.allocation {
                let id = a.memory_id as usize;
                if sizes.len() <= id {
                    sizes.resize(id + 1, 0);
                }
                sizes[id] = sizes[id].max(a.offset.saturating_add(t.nbytes() as u64));
            }
        }
    }
    sizes
}
