//! Everything the op-support registry promises, the backend can run: every operator it lists has
//! a kernel in the runtime the backend executes with.

use ferrite::op_support::registry;
use ferrite::runtime::KernelRegistry;

#[test]
fn every_supported_operator_has_a_kernel() {
    let kernels = KernelRegistry::portable();
    let missing: Vec<&str> = registry().iter().map(|s| s.name).filter(|name| kernels.get(name).is_none()).collect();
    assert!(missing.is_empty(), "op-support lists operators without a kernel: {missing:?}");
}
