//! Lowering: partition a program, compile each partition into a Ferrite backend blob, and write a
//! new program whose partitions are `DelegateCall`s to `FerriteBackend`.
//!
//! The rewrite keeps everything ExecuTorch relies on: the memory plan (delegate outputs are
//! written where the plan put them), instruction order constraints (a delegate call is placed so
//! that every read and write of planned memory keeps its order — see [`schedule`]), mutable
//! state, and the other methods. Values and constants no instruction uses any more are removed.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::path::Path;

use ferrite_partitioner::{Partition, PartitionReport, Partitioner, PartitionerConfig};
use ferrite_program::{
    BackendDelegate, DataLocation, ExecutionPlan, Instruction, Program, ProgramDef, ProgramWriter, SubsegmentOffsets,
    TensorStorage, Value, TENSOR_ALIGNMENT,
};
use ferrite_runtime::backend::preprocess::{compile_partition, PassStats};
use ferrite_runtime::BACKEND_ID;

use crate::Error;

/// Lowering options.
#[derive(Debug, Clone, Default)]
pub struct LowerOptions {
    /// How to partition.
    pub partitioner: PartitionerConfig,
}

/// A lowered program and what happened.
#[derive(Debug, Clone)]
pub struct Lowered {
    /// The new `.pte` bytes.
    pub bytes: Vec<u8>,
    /// The partitioner's decisions (after any partition was given up, see `dropped`).
    pub report: PartitionReport,
    /// What the backend's passes did, summed over partitions.
    pub passes: PassStats,
    /// Partitions left to the portable kernels because their delegate call could not be placed
    /// without reordering memory accesses: (method, first instruction).
    pub dropped: Vec<(String, usize)>,
}

fn lower_err(msg: impl Into<String>) -> Error {
    Error::Lower(msg.into())
}

