//! A method being edited: its plan, constants that were changed or added, and the views
//! (memory aliases) it keeps; [`Draft::write`] turns it back into a verified program with a
//! fresh constant segment and a fresh memory plan.

use std::collections::BTreeMap;

use ferrite_program::graph::Graph;
use ferrite_program::{
    compact_values, plan_memory, DataSegment, ExecutionPlan, Instruction, Operator, Program, ProgramWriter, ScalarType,
    ShapeDynamism, SubsegmentOffsets, Tensor, TensorStorage, Value, TENSOR_ALIGNMENT,
};

use crate::error::{QuantizeError, Result};

/// Marks a constant whose bytes live in [`Draft::data`] until the program is written.
const PENDING: u32 = u32::MAX;

#[derive(Debug, Clone)]
pub(crate) struct Draft<'p> {
    program: &'p Program<'p>,
    pub plan_index: usize,
    pub plan: ExecutionPlan,
    /// Bytes of constants added or replaced, by value index.
    data: BTreeMap<usize, Vec<u8>>,
    /// `(view, base)`: values planned at their base's bytes (ExecuTorch's static views).
    pub aliases: Vec<(usize, usize)>,
}

impl<'p> Draft<'p> {
    pub fn new(program: &'p Program<'p>, method: &str) -> Result<Self> {
        let plan_index = program
            .def()
            .plans
            .iter()
            .position(|p| p.name == method)
            .ok_or_else(|| QuantizeError::NoMethod(method.to_string()))?;
        let plan = program.def().plans[plan_index].clone();
        let graph = Graph::new(&plan);
        let aliases = (0..plan.values.len()).filter_map(|v| graph.alias_of(v).map(|b| (v, b))).collect();
        Ok(Draft { program, plan_index, plan, data: BTreeMap::new(), aliases })
    }

    /// The tensor at value `v`.
    pub fn tensor(&self, v: usize) -> Option<&Tensor> {
        self.plan.values.get(v).and_then(Value::as_tensor)
    }

    /// The bytes of constant tensor `v` (added, replaced or from the program).
    pub fn constant_bytes(&self, v: usize) -> Option<&[u8]> {
        if let Some(d) = self.data.get(&v) {
            return Some(d);
        }
        let t = self.tensor(v)?;
        match t.storage() {
            TensorStorage::Constant { .. } => self.program.tensor_data(t).and_then(|b| b.get(..t.nbytes())),
            _ => None,
        }
    }

