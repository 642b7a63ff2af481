//! The backend's ahead-of-time passes over one partition's blob graph, one module each, run in
//! the order [`crate::compile_partition`] lists.

pub mod batch_norm;
pub mod channels_last;
pub mod dead_code;
pub mod dense;
pub mod fold_constants;
pub mod fuse;
pub mod quantized;
pub mod reshapes;
