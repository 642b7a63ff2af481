//! The C ABI, called as C would call it: programs and methods, delegates on caller-owned
//! tensors, and every error path returning a status and a coded message (never a crash).
#![allow(clippy::unwrap_used, clippy::undocumented_unsafe_blocks)]

use std::ffi::{c_void, CStr, CString};
use std::path::Path;
use std::ptr::{null, null_mut};
use std::sync::Arc;

use ferrite_capi::*;
use ferrite_program::Program;
use ferrite_runtime::{Runtime, TensorData};

fn fixture(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(rel).to_string_lossy().into_owned()
}

fn last_error() -> (String, String) {
    let code = ferrite_last_error_code();
    let message = ferrite_last_error_message();
    assert!(!code.is_null() && !message.is_null(), "a failed call leaves a code and a message");
    unsafe {
        (CStr::from_ptr(code).to_str().unwrap().to_string(), CStr::from_ptr(message).to_str().unwrap().to_string())
    }
}

fn runtime() -> *mut FerriteRuntime {
    let mut rt = null_mut();
    assert_eq!(unsafe { ferrite_runtime_new(1, &mut rt) }, FerriteStatus::Ok);
    rt
}

fn input_of(t: &TensorData, sizes: &[usize]) -> FerriteTensor {
    FerriteTensor {
        dtype: i32::from(t.dtype().code()),
        ndim: sizes.len(),
        sizes: sizes.as_ptr(),
        data: t.bytes().as_ptr().cast(),
        nbytes: t.bytes().len(),
    }
}

#[test]
fn a_method_runs_through_the_abi_exactly_as_through_the_runtime() {
    let path = fixture("digits_cnn/portable.pte");
    let program_rs = Arc::new(Program::read(&path).unwrap());
    let inputs = ferrite_runtime::default_inputs(&program_rs, "forward").unwrap();
    let want =
        Runtime::new().with_threads(1).unwrap().load_method(&program_rs, "forward").unwrap().run(&inputs).unwrap();

    let rt = runtime();
    let cpath = CString::new(path).unwrap();
    let mut program = null_mut();
    assert_eq!(unsafe { ferrite_program_load_file(cpath.as_ptr(), &mut program) }, FerriteStatus::Ok);
    assert_eq!(unsafe { ferrite_program_method_count(program) }, 1);
    let name = unsafe { CStr::from_ptr(ferrite_program_method_name(program, 0)) };
    assert_eq!(name.to_str().unwrap(), "forward");
    assert!(unsafe { ferrite_program_method_name(program, 1) }.is_null());

    let mut method = null_mut();
    assert_eq!(unsafe { ferrite_method_load(rt, program, name.as_ptr(), &mut method) }, FerriteStatus::Ok);
    // The method keeps what it needs: its program and runtime may go first.
    unsafe { ferrite_program_free(program) };
    unsafe { ferrite_runtime_free(rt) };
    assert_eq!(unsafe { ferrite_method_input_count(method) }, 1);
    let mut spec = FerriteTensor { dtype: 0, ndim: 0, sizes: null(), data: null(), nbytes: 0 };
    assert_eq!(unsafe { ferrite_method_input_spec(method, 0, &mut spec) }, FerriteStatus::Ok);
    assert_eq!((spec.dtype, spec.nbytes), (FERRITE_DTYPE_FLOAT, inputs[0].bytes().len()));
    assert!(spec.data.is_null());

    let sizes = inputs[0].sizes().to_vec();
    assert_eq!(unsafe { ferrite_method_set_input(method, 0, &input_of(&inputs[0], &sizes)) }, FerriteStatus::Ok);
    assert_eq!(unsafe { ferrite_method_execute(method) }, FerriteStatus::Ok);
    let mut out = spec;
    assert_eq!(unsafe { ferrite_method_output(method, 0, &mut out) }, FerriteStatus::Ok);
    let got = unsafe { std::slice::from_raw_parts(out.data.cast::<u8>(), out.nbytes) };
    let shape = unsafe { std::slice::from_raw_parts(out.sizes, out.ndim) };
    assert_eq!((shape, got), (want[0].sizes(), want[0].bytes()));
    assert_eq!(unsafe { ferrite_method_output(method, 1, &mut out) }, FerriteStatus::NotFound);
    unsafe { ferrite_method_free(method) };
}

