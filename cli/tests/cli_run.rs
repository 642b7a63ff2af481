//! `ferrite run`, `bench` and `demo` end to end: outputs match ExecuTorch's references, and every
//! kind of bad input is a coded error with exit code 2, never a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ferrite() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferrite"))
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures")).join(rel)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrite-cli-run-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Asserts a clean failure: exit code 2, `error[CODE]` and a hint on stderr, no panic.
fn assert_fails_with(out: &Output, code: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains(&format!("error[{code}]")), "expected {code}, got: {stderr}");
    assert!(stderr.contains("hint:"), "no hint: {stderr}");
    assert!(stderr.contains(&format!("see: the book, troubleshooting/error-codes.html#{code}")), "no link: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
}

#[test]
fn run_writes_outputs_matching_executorch() {
    let dir = scratch("ok");
    let out = ferrite()
        .args(["run", "--threads", "1", "-o"])
        .arg(&dir)
        .arg(fixture("mlp/portable.pte"))
        .arg("-i")
        .arg(fixture("mlp/input_0.npy"))
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("output 0: float32 [4, 10]"), "{stdout}");
    let got = ferrite::runtime::read_npy(&dir.join("output_0.npy")).expect("output written");
    let want = ferrite::runtime::read_npy(&fixture("mlp/portable.output_0.npy")).expect("reference");
    let (g, w) = (got.to_f64_vec().expect("f64"), want.to_f64_vec().expect("f64"));
    assert_eq!(got.sizes(), want.sizes());
    assert!(g.iter().zip(&w).all(|(a, b)| (a - b).abs() <= 1e-4), "{g:?} vs {w:?}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn reference_accumulation_reproduces_executorch_bit_for_bit() {
    // Convolutions and matrix products in ExecuTorch's order: the float CNN and MLP give exactly
    // ExecuTorch's outputs (with `fast` they agree only to rounding).
    for name in ["digits_cnn", "mlp"] {
        let dir = scratch(&format!("reference-{name}"));
        let out = ferrite()
            .args(["run", "--threads", "2", "--accumulation", "reference", "-o"])
            .arg(&dir)
            .arg(fixture(&format!("{name}/portable.pte")))
            .arg("-i")
            .arg(fixture(&format!("{name}/input_0.npy")))
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let got = ferrite::runtime::read_npy(&dir.join("output_0.npy")).expect("output written");
        let want = ferrite::runtime::read_npy(&fixture(&format!("{name}/portable.output_0.npy"))).expect("reference");
        assert_eq!(got.to_f64_vec().expect("f64"), want.to_f64_vec().expect("f64"), "{name}");
        std::fs::remove_dir_all(dir).ok();
    }
    let bad =
        ferrite().args(["run", "--accumulation", "sloppy"]).arg(fixture("mlp/portable.pte")).output().expect("run");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("possible values: auto, fast, reference"));
}

