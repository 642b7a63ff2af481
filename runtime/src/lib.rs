//! Ferrite's runtime: turns a verified ExecuTorch program into results.

pub mod kernels;
