//! [`Runtime`] and [`Method`]: loading a method of a verified program and executing it.

use std::sync::Arc;

use ferrite_kernels::simd::Level;
use ferrite_program::{ExecutionPlan, Instruction, Program, ScalarType, ShapeDynamism, TensorStorage, Value};

use crate::env::{Env, RValue, Storage, TensorSlot};
use crate::error::{Result, RuntimeError};
use crate::registry::{BackendInit, BackendRegistry, Delegate, KernelRegistry, OpFn};
use crate::tensor::{nbytes, AlignedBuf, TensorData};

/// How float convolutions and matrix products (`convolution`, `mm`, `bmm`, `addmm`, `linear`,
/// `matmul`, `baddbmm`) sum their terms.
///
/// Fast kernels block the reduction and use fused multiply-adds, so their float results differ
/// from ExecuTorch's portable kernels in the last bits. That is harmless in a float program, but
/// in a quantize-dequantize program the sum is rounded to an integer right after, a last-bit
/// difference can cross a rounding boundary, and the one-step difference then grows through
/// every later layer (7 steps at the output of mobilenet_v2's `q8` variant). In ExecuTorch's
/// order the integers come out exactly as ExecuTorch's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accumulation {
    /// [`Accumulation::Reference`] for methods that requantize (call a `quantize_per_*`
    /// operator), [`Accumulation::Fast`] for all others. The default.
    #[default]
    Auto,
    /// Blocked, fused kernels everywhere: fastest; float results agree with ExecuTorch to
    /// rounding noise.
    Fast,
    /// ExecuTorch's portable order everywhere: each output is summed term by term in index
    /// order, one rounding per multiply and per add, bias last. Slower (about 1.5× for
    /// mobilenet_v2); bit-identical to ExecuTorch's portable kernels for these operators.
    /// Transposed convolutions keep the fast kernel.
    Reference,
}

impl Accumulation {
    /// Whether a method with this plan sums in reference order.
    fn reference_for(self, plan: &ExecutionPlan) -> bool {
        match self {
            Accumulation::Fast => false,
            Accumulation::Reference => true,
            Accumulation::Auto => ferrite_op_support::requantizes(plan),
        }
    }
}

