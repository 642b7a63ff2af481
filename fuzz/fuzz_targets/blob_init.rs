//! The Ferrite blob decoder and backend init: any bytes, as a delegate's processed blob; a blob
//! that initialises runs once on zero inputs of its declared shapes.
#![no_main]

use std::sync::OnceLock;

use ferrite_runtime::{nbytes, EmbeddedDelegate, Runtime, TensorRef};
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new().with_threads(1).expect("one thread").with_memory_limit(256 << 20))
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut delegate) = EmbeddedDelegate::init(runtime(), data) else { return };
    let specs = |n: usize, f: &dyn Fn(usize) -> Option<(ferrite_program::ScalarType, Vec<usize>)>| {
        (0..n).map(f).collect::<Option<Vec<_>>>()
    };
    let Some(inputs) = specs(delegate.input_count(), &|k| delegate.input_spec(k).map(|(d, s)| (d, s.to_vec()))) else {
        return;
    };
    let Some(outputs) = specs(delegate.output_count(), &|k| delegate.output_spec(k).map(|(d, s)| (d, s.to_vec())))
    else {
        return;
    };
    let sized = |t: &[(ferrite_program::ScalarType, Vec<usize>)]| {
        t.iter().map(|(d, s)| nbytes(*d, s).ok().filter(|&n| n <= 16 << 20)).collect::<Option<Vec<_>>>()
    };
    let (Some(in_bytes), Some(out_bytes)) = (sized(&inputs), sized(&outputs)) else { return };
    let in_data: Vec<Vec<u8>> = in_bytes.iter().map(|&n| vec![0; n]).collect();
    let mut out_data: Vec<Vec<u8>> = out_bytes.iter().map(|&n| vec![0; n]).collect();
    let views: Vec<TensorRef<'_>> = inputs
        .iter()
        .zip(&in_data)
        .map(|((dtype, sizes), data)| TensorRef { dtype: *dtype, sizes, dim_order: &[], data })
        .collect();
    let mut outs: Vec<&mut [u8]> = out_data.iter_mut().map(Vec::as_mut_slice).collect();
    let _ = delegate.execute(&views, &mut outs);
});
