//! Decoding a verified FlatBuffer into the [`ProgramDef`] model, checking every index, size and
//! range on the way. Nothing here copies constant or delegate bytes: it records where they are.

use std::ops::Range;

use crate::generated::pte as fb;
use crate::header::ExtendedHeader;
use crate::model::*;
use crate::{ProgramError, Result, ScalarType};

/// Largest tensor rank accepted (ExecuTorch's `kTensorDimensionLimit`).
pub const MAX_RANK: usize = 16;

/// Byte ranges (absolute file offsets) of everything a program refers to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layout {
    /// Each segment's bytes.
    pub segments: Vec<Range<usize>>,
    /// Each constant buffer index: from its start to the end of its container.
    pub constants: Vec<Range<usize>>,
    /// Per mutable data segment entry, per index: from its start to the end of the segment.
    pub mutable: Vec<Vec<Range<usize>>>,
    /// Each inline delegate blob.
    pub inline_delegates: Vec<Range<usize>>,
}

fn out_of_range(at: impl Into<String>, what: &'static str, index: i64, len: usize) -> ProgramError {
    ProgramError::IndexOutOfRange { at: at.into(), what, index, len }
}

/// Checks `index` (as stored in the file, maybe negative) against `len`.
fn check_index(at: &dyn Fn() -> String, what: &'static str, index: i64, len: usize) -> Result<usize> {
    usize::try_from(index).ok().filter(|&i| i < len).ok_or_else(|| out_of_range(at(), what, index, len))
}

/// Offset of `inner` within `outer`; both are slices of the same buffer.
fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize)
}

fn bounded(at: impl Into<String>, start: u64, len: u64, container: impl Into<String>, size: u64) -> Result<()> {
    match start.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        end => Err(ProgramError::OutOfBounds {
            at: at.into(),
            start,
            end: end.unwrap_or(u64::MAX),
            container: container.into(),
            size,
        }),
    }
}

