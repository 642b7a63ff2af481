//! **Dead code and compaction**: operations whose outputs nobody reads are dropped, then the
//! values and constants nothing refers to, renumbering the rest.

use ferrite_blob::{BlobGraph, BlobValue};

use crate::graph::{is_output, op_outputs, readers};
use crate::PassStats;

pub(crate) fn remove_dead_ops(g: &mut BlobGraph, stats: &mut PassStats) {
    loop {
        let dead = (0..g.ops.len()).rev().find(|&k| {
            let outs = op_outputs(g, &g.ops[k]);
            !outs.is_empty()
                && outs.iter().all(|&o| {
                    readers(g, o, Some(k)) == 0
                        && !is_output(g, o)
                        && !g.values.iter().enumerate().any(|(v, val)| {
                            matches!(val, BlobValue::Tensor(t) if t.alias_of == Some(o))
                                && (is_output(g, v) || readers(g, v, None) > 0)
                        })
                })
        });
        match dead {
            Some(k) => {
                g.ops.remove(k);
                stats.dead_ops_removed += 1;
            }
            None => break,
        }
    }
}

/// Drops values and constants nothing refers to, renumbering the rest.
pub(crate) fn compact(g: &mut BlobGraph) {
    let n = g.values.len();
    let mut used = vec![false; n];
    let mut stack: Vec<usize> = g.inputs.iter().chain(&g.outputs).copied().collect();
    for op in &g.ops {
        stack.extend(op.args.iter().copied());
    }
    while let Some(v) = stack.pop() {
        if v >= n || used[v] {
            continue;
        }
        used[v] = true;
        match &g.values[v] {
            BlobValue::Tensor(t) => stack.extend(t.alias_of),
            BlobValue::TensorList(items) => stack.extend(items.iter().copied()),
            BlobValue::OptionalTensorList(items) => stack.extend(items.iter().flatten().copied()),
            _ => {}
        }
    }
    let mut remap = vec![usize::MAX; n];
    let mut values = Vec::new();
    for (v, val) in g.values.iter().enumerate() {
        if used[v] {
            remap[v] = values.len();
            values.push(val.clone());
        }
    }
    let mut const_remap = vec![usize::MAX; g.constants.len()];
    let mut constants = Vec::new();
    for val in &mut values {
        match val {
            BlobValue::Tensor(t) => {
                t.alias_of = t.alias_of.map(|a| remap[a]);
                if let Some(c) = t.constant {
                    if const_remap[c] == usize::MAX {
                        const_remap[c] = constants.len();
                        constants.push(std::mem::take(&mut g.constants[c]));
                    }
                    t.constant = Some(const_remap[c]);
                }
            }
            BlobValue::TensorList(items) => items.iter_mut().for_each(|i| *i = remap[*i]),
            BlobValue::OptionalTensorList(items) => items.iter_mut().flatten().for_each(|i| *i = remap[*i]),
            _ => {}
        }
    }
    for op in &mut g.ops {
        op.args.iter_mut().for_each(|a| *a = remap[*a]);
    }
    g.inputs.iter_mut().for_each(|a| *a = remap[*a]);
    g.outputs.iter_mut().for_each(|a| *a = remap[*a]);
    g.debug.retain(|d| d.value < n && used[d.value]);
    g.debug.iter_mut().for_each(|d| d.value = remap[d.value]);
    g.values = values;
    g.constants = constants;
}
