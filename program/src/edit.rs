//! Edits on a method's value table that tools rewriting programs share.

use crate::model::*;

/// Removes the values of `plan` that no instruction, input, output or list refers to, and
/// renumbers the rest (in order). Returns, for each old value index, its new one (`None` for a
/// value removed).
pub fn compact_values(plan: &mut ExecutionPlan) -> Vec<Option<usize>> {
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
    let mut remap = vec![None; n];
    let mut values = Vec::new();
    for (v, val) in plan.values.iter().enumerate() {
        if used[v] {
            remap[v] = Some(values.len());
            values.push(val.clone());
        }
    }
    let r = |v: &mut usize| *v = remap[*v].unwrap_or(*v);
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
    remap
}
