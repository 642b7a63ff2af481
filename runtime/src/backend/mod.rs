//! The Ferrite backend (`FerriteBackend`): runs the partitions `ferrite lower` compiled into
//! delegate blobs (format: the `ferrite-blob` crate; compiled by the `ferrite-lower` crate).
//!
//! - this module: at init, verify the blob, resolve every operation to a kernel — the backend's
//!   own packed kernels for [`Op::FerriteConvolutionNhwc`] and [`Op::FerriteDense`], the int8
//!   kernels of `int8` for the quantized operators, a SIMD row kernel where `rows` recognises one, the runtime's kernel registry otherwise — load
//!   constants and plan the partition's scratch memory (buffers reused once a value is dead); at
//!   execute, copy the inputs in, run, copy the outputs out.
//! - `int8`: the int8 operators' argument checks and kernels (weights packed at init).
//! - `rows`: which operations run on the SIMD row kernels, recognised and planned at init.

mod embedded;
mod int8;
mod rows;

use std::sync::Arc;

use ferrite_blob::{returned_count, BlobGraph, BlobOp, BlobValue};
use ferrite_kernels::dense::Dense;
use ferrite_kernels::nhwc::{Conv2d, Conv2dGeometry};
use ferrite_kernels::simd::rows::Unary;
use ferrite_kernels::simd::Level;
use ferrite_op_support::Op;
use ferrite_program::{ScalarType, ShapeDynamism};

pub use embedded::EmbeddedDelegate;
pub use ferrite_blob::BACKEND_ID;

use crate::env::{Env, RValue, Storage, TensorSlot};
use crate::error::{Result, RuntimeError};
use crate::registry::{Backend, BackendInit, Delegate, KernelRegistry, OpFn};
use crate::tensor::{nbytes, AlignedBuf, TensorRef};
use int8::Int8Kernel;
use rows::RowKernel;

/// A decoded blob whose constants stay in the program's bytes.
pub(super) type Graph<'a> = BlobGraph<&'a [u8]>;

fn err(message: impl Into<String>) -> RuntimeError {
    RuntimeError::Backend { id: BACKEND_ID.into(), message: message.into() }
}

/// The Ferrite backend: runs delegates whose blobs `ferrite-lower` wrote, with the runtime's
/// kernels (its registry and SIMD level, from [`BackendInit`]).
#[derive(Debug, Clone, Default)]
pub struct FerriteBackend;

impl FerriteBackend {
    /// The backend.
    pub fn new() -> Self {
        FerriteBackend
    }
}

impl Backend for FerriteBackend {
    fn id(&self) -> &str {
        BACKEND_ID
    }

    fn init(&self, init: BackendInit<'_>) -> Result<Box<dyn Delegate>> {
        let _span = tracing::debug_span!("ferrite_backend.init", bytes = init.processed.len()).entered();
        let graph = BlobGraph::decode_borrowed(init.processed).map_err(|e| err(e.to_string()))?;
        let packed = shared_packing(&init, &graph)?;
        let program = Some(init.program.bytes());
        Ok(Box::new(Compiled::new(&graph, init.kernels, init.level, init.memory_limit, packed, program)?))
    }
}

/// The kernels of one blob that hold packed weights, by operation (`None` for the others).
type Packed = Vec<Option<Kernel>>;

/// Which packing a cache entry holds: the loaded program (its address), the blob (its place in
/// that program's bytes) and the SIMD level.
type PackKey = (usize, usize, usize, Level);

/// Packed weights shared by every method that initialises the same delegate of the same loaded
/// program (N methods, or the same method loaded on N threads, pack once). Entries are weak: the
/// packing lives as long as a delegate using it. A live entry implies a live method holding the
/// program (a method drops its delegates before its program), so the program's address cannot
/// be reused by another program meanwhile.
static PACKED: std::sync::Mutex<Vec<(PackKey, std::sync::Weak<Packed>)>> = std::sync::Mutex::new(Vec::new());

/// The packed kernels for `graph`: from [`PACKED`] when another delegate already packed this
/// blob of this program at this level, packed now (and shared) otherwise. A blob that does not
/// lie inside the program's bytes is packed privately.
fn shared_packing(init: &BackendInit<'_>, graph: &Graph<'_>) -> Result<Arc<Packed>> {
    let bytes = init.program.bytes();
    let (base, start) = (bytes.as_ptr() as usize, init.processed.as_ptr() as usize);
    let inside = start >= base && start + init.processed.len() <= base + bytes.len();
    if !inside {
        return Ok(Arc::new(pack(graph, init.level, &|_| {})?));
    }
    let key: PackKey = (init.program as *const _ as usize, start, init.processed.len(), init.level);
    let cached = || {
        let cache = PACKED.lock().ok()?;
        cache.iter().find(|(k, _)| *k == key).and_then(|(_, w)| w.upgrade())
    };
    if let Some(hit) = cached() {
        tracing::debug!("packed weights shared with an earlier delegate");
        return Ok(hit);
    }
    // Each weight's pages leave resident memory once packed, so a memory-mapped program's
    // weights are not held twice while the rest pack (peak RSS).
    let packed = Arc::new(pack(graph, init.level, &|b| {
        init.program.release(b);
    })?);
    if let Ok(mut cache) = PACKED.lock() {
        cache.retain(|(_, w)| w.strong_count() > 0);
        // Another thread may have packed the same blob meanwhile: keep the first.
        if let Some(hit) = cache.iter().find(|(k, _)| *k == key).and_then(|(_, w)| w.upgrade()) {
            return Ok(hit);
        }
        cache.push((key, Arc::downgrade(&packed)));
    }
    Ok(packed)
}

/// Packs the weights of every operation of `graph` that has its own kernel, handing each
/// packed operation's constants to `release` (their bytes are not read again).
fn pack(graph: &Graph<'_>, level: Level, release: &dyn Fn(&[u8])) -> Result<Packed> {
    let mut packed = Vec::with_capacity(graph.ops.len());
    for (k, op) in graph.ops.iter().enumerate() {
        let kernel = match op.op {
            Op::FerriteConvolutionNhwc => nhwc_convolution(graph, op, level),
            Op::FerriteDense => dense(graph, op, level),
            Op::FerriteQuantizedConvolutionNhwc => int8::convolution(graph, op, level).map(Kernel::Int8),
            Op::FerriteQuantizedDense => int8::dense(graph, op, level).map(Kernel::Int8),
            Op::FerriteQuantizedAdd => int8::add(graph, op).map(Kernel::Int8),
            Op::FerriteDynamicQuantizedDense => int8::dynamic_dense(graph, op, level).map(Kernel::Int8),
            Op::FerriteGroupwiseDense => int8::grouped_dense(graph, op, level).map(Kernel::Int8),
            _ => {
                packed.push(None);
                continue;
            }
        };
        packed.push(Some(kernel.map_err(|e| err(format!("op {k}: {e}")))?));
        for &v in &op.args {
            if let Some(bytes) = graph.tensor(v).and_then(|t| graph.constants.get(t.constant?)) {
                release(bytes);
            }
        }
    }
    Ok(packed)
}

