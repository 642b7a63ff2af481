//! Extraction: copies one partition out of its method into a blob graph — its values
//! (renumbered), operations, constants and memory-planned view aliases.

use std::collections::BTreeMap;

use ferrite_blob::{BlobGraph, BlobOp, BlobTensor, BlobValue, DebugValue};
use ferrite_op_support::Op;
use ferrite_program::graph::Graph;
use ferrite_program::{ExecutionPlan, Instruction, Program, ShapeDynamism, TensorStorage, Value};

use crate::compile::err;
use crate::compile::Result;

/// Copies the partition out of the plan: its values (renumbered), operations and constants.
pub(crate) fn extract(
    program: &Program<'_>,
    plan: &ExecutionPlan,
    instructions: &[usize],
    inputs: &[usize],
    outputs: &[usize],
) -> Result<BlobGraph> {
    let graph = Graph::new(plan);
    let chain = plan.chains.first().ok_or_else(|| err("the method has no instructions"))?;
    let mut g = BlobGraph::default();
    let mut map: BTreeMap<usize, usize> = BTreeMap::new();
    let mut constant_of: BTreeMap<usize, usize> = BTreeMap::new();

    fn add(
        v: usize,
        plan: &ExecutionPlan,
        program: &Program<'_>,
        g: &mut BlobGraph,
        map: &mut BTreeMap<usize, usize>,
        constant_of: &mut BTreeMap<usize, usize>,
    ) -> Result<usize> {
        if let Some(&b) = map.get(&v) {
            return Ok(b);
        }
        let value = plan.values.get(v).ok_or_else(|| err(format!("value {v} out of range")))?;
        let bv = match value {
            Value::Null => BlobValue::None,
            Value::Int(x) => BlobValue::Int(*x),
            Value::Double(x) => BlobValue::Double(*x),
            Value::Bool(x) => BlobValue::Bool(*x),
            Value::String(s) => BlobValue::String(s.clone()),
            Value::IntList(items) => BlobValue::IntList(
                items
                    .iter()
                    .map(|&i| match plan.values.get(i) {
                        Some(Value::Int(x)) => Ok(*x),
                        _ => Err(err(format!("int list item {i} is not an Int"))),
                    })
                    .collect::<Result<_>>()?,
            ),
            Value::DoubleList(items) => BlobValue::DoubleList(items.clone()),
            Value::BoolList(items) => BlobValue::BoolList(items.clone()),
            Value::Tensor(t) => {
                let constant = match t.storage() {
                    TensorStorage::Constant { .. } => {
                        let data =
                            program.tensor_data(t).ok_or_else(|| err(format!("constant value {v} has no data")))?;
                        let next = g.constants.len();
                        let c = *constant_of.entry(v).or_insert(next);
                        if c == next {
                            g.constants.push(data.to_vec());
                        }
                        Some(c)
                    }
                    _ => None,
                };
                if !t.is_contiguous() {
                    return Err(err(format!("value {v} is not in the default dim order")));
                }
                BlobValue::Tensor(BlobTensor {
                    dtype: t.scalar_type,
                    sizes: t.sizes.clone(),
                    constant,
                    alias_of: None,
                    dynamic: t.dynamism != ShapeDynamism::Static,
                })
            }
            Value::TensorList(items) => {
                let mut ids = Vec::with_capacity(items.len());
                for &i in items {
                    ids.push(add(i, plan, program, g, map, constant_of)?);
                }
                BlobValue::TensorList(ids)
            }
            Value::OptionalTensorList(items) => {
                let mut ids = Vec::with_capacity(items.len());
                for i in items {
                    ids.push(match i {
                        Some(i) => Some(add(*i, plan, program, g, map, constant_of)?),
                        None => None,
                    });
                }
                BlobValue::OptionalTensorList(ids)
            }
        };
        let computed = matches!(&bv, BlobValue::Tensor(t) if t.constant.is_none());
        g.values.push(bv);
        let b = g.values.len() - 1;
        if computed {
            g.debug.push(DebugValue { value: b, origin: v, channels_last: false });
        }
        map.insert(v, b);
        Ok(b)
    }

    for &v in inputs {
        let b = add(v, plan, program, &mut g, &mut map, &mut constant_of)?;
        g.inputs.push(b);
    }
    for &i in instructions {
        let Some(Instruction::KernelCall { op_index, args }) = chain.instructions.get(i) else {
            return Err(err(format!("instruction {i} is not a kernel call")));
        };
        let name =
            plan.operators.get(*op_index).ok_or_else(|| err(format!("operator {op_index} out of range")))?.qualified();
        let op = Op::from_name(&name)
            .ok_or_else(|| err(format!("instruction {i}: {name} is not an operator Ferrite knows")))?;
        let mut bargs = Vec::with_capacity(args.len());
        for &a in args {
            bargs.push(add(a, plan, program, &mut g, &mut map, &mut constant_of)?);
        }
        g.ops.push(BlobOp { op, args: bargs, activation: None });
    }
    for &v in outputs {
        let b = add(v, plan, program, &mut g, &mut map, &mut constant_of)?;
        g.outputs.push(b);
    }
    // Memory-planned view aliases inside the partition: a value that shares the memory of one the
    // partition writes must share it here too.
    for (&v, &b) in &map {
        if let Some(u) = graph.alias_of(v) {
            if let (Some(&ub), false) = (map.get(&u), g.inputs.contains(&b)) {
                if let Some(BlobValue::Tensor(t)) = g.values.get_mut(b) {
                    t.alias_of = Some(ub);
                }
            }
        }
    }
    // Resolve alias chains to their roots.
    for b in 0..g.values.len() {
        let mut r = b;
        let mut hops = 0;
        while let Some(a) = g.tensor(r).and_then(|t| t.alias_of) {
            r = a;
            hops += 1;
            if hops > g.values.len() {
                return Err(err("alias cycle"));
            }
        }
        if r != b {
            if let Some(BlobValue::Tensor(t)) = g.values.get_mut(b) {
                t.alias_of = Some(r);
            }
        }
    }
    Ok(g)
}
