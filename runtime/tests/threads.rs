//! Where a method runs on a runtime with a thread pool: a method whose operators are all small
//! runs on the calling thread (no hand-off to a pool thread and back on each run), one with a
//! large operator runs on the pool.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ferrite_op_support::Op;
use ferrite_program::{Program, ProgramBuilder, ScalarType};
use ferrite_runtime::{Env, Runtime, TensorData};

/// The rayon pool index the last `relu` ran on (`usize::MAX`: outside any pool).
static RAN_ON: AtomicUsize = AtomicUsize::new(0);

fn recording_relu(env: &mut Env<'_>, args: &[usize]) -> ferrite_runtime::Result<()> {
    RAN_ON.store(rayon::current_thread_index().unwrap_or(usize::MAX), Ordering::SeqCst);
    let relu = ferrite_runtime::portable_kernels().get(Op::Relu.name()).unwrap();
    relu(env, args)
}

/// `relu` of an input of `n` elements, on a two-thread runtime whose relu records its thread.
fn ran_on_calling_thread(n: usize) -> bool {
    let mut b = ProgramBuilder::new("forward");
    let x = b.input(ScalarType::Float, &[n]);
    let y = b.tensor(ScalarType::Float, &[n]);
    b.call(Op::Relu.name(), &[x, y, y]);
    b.output(y);
    let program = Arc::new(Program::from_vec(b.build().unwrap()).unwrap());
    let mut kernels = ferrite_runtime::portable_kernels();
    kernels.register(Op::Relu, recording_relu);
    let runtime = Runtime::new().with_threads(2).unwrap().with_kernels(kernels);
    let mut method = runtime.load_method(&program, "forward").unwrap();
    let input: Vec<f32> = (0..n).map(|i| i as f32 - (n / 2) as f32).collect();
    RAN_ON.store(0, Ordering::SeqCst);
    let out = method.run(&[TensorData::from_slice(vec![n], &input).unwrap()]).unwrap();
    let want: Vec<f32> = input.iter().map(|v| v.max(0.0)).collect();
    assert_eq!(out[0], TensorData::from_slice(vec![n], &want).unwrap());
    RAN_ON.load(Ordering::SeqCst) == usize::MAX
}

#[test]
fn small_methods_run_on_the_calling_thread_and_large_ones_on_the_pool() {
    assert!(ran_on_calling_thread(1000));
    assert!(!ran_on_calling_thread(1 << 21));
}