/// Decodes and verifies a whole file. Returns the header, the model and the byte layout.
pub(crate) fn decode(data: &[u8]) -> Result<(Option<ExtendedHeader>, ProgramDef, Layout)> {
    if data.len() < 8 {
        return Err(ProgramError::TooShort { len: data.len() });
    }
    if &data[4..8] != b"ET12" {
        return Err(ProgramError::NotAProgram { found: data[4..8].escape_ascii().to_string() });
    }
    let header = ExtendedHeader::read(data)?;
    let fb_len = header.map_or(data.len(), |h| h.program_size as usize);
    let fb_data = &data[..fb_len];
    let opts = flatbuffers::VerifierOptions {
        max_depth: 64,
        max_tables: 10_000_000,
        max_apparent_size: 1 << 40,
        ignore_missing_null_terminator: false,
    };
    let root = fb::root_as_program_with_opts(&opts, fb_data)?;

    let mut layout = Layout::default();

    // Segments.
    let seg_list: Vec<DataSegment> = root
        .segments()
        .map(|v| v.iter().map(|s| DataSegment { offset: s.offset(), size: s.size() }).collect())
        .unwrap_or_default();
    if !seg_list.is_empty() {
        // Without an extended header there is no segment data: ExecuTorch still lists empty
        // segments then (an empty constant segment), which must locate nothing.
        let base = header.map_or(data.len() as u64, |h| h.segment_base_offset);
        for (i, s) in seg_list.iter().enumerate() {
            let start = base.checked_add(s.offset);
            let at = format!("segment {i}");
            let start = start.ok_or_else(|| ProgramError::OutOfBounds {
                at: at.clone(),
                start: s.offset,
                end: u64::MAX,
                container: "the file".into(),
                size: data.len() as u64,
            })?;
            bounded(at, start, s.size, "the file", data.len() as u64)?;
            layout.segments.push(start as usize..(start + s.size) as usize);
        }
    }

    // Legacy inline constants.
    let mut constant_buffer_sizes = Vec::new();
    if let Some(buffers) = root.constant_buffer() {
        for b in buffers.iter() {
            let r = match b.storage() {
                Some(s) => {
                    let off = offset_in(data, s.bytes());
                    off..off + s.len()
                }
                None => 0..0,
            };
            constant_buffer_sizes.push(r.len() as u64);
            layout.constants.push(r);
        }
    }

    // Modern constant segment.
    let constant_segment = root.constant_segment().map(|c| SubsegmentOffsets {
        segment_index: c.segment_index(),
        offsets: c.offsets().map(|o| o.iter().collect()).unwrap_or_default(),
    });
    if let Some(cs) = &constant_segment {
        if !cs.offsets.is_empty() {
            if !layout.constants.is_empty() && layout.constants.len() > 1 {
                return Err(ProgramError::Inconsistent(
                    "the program uses both the legacy constant_buffer and constant_segment".into(),
                ));
            }
            layout.constants.clear();
            let seg =
                check_index(&|| "constant_segment".into(), "segment", cs.segment_index.into(), layout.segments.len())?;
            let r = layout.segments[seg].clone();
            for (i, &o) in cs.offsets.iter().enumerate() {
                bounded(format!("constant_segment offset {i}"), o, 0, format!("segment {seg}"), r.len() as u64)?;
                layout.constants.push(r.start + o as usize..r.end);
            }
        }
    }

    // Mutable data segments.
    let mut mutable_data_segments = Vec::new();
    if let Some(list) = root.mutable_data_segments() {
        for (k, m) in list.iter().enumerate() {
            let sub = SubsegmentOffsets {
                segment_index: m.segment_index(),
                offsets: m.offsets().map(|o| o.iter().collect()).unwrap_or_default(),
            };
            let seg = check_index(
                &|| format!("mutable_data_segments[{k}]"),
                "segment",
                sub.segment_index.into(),
                layout.segments.len(),
            )?;
            let r = layout.segments[seg].clone();
            let mut ranges = Vec::with_capacity(sub.offsets.len());
            for (i, &o) in sub.offsets.iter().enumerate() {
                bounded(
                    format!("mutable_data_segments[{k}] offset {i}"),
                    o,
                    0,
                    format!("segment {seg}"),
                    r.len() as u64,
                )?;
                ranges.push(r.start + o as usize..r.end);
            }
            layout.mutable.push(ranges);
            mutable_data_segments.push(sub);
        }
    }

    // Named data.
    let mut named_data = Vec::new();
    if let Some(list) = root.named_data() {
        for (i, n) in list.iter().enumerate() {
            let key = n.key().unwrap_or_default().to_string();
            check_index(
                &|| format!("named_data[{i}] ({key:?})"),
                "segment",
                n.segment_index().into(),
                layout.segments.len(),
            )?;
            named_data.push(NamedData { key, segment_index: n.segment_index() });
        }
    }

    // Inline delegate data.
    let mut inline_delegate_data_sizes = Vec::new();
    if let Some(list) = root.backend_delegate_data() {
        for d in list.iter() {
            let r = match d.data() {
                Some(s) => {
                    let off = offset_in(data, s.bytes());
                    off..off + s.len()
                }
                None => 0..0,
            };
            inline_delegate_data_sizes.push(r.len() as u64);
            layout.inline_delegates.push(r);
        }
    }

    let mut plans = Vec::new();
    if let Some(list) = root.execution_plan() {
        for (p, plan) in list.iter().enumerate() {
            plans.push(decode_plan(p, &plan, &layout, &mutable_data_segments)?);
        }
    }

    let def = ProgramDef {
        version: root.version(),
        plans,
        constant_buffer_sizes,
        inline_delegate_data_sizes,
        segments: seg_list,
        constant_segment,
        mutable_data_segments,
        named_data,
    };
    Ok((header, def, layout))
}

fn ints(v: Option<flatbuffers::Vector<'_, i32>>) -> Vec<i32> {
    v.map(|v| v.iter().collect()).unwrap_or_default()
}