/// Lowers `program` for the Ferrite backend.
pub fn lower(program: &Program<'_>, options: &LowerOptions) -> Result<Lowered, Error> {
    // Programs with legacy inline data are modernised first so every byte lives in a segment.
    let def = program.def();
    if def.constant_buffer_sizes.len() > 1 || !def.inline_delegate_data_sizes.is_empty() {
        let bytes = ProgramWriter::from_program(program).to_bytes()?;
        let modern = Program::from_vec(bytes)?;
        return lower(&modern, options);
    }
    let partitioner = Partitioner::new(options.partitioner.clone());
    let mut result = partitioner.partition(program);
    let mut new_def = def.clone();
    let mut segments: Vec<Cow<'_, [u8]>> =
        (0..def.segments.len()).map(|i| Cow::Borrowed(program.segment(i).unwrap_or(&[]))).collect();
    let mut passes = PassStats::default();
    let mut dropped = Vec::new();

    for (pi, plan) in def.plans.iter().enumerate() {
        let parts = result.methods.get(pi).map(|m| m.partitions.clone()).unwrap_or_default();
        let mut active: Vec<Partition> = parts;
        let order = loop {
            match schedule(plan, &active) {
                Ok(order) => break order,
                Err(bad) => {
                    let p = active.remove(bad);
                    tracing::warn!(target: "ferrite::lower", method = %plan.name, first = p.instructions.first().copied().unwrap_or(0),
                        "partition dropped: its delegate call cannot be placed without reordering planned memory accesses");
                    dropped.push((plan.name.clone(), p.instructions.first().copied().unwrap_or(0)));
                }
            }
        };
        let new_plan = &mut new_def.plans[pi];
        let chain = plan.chains.first().ok_or_else(|| lower_err(format!("method {} has no chain", plan.name)))?;
        let mut delegate_of_unit: BTreeMap<usize, usize> = BTreeMap::new();
        for (k, part) in active.iter().enumerate() {
            let (blob, stats) = compile_partition(program, plan, &part.instructions, &part.inputs, &part.outputs)?;
            passes.constants_folded += stats.constants_folded;
            passes.batch_norms_folded += stats.batch_norms_folded;
            passes.activations_fused += stats.activations_fused;
            passes.reshapes_elided += stats.reshapes_elided;
            passes.dead_ops_removed += stats.dead_ops_removed;
            passes.channels_last_convolutions += stats.channels_last_convolutions;
            passes.layout_conversions += stats.layout_conversions;
            passes.dense_layers += stats.dense_layers;
            let bytes = blob.encode()?;
            segments.push(Cow::Owned(bytes));
            new_def.segments.push(ferrite_program::DataSegment { offset: 0, size: 0 });
            let seg = new_def.segments.len() - 1;
            new_plan.delegates.push(BackendDelegate {
                id: BACKEND_ID.to_string(),
                processed: DataLocation::Segment(seg),
                compile_specs: Vec::new(),
            });
            delegate_of_unit.insert(k, new_plan.delegates.len() - 1);
        }
        let mut instructions = Vec::with_capacity(order.len());
        let mut old_to_new: BTreeMap<usize, usize> = BTreeMap::new();
        for unit in &order {
            match *unit {
                Unit::Instruction(i) => {
                    old_to_new.insert(i, instructions.len());
                    instructions.push(chain.instructions[i].clone());
                }
                Unit::Partition(k) => {
                    let part = &active[k];
                    let args: Vec<usize> = part.inputs.iter().chain(&part.outputs).copied().collect();
                    instructions.push(Instruction::DelegateCall { delegate_index: delegate_of_unit[&k], args });
                }
            }
        }
        if instructions.iter().any(|i| matches!(i, Instruction::JumpFalseCall { .. })) && !active.is_empty() {
            return Err(lower_err(format!("method {} has jumps; it cannot be lowered", plan.name)));
        }
        let new_chain = &mut new_plan.chains[0];
        new_chain.instructions = instructions;
        new_chain.stacktrace = None;
        if let Some(m) = result.methods.get_mut(pi) {
            m.partitions = active;
        }
    }
    // Re-partitioning after drops only changes the report's counts.
    if !dropped.is_empty() {
        for (pi, m) in result.methods.iter().enumerate() {
            if let Some(r) = result.report.methods.get_mut(pi) {
                let kept: BTreeSet<usize> = m.partitions.iter().flat_map(|p| p.instructions.iter().copied()).collect();
                r.partitions.retain(|p| p.instructions.first().is_some_and(|i| kept.contains(i)));
                r.delegated_calls = kept.len();
            }
        }
    }
    for plan in &mut new_def.plans {
        compact_values(plan);
    }
    let segments = compact_constants(program, &mut new_def, segments)?;
    let bytes = ProgramWriter::new(new_def, segments)?.to_bytes()?;
    // The result must verify like any program we load.
    Program::from_bytes(&bytes).map_err(|e| lower_err(format!("the lowered program does not verify: {e}")))?;
    Ok(Lowered { bytes, report: result.report, passes, dropped })
}

