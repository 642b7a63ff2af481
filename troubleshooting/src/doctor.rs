//! `ferrite doctor`: [`diagnose`] looks a program over before it is deployed — what Ferrite's
//! backend will and will not run and what to do about it, the machine it will run on, the work
//! and memory it needs — each finding linked to the book section that explains it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ferrite_blob::{BlobGraph, BACKEND_ID};

use crate::flops::{blob_flops, op_flops, strip_returned};
use ferrite_op_support::{Op, Rejection};
use ferrite_partitioner::{Partitioner, Reason};
use ferrite_program::{Instruction, Program, ShapeDynamism, Value};
use serde::Serialize;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Costs speed or portability; there is something to do.
    Warning,
    /// The program will not run here as it is.
    Error,
}

/// One thing `ferrite doctor` found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// How much it matters.
    pub severity: Severity,
    /// The method it concerns (`None`: the whole program).
    pub method: Option<String>,
    /// What was found.
    pub what: String,
    /// What to do about it (empty when nothing needs doing).
    pub fix: String,
    /// The book section that explains it, relative to the book's root (`page.html#anchor`).
    pub book: &'static str,
}

/// One method's figures.
#[derive(Debug, Clone, Serialize)]
pub struct MethodDiagnosis {
    /// Method name.
    pub name: String,
    /// Kernel calls (operators the runtime runs itself).
    pub kernel_calls: usize,
    /// Of those, how many `ferrite lower` would hand to Ferrite's backend.
    pub lowerable_calls: usize,
    /// Delegate calls already in the program, by backend.
    pub delegate_calls: BTreeMap<String, usize>,
    /// Multiply-adds ×2 of its convolutions and matrix products (shapes at their upper bounds),
    /// inside Ferrite's delegates too.
    pub flops: u64,
    /// Bytes of its memory-planned arenas.
    pub planned_bytes: u64,
    /// Whether an input has a dynamic shape.
    pub dynamic_inputs: bool,
}

/// What [`diagnose`] found.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    /// File size.
    pub file_bytes: usize,
    /// The program's schema version.
    pub schema_version: u32,
    /// Methods.
    pub methods: Vec<MethodDiagnosis>,
    /// Bytes of constant data (weights) outside delegates.
    pub constant_bytes: u64,
    /// Bytes of Ferrite's delegate blobs' constants: the weights the backend packs at init.
    pub backend_weight_bytes: u64,
    /// The SIMD level this machine's kernels use.
    pub simd: String,
    /// How the backend's int8 products multiply here (`vnni512`, `vnni256` or `pairs`).
    pub int8: String,
    /// Threads a runtime uses by default here.
    pub threads: usize,
    /// Largest memory plan the runtime accepts by default here (the machine's memory).
    pub memory_limit: u64,
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
}

/// Book sections findings link to; a test checks every one exists.
pub const BOOK_SECTIONS: &[&str] = &[
    SECTION_OTHER_BACKEND,
    SECTION_DYNAMIC,
    SECTION_UNSUPPORTED,
    SECTION_CONTROL_FLOW,
    SECTION_CONFIG,
    SECTION_NOT_LOWERED,
    SECTION_LEGACY,
    SECTION_DATA_MOVEMENT,
    SECTION_QUANTIZED,
    SECTION_THREADS,
];
const SECTION_OTHER_BACKEND: &str = "troubleshooting/common-problems.html#a-program-delegated-to-another-backend";
const SECTION_DYNAMIC: &str = "troubleshooting/common-problems.html#dynamic-shapes";
const SECTION_UNSUPPORTED: &str = "troubleshooting/common-problems.html#operators-the-backend-does-not-run";
const SECTION_CONTROL_FLOW: &str = "troubleshooting/common-problems.html#control-flow";
const SECTION_CONFIG: &str = "troubleshooting/common-problems.html#operators-left-out-by-configuration";
const SECTION_NOT_LOWERED: &str = "troubleshooting/common-problems.html#a-program-not-yet-lowered";
const SECTION_LEGACY: &str = "troubleshooting/common-problems.html#programs-from-older-executorch-versions";
const SECTION_DATA_MOVEMENT: &str = "troubleshooting/common-problems.html#partitions-that-would-only-move-data";
const SECTION_QUANTIZED: &str = "troubleshooting/common-problems.html#quantized-programs";
const SECTION_THREADS: &str = "troubleshooting/slow-performance.html#threads-and-simd";

