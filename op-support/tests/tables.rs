//! The generated op-support artefacts stay in step with the registry: `op-support.csv` (the
//! template's columns), the book's table, and an `insta` snapshot. Re-bless the files with
//! `FERRITE_BLESS=1` and the snapshot with `cargo insta review` (or `INSTA_UPDATE=always`).

use std::path::Path;

use ferrite_op_support::{csv, lookup, markdown, registry};

fn check_file(rel: &str, want: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    if std::env::var_os("FERRITE_BLESS").is_some() {
        std::fs::write(&path, want).expect("bless");
    }
    assert_eq!(
        std::fs::read_to_string(&path).unwrap_or_default(),
        want,
        "{rel} is stale: re-bless with FERRITE_BLESS=1"
    );
}

#[test]
fn csv_and_book_table_are_current() {
    insta::assert_snapshot!("op_support_csv", csv());
    check_file("op-support.csv", &csv());
    check_file("../book/src/generated/op-support.md", &markdown());
}

#[test]
fn registry_is_well_formed() {
    let ops = registry();
    assert!(ops.len() >= 40, "only {} operators", ops.len());
    let mut names = std::collections::BTreeSet::new();
    for spec in ops {
        assert!(names.insert(spec.op), "{} listed twice", spec.op);
        assert!(!spec.op.is_backend_only(), "{} is written by lowering, not by programs", spec.op);
        assert!(!spec.dtypes.is_empty(), "{} has no dtype", spec.op);
        assert!(std::ptr::eq(lookup(spec.op).expect("found"), spec));
    }
    let header = csv().lines().next().map(str::to_string);
    assert_eq!(header.as_deref(), Some("Operator,Compute DType,Quantization,Constraints"));
    assert_eq!(csv().lines().count(), ops.len() + 1);
}