/// Lowers the file at `input` and writes `output` atomically (never a partial file).
pub fn lower_file(input: &Path, output: &Path, options: &LowerOptions) -> Result<Lowered, Error> {
    let program = Program::mmap(input)?;
    let lowered = lower(&program, options)?;
    let dir = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out.pte".into());
    let tmp = dir.join(format!(".{name}.ferrite-tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        std::fs::write(&tmp, &lowered.bytes)?;
        std::fs::rename(&tmp, output)
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        Error::Output { path: output.display().to_string(), source }
    })?;
    Ok(lowered)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Unit {
    Instruction(usize),
    Partition(usize),
}

/// A memory location a unit touches: a planned byte range, or a value with its own storage.
#[derive(Debug, Clone, Copy)]
enum Loc {
    Range(u32, u64, u64),
    Value(usize),
}

fn overlaps(a: &Loc, b: &Loc) -> bool {
    match (a, b) {
        (Loc::Range(m1, s1, e1), Loc::Range(m2, s2, e2)) => m1 == m2 && s1 < e2 && s2 < e1,
        (Loc::Value(x), Loc::Value(y)) => x == y,
        _ => false,
    }
}

fn loc_of(plan: &ExecutionPlan, v: usize, out: &mut Vec<Loc>) {
    match plan.values.get(v) {
        Some(Value::Tensor(t)) => match t.storage() {
            TensorStorage::Planned { alloc, .. } => {
                let end = alloc.offset + t.nbytes() as u64;
                out.push(Loc::Range(alloc.memory_id, alloc.offset, end.max(alloc.offset + 1)));
            }
            TensorStorage::Constant { .. } => {}
            _ => out.push(Loc::Value(v)),
        },
        Some(Value::TensorList(items)) => items.iter().for_each(|&i| loc_of(plan, i, out)),
        Some(Value::OptionalTensorList(items)) => items.iter().flatten().for_each(|&i| loc_of(plan, i, out)),
        _ => out.push(Loc::Value(v)),
    }
}

/// Orders the method's remaining instructions and one delegate call per partition so that every
/// pair of accesses to overlapping memory (read/write, write/read, write/write) keeps its
/// original order. Dependencies are taken between original instructions — for partition members,
/// only their accesses to the partition's inputs and outputs, since its intermediates move into
/// the delegate — then members are contracted into their partition and the result sorted,
/// preferring original order. Returns the index of a partition that cannot be placed, if any.
fn schedule(plan: &ExecutionPlan, parts: &[Partition]) -> Result<Vec<Unit>, usize> {
    let graph = ferrite_program::graph::Graph::new(plan);
    let Some(chain) = plan.chains.first() else { return Ok(Vec::new()) };
    let count = chain.instructions.len();
    let mut member: BTreeMap<usize, usize> = BTreeMap::new();
    for (k, p) in parts.iter().enumerate() {
        for &i in &p.instructions {
            member.insert(i, k);
        }
    }
    let node_of: BTreeMap<usize, usize> =
        graph.nodes().iter().enumerate().map(|(n, node)| (node.instruction, n)).collect();
    // Per instruction: what it reads and writes.
    let mut access: Vec<(Vec<Loc>, Vec<Loc>)> = Vec::with_capacity(count);
    for i in 0..count {
        let (mut r, mut w) = (Vec::new(), Vec::new());
        match node_of.get(&i).map(|&n| &graph.nodes()[n]) {
            Some(node) => {
                let part = member.get(&i).map(|&k| &parts[k]);
                for &v in &node.inputs {
                    if part.is_none_or(|p| p.inputs.contains(&v)) {
                        loc_of(plan, v, &mut r);
                    }
                }
                for &v in &node.outputs {
                    if part.is_none_or(|p| p.outputs.contains(&v)) {
                        loc_of(plan, v, &mut w);
                    }
                }
                if part.is_none() {
                    // Non-tensor arguments (symbolic ints) may be written: keep their order.
                    for &a in &node.args {
                        if !matches!(
                            plan.values.get(a),
                            Some(Value::Tensor(_) | Value::TensorList(_) | Value::OptionalTensorList(_))
                        ) {
                            w.push(Loc::Value(a));
                        }
                    }
                }
            }
            None => {
                // Moves, jumps, frees: they touch what they name.
                let vals: Vec<usize> = match &chain.instructions[i] {
                    Instruction::MoveCall { from, to } => vec![*from, *to],
                    Instruction::JumpFalseCall { cond, .. } => vec![*cond],
                    Instruction::FreeCall { value } => vec![*value],
                    _ => Vec::new(),
                };
                vals.iter().for_each(|&v| loc_of(plan, v, &mut w));
            }
        }
        access.push((r, w));
    }
    // Units: each partition, and each instruction outside partitions.
    let mut units: Vec<(usize, Unit)> = Vec::new();
    let mut unit_of = vec![0usize; count];
    let mut part_unit: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, slot) in unit_of.iter_mut().enumerate() {
        match member.get(&i) {
            Some(&k) => {
                *slot = *part_unit.entry(k).or_insert_with(|| {
                    units.push((i, Unit::Partition(k)));
                    units.len() - 1
                });
            }
            None => {
                units.push((i, Unit::Instruction(i)));
                *slot = units.len() - 1;
            }
        }
    }
    let n = units.len();
    let conflict = |a: &[Loc], b: &[Loc]| a.iter().any(|x| b.iter().any(|y| overlaps(x, y)));
    let mut edges: BTreeSet<(usize, usize)> = BTreeSet::new();
    for a in 0..count {
        for b in a + 1..count {
            let (ua, ub) = (unit_of[a], unit_of[b]);
            if ua == ub {
                continue;
            }
            let ((ra, wa), (rb, wb)) = (&access[a], &access[b]);
            if conflict(wa, rb) || conflict(ra, wb) || conflict(wa, wb) {
                edges.insert((ua, ub));
            }
        }
    }
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut indeg = vec![0usize; n];
    for &(a, b) in &edges {
        succ[a].push(b);
        indeg[b] += 1;
    }
    let mut heap: BinaryHeap<std::cmp::Reverse<(usize, usize)>> = BinaryHeap::new();
    for (u, d) in indeg.iter().enumerate() {
        if *d == 0 {
            heap.push(std::cmp::Reverse((units[u].0, u)));
        }
    }
    let mut order = Vec::with_capacity(n);
    while let Some(std::cmp::Reverse((_, u))) = heap.pop() {
        order.push(units[u].1);
        for &s in &succ[u] {
            indeg[s] -= 1;
            if indeg[s] == 0 {
                heap.push(std::cmp::Reverse((units[s].0, s)));
            }
        }
    }
    if order.len() < n {
        // Some units are stuck in a cycle: give up the first partition among them.
        let stuck = (0..n).find_map(|u| match units[u].1 {
            Unit::Partition(k) if indeg[u] > 0 => Some(k),
            _ => None,
        });
        return Err(stuck.unwrap_or(0));
    }
    Ok(order)
}

