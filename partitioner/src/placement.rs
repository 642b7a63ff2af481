//! Placement: where each partition's delegate call goes among the method's other instructions.
//!
//! A delegate call reads all of its partition's inputs and writes all of its outputs at one point
//! of the method. ExecuTorch's memory plan reuses memory once a value is dead, so moving a
//! partition's reads and writes to one point can break an order the plan relies on: an
//! instruction between two members may overwrite memory the first member read, or read memory
//! the second member writes. [`schedule`] orders the method's remaining instructions and one call
//! per partition so that every pair of accesses to overlapping memory (read/write, write/read,
//! write/write) keeps its original order; when no such order exists it names a partition to
//! split and where ([`Stuck`]).

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use ferrite_program::graph::Graph;
use ferrite_program::{ExecutionPlan, Instruction, TensorStorage, Value};
use serde::Serialize;

use crate::Partition;

/// One step of a lowered method: an original instruction, or a partition's delegate call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", content = "index", rename_all = "snake_case")]
pub enum Step {
    /// The original instruction of this index (outside every partition).
    Instruction(usize),
    /// The delegate call of the partition of this index.
    Partition(usize),
}

/// Why [`schedule`] found no order: partition `partition` cannot be called at one point.
/// `cut` is the original instruction index of a step that lies on a cycle through it: members
/// before `cut` and members after it can each be placed on their side of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stuck {
    pub partition: usize,
    pub cut: Option<usize>,
}

/// A memory location a step touches: a planned byte range, or a value with its own storage.
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
                let end = alloc.offset.saturating_add(t.nbytes() as u64);
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

/// Orders the method's instructions outside `parts` and one delegate call per partition so that
/// every pair of accesses to overlapping memory keeps its original order. Dependencies are taken
/// between original instructions — for partition members, only their accesses to the partition's
/// inputs and outputs, since its intermediates move into the delegate — then members are
/// contracted into their partition and the result sorted, preferring original order.
pub(crate) fn schedule(plan: &ExecutionPlan, graph: &Graph<'_>, parts: &[Partition]) -> Result<Vec<Step>, Stuck> {
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
    // Units: each partition, and each instruction outside partitions; a unit's position is its
    // first instruction.
    let mut units: Vec<(usize, Step)> = Vec::new();
    let mut unit_of = vec![0usize; count];
    let mut part_unit: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, slot) in unit_of.iter_mut().enumerate() {
        match member.get(&i) {
            Some(&k) => {
                *slot = *part_unit.entry(k).or_insert_with(|| {
                    units.push((i, Step::Partition(k)));
                    units.len() - 1
                });
            }
            None => {
                units.push((i, Step::Instruction(i)));
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
    let mut pred: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut indeg = vec![0usize; n];
    for &(a, b) in &edges {
        succ[a].push(b);
        pred[b].push(a);
        indeg[b] += 1;
    }
    let mut heap: BinaryHeap<std::cmp::Reverse<(usize, usize)>> = BinaryHeap::new();
    for (u, d) in indeg.iter().enumerate() {
        if *d == 0 {
            heap.push(std::cmp::Reverse((units[u].0, u)));
        }
    }
    let mut order = Vec::with_capacity(n);
    let mut remaining = indeg.clone();
    while let Some(std::cmp::Reverse((_, u))) = heap.pop() {
        order.push(units[u].1);
        for &s in &succ[u] {
            remaining[s] -= 1;
            if remaining[s] == 0 {
                heap.push(std::cmp::Reverse((units[s].0, s)));
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Some units are stuck behind a cycle. Every cycle runs through a partition (original
    // instructions alone keep their order): take the first stuck partition that lies on one, and
    // the earliest other step on that cycle as the place to cut it.
    let reach = |from: usize, next: &[Vec<usize>]| {
        let mut seen = vec![false; n];
        let mut stack = vec![from];
        while let Some(u) = stack.pop() {
            for &s in &next[u] {
                if !seen[s] {
                    seen[s] = true;
                    stack.push(s);
                }
            }
        }
        seen
    };
    let stuck: Vec<usize> = (0..n).filter(|&u| remaining[u] > 0).collect();
    for &u in &stuck {
        let Step::Partition(k) = units[u].1 else { continue };
        let (fwd, back) = (reach(u, &succ), reach(u, &pred));
        if !fwd[u] {
            continue; // not on a cycle itself, only behind one
        }
        let cut = (0..n).filter(|&x| x != u && fwd[x] && back[x]).map(|x| units[x].0).min();
        return Err(Stuck { partition: k, cut });
    }
    // Unreachable for a well-formed graph; give up the first stuck partition.
    let partition = stuck
        .iter()
        .find_map(|&u| match units[u].1 {
            Step::Partition(k) => Some(k),
            Step::Instruction(_) => None,
        })
        .unwrap_or(0);
    Err(Stuck { partition, cut: None })
}