fn decode_plan(
    p: usize,
    plan: &fb::ExecutionPlan<'_>,
    layout: &Layout,
    mutable: &[SubsegmentOffsets],
) -> Result<ExecutionPlan> {
    let name = plan.name().unwrap_or_default().to_string();
    let at_plan = format!("method {name:?} (plan {p})");

    let non_const_buffer_sizes = plan
        .non_const_buffer_sizes()
        .map(|v| v.iter().collect::<Vec<i64>>())
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            u64::try_from(s).ok().filter(|&s| s <= isize::MAX as u64).ok_or_else(|| {
                ProgramError::Inconsistent(format!("{at_plan}: non_const_buffer_sizes[{i}] = {s} is not a valid size"))
            })
        })
        .collect::<Result<Vec<u64>>>()?;

    // Values.
    let fb_values = plan.values();
    let n_values = fb_values.map_or(0, |v| v.len());
    let mut values = Vec::with_capacity(n_values);
    if let Some(list) = fb_values {
        for (i, ev) in list.iter().enumerate() {
            let at = || format!("{at_plan}, value {i}");
            values.push(decode_value(&at, &ev, n_values)?);
        }
    }
    // Cross-value checks: list members have the right kinds; tensors fit their storage.
    for (i, v) in values.iter().enumerate() {
        let at = || format!("{at_plan}, value {i}");
        match v {
            Value::IntList(items) => {
                for &j in items {
                    expect_kind(&at, &values, j, "Int", |v| matches!(v, Value::Int(_)))?;
                }
            }
            Value::TensorList(items) => {
                for &j in items {
                    expect_kind(&at, &values, j, "Tensor", |v| matches!(v, Value::Tensor(_)))?;
                }
            }
            Value::OptionalTensorList(items) => {
                for &j in items.iter().flatten() {
                    expect_kind(&at, &values, j, "Tensor", |v| matches!(v, Value::Tensor(_)))?;
                }
            }
            Value::Tensor(t) => check_tensor_storage(&at, t, layout, mutable, &non_const_buffer_sizes)?,
            _ => {}
        }
    }

    let index_list = |what: &'static str, v: Option<flatbuffers::Vector<'_, i32>>| -> Result<Vec<usize>> {
        ints(v)
            .into_iter()
            .map(|i| check_index(&|| format!("{at_plan}, {what}"), "value", i.into(), n_values))
            .collect()
    };
    let inputs = index_list("inputs", plan.inputs())?;
    let outputs = index_list("outputs", plan.outputs())?;

    let operators: Vec<Operator> = plan
        .operators()
        .map(|v| {
            v.iter()
                .map(|o| Operator {
                    name: o.name().unwrap_or_default().to_string(),
                    overload: o.overload().unwrap_or_default().to_string(),
                })
                .collect()
        })
        .unwrap_or_default();

    let mut delegates = Vec::new();
    if let Some(list) = plan.delegates() {
        for (d, del) in list.iter().enumerate() {
            let at = || format!("{at_plan}, delegate {d}");
            let processed = del
                .processed()
                .ok_or_else(|| ProgramError::Inconsistent(format!("{}: no processed data reference", at())))?;
            let location = match processed.location() {
                fb::DataLocation::INLINE => DataLocation::Inline(check_index(
                    &at,
                    "inline delegate data",
                    processed.index().into(),
                    layout.inline_delegates.len(),
                )?),
                fb::DataLocation::SEGMENT => {
                    DataLocation::Segment(check_index(&at, "segment", processed.index().into(), layout.segments.len())?)
                }
                other => {
                    return Err(ProgramError::UnknownTag { at: at(), what: "data location", code: other.0.into() })
                }
            };
            let compile_specs = del
                .compile_specs()
                .map(|v| {
                    v.iter()
                        .map(|c| CompileSpec {
                            key: c.key().unwrap_or_default().to_string(),
                            value: c.value().map(|b| b.bytes().to_vec()).unwrap_or_default(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            delegates.push(BackendDelegate {
                id: del.id().unwrap_or_default().to_string(),
                processed: location,
                compile_specs,
            });
        }
    }

    let mut chains = Vec::new();
    if let Some(list) = plan.chains() {
        for (c, chain) in list.iter().enumerate() {
            let at_chain = format!("{at_plan}, chain {c}");
            let n_instr = chain.instructions().map_or(0, |v| v.len());
            let mut instructions = Vec::with_capacity(n_instr);
            if let Some(instrs) = chain.instructions() {
                for (k, ins) in instrs.iter().enumerate() {
                    let at = || format!("{at_chain}, instruction {k}");
                    instructions.push(decode_instruction(
                        &at,
                        &ins,
                        &values,
                        operators.len(),
                        delegates.len(),
                        n_instr,
                    )?);
                }
            }
            let stacktrace = chain.stacktrace().map(|v| {
                v.iter()
                    .map(|fl| {
                        fl.items()
                            .map(|items| {
                                items
                                    .iter()
                                    .map(|f| Frame {
                                        filename: f.filename().unwrap_or_default().to_string(),
                                        lineno: f.lineno(),
                                        name: f.name().unwrap_or_default().to_string(),
                                        context: f.context().unwrap_or_default().to_string(),
                                    })
                                    .collect()
                            })
                            .unwrap_or_default()
                    })
                    .collect()
            });
            chains.push(Chain {
                inputs: index_list("chain inputs", chain.inputs())?,
                outputs: index_list("chain outputs", chain.outputs())?,
                instructions,
                stacktrace,
            });
        }
    }

    let container_meta = plan.container_meta_type().map(|c| ContainerMeta {
        encoded_inp_str: c.encoded_inp_str().unwrap_or_default().to_string(),
        encoded_out_str: c.encoded_out_str().unwrap_or_default().to_string(),
    });
    let non_const_buffer_device = plan
        .non_const_buffer_device()
        .map(|v| {
            v.iter()
                .map(|d| BufferDevice {
                    buffer_idx: d.buffer_idx(),
                    device_type: d.device_type().0,
                    device_index: d.device_index(),
                })
                .collect()
        })
        .unwrap_or_default();

    Ok(ExecutionPlan {
        name,
        container_meta,
        values,
        inputs,
        outputs,
        chains,
        operators,
        delegates,
        non_const_buffer_sizes,
        non_const_buffer_device,
    })
}

fn expect_kind(
    at: &dyn Fn() -> String,
    values: &[Value],
    j: usize,
    expected: &'static str,
    ok: impl Fn(&Value) -> bool,
) -> Result<()> {
    // `j` was range-checked when the list was decoded.
    let v = values.get(j).ok_or_else(|| out_of_range(at(), "value", j as i64, values.len()))?;
    if ok(v) {
        Ok(())
    } else {
        Err(ProgramError::WrongValueKind { at: at(), index: j, expected, found: v.kind() })
    }
}

fn decode_value(at: &dyn Fn() -> String, ev: &fb::EValue<'_>, n_values: usize) -> Result<Value> {
    use fb::KernelTypes as K;
    let missing = || ProgramError::Inconsistent(format!("{}: the value's payload is missing", at()));
    let idx = |i: i64| check_index(at, "value", i, n_values);
    Ok(match ev.val_type() {
        K::NONE | K::Null => Value::Null,
        K::Int => Value::Int(ev.val_as_int().ok_or_else(missing)?.int_val()),
        K::Bool => Value::Bool(ev.val_as_bool().ok_or_else(missing)?.bool_val()),
        K::Double => Value::Double(ev.val_as_double().ok_or_else(missing)?.double_val()),
        K::String => {
            Value::String(ev.val_as_string().ok_or_else(missing)?.string_val().unwrap_or_default().to_string())
        }
        K::IntList => {
            let items = ev.val_as_int_list().ok_or_else(missing)?.items();
            Value::IntList(items.map(|v| v.iter().map(idx).collect::<Result<_>>()).transpose()?.unwrap_or_default())
        }
        K::DoubleList => Value::DoubleList(
            ev.val_as_double_list().ok_or_else(missing)?.items().map(|v| v.iter().collect()).unwrap_or_default(),
        ),
        K::BoolList => Value::BoolList(
            ev.val_as_bool_list().ok_or_else(missing)?.items().map(|v| v.iter().collect()).unwrap_or_default(),
        ),
        K::TensorList => {
            let items = ints(ev.val_as_tensor_list().ok_or_else(missing)?.items());
            Value::TensorList(items.into_iter().map(|i| idx(i.into())).collect::<Result<_>>()?)
        }
        K::OptionalTensorList => {
            let items = ints(ev.val_as_optional_tensor_list().ok_or_else(missing)?.items());
            Value::OptionalTensorList(
                items
                    .into_iter()
                    .map(|i| if i == -1 { Ok(None) } else { idx(i.into()).map(Some) })
                    .collect::<Result<_>>()?,
            )
        }
        K::Tensor => Value::Tensor(decode_tensor(at, &ev.val_as_tensor().ok_or_else(missing)?)?),
        other => return Err(ProgramError::UnknownTag { at: at(), what: "value type", code: other.0.into() }),
    })
}

fn decode_tensor(at: &dyn Fn() -> String, t: &fb::Tensor<'_>) -> Result<Tensor> {
    let bad = |reason: String| ProgramError::BadTensor { at: at(), reason };
    let code = t.scalar_type().0;
    let scalar_type = ScalarType::from_code(code).ok_or_else(|| ProgramError::UnknownTag {
        at: at(),
        what: "scalar type",
        code: code.into(),
    })?;
    let raw_sizes = ints(t.sizes());
    if raw_sizes.len() > MAX_RANK {
        return Err(bad(format!("rank {} exceeds the limit of {MAX_RANK}", raw_sizes.len())));
    }
    let sizes = raw_sizes
        .iter()
        .map(|&s| usize::try_from(s).map_err(|_| bad(format!("negative size {s} in {raw_sizes:?}"))))
        .collect::<Result<Vec<usize>>>()?;
    let bytes = sizes
        .iter()
        .try_fold(scalar_type.element_size(), |acc, &d| acc.checked_mul(d))
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| bad(format!("sizes {sizes:?} of {scalar_type} overflow the address space")))?;
    let _ = bytes;
    let dim_order: Vec<u8> = t.dim_order().map(|v| v.bytes().to_vec()).unwrap_or_default();
    let mut seen = [false; MAX_RANK];
    let perm = dim_order.len() == sizes.len()
        && dim_order.iter().all(|&d| {
            let d = usize::from(d);
            d < sizes.len() && !std::mem::replace(&mut seen[d], true)
        });
    if !perm {
        return Err(bad(format!("dim_order {dim_order:?} is not a permutation of 0..{}", sizes.len())));
    }
    if t.storage_offset() != 0 {
        return Err(bad(format!("storage_offset {} is not 0 (ExecuTorch supports only 0)", t.storage_offset())));
    }
    let dynamism = match t.shape_dynamism() {
        fb::TensorShapeDynamism::STATIC => ShapeDynamism::Static,
        fb::TensorShapeDynamism::DYNAMIC_BOUND => ShapeDynamism::DynamicBound,
        fb::TensorShapeDynamism::DYNAMIC_UNBOUND => ShapeDynamism::DynamicUnbound,
        other => return Err(ProgramError::UnknownTag { at: at(), what: "shape dynamism", code: other.0.into() }),
    };
    let allocation = t.allocation_info().map(|a| Allocation {
        memory_id: a.memory_id(),
        offset: u64::from(a.memory_offset_low()) | (u64::from(a.memory_offset_high()) << 32),
    });
    let extra = t
        .extra_tensor_info()
        .map(|e| {
            let location_external = match e.location() {
                fb::TensorDataLocation::SEGMENT => false,
                fb::TensorDataLocation::EXTERNAL => true,
                other => {
                    return Err(ProgramError::UnknownTag {
                        at: at(),
                        what: "tensor data location",
                        code: other.0.into(),
                    })
                }
            };
            Ok(ExtraTensorInfo {
                mutable_data_segments_idx: e.mutable_data_segments_idx(),
                fully_qualified_name: e.fully_qualified_name().map(str::to_string),
                location_external,
                device_type: e.device_type().0,
                device_index: e.device_index(),
            })
        })
        .transpose()?;
    Ok(Tensor {
        scalar_type,
        storage_offset: t.storage_offset(),
        sizes,
        dim_order,
        requires_grad: t.requires_grad(),
        data_buffer_idx: t.data_buffer_idx(),
        allocation,
        layout: t.layout(),
        dynamism,
        extra,
    })
}

fn check_tensor_storage(
    at: &dyn Fn() -> String,
    t: &Tensor,
    layout: &Layout,
    mutable: &[SubsegmentOffsets],
    arenas: &[u64],
) -> Result<()> {
    let nbytes = t.nbytes() as u64;
    match t.storage() {
        TensorStorage::Runtime => Ok(()),
        TensorStorage::External => {
            if t.extra.as_ref().and_then(|e| e.fully_qualified_name.as_deref()).is_none_or(str::is_empty) {
                return Err(ProgramError::BadTensor {
                    at: at(),
                    reason: "external data needs a fully qualified name".into(),
                });
            }
            Ok(())
        }
        TensorStorage::Constant { buffer } => {
            let r = layout
                .constants
                .get(buffer)
                .ok_or_else(|| out_of_range(at(), "constant buffer", buffer as i64, layout.constants.len()))?;
            bounded(at(), 0, nbytes, format!("constant buffer {buffer}"), r.len() as u64)
        }
        TensorStorage::Planned { alloc, initial } => {
            let id = alloc.memory_id as usize;
            if id == 0 || id >= arenas.len() {
                return Err(out_of_range(at(), "memory arena (1-based)", id as i64, arenas.len()));
            }
            bounded(at(), alloc.offset, nbytes, format!("arena {id}"), arenas[id])?;
            if let Some(idx) = initial {
                let which = t.extra.as_ref().map_or(0, |e| e.mutable_data_segments_idx);
                let which =
                    check_index(at, "mutable data segment", which.try_into().unwrap_or(i64::MAX), mutable.len())?;
                let ranges = &layout.mutable[which];
                let r = ranges
                    .get(idx)
                    .ok_or_else(|| out_of_range(at(), "mutable data offset", idx as i64, ranges.len()))?;
                bounded(at(), 0, nbytes, format!("mutable data {which} entry {idx}"), r.len() as u64)?;
            }
            Ok(())
        }
    }
}

fn decode_instruction(
    at: &dyn Fn() -> String,
    ins: &fb::Instruction<'_>,
    values: &[Value],
    n_ops: usize,
    n_delegates: usize,
    n_instr: usize,
) -> Result<Instruction> {
    use fb::InstructionArguments as A;
    let missing = || ProgramError::Inconsistent(format!("{}: the instruction's arguments are missing", at()));
    let value = |i: i32| check_index(at, "value", i.into(), values.len());
    let args = |v: Option<flatbuffers::Vector<'_, i32>>| ints(v).into_iter().map(value).collect::<Result<Vec<_>>>();
    Ok(match ins.instr_args_type() {
        A::KernelCall => {
            let k = ins.instr_args_as_kernel_call().ok_or_else(missing)?;
            Instruction::KernelCall {
                op_index: check_index(at, "operator", k.op_index().into(), n_ops)?,
                args: args(k.args())?,
            }
        }
        A::DelegateCall => {
            let d = ins.instr_args_as_delegate_call().ok_or_else(missing)?;
            Instruction::DelegateCall {
                delegate_index: check_index(at, "delegate", d.delegate_index().into(), n_delegates)?,
                args: args(d.args())?,
            }
        }
        A::MoveCall => {
            let m = ins.instr_args_as_move_call().ok_or_else(missing)?;
            Instruction::MoveCall { from: value(m.move_from())?, to: value(m.move_to())? }
        }
        A::JumpFalseCall => {
            let j = ins.instr_args_as_jump_false_call().ok_or_else(missing)?;
            let cond = value(j.cond_value_index())?;
            // The destination may equal the count: jumping there ends the chain.
            let destination =
                check_index(at, "destination instruction", j.destination_instruction().into(), n_instr + 1)?;
            if !matches!(values[cond], Value::Bool(_) | Value::Tensor(_)) {
                return Err(ProgramError::WrongValueKind {
                    at: at(),
                    index: cond,
                    expected: "Bool",
                    found: values[cond].kind(),
                });
            }
            Instruction::JumpFalseCall { cond, destination }
        }
        A::FreeCall => {
            let f = ins.instr_args_as_free_call().ok_or_else(missing)?;
            let v = value(f.value_index())?;
            if !matches!(values[v], Value::Tensor(_)) {
                return Err(ProgramError::WrongValueKind {
                    at: at(),
                    index: v,
                    expected: "Tensor",
                    found: values[v].kind(),
                });
            }
            Instruction::FreeCall { value: v }
        }
        other => return Err(ProgramError::UnknownTag { at: at(), what: "instruction type", code: other.0.into() }),
    })
}