/// A packed kernel's handle for one more delegate (the weights are shared, not copied).
fn share(kernel: &Kernel) -> Option<Kernel> {
    match kernel {
        Kernel::Conv { conv, input, output } => {
            Some(Kernel::Conv { conv: Arc::clone(conv), input: *input, output: *output })
        }
        Kernel::Dense { dense, input, output } => {
            Some(Kernel::Dense { dense: Arc::clone(dense), input: *input, output: *output })
        }
        Kernel::Int8(k) => Some(Kernel::Int8(k.clone())),
        Kernel::Op(_) | Kernel::Row { .. } => None,
    }
}

/// What runs a step: a registry kernel over the step's arguments, one of the backend's own
/// kernels holding its packed weights, or a SIMD row kernel (with the registry kernel to use
/// instead under the reference accumulation order, when the row kernel is not exact).
#[derive(Debug)]
enum Kernel {
    Op(OpFn),
    Conv { conv: Arc<Conv2d>, input: usize, output: usize },
    Dense { dense: Arc<Dense>, input: usize, output: usize },
    Int8(Int8Kernel),
    Row { row: Box<RowKernel>, fallback: Option<OpFn> },
}

/// The argument positions of the constants an operator packs into its kernel at init (they get
/// no buffer unless another operation reads them).
fn packed_arguments(op: Op) -> &'static [usize] {
    match op {
        Op::FerriteConvolutionNhwc | Op::FerriteDense => &[1, 2],
        Op::FerriteQuantizedConvolutionNhwc => &[1, 2, 9],
        Op::FerriteQuantizedDense | Op::FerriteDynamicQuantizedDense | Op::FerriteGroupwiseDense => &[1, 2, 3],
        _ => &[],
    }
}

/// A buffer of the backend's memory plan before allocation.
enum Planned {
    /// A constant's bytes, copied from the blob.
    Data(AlignedBuf),
    /// Zeroed scratch of this many bytes, allocated once the plan fits the memory limit.
    Zeroed(usize),
}

impl Planned {
    fn len(&self) -> usize {
        match self {
            Planned::Data(b) => b.len(),
            Planned::Zeroed(n) => *n,
        }
    }
}

#[derive(Debug)]
struct Step {
    kernel: Kernel,
    op: Op,
    args: Vec<usize>,
    /// (output value, min, max) of a fused activation.
    clamp: Option<(usize, f32, f32)>,
    /// A pointwise convolution that runs into a later step's depthwise one, band by band
    /// ([`Conv2d::run_into_depthwise`]), when nothing inspects the images between them.
    fusion: Option<Fusion>,
}

/// What a pointwise convolution step runs into: the depthwise convolution `steps - 1` steps on,
/// through the element-wise activation of the step between when `steps` is 3.
#[derive(Debug, Clone, Copy)]
struct Fusion {
    steps: usize,
    between: Option<Unary>,
}

/// Builds the NHWC convolution of `op` (see [`NHWC_CONVOLUTION`]): checks the geometry against
/// the tensors and packs the weights for `level`.
fn nhwc_convolution(graph: &Graph<'_>, op: &BlobOp, level: Level) -> Result<Kernel> {
    let bad = |m: &str| err(format!("{}: {m}", Op::FerriteConvolutionNhwc));
    if op.args.len() < 10 || returned_count(&op.args) != 1 {
        return Err(bad("expects aten::convolution.out's arguments"));
    }
    let a = &op.args;
    let list = |v: usize| match graph.values.get(v) {
        Some(BlobValue::IntList(l)) => Ok(l.clone()),
        _ => Err(bad("stride, padding and dilation must be int lists")),
    };
    let tensor = |v: usize, what: &str| {
        graph
            .tensor(v)
            .filter(|t| t.dtype == ScalarType::Float)
            .ok_or_else(|| bad(&format!("{what} must be a float tensor")))
    };
    let (x, w, out) = (tensor(a[0], "input")?, tensor(a[1], "weight")?, tensor(a[9], "output")?);
    let groups = match graph.values.get(a[8]) {
        Some(BlobValue::Int(g)) => *g,
        _ => return Err(bad("groups must be an int")),
    };
    if !matches!(graph.values.get(a[6]), Some(BlobValue::Bool(false))) {
        return Err(bad("transposed convolutions are not supported"));
    }
    // The input is channels-last: give the geometry its NCHW (or NCL) sizes.
    let nchw: Vec<usize> = match *x.sizes.as_slice() {
        [n, h, wd, c] => vec![n, c, h, wd],
        [n, l, c] => vec![n, c, l],
        _ => return Err(bad("input must be 3-D or 4-D")),
    };
    if w.sizes.len() != nchw.len() || out.sizes.len() != nchw.len() {
        return Err(bad("input, weight and output ranks differ"));
    }
    let geometry = Conv2dGeometry::from_nchw(&nchw, &w.sizes, &list(a[3])?, &list(a[4])?, &list(a[5])?, groups)
        .ok_or_else(|| bad("invalid geometry"))?;
    let [oh, ow] = geometry.output()?;
    let (n, o) = (geometry.batch, geometry.out_channels);
    let expected = if nchw.len() == 4 { vec![n, oh, ow, o] } else { vec![n, ow, o] };
    if out.sizes != expected {
        return Err(bad(&format!("output {:?} does not match the geometry ({expected:?})", out.sizes)));
    }
    let constant = |v: usize| constant_f32(graph, v).ok_or_else(|| bad("weight and bias must be constants"));
    let weight = constant(a[1])?;
    let bias = match graph.values.get(a[2]) {
        Some(BlobValue::None) => None,
        Some(BlobValue::Tensor(_)) => Some(constant(a[2])?),
        _ => return Err(bad("bias must be a tensor or None")),
    };
    let clamp = op.activation.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
    let conv = Conv2d::new(level, geometry, &weight, bias.as_deref(), clamp)?;
    tracing::debug!(
        target: "ferrite::backend",
        strategy = conv.strategy(),
        level = level.name(),
        packed_bytes = conv.packed_bytes(),
        "packed an NHWC convolution"
    );
    Ok(Kernel::Conv { conv: Arc::new(conv), input: a[0], output: a[9] })
}

