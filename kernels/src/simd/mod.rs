//! SIMD levels chosen at run time, and the vector microkernels of the Ferrite backend: a
//! register-tiled GEMM over pre-packed weights with a fused bias and clamp and a
//! depthwise-convolution row (for `super::nhwc` and `super::dense`), and the row kernels of
//! [`rows`] (element-wise arithmetic and activations, softmax, layer norm, reductions, NHWC
//! pooling).
//!
//! This is a kernel leaf: the only module of the backend's kernels with `unsafe`. Each public
//! function checks every bound it relies on before entering the raw-pointer loops, so safe
//! callers cannot cause out-of-bounds access whatever they pass; a failed check is a
//! [`KernelError`], never a panic.
//!
//! One generic implementation serves every level: it is written against the `Vector` trait and
//! instantiated for AVX-512 (`__m512`, 16 lanes), AVX2+FMA (`__m256`, 8 lanes), NEON on aarch64
//! (`float32x4_t`, 4 lanes) and a portable 8-lane array that compiles to whatever the target's
//! baseline has. Which level runs is decided once per process by [`Level::detect`];
//! `FERRITE_SIMD=avx512|avx2|neon|portable` asks for a lower one (for debugging and for comparing
//! levels), and tests run every level the machine has.
#![allow(unsafe_code)]

use std::sync::OnceLock;

use super::{KResult, KernelError};

#[cfg(target_arch = "aarch64")]
mod arm;
mod depthwise;
mod gemm;
pub mod rows;
#[cfg(test)]
mod tests;
mod vector;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use depthwise::{dw_row, dw_row_band, PackedDw, Window};
pub(crate) use depthwise::{dw_row_generic, DwArgs};
pub use gemm::{gemm, gemm_split_columns, PackedB};
pub(crate) use gemm::{gemm_generic, GemmArgs};
pub(crate) use vector::{Portable, Vector};

/// An instruction-set level the NHWC kernels are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// x86_64 AVX-512F: 16 lanes, 32 registers.
    Avx512,
    /// x86_64 AVX2 with FMA: 8 lanes, 16 registers.
    Avx2,
    /// aarch64 Advanced SIMD (NEON): 4 lanes, 32 registers.
    Neon,
    /// Plain Rust over 8-lane arrays: vectorised by the compiler for the baseline target.
    Portable,
}

impl Level {
    /// The best level this CPU runs, unless `FERRITE_SIMD` asks for a lower one. Decided once.
    pub fn detect() -> Level {
        static LEVEL: OnceLock<Level> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            let best = Level::available()[0];
            let Ok(wanted) = std::env::var("FERRITE_SIMD") else { return best };
            match Level::parse(&wanted) {
                Some(level) if Level::available().contains(&level) => level,
                _ => {
                    tracing::warn!(
                        target: "ferrite::runtime",
                        "FERRITE_SIMD={wanted:?} is not a level this CPU runs ({}); using {}",
                        Level::available().iter().map(|l| l.name()).collect::<Vec<_>>().join(", "),
                        best.name()
                    );
                    best
                }
            }
        })
    }

    /// Every level this CPU runs, best first (always ends with [`Level::Portable`]).
    pub fn available() -> Vec<Level> {
        let mut levels = Vec::with_capacity(3);
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                levels.push(Level::Neon);
            }
        }
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                levels.push(Level::Avx512);
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                levels.push(Level::Avx2);
            }
        }
        levels.push(Level::Portable);
        levels
    }

    /// Parses a level's [`name`](Level::name).
    pub fn parse(name: &str) -> Option<Level> {
        match name.trim().to_ascii_lowercase().as_str() {
            "avx512" | "avx-512" | "avx512f" => Some(Level::Avx512),
            "avx2" | "avx2+fma" | "avx2,fma" => Some(Level::Avx2),
            "neon" | "asimd" => Some(Level::Neon),
            "portable" | "scalar" | "none" => Some(Level::Portable),
            _ => None,
        }
    }

    /// A short name (`avx512`, `avx2`, `portable`).
    pub fn name(self) -> &'static str {
        match self {
            Level::Avx512 => "avx512",
            Level::Avx2 => "avx2",
            Level::Neon => "neon",
            Level::Portable => "portable",
        }
    }

    /// f32 lanes per vector.
    pub fn lanes(self) -> usize {
        match self {
            Level::Avx512 => 16,
            Level::Avx2 | Level::Portable => 8,
            Level::Neon => 4,
        }
    }

    /// Columns of one GEMM register tile (and of one packed weight panel).
    pub fn nr(self) -> usize {
        match self {
            Level::Avx512 => 32,
            Level::Avx2 | Level::Neon => 16,
            Level::Portable => 8,
        }
    }

    /// Rows of one GEMM register tile.
    pub fn mr(self) -> usize {
        match self {
            Level::Avx512 => 8,
            Level::Avx2 | Level::Neon => 6,
            Level::Portable => 4,
        }
    }
}