/// Kernel calls left out for one (operator, reason): their instructions, severity, fix, section.
type Group = (Vec<usize>, Severity, String, &'static str);

fn fix_for(reason: &Reason) -> (Severity, String, &'static str) {
    match reason {
        Reason::Unsupported { rejection: Rejection::Constraint { constraint, .. } }
            if constraint.as_str() == ferrite_op_support::GENERAL[0].text =>
        {
            (
                Severity::Warning,
                "give every dynamic dimension an upper bound (`Dim(\"n\", max=...)` in `torch.export.export`'s \
                 `dynamic_shapes=`), or export with static shapes"
                    .into(),
                SECTION_DYNAMIC,
            )
        }
        Reason::Unsupported { rejection: Rejection::Constraint { constraint, .. } }
            if constraint.as_str() == ferrite_op_support::GENERAL[1].text =>
        {
            (
                Severity::Info,
                "these run on Ferrite's portable kernels, correctly; to delegate them, export with static sizes \
                 for the dimensions these operators reshape or expand (only the others dynamic), or one program per size"
                    .into(),
                SECTION_DYNAMIC,
            )
        }
        Reason::Unsupported { rejection: Rejection::UnsupportedOperator { .. } } => (
            Severity::Warning,
            "it runs on Ferrite's portable kernels, correctly but without the backend's packing and fusion; \
             if it is hot (see `ferrite profile`), replace it in the model or ask for it in the op-support registry"
                .into(),
            SECTION_UNSUPPORTED,
        ),
        Reason::Unsupported { .. } => (
            Severity::Warning,
            "it runs on the portable kernels; `ferrite ops` lists each operator's dtypes and constraints".into(),
            SECTION_UNSUPPORTED,
        ),
        Reason::ControlFlow => (
            Severity::Warning,
            "the method has jumps (torch.cond / while_loop): export the branches as separate methods, or keep this \
             method on the portable kernels"
                .into(),
            SECTION_CONTROL_FLOW,
        ),
        Reason::ExcludedByConfig | Reason::NotIncluded | Reason::PrecisionNotEnabled { .. } => (
            Severity::Info,
            "the partitioner's configuration (--ops, --exclude-ops, --precisions) leaves it out".into(),
            SECTION_CONFIG,
        ),
        Reason::DataMovementOnly | Reason::Unplaceable => (Severity::Info, String::new(), SECTION_DATA_MOVEMENT),
    }
}

/// Looks `program` over (it was verified when it was read) for a runtime configured like
/// `runtime`.
pub fn diagnose(program: &Program<'_>, runtime: &ferrite_runtime::Runtime) -> Diagnosis {
    let def = program.def();
    let mut findings = Vec::new();
    let partitioning = Partitioner::default().partition(program);
    let mut methods = Vec::new();
    let mut backend_weight_bytes = 0u64;
    for plan in &def.plans {
        let name = plan.name.clone();
        let chain = plan.chains.first();
        let instructions = chain.map_or(&[][..], |c| c.instructions.as_slice());
        let sizes = |v: usize| match plan.values.get(v) {
            Some(Value::Tensor(t)) => Some(t.sizes.clone()),
            _ => None,
        };
        let mut flops = 0u64;
        let mut kernel_calls = 0;
        let mut delegate_calls: BTreeMap<String, usize> = BTreeMap::new();
        for ins in instructions {
            match ins {
                Instruction::KernelCall { op_index, args } => {
                    kernel_calls += 1;
                    let op = plan.operators.get(*op_index).and_then(|o| Op::from_name(&o.qualified()));
                    if let Some(op) = op {
                        flops = flops.saturating_add(op_flops(op, &sizes, strip_returned(args)));
                    }
                }
                Instruction::DelegateCall { delegate_index, .. } => {
                    let Some(d) = plan.delegates.get(*delegate_index) else { continue };
                    *delegate_calls.entry(d.id.clone()).or_default() += 1;
                    if d.id == BACKEND_ID {
                        match program.delegate_data(d).map(BlobGraph::decode) {
                            Some(Ok(g)) => {
                                flops = flops.saturating_add(blob_flops(&g));
                                backend_weight_bytes = g
                                    .constants
                                    .iter()
                                    .fold(backend_weight_bytes, |n, c| n.saturating_add(c.len() as u64));
                            }
                            Some(Err(e)) => findings.push(Finding {
                                severity: Severity::Error,
                                method: Some(name.clone()),
                                what: format!("a {BACKEND_ID} delegate does not verify: {e}"),
                                fix: "lower the un-lowered program again with this version of Ferrite".into(),
                                book: SECTION_LEGACY,
                            }),
                            None => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let report = partitioning.report.methods.iter().find(|m| m.name == name);
        let lowerable_calls = report.map_or(0, |r| r.delegated_calls);
        let dynamic_inputs = plan
            .inputs
            .iter()
            .any(|&v| matches!(plan.values.get(v), Some(Value::Tensor(t)) if t.dynamism != ShapeDynamism::Static));
        for (id, n) in &delegate_calls {
            if id != BACKEND_ID {
                findings.push(Finding {
                    severity: Severity::Error,
                    method: Some(name.clone()),
                    what: format!("{n} delegate call(s) to {id}, whose blobs only that backend can run"),
                    fix: format!(
                        "export again without the {id} partitioner (`to_edge_transform_and_lower(ep)` with no \
                         partitioner, then `.to_executorch()`), then `ferrite lower` the program"
                    ),
                    book: SECTION_OTHER_BACKEND,
                });
            }
        }
        // Why each kernel call stays out, grouped by operator and reason.
        let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
        for r in report.map_or(&[][..], |r| r.rejected.as_slice()) {
            if matches!(r.reason, Reason::Unsupported { rejection: Rejection::NotAKernel }) {
                continue;
            }
            let (severity, fix, book) = fix_for(&r.reason);
            // One finding per operator and reason; dynamic shapes, one per method.
            let (op, reason) = match &r.reason {
                Reason::Unsupported { rejection: Rejection::Constraint { constraint, .. } }
                    if book == SECTION_DYNAMIC =>
                {
                    (String::new(), format!("dynamic shapes the backend does not compile (“{constraint}”)"))
                }
                Reason::Unsupported { rejection: Rejection::Constraint { constraint, .. } } => {
                    (r.op.clone(), format!("it fails the constraint “{constraint}”"))
                }
                Reason::Unsupported { rejection: Rejection::UnsupportedOperator { .. } } => {
                    (r.op.clone(), "the backend does not implement this operator".into())
                }
                other => (r.op.clone(), other.to_string()),
            };
            let entry = groups.entry((op, reason)).or_insert_with(|| (Vec::new(), severity, fix, book));
            entry.0.push(r.instruction);
        }
        for ((op, reason), (at, severity, fix, book)) in groups {
            let list = at.iter().take(8).map(usize::to_string).collect::<Vec<_>>().join(", ");
            let more = if at.len() > 8 { format!(", … ({} in all)", at.len()) } else { String::new() };
            let who = if op.is_empty() { format!("{} kernel calls", at.len()) } else { op };
            findings.push(Finding {
                severity,
                method: Some(name.clone()),
                what: format!("left out of Ferrite's backend: {who} — {reason} [instructions {list}{more}]"),
                fix,
                book,
            });
        }
        if lowerable_calls > 0 {
            findings.push(Finding {
                severity: Severity::Warning,
                method: Some(name.clone()),
                what: format!(
                    "not lowered: {lowerable_calls} of {kernel_calls} kernel calls would run in Ferrite's backend"
                ),
                fix: "run `ferrite lower MODEL.pte -o MODEL_ferrite.pte` and deploy that".into(),
                book: SECTION_NOT_LOWERED,
            });
        }
        let ops: Vec<Op> = plan.operators.iter().filter_map(|o| Op::from_name(&o.qualified())).collect();
        let (quantize, dequantize) =
            (ops.iter().filter(|o| o.is_quantize()).count(), ops.iter().filter(|o| o.is_dequantize()).count());
        if quantize + dequantize > 0 {
            findings.push(Finding {
                severity: Severity::Info,
                method: Some(name.clone()),
                what: format!(
                    "a quantized program (PT2E Q/DQ operators: {quantize} quantize, {dequantize} dequantize kinds)"
                ),
                fix: "its int8 kernels round like XNNPACK's, not like the portable Q/DQ path: compare with \
                      `ferrite debug numerics` and judge by the output's SQNR"
                    .into(),
                book: SECTION_QUANTIZED,
            });
        }
        methods.push(MethodDiagnosis {
            name,
            kernel_calls,
            lowerable_calls,
            delegate_calls,
            flops,
            planned_bytes: plan.non_const_buffer_sizes.iter().skip(1).fold(0, |n, &b| n.saturating_add(b)),
            dynamic_inputs,
        });
    }
    if program.header().is_none() || def.constant_buffer_sizes.len() > 1 {
        findings.push(Finding {
            severity: Severity::Info,
            method: None,
            what: "written in an older ExecuTorch layout (no extended header, or constants inline in the \
                   FlatBuffer): Ferrite reads it, and `ferrite lower` writes the current layout"
                .into(),
            fix: String::new(),
            book: SECTION_LEGACY,
        });
    }
    let threads = runtime.threads();
    if threads == 1 && std::thread::available_parallelism().map_or(1, usize::from) > 1 {
        findings.push(Finding {
            severity: Severity::Info,
            method: None,
            what: "the runtime uses one thread on a machine with more".into(),
            fix: "pass --threads N (or Runtime::with_threads) for large models".into(),
            book: SECTION_THREADS,
        });
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    Diagnosis {
        file_bytes: program.bytes().len(),
        schema_version: def.version,
        methods,
        constant_bytes: program.constant_bytes(),
        backend_weight_bytes,
        simd: runtime.simd().name().to_string(),
        int8: ferrite_runtime::Dot::best(runtime.simd()).name().to_string(),
        threads,
        memory_limit: runtime.memory_limit(),
        findings,
    }
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.2} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

impl Diagnosis {
    /// The report `ferrite doctor` prints; links are relative to `book_root`.
    pub fn text(&self, book_root: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "program: {} bytes, schema version {}, verified", self.file_bytes, self.schema_version);
        let _ = writeln!(
            s,
            "machine: SIMD {} (int8 products: {}), {} thread(s), memory limit {}",
            self.simd,
            self.int8,
            self.threads,
            bytes(self.memory_limit)
        );
        let _ = writeln!(
            s,
            "weights: {} of constants, {} inside Ferrite's delegates (packed at init)",
            bytes(self.constant_bytes),
            bytes(self.backend_weight_bytes)
        );
        for m in &self.methods {
            let delegates = if m.delegate_calls.is_empty() {
                "no delegate calls".to_string()
            } else {
                m.delegate_calls.iter().map(|(id, n)| format!("{n} to {id}")).collect::<Vec<_>>().join(", ")
            };
            let work = if m.flops >= 10_000_000 {
                format!("{:.3} GFLOP", m.flops as f64 / 1e9)
            } else {
                format!("{:.3} MFLOP", m.flops as f64 / 1e6)
            };
            let uncounted =
                if m.delegate_calls.keys().any(|id| id != BACKEND_ID) { " outside other backends" } else { "" };
            let _ = writeln!(
                s,
                "method {:?}: {} kernel calls ({} lowerable), {delegates}; ≈ {work} per run{uncounted}; planned memory {}{}",
                m.name,
                m.kernel_calls,
                m.lowerable_calls,
                bytes(m.planned_bytes),
                if m.dynamic_inputs { "; dynamic input shapes" } else { "" }
            );
        }
        if self.findings.is_empty() {
            s += "findings: none — the program is ready for Ferrite\n";
        } else {
            let _ = writeln!(s, "findings ({}):", self.findings.len());
        }
        for f in &self.findings {
            let level = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
                Severity::Info => "info",
            };
            let scope = f.method.as_ref().map_or(String::new(), |m| format!(" [{m}]"));
            let _ = writeln!(s, "  {level}{scope}: {}", f.what);
            if !f.fix.is_empty() {
                let _ = writeln!(s, "      fix: {}", f.fix);
            }
            let _ = writeln!(s, "      see: {book_root}{}", f.book);
        }
        s
    }

    /// The diagnosis as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}
