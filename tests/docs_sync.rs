//! What the README and the book say about the project, kept in step from one source each
//! (re-bless with `FERRITE_BLESS=1 cargo test -p ferrite --test docs_sync`):
//! - the crate list: each workspace member's `name` and `description` in its `Cargo.toml`,
//!   rendered into the README's layout table and the book's `generated/crates.md` (the
//!   introduction includes it);
//! - the status table: `book/src/includes/status.md` (the introduction includes it), copied into
//!   the README between its `status` markers.
#![allow(clippy::unwrap_used)]

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The first `key = "value"` of a Cargo.toml (its `[package]` table comes first).
fn field(toml: &str, key: &str) -> String {
    toml.lines()
        .find_map(|l| l.strip_prefix(key)?.trim_start().strip_prefix('=')?.trim().strip_prefix('"')?.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no {key} in a Cargo.toml"))
        .replace("\\\"", "\"")
}

/// (directory, crate name, description) for the facade and every workspace member, in order.
fn crates() -> Vec<(String, String, String)> {
    let manifest = read("Cargo.toml");
    let members = manifest.lines().find(|l| l.starts_with("members")).expect("workspace members");
    let dirs = members.split('"').skip(1).step_by(2);
    std::iter::once(".".to_string())
        .chain(dirs.map(str::to_string))
        .map(|dir| {
            let toml = read(&format!("{dir}/Cargo.toml"));
            (dir, field(&toml, "name"), field(&toml, "description"))
        })
        .collect()
}

/// Replaces the text between `<!-- NAME:begin -->` and `<!-- NAME:end -->`.
fn splice(text: &str, name: &str, body: &str) -> String {
    let (begin, end) = (format!("<!-- {name}:begin -->\n"), format!("<!-- {name}:end -->"));
    let a = text.find(&begin).unwrap_or_else(|| panic!("no {begin:?} marker")) + begin.len();
    let b = text[a..].find(&end).unwrap_or_else(|| panic!("no {end:?} marker")) + a;
    format!("{}{body}{}", &text[..a], &text[b..])
}

fn check(rel: &str, want: &str) {
    let path = root().join(rel);
    if std::env::var_os("FERRITE_BLESS").is_some() {
        std::fs::write(&path, want).unwrap();
    }
    assert!(read(rel) == want, "{rel} is out of date: re-bless with FERRITE_BLESS=1");
}

/// The README's crate table and the book's, from the workspace's `Cargo.toml`s.
fn crate_tables() -> (String, String) {
    let crates = crates();
    assert!(crates.len() >= 12, "{crates:?}");
    let mut readme_table = String::from("| Path | Crate | What |\n|---|---|---|\n");
    let mut book_table = String::from("| Crate | What | Reference |\n|---|---|---|\n");
    for (dir, name, description) in &crates {
        let path = if dir == "." { "`Cargo.toml`, `src/`".to_string() } else { format!("`{dir}/`") };
        let architecture = if dir == "." { String::new() } else { format!(" ([architecture]({dir}/ARCHITECTURE.md))") };
        assert!(dir == "." || root().join(dir).join("ARCHITECTURE.md").exists(), "{dir} has no ARCHITECTURE.md");
        readme_table.push_str(&format!("| {path} | `{name}` | {description}{architecture} |\n"));
        // The CLI has no library: its reference is the book's command-line page.
        let reference = if name == "ferrite-cli" {
            "[commands](overview/cli.md)".to_string()
        } else {
            format!("[API](api/{}/index.html)", name.replace('-', "_"))
        };
        book_table.push_str(&format!("| `{name}` | {description} | {reference} |\n"));
    }
    (readme_table, book_table)
}

/// One test, since blessing rewrites the README for both tables.
#[test]
fn readme_and_book_agree_with_their_sources() {
    let (readme_crates, book_crates) = crate_tables();
    check("book/src/generated/crates.md", &book_crates);
    let intro = read("book/src/introduction.md");
    assert!(intro.contains("{{#include includes/status.md}}") && intro.contains("{{#include generated/crates.md}}"));
    let status = read("book/src/includes/status.md");
    check("README.md", &splice(&splice(&read("README.md"), "crates", &readme_crates), "status", &status));
}
