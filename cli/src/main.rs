//! The `ferrite` command-line tool.

#![deny(unsafe_code)]

mod demo;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use ferrite::program::{Program, ProgramSummary};
use ferrite::runtime::{Accumulation, Runtime, RuntimeError, TensorData};

/// What the tool reports: any error of Ferrite's crates, or a command-line one, each with a
/// stable code and a hint.
#[derive(Debug, thiserror::Error)]
enum Error {
    /// Any library error.
    #[error(transparent)]
    Ferrite(#[from] ferrite::Error),
    /// A command-line argument is invalid.
    #[error("{0}")]
    Usage(String),
    /// An output could not be written.
    #[error("cannot write {path}: {source}")]
    Output { path: String, source: std::io::Error },
}

macro_rules! from_library {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Ferrite(e.into())
            }
        }
    )*};
}
from_library!(
    ferrite::program::ProgramError,
    RuntimeError,
    ferrite::LowerError,
    ferrite::quantizer::QuantizeError,
    ferrite::troubleshooting::TroubleshootError
);

impl Error {
    fn code(&self) -> &'static str {
        match self {
            Error::Ferrite(e) => e.code(),
            Error::Usage(_) => "C001",
            Error::Output { .. } => "C002",
        }
    }

    fn hint(&self) -> &'static str {
        match self {
            Error::Ferrite(e) => e.hint(),
            Error::Usage(_) => "run `ferrite help` for the commands and their flags",
            Error::Output { .. } => "check that the directory exists and is writable",
        }
    }
}

