//! Kernel and backend registries: plain tables, filled by whoever assembles a runtime
//! ([`crate::Runtime::new`] registers Ferrite's portable kernels and the Ferrite backend).
//!
//! Kernels are keyed by `name.overload` (`aten::add.out`), exactly as programs name operators,
//! and resolved when a method loads; Ferrite's own kernels register under their [`Op`].
//! Backends are keyed by the delegate id they run (`FerriteBackend`, ...).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use ferrite_kernels::simd::Level;
use ferrite_op_support::Op;
use ferrite_program::{CompileSpec, Program};

use crate::env::Env;
use crate::error::Result;

/// An operator implementation: reads its arguments (value indices, in schema order, outputs
/// last) from the environment and writes its outputs.
pub type OpFn = fn(&mut Env<'_>, &[usize]) -> Result<()>;

/// Operator kernels by `name.overload`.
#[derive(Clone, Default)]
pub struct KernelRegistry {
    map: HashMap<String, OpFn>,
}

impl fmt::Debug for KernelRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KernelRegistry({} kernels)", self.map.len())
    }
}

impl KernelRegistry {
    /// An empty registry.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Registers (or replaces) the kernel for `op`.
    pub fn register(&mut self, op: Op, f: OpFn) {
        self.map.insert(op.name().to_string(), f);
    }

    /// Registers (or replaces) the kernel for an operator Ferrite does not know, by the name
    /// programs use (`namespace::op.overload`): custom operators.
    pub fn register_custom(&mut self, name: &str, f: OpFn) {
        self.map.insert(name.to_string(), f);
    }

    /// The kernel for `name`.
    pub fn get(&self, name: &str) -> Option<OpFn> {
        self.map.get(name).copied()
    }

    /// All registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.map.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}

/// What a backend gets to initialise one delegate.
#[derive(Debug)]
pub struct BackendInit<'a> {
    /// The delegate's processed blob.
    pub processed: &'a [u8],
    /// Its compile specs.
    pub compile_specs: &'a [CompileSpec],
    /// The program (for named data).
    pub program: &'a Program<'static>,
    /// The runtime's kernels (for operations the backend runs with them).
    pub kernels: &'a KernelRegistry,
    /// The SIMD level the runtime runs at.
    pub level: Level,
    /// Bytes the delegate may allocate for its buffers ([`crate::Runtime::with_memory_limit`]);
    /// a backend refuses to initialise beyond it, before allocating.
    pub memory_limit: u64,
}

/// A backend: turns a delegate's processed blob into something executable.
pub trait Backend: Send + Sync + fmt::Debug {
    /// The id delegates name (`FerriteBackend`).
    fn id(&self) -> &str;
    /// Initialises one delegate.
    fn init(&self, init: BackendInit<'_>) -> Result<Box<dyn Delegate>>;
}

/// An initialised delegate, owned by one method.
pub trait Delegate: Send + fmt::Debug {
    /// Runs the delegate on `args` (value indices: inputs then outputs).
    fn execute(&mut self, env: &mut Env<'_>, args: &[usize]) -> Result<()>;

    /// [`Delegate::execute`], adding a [`crate::ProfileEvent`] per node run inside the
    /// delegate (`instruction` is the delegate call's). The default adds none.
    fn execute_profiled(
        &mut self,
        env: &mut Env<'_>,
        args: &[usize],
        instruction: usize,
        events: &mut Vec<crate::ProfileEvent>,
    ) -> Result<()> {
        let _ = (instruction, events);
        self.execute(env, args)
    }

    /// The most work one operator inside the delegate does in a run — multiply-adds for
    /// convolutions and matrix products, elements written otherwise — or `None` when the
    /// delegate cannot say (the default). A method whose operators are all too small to split
    /// over threads runs on the calling thread instead of handing each run to its pool.
    fn largest_work(&self) -> Option<u64> {
        None
    }

    /// How many of the delegate's operators a plain run executes fused into the operator after
    /// them (their output never written out whole). Profiled and inspected runs execute every
    /// operator apart. The default is none.
    fn fused_operators(&self) -> usize {
        0
    }

    /// [`Delegate::execute`], showing `inspect` every tensor a node inside the delegate wrote
    /// ([`crate::Intermediate`] with `instruction` and the node). The default shows none.
    fn execute_inspected(
        &mut self,
        env: &mut Env<'_>,
        args: &[usize],
        instruction: usize,
        inspect: &mut crate::Inspector<'_>,
    ) -> Result<()> {
        let _ = (instruction, inspect);
        self.execute(env, args)
    }
}

/// Backends by id.
#[derive(Clone, Default, Debug)]
pub struct BackendRegistry {
    map: BTreeMap<String, Arc<dyn Backend>>,
}

impl BackendRegistry {
    /// An empty registry.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Registers a backend under its id.
    pub fn register(&mut self, backend: Arc<dyn Backend>) {
        self.map.insert(backend.id().to_string(), backend);
    }

    /// The backend for `id`.
    pub fn get(&self, id: &str) -> Option<&Arc<dyn Backend>> {
        self.map.get(id)
    }

    /// Registered ids, comma-separated (for messages).
    pub fn ids(&self) -> String {
        if self.map.is_empty() {
            "none".into()
        } else {
            self.map.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    }
}
