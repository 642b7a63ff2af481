//! The conformance suite: every fixture variant, run by Ferrite, against ExecuTorch's own
//! runtime outputs.
//!
//! Tolerances: float outputs within `1e-4 × max(1, max|reference|)`; quantized variants exactly
//! equal on the portable path (which requantizes in ExecuTorch's summation order), and lowered
//! at least as close to the float model as ExecuTorch's own quantized output (SQNR within 1 dB). The checks take a [`Runner`] so later execution paths
//! (lowered programs, other SIMD levels) reuse them unchanged.

mod suite;

use suite::{LOWERED, PORTABLE};

/// Each fixture runs twice: as exported (portable kernels) and lowered for the Ferrite backend.
macro_rules! fixture {
    ($name:ident) => {
        mod $name {
            use super::*;

            #[test]
            fn portable() {
                suite::check_fixture(&PORTABLE, &suite::fixtures_dir(), stringify!($name));
            }

            #[test]
            fn lowered() {
                suite::check_fixture(&LOWERED, &suite::fixtures_dir(), stringify!($name));
            }
        }
    };
}

fixture!(elementwise);
fixture!(mlp);
fixture!(mlp_dynamic);
fixture!(two_methods);
fixture!(running_sum);
fixture!(digits_cnn);
fixture!(tiny_transformer);
fixture!(tiny_gpt);

/// The large fixtures stay in `../shared/fixtures` (the extended suite); skipped with a note
/// when that folder is absent.
#[test]
fn extended_mobilenet_v2() {
    match suite::shared_dir() {
        Some(dir) => {
            suite::check_fixture(&PORTABLE, &dir, "mobilenet_v2");
            suite::check_fixture(&LOWERED, &dir, "mobilenet_v2");
            // Its 112×112×96 and 56×56×144 expansions run fused into the depthwise
            // convolutions after them.
            suite::check_fusion_is_exact(&dir.join("mobilenet_v2/portable.pte"), 3);
        }
        None => eprintln!("skipping mobilenet_v2: ../shared/fixtures not found"),
    }
}

/// Both paths at every SIMD level this CPU runs (the tests above use the best one): the same
/// outputs, and quantized programs still bit-exact on the portable path.
#[test]
fn every_simd_level() {
    for level in ferrite::runtime::Level::available() {
        for lowered in [false, true] {
            let runner = suite::AtLevel::new(lowered, level);
            for name in ["mlp", "digits_cnn", "tiny_transformer"] {
                suite::check_fixture(&runner, &suite::fixtures_dir(), name);
            }
        }
    }
}

#[test]
fn groupwise_weight_quantized_programs() {
    suite::check_groupwise(&PORTABLE);
    suite::check_groupwise(&LOWERED);
}

/// Bounded dynamic shapes, portable and lowered (the whole method in one Ferrite delegate that
/// sizes each step from the batch at hand): every batch up to the bound, in an order that
/// shrinks and grows the tensors between runs of one method.
#[test]
fn mlp_dynamic_batches() {
    for runner in [&PORTABLE as &dyn suite::Runner, &LOWERED] {
        suite::check_dynamic_batches(runner, &suite::fixtures_dir().join("mlp_dynamic"), &[1, 3, 16, 2, 16, 5]);
    }
}

#[test]
fn mlp_dynamic_rejects_batch_beyond_bound() {
    for runner in [&PORTABLE as &dyn suite::Runner, &LOWERED] {
        suite::check_dynamic_beyond_bound(runner, &suite::fixtures_dir().join("mlp_dynamic"), 17);
    }
}

#[test]
fn running_sum_state_persists() {
    for runner in [&PORTABLE as &dyn suite::Runner, &LOWERED] {
        for variant in ["portable", "portable_init"] {
            suite::check_running_sum(runner, &suite::fixtures_dir().join("running_sum"), variant, 3);
        }
    }
}

#[test]
fn digits_accuracy_matches_executorch() {
    for variant in ["portable", "q8"] {
        suite::check_digits_accuracy(&PORTABLE, &suite::fixtures_dir().join("digits_cnn"), variant);
    }
    for variant in ["portable", "q8"] {
        suite::check_digits_accuracy(&LOWERED, &suite::fixtures_dir().join("digits_cnn"), variant);
    }
}

#[test]
fn delegated_variants_fail_at_load() {
    suite::check_delegated_fail(&suite::fixtures_dir());
}

#[test]
fn concurrent_methods_are_bit_identical() {
    suite::check_concurrency(&PORTABLE, &suite::fixtures_dir().join("digits_cnn/portable.pte"), 8, 100);
    suite::check_concurrency(&LOWERED, &suite::fixtures_dir().join("digits_cnn/portable.pte"), 8, 100);
}
