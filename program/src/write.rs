//! Writing programs: [`ProgramWriter`] serializes a [`ProgramDef`] and its data the way
//! ExecuTorch lays out files — FlatBuffer first, the 32-byte extended header after its first 8
//! bytes, then each segment aligned (128 bytes by default).
//!
//! Two legacy forms are modernised on the way out, as ExecuTorch's own serializer does: inline
//! constant buffers become a constant segment, and inline delegate blobs become segments.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use crate::generated::pte as fb;
use crate::header::{ExtendedHeader, EXTENDED_HEADER_LEN};
use crate::model::*;
use crate::{Program, ProgramError, Result};

/// Default alignment of segments in the file.
pub const SEGMENT_ALIGNMENT: usize = 128;
/// Alignment of each tensor inside the constant segment.
pub const TENSOR_ALIGNMENT: usize = 16;

/// Serializes a program. Build one from a loaded [`Program`] (to copy or modify it) or from a
/// [`ProgramDef`] and the bytes of each of its segments.
#[derive(Debug, Clone)]
pub struct ProgramWriter<'a> {
    def: ProgramDef,
    segments: Vec<Cow<'a, [u8]>>,
    inline_delegates: Vec<Cow<'a, [u8]>>,
    legacy_constants: Vec<Cow<'a, [u8]>>,
    segment_alignment: usize,
}

fn align_up(n: usize, a: usize) -> Option<usize> {
    n.checked_add(a - 1).map(|v| v / a * a)
}

impl<'a> ProgramWriter<'a> {
    /// A writer for `def` whose segment `i` holds `segments[i]`.
    pub fn new(def: ProgramDef, segments: Vec<Cow<'a, [u8]>>) -> Result<Self> {
        if segments.len() != def.segments.len() {
            return Err(ProgramError::Write(format!(
                "the program lists {} segments but {} were given",
                def.segments.len(),
                segments.len()
            )));
        }
        if !def.inline_delegate_data_sizes.is_empty() || def.constant_buffer_sizes.len() > 1 {
            return Err(ProgramError::Write(
                "inline delegate data and legacy constant buffers need their bytes: use ProgramWriter::from_program"
                    .into(),
            ));
        }
        Ok(ProgramWriter {
            def,
            segments,
            inline_delegates: Vec::new(),
            legacy_constants: Vec::new(),
            segment_alignment: SEGMENT_ALIGNMENT,
        })
    }

    /// A writer that reproduces `program`, borrowing all of its data.
    pub fn from_program(program: &'a Program<'_>) -> Self {
        let def = program.def().clone();
        let segments = (0..def.segments.len()).map(|i| Cow::Borrowed(program.segment(i).unwrap_or(&[]))).collect();
        let inline_delegates = (0..def.inline_delegate_data_sizes.len())
            .map(|i| Cow::Borrowed(program.inline_delegate_data(i).unwrap_or(&[])))
            .collect();
        let legacy_constants = if def.constant_buffer_sizes.len() > 1 {
            (0..def.constant_buffer_sizes.len())
                .map(|i| {
                    let n = def.constant_buffer_sizes[i] as usize;
                    Cow::Borrowed(program.constant_buffer(i).and_then(|b| b.get(..n)).unwrap_or(&[]))
                })
                .collect()
        } else {
            Vec::new()
        };
        ProgramWriter { def, segments, inline_delegates, legacy_constants, segment_alignment: SEGMENT_ALIGNMENT }
    }

    /// The model being written; modify it to change the program.
    pub fn def_mut(&mut self) -> &mut ProgramDef {
        &mut self.def
    }

    /// Appends a segment and returns its index.
    pub fn push_segment(&mut self, data: impl Into<Cow<'a, [u8]>>) -> usize {
        let data = data.into();
        self.def.segments.push(DataSegment { offset: 0, size: data.len() as u64 });
        self.segments.push(data);
        self.segments.len() - 1
    }

    /// Sets the alignment of segments in the file (a power of two, at least 16).
    pub fn segment_alignment(mut self, alignment: usize) -> Result<Self> {
        if !alignment.is_power_of_two() || alignment < TENSOR_ALIGNMENT {
            return Err(ProgramError::Write(format!("segment alignment {alignment} must be a power of two >= 16")));
        }
        self.segment_alignment = alignment;
        Ok(self)
    }

