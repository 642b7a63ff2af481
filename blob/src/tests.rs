//! Round trips and corrupt blobs.

use ferrite_op_support::Op;
use ferrite_program::ScalarType;

use crate::*;

fn sample() -> BlobGraph {
    BlobGraph {
        values: vec![
            BlobValue::Tensor(BlobTensor {
                dtype: ScalarType::Float,
                sizes: vec![2, 3],
                constant: None,
                alias_of: None,
                dynamic: false,
            }),
            BlobValue::Tensor(BlobTensor {
                dtype: ScalarType::Float,
                sizes: vec![2, 3],
                constant: Some(0),
                alias_of: None,
                dynamic: false,
            }),
            BlobValue::Int(1),
            BlobValue::Tensor(BlobTensor {
                dtype: ScalarType::Float,
                sizes: vec![2, 3],
                constant: None,
                alias_of: None,
                dynamic: false,
            }),
            BlobValue::Tensor(BlobTensor {
                dtype: ScalarType::Float,
                sizes: vec![6],
                constant: None,
                alias_of: Some(3),
                dynamic: false,
            }),
            BlobValue::IntList(vec![6]),
            BlobValue::OptionalTensorList(vec![Some(0), None]),
            BlobValue::String("none".into()),
        ],
        inputs: vec![0],
        outputs: vec![4],
        ops: vec![BlobOp { op: Op::Add, args: vec![0, 1, 2, 3, 3], activation: Some((0.0, 6.0)) }],
        constants: vec![vec![7u8; 24]],
        debug: vec![DebugValue { value: 3, origin: 17, channels_last: true }],
    }
}

#[test]
fn round_trip() {
    let g = sample();
    let bytes = g.encode().expect("encodes");
    assert_eq!(&bytes[..4], MAGIC);
    assert_eq!(BlobGraph::decode(&bytes).expect("decodes"), g);
}

#[test]
fn corrupt_blobs_are_errors() {
    let bytes = sample().encode().expect("encodes");
    for cut in [0, 3, 10, HEADER_LEN, bytes.len() / 2, bytes.len() - 1] {
        assert!(BlobGraph::decode(&bytes[..cut]).is_err(), "truncated at {cut}");
    }
    for at in 0..bytes.len() {
        let mut b = bytes.clone();
        b[at] ^= 0x5a;
        // Either an error or a still-valid blob; never a panic.
        let _ = BlobGraph::decode(&b);
    }
    let mut b = bytes.clone();
    b[4] = 9;
    assert!(BlobGraph::decode(&b).expect_err("version").to_string().contains("version 9"));
    // A graph section shorter than a FlatBuffer's root offset and identifier (found by the
    // blob_init fuzz target: the identifier check panicked).
    for len in 0..8u64 {
        let mut b = bytes.clone();
        b[16..24].copy_from_slice(&len.to_le_bytes());
        let e = BlobGraph::decode(&b).expect_err("short graph");
        assert!(e.to_string().contains("identifier") || e.to_string().contains("misplaced"), "{len}: {e}");
    }
}

#[test]
fn bad_semantics_are_errors() {
    let mut g = sample();
    g.values[4] = BlobValue::Tensor(BlobTensor {
        dtype: ScalarType::Float,
        sizes: vec![5],
        constant: None,
        alias_of: Some(3),
        dynamic: false,
    });
    assert!(BlobGraph::decode(&g.encode().expect("encodes")).is_err());
    let mut g = sample();
    g.constants[0].pop();
    assert!(BlobGraph::decode(&g.encode().expect("encodes")).is_err());
    let mut g = sample();
    g.inputs = vec![2];
    assert!(BlobGraph::decode(&g.encode().expect("encodes")).is_err());
    // Debug entries name tensors of the blob.
    for value in [2, 99] {
        let mut g = sample();
        g.debug[0].value = value;
        assert!(BlobGraph::decode(&g.encode().expect("encodes")).is_err(), "debug entry for value {value}");
    }
}

#[test]
fn blobs_without_debug_entries_still_decode() {
    let mut g = sample();
    g.debug.clear();
    assert_eq!(BlobGraph::decode(&g.encode().expect("encodes")).expect("decodes"), g);
}