    /// Constant tensor `v` as `f32` values, if it is a float constant.
    pub fn constant_f32(&self, v: usize) -> Option<Vec<f32>> {
        if self.tensor(v)?.scalar_type != ScalarType::Float {
            return None;
        }
        let b = self.constant_bytes(v)?;
        Some(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    pub fn push_value(&mut self, v: Value) -> usize {
        self.plan.values.push(v);
        self.plan.values.len() - 1
    }

    /// A new intermediate tensor (planned when the program is written).
    pub fn push_tensor(&mut self, dtype: ScalarType, sizes: &[usize], dynamism: ShapeDynamism) -> usize {
        self.push_value(Value::Tensor(Tensor {
            scalar_type: dtype,
            storage_offset: 0,
            sizes: sizes.to_vec(),
            dim_order: (0..sizes.len() as u8).collect(),
            requires_grad: false,
            data_buffer_idx: 0,
            allocation: None,
            layout: 0,
            dynamism,
            extra: None,
        }))
    }

    /// A new constant tensor.
    pub fn push_constant(&mut self, dtype: ScalarType, sizes: &[usize], bytes: Vec<u8>) -> usize {
        let v = self.push_tensor(dtype, sizes, ShapeDynamism::Static);
        if let Some(Value::Tensor(t)) = self.plan.values.get_mut(v) {
            t.data_buffer_idx = PENDING;
        }
        self.data.insert(v, bytes);
        v
    }

    pub fn op_index(&mut self, name: &str) -> usize {
        let (n, overload) = name.rsplit_once('.').unwrap_or((name, ""));
        let op = Operator { name: n.to_string(), overload: overload.to_string() };
        match self.plan.operators.iter().position(|o| *o == op) {
            Some(i) => i,
            None => {
                self.plan.operators.push(op);
                self.plan.operators.len() - 1
            }
        }
    }

    pub fn call(name: &str, draft: &mut Self, args: Vec<usize>) -> Instruction {
        Instruction::KernelCall { op_index: draft.op_index(name), args }
    }

    pub fn instructions(&self) -> &[Instruction] {
        self.plan.chains.first().map_or(&[], |c| c.instructions.as_slice())
    }

    /// Replaces the instruction list (stack traces no longer line up, so they are dropped).
    pub fn set_instructions(&mut self, ins: Vec<Instruction>) {
        if let Some(c) = self.plan.chains.first_mut() {
            c.instructions = ins;
            c.stacktrace = None;
        }
    }

    /// Writes the program: this method replaced, values nothing uses dropped (when `compact`),
    /// constants gathered into one new segment, memory re-planned. The result is verified.
    /// Also returns each old value index's new one.
    pub fn write(&self, compact: bool) -> Result<(Vec<u8>, Vec<Option<usize>>)> {
        let mut plan = self.plan.clone();
        let mut aliases = self.aliases.clone();
        let mut data = self.data.clone();
        let mut map: Vec<Option<usize>> = (0..plan.values.len()).map(Some).collect();
        if compact {
            let remap = compact_values(&mut plan);
            map.clone_from(&remap);
            aliases = aliases
                .iter()
                .filter_map(|&(v, b)| Some((remap.get(v).copied().flatten()?, remap.get(b).copied().flatten()?)))
                .collect();
            data = data.into_iter().filter_map(|(v, d)| Some((remap.get(v).copied().flatten()?, d))).collect();
        }
        // Aliases whose view is no longer read by anything planned stay harmless; ones whose
        // base is constant cannot exist (constants are not aliased).
        aliases.retain(|&(v, b)| {
            plan.values.get(v).and_then(Value::as_tensor).is_some()
                && plan.values.get(b).and_then(Value::as_tensor).is_some_and(|t| t.data_buffer_idx == 0)
        });
        plan_memory(&mut plan, &aliases)?;

        let mut def = self.program.def().clone();
        // One new constant segment for every method's constants.
        let mut bytes = Vec::new();
        let mut offsets = vec![0u64];
        let mut by_old: BTreeMap<usize, u32> = BTreeMap::new();
        let place = |b: &[u8], bytes: &mut Vec<u8>, offsets: &mut Vec<u64>| {
            let at = bytes.len().div_ceil(TENSOR_ALIGNMENT) * TENSOR_ALIGNMENT;
            bytes.resize(at, 0);
            bytes.extend_from_slice(b);
            offsets.push(at as u64);
            (offsets.len() - 1) as u32
        };
        for (pi, p) in def.plans.iter_mut().enumerate() {
            if pi == self.plan_index {
                *p = plan.clone();
            }
            for (v, val) in p.values.iter_mut().enumerate() {
                let Value::Tensor(t) = val else { continue };
                if t.allocation.is_some() || t.data_buffer_idx == 0 {
                    continue;
                }
                let fresh = if pi == self.plan_index { data.get(&v) } else { None };
                t.data_buffer_idx = match fresh {
                    Some(d) => place(d, &mut bytes, &mut offsets),
                    None => {
                        let old = t.data_buffer_idx as usize;
                        if let Some(&n) = by_old.get(&old) {
                            n
                        } else {
                            let d = self.program.tensor_data(t).and_then(|b| b.get(..t.nbytes())).ok_or_else(|| {
                                QuantizeError::Program(ferrite_program::ProgramError::Inconsistent(format!(
                                    "constant buffer {old} is missing from the program"
                                )))
                            })?;
                            let n = place(d, &mut bytes, &mut offsets);
                            by_old.insert(old, n);
                            n
                        }
                    }
                };
            }
        }
        // Segments other than the old constant segment are kept (delegate blobs, named data).
        let old_constant = def.constant_segment.as_ref().map(|c| c.segment_index as usize);
        let mut segments: Vec<std::borrow::Cow<'_, [u8]>> = Vec::new();
        let mut seg_defs = Vec::new();
        let mut remap = vec![u32::MAX; def.segments.len()];
        for (i, s) in def.segments.iter().enumerate() {
            if Some(i) == old_constant {
                continue;
            }
            let d = self.program.segment(i).ok_or_else(|| {
                QuantizeError::Program(ferrite_program::ProgramError::Inconsistent(format!("segment {i} is missing")))
            })?;
            remap[i] = segments.len() as u32;
            segments.push(std::borrow::Cow::Borrowed(d));
            seg_defs.push(*s);
        }
        segments.push(std::borrow::Cow::Owned(bytes));
        seg_defs.push(DataSegment { offset: 0, size: 0 });
        def.segments = seg_defs;
        def.constant_segment = Some(SubsegmentOffsets { segment_index: (def.segments.len() - 1) as u32, offsets });
        def.constant_buffer_sizes.clear();
        for m in &mut def.mutable_data_segments {
            m.segment_index = remap[m.segment_index as usize];
        }
        for nd in &mut def.named_data {
            nd.segment_index = remap[nd.segment_index as usize];
        }
        for p in &mut def.plans {
            for d in &mut p.delegates {
                if let ferrite_program::DataLocation::Segment(s) = &mut d.processed {
                    *s = remap[*s] as usize;
                }
            }
        }
        let out = ProgramWriter::new(def, segments)?.to_bytes()?;
        // Verify what was written, as any loader would.
        Program::from_bytes(&out)?;
        Ok((out, map))
    }
}
