//! Resource limits and bad run-time inputs: programs that declare more than a machine can give,
//! or control flow that never ends, fail with coded errors before anything is allocated or run
//! for long; inputs of the wrong kind fail with coded errors; non-finite values propagate.
//! (Damaged structure — huge tensor sizes, ranks, offsets, indices — is `program/tests/malformed.rs`.)
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use ferrite::prelude::Program;
use ferrite::program::{Instruction, ProgramWriter, ScalarType, Value};
use ferrite::runtime::{Runtime, RuntimeError, TensorData};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap()
}

/// `name` with `edit` applied to its definition, written and loaded again (it must verify).
fn rewritten(name: &str, edit: impl FnOnce(&mut ferrite::program::ProgramDef)) -> Arc<Program<'static>> {
    let bytes = fixture(name);
    let p = Program::from_bytes(&bytes).unwrap();
    let mut w = ProgramWriter::from_program(&p);
    edit(w.def_mut());
    Arc::new(Program::from_vec(w.to_bytes().unwrap()).expect("the edited program verifies"))
}

fn lowered(name: &str) -> Arc<Program<'static>> {
    let p = Program::from_vec(fixture(name)).unwrap();
    Arc::new(Program::from_vec(ferrite::lower(&p, &ferrite::LowerOptions::default()).unwrap().bytes).unwrap())
}

#[test]
fn planned_memory_beyond_the_machine_is_refused_before_allocating() {
    // The arenas a program declares are allocated at load: a few bytes of file can ask for
    // petabytes. The default limit is the machine's physical memory.
    // Sizes are signed in the schema: at most i64::MAX each.
    const MAX: u64 = i64::MAX as u64;
    // 2^50 bytes; a sum just past i64::MAX; a sum past u64::MAX (overflow must not wrap).
    for sizes in [vec![0, 1 << 50], vec![0, MAX / 2 + 1, MAX / 2 + 1], vec![0, MAX, MAX, MAX]] {
        let program = rewritten("mlp/portable.pte", |d| {
            let buffers = &mut d.plans[0].non_const_buffer_sizes;
            buffers.truncate(1);
            buffers.extend_from_slice(&sizes[1..]);
        });
        let Err(e) = Runtime::new().load_method(&program, "forward") else { panic!("{sizes:?} accepted") };
        assert_eq!(e.code(), "R040", "{sizes:?}: {e}");
        assert!(e.to_string().contains("limit"), "{e}");
    }
    // A limit below what a real model needs is honoured the same way, in the backend too.
    let lowered = lowered("digits_cnn/portable.pte");
    let Err(e) = Runtime::new().with_memory_limit(4096).load_method(&lowered, "forward") else {
        panic!("4 KiB limit ignored")
    };
    assert_eq!(e.code(), "R040", "{e}");
    assert!(Runtime::new().with_memory_limit(64 << 20).load_method(&lowered, "forward").is_ok());
}

#[test]
fn control_flow_that_never_ends_is_stopped() {
    // A jump back to itself on a condition that stays false: a valid program that loops
    // forever. Execution has a step budget (a thousand steps per instruction, at least a
    // million), so it ends with an error instead of hanging.
    let program = rewritten("mlp/portable.pte", |d| {
        let plan = &mut d.plans[0];
        plan.values.push(Value::Bool(false));
        let cond = plan.values.len() - 1;
        let at = plan.chains[0].instructions.len();
        plan.chains[0].instructions.push(Instruction::JumpFalseCall { cond, destination: at });
    });
    let mut method = Runtime::new().with_threads(1).unwrap().load_method(&program, "forward").unwrap();
    let inputs = ferrite::runtime::default_inputs(&program, "forward").unwrap();
    let e = method.run(&inputs).expect_err("an endless loop returned");
    assert_eq!(e.code(), "R021", "{e}");
    assert!(e.to_string().contains("did not terminate"), "{e}");
}

#[test]
fn wrong_inputs_give_coded_errors_on_both_paths() {
    for program in [Arc::new(Program::from_vec(fixture("mlp/portable.pte")).unwrap()), lowered("mlp/portable.pte")] {
        let mut method = Runtime::new().load_method(&program, "forward").unwrap();
        let (dtype, sizes) = method.input_spec(0).map(|(d, s)| (d, s.to_vec())).unwrap();
        assert_eq!(dtype, ScalarType::Float);
        let ok = TensorData::from_slice::<f32>(sizes.clone(), &vec![0.5; sizes.iter().product()]).unwrap();
        let mut wider = sizes.clone();
        wider[sizes.len() - 1] += 1;
        let mut rank_up = sizes.clone();
        rank_up.insert(0, 1);
        let n: usize = sizes.iter().product();
        let cases: Vec<(Vec<TensorData>, &str)> = vec![
            (vec![], "R010"),
            (vec![ok.clone(), ok.clone()], "R010"),
            (vec![TensorData::from_bytes(ScalarType::Long, sizes.clone(), &vec![0; n * 8]).unwrap()], "R011"),
            (vec![TensorData::from_bytes(ScalarType::Half, sizes.clone(), &vec![0; n * 2]).unwrap()], "R011"),
            (vec![TensorData::from_slice::<f32>(wider.clone(), &vec![0.0; wider.iter().product()]).unwrap()], "R012"),
            (vec![TensorData::from_slice::<f32>(rank_up, &vec![0.0; n]).unwrap()], "R012"),
            (vec![TensorData::from_slice::<f32>(vec![n], &vec![0.0; n]).unwrap()], "R012"),
        ];
        for (inputs, code) in cases {
            let e: RuntimeError = method.run(&inputs).expect_err("accepted");
            assert_eq!(e.code(), code, "{e}");
            assert!(!e.hint().is_empty());
        }
        // Byte-level entry (the C ABI's): a length that does not match the sizes.
        let e = method.set_input_bytes(0, ScalarType::Float, &sizes, &[0; 3]).expect_err("short bytes accepted");
        assert_eq!(e.code(), "R021", "{e}");
        // The method still runs after every refusal.
        assert!(method.run(&[ok]).is_ok());
    }
}

#[test]
fn non_finite_inputs_propagate_as_ieee_arithmetic_does() {
    // NaN and infinities are values, not errors: they flow through as IEEE 754 says, on the
    // portable path and in the backend alike (documented in the book's robustness page).
    for program in [Arc::new(Program::from_vec(fixture("mlp/portable.pte")).unwrap()), lowered("mlp/portable.pte")] {
        let mut method = Runtime::new().load_method(&program, "forward").unwrap();
        let sizes = method.input_spec(0).unwrap().1.to_vec();
        let n: usize = sizes.iter().product();
        for bad in [f32::NAN, f32::INFINITY] {
            let mut values = vec![0.25; n];
            values[0] = bad;
            let out = method.run(&[TensorData::from_slice::<f32>(sizes.clone(), &values).unwrap()]).unwrap();
            let out = out[0].to_f64_vec().unwrap();
            assert!(out.iter().any(|v| !v.is_finite()), "{bad} vanished: {out:?}");
        }
        let out = method.run(&[TensorData::from_slice::<f32>(sizes.clone(), &vec![0.25; n]).unwrap()]).unwrap();
        assert!(out[0].to_f64_vec().unwrap().iter().all(|v| v.is_finite()), "state leaked from a NaN run");
    }
}