fn arg(msg: String) -> KernelError {
    KernelError::Argument(msg)
}

/// A kernel body written once over [`Vector`] and run at a level by [`run_job`].
pub(crate) trait Job {
    /// # Safety
    /// `V`'s level is supported by the CPU; the job's fields satisfy the checks of the function
    /// that built it.
    unsafe fn run<V: Vector>(&mut self);
}

/// Runs `job` at `level`: inside a `#[target_feature]` function for that level, so the job's
/// `#[inline(always)]` body is compiled for it.
///
/// # Safety
/// The job's fields satisfy the checks of the function that built it.
pub(crate) unsafe fn run_job<J: Job>(level: Level, job: &mut J) -> KResult {
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU runs AVX-512F (checked); the job's preconditions are the caller's.
        Level::Avx512 if std::is_x86_feature_detected!("avx512f") => unsafe { x86::job_avx512(job) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU runs AVX2 and FMA (checked); as above.
        Level::Avx2 if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") => unsafe {
            x86::job_avx2(job)
        },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: the CPU runs NEON (checked); as above.
        Level::Neon if std::arch::is_aarch64_feature_detected!("neon") => unsafe { arm::job_neon(job) },
        // SAFETY: the portable vector needs no CPU feature; as above.
        Level::Portable => unsafe { job.run::<Portable>() },
        other => return Err(arg(format!("{} is not a level this CPU runs", other.name()))),
    }
    Ok(())
}

/// Safe code to compile for a SIMD level: [`compiled_for`] calls [`Compiled::run`] inside a
/// function with the level's target features. Implementations mark `run` `#[inline(always)]`, so
/// it — and the `#[inline(always)]` code it calls — is compiled, and auto-vectorised, for them.
/// (A trait rather than a closure: a closure body is a function of its own, which the compiler
/// may leave out of line, compiled for the baseline.)
pub trait Compiled {
    /// What the code returns.
    type Output;
    /// The code.
    fn run(self) -> Self::Output;
}

/// Runs `code` compiled for `level` (the portable kernels' depthwise rows and in-order GEMM
/// tiles use this; the backend's kernels have their own vector code). Both x86-64 levels compile
/// it for AVX2+FMA (256-bit vectors). Safe: the CPU is checked to run the level's features, and
/// only the baseline build runs otherwise. Floating-point results do not depend on the level: no
/// multiply and add are fused unless the code asks.
#[inline(always)]
pub fn compiled_for<C: Compiled>(level: Level, code: C) -> C::Output {
    match level {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 | Level::Avx2
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") =>
        {
            // SAFETY: the CPU runs AVX2 and FMA (checked), all `call_avx2` needs; `run` is safe code.
            unsafe { x86::call_avx2(code) }
        }
        #[cfg(target_arch = "aarch64")]
        Level::Neon if std::arch::is_aarch64_feature_detected!("neon") => {
            // SAFETY: the CPU runs NEON (checked), all `call_neon` needs; `run` is safe code.
            unsafe { arm::call_neon(code) }
        }
        _ => code.run(),
    }
}