/// Builds the dense layer of `op` (see [`DENSE`]): checks the tensors and packs the weight.
fn dense(graph: &Graph<'_>, op: &BlobOp, level: Level) -> Result<Kernel> {
    let bad = |m: &str| err(format!("{}: {m}", Op::FerriteDense));
    let &[x, w, b, out, out2] = op.args.as_slice() else { return Err(bad("expects (input, weight, bias, out, out)")) };
    if out != out2 {
        return Err(bad("expects (input, weight, bias, out, out)"));
    }
    let float = |v: usize, what: &str| {
        graph
            .tensor(v)
            .filter(|t| t.dtype == ScalarType::Float)
            .ok_or_else(|| bad(&format!("{what} must be a float tensor")))
    };
    let (xt, wt, ot) = (float(x, "input")?, float(w, "weight")?, float(out, "output")?);
    let &[k, n] = wt.sizes.as_slice() else { return Err(bad("weight must be [K, N]")) };
    if !rows_fit(&xt.sizes, &ot.sizes, k, n) {
        return Err(bad(&format!("input {:?} and output {:?} do not fit a {k} × {n} weight", xt.sizes, ot.sizes)));
    }
    let weight = constant_f32(graph, w).ok_or_else(|| bad("weight must be a constant"))?;
    let bias = match graph.values.get(b) {
        Some(BlobValue::None) => None,
        Some(BlobValue::Tensor(_)) => Some(constant_f32(graph, b).ok_or_else(|| bad("bias must be a constant"))?),
        _ => return Err(bad("bias must be a tensor or None")),
    };
    let clamp = op.activation.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
    let dense = Dense::new(level, k, n, &weight, bias.as_deref(), clamp)?;
    tracing::debug!(target: "ferrite::backend", k, n, level = level.name(), "packed a dense layer");
    Ok(Kernel::Dense { dense: Arc::new(dense), input: x, output: out })
}

/// Whether input `[.., k]` and output `[.., n]` have the same rows: the shapes a dense layer
/// with a `k × n` weight reads and writes.
fn rows_fit(input: &[usize], output: &[usize], k: usize, n: usize) -> bool {
    let rows = |sizes: &[usize], last: usize| match sizes.split_last() {
        Some((&l, rest)) if l == last => Some(rest.iter().product::<usize>()),
        _ => None,
    };
    matches!((rows(input, k), rows(output, n)), (Some(a), Some(b)) if a == b)
}

/// A float constant's values: the constant's own bytes where they are aligned for `f32` on a
/// little-endian machine (no copy: packing megabytes of weights reads them once), a converted
/// copy otherwise.
fn constant_f32<'a>(graph: &Graph<'a>, v: usize) -> Option<std::borrow::Cow<'a, [f32]>> {
    let t = graph.tensor(v).filter(|t| t.dtype == ScalarType::Float)?;
    let bytes: &'a [u8] = graph.constants.get(t.constant?).copied()?;
    // (Decoding verified this; checked again for graphs built in memory.)
    if Some(bytes.len()) != t.sizes.iter().try_fold(4usize, |a, &d| a.checked_mul(d)) {
        return None;
    }
    if cfg!(target_endian = "little") {
        if let Ok(values) = bytemuck::try_cast_slice::<u8, f32>(bytes) {
            return Some(std::borrow::Cow::Borrowed(values));
        }
    }
    Some(std::borrow::Cow::Owned(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()))
}

/// An initialised partition.
#[derive(Debug)]
struct Compiled {
    values: Vec<RValue>,
    owned: Vec<AlignedBuf>,
    steps: Vec<Step>,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    /// The SIMD level the row kernels run at (the packed kernels carry their own).
    level: Level,
    /// Whether some tensor has a bounded dynamic shape: each run then sizes every step's
    /// outputs from its inputs ([`size_outputs`]).
    dynamic: bool,
    /// The blob's debug map: value → (the un-lowered program's value, channels-last).
    origins: std::collections::HashMap<usize, (usize, bool)>,
    /// The packed kernels the steps use, kept so other delegates of the same blob share them
    /// while this one lives ([`PACKED`]).
    _packed: Arc<Packed>,
    /// The address and length of the program's bytes when some constant is read there in place
    /// (`Storage::Constant`): every execution must pass those bytes.
    program_span: Option<(usize, usize)>,
}

impl Compiled {
    /// [`Compiled::new`] with weights packed for this delegate alone.
    pub(super) fn own_packing(
        graph: &Graph<'_>,
        kernels: &KernelRegistry,
        level: Level,
        memory_limit: u64,
    ) -> Result<Self> {
        Self::new(graph, kernels, level, memory_limit, Arc::new(pack(graph, level, &|_| {})?), None)
    }

