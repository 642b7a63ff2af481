//! The book's error tables are generated from each crate's error catalogue
//! (`ProgramError::catalog()`, `RuntimeError::catalog()`, `LowerError::catalog()`, `QuantizeError::catalog()`, `TroubleshootError::catalog()`); re-bless with
//! `FERRITE_BLESS=1`. Codes are unique across all of them.

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
        let msg = e.to_string().replace('|', "\\|");
        out.push_str(&format!(
            "| <span id=\"{code}\">{code}</span> | {} | {msg} | {} |\n",
            title(e),
            hint(e),
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