/// Shared configuration for loading methods: kernels, backends, the thread pool and the SIMD
/// level.
///
/// Cheap to clone; one runtime can load any number of methods of any programs.
#[derive(Debug, Clone)]
pub struct Runtime {
    kernels: Arc<KernelRegistry>,
    backends: Arc<BackendRegistry>,
    pool: Option<Arc<rayon::ThreadPool>>,
    accumulation: Accumulation,
    level: Level,
    memory_limit: u64,
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Runtime {
    /// Ferrite's portable kernels ([`crate::ops::portable_kernels`]), the Ferrite backend
    /// (`FerriteBackend`) for delegated partitions, rayon's global thread pool, and the best SIMD
    /// level this CPU runs ([`Level::detect`]; `FERRITE_SIMD` asks for a lower one). This is the
    /// one place the default registries are assembled.
    pub fn new() -> Self {
        let mut backends = BackendRegistry::empty();
        backends.register(Arc::new(crate::backend::FerriteBackend::new()));
        Runtime {
            kernels: Arc::new(crate::ops::portable_kernels()),
            backends: Arc::new(backends),
            pool: None,
            accumulation: Accumulation::Auto,
            level: Level::detect(),
            memory_limit: crate::tensor::physical_memory(),
        }
    }

    /// Refuses to load a method whose memory plan, or a delegate whose buffers, would take more
    /// than `bytes` ([`RuntimeError::MemoryLimit`], before anything is allocated). The default is
    /// the machine's physical memory.
    pub fn with_memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// The memory limit ([`Runtime::with_memory_limit`]).
    pub fn memory_limit(&self) -> u64 {
        self.memory_limit
    }

    /// Runs the kernels at SIMD `level` instead of the detected one (for tests and for comparing
    /// levels). An error when this CPU does not run `level`.
    pub fn with_simd(mut self, level: Level) -> Result<Self> {
        if !Level::available().contains(&level) {
            return Err(RuntimeError::Unsupported(format!(
                "SIMD level {} on this CPU (it runs: {})",
                level.name(),
                Level::available().iter().map(|l| l.name()).collect::<Vec<_>>().join(", ")
            )));
        }
        self.level = level;
        Ok(self)
    }

    /// The SIMD level kernels run at.
    pub fn simd(&self) -> Level {
        self.level
    }

    /// Chooses how convolutions and matrix products sum (default [`Accumulation::Auto`]).
    pub fn with_accumulation(mut self, accumulation: Accumulation) -> Self {
        self.accumulation = accumulation;
        self
    }

    /// How convolutions and matrix products sum.
    pub fn accumulation(&self) -> Accumulation {
        self.accumulation
    }

    /// Uses a dedicated pool of `threads` threads (1 = run everything on the calling thread).
    pub fn with_threads(mut self, threads: usize) -> Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("ferrite-{i}"))
            .build()
            .map_err(|e| RuntimeError::Invalid(format!("cannot start {threads} threads: {e}")))?;
        self.pool = Some(Arc::new(pool));
        Ok(self)
    }

    /// Replaces the kernel registry.
    pub fn with_kernels(mut self, kernels: KernelRegistry) -> Self {
        self.kernels = Arc::new(kernels);
        self
    }

    /// Replaces the backend registry.
    pub fn with_backends(mut self, backends: BackendRegistry) -> Self {
        self.backends = Arc::new(backends);
        self
    }

    /// Threads kernels may use.
    pub fn threads(&self) -> usize {
        self.pool.as_ref().map_or_else(rayon::current_num_threads, |p| p.current_num_threads())
    }

    /// Runs `f` on this runtime's thread pool (on the calling thread when it has one thread).
    pub(crate) fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) if pool.current_num_threads() == 1 => ferrite_kernels::serial(f),
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    /// The kernel registry.
    pub fn kernels(&self) -> &KernelRegistry {
        &self.kernels
    }

    /// Loads method `name` of `program`: resolves every kernel and backend, allocates the planned
    /// arenas and places constants and initial values. Fails here — never mid-execution — when an
    /// operator has no kernel or a delegate's backend is not registered.
    pub fn load_method(&self, program: &Arc<Program<'static>>, name: &str) -> Result<Method> {
        let plan_index =
            program.def().plans.iter().position(|p| p.name == name).ok_or_else(|| RuntimeError::NoSuchMethod {
                name: name.to_string(),
                available: program.method_names().collect::<Vec<_>>().join(", "),
            })?;
        let _span = tracing::debug_span!("method.load", method = name).entered();
        let plan = &program.def().plans[plan_index];
        let mut load_events = Vec::new();
        let mut timed = |name: String, start: std::time::Instant| {
            load_events.push(crate::LoadEvent { name, start, duration: start.elapsed() });
        };
        let t = std::time::Instant::now();
        let steps = resolve_steps(plan, &self.kernels)?;
        timed(format!("resolve {} instructions", steps.len()), t);
        // The memory plan's arenas, checked against the limit before anything is allocated.
        let planned = plan.non_const_buffer_sizes.iter().try_fold(0u64, |sum, &s| sum.checked_add(s));
        let over = |needed: u64| RuntimeError::MemoryLimit {
            what: format!("method {name:?}: memory-planned buffers"),
            needed,
            limit: self.memory_limit,
        };
        match planned {
            Some(total) if total <= self.memory_limit => {}
            total => return Err(over(total.unwrap_or(u64::MAX))),
        }
        let delegates =
            init_delegates(plan, program, &self.backends, &self.kernels, self.level, self.memory_limit, &mut timed)?;
        let t = std::time::Instant::now();
        let arenas: Vec<AlignedBuf> = plan
            .non_const_buffer_sizes
            .iter()
            .map(|&s| usize::try_from(s).ok().and_then(AlignedBuf::try_zeroed).ok_or_else(|| over(s)))
            .collect::<Result<_>>()?;
        timed(format!("memory plan: {} bytes in {} arenas", planned.unwrap_or(0), arenas.len()), t);
        let t = std::time::Instant::now();
        let mut method = Method {
            program: Arc::clone(program),
            name: name.to_string(),
            values: Vec::new(),
            arenas,
            owned: Vec::new(),
            steps,
            delegates,
            inputs: plan.inputs.clone(),
            outputs: plan.outputs.clone(),
            pool: self.pool.clone(),
            reference_order: self.accumulation.reference_for(plan),
            level: self.level,
            small: false,
            load_events: Vec::new(),
        };
        method.values = init_values(plan, program, &mut method.arenas, &mut method.owned)?;
        method.small = method.is_small();
        timed(format!("values: {} (constants in place)", method.values.len()), t);
        method.load_events = load_events;
        tracing::debug!(values = method.values.len(), steps = method.steps.len(), "method loaded");
        Ok(method)
    }
}

