//! Everything the op-support registry promises, the backend can run: every operator it lists has
//! a kernel in the runtime the backend executes with, and every operator Ferrite knows (but the
//! backend's own, which the backend runs itself) has a portable kernel.

use ferrite::op_support::{registry, Op};
use ferrite::runtime::portable_kernels;

#[test]
fn every_supported_operator_has_a_kernel() {
    let kernels = portable_kernels();
    let missing: Vec<Op> = registry().iter().map(|s| s.op).filter(|op| kernels.get(op.name()).is_none()).collect();
    assert!(missing.is_empty(), "op-support lists operators without a kernel: {missing:?}");
}

#[test]
fn every_known_operator_has_a_portable_kernel_and_every_kernel_a_name() {
    let kernels = portable_kernels();
    let missing: Vec<Op> =
        Op::ALL.iter().copied().filter(|op| !op.is_backend_only() && kernels.get(op.name()).is_none()).collect();
    assert!(missing.is_empty(), "operators without a portable kernel: {missing:?}");
    let unnamed: Vec<&str> = kernels.names().into_iter().filter(|n| Op::from_name(n).is_none()).collect();
    assert!(unnamed.is_empty(), "kernels registered under names op-support does not know: {unnamed:?}");
}
