//! Deterministic inputs built from a method's metadata, for benchmarks, smoke tests and
//! examples that have no real data.

use ferrite_program::{Program, ScalarType, Value};

use crate::error::{Result, RuntimeError};
use crate::tensor::TensorData;

/// Deterministic inputs for `method` of `program`, built from its metadata (dynamic shapes at
/// their upper bound): floats follow a fixed pseudo-random sequence in [-1, 1), integers cycle
/// through 0..4, booleans alternate.
pub fn default_inputs(program: &Program<'_>, method: &str) -> Result<Vec<TensorData>> {
    let plan = program.plan(method).ok_or_else(|| RuntimeError::NoSuchMethod {
        name: method.to_string(),
        available: program.method_names().collect::<Vec<_>>().join(", "),
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
                return Err(RuntimeError::Unsupported(format!(
                    "default inputs for input {i} of {method}, which is not a tensor"
                )));
            };
            let n = t.numel();
            let sizes = t.sizes.clone();
            match t.scalar_type {
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
                other => Err(RuntimeError::Unsupported(format!("default inputs for input {i} of {method}: {other}"))),
            }
        })
        .collect()
}