    /// `program`: the loaded program's bytes, when `graph`'s constants are slices of them —
    /// constants the backend's own kernels do not pack are then read there in place (as the
    /// method reads its own), not copied, when nothing writes or aliases them; every execution
    /// must pass the same bytes ([`Env::program`]).
    fn new(
        graph: &Graph<'_>,
        kernels: &KernelRegistry,
        level: Level,
        memory_limit: u64,
        packed: Arc<Packed>,
        program: Option<&[u8]>,
    ) -> Result<Self> {
        // Resolve kernels first: a blob naming an operator this runtime lacks fails at init.
        let mut missing = Vec::new();
        let mut resolved = Vec::with_capacity(graph.ops.len());
        for (k, op) in graph.ops.iter().enumerate() {
            if let Some(kernel) = packed.get(k).and_then(Option::as_ref).and_then(share) {
                resolved.push(kernel);
                continue;
            }
            match (RowKernel::recognise(graph, op), kernels.get(op.op.name())) {
                (Some(row), fallback) => resolved.push(Kernel::Row { row: Box::new(row), fallback }),
                (None, _) if matches!(op.op, Op::FerriteMaxPool2dNhwc | Op::FerriteAvgPool2dNhwc) => {
                    return Err(err(format!("op {k}: {}: the arguments do not form a valid pooling", op.op)));
                }
                (None, _) if op.op == Op::FerriteSafeSoftmax => {
                    return Err(err(format!("op {k}: {}: not a float softmax over the last dimension", op.op)));
                }
                (None, Some(f)) => resolved.push(Kernel::Op(f)),
                (None, None) => missing.push(op.op.name()),
            }
        }
        if !missing.is_empty() {
            missing.sort();
            missing.dedup();
            return Err(err(format!("the blob uses operators this runtime lacks: {}", missing.join(", "))));
        }

        // Plan scratch memory: a computed tensor (or alias group) lives from its first to its
        // last appearance; its buffer returns to a pool afterwards. Inputs and outputs live
        // throughout; constants have their own buffers.
        let n = graph.values.len();
        let root = |v: usize| graph.tensor(v).and_then(|t| t.alias_of).unwrap_or(v);
        let mut first = vec![usize::MAX; n];
        let mut last = vec![0usize; n];
        for (k, op) in graph.ops.iter().enumerate() {
            for &a in &op.args {
                for t in graph.tensors_in(a) {
                    let r = root(t);
                    first[r] = first[r].min(k);
                    last[r] = last[r].max(k);
                }
            }
        }
        for &v in graph.inputs.iter() {
            first[root(v)] = 0;
        }
        for &v in graph.inputs.iter().chain(&graph.outputs) {
            last[root(v)] = usize::MAX;
        }
        let mut need = vec![0usize; n];
        for (v, val) in graph.values.iter().enumerate() {
            if let BlobValue::Tensor(t) = val {
                let bytes = nbytes(t.dtype, &t.sizes)?;
                let r = root(v);
                need[r] = need[r].max(bytes);
            }
        }
        // Constants only the backend's own kernels read were packed into those kernels: they
        // get no buffer (and their values become None).
        let mut packed_away = vec![false; n];
        let packs = |op: &&BlobOp| !packed_arguments(op.op).is_empty();
        for op in graph.ops.iter().filter(packs) {
            for &i in packed_arguments(op.op) {
                if let Some(&v) = op.args.get(i) {
                    packed_away[v] = graph.tensor(v).is_some_and(|t| t.constant.is_some());
                }
            }
        }
        for op in graph.ops.iter().filter(|op| !packs(op)) {
            for &a in &op.args {
                for t in graph.tensors_in(a) {
                    packed_away[t] = false;
                }
            }
        }
        for &v in graph.inputs.iter().chain(&graph.outputs) {
            packed_away[v] = false;
        }
        // Constants read in place must be read only: no operation writes them (as an output),
        // no value aliases them, and they are not partition inputs or outputs.
        let mut writable = vec![false; n];
        for op in &graph.ops {
            let written = match returned_count(&op.args) {
                0 => &op.args[..], // (no out-variant convention: any argument may be written)
                k => &op.args[op.args.len().saturating_sub(2 * k)..],
            };
            for &a in written {
                for t in graph.tensors_in(a) {
                    writable[t] = true;
                }
            }
        }
        for v in 0..n {
            if root(v) != v {
                writable[root(v)] = true;
                writable[v] = true;
            }
        }
        for &v in graph.inputs.iter().chain(&graph.outputs) {
            writable[v] = true;
        }
        // Where a constant lies in the program's bytes: its offset, when aligned for its type.
        let in_program = |data: &[u8], dtype: ScalarType| -> Option<usize> {
            let p = program?;
            let (base, start) = (p.as_ptr() as usize, data.as_ptr() as usize);
            let inside = start >= base && start.checked_add(data.len())? <= base + p.len();
            (inside && start.is_multiple_of(dtype.element_size().max(1))).then(|| start - base)
        };
        // Buffers are planned first (constants copied unless read in place, the rest by size)
        // and allocated only once their total is known to fit the memory limit: sizes come from
        // the blob, which may lie.
        let mut owned: Vec<Planned> = Vec::new();
        let mut buffer_of: Vec<Option<usize>> = vec![None; n];
        let mut in_place: Vec<Option<(usize, usize)>> = vec![None; n];
        for (v, val) in graph.values.iter().enumerate() {
            if let BlobValue::Tensor(t) = val {
                if packed_away[v] {
                    continue;
                }
                if let Some(c) = t.constant {
                    let data = graph.constant(c).ok_or_else(|| err(format!("constant {c} missing")))?;
                    match in_program(data, t.dtype).filter(|_| !writable[v]) {
                        Some(start) => in_place[v] = Some((start, data.len())),
                        None => {
                            owned.push(Planned::Data(AlignedBuf::from_bytes(data)));
                            buffer_of[v] = Some(owned.len() - 1);
                        }
                    }
                }
            }
        }
        let program_span =
            program.filter(|_| in_place.iter().any(Option::is_some)).map(|p| (p.as_ptr() as usize, p.len()));
        let mut pool: Vec<usize> = Vec::new(); // free buffer indices
        let mut order: Vec<usize> = (0..n)
            .filter(|&v| {
                root(v) == v
                    && buffer_of[v].is_none()
                    && in_place[v].is_none()
                    && graph.tensor(v).is_some()
                    && !packed_away[v]
            })
            .collect();
        order.sort_by_key(|&v| (first[v], v));
        let mut active: Vec<usize> = Vec::new();
        for v in order {
            if first[v] == usize::MAX && last[v] == 0 {
                // Never used by any op: still give it memory (it may be an output).
                owned.push(Planned::Zeroed(need[v]));
                buffer_of[v] = Some(owned.len() - 1);
                continue;
            }
            // Release buffers of values dead before v is first written.
            active.retain(|&a| {
                if last[a] < first[v] {
                    if let Some(b) = buffer_of[a] {
                        pool.push(b);
                    }
                    false
                } else {
                    true
                }
            });
            let fit = pool
                .iter()
                .enumerate()
                .filter(|(_, &b)| owned[b].len() >= need[v])
                .min_by_key(|(_, &b)| owned[b].len())
                .map(|(i, _)| i);
            let b = match fit {
                Some(i) => pool.swap_remove(i),
                None => {
                    owned.push(Planned::Zeroed(need[v]));
                    owned.len() - 1
                }
            };
            buffer_of[v] = Some(b);
            active.push(v);
        }

        // Runtime values. Int lists are lists of value indices at run time: their items are
        // appended as Int values after the blob's own.
        let mut values: Vec<RValue> = Vec::with_capacity(n);
        let mut extra: Vec<RValue> = Vec::new();
        for (v, val) in graph.values.iter().enumerate() {
            values.push(match val {
                BlobValue::None => RValue::None,
                BlobValue::Int(x) => RValue::Int(*x),
                BlobValue::Double(x) => RValue::Double(*x),
                BlobValue::Bool(x) => RValue::Bool(*x),
                BlobValue::String(s) => RValue::String(s.clone()),
                BlobValue::IntList(items) => {
                    let ids = (0..items.len()).map(|i| n + extra.len() + i).collect();
                    extra.extend(items.iter().map(|&x| RValue::Int(x)));
                    RValue::IntList(ids)
                }
                BlobValue::DoubleList(items) => RValue::DoubleList(items.clone()),
                BlobValue::BoolList(items) => RValue::BoolList(items.clone()),
                BlobValue::TensorList(items) => RValue::TensorList(items.clone()),
                BlobValue::OptionalTensorList(items) => RValue::OptionalTensorList(items.clone()),
                BlobValue::Tensor(_) if packed_away[v] => RValue::None,
                BlobValue::Tensor(t) => {
                    let storage = match in_place[v] {
                        Some((start, capacity)) => Storage::Constant { start, capacity },
                        None => Storage::Owned {
                            index: buffer_of[root(v)].ok_or_else(|| err(format!("value {v} has no memory")))?,
                        },
                    };
                    RValue::Tensor(TensorSlot {
                        dtype: t.dtype,
                        sizes: t.sizes.clone(),
                        bound: t.sizes.clone(),
                        dim_order: (0..t.sizes.len() as u8).collect(),
                        dynamism: if t.dynamic { ShapeDynamism::DynamicBound } else { ShapeDynamism::Static },
                        storage,
                    })
                }
            });
        }
        values.extend(extra);

        let mut steps = Vec::with_capacity(graph.ops.len());
        for (op, kernel) in graph.ops.iter().zip(resolved) {
            let clamp = match op.activation {
                // The backend's own kernels clamp as they store.
                _ if matches!(kernel, Kernel::Conv { .. } | Kernel::Dense { .. } | Kernel::Int8(_)) => None,
                None => None,
                Some((lo, hi)) => {
                    if lo.is_nan() || hi.is_nan() || lo > hi {
                        return Err(err(format!("{}: invalid fused activation [{lo}, {hi}]", op.op)));
                    }
                    let k = returned_count(&op.args);
                    let out =
                        *op.args.get(op.args.len().wrapping_sub(k.max(1))).filter(|_| k > 0).ok_or_else(|| {
                            err(format!("{}: a fused activation needs an operator with an output", op.op))
                        })?;
                    match graph.tensor(out) {
                        Some(t) if t.dtype == ScalarType::Float => {}
                        _ => return Err(err(format!("{}: fused activation on a non-float output", op.op))),
                    }
                    Some((out, lo, hi))
                }
            };
            steps.push(Step { kernel, op: op.op, args: op.args.clone(), clamp, fusion: None });
        }
        // A pointwise convolution whose output only a depthwise convolution reads (directly, or
        // through one element-wise activation) runs into it band by band: the images between
        // are never written.
        let dynamic = graph.values.iter().any(|v| matches!(v, BlobValue::Tensor(t) if t.dynamic));
        // Written by one step, read by one other, aliased by nothing, not a partition input or
        // output.
        let private = |v: usize| {
            root(v) == v
                && (0..n).all(|w| w == v || root(w) != v)
                && steps.iter().filter(|s| s.args.contains(&v)).count() == 2
                && !graph.outputs.contains(&v)
                && !graph.inputs.contains(&v)
        };
        let mut fusions = Vec::new();
        for k in 0..steps.len() {
            let Kernel::Conv { conv: a, output: mid, .. } = &steps[k].kernel else { continue };
            let (between, last, x) = match steps.get(k + 1).map(|s| (&s.kernel, s.clamp)) {
                Some((Kernel::Row { row, .. }, None)) => match **row {
                    RowKernel::Unary { op, x, out } => (Some(op), k + 2, (x, out)),
                    _ => continue,
                },
                _ => (None, k + 1, (*mid, *mid)),
            };
            let Some(Kernel::Conv { conv: b, input, .. }) = steps.get(last).map(|s| &s.kernel) else { continue };
            let chained = x.0 == *mid && x.1 == *input && private(*mid) && (x.1 == *mid || private(x.1));
            if !dynamic && chained && a.fuses_into_depthwise(b) {
                fusions.push((k, Fusion { steps: last - k + 1, between }));
            }
        }
        for (k, f) in fusions {
            steps[k].fusion = Some(f);
        }
        let total = owned.iter().try_fold(0u64, |sum, b| sum.checked_add(b.len() as u64));
        let over = |needed: u64| RuntimeError::MemoryLimit {
            what: format!("the {BACKEND_ID} delegate's buffers"),
            needed,
            limit: memory_limit,
        };
        match total {
            Some(t) if t <= memory_limit => {}
            t => return Err(over(t.unwrap_or(u64::MAX))),
        }
        let owned = owned
            .into_iter()
            .map(|b| match b {
                Planned::Data(buf) => Ok(buf),
                Planned::Zeroed(len) => AlignedBuf::try_zeroed(len).ok_or_else(|| over(len as u64)),
            })
            .collect::<Result<Vec<_>>>()?;
        let origins = graph.debug.iter().map(|d| (d.value, (d.origin, d.channels_last))).collect();
        Ok(Compiled {
            values,
            owned,
            steps,
            inputs: graph.inputs.clone(),
            outputs: graph.outputs.clone(),
            level,
            dynamic,
            origins,
            _packed: packed,
            program_span,
        })
    }
}