/// Removes values no instruction, input or output refers to, renumbering the rest.
fn compact_values(plan: &mut ExecutionPlan) {
    let n = plan.values.len();
    let mut used = vec![false; n];
    let mut stack: Vec<usize> = plan.inputs.iter().chain(&plan.outputs).copied().collect();
    for chain in &plan.chains {
        stack.extend(chain.inputs.iter().chain(&chain.outputs).copied());
        for ins in &chain.instructions {
            match ins {
                Instruction::KernelCall { args, .. } | Instruction::DelegateCall { args, .. } => {
                    stack.extend(args.iter().copied())
                }
                Instruction::MoveCall { from, to } => stack.extend([*from, *to]),
                Instruction::JumpFalseCall { cond, .. } => stack.push(*cond),
                Instruction::FreeCall { value } => stack.push(*value),
            }
        }
    }
    while let Some(v) = stack.pop() {
        if v >= n || used[v] {
            continue;
        }
        used[v] = true;
        match &plan.values[v] {
            Value::IntList(items) | Value::TensorList(items) => stack.extend(items.iter().copied()),
            Value::OptionalTensorList(items) => stack.extend(items.iter().flatten().copied()),
            _ => {}
        }
    }
    let mut remap = vec![usize::MAX; n];
    let mut values = Vec::new();
    for (v, val) in plan.values.iter().enumerate() {
        if used[v] {
            remap[v] = values.len();
            values.push(val.clone());
        }
    }
    let r = |v: &mut usize| *v = remap[*v];
    for val in &mut values {
        match val {
            Value::IntList(items) | Value::TensorList(items) => items.iter_mut().for_each(r),
            Value::OptionalTensorList(items) => items.iter_mut().flatten().for_each(r),
            _ => {}
        }
    }
    plan.inputs.iter_mut().for_each(r);
    plan.outputs.iter_mut().for_each(r);
    for chain in &mut plan.chains {
        chain.inputs.iter_mut().for_each(r);
        chain.outputs.iter_mut().for_each(r);
        for ins in &mut chain.instructions {
            match ins {
                Instruction::KernelCall { args, .. } | Instruction::DelegateCall { args, .. } => {
                    args.iter_mut().for_each(r)
                }
                Instruction::MoveCall { from, to } => {
                    r(from);
                    r(to);
                }
                Instruction::JumpFalseCall { cond, .. } => r(cond),
                Instruction::FreeCall { value } => r(value),
            }
        }
    }
    plan.values = values;
}

