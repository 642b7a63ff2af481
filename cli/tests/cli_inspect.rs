//! `ferrite inspect` end to end: JSON agrees with the fixtures' manifest; bad input gives exit
//! code 2 and a coded error, never a panic.

use std::path::Path;
use std::process::Command;

fn ferrite() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferrite"))
}

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures"))
}

#[test]
fn json_matches_manifest() {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("manifest.json")).expect("manifest"))
            .expect("json");
    let mut checked = 0;
    for f in manifest["fixtures"].as_array().expect("fixtures") {
        let name = f["name"].as_str().expect("name");
        for (variant, v) in f["variants"].as_object().expect("variants") {
            let path = fixtures().join(name).join(v["file"].as_str().expect("file"));
            if !path.exists() {
                continue; // large fixtures stay in ../shared
            }
            let out = ferrite().arg("inspect").arg("--json").arg(&path).output().expect("run");
            assert!(out.status.success(), "{name}/{variant}: {}", String::from_utf8_lossy(&out.stderr));
            let stdout = String::from_utf8(out.stdout).expect("utf8");
            assert_eq!(stdout.trim().lines().count(), 1, "exactly one JSON object");
            let got: serde_json::Value = serde_json::from_str(&stdout).expect("valid JSON");
            for plan in v["plans"].as_array().expect("plans") {
                let m = got["methods"]
                    .as_array()
                    .expect("methods")
                    .iter()
                    .find(|m| m["name"] == plan["method"])
                    .unwrap_or_else(|| panic!("{name}/{variant}: method missing"));
                assert_eq!(m["operators"], plan["operators"], "{name}/{variant}");
                let ids: Vec<&serde_json::Value> =
                    m["delegates"].as_array().expect("delegates").iter().map(|d| &d["id"]).collect();
                let want: Vec<&serde_json::Value> = plan["delegates"].as_array().expect("delegates").iter().collect();
                assert_eq!(ids, want, "{name}/{variant}");
                for key in ["inputs", "outputs", "kernel_calls", "delegate_calls"] {
                    assert!(!m[key].is_null(), "{key} present");
                }
            }
            assert!(got["constant_bytes"].is_u64() && got["segments"].is_u64());
            checked += 1;
        }
    }
    assert!(checked >= 20, "checked {checked} variants");
}

#[test]
fn text_summary_lists_operators_and_memory_plan() {
    let out = ferrite().arg("inspect").arg(fixtures().join("mlp/portable.pte")).output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf8");
    for needle in ["method forward", "float32 [4, 16]", "aten::addmm.out", "memory plan:"] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn bad_input_exits_2_with_a_code() {
    let dir = std::env::temp_dir().join(format!("ferrite-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let good = std::fs::read(fixtures().join("mlp/portable.pte")).expect("read");
    let truncated = dir.join("truncated.pte");
    std::fs::write(&truncated, &good[..good.len() / 3]).expect("write");
    let garbage = dir.join("garbage.pte");
    std::fs::write(&garbage, b"this is not a program at all").expect("write");
    for (path, code) in
        [(truncated.as_path(), "P0"), (garbage.as_path(), "P003"), (Path::new("/no/such/file.pte"), "P001")]
    {
        for json in [false, true] {
            let mut cmd = ferrite();
            cmd.arg("inspect").arg(path);
            if json {
                cmd.arg("--json");
            }
            let out = cmd.output().expect("run");
            assert_eq!(out.status.code(), Some(2), "{}", path.display());
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains(&format!("error[{code}")), "{stderr}");
            assert!(stderr.contains("hint:"), "{stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
            assert!(out.stdout.is_empty());
        }
    }
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// The book shows `inspect` output from these golden files; they must match what the tool
/// prints. Re-bless deliberately with `FERRITE_BLESS=1 cargo test --test cli_inspect`.
#[test]
fn book_golden_outputs_match() {
    let golden = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../book/src/generated"));
    for (file, json) in [("inspect-mlp.txt", false), ("inspect-mlp.json", true)] {
        let mut cmd = ferrite();
        cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .arg("inspect")
            .arg("tests/fixtures/mlp/portable.pte");
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().expect("run");
        assert!(out.status.success());
        let got = String::from_utf8(out.stdout).expect("utf8");
        let path = golden.join(file);
        if std::env::var_os("FERRITE_BLESS").is_some() {
            std::fs::write(&path, &got).expect("bless");
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(got, want, "{file} is stale: re-bless with FERRITE_BLESS=1 if the change is intended");
    }
}