/// Ferrite: run and inspect ExecuTorch programs on CPUs.
#[derive(Debug, Parser)]
#[command(name = "ferrite", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify a .pte program and summarise it: methods, inputs, outputs, operators, delegates,
    /// constants and memory plan.
    Inspect {
        /// The program.
        model: PathBuf,
        /// Print exactly one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a method of a program on .npy inputs and write its outputs as .npy files.
    Run {
        /// The program.
        model: PathBuf,
        /// Method to run.
        #[arg(long, default_value = "forward")]
        method: String,
        /// Input .npy files, in order (default: deterministic inputs from the method's metadata).
        #[arg(short = 'i', long = "input")]
        inputs: Vec<PathBuf>,
        /// Directory for output_<i>.npy.
        #[arg(short = 'o', long = "output-dir", default_value = ".")]
        output_dir: PathBuf,
        /// Threads the kernels may use (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Execute this many times on one loaded method (state persists); write the last outputs.
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// How convolutions and matrix products sum: `reference` (ExecuTorch's order, exact) for
        /// quantized programs and `fast` otherwise (auto), or one of them everywhere.
        #[arg(long, value_enum, default_value_t = AccumulationArg::Auto)]
        accumulation: AccumulationArg,
        /// Refuse to load a method whose buffers would take more memory than this (bytes, or
        /// with a K, M, G or T suffix; default: the machine's physical memory).
        #[arg(long)]
        memory_limit: Option<String>,
    },
    /// Measure load time and execution latency of a method.
    Bench {
        /// The program.
        model: PathBuf,
        /// Method to run.
        #[arg(long, default_value = "forward")]
        method: String,
        /// Input .npy files, in order (default: deterministic inputs).
        #[arg(short = 'i', long = "input")]
        inputs: Vec<PathBuf>,
        /// Threads the kernels may use (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Untimed executions first.
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        /// Timed executions.
        #[arg(long, default_value_t = 50)]
        iters: usize,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// How convolutions and matrix products sum (see `ferrite run --help`).
        #[arg(long, value_enum, default_value_t = AccumulationArg::Auto)]
        accumulation: AccumulationArg,
        /// The memory limit (see `ferrite run --help`).
        #[arg(long)]
        memory_limit: Option<String>,
    },
    /// Lower a program for Ferrite's backend: supported subgraphs become FerriteBackend delegates.
    Lower {
        /// The program to lower.
        input: PathBuf,
        /// Where to write the lowered program (written atomically).
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Also write the partition report as JSON to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Only delegate these operators (name.overload, comma-separated).
        #[arg(long, value_delimiter = ',')]
        ops: Vec<String>,
        /// Never delegate these operators (name.overload, comma-separated).
        #[arg(long = "exclude-ops", value_delimiter = ',')]
        exclude_ops: Vec<String>,
        /// One delegate per operator.
        #[arg(long)]
        per_op: bool,
        /// Precisions to delegate (comma-separated: fp32, static-int8, dynamic-int8, int4-weight; default all).
        #[arg(long, value_delimiter = ',')]
        precisions: Vec<String>,
        /// Log every partitioning decision on stderr.
        #[arg(long)]
        verbose: bool,
    },
    /// Quantize a float program from calibration data (post-training), with an accuracy report.
    Quantize(QuantizeArgs),
    /// Time every operator of a method, inside Ferrite's backend too: a table, JSON or a Chrome trace.
    Profile {
        /// The program.
        model: PathBuf,
        /// Method to profile.
        #[arg(long, default_value = "forward")]
        method: String,
        /// Input .npy files, in order (default: deterministic inputs from the method's metadata).
        #[arg(short = 'i', long = "input")]
        inputs: Vec<PathBuf>,
        /// Threads the kernels may use (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Untimed runs first.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// Timed runs (medians are reported).
        #[arg(long, default_value_t = 20)]
        iters: usize,
        /// Rows in the table (0: all).
        #[arg(long, default_value_t = 25)]
        top: usize,
        /// Write the last run as a Chrome/Perfetto trace (trace-event JSON) here.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Write every timed run in ExecuTorch's ETDump format here (read it with ExecuTorch's
        /// Inspector: `executorch.devtools.Inspector(etdump_path=...)`).
        #[arg(long)]
        etdump: Option<PathBuf>,
        /// Print exactly one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// List the operators Ferrite's backend runs, with dtypes and constraints.
    Ops {
        /// Print CSV (Operator, Compute DType, Quantization, Constraints) instead of a table.
        #[arg(long)]
        csv: bool,
    },
    /// Show which parts of a program Ferrite's backend would run, and why the rest stays out.
    Partition {
        /// The program.
        model: PathBuf,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
        /// Only delegate these operators (name.overload, comma-separated).
        #[arg(long, value_delimiter = ',')]
        ops: Vec<String>,
        /// Never delegate these operators (name.overload, comma-separated).
        #[arg(long = "exclude-ops", value_delimiter = ',')]
        exclude_ops: Vec<String>,
        /// One partition per operator.
        #[arg(long)]
        per_op: bool,
        /// Precisions to delegate (comma-separated: fp32, static-int8, dynamic-int8, int4-weight; default all).
        #[arg(long, value_delimiter = ',')]
        precisions: Vec<String>,
        /// Log every decision (target ferrite::partitioner) on stderr.
        #[arg(long)]
        verbose: bool,
    },
    /// Look a program over before deploying it: what Ferrite's backend will and will not run and
    /// what to do about it, this machine's SIMD level and threads, the work and memory it needs.
    Doctor {
        /// The program.
        model: PathBuf,
        /// Threads the runtime would use (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Print exactly one JSON object instead of the report.
        #[arg(long)]
        json: bool,
    },
    /// Find where a program's numbers go wrong.
    #[command(subcommand)]
    Debug(DebugCommand),
    /// Classify handwritten digits with the embedded digits model: accuracy, latency, text art.
    Demo {
        /// Threads the kernels may use (default: 1).
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
}

/// `ferrite debug` subcommands.
#[derive(Debug, Subcommand)]
enum DebugCommand {
    /// Compare a program with a reference operator by operator: every intermediate tensor both
    /// have (inside Ferrite's backend too), its SQNR and largest error, and the first operator
    /// past the tolerance. Without --reference, MODEL must be un-lowered: it is lowered in
    /// memory and the lowered program is compared with MODEL on the portable kernels.
    Numerics {
        /// The program to check.
        model: PathBuf,
        /// The program to compare with: the un-lowered source of a lowered MODEL, or another
        /// program of the same model (the float one for a quantized MODEL).
        #[arg(long)]
        reference: Option<PathBuf>,
        /// Method to run.
        #[arg(long, default_value = "forward")]
        method: String,
        /// Input .npy files, in order (default: deterministic inputs from the method's metadata).
        #[arg(short = 'i', long = "input")]
        inputs: Vec<PathBuf>,
        /// Threads the kernels may use (default: 1).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// An operator whose SQNR is below this many dB diverges.
        #[arg(long, default_value_t = 40.0)]
        min_sqnr: f64,
        /// An operator whose largest absolute error exceeds this diverges too.
        #[arg(long)]
        max_abs: Option<f64>,
        /// Rows in the table: the operators with the lowest SQNR (0: all, in execution order).
        #[arg(long, default_value_t = 15)]
        top: usize,
        /// Print exactly one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
}

/// `--accumulation` values (see [`Accumulation`]).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum AccumulationArg {
    /// ExecuTorch's order in methods that requantize, fast kernels elsewhere.
    Auto,
    /// Fast kernels everywhere.
    Fast,
    /// ExecuTorch's order everywhere.
    Reference,
}

impl From<AccumulationArg> for Accumulation {
    fn from(a: AccumulationArg) -> Self {
        match a {
            AccumulationArg::Auto => Accumulation::Auto,
            AccumulationArg::Fast => Accumulation::Fast,
            AccumulationArg::Reference => Accumulation::Reference,
        }
    }
}

fn runtime(threads: Option<usize>, memory_limit: Option<&str>) -> Result<Runtime, Error> {
    let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    if threads == 0 || threads > 1024 {
        return Err(Error::Usage(format!("--threads {threads} must be between 1 and 1024")));
    }
    let mut rt = Runtime::new().with_threads(threads)?;
    if let Some(text) = memory_limit {
        rt = rt.with_memory_limit(parse_bytes(text)?);
    }
    Ok(rt)
}

/// A byte count: digits, optionally followed by K, M, G or T (powers of 1024).
fn parse_bytes(text: &str) -> Result<u64, Error> {
    let t = text.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(Error::Usage(format!("--memory-limit {text:?}: the suffix must be K, M, G or T"))),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .filter(|&n| n > 0)
        .ok_or_else(|| Error::Usage(format!("--memory-limit {text:?} is not a positive byte count (e.g. 512M, 8G)")))
}

fn partitioner_config(
    ops: Vec<String>,
    exclude_ops: Vec<String>,
    precisions: Vec<String>,
    per_op: bool,
    verbose: bool,
) -> Result<ferrite::partitioner::PartitionerConfig, Error> {
    use ferrite::partitioner::Precision;
    let precisions = if precisions.is_empty() {
        Precision::ALL.to_vec()
    } else {
        precisions
            .iter()
            .map(|p| {
                Precision::parse(p).ok_or_else(|| {
                    let known: Vec<&str> = Precision::ALL.iter().map(|p| p.name()).collect();
                    Error::Usage(format!("--precisions: unknown precision {p:?} (known: {})", known.join(", ")))
                })
            })
            .collect::<Result<_, _>>()?
    };
    Ok(ferrite::partitioner::PartitionerConfig {
        include_ops: if ops.is_empty() { None } else { Some(ops.into_iter().collect()) },
        exclude_ops: exclude_ops.into_iter().collect(),
        precisions,
        per_op,
        verbose,
    })
}

/// The process's peak resident memory (KiB) so far, where the system reports it (Linux's
/// `VmHWM`); `None` elsewhere.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()
}

fn inputs_for(program: &Program<'_>, method: &str, files: &[PathBuf]) -> Result<Vec<TensorData>, Error> {
    if files.is_empty() {
        ferrite::runtime::default_inputs(program, method).map_err(|e| match e {
            RuntimeError::Unsupported(why) => Error::Usage(format!("{why}; pass the inputs with -i")),
            other => other.into(),
        })
    } else {
        Ok(files.iter().map(|f| ferrite::runtime::read_npy(f)).collect::<Result<_, _>>()?)
    }
}

fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Inspect { model, json } => {
            let program = Program::mmap(&model)?;
            let summary = ProgramSummary::of(&program);
            if json {
                let text = serde_json::to_string(&summary).map_err(|e| Error::Usage(e.to_string()))?;
                emit(&format!("{text}\n"))
            } else {
                emit(&format!("{}\n{summary}", model.display()))
            }
        }
        Command::Run { model, method, inputs, output_dir, threads, repeat, accumulation, memory_limit } => {
            if repeat == 0 {
                return Err(Error::Usage("--repeat must be at least 1".into()));
            }
            let program = ferrite::load(&model)?;
            let inputs = inputs_for(&program, &method, &inputs)?;
            let mut m = runtime(threads, memory_limit.as_deref())?
                .with_accumulation(accumulation.into())
                .load_method(&program, &method)?;
            let mut outputs = Vec::new();
            for _ in 0..repeat {
                outputs = m.run(&inputs)?;
            }
            std::fs::create_dir_all(&output_dir)
                .map_err(|source| Error::Output { path: output_dir.display().to_string(), source })?;
            let mut text = String::new();
            for (i, t) in outputs.iter().enumerate() {
                let path = output_dir.join(format!("output_{i}.npy"));
                ferrite::runtime::write_npy(&path, t)?;
                text.push_str(&format!("output {i}: {} -> {}\n", t.summary(), path.display()));
            }
            emit(&text)
        }
        Command::Bench { model, method, inputs, threads, warmup, iters, json, accumulation, memory_limit } => {
            if iters == 0 {
                return Err(Error::Usage("--iters must be at least 1".into()));
            }
            let rt = runtime(threads, memory_limit.as_deref())?.with_accumulation(accumulation.into());
            let t0 = Instant::now();
            let program = ferrite::load(&model)?;
            let mut m = rt.load_method(&program, &method)?;
            let load_ms = t0.elapsed().as_secs_f64() * 1e3;
            let inputs = inputs_for(&program, &method, &inputs)?;
            // Inputs are set before every execution: the memory plan may reuse an input's
            // memory for intermediates once it has been read, as ExecuTorch's planner does.
            let set_inputs = |m: &mut ferrite::runtime::Method| -> Result<(), Error> {
                for (i, t) in inputs.iter().enumerate() {
                    m.set_input(i, t)?;
                }
                Ok(())
            };
            for _ in 0..warmup {
                set_inputs(&mut m)?;
                m.execute()?;
            }
            let mut times = Vec::with_capacity(iters);
            for _ in 0..iters {
                set_inputs(&mut m)?;
                let t = Instant::now();
                m.execute()?;
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            let min = times[0];
            let p90 = times[((times.len() * 9) / 10).min(times.len() - 1)];
            let threads = rt.threads();
            let peak = peak_rss_kib();
            if json {
                emit(&format!(
                    "{}\n",
                    serde_json::json!({"load_ms": load_ms, "median_ms": median, "min_ms": min, "p90_ms": p90, "threads": threads, "iters": iters, "peak_rss_kib": peak})
                ))
            } else {
                let rss = peak.map_or(String::new(), |k| format!("  peak RSS {:9.1} MiB\n", k as f64 / 1024.0));
                emit(&format!(
                    "{} ({method}), {threads} thread(s)\n  load     {load_ms:9.3} ms\n  median   {median:9.3} ms\n  min      {min:9.3} ms\n  p90      {p90:9.3} ms   ({iters} iterations after {warmup} warm-up)\n{rss}",
                    model.display()
                ))
            }
        }
        Command::Ops { csv } => {
            if csv {
                emit(&ferrite::op_support::csv())
            } else {
                let mut text = String::new();
                for spec in ferrite::op_support::registry() {
                    let constraints: Vec<&str> = spec.constraints.iter().map(|c| c.text).collect();
                    let dtypes: Vec<&str> = spec.dtypes.iter().map(|d| d.name()).collect();
                    text.push_str(&format!(
                        "{:<48} {:<14} {}\n",
                        spec.op.name(),
                        dtypes.join(","),
                        constraints.join("; ")
                    ));
                }
                emit(&text)
            }
        }
        Command::Quantize(args) => quantize(args),
        Command::Profile { model, method, inputs, threads, warmup, iters, top, trace, etdump, json } => {
            let rt = runtime(threads, None)?;
            let program = ferrite::load(&model)?;
            let mut m = rt.load_method(&program, &method)?;
            let inputs = inputs_for(&program, &method, &inputs)?;
            let p = ferrite::troubleshooting::profile(&mut m, &inputs, warmup, iters)?;
            if let Some(path) = trace {
                std::fs::write(&path, p.chrome_trace())
                    .map_err(|source| Error::Output { path: path.display().to_string(), source })?;
            }
            if let Some(path) = etdump {
                std::fs::write(&path, p.etdump())
                    .map_err(|source| Error::Output { path: path.display().to_string(), source })?;
            }
            if json {
                emit(&format!("{}\n", p.to_json()))
            } else {
                emit(&format!(
                    "{} ({method}), {} thread(s), SIMD {}\n{}",
                    model.display(),
                    rt.threads(),
                    rt.simd().name(),
                    p.table(top)
                ))
            }
        }
        Command::Doctor { model, threads, json } => {
            let rt = runtime(threads, None)?;
            let program = Program::mmap(&model)?;
            let diagnosis = ferrite::troubleshooting::diagnose(&program, &rt);
            if json {
                emit(&format!("{}\n", diagnosis.to_json()))
            } else {
                emit(&format!("{}\n{}", model.display(), diagnosis.text("the book, ")))
            }
        }
        Command::Debug(DebugCommand::Numerics {
            model,
            reference,
            method,
            inputs,
            threads,
            min_sqnr,
            max_abs,
            top,
            json,
        }) => {
            let rt = runtime(Some(threads), None)?;
            let program = ferrite::load(&model)?;
            let lowered_here = reference.is_none();
            let (target, reference) = match reference {
                Some(path) => (program, ferrite::load(&path)?),
                None => {
                    let backend = ferrite::blob::BACKEND_ID;
                    if program.def().plans.iter().any(|p| p.delegates.iter().any(|d| d.id == backend)) {
                        return Err(ferrite::troubleshooting::TroubleshootError::NeedsReference {
                            model: model.display().to_string(),
                        }
                        .into());
                    }
                    let lowered = ferrite::lower(&program, &ferrite::LowerOptions::default())?;
                    (std::sync::Arc::new(Program::from_vec(lowered.bytes)?), program)
                }
            };
            let inputs = inputs_for(&reference, &method, &inputs)?;
            let mut t = rt.load_method(&target, &method)?;
            let mut r = rt.load_method(&reference, &method)?;
            let tolerance = ferrite::troubleshooting::Tolerance { min_sqnr_db: min_sqnr, max_abs };
            let report = ferrite::troubleshooting::compare_numerics(&mut t, &mut r, &inputs, tolerance)?;
            if json {
                emit(&format!("{}\n", report.to_json()))
            } else {
                let what = if lowered_here {
                    format!("{} lowered in memory vs. as exported", model.display())
                } else {
                    format!("{} vs. the reference", model.display())
                };
                emit(&format!("{what} ({method})\n{}", report.table(top)))
            }
        }
        Command::Lower { input, output, report, ops, exclude_ops, per_op, precisions, verbose } => {
            let options = ferrite::LowerOptions {
                partitioner: partitioner_config(ops, exclude_ops, precisions, per_op, verbose)?,
            };
            let before = ProgramSummary::of(&Program::mmap(&input)?);
            let lowered = ferrite::lower_file(&input, &output, &options)?;
            if let Some(path) = report {
                let text = serde_json::to_string_pretty(&lowered.report).map_err(|e| Error::Usage(e.to_string()))?;
                std::fs::write(&path, text + "\n")
                    .map_err(|source| Error::Output { path: path.display().to_string(), source })?;
            }
            let after = ProgramSummary::of(&Program::from_bytes(&lowered.bytes)?);
            let calls = |s: &ProgramSummary| {
                (
                    s.methods.iter().map(|m| m.kernel_calls).sum::<usize>(),
                    s.methods.iter().map(|m| m.delegate_calls).sum::<usize>(),
                )
            };
            let ((k0, _), (k1, d1)) = (calls(&before), calls(&after));
            let p = &lowered.passes;
            let text = format!(
                "wrote {} ({} bytes)\n  kernel calls: {k0} -> {k1} ({} delegate call(s) to FerriteBackend)\n  passes: {} constants folded, {} batch norms folded, {} activations fused, {} reshapes elided, {} dead ops removed\n  layout: {} convolutions channels-last, {} layout conversions; {} dense layers packed\n  int8: {} quantized operators\n",
                output.display(),
                lowered.bytes.len(),
                d1,
                p.constants_folded,
                p.batch_norms_folded,
                p.activations_fused,
                p.reshapes_elided,
                p.dead_ops_removed,
                p.channels_last_convolutions,
                p.layout_conversions,
                p.dense_layers,
                p.quantized_operators
            );
            emit(&text)
        }
        Command::Partition { model, json, ops, exclude_ops, per_op, precisions, verbose } => {
            let program = Program::mmap(&model)?;
            let config = partitioner_config(ops, exclude_ops, precisions, per_op, verbose)?;
            let result = ferrite::partitioner::Partitioner::new(config).partition(&program);
            if json {
                let text = serde_json::to_string(&result.report).map_err(|e| Error::Usage(e.to_string()))?;
                emit(&format!("{text}\n"))
            } else {
                emit(&format!("{}delegated share: {:.1}%\n", result.report, 100.0 * result.report.delegated_share()))
            }
        }
        Command::Demo { threads } => emit(&demo::run(runtime(Some(threads), None)?)?),
    }
}

