//! Running programs: loading, default inputs, and the facade's `execute` entry point.

use std::path::Path;
use std::sync::Arc;

use ferrite_program::{Program, ScalarType, Value};
use ferrite_runtime::{Runtime, TensorData};

use crate::Error;

/// Loads (memory-maps) and verifies a program for execution.
pub fn load(path: impl AsRef<Path>) -> Result<Arc<Program<'static>>, Error> {
    Ok(Arc::new(Program::mmap(path)?))
}

/// Runs `method` of `program` once on `inputs` with the portable kernels and returns its
/// outputs. For repeated runs, load a [`ferrite_runtime::Method`] once with
/// [`Runtime::load_method`] instead.
pub fn execute(program: &Arc<Program<'static>>, method: &str, inputs: &[TensorData]) -> Result<Vec<TensorData>, Error> {
    let mut m = Runtime::new().load_method(program, method)?;
    Ok(m.run(inputs)?)
}

/// Deterministic inputs for `method`, built from its metadata (dynamic shapes at their upper
/// bound): floats follow a fixed pseudo-random sequence in [-1, 1), integers cycle through
/// 0..4, booleans alternate.
pub fn default_inputs(program: &Program<'_>, method: &str) -> Result<Vec<TensorData>, Error> {
    let plan = program.plan(method).ok_or_else(|| {
        Error::Runtime(ferrite_runtime::RuntimeError::NoSuchMethod {
            name: method.to_string(),
            available: program.method_names().collect::<Vec<_>>().join(", "),
        })
    })?;
    let mut seed: u64 = 0x243F_6A88_85A3_08D3;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    plan.inputs
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let Some(Value::Tensor(t)) = plan.values.get(v) else {
                return Err(Error::Usage(format!("input {i} of {method} is not a tensor; pass it with -i")));
            };
            let n = t.numel();
            let sizes = t.sizes.clone();
            let r = match t.scalar_type {
                ScalarType::Float => TensorData::from_slice(sizes, &(0..n).map(|_| next() as f32).collect::<Vec<_>>()),
                ScalarType::Double => TensorData::from_slice(sizes, &(0..n).map(|_| next()).collect::<Vec<_>>()),
                ScalarType::Half => {
                    TensorData::from_slice(sizes, &(0..n).map(|_| half::f16::from_f64(next())).collect::<Vec<_>>())
                }
                ScalarType::BFloat16 => {
                    TensorData::from_slice(sizes, &(0..n).map(|_| half::bf16::from_f64(next())).collect::<Vec<_>>())
                }
                ScalarType::Long => TensorData::from_slice(sizes, &(0..n).map(|k| (k % 4) as i64).collect::<Vec<_>>()),
                ScalarType::Int => TensorData::from_slice(sizes, &(0..n).map(|k| (k % 4) as i32).collect::<Vec<_>>()),
                ScalarType::Char => TensorData::from_slice(sizes, &(0..n).map(|k| (k % 4) as i8).collect::<Vec<_>>()),
                ScalarType::Byte => TensorData::from_slice(sizes, &(0..n).map(|k| (k % 4) as u8).collect::<Vec<_>>()),
                ScalarType::Bool => TensorData::from_bools(sizes, &(0..n).map(|k| k % 2 == 0).collect::<Vec<_>>()),
                other => return Err(Error::Usage(format!("input {i} of {method} is {other}; pass it with -i"))),
            };
            Ok(r?)
        })
        .collect()
}

/// A one-line description of a tensor: dtype, shape and the first values.
pub fn describe(t: &TensorData) -> String {
    let first: Vec<String> = t
        .to_f64_vec()
        .map(|v| {
            v.iter()
                .take(6)
                .map(|x| format!("{x:.6}").trim_end_matches('0').trim_end_matches('.').to_string())
                .collect()
        })
        .unwrap_or_default();
    let more = if t.numel() > 6 { ", ..." } else { "" };
    format!("{} {:?} [{}{more}]", t.dtype(), t.sizes(), first.join(", "))
}
