//! A compact description of a program: what `ferrite inspect` prints.

use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt;

use crate::model::*;
use crate::Program;

/// Summary of a whole program.
#[derive(Debug, Clone, Serialize)]
pub struct ProgramSummary {
    /// One entry per method, in file order.
    pub methods: Vec<MethodSummary>,
    /// Bytes of constant data.
    pub constant_bytes: u64,
    /// Number of segments.
    pub segments: usize,
}

/// Summary of one method.
#[derive(Debug, Clone, Serialize)]
pub struct MethodSummary {
    /// Method name.
    pub name: String,
    /// Inputs, in order.
    pub inputs: Vec<IoSummary>,
    /// Outputs, in order.
    pub outputs: Vec<IoSummary>,
    /// Sorted unique `name.overload` of operators that kernel calls use.
    pub operators: Vec<String>,
    /// Number of kernel-call instructions.
    pub kernel_calls: usize,
    /// Number of delegate-call instructions.
    pub delegate_calls: usize,
    /// Delegates, in table order.
    pub delegates: Vec<DelegateSummary>,
    /// Memory-plan arena sizes in bytes (entry 0 of the file's list, reserved, is left out).
    pub arenas: Vec<u64>,
}

/// An input or output.
#[derive(Debug, Clone, Serialize)]
pub struct IoSummary {
    /// `float32`, `int64`, ... or the value kind for non-tensors (`Int`, `None`, ...).
    pub dtype: String,
    /// Sizes (upper bounds for dynamic shapes); empty for non-tensors.
    pub shape: Vec<usize>,
    /// `static`, `dynamic_bound`, `dynamic_unbound`, or `none` for non-tensors.
    pub dynamism: String,
}

/// A delegate.
#[derive(Debug, Clone, Serialize)]
pub struct DelegateSummary {
    /// Backend id.
    pub id: String,
    /// Size of its processed blob.
    pub bytes: usize,
    /// `segment` or `inline`.
    pub location: String,
}

fn io(v: &Value) -> IoSummary {
    match v {
        Value::Tensor(t) => IoSummary {
            dtype: t.scalar_type.name().to_string(),
            shape: t.sizes.clone(),
            dynamism: t.dynamism.name().to_string(),
        },
        other => IoSummary { dtype: other.kind().to_string(), shape: Vec::new(), dynamism: "none".into() },
    }
}

impl ProgramSummary {
    /// Summarises `program`.
    pub fn of(program: &Program<'_>) -> Self {
        let def = program.def();
        let methods = def
            .plans
            .iter()
            .map(|p| {
                let mut kernel_calls = 0;
                let mut delegate_calls = 0;
                let mut operators = BTreeSet::new();
                for ins in p.chains.iter().flat_map(|c| &c.instructions) {
                    match ins {
                        Instruction::KernelCall { op_index, .. } => {
                            kernel_calls += 1;
                            if let Some(op) = p.operators.get(*op_index) {
                                operators.insert(op.qualified());
                            }
                        }
                        Instruction::DelegateCall { .. } => delegate_calls += 1,
                        _ => {}
                    }
                }
                MethodSummary {
                    name: p.name.clone(),
                    inputs: p.inputs.iter().filter_map(|&i| p.values.get(i)).map(io).collect(),
                    outputs: p.outputs.iter().filter_map(|&i| p.values.get(i)).map(io).collect(),
                    operators: operators.into_iter().collect(),
                    kernel_calls,
                    delegate_calls,
                    delegates: p
                        .delegates
                        .iter()
                        .map(|d| DelegateSummary {
                            id: d.id.clone(),
                            bytes: program.delegate_data(d).map_or(0, <[u8]>::len),
                            location: match d.processed {
                                DataLocation::Inline(_) => "inline",
                                DataLocation::Segment(_) => "segment",
                            }
                            .into(),
                        })
                        .collect(),
                    arenas: p.non_const_buffer_sizes.iter().skip(1).copied().collect(),
                }
            })
            .collect();
        ProgramSummary { methods, constant_bytes: program.constant_bytes(), segments: def.segments.len() }
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn fmt_io(f: &mut fmt::Formatter<'_>, label: &str, list: &[IoSummary]) -> fmt::Result {
    writeln!(f, "  {label}:")?;
    if list.is_empty() {
        writeln!(f, "    (none)")?;
    }
    for (i, x) in list.iter().enumerate() {
        let dims: Vec<String> = x.shape.iter().map(usize::to_string).collect();
        let dynamic = if x.dynamism.starts_with("dynamic") { format!("  ({})", x.dynamism) } else { String::new() };
        writeln!(f, "    {i}: {} [{}]{dynamic}", x.dtype, dims.join(", "))?;
    }
    Ok(())
}

impl fmt::Display for ProgramSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "constants: {}, segments: {}", human_bytes(self.constant_bytes), self.segments)?;
        for m in &self.methods {
            writeln!(f)?;
            writeln!(f, "method {}", m.name)?;
            fmt_io(f, "inputs", &m.inputs)?;
            fmt_io(f, "outputs", &m.outputs)?;
            writeln!(f, "  instructions: {} kernel calls, {} delegate calls", m.kernel_calls, m.delegate_calls)?;
            if !m.operators.is_empty() {
                writeln!(f, "  operators ({}):", m.operators.len())?;
                for op in &m.operators {
                    writeln!(f, "    {op}")?;
                }
            }
            if !m.delegates.is_empty() {
                writeln!(f, "  delegates ({}):", m.delegates.len())?;
                for (i, d) in m.delegates.iter().enumerate() {
                    writeln!(f, "    {i}: {} ({}, {})", d.id, human_bytes(d.bytes as u64), d.location)?;
                }
            }
            let total: u64 = m.arenas.iter().sum();
            let arenas: Vec<String> = m.arenas.iter().map(|&a| human_bytes(a)).collect();
            writeln!(
                f,
                "  memory plan: {} in {} arena(s) [{}]",
                human_bytes(total),
                m.arenas.len(),
                arenas.join(", ")
            )?;
        }
        Ok(())
    }
}