    /// Moves legacy inline data into segments, as ExecuTorch's serializer does.
    fn modernise(&mut self) -> Result<()> {
        if !self.legacy_constants.is_empty() {
            let mut seg = Vec::new();
            let mut offsets = Vec::with_capacity(self.legacy_constants.len());
            for c in &self.legacy_constants {
                let at = align_up(seg.len(), TENSOR_ALIGNMENT)
                    .ok_or_else(|| ProgramError::Write("constants too large".into()))?;
                seg.resize(at, 0);
                offsets.push(at as u64);
                seg.extend_from_slice(c);
            }
            let idx = self.push_segment(seg);
            self.def.constant_segment = Some(SubsegmentOffsets { segment_index: idx as u32, offsets });
            self.def.constant_buffer_sizes.clear();
            self.legacy_constants.clear();
        }
        if !self.inline_delegates.is_empty() {
            let blobs = std::mem::take(&mut self.inline_delegates);
            let mut map = Vec::with_capacity(blobs.len());
            for b in blobs {
                map.push(self.push_segment(b));
            }
            for plan in &mut self.def.plans {
                for d in &mut plan.delegates {
                    if let DataLocation::Inline(i) = d.processed {
                        let s = *map
                            .get(i)
                            .ok_or_else(|| ProgramError::Write(format!("inline delegate index {i} out of range")))?;
                        d.processed = DataLocation::Segment(s);
                    }
                }
            }
            self.def.inline_delegate_data_sizes.clear();
        }
        Ok(())
    }

    /// Serializes to bytes.
    pub fn to_bytes(mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.write_into(&mut out)?;
        Ok(out)
    }

    /// Serializes into `out`.
    pub fn write_into(&mut self, out: &mut impl Write) -> Result<()> {
        self.modernise()?;
        let align = self.segment_alignment;
        // Lay out segments.
        let mut end = 0usize;
        for (s, data) in self.def.segments.iter_mut().zip(&self.segments) {
            let offset = align_up(end, align).ok_or_else(|| ProgramError::Write("segments too large".into()))?;
            s.offset = offset as u64;
            s.size = data.len() as u64;
            end = offset.checked_add(data.len()).ok_or_else(|| ProgramError::Write("segments too large".into()))?;
        }
        let fb_bytes = build_flatbuffer(&self.def);
        let io = |e: std::io::Error| ProgramError::Write(e.to_string());
        if end == 0 {
            // No segment bytes: ExecuTorch writes no extended header then.
            return out.write_all(&fb_bytes).map_err(io);
        }
        let program_size = fb_bytes.len() + EXTENDED_HEADER_LEN;
        let base = align_up(program_size, align).ok_or_else(|| ProgramError::Write("program too large".into()))?;
        let header = ExtendedHeader {
            length: EXTENDED_HEADER_LEN as u32,
            program_size: program_size as u64,
            segment_base_offset: base as u64,
            segment_data_size: end as u64,
        };
        let root = u32::from_le_bytes([fb_bytes[0], fb_bytes[1], fb_bytes[2], fb_bytes[3]]);
        let root = root
            .checked_add(EXTENDED_HEADER_LEN as u32)
            .ok_or_else(|| ProgramError::Write("program too large".into()))?;
        out.write_all(&root.to_le_bytes()).map_err(io)?;
        out.write_all(&fb_bytes[4..8]).map_err(io)?;
        out.write_all(&header.to_bytes()).map_err(io)?;
        out.write_all(&fb_bytes[8..]).map_err(io)?;
        let mut pos = program_size;
        let zeros = vec![0u8; align];
        for (s, data) in self.def.segments.iter().zip(&self.segments) {
            let target = base + s.offset as usize;
            out.write_all(&zeros[..target - pos]).map_err(io)?;
            out.write_all(data).map_err(io)?;
            pos = target + data.len();
        }
        Ok(())
    }

