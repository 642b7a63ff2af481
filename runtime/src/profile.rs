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
}
