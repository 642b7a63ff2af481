//! [`ProfileEvent`]: one timed operator of a profiled run ([`crate::Method::execute_profiled`]).
//! Kernel calls and delegate calls are timed by the method; a delegate that can see inside
//! itself (Ferrite's backend) adds one event per node it runs. Profiling off costs one branch
//! per instruction.

use std::time::{Duration, Instant};

/// One timed operator.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileEvent {
    /// The method's instruction.
    pub instruction: usize,
    /// For a node inside a delegate: its index in the delegate's graph; `None` for the
    /// instruction itself.
    pub node: Option<usize>,
    /// Operator name (`aten::convolution.out`, `ferrite::convolution_nhwc.out`) or
    /// `delegate <backend>`.
    pub name: String,
    /// Shape of the first output, where there is one.
    pub shape: Vec<usize>,
    /// When it started.
    pub start: Instant,
    /// How long it ran.
    pub duration: Duration,
    /// Each pool thread's share, when the operator ran in parallel (kernels that split their
    /// work through `ferrite_kernels::par`).
    pub workers: Vec<ferrite_kernels::par::trace::WorkerSpan>,
}

/// One phase of loading a method ([`crate::Method::load_events`]): resolving operators, each
/// delegate's init (Ferrite's backend verifies its blob and packs weights there), allocating the
/// memory plan, and setting up values and constants.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadEvent {
    /// What ran.
    pub name: String,
    /// When it started.
    pub start: Instant,
    /// How long it ran.
    pub duration: Duration,
}

/// One tensor an instruction or a node inside a delegate wrote, as
/// [`crate::Method::execute_inspected`] shows it (numerical debugging).
#[derive(Debug, Clone, Copy)]
pub struct Intermediate<'a> {
    /// The method's instruction (the delegate call's, for a node inside a delegate).
    pub instruction: usize,
    /// The node inside the delegate, or `None` for the instruction itself.
    pub node: Option<usize>,
    /// Operator name.
    pub op: &'a str,
    /// For a kernel call: the execution-plan value written. For a node inside a delegate: the
    /// value of the un-lowered program whose data this is, where the delegate records it
    /// (Ferrite's blobs do); `None` otherwise.
    pub value: Option<usize>,
    /// The data is channels-last (`[N, H, W, C]` for the program's `[N, C, H, W]`).
    pub channels_last: bool,
    /// Element type.
    pub dtype: ferrite_program::ScalarType,
    /// Sizes, in the layout the data has.
    pub sizes: &'a [usize],
    /// The data.
    pub bytes: &'a [u8],
}

/// A callback [`crate::Method::execute_inspected`] calls with every tensor written.
pub type Inspector<'a> = dyn FnMut(&Intermediate<'_>) -> crate::Result<()> + Send + 'a;