impl Delegate for Compiled {
    fn execute(&mut self, env: &mut Env<'_>, args: &[usize]) -> Result<()> {
        self.run(env, args, None, None)
    }

    fn largest_work(&self) -> Option<u64> {
        let numel = |v: usize| match self.values.get(v) {
            Some(RValue::Tensor(t)) => t.bound.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64)),
            _ => Some(0),
        };
        let mut most = 0u64;
        for step in &self.steps {
            let work = match &step.kernel {
                Kernel::Conv { conv, output, .. } => {
                    let g = conv.geometry();
                    let taps = g.kernel[0] * g.kernel[1] * (g.in_channels / g.groups.max(1));
                    numel(*output)?.checked_mul(taps as u64)?
                }
                Kernel::Dense { dense, output, .. } => numel(*output)?.checked_mul(dense.k() as u64)?,
                // Products whose reduction length the kernel keeps: bounded by input × output.
                Kernel::Int8(
                    Int8Kernel::Conv { input, output, .. }
                    | Int8Kernel::Dense { input, output, .. }
                    | Int8Kernel::Dynamic { input, output, .. }
                    | Int8Kernel::Grouped { input, output, .. },
                ) => numel(*input)?.checked_mul(numel(*output)?)?,
                _ => step.args.iter().map(|&v| numel(v)).try_fold(0u64, |m, n| Some(m.max(n?)))?,
            };
            most = most.max(work);
        }
        Some(most)
    }

    fn fused_operators(&self) -> usize {
        self.steps.iter().filter_map(|s| s.fusion.map(|f| f.steps - 1)).sum()
    }

    fn execute_profiled(
        &mut self,
        env: &mut Env<'_>,
        args: &[usize],
        instruction: usize,
        events: &mut Vec<crate::ProfileEvent>,
    ) -> Result<()> {
        self.run(env, args, Some((instruction, events)), None)
    }

    fn execute_inspected(
        &mut self,
        env: &mut Env<'_>,
        args: &[usize],
        instruction: usize,
        inspect: &mut crate::Inspector<'_>,
    ) -> Result<()> {
        self.run(env, args, None, Some((instruction, inspect)))
    }
}

/// The error of a kernel planned for static shapes that is handed other shapes.
fn static_only() -> RuntimeError {
    RuntimeError::Invalid("this kernel was planned for its static shapes and runs no other".into())
}

/// Sizes the outputs of a step with its own kernel, in a partition with dynamic shapes, from
/// the shapes its inputs have in this run (registry kernels size their own outputs, row kernels
/// in [`RowKernel::run_resized`]). Dense layers take any number of rows of the planned length;
/// convolutions and the int8 element-wise kernels their planned shapes only.
fn size_outputs(kernel: &Kernel, env: &mut Env<'_>) -> Result<()> {
    let rows = |env: &mut Env<'_>, input: usize, output: usize| -> Result<()> {
        let (x, x_bound) = (env.sizes(input)?.to_vec(), env.slot(input)?.bound.clone());
        let out_bound = env.slot(output)?.bound.clone();
        if x.last() != x_bound.last() {
            return Err(RuntimeError::Invalid(format!(
                "a dense layer's input rows must keep their length {:?}, got {x:?}",
                x_bound.last()
            )));
        }
        let (Some((_, lead)), Some(&n)) = (x.split_last(), out_bound.last()) else { return Err(static_only()) };
        let sizes: Vec<usize> = if out_bound.len() == x.len() {
            lead.iter().copied().chain([n]).collect()
        } else if out_bound.len() == 2 {
            vec![lead.iter().product(), n]
        } else if x == x_bound {
            out_bound
        } else {
            return Err(static_only());
        };
        env.resize(output, &sizes)
    };
    let planned = |env: &mut Env<'_>, inputs: &[usize], outputs: &[usize]| -> Result<()> {
        for &v in inputs {
            let slot = env.slot(v)?;
            if slot.sizes != slot.bound {
                return Err(static_only());
            }
        }
        for &v in outputs {
            let bound = env.slot(v)?.bound.clone();
            env.resize(v, &bound)?;
        }
        Ok(())
    };
    match kernel {
        Kernel::Op(_) | Kernel::Row { .. } => Ok(()),
        Kernel::Dense { input, output, .. }
        | Kernel::Int8(
            Int8Kernel::Dense { input, output, .. }
            | Int8Kernel::Dynamic { input, output, .. }
            | Int8Kernel::Grouped { input, output, .. },
        ) => rows(env, *input, *output),
        Kernel::Conv { input, output, .. } | Kernel::Int8(Int8Kernel::Conv { input, output, .. }) => {
            planned(env, &[*input], &[*output])
        }
        Kernel::Int8(Int8Kernel::Add { a, b, output, .. }) => planned(env, &[*a, *b], &[*output]),
    }
}

