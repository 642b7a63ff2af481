//! The book's runtime error table is generated from `RuntimeError::catalog()`; re-bless with
//! `FERRITE_BLESS=1`.

use std::path::Path;

use ferrite_runtime::RuntimeError;

#[test]
fn book_error_table_is_current() {
    let mut table = String::from("| Code | Error | Example message | What to do |\n|---|---|---|---|\n");
    let mut codes = std::collections::BTreeSet::new();
    for e in RuntimeError::catalog() {
        assert!(codes.insert(e.code()), "duplicate code {}", e.code());
        let msg = e.to_string().replace('|', "\\|");
        table.push_str(&format!(
            "| <span id=\"{code}\">{code}</span> | {} | {msg} | {} |\n",
            e.title(),
            e.hint(),
            code = e.code()
        ));
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src/generated/runtime-errors.md");
    if std::env::var_os("FERRITE_BLESS").is_some() {
        std::fs::write(&path, &table).expect("bless");
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap_or_default(), table, "re-bless with FERRITE_BLESS=1");
}
