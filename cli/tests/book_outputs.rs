//! Every console output the book shows is one of these golden files, written by running the
//! command (`book/src/generated/console-*.txt`; re-bless with
//! `FERRITE_BLESS=1 cargo test -p ferrite-cli --test book_outputs`). Outputs that carry timings
//! or floating-point error figures, which differ between runs and SIMD levels, are compared with
//! every number masked (and, for tables sorted by time, as a set of lines); all others exactly.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Clone, Copy, PartialEq)]
enum Compare {
    Exact,
    /// Numbers (and the SIMD level's name) masked.
    Masked,
    /// Masked, and the lines compared as a sorted list (rows sorted by a measured time).
    MaskedUnordered,
}

struct Case {
    file: &'static str,
    /// Arguments after `ferrite`, as the book shows them.
    args: &'static [&'static str],
    /// Run in the scratch directory (where earlier cases wrote files) instead of the repository.
    scratch: bool,
    /// The command fails, and the book shows its standard error.
    fails: bool,
    compare: Compare,
}

const CASES: &[Case] = &[
    Case {
        file: "console-partition-running-sum.txt",
        args: &["partition", "tests/fixtures/running_sum/portable.pte"],
        scratch: false,
        fails: false,
        compare: Compare::Exact,
    },
    Case {
        file: "console-partition-8da4w.txt",
        args: &["partition", "linear_8da4w.pte"],
        scratch: true,
        fails: false,
        compare: Compare::Exact,
    },
    Case {
        file: "console-lower-8da4w.txt",
        args: &["lower", "linear_8da4w.pte", "-o", "linear_8da4w.ferrite.pte"],
        scratch: true,
        fails: false,
        compare: Compare::Exact,
    },
    Case {
        file: "console-lower-digits.txt",
        args: &["lower", "digits_cnn.pte", "-o", "digits_cnn.ferrite.pte"],
        scratch: true,
        fails: false,
        compare: Compare::Exact,
    },
    Case {
        file: "console-profile-digits.txt",
        args: &["profile", "digits_cnn.ferrite.pte", "--threads", "1", "--iters", "10", "--top", "0"],
        scratch: true,
        fails: false,
        compare: Compare::MaskedUnordered,
    },
    Case {
        file: "console-numerics-digits.txt",
        args: &["debug", "numerics", "digits_cnn.pte", "--threads", "1", "--top", "0"],
        scratch: true,
        fails: false,
        compare: Compare::Masked,
    },
    Case {
        file: "console-bench-json.txt",
        args: &["bench", "tests/fixtures/tiny_gpt/portable.pte", "--threads", "1", "--iters", "10", "--json"],
        scratch: false,
        fails: false,
        compare: Compare::Masked,
    },
    Case {
        file: "console-error-r011.txt",
        args: &["run", "tests/fixtures/digits_cnn/portable.pte", "-i", "tests/fixtures/tiny_gpt/input_0.npy"],
        scratch: false,
        fails: true,
        compare: Compare::Exact,
    },
];

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Every number replaced by `#`, the SIMD level's name by `…`, and every run of spaces by one
/// space (right-aligned columns pad a number to its width: `10.26` and ` 9.59` are the same cell).
fn mask(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut prev_alnum = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() && !prev_alnum {
            while chars.peek().is_some_and(|&d| d.is_ascii_digit() || d == '.' || d == 'e' || d == '-') {
                chars.next();
            }
            out.push('#');
            prev_alnum = false;
            continue;
        }
        prev_alnum = c.is_alphanumeric() || c == '_';
        if !(c == ' ' && out.ends_with(' ')) {
            out.push(c);
        }
    }
    ["avx512", "avx2", "neon", "portable"].iter().fold(out, |t, level| t.replace(&format!("SIMD {level}"), "SIMD …"))
}

fn comparable(text: &str, compare: Compare) -> Vec<String> {
    let mut lines: Vec<String> = match compare {
        Compare::Exact => text.lines().map(str::to_string).collect(),
        Compare::Masked | Compare::MaskedUnordered => mask(text).lines().map(str::to_string).collect(),
    };
    if compare == Compare::MaskedUnordered {
        lines.sort();
    }
    lines
}

#[test]
fn the_books_console_outputs_are_what_the_cli_prints() {
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("book-outputs");
    std::fs::remove_dir_all(&scratch).ok();
    std::fs::create_dir_all(&scratch).expect("scratch");
    for (from, to) in
        [("groupwise/linear_8da4w.pte", "linear_8da4w.pte"), ("digits_cnn/portable.pte", "digits_cnn.pte")]
    {
        std::fs::copy(repo().join("tests/fixtures").join(from), scratch.join(to)).expect("fixture");
    }
    let golden = repo().join("book/src/generated");
    let bless = std::env::var_os("FERRITE_BLESS").is_some();
    let mut stale = Vec::new();
    for case in CASES {
        let out = Command::new(env!("CARGO_BIN_EXE_ferrite"))
            .current_dir(if case.scratch { scratch.as_path() } else { repo() })
            .args(case.args)
            .env_remove("FERRITE_LOG")
            .env_remove("FERRITE_SIMD")
            .output()
            .expect("runs");
        assert_eq!(out.status.success(), !case.fails, "{}: {}", case.file, String::from_utf8_lossy(&out.stderr));
        let printed = String::from_utf8(if case.fails { out.stderr } else { out.stdout }).expect("UTF-8");
        let got = format!("$ ferrite {}\n{printed}", case.args.join(" "));
        let path = golden.join(case.file);
        if bless {
            std::fs::write(&path, &got).expect("bless");
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if comparable(&got, case.compare) != comparable(&want, case.compare) {
            stale.push(format!("{}:\n--- book\n{want}--- now\n{got}", case.file));
        }
    }
    assert!(stale.is_empty(), "re-bless with FERRITE_BLESS=1 if the change is intended:\n{}", stale.join("\n"));
}

#[test]
fn masking_keeps_words_and_hides_numbers() {
    assert_eq!(mask("conv2d [1, 16] 0.52 ms, 3e-5, SIMD avx2, node_3"), "conv2d [#, #] # ms, #, SIMD …, node_3");
    assert_eq!(mask("   10.26    1"), mask("    9.59    1"));
}