/// Work (multiply-adds, or elements) below which an operator gains nothing from a second
/// thread: at tens of GFLOP/s it takes tens of microseconds, a few times what handing a run to
/// a pool thread and back costs.
const SMALL_WORK: u64 = 1 << 20;

#[derive(Debug)]
enum Step {
    Kernel { op: OpFn, name: String, args: Vec<usize> },
    Delegate { index: usize, args: Vec<usize> },
    Move { from: usize, to: usize },
    JumpFalse { cond: usize, destination: usize },
    Free,
}

fn resolve_steps(plan: &ExecutionPlan, kernels: &KernelRegistry) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    let mut missing: Vec<(String, Vec<usize>)> = Vec::new();
    let chain = plan.chains.first().map(|c| c.instructions.as_slice()).unwrap_or(&[]);
    if plan.chains.len() > 1 {
        return Err(RuntimeError::Unsupported(format!(
            "method {:?} has {} chains; ExecuTorch programs have one",
            plan.name,
            plan.chains.len()
        )));
    }
    for (i, ins) in chain.iter().enumerate() {
        steps.push(match ins {
            Instruction::KernelCall { op_index, args } => {
                let name = plan.operators[*op_index].qualified();
                match kernels.get(&name) {
                    Some(op) => Step::Kernel { op, name, args: args.clone() },
                    None => {
                        match missing.iter_mut().find(|(n, _)| *n == name) {
                            Some((_, list)) => list.push(i),
                            None => missing.push((name, vec![i])),
                        }
                        Step::Free
                    }
                }
            }
            Instruction::DelegateCall { delegate_index, args } => {
                Step::Delegate { index: *delegate_index, args: args.clone() }
            }
            Instruction::MoveCall { from, to } => Step::Move { from: *from, to: *to },
            Instruction::JumpFalseCall { cond, destination } => {
                Step::JumpFalse { cond: *cond, destination: *destination }
            }
            Instruction::FreeCall { .. } => Step::Free,
        });
    }
    if !missing.is_empty() {
        return Err(RuntimeError::MissingKernels { method: plan.name.clone(), missing });
    }
    Ok(steps)
}

fn init_delegates(
    plan: &ExecutionPlan,
    program: &Program<'static>,
    backends: &BackendRegistry,
    kernels: &KernelRegistry,
    level: Level,
    memory_limit: u64,
    timed: &mut dyn FnMut(String, std::time::Instant),
) -> Result<Vec<Box<dyn Delegate>>> {
    plan.delegates
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let t = std::time::Instant::now();
            let backend = backends.get(&d.id).ok_or_else(|| RuntimeError::BackendNotRegistered {
                method: plan.name.clone(),
                delegate: i,
                id: d.id.clone(),
                registered: backends.ids(),
            })?;
            let processed = program.delegate_data(d).unwrap_or(&[]);
            let delegate = backend.init(BackendInit {
                processed,
                compile_specs: &d.compile_specs,
                program,
                kernels,
                level,
                memory_limit,
            })?;
            // Like ExecuTorch freeing a delegate's processed data after init: what the backend
            // needs it has packed or will read again (a memory-mapped program's pages come back).
            let released = program.release(processed);
            timed(format!("init delegate {i} ({}, {} bytes; {released} released)", d.id, processed.len()), t);
            Ok(delegate)
        })
        .collect()
}

