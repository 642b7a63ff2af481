//! Every fixture variant loads, verifies, summarises like `manifest.json` says, and survives a
//! write/read round trip with identical structure and bytes.
//!
//! Fixtures come from `tests/fixtures` (always present) and, when it exists beside the
//! repository, `../shared/fixtures` (adds the large ones such as mobilenet_v2).

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use ferrite_program::{Program, ProgramDef, ProgramSummary, ProgramWriter, Value};

fn fixture_roots() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut roots = vec![root.join("tests/fixtures")];
    let shared = root.join("../shared/fixtures");
    if shared.join("manifest.json").exists() {
        roots.push(shared);
    }
    roots
}

/// (fixture dir, variant name, manifest entry) for every variant file present.
fn variants() -> Vec<(PathBuf, String, serde_json::Value)> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for root in fixture_roots() {
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(root.join("manifest.json")).expect("manifest"))
                .expect("json");
        for f in manifest["fixtures"].as_array().expect("fixtures") {
            let name = f["name"].as_str().expect("name");
            for (vname, v) in f["variants"].as_object().expect("variants") {
                let path = root.join(name).join(v["file"].as_str().expect("file"));
                if path.exists() && seen.insert(format!("{name}/{vname}")) {
                    out.push((path, format!("{name}/{vname}"), v.clone()));
                }
            }
        }
    }
    assert!(out.len() >= 20, "expected the bundled fixtures, found {}", out.len());
    out
}

#[test]
fn every_variant_loads_and_matches_the_manifest() {
    for (path, label, entry) in variants() {
        let program = Program::read(&path).unwrap_or_else(|e| panic!("{label}: {e}"));
        let summary = ProgramSummary::of(&program);
        let plans = entry["plans"].as_array().expect("plans");
        assert_eq!(summary.methods.len(), plans.len(), "{label}: method count");
        for plan in plans {
            let method = plan["method"].as_str().expect("method");
            let m = summary
                .methods
                .iter()
                .find(|m| m.name == method)
                .unwrap_or_else(|| panic!("{label}: no method {method}"));
            let ops: Vec<String> = plan["operators"]
                .as_array()
                .expect("ops")
                .iter()
                .map(|o| o.as_str().expect("op").to_string())
                .collect();
            assert_eq!(m.operators, ops, "{label}/{method}: operators");
            let ids: Vec<&str> = m.delegates.iter().map(|d| d.id.as_str()).collect();
            let want: Vec<&str> =
                plan["delegates"].as_array().expect("delegates").iter().map(|d| d.as_str().expect("id")).collect();
            assert_eq!(ids, want, "{label}/{method}: delegates");
            assert_eq!(m.delegate_calls, want.len(), "{label}/{method}: delegate calls");
        }
        assert_eq!(program.bytes().len() as u64, entry["bytes"].as_u64().expect("bytes"), "{label}: size");
    }
}

#[test]
fn slice_file_and_mmap_loads_agree() {
    for (path, label, _) in variants() {
        let bytes = std::fs::read(&path).expect("read");
        let a = Program::from_bytes(&bytes).unwrap_or_else(|e| panic!("{label}: {e}"));
        let b = Program::mmap(&path).unwrap_or_else(|e| panic!("{label}: {e}"));
        let c = Program::from_vec(bytes.clone()).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(a.def(), b.def(), "{label}");
        assert_eq!(a.def(), c.def(), "{label}");
    }
}

