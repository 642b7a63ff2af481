//! `ferrite profile` and `ferrite debug numerics` end to end on the fixtures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ferrite() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferrite"))
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures")).join(rel)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrite-cli-troubleshoot-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lowered(name: &str, dir: &Path) -> PathBuf {
    let out = dir.join("lowered.pte");
    ok(&ferrite().arg("lower").arg(fixture(name)).arg("-o").arg(&out).output().expect("runs"));
    out
}

#[test]
fn profile_prints_a_table_and_writes_a_trace() {
    let dir = scratch("profile");
    let model = lowered("digits_cnn/portable.pte", &dir);
    let trace = dir.join("trace.json");
    let text = ok(&ferrite()
        .arg("profile")
        .arg(&model)
        .args(["--iters", "3", "--threads", "1", "--trace"])
        .arg(&trace)
        .output()
        .expect("runs"));
    assert!(text.contains("median ms") && text.contains("delegate call at instruction 0 (FerriteBackend)"), "{text}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&trace).expect("trace")).expect("JSON");
    assert!(json["traceEvents"].as_array().is_some_and(|e| !e.is_empty()));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn debug_numerics_lowers_in_memory_and_finds_no_divergence() {
    let text = ok(&ferrite()
        .args(["debug", "numerics"])
        .arg(fixture("digits_cnn/portable.pte"))
        .arg("-i")
        .arg(fixture("digits_cnn/input_0.npy"))
        .output()
        .expect("runs"));
    assert!(text.contains("lowered in memory") && text.contains("no divergence"), "{text}");
    assert!(text.contains("delegate nodes by their recorded origin"), "{text}");
}

#[test]
fn debug_numerics_of_a_lowered_file_needs_its_source() {
    let dir = scratch("numerics");
    let model = lowered("mlp/portable.pte", &dir);
    let out = ferrite().args(["debug", "numerics"]).arg(&model).output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("error[T002]") && stderr.contains("--reference"), "{stderr}");
    let text = ok(&ferrite()
        .args(["debug", "numerics", "--json"])
        .arg(&model)
        .arg("--reference")
        .arg(fixture("mlp/portable.pte"))
        .output()
        .expect("runs"));
    let json: serde_json::Value = serde_json::from_str(&text).expect("one JSON object");
    assert!(json["first_divergence"].is_null(), "{text}");
    assert!(json["rows"].as_array().is_some_and(|r| !r.is_empty()), "{text}");
    assert_eq!(json["origins_used"], true);
    let bad = ferrite()
        .args(["debug", "numerics", "--min-sqnr", "NaN"])
        .arg(&model)
        .arg("--reference")
        .arg(fixture("mlp/portable.pte"))
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("error[T001]"));
    std::fs::remove_dir_all(&dir).ok();
}

/// The book shows `ferrite doctor`'s report from these golden files (the machine line, which
/// differs from machine to machine, masked). Re-bless with `FERRITE_BLESS=1`.
#[test]
fn book_doctor_outputs_match() {
    let golden = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../book/src/generated"));
    for (file, model) in
        [("doctor-xnnpack.txt", "digits_cnn/xnnpack.pte"), ("doctor-mlp-dynamic.txt", "mlp_dynamic/portable.pte")]
    {
        let out = ferrite()
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .args(["doctor", "--threads", "2"])
            .arg(Path::new("tests/fixtures").join(model))
            .output()
            .expect("runs");
        let got: String = ok(&out)
            .lines()
            .map(|l| if l.starts_with("machine: ") { "machine: SIMD …, 2 thread(s), memory limit …" } else { l })
            .map(|l| format!("{l}\n"))
            .collect();
        let path = golden.join(file);
        if std::env::var_os("FERRITE_BLESS").is_some() {
            std::fs::write(&path, &got).expect("bless");
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(got, want, "{file} is stale: re-bless with FERRITE_BLESS=1 if the change is intended");
    }
}
