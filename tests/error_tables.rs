//! The book's error tables are generated from each crate's error catalogue
//! (`ProgramError::catalog()`, `RuntimeError::catalog()`, `LowerError::catalog()`, `QuantizeError::catalog()`, `TroubleshootError::catalog()`); re-bless with
//! `FERRITE_BLESS=1`. Codes are unique across all of them, and every code the sources return has
//! an entry.

use std::collections::BTreeSet;
use std::path::Path;

use ferrite::lowering::LowerError;
use ferrite::program::ProgramError;
use ferrite::quantizer::QuantizeError;
use ferrite::runtime::RuntimeError;
use ferrite::troubleshooting::TroubleshootError;

/// One row per error: code (with an anchor), title, an example message, what to do.
fn table<E: std::fmt::Display>(
    errors: Vec<E>,
    code: impl Fn(&E) -> &'static str,
    title: impl Fn(&E) -> &'static str,
    hint: impl Fn(&E) -> &'static str,
    codes: &mut BTreeSet<&'static str>,
) -> String {
    let mut out = String::from("| Code | Error | Example message | What to do |\n|---|---|---|---|\n");
    for e in &errors {
        assert!(codes.insert(code(e)), "duplicate code {}", code(e));
        // Table cells: `|` escaped, `<` as an entity (messages name `input_<i>.npy`).
        let cell = |t: &str| t.replace('|', "\\|").replace('<', "&lt;");
        out.push_str(&format!(
            "| <span id=\"{code}\">{code}</span> | {} | {} | {} |\n",
            cell(title(e)),
            cell(&e.to_string()),
            cell(hint(e)),
            code = code(e)
        ));
    }
    out
}

fn check(file: &str, table: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("book/src/generated").join(file);
    if std::env::var_os("FERRITE_BLESS").is_some() {
        std::fs::write(&path, table).expect("bless");
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap_or_default(), table, "{file}: re-bless with FERRITE_BLESS=1");
}

#[test]
fn book_error_tables_are_current() {
    let mut codes = BTreeSet::new();
    let program =
        table(ProgramError::catalog(), ProgramError::code, ProgramError::title, ProgramError::hint, &mut codes);
    let runtime =
        table(RuntimeError::catalog(), RuntimeError::code, RuntimeError::title, RuntimeError::hint, &mut codes);
    let lower = table(LowerError::catalog(), LowerError::code, LowerError::title, LowerError::hint, &mut codes);
    check("program-errors.md", &program);
    check("runtime-errors.md", &runtime);
    let quantize =
        table(QuantizeError::catalog(), QuantizeError::code, QuantizeError::title, QuantizeError::hint, &mut codes);
    check("lower-errors.md", &lower);
    let troubleshoot = table(
        TroubleshootError::catalog(),
        TroubleshootError::code,
        TroubleshootError::title,
        TroubleshootError::hint,
        &mut codes,
    );
    check("quantize-errors.md", &quantize);
    check("troubleshoot-errors.md", &troubleshoot);
}

/// Every code a crate's source can return (a `"X000"` literal in its error module, or the CLI's)
/// has an entry in the book's catalogue, with the anchor `ferrite` prints after each error.
#[test]
fn every_code_in_the_source_has_a_catalogue_entry() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let page = std::fs::read_to_string(root.join("book/src/troubleshooting/error-codes.md")).expect("page");
    let mut catalogue = page.clone();
    for file in ["program", "runtime", "lower", "quantize", "troubleshoot"] {
        catalogue +=
            &std::fs::read_to_string(root.join(format!("book/src/generated/{file}-errors.md"))).expect("table");
    }
    let sources = [
        "program/src/error.rs",
        "runtime/src/error.rs",
        "lower/src/error.rs",
        "quantizer/src/error.rs",
        "troubleshooting/src/lib.rs",
        "cli/src/main.rs",
        "capi/src/lib.rs",
    ];
    let mut found = 0;
    for src in sources {
        let text = std::fs::read_to_string(root.join(src)).expect("source");
        let bytes = text.as_bytes();
        for i in 0..bytes.len().saturating_sub(5) {
            let code = &bytes[i + 1..i + 5];
            if bytes[i] == b'"'
                && bytes[i + 5] == b'"'
                && b"PRLQTCA".contains(&code[0])
                && code[1..].iter().all(u8::is_ascii_digit)
            {
                let code = std::str::from_utf8(code).expect("ascii");
                found += 1;
                assert!(
                    catalogue.contains(&format!("<span id=\"{code}\">{code}</span>")),
                    "{src} returns {code}, which has no entry in the book's error catalogue"
                );
            }
        }
    }
    assert!(found > 40, "only {found} codes found: has the source layout changed?");
}