    /// Writes the program to `path` atomically: into a temporary file beside it, then renamed
    /// over `path`. On any failure `path` is untouched and no temporary file is left behind.
    pub fn write_to_path(mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let io = |source| ProgramError::Io { path: path.to_path_buf(), source };
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = path.file_name().ok_or_else(|| io(std::io::Error::other("not a file path")))?;
        let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
        let result = (|| {
            let file = std::fs::File::create(&tmp).map_err(io)?;
            let mut w = std::io::BufWriter::new(file);
            self.write_into(&mut w)?;
            let file = w.into_inner().map_err(|e| io(e.into_error()))?;
            file.sync_all().map_err(io)?;
            std::fs::rename(&tmp, path).map_err(io)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

type Fbb<'b> = FlatBufferBuilder<'b>;

fn idx_vec<'b>(b: &mut Fbb<'b>, v: &[usize]) -> WIPOffset<flatbuffers::Vector<'b, i32>> {
    let v: Vec<i32> = v.iter().map(|&i| i as i32).collect();
    b.create_vector(&v)
}

fn build_flatbuffer(def: &ProgramDef) -> Vec<u8> {
    let mut b = FlatBufferBuilder::with_capacity(64 * 1024);
    let plans: Vec<_> = def.plans.iter().map(|p| build_plan(&mut b, p)).collect();
    let execution_plan = Some(b.create_vector(&plans));
    let segs: Vec<_> = def
        .segments
        .iter()
        .map(|s| fb::DataSegment::create(&mut b, &fb::DataSegmentArgs { offset: s.offset, size: s.size }))
        .collect();
    let segments = Some(b.create_vector(&segs));
    let constant_segment = def.constant_segment.as_ref().map(|s| sub(&mut b, s));
    let muts: Vec<_> = def.mutable_data_segments.iter().map(|s| sub(&mut b, s)).collect();
    let mutable_data_segments = (!muts.is_empty()).then(|| b.create_vector(&muts));
    let named: Vec<_> = def
        .named_data
        .iter()
        .map(|n| {
            let key = Some(b.create_string(&n.key));
            fb::NamedData::create(&mut b, &fb::NamedDataArgs { key, segment_index: n.segment_index })
        })
        .collect();
    let named_data = (!named.is_empty()).then(|| b.create_vector(&named));
    let empty_buffers: Vec<WIPOffset<fb::Buffer>> = Vec::new();
    let constant_buffer = Some(b.create_vector(&empty_buffers));
    let empty_inline: Vec<WIPOffset<fb::BackendDelegateInlineData>> = Vec::new();
    let backend_delegate_data = Some(b.create_vector(&empty_inline));
    let root = fb::Program::create(
        &mut b,
        &fb::ProgramArgs {
            version: def.version,
            execution_plan,
            constant_buffer,
            backend_delegate_data,
            segments,
            constant_segment,
            mutable_data_segments,
            named_data,
        },
    );
    fb::finish_program_buffer(&mut b, root);
    b.finished_data().to_vec()
}

fn sub<'b>(b: &mut Fbb<'b>, s: &SubsegmentOffsets) -> WIPOffset<fb::SubsegmentOffsets<'b>> {
    let offsets = Some(b.create_vector(&s.offsets));
    fb::SubsegmentOffsets::create(b, &fb::SubsegmentOffsetsArgs { segment_index: s.segment_index, offsets })
}

fn build_plan<'b>(b: &mut Fbb<'b>, p: &ExecutionPlan) -> WIPOffset<fb::ExecutionPlan<'b>> {
    let name = Some(b.create_string(&p.name));
    let container_meta_type = p.container_meta.as_ref().map(|c| {
        let i = Some(b.create_string(&c.encoded_inp_str));
        let o = Some(b.create_string(&c.encoded_out_str));
        fb::ContainerMetadata::create(b, &fb::ContainerMetadataArgs { encoded_inp_str: i, encoded_out_str: o })
    });
    let vals: Vec<_> = p.values.iter().map(|v| build_value(b, v)).collect();
    let values = Some(b.create_vector(&vals));
    let inputs = Some(idx_vec(b, &p.inputs));
    let outputs = Some(idx_vec(b, &p.outputs));
    let chains: Vec<_> = p.chains.iter().map(|c| build_chain(b, c)).collect();
    let chains = Some(b.create_vector(&chains));
    let ops: Vec<_> = p
        .operators
        .iter()
        .map(|o| {
            let name = Some(b.create_string(&o.name));
            let overload = Some(b.create_string(&o.overload));
            fb::Operator::create(b, &fb::OperatorArgs { name, overload })
        })
        .collect();
    let operators = Some(b.create_vector(&ops));
    let dels: Vec<_> = p
        .delegates
        .iter()
        .map(|d| {
            let id = Some(b.create_string(&d.id));
            let (location, index) = match d.processed {
                DataLocation::Inline(i) => (fb::DataLocation::INLINE, i as u32),
                DataLocation::Segment(i) => (fb::DataLocation::SEGMENT, i as u32),
            };
            let processed = Some(fb::BackendDelegateDataReference::create(
                b,
                &fb::BackendDelegateDataReferenceArgs { location, index },
            ));
            let specs: Vec<_> = d
                .compile_specs
                .iter()
                .map(|c| {
                    let key = Some(b.create_string(&c.key));
                    let value = Some(b.create_vector(&c.value));
                    fb::CompileSpec::create(b, &fb::CompileSpecArgs { key, value })
                })
                .collect();
            let compile_specs = Some(b.create_vector(&specs));
            fb::BackendDelegate::create(b, &fb::BackendDelegateArgs { id, processed, compile_specs })
        })
        .collect();
    let delegates = Some(b.create_vector(&dels));
    let sizes: Vec<i64> = p.non_const_buffer_sizes.iter().map(|&s| s as i64).collect();
    let non_const_buffer_sizes = Some(b.create_vector(&sizes));
    let devs: Vec<_> = p
        .non_const_buffer_device
        .iter()
        .map(|d| {
            fb::NonConstBufferDevice::create(
                b,
                &fb::NonConstBufferDeviceArgs {
                    buffer_idx: d.buffer_idx,
                    device_type: fb::DeviceType(d.device_type),
                    device_index: d.device_index,
                },
            )
        })
        .collect();
    let non_const_buffer_device = (!devs.is_empty()).then(|| b.create_vector(&devs));
    fb::ExecutionPlan::create(
        b,
        &fb::ExecutionPlanArgs {
            name,
            container_meta_type,
            values,
            inputs,
            outputs,
            chains,
            operators,
            delegates,
            non_const_buffer_sizes,
            non_const_buffer_device,
        },
    )
}