#[test]
fn constants_are_borrowed_not_copied() {
    let path = fixture_roots()[0].join("mlp/portable.pte");
    let bytes = std::fs::read(path).expect("read");
    let program = Program::from_bytes(&bytes).expect("load");
    let range = bytes.as_ptr_range();
    let mut checked = 0;
    for plan in &program.def().plans {
        for v in &plan.values {
            if let Value::Tensor(t) = v {
                if let Some(data) = program.tensor_data(t) {
                    assert!(range.contains(&data.as_ptr()), "constant data must point into the loaded bytes");
                    assert_eq!(data.len(), t.nbytes());
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 4, "mlp has weights and biases");
}

/// The def with segment offsets cleared: offsets depend on layout, not structure.
fn structure(def: &ProgramDef) -> ProgramDef {
    let mut d = def.clone();
    for s in &mut d.segments {
        s.offset = 0;
    }
    d
}

fn assert_same_data(label: &str, a: &Program<'_>, b: &Program<'_>) {
    for (pa, pb) in a.def().plans.iter().zip(&b.def().plans) {
        for (i, (va, vb)) in pa.values.iter().zip(&pb.values).enumerate() {
            if let (Value::Tensor(ta), Value::Tensor(tb)) = (va, vb) {
                assert_eq!(a.tensor_data(ta), b.tensor_data(tb), "{label}: value {i} data");
            }
        }
        for (da, db) in pa.delegates.iter().zip(&pb.delegates) {
            assert_eq!(a.delegate_data(da), b.delegate_data(db), "{label}: delegate data");
        }
    }
    for n in &a.def().named_data {
        assert_eq!(a.named_data(&n.key), b.named_data(&n.key), "{label}: named data {}", n.key);
    }
}

#[test]
fn write_then_read_keeps_structure_and_bytes() {
    for (path, label, _) in variants() {
        let original = Program::read(&path).expect("load");
        let bytes = ProgramWriter::from_program(&original).to_bytes().unwrap_or_else(|e| panic!("{label}: {e}"));
        let again = Program::from_bytes(&bytes).unwrap_or_else(|e| panic!("{label}: rewritten file rejected: {e}"));
        assert_eq!(structure(original.def()), structure(again.def()), "{label}: structure");
        assert_eq!(original.header().is_some(), again.header().is_some(), "{label}: header presence");
        assert_same_data(&label, &original, &again);
        // Writing is deterministic and a fixed point.
        let twice = ProgramWriter::from_program(&again).to_bytes().expect("write");
        assert_eq!(bytes, twice, "{label}: second write differs");
        // ExecuTorch's layout: segments start at a 128-byte boundary.
        if let Some(h) = again.header() {
            assert_eq!(h.segment_base_offset % 128, 0, "{label}");
        }
    }
}

#[test]
fn modified_program_round_trips() {
    let path = fixture_roots()[0].join("two_methods/portable.pte");
    let original = Program::read(path).expect("load");
    let mut w = ProgramWriter::from_program(&original);
    w.def_mut().plans.retain(|p| p.name == "forward");
    let extra = w.push_segment(Cow::Owned(vec![7u8; 300]));
    let bytes = w.to_bytes().expect("write");
    let p = Program::from_bytes(&bytes).expect("reload");
    assert_eq!(p.method_names().collect::<Vec<_>>(), ["forward"]);
    assert_eq!(p.segment(extra), Some(&[7u8; 300][..]));
}

#[test]
fn write_to_path_is_atomic() {
    let dir = std::env::temp_dir().join(format!("ferrite-write-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let original = Program::read(fixture_roots()[0].join("mlp/portable.pte")).expect("load");
    let out = dir.join("out.pte");
    ProgramWriter::from_program(&original).write_to_path(&out).expect("write");
    Program::read(&out).expect("reload");
    // A directory that does not exist: the write fails and leaves nothing behind.
    let bad = dir.join("missing/out.pte");
    assert!(ProgramWriter::from_program(&original).write_to_path(&bad).is_err());
    let leftovers: Vec<_> = std::fs::read_dir(&dir).expect("ls").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("out.pte")]);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// The graph view of every fixture method is a well-formed dataflow graph: every kernel call
/// writes something, each value has at most one writer, and every tensor a node reads is a
/// constant, a method input, planned state, or written by an earlier node.
#[test]
fn graph_view_is_consistent_on_every_fixture() {
    use ferrite_program::graph::Graph;
    for (path, label, _) in variants() {
        let program = Program::read(&path).expect("loads");
        for plan in &program.def().plans {
            let g = Graph::new(plan);
            let mut written = std::collections::BTreeSet::new();
            for (n, node) in g.nodes().iter().enumerate() {
                assert!(!node.outputs.is_empty(), "{label}/{}: node {n} ({:?}) writes nothing", plan.name, node.kind);
                for &v in &node.inputs {
                    let t = g.tensor(v).expect("tensor");
                    let ok = g.is_constant(v)
                        || plan.inputs.contains(&v)
                        || written.contains(&v)
                        || matches!(t.storage(), ferrite_program::TensorStorage::Planned { .. });
                    assert!(ok, "{label}/{}: node {n} reads value {v} before anything writes it", plan.name);
                    if let Some(p) = g.producer(v) {
                        // A later writer is a state update (copy_ into a mutable buffer).
                        let state = matches!(t.storage(), ferrite_program::TensorStorage::Planned { .. });
                        assert!(
                            p < n || state,
                            "{label}/{}: node {n} reads value {v} produced later by {p}",
                            plan.name
                        );
                    }
                }
                for &v in &node.outputs {
                    assert!(g.tensor(v).is_some(), "{label}: output {v} is not a tensor");
                    written.insert(v);
                }
            }
        }
    }
}

#[test]
fn released_pages_read_back_unchanged() {
    let path = fixture_roots()[0].join("tiny_gpt/portable.pte");
    let mapped = Program::mmap(&path).expect("mmap");
    let read = Program::read(&path).expect("read");
    // The constant segment spans many pages: whole pages inside it are released, no byte outside.
    let blob =
        (0..mapped.def().segments.len()).filter_map(|i| mapped.segment(i)).max_by_key(|s| s.len()).expect("a segment");
    let before = blob.to_vec();
    let released = mapped.release(blob);
    if cfg!(unix) {
        assert!(released > 0 && released <= blob.len(), "released {released} of {}", blob.len());
        assert_eq!(released % 4096, 0);
    }
    assert_eq!(blob, before.as_slice(), "released bytes read back unchanged");
    assert_eq!(mapped.def(), read.def());
    // Programs read into memory, and bytes that are not the program's, release nothing.
    assert_eq!(read.release(read.bytes()), 0);
    assert_eq!(mapped.release(&before), 0);
    assert_eq!(mapped.release(&blob[..10]), 0, "less than a page");
}