impl Compiled {
    fn run(
        &mut self,
        env: &mut Env<'_>,
        args: &[usize],
        profile: Option<(usize, &mut Vec<crate::ProfileEvent>)>,
        inspect: Option<(usize, &mut crate::Inspector<'_>)>,
    ) -> Result<()> {
        let (n_in, n_out) = (self.inputs.len(), self.outputs.len());
        if args.len() != n_in + n_out {
            return Err(err(format!(
                "the delegate call passes {} values, the blob expects {} inputs and {} outputs",
                args.len(),
                n_in,
                n_out
            )));
        }
        let reference = env.reference_order;
        // Constants read in place are offsets into the bytes of the program this was
        // initialised from: refuse any other.
        if let Some((at, len)) = self.program_span {
            if env.program.as_ptr() as usize != at || env.program.len() != len {
                return Err(err("the delegate runs inside the method of another program than it was initialised from"));
            }
        }
        for (k, &outer) in args[..n_in].iter().enumerate() {
            self.load_input(k, env.read(outer)?, reference)?;
        }
        self.run_nodes(env.program, reference, profile, inspect)?;
        for (k, &outer) in args[n_in..].iter().enumerate() {
            self.with_output(k, |t| {
                if env.dtype(outer)? != t.dtype {
                    return Err(err(format!(
                        "output value {outer} is {}, the partition produces {}",
                        env.dtype(outer)?,
                        t.dtype
                    )));
                }
                env.resize(outer, t.sizes)?;
                env.run(&[], &[outer], |_, outs| {
                    outs[0].data.copy_from_slice(t.data);
                    Ok(())
                })
            })?;
        }
        Ok(())
    }

    /// Copies `src` into the partition's input `k`, checking dtype and shape.
    fn load_input(&mut self, k: usize, src: TensorRef<'_>, reference: bool) -> Result<()> {
        let inner = *self.inputs.get(k).ok_or_else(|| err(format!("input {k} out of range")))?;
        let mut inner_env = Env::owned(&mut self.values, &mut self.owned, &[], reference, self.level);
        let slot = inner_env.slot(inner)?;
        let (dtype, bound) = (slot.dtype, slot.bound.clone());
        if slot.dynamism == ShapeDynamism::Static {
            if src.dtype != dtype || src.sizes != bound.as_slice() {
                return Err(err(format!(
                    "input {k}: expected {dtype} {bound:?}, got {} {:?} (the partition was compiled for this static shape)",
                    src.dtype, src.sizes
                )));
            }
        } else {
            let within = src.sizes.len() == bound.len() && src.sizes.iter().zip(&bound).all(|(s, b)| s <= b);
            if src.dtype != dtype || !within {
                return Err(err(format!(
                    "input {k}: expected {dtype} of at most {bound:?}, got {} {:?}",
                    src.dtype, src.sizes
                )));
            }
            inner_env.resize(inner, src.sizes)?;
        }
        inner_env.run(&[], &[inner], |_, outs| {
            outs[0].data.copy_from_slice(src.data);
            Ok(())
        })
    }

    /// Shows `f` the partition's output `k` as the last run left it.
    fn with_output<R>(&mut self, k: usize, f: impl FnOnce(TensorRef<'_>) -> Result<R>) -> Result<R> {
        let inner = *self.outputs.get(k).ok_or_else(|| err(format!("output {k} out of range")))?;
        let inner_env = Env::owned(&mut self.values, &mut self.owned, &[], false, self.level);
        f(inner_env.read(inner)?)
    }

    /// Runs every node on the inputs loaded; `program`: the bytes constants read in place lie in.
    fn run_nodes(
        &mut self,
        program: &[u8],
        reference: bool,
        mut profile: Option<(usize, &mut Vec<crate::ProfileEvent>)>,
        mut inspect: Option<(usize, &mut crate::Inspector<'_>)>,
    ) -> Result<()> {
        {
            let mut inner_env = Env::owned(&mut self.values, &mut self.owned, program, reference, self.level);
            let threads = ferrite_kernels::threads();
            // Profiling and inspection see every step's own output: fusion is off for them.
            let fuse = profile.is_none() && inspect.is_none();
            // Steps before this one were run by a fused step.
            let mut skip_to = 0;
            for (k, step) in self.steps.iter().enumerate() {
                if k < skip_to {
                    continue;
                }
                // Under the reference order an approximate activation runs its portable kernel.
                let fusion = step.fusion.filter(|f| fuse && !(reference && f.between.is_some_and(|op| !op.exact())));
                if let (Some(f), Kernel::Conv { conv, input, .. }) = (fusion, &step.kernel) {
                    if let Some(Kernel::Conv { conv: dw, output, .. }) =
                        self.steps.get(k + f.steps - 1).map(|s| &s.kernel)
                    {
                        inner_env
                            .run(&[*input], &[*output], |ins, outs| {
                                Ok(conv.run_into_depthwise(
                                    dw,
                                    f.between,
                                    ins[0].typed::<f32>()?,
                                    outs[0].typed::<f32>()?,
                                    threads,
                                )?)
                            })
                            .map_err(|e| err(format!("ops {k} to {} ({}, fused): {e}", k + f.steps - 1, step.op)))?;
                        skip_to = k + f.steps;
                        continue;
                    }
                }
                let started = profile.as_ref().map(|_| {
                    ferrite_kernels::par::trace::take(); // spans of earlier work
                    std::time::Instant::now()
                });
                let bounds = step.clamp.map_or((f32::NEG_INFINITY, f32::INFINITY), |(_, lo, hi)| (lo, hi));
                if self.dynamic {
                    size_outputs(&step.kernel, &mut inner_env)
                        .map_err(|e| err(format!("op {k} ({}): {e}", step.op)))?;
                }
                // Whether the kernel applied the step's fused activation itself.
                let fused = match &step.kernel {
                    Kernel::Op(f) => f(&mut inner_env, &step.args).map(|()| false),
                    Kernel::Row { row, fallback: Some(f) } if reference && !row.exact() => {
                        f(&mut inner_env, &step.args).map(|()| false)
                    }
                    Kernel::Row { row, fallback } if self.dynamic => {
                        match (row.run_resized(&mut inner_env, self.level, bounds, threads), fallback) {
                            (Ok(true), _) => Ok(true),
                            (Ok(false), Some(f)) => f(&mut inner_env, &step.args).map(|()| false),
                            (Ok(false), None) => Err(static_only()),
                            (Err(e), _) => Err(e),
                        }
                    }
                    Kernel::Row { row, .. } => row.run(&mut inner_env, self.level, bounds, threads).map(|()| true),
                    Kernel::Conv { conv, input, output } => inner_env.run(&[*input], &[*output], |ins, outs| {
                        Ok(conv.run(ins[0].typed::<f32>()?, outs[0].typed::<f32>()?, threads).map(|()| true)?)
                    }),
                    Kernel::Dense { dense, input, output } => inner_env.run(&[*input], &[*output], |ins, outs| {
                        Ok(dense.run(ins[0].typed::<f32>()?, outs[0].typed::<f32>()?, threads).map(|()| true)?)
                    }),
                    Kernel::Int8(Int8Kernel::Conv { conv, input, output }) => {
                        inner_env.run(&[*input], &[*output], |ins, outs| {
                            Ok(conv.run(ins[0].typed::<i8>()?, outs[0].typed::<i8>()?, threads).map(|()| true)?)
                        })
                    }
                    Kernel::Int8(Int8Kernel::Dense { dense, input, output, float_out }) => {
                        inner_env.run(&[*input], &[*output], |ins, outs| {
                            let x = ins[0].typed::<i8>()?;
                            if *float_out {
                                dense.run(x, outs[0].typed::<f32>()?, threads)?;
                            } else {
                                dense.run(x, outs[0].typed::<i8>()?, threads)?;
                            }
                            Ok(true)
                        })
                    }
                    Kernel::Int8(Int8Kernel::Add { params, a, b, output }) => {
                        let level = self.level;
                        inner_env.run(&[*a, *b], &[*output], |ins, outs| {
                            let (x, y) = (ins[0].typed::<i8>()?, ins[1].typed::<i8>()?);
                            ferrite_kernels::int8::add(level, x, y, *params, outs[0].typed::<i8>()?, threads)?;
                            Ok(true)
                        })
                    }
                    Kernel::Int8(Int8Kernel::Dynamic { dense, input, output }) => {
                        inner_env.run(&[*input], &[*output], |ins, outs| {
                            dense.run(ins[0].typed::<f32>()?, outs[0].typed::<f32>()?, threads)?;
                            Ok(true)
                        })
                    }
                    Kernel::Int8(Int8Kernel::Grouped { dense, input, output }) => {
                        inner_env.run(&[*input], &[*output], |ins, outs| {
                            dense.run(ins[0].typed::<f32>()?, outs[0].typed::<f32>()?, threads)?;
                            Ok(true)
                        })
                    }
                }
                .map_err(|e| err(format!("op {k} ({}): {e}", step.op)))?;
                if !fused {
                    if let Some((out, lo, hi)) = step.clamp {
                        inner_env.run(&[], &[out], |_, outs| {
                            for x in outs[0].typed::<f32>()? {
                                *x = x.clamp(lo, hi);
                            }
                            Ok(())
                        })?;
                    }
                }
                if let Some((instruction, f)) = inspect.as_mut() {
                    let k_out = returned_count(&step.args).max(1);
                    for &v in &step.args[step.args.len().saturating_sub(k_out)..] {
                        let Ok(t) = inner_env.read(v) else { continue };
                        let origin = self.origins.get(&v).copied();
                        f(&crate::Intermediate {
                            instruction: *instruction,
                            node: Some(k),
                            op: step.op.name(),
                            value: origin.map(|o| o.0),
                            channels_last: origin.is_some_and(|o| o.1),
                            dtype: t.dtype,
                            sizes: t.sizes,
                            bytes: t.data,
                        })?;
                    }
                }
                if let (Some((instruction, events)), Some(start)) = (profile.as_mut(), started) {
                    let shape = step.args.last().and_then(|&v| inner_env.sizes(v).ok()).map(<[usize]>::to_vec);
                    events.push(crate::ProfileEvent {
                        instruction: *instruction,
                        node: Some(k),
                        name: step.op.name().to_string(),
                        shape: shape.unwrap_or_default(),
                        start,
                        duration: start.elapsed(),
                        workers: ferrite_kernels::par::trace::take(),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ferrite_blob::BlobTensor;

    use super::*;

    fn tensor(sizes: &[usize], constant: Option<usize>) -> BlobValue {
        BlobValue::Tensor(BlobTensor {
            dtype: ScalarType::Float,
            sizes: sizes.to_vec(),
            constant,
            alias_of: None,
            dynamic: false,
        })
    }

    /// A 1×1 NHWC convolution, 2 → 3 channels on a 2×2 image.
    fn conv_graph() -> BlobGraph {
        let f32s = |n: usize| (0..n).flat_map(|i| (i as f32 * 0.5).to_le_bytes()).collect::<Vec<u8>>();
        BlobGraph {
            values: vec![
                tensor(&[1, 2, 2, 2], None),    // 0 input (NHWC)
                tensor(&[3, 2, 1, 1], Some(0)), // 1 weight
                tensor(&[3], Some(1)),          // 2 bias
                BlobValue::IntList(vec![1, 1]), // 3 stride
                BlobValue::IntList(vec![0, 0]), // 4 padding
                BlobValue::IntList(vec![1, 1]), // 5 dilation
                BlobValue::Bool(false),         // 6 transposed
                BlobValue::IntList(vec![0, 0]), // 7 output padding
                BlobValue::Int(1),              // 8 groups
                tensor(&[1, 2, 2, 3], None),    // 9 output (NHWC)
            ],
            inputs: vec![0],
            outputs: vec![9],
            ops: vec![BlobOp {
                op: Op::FerriteConvolutionNhwc,
                args: vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9],
                activation: Some((0.0, 6.0)),
            }],
            constants: vec![f32s(6), f32s(3)],
            debug: vec![],
        }
    }

    /// A program whose method is one delegate call running [`conv_graph`].
    fn delegating_program() -> Arc<ferrite_program::Program<'static>> {
        use ferrite_program::{BackendDelegate, DataLocation, DataSegment, Instruction, ProgramBuilder, ProgramWriter};
        let mut b = ProgramBuilder::new("forward");
        let x = b.input(ScalarType::Float, &[1, 2, 2, 2]);
        let y = b.tensor(ScalarType::Float, &[1, 2, 2, 3]);
        b.output(y);
        let (mut def, segments) = b.into_def();
        let mut segments: Vec<std::borrow::Cow<'_, [u8]>> = segments.into_iter().map(std::borrow::Cow::Owned).collect();
        let plan = &mut def.plans[0];
        plan.chains[0].instructions = vec![Instruction::DelegateCall { delegate_index: 0, args: vec![x, y] }];
        plan.delegates = vec![BackendDelegate {
            id: BACKEND_ID.into(),
            processed: DataLocation::Segment(segments.len()),
            compile_specs: Vec::new(),
        }];
        segments.push(std::borrow::Cow::Owned(conv_graph().encode().expect("encodes")));
        def.segments.push(DataSegment { offset: 0, size: 0 });
        let bytes = ProgramWriter::new(def, segments).expect("writer").to_bytes().expect("writes");
        Arc::new(ferrite_program::Program::from_vec(bytes).expect("verifies"))
    }

    /// How many delegates hold the shared packing of `program`'s blob.
    fn sharers(program: &ferrite_program::Program<'_>) -> usize {
        let at = program as *const _ as usize;
        let cache = PACKED.lock().expect("lock");
        cache.iter().filter(|((p, ..), _)| *p == at).map(|(_, w)| w.strong_count()).sum()
    }

    #[test]
    fn methods_of_one_program_share_packed_weights() {
        let program = delegating_program();
        let runtime = crate::Runtime::new().with_threads(1).expect("runtime");
        let input = crate::TensorData::from_slice(vec![1, 2, 2, 2], &[1.0f32, -2.0, 0.5, 3.0, 0.0, 1.0, -1.0, 2.0])
            .expect("input");
        let mut a = runtime.load_method(&program, "forward").expect("loads");
        let mut b = runtime.load_method(&program, "forward").expect("loads again");
        assert_eq!(sharers(&program), 2, "both delegates hold the one packing");
        assert_eq!(
            a.run(std::slice::from_ref(&input)).expect("runs"),
            b.run(std::slice::from_ref(&input)).expect("runs")
        );
        // Another load of the same bytes is another program: its own packing.
        let other = Arc::new(ferrite_program::Program::from_vec(program.bytes().to_vec()).expect("copy"));
        let c = runtime.load_method(&other, "forward").expect("loads");
        assert_eq!((sharers(&program), sharers(&other)), (2, 1));
        drop((a, b, c));
        assert_eq!((sharers(&program), sharers(&other)), (0, 0), "the packing goes with its last delegate");
    }

    #[test]
    fn a_well_formed_nhwc_convolution_initialises_and_drops_its_constants() {
        let c =
            Compiled::own_packing(&conv_graph().borrowed(), &crate::ops::portable_kernels(), Level::detect(), u64::MAX)
                .expect("initialises");
        assert!(matches!(c.steps[0].kernel, Kernel::Conv { .. }));
        // Weight and bias were packed away: no buffers for them.
        assert!(matches!(c.values[1], RValue::None) && matches!(c.values[2], RValue::None));
    }

    #[test]
    fn malformed_backend_operators_are_errors_not_panics() {
        type Mutation = Box<dyn Fn(&mut BlobGraph)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("too few arguments", Box::new(|g| g.ops[0].args.truncate(5))),
            ("non-constant weight", Box::new(|g| g.values[1] = tensor(&[3, 2, 1, 1], None))),
            ("output of the wrong size", Box::new(|g| g.values[9] = tensor(&[1, 2, 2, 4], None))),
            ("weight of the wrong size", Box::new(|g| g.values[1] = tensor(&[3, 2, 2, 1], Some(0)))),
            ("zero stride", Box::new(|g| g.values[3] = BlobValue::IntList(vec![0, 1]))),
            ("negative padding", Box::new(|g| g.values[4] = BlobValue::IntList(vec![-1, 0]))),
            ("groups not an int", Box::new(|g| g.values[8] = BlobValue::Double(1.0))),
            ("transposed", Box::new(|g| g.values[6] = BlobValue::Bool(true))),
            ("2-D input", Box::new(|g| g.values[0] = tensor(&[4, 2], None))),
            ("huge padding", Box::new(|g| g.values[4] = BlobValue::IntList(vec![i64::MAX, 0]))),
            ("bias of the wrong size", Box::new(|g| g.values[2] = tensor(&[2], Some(1)))),
        ];
        for (what, mutate) in cases {
            let mut g = conv_graph();
            mutate(&mut g);
            assert!(
                Compiled::own_packing(&g.borrowed(), &crate::ops::portable_kernels(), Level::detect(), u64::MAX)
                    .is_err(),
                "{what}"
            );
        }
        // The same for the dense layer.
        let mut g = conv_graph();
        g.ops[0] = BlobOp { op: Op::FerriteDense, args: vec![0, 1, 2, 9, 9], activation: None };
        assert!(
            Compiled::own_packing(&g.borrowed(), &crate::ops::portable_kernels(), Level::detect(), u64::MAX).is_err(),
            "dense with a 4-D weight"
        );
        g.values[1] = tensor(&[2, 3], Some(0));
        g.values[0] = tensor(&[4, 2], None);
        g.values[9] = tensor(&[4, 3], None);
        assert!(
            Compiled::own_packing(&g.borrowed(), &crate::ops::portable_kernels(), Level::detect(), u64::MAX).is_ok(),
            "a valid dense layer"
        );
        g.values[9] = tensor(&[4, 4], None);
        assert!(
            Compiled::own_packing(&g.borrowed(), &crate::ops::portable_kernels(), Level::detect(), u64::MAX).is_err(),
            "dense output of the wrong size"
        );
        // A pooling whose output does not match its input.
        let mut g = conv_graph();
        g.ops[0] = BlobOp { op: Op::FerriteMaxPool2dNhwc, args: vec![0, 3, 3, 4, 5, 6, 8, 9, 9], activation: None };
        let Err(e) = Compiled::own_packing(&g.borrowed(), &crate::ops::portable_kernels(), Level::detect(), u64::MAX)
        else {
            panic!("a bad pooling was accepted")
        };
        assert!(e.to_string().contains("valid pooling"), "{e}");
    }

    #[test]
    fn declared_sizes_beyond_the_memory_limit_are_refused_before_allocating() {
        let kernels = crate::ops::portable_kernels();
        // The plan needs the input and output buffers (32 + 48 bytes): a smaller limit refuses it.
        let Err(e) = Compiled::own_packing(&conv_graph().borrowed(), &kernels, Level::detect(), 64) else {
            panic!("over the limit")
        };
        assert_eq!(e.code(), "R040", "{e}");
        assert!(Compiled::own_packing(&conv_graph().borrowed(), &kernels, Level::detect(), 1 << 20).is_ok());
        // A flipped size (2^50 floats, as a damaged blob may declare): refused at any limit the
        // machine can give — counted against the limit, or refused by the allocator.
        for limit in [crate::tensor::physical_memory(), u64::MAX] {
            let mut g = conv_graph();
            g.values.push(tensor(&[1 << 30, 1 << 20], None));
            let Err(e) = Compiled::own_packing(&g.borrowed(), &kernels, Level::detect(), limit) else {
                panic!("2^52 bytes accepted")
            };
            assert_eq!(e.code(), "R040", "{e}");
        }
    }

    #[test]
    fn a_method_plan_beyond_the_memory_limit_is_refused() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/mlp/portable.pte");
        let program = std::sync::Arc::new(ferrite_program::Program::read(&path).expect("fixture"));
        let Err(e) = crate::Runtime::new().with_memory_limit(8).load_method(&program, "forward") else {
            panic!("a plan over 8 bytes was accepted")
        };
        assert_eq!(e.code(), "R040", "{e}");
        assert!(crate::Runtime::new().with_memory_limit(1 << 30).load_method(&program, "forward").is_ok());
    }
}
