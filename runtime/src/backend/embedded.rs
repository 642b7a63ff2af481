//! A Ferrite delegate on its own, for runtimes that embed Ferrite's backend: ExecuTorch's C++
//! runtime reaches it through `ferrite-capi` and the `FerriteBackend` plugin, handing it the
//! delegate's blob at init and its tensors at execute.

use ferrite_blob::BlobGraph;
use ferrite_program::ScalarType;

use super::{err, Compiled, BACKEND_ID};
use crate::error::Result;
use crate::method::{Accumulation, Runtime};
use crate::tensor::{nbytes, TensorRef};

/// One Ferrite delegate (a `FerriteBackend` blob) initialised outside a Ferrite method: weights
/// packed, buffers allocated, ready to run on caller-owned tensors.
///
/// It runs with the [`Runtime`] it was initialised with: its kernels, SIMD level, memory limit
/// and thread pool. [`Accumulation::Auto`] means [`Accumulation::Fast`] here (a delegate alone
/// does not know whether its program requantizes); ask for [`Accumulation::Reference`] to sum in
/// ExecuTorch's portable order.
///
/// ```no_run
/// use ferrite_runtime::{backend::EmbeddedDelegate, Runtime, TensorRef};
/// # fn blob() -> Vec<u8> { Vec::new() }
/// # fn main() -> Result<(), ferrite_runtime::RuntimeError> {
/// let runtime = Runtime::new().with_threads(1)?;
/// let mut delegate = EmbeddedDelegate::init(&runtime, &blob())?;
/// let (dtype, sizes) = delegate.input_spec(0).map(|(d, s)| (d, s.to_vec())).expect("one input");
/// let input = vec![0u8; ferrite_runtime::nbytes(dtype, &sizes)?];
/// let (odtype, osizes) = delegate.output_spec(0).map(|(d, s)| (d, s.to_vec())).expect("one output");
/// let mut output = vec![0u8; ferrite_runtime::nbytes(odtype, &osizes)?];
/// let view = TensorRef { dtype, sizes: &sizes, dim_order: &[], data: &input };
/// delegate.execute(&[view], &mut [&mut output[..]])?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct EmbeddedDelegate {
    compiled: Compiled,
    runtime: Runtime,
    reference: bool,
    inputs: Vec<(ScalarType, Vec<usize>)>,
    outputs: Vec<(ScalarType, Vec<usize>)>,
}

impl EmbeddedDelegate {
    /// Decodes and verifies `processed` (the delegate's blob, as `ferrite lower` wrote it) and
    /// initialises it: every size it declares is checked against `runtime`'s memory limit before
    /// anything is allocated.
    pub fn init(runtime: &Runtime, processed: &[u8]) -> Result<Self> {
        let _span = tracing::debug_span!("ferrite_backend.init_embedded", bytes = processed.len()).entered();
        let graph = BlobGraph::decode_borrowed(processed).map_err(|e| err(e.to_string()))?;
        let compiled = Compiled::own_packing(&graph, runtime.kernels(), runtime.simd(), runtime.memory_limit())?;
        let spec = |values: &[usize]| -> Result<Vec<(ScalarType, Vec<usize>)>> {
            values
                .iter()
                .map(|&v| match graph.values.get(v) {
                    Some(ferrite_blob::BlobValue::Tensor(t)) => Ok((t.dtype, t.sizes.clone())),
                    _ => Err(err(format!("graph input/output value {v} is not a tensor"))),
                })
                .collect()
        };
        let (inputs, outputs) = (spec(&graph.inputs)?, spec(&graph.outputs)?);
        Ok(EmbeddedDelegate {
            compiled,
            runtime: runtime.clone(),
            reference: runtime.accumulation() == Accumulation::Reference,
            inputs,
            outputs,
        })
    }

    /// The backend id delegates name (`FerriteBackend`).
    pub fn backend_id() -> &'static str {
        BACKEND_ID
    }

    /// Number of inputs the delegate takes.
    pub fn input_count(&self) -> usize {
        self.inputs.len()
    }

    /// Number of outputs the delegate writes.
    pub fn output_count(&self) -> usize {
        self.outputs.len()
    }

    /// Dtype and sizes of input `k` (for a partition with dynamic shapes: the upper bounds it runs at here).
    pub fn input_spec(&self, k: usize) -> Option<(ScalarType, &[usize])> {
        self.inputs.get(k).map(|(d, s)| (*d, s.as_slice()))
    }

    /// Dtype and sizes of output `k`.
    pub fn output_spec(&self, k: usize) -> Option<(ScalarType, &[usize])> {
        self.outputs.get(k).map(|(d, s)| (*d, s.as_slice()))
    }

    /// Runs the delegate: copies `inputs` in (each must match its [`EmbeddedDelegate::input_spec`]
    /// exactly, contiguous), runs every node, and writes each output's bytes into `outputs`
    /// (each exactly `nbytes` of its [`EmbeddedDelegate::output_spec`]).
    pub fn execute(&mut self, inputs: &[TensorRef<'_>], outputs: &mut [&mut [u8]]) -> Result<()> {
        if inputs.len() != self.inputs.len() || outputs.len() != self.outputs.len() {
            return Err(err(format!(
                "the call passes {} inputs and {} outputs, the blob expects {} and {}",
                inputs.len(),
                outputs.len(),
                self.inputs.len(),
                self.outputs.len()
            )));
        }
        for (k, (input, (_, sizes))) in inputs.iter().zip(&self.inputs).enumerate() {
            // A partition with dynamic shapes runs here at its bounds only: the caller's output
            // buffers have the bounds' sizes.
            if input.sizes != sizes.as_slice() {
                return Err(err(format!(
                    "input {k}: expected sizes {sizes:?}, got {:?} (an embedded delegate runs at the shapes, or \
                     upper bounds, it was compiled for; run programs with dynamic shapes through Ferrite's runtime)",
                    input.sizes
                )));
            }
            let need = nbytes(input.dtype, input.sizes)?;
            if input.data.len() != need {
                return Err(err(format!(
                    "input {k}: {} {:?} takes {need} bytes, the tensor given has {}",
                    input.dtype,
                    input.sizes,
                    input.data.len()
                )));
            }
        }
        for (k, ((dtype, sizes), out)) in self.outputs.iter().zip(outputs.iter()).enumerate() {
            let need = nbytes(*dtype, sizes)?;
            if out.len() != need {
                return Err(err(format!(
                    "output {k}: {dtype} {sizes:?} takes {need} bytes, the buffer given has {}",
                    out.len()
                )));
            }
        }
        let (compiled, reference) = (&mut self.compiled, self.reference);
        self.runtime.install(|| -> Result<()> {
            for (k, input) in inputs.iter().enumerate() {
                compiled.load_input(k, *input, reference)?;
            }
            compiled.run_nodes(&[], reference, None, None)?;
            for (k, out) in outputs.iter_mut().enumerate() {
                compiled.with_output(k, |t| {
                    if t.data.len() != out.len() {
                        return Err(err(format!(
                            "output {k}: the partition wrote {} bytes, the buffer given has {}",
                            t.data.len(),
                            out.len()
                        )));
                    }
                    out.copy_from_slice(t.data);
                    Ok(())
                })?;
            }
            Ok(())
        })
    }
}
