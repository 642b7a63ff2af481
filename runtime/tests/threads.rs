//! Where a method runs on a runtime with a thread pool: a method whose operators are all small
//! runs on the calling thread (no hand-off to a pool thread and back on each run), one with a
//! large operator — many elements, or a convolution of small tensors but many multiply-adds —
//! runs on the pool.
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

fn recording_convolution(env: &mut Env<'_>, args: &[usize]) -> ferrite_runtime::Result<()> {
    RAN_ON.store(rayon::current_thread_index().unwrap_or(usize::MAX), Ordering::SeqCst);
    let convolution = ferrite_runtime::portable_kernels().get(Op::Convolution.name()).unwrap();
    convolution(env, args)
}

/// A 3×3 convolution of `channels` → `channels` on a `size` × `size` image, on a two-thread
/// runtime whose convolution records its thread.
fn convolution_ran_on_calling_thread(channels: usize, size: usize) -> bool {
    let mut b = ProgramBuilder::new("forward");
    let x = b.input(ScalarType::Float, &[1, channels, size, size]);
    let w = b.constant_f32(&[channels, channels, 3, 3], &vec![0.01; channels * channels * 9]);
    let none = b.none();
    let (st, pd, dl) = (b.int_list(&[1, 1]), b.int_list(&[1, 1]), b.int_list(&[1, 1]));
    let (tr, op, groups) = (b.bool(false), b.int_list(&[0, 0]), b.int(1));
    let y = b.tensor(ScalarType::Float, &[1, channels, size, size]);
    b.call(Op::Convolution.name(), &[x, w, none, st, pd, dl, tr, op, groups, y, y]);
    b.output(y);
    let program = Arc::new(Program::from_vec(b.build().unwrap()).unwrap());
    let mut kernels = ferrite_runtime::portable_kernels();
    kernels.register(Op::Convolution, recording_convolution);
    let runtime = Runtime::new().with_threads(2).unwrap().with_kernels(kernels);
    let mut method = runtime.load_method(&program, "forward").unwrap();
    let n = channels * size * size;
    RAN_ON.store(0, Ordering::SeqCst);
    method.run(&[TensorData::from_slice(vec![1, channels, size, size], &vec![1.0f32; n]).unwrap()]).unwrap();
    RAN_ON.load(Ordering::SeqCst) == usize::MAX
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
    // 4 channels on 8×8: 9,216 multiply-adds. 64 channels on 16×16: every tensor under 40,000
    // elements, but 9.4 million multiply-adds.
    assert!(convolution_ran_on_calling_thread(4, 8));
    assert!(!convolution_ran_on_calling_thread(64, 16));
}