#[test]
fn run_repeat_keeps_state() {
    // running_sum/portable starts its buffer at zero and adds the input (ones) per call:
    // after three calls the output is 2 * 3 = 6 everywhere.
    let dir = scratch("repeat");
    let out = ferrite()
        .args(["run", "--repeat", "3", "-o"])
        .arg(&dir)
        .arg(fixture("running_sum/portable.pte"))
        .arg("-i")
        .arg(fixture("running_sum/input_0.npy"))
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let input =
        ferrite::runtime::read_npy(&fixture("running_sum/input_0.npy")).expect("input").to_f64_vec().expect("f64");
    let got = ferrite::runtime::read_npy(&dir.join("output_0.npy")).expect("output").to_f64_vec().expect("f64");
    assert!(got.iter().zip(&input).all(|(g, x)| (g - 6.0 * x).abs() < 1e-5), "{got:?}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn run_without_inputs_uses_deterministic_inputs() {
    let dir = scratch("default");
    let run = || {
        let out = ferrite()
            .args(["run", "-o"])
            .arg(&dir)
            .arg(fixture("two_methods/portable.pte"))
            .args(["--method", "encode"])
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::read(dir.join("output_0.npy")).expect("output")
    };
    assert_eq!(run(), run());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn run_rejects_bad_inputs() {
    let mlp = fixture("mlp/portable.pte");
    // Unknown method.
    assert_fails_with(&ferrite().arg("run").arg(&mlp).args(["--method", "nope"]).output().expect("run"), "R001");
    // Too many inputs.
    let x = fixture("mlp/input_0.npy");
    assert_fails_with(
        &ferrite().arg("run").arg(&mlp).arg("-i").arg(&x).arg("-i").arg(&x).output().expect("run"),
        "R010",
    );
    // Wrong dtype: digits test labels are int64.
    let labels = fixture("digits_cnn/test_labels.npy");
    assert_fails_with(&ferrite().arg("run").arg(&mlp).arg("-i").arg(&labels).output().expect("run"), "R011");
    // Wrong shape: the digits input is [1, 1, 8, 8].
    let image = fixture("digits_cnn/input_0.npy");
    assert_fails_with(&ferrite().arg("run").arg(&mlp).arg("-i").arg(&image).output().expect("run"), "R012");
    // Corrupt .npy: a truncated copy of a valid one, and a non-.npy file.
    let dir = scratch("bad");
    let bytes = std::fs::read(&x).expect("input");
    let truncated = dir.join("truncated.npy");
    std::fs::write(&truncated, &bytes[..bytes.len() - 7]).expect("write");
    assert_fails_with(&ferrite().arg("run").arg(&mlp).arg("-i").arg(&truncated).output().expect("run"), "C003");
    assert_fails_with(&ferrite().arg("run").arg(&mlp).arg("-i").arg(&mlp).output().expect("run"), "C003");
    assert_fails_with(
        &ferrite().arg("run").arg(&mlp).arg("-i").arg(dir.join("missing.npy")).output().expect("run"),
        "C003",
    );
    // Bad flags.
    assert_fails_with(&ferrite().arg("run").arg(&mlp).args(["--threads", "0"]).output().expect("run"), "C001");
    assert_fails_with(&ferrite().arg("run").arg(&mlp).args(["--repeat", "0"]).output().expect("run"), "C001");
    assert_fails_with(&ferrite().arg("run").arg(&mlp).args(["--memory-limit", "8Q"]).output().expect("run"), "C001");
    // A memory plan over the limit: refused before allocating.
    assert_fails_with(&ferrite().arg("run").arg(&mlp).args(["--memory-limit", "16"]).output().expect("run"), "R040");
    // Not a program.
    assert_fails_with(&ferrite().arg("run").arg(&x).output().expect("run"), "P003");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn delegated_program_names_the_missing_backend() {
    let out = ferrite().arg("run").arg(fixture("mlp/xnnpack.pte")).output().expect("run");
    assert_fails_with(&out, "R003");
    assert!(String::from_utf8_lossy(&out.stderr).contains("XnnpackBackend"));
}

#[test]
fn bench_json_has_the_documented_fields() {
    let out = ferrite()
        .args(["bench", "--json", "--threads", "1", "--warmup", "1", "--iters", "3"])
        .arg(fixture("mlp/portable.pte"))
        .output()
        .expect("bench");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    assert_eq!(stdout.trim().lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    for key in ["load_ms", "median_ms", "min_ms", "p90_ms"] {
        assert!(v[key].as_f64().is_some_and(|x| x >= 0.0), "{key}: {v}");
    }
    assert_eq!(v["threads"], 1);
    assert_eq!(v["iters"], 3);
    if cfg!(target_os = "linux") {
        assert!(v["peak_rss_kib"].as_u64().is_some_and(|k| k > 0), "peak_rss_kib: {v}");
    }
    assert!(v["min_ms"].as_f64() <= v["median_ms"].as_f64());
    assert_fails_with(
        &ferrite().args(["bench", "--iters", "0"]).arg(fixture("mlp/portable.pte")).output().expect("bench"),
        "C001",
    );
}

#[test]
fn demo_classifies_the_embedded_digits() {
    let out = ferrite().arg("demo").output().expect("demo");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // ExecuTorch's portable runtime gets 352 of the 360 test images right.
    assert!(stdout.contains("accuracy: 352/360"), "{stdout}");
    assert!(stdout.contains("ms per image"), "{stdout}");
}