fn init_values(
    plan: &ExecutionPlan,
    program: &Program<'static>,
    arenas: &mut [AlignedBuf],
    owned: &mut Vec<AlignedBuf>,
) -> Result<Vec<RValue>> {
    let base = program.bytes().as_ptr() as usize;
    plan.values
        .iter()
        .map(|v| {
            Ok(match v {
                Value::Null => RValue::None,
                Value::Int(i) => RValue::Int(*i),
                Value::Bool(b) => RValue::Bool(*b),
                Value::Double(d) => RValue::Double(*d),
                Value::String(s) => RValue::String(s.clone()),
                Value::IntList(l) => RValue::IntList(l.clone()),
                Value::DoubleList(l) => RValue::DoubleList(l.clone()),
                Value::BoolList(l) => RValue::BoolList(l.clone()),
                Value::TensorList(l) => RValue::TensorList(l.clone()),
                Value::OptionalTensorList(l) => RValue::OptionalTensorList(l.clone()),
                Value::Tensor(t) => {
                    let capacity = t.nbytes();
                    let storage = match t.storage() {
                        TensorStorage::Constant { .. } => {
                            let data = program.tensor_data(t).unwrap_or(&[]);
                            if (data.as_ptr() as usize).is_multiple_of(t.scalar_type.element_size().max(1)) {
                                Storage::Constant { start: data.as_ptr() as usize - base, capacity: data.len() }
                            } else {
                                // The program's bytes sit at an address that misaligns this
                                // constant (e.g. `include_bytes!`): use an aligned copy.
                                owned.push(AlignedBuf::from_bytes(data));
                                Storage::Owned { index: owned.len() - 1 }
                            }
                        }
                        TensorStorage::Planned { alloc, initial } => {
                            let offset = alloc.offset as usize;
                            if initial.is_some() {
                                if let (Some(src), Some(arena)) =
                                    (program.tensor_data(t), arenas.get_mut(alloc.memory_id as usize))
                                {
                                    if let Some(dst) = arena.as_mut_slice().get_mut(offset..offset + src.len()) {
                                        dst.copy_from_slice(src);
                                    }
                                }
                            }
                            Storage::Arena { id: alloc.memory_id as usize, offset, capacity }
                        }
                        TensorStorage::Runtime => Storage::Empty,
                        TensorStorage::External => {
                            return Err(RuntimeError::Unsupported(
                                "tensors stored outside the .pte (external .ptd data)".into(),
                            ))
                        }
                    };
                    // Bounded and unbounded dynamic tensors start at their upper bound, as in ExecuTorch.
                    RValue::Tensor(TensorSlot {
                        dtype: t.scalar_type,
                        sizes: t.sizes.clone(),
                        bound: t.sizes.clone(),
                        dim_order: t.dim_order.clone(),
                        dynamism: t.dynamism,
                        storage,
                    })
                }
            })
        })
        .collect()
}

/// A callback [`Method::execute_observed`] calls after each instruction: the instruction's
/// index and the method, to read values from.
pub type Observer<'a> = dyn FnMut(usize, &Method) -> Result<()> + Send + 'a;

/// A loaded method: owns its memory (arenas, values, delegates), so each `Method` runs
/// independently; many methods of one program may run on different threads at once.
///
/// Mutable buffers persist across [`Method::execute`] calls.
#[derive(Debug)]
pub struct Method {
    name: String,
    values: Vec<RValue>,
    arenas: Vec<AlignedBuf>,
    owned: Vec<AlignedBuf>,
    steps: Vec<Step>,
    delegates: Vec<Box<dyn Delegate>>,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    pool: Option<Arc<rayon::ThreadPool>>,
    reference_order: bool,
    level: Level,
    /// Every operator is too small to split over threads ([`SMALL_WORK`]): runs stay on the
    /// calling thread even with a pool, saving the hand-off to a pool thread and back.
    small: bool,
    /// How long each phase of loading took.
    load_events: Vec<crate::LoadEvent>,
    /// Declared last so it is dropped last: the delegates above may share packed weights keyed
    /// by this program's address, which must not be freed (and reused) while they live.
    program: Arc<Program<'static>>,
}

impl Method {
    /// The method's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of inputs.
    pub fn input_count(&self) -> usize {
        self.inputs.len()
    }

