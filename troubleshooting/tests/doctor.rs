//! `ferrite doctor` on real programs: what it finds, the fix it gives, and that every book
//! section it links to exists.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use ferrite_program::Program;
use ferrite_runtime::Runtime;
use ferrite_troubleshooting::doctor::BOOK_SECTIONS;
use ferrite_troubleshooting::{diagnose, Severity};

fn fixture(name: &str) -> Program<'static> {
    Program::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)).expect("fixture")
}

#[test]
fn an_xnnpack_program_is_an_error_with_the_export_to_use_instead() {
    let d = diagnose(&fixture("digits_cnn/xnnpack.pte"), &Runtime::new());
    let f = &d.findings[0];
    assert_eq!(f.severity, Severity::Error, "{}", d.text(""));
    assert!(f.what.contains("XnnpackBackend") && f.fix.contains("without the XnnpackBackend partitioner"));
    assert!(f.book.ends_with("#a-program-delegated-to-another-backend"));
    assert_eq!(d.methods[0].delegate_calls.get("XnnpackBackend"), Some(&1));
}

#[test]
fn bounded_dynamic_shapes_are_lowerable_and_symbolic_sizes_one_finding_with_the_fix() {
    let d = diagnose(&fixture("mlp_dynamic/portable.pte"), &Runtime::new());
    assert!(d.methods[0].dynamic_inputs);
    assert!(!d.findings.iter().any(|f| f.book.ends_with("#dynamic-shapes")), "{}", d.text(""));
    assert_eq!(d.methods[0].lowerable_calls, 6, "{}", d.text(""));

    // A reshape to sizes `sym_size` computes at run time, twice.
    use ferrite_program::{ProgramBuilder, ScalarType};
    let mut b = ProgramBuilder::new("forward");
    let x = b.dynamic_input(ScalarType::Float, &[4, 8]);
    let (zero, rows) = (b.int(0), b.int(4));
    b.call("aten::sym_size.int", &[x, zero, rows]);
    let mut v = x;
    for _ in 0..2 {
        let (two, four) = (b.int(2), b.int(4));
        let sizes = b.int_list_of(&[rows, two, four]);
        let y = b.dynamic_tensor(ScalarType::Float, &[4, 2, 4]);
        b.call("aten::view_copy.out", &[v, sizes, y, y]);
        let z = b.dynamic_tensor(ScalarType::Float, &[4, 2, 4]);
        b.call("aten::relu.out", &[y, z, z]);
        v = z;
    }
    b.output(v);
    let d = diagnose(&Program::from_vec(b.build().unwrap()).unwrap(), &Runtime::new());
    let dynamic: Vec<_> = d.findings.iter().filter(|f| f.book.ends_with("#dynamic-shapes")).collect();
    assert_eq!(dynamic.len(), 1, "{}", d.text(""));
    assert!(
        dynamic[0].what.contains("computed at run time") && dynamic[0].fix.contains("static sizes"),
        "{}",
        d.text("")
    );
}

#[test]
fn lowering_keeps_the_work_estimate_and_moves_the_weights_into_the_backend() {
    for name in ["digits_cnn/portable.pte", "tiny_transformer/portable.pte", "digits_cnn/q8.pte"] {
        let source = fixture(name);
        let before = diagnose(&source, &Runtime::new());
        assert!(before.methods[0].flops > 0, "{name}");
        assert!(before.findings.iter().any(|f| f.what.starts_with("not lowered")), "{name}: {}", before.text(""));
        let lowered = ferrite_lower::lower(&source, &ferrite_lower::LowerOptions::default()).unwrap();
        let after = diagnose(&Program::from_vec(lowered.bytes).unwrap(), &Runtime::new());
        assert_eq!(after.methods[0].flops, before.methods[0].flops, "{name}: {}", after.text(""));
        assert!(after.backend_weight_bytes > 0 && after.methods[0].lowerable_calls == 0, "{name}");
        assert!(after.findings.iter().all(|f| f.severity != Severity::Error), "{name}: {}", after.text(""));
    }
}

#[test]
fn digits_cnn_flops_by_hand() {
    // conv 1→16 3×3 on 8×8 (padding 1), conv 16→32 3×3 on 4×4, linear 32→10 (see the fixture).
    let d = diagnose(&fixture("digits_cnn/portable.pte"), &Runtime::new());
    let expected = 2 * (16 * 8 * 8 * 9) + 2 * (32 * 4 * 4 * 16 * 9) + 2 * (10 * 32);
    assert_eq!(d.methods[0].flops, expected, "{}", d.text(""));
}

/// mdBook's heading ids: lower case, spaces to dashes, other punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_linked_book_section_exists() {
    let book = Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src");
    for link in BOOK_SECTIONS {
        let (page, anchor) = link.split_once('#').unwrap();
        let md = book.join(page.replace(".html", ".md"));
        let text = std::fs::read_to_string(&md).unwrap_or_else(|_| panic!("{} is missing", md.display()));
        let anchors: Vec<String> =
            text.lines().filter_map(|l| l.strip_prefix('#')).map(|h| slug(h.trim_start_matches('#'))).collect();
        assert!(anchors.iter().any(|a| a == anchor), "{link}: no such heading in {}", md.display());
    }
}