#[test]
fn misuse_and_bad_programs_return_coded_errors() {
    let rt = runtime();
    // NULL out-pointers and strings.
    assert_eq!(unsafe { ferrite_runtime_new(1, null_mut()) }, FerriteStatus::InvalidArgument);
    assert_eq!(last_error().0, "A001");
    let mut program = null_mut();
    assert_eq!(unsafe { ferrite_program_load_file(null(), &mut program) }, FerriteStatus::InvalidArgument);
    assert!(program.is_null(), "nothing is written on failure");
    // A missing file, and bytes that are not a program.
    let missing = CString::new("/nonexistent/model.pte").unwrap();
    assert_eq!(unsafe { ferrite_program_load_file(missing.as_ptr(), &mut program) }, FerriteStatus::Io);
    assert_eq!(last_error().0, "P001");
    let junk = [7u8; 64];
    let status = unsafe { ferrite_program_load_bytes(junk.as_ptr().cast(), junk.len(), &mut program) };
    assert_eq!(status, FerriteStatus::InvalidProgram);
    assert!(last_error().0.starts_with('P'), "{:?}", last_error());

    let bytes = std::fs::read(fixture("mlp/portable.pte")).unwrap();
    let status = unsafe { ferrite_program_load_bytes(bytes.as_ptr().cast(), bytes.len(), &mut program) };
    assert_eq!(status, FerriteStatus::Ok);
    drop(bytes); // copied
    let mut method = null_mut();
    let nope = CString::new("nope").unwrap();
    assert_eq!(unsafe { ferrite_method_load(rt, program, nope.as_ptr(), &mut method) }, FerriteStatus::NotFound);
    let (code, message) = last_error();
    assert_eq!(code, "R001");
    assert!(message.starts_with("R001: ") && message.contains("forward"), "{message}");

    let forward = CString::new("forward").unwrap();
    assert_eq!(unsafe { ferrite_method_load(rt, program, forward.as_ptr(), &mut method) }, FerriteStatus::Ok);
    let mut spec = FerriteTensor { dtype: 0, ndim: 0, sizes: null(), data: null(), nbytes: 0 };
    assert_eq!(unsafe { ferrite_method_input_spec(method, 0, &mut spec) }, FerriteStatus::Ok);
    let sizes = unsafe { std::slice::from_raw_parts(spec.sizes, spec.ndim) }.to_vec();
    let mut none = spec;
    assert_eq!(unsafe { ferrite_method_input_spec(method, 5, &mut none) }, FerriteStatus::NotFound);
    assert_eq!(last_error().0, "A003");
    let data = vec![0u8; spec.nbytes];
    let good = FerriteTensor { sizes: sizes.as_ptr(), data: data.as_ptr().cast(), ..spec };
    // An unknown dtype code, a size that disagrees with nbytes, NULL data, too many dims.
    for (bad, code) in [
        (FerriteTensor { dtype: 99, ..good }, "A001"),
        (FerriteTensor { nbytes: good.nbytes - 1, ..good }, "A001"),
        (FerriteTensor { data: null(), ..good }, "A001"),
        (FerriteTensor { ndim: 17, ..good }, "A001"),
        (FerriteTensor { dtype: FERRITE_DTYPE_LONG, nbytes: good.nbytes * 2, ..good }, "R011"),
    ] {
        assert_eq!(unsafe { ferrite_method_set_input(method, 0, &bad) }, FerriteStatus::InvalidArgument);
        assert_eq!(last_error().0, code);
    }
    let other_shape = [sizes[0] + 1, sizes[1]];
    let big = vec![0u8; spec.nbytes / sizes[0] * other_shape[0]];
    let wrong = FerriteTensor { sizes: other_shape.as_ptr(), data: big.as_ptr().cast(), nbytes: big.len(), ..good };
    assert_eq!(unsafe { ferrite_method_set_input(method, 0, &wrong) }, FerriteStatus::InvalidArgument);
    assert_eq!(last_error().0, "R012");
    assert_eq!(unsafe { ferrite_method_set_input(method, 1, &good) }, FerriteStatus::InvalidArgument);
    assert_eq!(unsafe { ferrite_method_set_input(method, 0, &good) }, FerriteStatus::Ok);
    assert_eq!(unsafe { ferrite_method_execute(method) }, FerriteStatus::Ok);
    // NULL objects: counts are 0, frees are no-ops, calls fail cleanly.
    assert_eq!(unsafe { ferrite_method_input_count(null()) }, 0);
    assert_eq!(unsafe { ferrite_method_execute(null_mut()) }, FerriteStatus::InvalidArgument);
    unsafe { ferrite_method_free(null_mut()) };
    unsafe { ferrite_method_free(method) };
    unsafe { ferrite_program_free(program) };
    unsafe { ferrite_runtime_free(rt) };
    assert_eq!(unsafe { CStr::from_ptr(ferrite_version()) }.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

/// The lowered digits_cnn program and its one Ferrite blob.
fn lowered_digits() -> (Arc<Program<'static>>, Vec<u8>) {
    let program = Program::read(fixture("digits_cnn/portable.pte")).unwrap();
    let lowered = ferrite_lower::lower(&program, &ferrite_lower::LowerOptions::default()).unwrap();
    let lowered = Arc::new(Program::from_vec(lowered.bytes).unwrap());
    let plan = lowered.plan("forward").unwrap();
    assert_eq!(plan.delegates.len(), 1);
    let blob = lowered.delegate_data(&plan.delegates[0]).unwrap().to_vec();
    (lowered, blob)
}

#[test]
fn a_delegate_runs_on_caller_tensors_as_inside_its_program() {
    let (lowered, blob) = lowered_digits();
    let inputs = ferrite_runtime::default_inputs(&lowered, "forward").unwrap();
    let want = Runtime::new().with_threads(1).unwrap().load_method(&lowered, "forward").unwrap().run(&inputs).unwrap();

    let rt = runtime();
    let mut d = null_mut();
    assert_eq!(unsafe { ferrite_delegate_init(rt, blob.as_ptr().cast(), blob.len(), &mut d) }, FerriteStatus::Ok);
    drop(blob);
    assert_eq!(unsafe { (ferrite_delegate_input_count(d), ferrite_delegate_output_count(d)) }, (1, 1));
    let mut spec = FerriteTensor { dtype: 0, ndim: 0, sizes: null(), data: null(), nbytes: 0 };
    assert_eq!(unsafe { ferrite_delegate_output_spec(d, 0, &mut spec) }, FerriteStatus::Ok);
    assert_eq!(unsafe { std::slice::from_raw_parts(spec.sizes, spec.ndim) }, want[0].sizes());
    let sizes = inputs[0].sizes().to_vec();
    let input = input_of(&inputs[0], &sizes);
    let mut out = vec![0u8; spec.nbytes];
    let buffer = FerriteBuffer { data: out.as_mut_ptr().cast::<c_void>(), nbytes: out.len() };
    for _ in 0..2 {
        assert_eq!(unsafe { ferrite_delegate_execute(d, &input, 1, &buffer, 1) }, FerriteStatus::Ok);
        assert_eq!(out, want[0].bytes());
    }
    // Wrong counts and sizes are refused before anything runs.
    assert_eq!(unsafe { ferrite_delegate_execute(d, &input, 1, &buffer, 0) }, FerriteStatus::ExecutionFailed);
    assert_eq!(last_error().0, "R004");
    let short = FerriteBuffer { nbytes: out.len() - 4, ..buffer };
    assert_eq!(unsafe { ferrite_delegate_execute(d, &input, 1, &short, 1) }, FerriteStatus::ExecutionFailed);
    assert_eq!(unsafe { ferrite_delegate_execute(d, null(), 1, &buffer, 1) }, FerriteStatus::InvalidArgument);
    unsafe { ferrite_delegate_free(d) };
    unsafe { ferrite_runtime_free(rt) };
}

#[test]
fn damaged_blobs_and_memory_limits_fail_delegate_init_cleanly() {
    let (_, blob) = lowered_digits();
    let rt = runtime();
    let mut d = null_mut();
    let junk = vec![0xA5u8; 256];
    assert_eq!(
        unsafe { ferrite_delegate_init(rt, junk.as_ptr().cast(), junk.len(), &mut d) },
        FerriteStatus::InvalidProgram
    );
    assert!(d.is_null());
    // Every prefix of a real blob, and bytes flipped through it, fail with a status or initialise.
    for cut in (0..blob.len()).step_by(blob.len() / 64 + 1) {
        let status = unsafe { ferrite_delegate_init(rt, blob.as_ptr().cast(), cut, &mut d) };
        assert_ne!(status, FerriteStatus::Internal);
        assert_ne!(status, FerriteStatus::Ok, "a {cut}-byte prefix initialised");
    }
    for at in (0..blob.len()).step_by(blob.len() / 97 + 1) {
        let mut flipped = blob.clone();
        flipped[at] ^= 0xFF;
        let status = unsafe { ferrite_delegate_init(rt, flipped.as_ptr().cast(), flipped.len(), &mut d) };
        assert_ne!(status, FerriteStatus::Internal, "flipping byte {at}");
        unsafe { ferrite_delegate_free(d) };
        d = null_mut();
    }
    assert_eq!(unsafe { ferrite_runtime_set_memory_limit(rt, 1024) }, FerriteStatus::Ok);
    let status = unsafe { ferrite_delegate_init(rt, blob.as_ptr().cast(), blob.len(), &mut d) };
    assert_eq!(status, FerriteStatus::MemoryLimit);
    assert_eq!(last_error().0, "R040");
    unsafe { ferrite_runtime_free(rt) };
}

/// Found by the `blob_init` fuzz target: a damaged int8 blob whose pooling window dwarfs its
/// image ran for minutes. It now initialises and runs (or fails) at once.
#[test]
fn the_pooling_window_reproducer_runs_at_once() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/blob_init/pool-window-timeout.blob");
    let blob = std::fs::read(path).unwrap();
    let rt = runtime();
    let mut d = null_mut();
    let start = std::time::Instant::now();
    if unsafe { ferrite_delegate_init(rt, blob.as_ptr().cast(), blob.len(), &mut d) } == FerriteStatus::Ok {
        let n_in = unsafe { ferrite_delegate_input_count(d) };
        let n_out = unsafe { ferrite_delegate_output_count(d) };
        let spec = |f: unsafe extern "C" fn(*const FerriteDelegate, usize, *mut FerriteTensor) -> FerriteStatus, k| {
            let mut t = FerriteTensor { dtype: 0, ndim: 0, sizes: null(), data: null(), nbytes: 0 };
            assert_eq!(unsafe { f(d, k, &mut t) }, FerriteStatus::Ok);
            t
        };
        let inputs: Vec<FerriteTensor> = (0..n_in).map(|k| spec(ferrite_delegate_input_spec, k)).collect();
        let data: Vec<Vec<u8>> = inputs.iter().map(|t| vec![0u8; t.nbytes]).collect();
        let inputs: Vec<FerriteTensor> =
            inputs.iter().zip(&data).map(|(t, b)| FerriteTensor { data: b.as_ptr().cast(), ..*t }).collect();
        let mut outs: Vec<Vec<u8>> =
            (0..n_out).map(|k| vec![0u8; spec(ferrite_delegate_output_spec, k).nbytes]).collect();
        let buffers: Vec<FerriteBuffer> =
            outs.iter_mut().map(|b| FerriteBuffer { data: b.as_mut_ptr().cast(), nbytes: b.len() }).collect();
        let status = unsafe { ferrite_delegate_execute(d, inputs.as_ptr(), n_in, buffers.as_ptr(), n_out) };
        assert_ne!(status, FerriteStatus::Internal);
        unsafe { ferrite_delegate_free(d) };
    }
    assert!(start.elapsed().as_secs() < 10, "took {:?}", start.elapsed());
    unsafe { ferrite_runtime_free(rt) };
}