fn build_chain<'b>(b: &mut Fbb<'b>, c: &Chain) -> WIPOffset<fb::Chain<'b>> {
    let inputs = Some(idx_vec(b, &c.inputs));
    let outputs = Some(idx_vec(b, &c.outputs));
    let instrs: Vec<_> = c
        .instructions
        .iter()
        .map(|ins| {
            let (instr_args_type, args) = match ins {
                Instruction::KernelCall { op_index, args } => {
                    let args = Some(idx_vec(b, args));
                    let k = fb::KernelCall::create(b, &fb::KernelCallArgs { op_index: *op_index as i32, args });
                    (fb::InstructionArguments::KernelCall, k.as_union_value())
                }
                Instruction::DelegateCall { delegate_index, args } => {
                    let args = Some(idx_vec(b, args));
                    let d = fb::DelegateCall::create(
                        b,
                        &fb::DelegateCallArgs { delegate_index: *delegate_index as i32, args },
                    );
                    (fb::InstructionArguments::DelegateCall, d.as_union_value())
                }
                Instruction::MoveCall { from, to } => {
                    let m = fb::MoveCall::create(b, &fb::MoveCallArgs { move_from: *from as i32, move_to: *to as i32 });
                    (fb::InstructionArguments::MoveCall, m.as_union_value())
                }
                Instruction::JumpFalseCall { cond, destination } => {
                    let j = fb::JumpFalseCall::create(
                        b,
                        &fb::JumpFalseCallArgs {
                            cond_value_index: *cond as i32,
                            destination_instruction: *destination as i32,
                        },
                    );
                    (fb::InstructionArguments::JumpFalseCall, j.as_union_value())
                }
                Instruction::FreeCall { value } => {
                    let f = fb::FreeCall::create(b, &fb::FreeCallArgs { value_index: *value as i32 });
                    (fb::InstructionArguments::FreeCall, f.as_union_value())
                }
            };
            fb::Instruction::create(b, &fb::InstructionArgs { instr_args_type, instr_args: Some(args) })
        })
        .collect();
    let instructions = Some(b.create_vector(&instrs));
    let stacktrace = c.stacktrace.as_ref().map(|st| {
        let lists: Vec<_> = st
            .iter()
            .map(|frames| {
                let fs: Vec<_> = frames
                    .iter()
                    .map(|f| {
                        let filename = Some(b.create_string(&f.filename));
                        let name = Some(b.create_string(&f.name));
                        let context = Some(b.create_string(&f.context));
                        fb::Frame::create(b, &fb::FrameArgs { filename, lineno: f.lineno, name, context })
                    })
                    .collect();
                let items = Some(b.create_vector(&fs));
                fb::FrameList::create(b, &fb::FrameListArgs { items })
            })
            .collect();
        b.create_vector(&lists)
    });
    fb::Chain::create(b, &fb::ChainArgs { inputs, outputs, instructions, stacktrace })
}