/// Writes to stdout; a closed pipe (`ferrite inspect x.pte | head`) is not an error.
fn emit(text: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::Output { path: "<stdout>".into(), source: e })
        }
        _ => Ok(()),
    }
}

#[derive(clap::Args, Debug)]
struct QuantizeArgs {
    /// The float program.
    model: PathBuf,
    /// Calibration data: a .npy whose first axis indexes samples, or a folder of input_<i>.npy.
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// The quantized program to write.
    #[arg(short = 'o', long)]
    output: PathBuf,
    /// static-int8 (needs calibration), dynamic-int8, 8da4w[:G], int8-weight-only, int4-weight-only[:G], fp16-weights.
    #[arg(long, default_value = "static-int8")]
    scheme: String,
    /// Activation observer: histogram (PT2E's), minmax, moving-average, percentile[:P], mse, entropy.
    #[arg(long, default_value = "histogram")]
    observer: String,
    /// Leave nodes in float: instruction indices, operators (aten::convolution.out) or families (conv, linear, add, mul, cat).
    #[arg(long, value_delimiter = ',')]
    exclude: Vec<String>,
    /// qdq: the Q/DQ program stock ExecuTorch runs; ferrite: lowered for Ferrite's backend.
    #[arg(long, default_value = "ferrite", value_parser = ["qdq", "ferrite"])]
    emit: String,
    /// Write the report as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Evaluation data (same forms as --calibration; default: the calibration data).
    #[arg(long)]
    eval: Option<PathBuf>,
    /// Labels for the evaluation data (.npy of class indices, one per output row).
    #[arg(long, requires = "eval")]
    labels: Option<PathBuf>,
    /// Method to quantize.
    #[arg(long, default_value = "forward")]
    method: String,
    /// Threads for calibration and evaluation runs.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Also measure the output SQNR with each quantized node left float (one quantization per node).
    #[arg(long)]
    sensitivity: bool,
    /// Leave the most harmful nodes float until --min-sqnr or --max-drop holds on the evaluation data.
    #[arg(long)]
    auto_fallback: bool,
    /// With --auto-fallback: the output SQNR (dB, against the float program) to reach.
    #[arg(long, conflicts_with = "max_drop")]
    min_sqnr: Option<f64>,
    /// With --auto-fallback: the most accuracy (with --labels; else top-1 agreement) to lose, in percentage points.
    #[arg(long)]
    max_drop: Option<f64>,
}

