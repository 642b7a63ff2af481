//! Operators are named in one place: `ferrite-op-support`'s `Op`. No other crate's source spells
//! an operator name as a string (tests, doc comments and generated code aside), so every use of
//! an operator can be found from its variant.

use std::path::{Path, PathBuf};

/// The workspace's Rust sources outside `op-support/src`, generated code, tests and build output.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            let skip = ["target", "tests", "generated", ".git", "book", "fuzz"].contains(&name.as_str())
                || path.ends_with("op-support/src");
            if !skip {
                sources(&path, out);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" && name != "harness.rs" {
            out.push(path);
        }
    }
}

/// Whether `line` holds a string literal that is an operator name (`"aten::add.out"`,
/// `"ferrite::dense.out"`).
fn names_an_operator(line: &str) -> bool {
    const NAMESPACES: [&str; 6] =
        ["aten", "quantized_decomposed", "dim_order_ops", "executorch_prim", "llama", "ferrite"];
    line.match_indices('"').any(|(at, _)| {
        let rest = &line[at + 1..];
        NAMESPACES.iter().any(|ns| {
            rest.strip_prefix(ns).and_then(|r| r.strip_prefix("::")).is_some_and(|r| {
                let name: String =
                    r.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.').collect();
                // `ferrite::partitioner` and the like are tracing targets, not operators.
                !name.is_empty() && (*ns != "ferrite" || name.contains('.'))
            })
        })
    })
}

#[test]
fn only_op_support_spells_operator_names() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(root, &mut files);
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable source");
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("mod tests {") || line.trim_start().starts_with("pub(crate) mod tests {") {
                break; // an inline unit-test module closes every file that has one
            }
            if !line.trim_start().starts_with("//") && names_an_operator(line) {
                found.push(format!(
                    "{}:{}: {}",
                    file.strip_prefix(root).unwrap_or(&file).display(),
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "operator names outside ferrite-op-support (use ferrite_op_support::Op):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_recognises_operator_names() {
    assert!(names_an_operator(r#"r.register("aten::add.out", f);"#));
    assert!(names_an_operator(r#"let op = "ferrite::dense.out";"#));
    assert!(!names_an_operator(r#"tracing::info!(target: "ferrite::partitioner", "x");"#));
    assert!(!names_an_operator("let x = Op::Add.name();"));
}