    /// Number of outputs.
    pub fn output_count(&self) -> usize {
        self.outputs.len()
    }

    /// Dtype and (upper-bound) sizes of input `index`, as the program declares them; `None` if
    /// there is no such input or it is not a tensor.
    pub fn input_spec(&self, index: usize) -> Option<(ferrite_program::ScalarType, &[usize])> {
        match self.values.get(*self.inputs.get(index)?) {
            Some(RValue::Tensor(t)) => Some((t.dtype, &t.bound)),
            _ => None,
        }
    }

    /// The program this method belongs to.
    pub fn program(&self) -> &Arc<Program<'static>> {
        &self.program
    }

    /// Sets input `index`, copying `tensor` into the method's memory. Checks dtype and shape
    /// (equal for static inputs, within the bound for dynamic ones).
    pub fn set_input(&mut self, index: usize, tensor: &TensorData) -> Result<()> {
        self.set_input_bytes(index, tensor.dtype(), tensor.sizes(), tensor.bytes())
    }

    /// [`Method::set_input`] from borrowed parts: `bytes` are the tensor's contiguous
    /// little-endian elements, exactly `nbytes(dtype, sizes)` of them. Embedding APIs (the C
    /// ABI) set inputs this way without an intermediate copy.
    pub fn set_input_bytes(&mut self, index: usize, dtype: ScalarType, sizes: &[usize], bytes: &[u8]) -> Result<()> {
        let need = nbytes(dtype, sizes)?;
        if bytes.len() != need {
            return Err(RuntimeError::Invalid(format!(
                "input {index}: {dtype} {sizes:?} takes {need} bytes, {} given",
                bytes.len()
            )));
        }
        let v = *self.inputs.get(index).ok_or_else(|| RuntimeError::InputCount {
            method: self.name.clone(),
            expected: self.inputs.len(),
            given: index + 1,
        })?;
        let method = self.name.clone();
        let slot = match self.values.get(v) {
            Some(RValue::Tensor(t)) => t,
            Some(other) => return Err(RuntimeError::InputKind { method, index, kind: other.kind() }),
            None => return Err(RuntimeError::Invalid(format!("input value {v} out of range"))),
        };
        if slot.dtype != dtype {
            return Err(RuntimeError::InputDtype { method, index, expected: slot.dtype, given: dtype });
        }
        let shape_err = |reason| RuntimeError::InputShape {
            method: method.clone(),
            index,
            expected: slot.bound.clone(),
            given: sizes.to_vec(),
            reason,
        };
        if sizes.len() != slot.bound.len() {
            return Err(shape_err("the rank differs"));
        }
        match slot.dynamism {
            ShapeDynamism::Static if sizes != slot.bound => return Err(shape_err("the input's shape is static")),
            ShapeDynamism::DynamicBound if sizes.iter().zip(&slot.bound).any(|(s, b)| s > b) => {
                return Err(shape_err("a dimension exceeds the exported upper bound"))
            }
            _ => {}
        }
        let mut env = self.env();
        env.resize(v, sizes)?;
        env.run(&[], &[v], |_, outs| {
            outs[0].data.copy_from_slice(bytes);
            Ok(())
        })
    }

    /// Runs the method once on the inputs set.
    ///
    /// Set the inputs again before the next execution: ExecuTorch's memory plan may reuse an
    /// input's memory for intermediates once it has been read ([`Method::run`] does this).
    pub fn execute(&mut self) -> Result<()> {
        let _span = tracing::debug_span!("method.execute", method = %self.name).entered();
        self.execute_inner(None)
    }

    /// Runs the method once, calling `observe(instruction, method)` after every instruction
    /// that ran (kernel or delegate call), so the caller can read the values it wrote with
    /// [`Method::value`]. Calibration and numerical debugging watch intermediate tensors this
    /// way; an error from `observe` stops the run and is returned.
    pub fn execute_observed(&mut self, observe: &mut Observer<'_>) -> Result<()> {
        let _span = tracing::debug_span!("method.execute_observed", method = %self.name).entered();
        self.execute_inner(Some(observe))
    }

    /// Runs the method once, timing every kernel call and delegate call — and, inside Ferrite's
    /// backend, every node — and returns the events in the order they ran.
    pub fn execute_profiled(&mut self) -> Result<Vec<crate::ProfileEvent>> {
        let _span = tracing::debug_span!("method.execute_profiled", method = %self.name).entered();
        let mut events = Vec::with_capacity(self.steps.len());
        // Worker threads record their shares of each parallel operator while this runs.
        let _recording = ferrite_kernels::par::trace::record();
        self.execute_inner_with(None, Some(&mut events), None)?;
        Ok(events)
    }

    /// Runs the method once, showing `inspect` every tensor written: each kernel call's outputs
    /// and, inside delegates that can show them (Ferrite's backend), each node's outputs, mapped
    /// to the un-lowered program's values where the delegate records them. `ferrite debug
    /// numerics` compares two programs this way; an error from `inspect` stops the run.
    pub fn execute_inspected(&mut self, inspect: &mut crate::Inspector<'_>) -> Result<()> {
        let _span = tracing::debug_span!("method.execute_inspected", method = %self.name).entered();
        self.execute_inner_with(None, None, Some(inspect))
    }

    fn execute_inner(&mut self, observe: Option<&mut Observer<'_>>) -> Result<()> {
        self.execute_inner_with(observe, None, None)
    }

    fn execute_inner_with(
        &mut self,
        observe: Option<&mut Observer<'_>>,
        profile: Option<&mut Vec<crate::ProfileEvent>>,
        inspect: Option<&mut crate::Inspector<'_>>,
    ) -> Result<()> {
        match self.pool.clone() {
            // One thread: run right here rather than hand the work to the pool's thread.
            Some(pool) if pool.current_num_threads() == 1 => {
                ferrite_kernels::serial(move || self.run_steps(observe, profile, inspect))
            }
            Some(_) if self.small => ferrite_kernels::serial(move || self.run_steps(observe, profile, inspect)),
            Some(pool) => pool.install(move || self.run_steps(observe, profile, inspect)),
            None => self.run_steps(observe, profile, inspect),
        }
    }

    /// Whether no operator of the method does [`SMALL_WORK`] or more. Delegates say
    /// ([`Delegate::largest_work`]; one that cannot say counts as large). A kernel call counts
    /// its largest tensor's elements times the longest dimension among its tensors — a bound on
    /// a matrix product's multiply-adds — and a convolution its output's elements times the
    /// weight's elements per output channel. Dynamic tensors count at their upper bound.
    fn is_small(&self) -> bool {
        let tensor = |v: usize| match self.values.get(v) {
            Some(RValue::Tensor(t)) => Some(t.bound.as_slice()),
            _ => None,
        };
        let numel = |sizes: &[usize]| sizes.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64));
        let kernel_work = |name: &str, args: &[usize]| -> Option<u64> {
            if args.iter().any(|&v| matches!(self.values.get(v), Some(RValue::TensorList(_)))) {
                return None; // (cat, stack, index: counted as large)
            }
            if ferrite_op_support::Op::from_name(name) == Some(ferrite_op_support::Op::Convolution) {
                let (w, out) = (tensor(*args.get(1)?)?, tensor(*args.last()?)?);
                let per_output = numel(w)? / (*w.first()? as u64).max(1);
                return numel(out)?.checked_mul(per_output);
            }
            let tensors: Vec<&[usize]> = args.iter().filter_map(|&v| tensor(v)).collect();
            let largest = tensors.iter().map(|t| numel(t)).try_fold(0u64, |m, n| Some(m.max(n?)))?;
            let longest = tensors.iter().flat_map(|t| t.iter()).max().map_or(1, |&d| d as u64);
            largest.checked_mul(longest)
        };
        self.steps.iter().all(|s| match s {
            Step::Kernel { name, args, .. } => kernel_work(name, args).is_some_and(|w| w < SMALL_WORK),
            _ => true,
        }) && self.delegates.iter().all(|d| d.largest_work().is_some_and(|w| w < SMALL_WORK))
    }

    /// Sets all inputs, executes, and returns copies of all outputs.
    pub fn run(&mut self, inputs: &[TensorData]) -> Result<Vec<TensorData>> {
        if inputs.len() != self.inputs.len() {
            return Err(RuntimeError::InputCount {
                method: self.name.clone(),
                expected: self.inputs.len(),
                given: inputs.len(),
            });
        }
        for (i, t) in inputs.iter().enumerate() {
            self.set_input(i, t)?;
        }
        self.execute()?;
        (0..self.outputs.len()).map(|i| self.output(i)).collect()
    }

    /// How long each phase of loading this method took: resolving operators, each delegate's
    /// init (weight packing), the memory plan, values (`ferrite profile` shows them).
    pub fn load_events(&self) -> &[crate::LoadEvent] {
        &self.load_events
    }

    /// How many operators inside this method's delegates a plain run executes fused into the
    /// operator after them ([`Delegate::fused_operators`]); profiled and inspected runs execute
    /// each apart.
    pub fn fused_operators(&self) -> usize {
        self.delegates.iter().map(|d| d.fused_operators()).sum()
    }

    /// A copy of output `index` after [`Method::execute`].
    pub fn output(&self, index: usize) -> Result<TensorData> {
        let v = *self.outputs.get(index).ok_or_else(|| {
            RuntimeError::Invalid(format!("output {index} out of range ({} outputs)", self.outputs.len()))
        })?;
        self.value(v)
    }

    /// Output `index` in place after [`Method::execute`]: dtype, current sizes and bytes (no
    /// copy; valid until the method runs or its inputs are set again).
    pub fn output_bytes(&self, index: usize) -> Result<(ScalarType, &[usize], &[u8])> {
        let v = *self.outputs.get(index).ok_or_else(|| {
            RuntimeError::Invalid(format!("output {index} out of range ({} outputs)", self.outputs.len()))
        })?;
        self.value_bytes(v)
    }

    /// A copy of the tensor value `v` (an index into the method's value table) as it stands:
    /// after [`Method::execute`] or inside an [`Method::execute_observed`] callback.
    pub fn value(&self, v: usize) -> Result<TensorData> {
        let (dtype, sizes, bytes) = self.value_bytes(v)?;
        TensorData::from_bytes(dtype, sizes.to_vec(), bytes)
    }

    /// The tensor value `v` in place: dtype, current sizes and bytes (no copy).
    pub fn value_bytes(&self, v: usize) -> Result<(ferrite_program::ScalarType, &[usize], &[u8])> {
        let slot = match self.values.get(v) {
            Some(RValue::Tensor(t)) => t,
            Some(other) => return Err(RuntimeError::Unsupported(format!("reading a {} output", other.kind()))),
            None => return Err(RuntimeError::Invalid(format!("value {v} out of range"))),
        };
        let n = nbytes(slot.dtype, &slot.sizes)?;
        let data = match slot.storage {
            Storage::Arena { id, offset, .. } => self.arenas.get(id).and_then(|a| a.as_slice().get(offset..offset + n)),
            Storage::Constant { start, .. } => self.program.bytes().get(start..start + n),
            Storage::Owned { index } => self.owned.get(index).and_then(|b| b.as_slice().get(..n)),
            Storage::Empty => (n == 0).then_some(&[][..]),
        }
        .ok_or_else(|| RuntimeError::Invalid(format!("value {v} has no data")))?;
        Ok((slot.dtype, &slot.sizes, data))
    }

    fn env(&mut self) -> Env<'_> {
        Env {
            values: &mut self.values,
            arenas: &mut self.arenas,
            owned: &mut self.owned,
            program: self.program.bytes(),
            reference_order: self.reference_order,
            level: self.level,
        }
    }

    fn run_steps(
        &mut self,
        mut observe: Option<&mut Observer<'_>>,
        mut profile: Option<&mut Vec<crate::ProfileEvent>>,
        mut inspect: Option<&mut crate::Inspector<'_>>,
    ) -> Result<()> {
        let mut pc = 0usize;
        let n = self.steps.len();
        let mut budget = n.saturating_mul(1000).max(1_000_000);
        while pc < n {
            budget = budget
                .checked_sub(1)
                .ok_or_else(|| RuntimeError::Invalid("the method's control flow did not terminate".into()))?;
            let mut env = Env {
                values: &mut self.values,
                arenas: &mut self.arenas,
                owned: &mut self.owned,
                program: self.program.bytes(),
                reference_order: self.reference_order,
                level: self.level,
            };
            let started = profile.as_ref().map(|_| {
                ferrite_kernels::par::trace::take(); // spans of earlier work
                std::time::Instant::now()
            });
            match &self.steps[pc] {
                Step::Kernel { op, name, args } => {
                    tracing::trace!(instruction = pc, op = %name);
                    op(&mut env, args).map_err(|e| match e {
                        RuntimeError::Invalid(message) | RuntimeError::Unsupported(message) => {
                            RuntimeError::Kernel { instruction: pc, op: name.clone(), message }
                        }
                        other => other,
                    })?;
                }
                Step::Delegate { index, args } => {
                    let d = self
                        .delegates
                        .get_mut(*index)
                        .ok_or_else(|| RuntimeError::Invalid(format!("delegate {index} missing")))?;
                    match (profile.as_deref_mut(), inspect.as_deref_mut()) {
                        (Some(events), _) => d.execute_profiled(&mut env, args, pc, events)?,
                        (None, Some(f)) => d.execute_inspected(&mut env, args, pc, f)?,
                        (None, None) => d.execute(&mut env, args)?,
                    }
                }
                Step::Move { from, to } => env.alias(*from, *to)?,
                Step::JumpFalse { cond, destination } => {
                    let c = if env.is_tensor(*cond)? {
                        env.read(*cond)?.to_f64_vec()?.first().is_some_and(|&x| x != 0.0)
                    } else {
                        env.bool(*cond)?
                    };
                    if !c {
                        pc = *destination;
                        continue;
                    }
                }
                Step::Free => {}
            }
            if let (Some(events), Some(start)) = (profile.as_deref_mut(), started) {
                let duration = start.elapsed();
                let (name, shape) = match &self.steps[pc] {
                    Step::Kernel { name, args, .. } => (
                        name.clone(),
                        // The output: the last non-empty tensor argument (out-variants end with it,
                        // or with a list of it and empty statistics).
                        args.iter()
                            .rev()
                            .filter_map(|&v| self.value_bytes(v).ok())
                            .find(|t| t.1.iter().product::<usize>() > 0)
                            .map(|t| t.1.to_vec())
                            .unwrap_or_default(),
                    ),
                    Step::Delegate { index, .. } => {
                        let id =
                            self.program.plan(&self.name).and_then(|p| p.delegates.get(*index)).map(|d| d.id.clone());
                        (format!("delegate {}", id.unwrap_or_else(|| index.to_string())), Vec::new())
                    }
                    _ => (String::new(), Vec::new()),
                };
                if !name.is_empty() {
                    let workers = ferrite_kernels::par::trace::take();
                    events.push(crate::ProfileEvent {
                        instruction: pc,
                        node: None,
                        name,
                        shape,
                        start,
                        duration,
                        workers,
                    });
                }
            }
            if let (Some(f), Step::Kernel { name, args, .. }) = (inspect.as_deref_mut(), &self.steps[pc]) {
                let k = ferrite_program::graph::returned_count(args).max(1);
                // Outputs, a returned tensor list (batch norm's) expanded.
                let outputs: Vec<usize> = args[args.len().saturating_sub(k)..]
                    .iter()
                    .flat_map(|&v| match self.values.get(v) {
                        Some(RValue::TensorList(items)) => items.clone(),
                        _ => vec![v],
                    })
                    .collect();
                for v in outputs {
                    let Ok((dtype, sizes, bytes)) = self.value_bytes(v) else { continue };
                    f(&crate::Intermediate {
                        instruction: pc,
                        node: None,
                        op: name,
                        value: Some(v),
                        channels_last: false,
                        dtype,
                        sizes,
                        bytes,
                    })?;
                }
            }
            if let (Some(f), Step::Kernel { .. } | Step::Delegate { .. }) = (observe.as_deref_mut(), &self.steps[pc]) {
                f(pc, self)?;
            }
            pc += 1;
        }
        Ok(())
    }
}