fn build_value<'b>(b: &mut Fbb<'b>, v: &Value) -> WIPOffset<fb::EValue<'b>> {
    use fb::KernelTypes as K;
    let (val_type, val) = match v {
        Value::Null => (K::Null, fb::Null::create(b, &fb::NullArgs {}).as_union_value()),
        Value::Int(i) => (K::Int, fb::Int::create(b, &fb::IntArgs { int_val: *i }).as_union_value()),
        Value::Bool(x) => (K::Bool, fb::Bool::create(b, &fb::BoolArgs { bool_val: *x }).as_union_value()),
        Value::Double(x) => (K::Double, fb::Double::create(b, &fb::DoubleArgs { double_val: *x }).as_union_value()),
        Value::String(s) => {
            let string_val = Some(b.create_string(s));
            (K::String, fb::String::create(b, &fb::StringArgs { string_val }).as_union_value())
        }
        Value::IntList(items) => {
            let items: Vec<i64> = items.iter().map(|&i| i as i64).collect();
            let items = Some(b.create_vector(&items));
            (K::IntList, fb::IntList::create(b, &fb::IntListArgs { items }).as_union_value())
        }
        Value::DoubleList(items) => {
            let items = Some(b.create_vector(items));
            (K::DoubleList, fb::DoubleList::create(b, &fb::DoubleListArgs { items }).as_union_value())
        }
        Value::BoolList(items) => {
            let items = Some(b.create_vector(items));
            (K::BoolList, fb::BoolList::create(b, &fb::BoolListArgs { items }).as_union_value())
        }
        Value::TensorList(items) => {
            let items = Some(idx_vec(b, items));
            (K::TensorList, fb::TensorList::create(b, &fb::TensorListArgs { items }).as_union_value())
        }
        Value::OptionalTensorList(items) => {
            let items: Vec<i32> = items.iter().map(|i| i.map_or(-1, |i| i as i32)).collect();
            let items = Some(b.create_vector(&items));
            (
                K::OptionalTensorList,
                fb::OptionalTensorList::create(b, &fb::OptionalTensorListArgs { items }).as_union_value(),
            )
        }
        Value::Tensor(t) => (K::Tensor, build_tensor(b, t).as_union_value()),
    };
    fb::EValue::create(b, &fb::EValueArgs { val_type, val: Some(val) })
}

fn build_tensor<'b>(b: &mut Fbb<'b>, t: &Tensor) -> WIPOffset<fb::Tensor<'b>> {
    let sizes: Vec<i32> = t.sizes.iter().map(|&s| s as i32).collect();
    let sizes = Some(b.create_vector(&sizes));
    let dim_order = Some(b.create_vector(&t.dim_order));
    let allocation_info = t.allocation.map(|a| {
        fb::AllocationDetails::create(
            b,
            &fb::AllocationDetailsArgs {
                memory_id: a.memory_id,
                memory_offset_low: a.offset as u32,
                memory_offset_high: (a.offset >> 32) as u32,
            },
        )
    });
    let extra_tensor_info = t.extra.as_ref().map(|e| {
        let fully_qualified_name = e.fully_qualified_name.as_ref().map(|n| b.create_string(n));
        fb::ExtraTensorInfo::create(
            b,
            &fb::ExtraTensorInfoArgs {
                mutable_data_segments_idx: e.mutable_data_segments_idx,
                fully_qualified_name,
                location: if e.location_external {
                    fb::TensorDataLocation::EXTERNAL
                } else {
                    fb::TensorDataLocation::SEGMENT
                },
                device_type: fb::DeviceType(e.device_type),
                device_index: e.device_index,
            },
        )
    });
    let shape_dynamism = match t.dynamism {
        ShapeDynamism::Static => fb::TensorShapeDynamism::STATIC,
        ShapeDynamism::DynamicBound => fb::TensorShapeDynamism::DYNAMIC_BOUND,
        ShapeDynamism::DynamicUnbound => fb::TensorShapeDynamism::DYNAMIC_UNBOUND,
    };
    fb::Tensor::create(
        b,
        &fb::TensorArgs {
            scalar_type: fb::ScalarType(t.scalar_type.code()),
            storage_offset: t.storage_offset,
            sizes,
            dim_order,
            requires_grad: t.requires_grad,
            data_buffer_idx: t.data_buffer_idx,
            allocation_info,
            layout: t.layout,
            shape_dynamism,
            extra_tensor_info,
        },
    )
}
