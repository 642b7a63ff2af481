//! Build a one-operation blob graph, encode it, decode (verify) it, and show that corrupt bytes
//! are errors, never a crash.
//!
//! `cargo run -p ferrite-blob --example blob_roundtrip`

use ferrite_blob::{BlobError, BlobGraph, BlobOp, BlobTensor, BlobValue, HEADER_LEN};
use ferrite_op_support::Op;
use ferrite_program::ScalarType;

fn main() -> Result<(), BlobError> {
    // ANCHOR: roundtrip
    let tensor = |sizes: &[usize], constant: Option<usize>| {
        BlobValue::Tensor(BlobTensor {
            dtype: ScalarType::Float,
            sizes: sizes.to_vec(),
            constant,
            alias_of: None,
            dynamic: false,
        })
    };
    // out = relu(x + bias), the relu fused into the add as a clamp.
    let graph = BlobGraph {
        values: vec![tensor(&[2, 3], None), tensor(&[3], Some(0)), BlobValue::Int(1), tensor(&[2, 3], None)],
        inputs: vec![0],
        outputs: vec![3],
        ops: vec![BlobOp { op: Op::Add, args: vec![0, 1, 2, 3, 3], activation: Some((0.0, f32::INFINITY)) }],
        constants: vec![[0.5f32, -1.0, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect()],
        debug: vec![],
    };
    let bytes = graph.encode()?;
    let decoded = BlobGraph::decode(&bytes)?; // verifies every offset, index and name
    assert_eq!(decoded, graph);
    println!("{} ops, {} values, {} bytes", decoded.ops.len(), decoded.values.len(), bytes.len());
    // ANCHOR_END: roundtrip

    let mut bad = bytes.clone();
    bad.truncate(HEADER_LEN + 8);
    println!("truncated: {}", BlobGraph::decode(&bad).expect_err("a truncated blob is an error"));
    let mut bad = bytes;
    bad[4] = 9; // a version from the future
    println!("newer version: {}", BlobGraph::decode(&bad).expect_err("an unknown version is an error"));
    Ok(())
}