/// Rebuilds the constant segment with only the constants some method still uses, and drops
/// segments nothing refers to any more.
fn compact_constants<'a>(
    program: &'a Program<'_>,
    def: &mut ProgramDef,
    mut segments: Vec<Cow<'a, [u8]>>,
) -> Result<Vec<Cow<'a, [u8]>>, Error> {
    // Old buffer index -> new index, in first-use order.
    let mut remap: BTreeMap<usize, usize> = BTreeMap::new();
    let mut data = Vec::new();
    let mut offsets = vec![0u64];
    for plan in &mut def.plans {
        for val in &mut plan.values {
            let Value::Tensor(t) = val else { continue };
            let TensorStorage::Constant { buffer } = t.storage() else { continue };
            let new = match remap.get(&buffer) {
                Some(&n) => n,
                None => {
                    let bytes = program
                        .constant_buffer(buffer)
                        .and_then(|b| b.get(..t.nbytes()))
                        .ok_or_else(|| lower_err(format!("constant buffer {buffer} is missing from the program")))?;
                    let at = data.len().div_ceil(TENSOR_ALIGNMENT) * TENSOR_ALIGNMENT;
                    data.resize(at, 0);
                    data.extend_from_slice(bytes);
                    offsets.push(at as u64);
                    let n = offsets.len() - 1;
                    remap.insert(buffer, n);
                    n
                }
            };
            t.data_buffer_idx = new as u32;
        }
    }
    segments.push(Cow::Owned(data));
    def.segments.push(ferrite_program::DataSegment { offset: 0, size: 0 });
    def.constant_segment = Some(SubsegmentOffsets { segment_index: (def.segments.len() - 1) as u32, offsets });
    def.constant_buffer_sizes.clear();

    // Keep only referenced segments.
    let mut used = BTreeSet::new();
    if let Some(cs) = &def.constant_segment {
        used.insert(cs.segment_index as usize);
    }
    for m in &def.mutable_data_segments {
        used.insert(m.segment_index as usize);
    }
    for nd in &def.named_data {
        used.insert(nd.segment_index as usize);
    }
    for plan in &def.plans {
        for d in &plan.delegates {
            if let DataLocation::Segment(s) = d.processed {
                used.insert(s);
            }
        }
    }
    let mut seg_remap = vec![usize::MAX; segments.len()];
    let mut kept_segments = Vec::new();
    let mut kept_defs = Vec::new();
    for (i, seg) in segments.into_iter().enumerate() {
        if used.contains(&i) {
            seg_remap[i] = kept_segments.len();
            kept_segments.push(seg);
            kept_defs.push(def.segments[i]);
        }
    }
    def.segments = kept_defs;
    if let Some(cs) = &mut def.constant_segment {
        cs.segment_index = seg_remap[cs.segment_index as usize] as u32;
    }
    for m in &mut def.mutable_data_segments {
        m.segment_index = seg_remap[m.segment_index as usize] as u32;
    }
    for nd in &mut def.named_data {
        nd.segment_index = seg_remap[nd.segment_index as usize] as u32;
    }
    for plan in &mut def.plans {
        for d in &mut plan.delegates {
            if let DataLocation::Segment(s) = &mut d.processed {
                *s = seg_remap[*s];
            }
        }
    }
    Ok(kept_segments)
}
