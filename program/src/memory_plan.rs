//! [`plan_memory`]: an ahead-of-time memory plan for a method, as ExecuTorch's memory planning
//! pass writes one — every non-constant tensor the method touches gets an offset in one arena,
//! and tensors whose lifetimes do not overlap share bytes.
//!
//! Tools that add or remove instructions (the quantizer inserts quantize/dequantize pairs) call
//! it on the rewritten method so that stock ExecuTorch, which gives unplanned intermediate
//! tensors no memory, can run the result.
//!
//! The plan is greedy by size (largest first, each at the lowest offset free for its whole
//! lifetime), 16-byte aligned. A lifetime runs from the instruction that first writes a tensor
//! to the last one that reads it; method inputs live from the start, method outputs to the
//! end, and tensors read before anything writes them (mutable state with an initial value)
//! live for the whole method. Views declared in `aliases` share their base's bytes, and the
//! base lives as long as any of them.

use std::collections::BTreeMap;

use crate::graph::Graph;
use crate::model::*;
use crate::write::TENSOR_ALIGNMENT;
use crate::{ProgramError, Result};

/// Plans memory for every non-constant tensor of `plan` into arena 1 and sets
/// `non_const_buffer_sizes` to `[0, total]`. `aliases` lists `(view, base)` pairs: the view is
/// planned at its base's offset (a memory alias, as ExecuTorch plans static views). Returns
/// the arena size in bytes.
///
/// Methods with control flow (jumps, moves) are refused: lifetimes there are not intervals.
pub fn plan_memory(plan: &mut ExecutionPlan, aliases: &[(usize, usize)]) -> Result<u64> {
    let graph = Graph::new(plan);
    if graph.has_control_flow() {
        return Err(ProgramError::Inconsistent(format!(
            "method {:?} has control flow; its memory cannot be re-planned",
            plan.name
        )));
    }
    let n_values = plan.values.len();
    let n_steps = graph.nodes().len();
    // Alias roots (a view of a view plans at the first base).
    let mut root: Vec<usize> = (0..n_values).collect();
    for &(view, base) in aliases {
        if view >= n_values || base >= n_values || view == base {
            return Err(ProgramError::Inconsistent(format!("alias ({view}, {base}) is not a pair of values")));
        }
        root[view] = base;
    }
    let find = |mut v: usize, root: &[usize]| {
        for _ in 0..n_values {
            if root[v] == v {
                return Some(v);
            }
            v = root[v];
        }
        None
    };
    let plannable = |v: usize| match plan.values.get(v) {
        Some(Value::Tensor(t)) => !matches!(t.storage(), TensorStorage::Constant { .. } | TensorStorage::External),
        _ => false,
    };
    // Lifetimes in node steps: [first, last], with the start of the method at 0 and node i at i + 1.
    let end = n_steps + 1;
    let mut life: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    let touch = |v: usize, at_start: usize, at_end: usize, life: &mut BTreeMap<usize, (usize, usize)>| {
        let e = life.entry(v).or_insert((at_start, at_end));
        e.0 = e.0.min(at_start);
        e.1 = e.1.max(at_end);
    };
    let mut written = vec![false; n_values];
    for &v in &plan.inputs {
        if plannable(v) {
            touch(v, 0, 0, &mut life);
            written[v] = true;
        }
    }
    for (i, node) in graph.nodes().iter().enumerate() {
        let step = i + 1;
        for &v in &node.inputs {
            if v < n_values && plannable(v) {
                // Read before any write (and not an input): state that persists across calls.
                let first = if written[v] { step } else { 0 };
                touch(v, first, if written[v] { step } else { end }, &mut life);
            }
        }
        for &v in &node.outputs {
            if v < n_values && plannable(v) {
                touch(v, step, step, &mut life);
                written[v] = true;
            }
        }
    }
    // Planned tensors nothing touches keep a slot only if they carry an initial value (state).
    for (v, val) in plan.values.iter().enumerate() {
        if let Value::Tensor(t) = val {
            if matches!(t.storage(), TensorStorage::Planned { initial: Some(_), .. }) {
                touch(v, 0, end, &mut life);
            }
        }
    }
    for &v in &plan.outputs {
        if plannable(v) {
            // An output lives from its write to the end.
            life.entry(v).or_insert((0, end)).1 = end;
        }
    }
    // Merge aliases into their roots.
    let mut groups: BTreeMap<usize, (usize, usize, usize)> = BTreeMap::new(); // root -> (first, last, bytes)
    let mut members: Vec<(usize, usize)> = Vec::new(); // (value, root)
    for (&v, &(a, b)) in &life {
        let r =
            find(v, &root).ok_or_else(|| ProgramError::Inconsistent(format!("aliases of value {v} form a cycle")))?;
        if !plannable(r) {
            return Err(ProgramError::Inconsistent(format!("value {v} aliases value {r}, which cannot be planned")));
        }
        let bytes = plan.values[v].as_tensor().map_or(0, Tensor::nbytes);
        let g = groups.entry(r).or_insert((a, b, 0));
        g.0 = g.0.min(a);
        g.1 = g.1.max(b);
        g.2 = g.2.max(bytes);
        members.push((v, r));
    }
    // Greedy by size, largest first (ties: earlier first use, then value index: deterministic).
    let mut order: Vec<(usize, (usize, usize, usize))> = groups.into_iter().collect();
    order.sort_by(|a, b| b.1 .2.cmp(&a.1 .2).then(a.1 .0.cmp(&b.1 .0)).then(a.0.cmp(&b.0)));
    let align = |x: u64| x.div_ceil(TENSOR_ALIGNMENT as u64) * TENSOR_ALIGNMENT as u64;
    let mut placed: Vec<(u64, u64, usize, usize)> = Vec::new(); // (offset, size, first, last)
    let mut offsets: BTreeMap<usize, u64> = BTreeMap::new();
    let mut total = 0u64;
    for (r, (first, last, bytes)) in order {
        let size = align(bytes as u64).max(TENSOR_ALIGNMENT as u64);
        let mut busy: Vec<(u64, u64)> =
            placed.iter().filter(|p| p.2 <= last && first <= p.3).map(|p| (p.0, p.0 + p.1)).collect();
        busy.sort_unstable();
        let mut at = 0u64;
        for (lo, hi) in busy {
            if at + size <= lo {
                break;
            }
            at = at.max(hi);
        }
        placed.push((at, size, first, last));
        offsets.insert(r, at);
        total = total.max(at + size);
    }
    for val in plan.values.iter_mut() {
        if let Value::Tensor(t) = val {
            if matches!(t.storage(), TensorStorage::Planned { initial: None, .. }) {
                t.allocation = None;
            }
        }
    }
    for (v, r) in members {
        let offset = offsets[&r];
        if let Some(Value::Tensor(t)) = plan.values.get_mut(v) {
            t.allocation = Some(Allocation { memory_id: 1, offset });
        }
    }
    plan.non_const_buffer_sizes = vec![0, total];
    plan.non_const_buffer_device.clear();
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Program, ProgramBuilder, ScalarType};

    #[test]
    fn tensors_whose_lifetimes_do_not_overlap_share_bytes() {
        let mut b = ProgramBuilder::new("forward");
        let x = b.input(ScalarType::Float, &[4]);
        let one = b.int(1);
        let t1 = b.tensor(ScalarType::Float, &[4]);
        let t2 = b.tensor(ScalarType::Float, &[4]);
        let t3 = b.tensor(ScalarType::Float, &[4]);
        b.call("aten::add.out", &[x, x, one, t1, t1]);
        b.call("aten::add.out", &[t1, t1, one, t2, t2]);
        b.call("aten::add.out", &[t2, t2, one, t3, t3]);
        b.output(t3);
        let bytes = b.build().unwrap();
        let program = Program::from_vec(bytes).unwrap();
        let mut plan = program.def().plans[0].clone();
        let total = plan_memory(&mut plan, &[]).unwrap();
        let off = |v: usize| plan.values[v].as_tensor().unwrap().allocation.unwrap().offset;
        // x and t2 are never live together, nor t1 and t3.
        assert_eq!(total, 32);
        assert_ne!(off(x), off(t1));
        assert_ne!(off(t1), off(t2));
        assert_ne!(off(t2), off(t3));
        assert!(off(x) == off(t2) || off(t1) == off(t3));
    }

    #[test]
    fn a_view_shares_its_base_and_extends_its_lifetime() {
        let mut b = ProgramBuilder::new("forward");
        let x = b.input(ScalarType::Float, &[4]);
        let one = b.int(1);
        let t1 = b.tensor(ScalarType::Float, &[4]);
        let view = b.tensor(ScalarType::Float, &[2, 2]);
        let t2 = b.tensor(ScalarType::Float, &[2, 2]);
        b.call("aten::add.out", &[x, x, one, t1, t1]);
        b.call("aten::add.out", &[view, view, one, t2, t2]);
        b.output(t2);
        let program = Program::from_vec(b.build().unwrap()).unwrap();
        let mut plan = program.def().plans[0].clone();
        plan_memory(&mut plan, &[(view, t1)]).unwrap();
        let off = |v: usize| plan.values[v].as_tensor().unwrap().allocation.unwrap().offset;
        assert_eq!(off(view), off(t1));
        assert_ne!(off(t2), off(t1));
        assert!(plan_memory(&mut plan, &[(view, view)]).is_err());
    }
}