/// A progress bar on stderr, hidden when stderr is not a terminal.
fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} samples") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn quantize(a: QuantizeArgs) -> Result<(), Error> {
    use ferrite::quantizer::{Calibration, Emit, Quantizer, Scheme, Selector, Target};
    let scheme: Scheme = a.scheme.parse()?;
    let observer = a.observer.parse()?;
    let exclude = a.exclude.iter().map(|s| s.parse::<Selector>()).collect::<Result<Vec<_>, _>>()?;
    let calibration = match &a.calibration {
        Some(p) => Calibration::open(p)?,
        None => Calibration::none(),
    };
    let program = Program::read(&a.model)?;
    let quantizer = Quantizer::new(scheme)
        .observer(observer)
        .exclude(exclude)
        .method(&a.method)
        .emit(if a.emit == "qdq" { Emit::Qdq } else { Emit::Ferrite })
        .threads(a.threads);
    let bar = progress_bar();
    let tick = |stage: &str, done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_message(stage.to_string());
        bar.set_position(done as u64);
    };
    let labels = a.labels.as_deref().map(Calibration::labels).transpose()?;
    let eval = match &a.eval {
        Some(p) => Some(Calibration::open(p)?),
        None => (!calibration.is_empty()).then(|| calibration.clone()),
    };
    let target = match (a.auto_fallback, a.min_sqnr, a.max_drop) {
        (false, None, None) => None,
        (true, Some(db), None) => Some(Target::MinSqnr(db)),
        (true, None, Some(pct)) => Some(Target::MaxDrop(pct)),
        (true, _, _) => {
            return Err(Error::Usage("--auto-fallback needs one of --min-sqnr DB or --max-drop PCT".into()))
        }
        (false, _, _) => return Err(Error::Usage("--min-sqnr and --max-drop go with --auto-fallback".into())),
    };
    let needs_eval = target.is_some() || a.sensitivity;
    let eval = match eval {
        Some(e) => Some(e),
        None if needs_eval => {
            return Err(Error::Usage("--sensitivity and --auto-fallback need --eval DATA (or calibration data)".into()))
        }
        None => None,
    };
    let mut q = match (target, &eval) {
        (Some(t), Some(data)) => {
            quantizer.quantize_with_fallback(&program, &calibration, data, labels.as_deref(), t, &tick)?
        }
        _ => quantizer.quantize_with(&program, &calibration, &tick)?,
    };
    if let Some(data) = &eval {
        if a.sensitivity && q.report.sensitivity.is_empty() {
            q.report.sensitivity = quantizer.sensitivity(&program, &calibration, data, &tick)?;
        }
        q.evaluate_with(data, labels.as_deref(), &tick)?;
    }
    bar.finish_and_clear();
    ferrite::quantizer::write_atomic(&a.output, &q.program)?;
    if let Some(path) = &a.report {
        std::fs::write(path, q.report.to_json() + "\n")
            .map_err(|source| Error::Output { path: path.display().to_string(), source })?;
    }
    print!("{}", q.report.table());
    println!("wrote {} ({} bytes, {})", a.output.display(), q.program.len(), a.emit);
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // FERRITE_LOG takes `tracing` filter syntax; `partition --verbose` turns on the
    // partitioner's decisions when FERRITE_LOG does not say otherwise.
    let default =
        if matches!(cli.command, Command::Partition { verbose: true, .. } | Command::Lower { verbose: true, .. }) {
            "ferrite::partitioner=info"
        } else {
            "warn"
        };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRITE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error[{}]: {e}", e.code());
            eprintln!("  hint: {}", e.hint());
            eprintln!("  see: the book, troubleshooting/error-codes.html#{}", e.code());
            ExitCode::from(2)
        }
    }
}
