//! Malformed input never panics, hangs or aborts: truncations, byte flips and index or size
//! fields forced to extreme values each give an error (or, for harmless flips, a still-valid
//! program). Deterministic and bounded in time.

use std::path::Path;

use ferrite_program::{Allocation, DataLocation, Instruction, Program, ProgramError, ProgramWriter, Value};

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name);
    std::fs::read(p).expect("fixture")
}

const SMALL: [&str; 5] = [
    "elementwise/portable.pte",
    "mlp/q8.pte",
    "running_sum/portable_init.pte",
    "two_methods/portable.pte",
    "digits_cnn/xnnpack.pte",
];

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Loads `bytes`; if that succeeds, touches everything a consumer would read.
fn load_and_walk(bytes: &[u8]) -> Result<(), ProgramError> {
    let p = Program::from_bytes(bytes)?;
    for plan in &p.def().plans {
        for v in &plan.values {
            if let Value::Tensor(t) = v {
                let _ = p.tensor_data(t);
            }
        }
        for d in &plan.delegates {
            let _ = p.delegate_data(d);
        }
    }
    let _ = ferrite_program::ProgramSummary::of(&p).to_string();
    Ok(())
}

#[test]
fn every_truncation_is_an_error() {
    for name in SMALL {
        let bytes = fixture(name);
        let step = (bytes.len() / 1500).max(1);
        for len in (0..bytes.len()).step_by(step) {
            let r = load_and_walk(&bytes[..len]);
            // Cutting into the FlatBuffer or a segment must be caught. (Cutting only trailing
            // padding after the last segment can legitimately still load.)
            if len < bytes.len() / 2 {
                assert!(r.is_err(), "{name} truncated to {len} bytes loaded");
            }
        }
    }
}

#[test]
fn random_byte_flips_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut errors = 0;
    let mut total = 0;
    for name in SMALL {
        let original = fixture(name);
        for _ in 0..600 {
            let mut bytes = original.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(bytes.len());
                bytes[i] = match rng.below(4) {
                    0 => 0xFF,
                    1 => 0x00,
                    2 => 0x80,
                    _ => rng.next() as u8,
                };
            }
            total += 1;
            if load_and_walk(&bytes).is_err() {
                errors += 1;
            }
        }
    }
    // Flips inside constant data leave valid programs; flips in structure must be caught.
    assert!(errors > total / 10, "only {errors} of {total} corruptions were detected");
}

fn rewrite(name: &str, edit: impl FnOnce(&mut ferrite_program::ProgramDef)) -> Vec<u8> {
    let bytes = fixture(name);
    let p = Program::from_bytes(&bytes).expect("fixture loads");
    let mut w = ProgramWriter::from_program(&p);
    edit(w.def_mut());
    w.to_bytes().expect("write")
}

fn first_tensor(def: &mut ferrite_program::ProgramDef, planned: bool) -> &mut ferrite_program::Tensor {
    def.plans[0]
        .values
        .iter_mut()
        .find_map(|v| match v {
            Value::Tensor(t) if t.allocation.is_some() == planned => Some(t),
            _ => None,
        })
        .expect("tensor")
}

#[test]
fn extreme_fields_are_rejected_with_codes() {
    type Edit = Box<dyn Fn(&mut ferrite_program::ProgramDef)>;
    let cases: Vec<(&str, &str, Edit)> = vec![
        (
            "op index",
            "P010",
            Box::new(|d| {
                if let Instruction::KernelCall { op_index, .. } = &mut d.plans[0].chains[0].instructions[0] {
                    *op_index = i32::MAX as usize;
                }
            }),
        ),
        (
            "negative arg",
            "P010",
            Box::new(|d| {
                if let Instruction::KernelCall { args, .. } = &mut d.plans[0].chains[0].instructions[0] {
                    args[0] = u32::MAX as usize; // written as -1
                }
            }),
        ),
        ("input index", "P010", Box::new(|d| d.plans[0].inputs[0] = 1 << 30)),
        ("output index", "P010", Box::new(|d| d.plans[0].outputs[0] = 1 << 30)),
        ("huge sizes", "P020", Box::new(|d| first_tensor(d, true).sizes = vec![i32::MAX as usize; 4])),
        (
            "rank 17",
            "P020",
            Box::new(|d| {
                let t = first_tensor(d, true);
                t.sizes = vec![1; 17];
                t.dim_order = (0..17).collect();
            }),
        ),
        (
            "dim order not a permutation",
            "P020",
            Box::new(|d| {
                let t = first_tensor(d, true);
                let n = t.dim_order.len() as u8;
                t.dim_order = vec![0; n as usize];
            }),
        ),
        ("dim order length", "P020", Box::new(|d| first_tensor(d, true).dim_order.push(9))),
        (
            "arena offset",
            "P021",
            Box::new(|d| {
                let t = first_tensor(d, true);
                t.allocation = Some(Allocation { memory_id: 1, offset: u64::MAX - 3 });
            }),
        ),
        (
            "arena id",
            "P010",
            Box::new(|d| {
                let t = first_tensor(d, true);
                t.allocation = Some(Allocation { memory_id: u32::MAX, offset: 0 });
            }),
        ),
        (
            "arena too small",
            "P021",
            Box::new(|d| {
                for s in d.plans[0].non_const_buffer_sizes.iter_mut().skip(1) {
                    *s = 1;
                }
            }),
        ),
        ("constant buffer index", "P010", Box::new(|d| first_tensor(d, false).data_buffer_idx = u32::MAX)),
        (
            "constant segment offset",
            "P021",
            Box::new(|d| {
                if let Some(cs) = &mut d.constant_segment {
                    cs.offsets[1] = u64::MAX;
                }
            }),
        ),
        (
            "constant segment index",
            "P010",
            Box::new(|d| {
                if let Some(cs) = &mut d.constant_segment {
                    cs.segment_index = 77;
                }
            }),
        ),
        (
            "value kind in list",
            "P011",
            Box::new(|d| {
                let plan = &mut d.plans[0];
                let tensor = plan.values.iter().position(|v| matches!(v, Value::Tensor(_))).expect("tensor");
                plan.values.push(Value::IntList(vec![tensor]));
            }),
        ),
        (
            "tensor list member",
            "P011",
            Box::new(|d| {
                let plan = &mut d.plans[0];
                let int = plan.values.iter().position(|v| matches!(v, Value::Int(_))).expect("int");
                plan.values.push(Value::TensorList(vec![int]));
            }),
        ),
        (
            "jump destination",
            "P010",
            Box::new(|d| {
                let plan = &mut d.plans[0];
                plan.values.push(Value::Bool(true));
                let cond = plan.values.len() - 1;
                plan.chains[0].instructions.push(Instruction::JumpFalseCall { cond, destination: 1 << 20 });
            }),
        ),
        (
            "free of a non-tensor",
            "P011",
            Box::new(|d| {
                let plan = &mut d.plans[0];
                plan.values.push(Value::Int(3));
                let value = plan.values.len() - 1;
                plan.chains[0].instructions.push(Instruction::FreeCall { value });
            }),
        ),
        (
            "delegate index",
            "P010",
            Box::new(|d| {
                d.plans[0].chains[0].instructions.push(Instruction::DelegateCall { delegate_index: 5, args: vec![] });
            }),
        ),
        ("storage offset", "P020", Box::new(|d| first_tensor(d, false).storage_offset = 4)),
    ];
    for (what, code, edit) in cases {
        let bytes = rewrite("mlp/portable.pte", edit);
        match Program::from_bytes(&bytes) {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => {
                assert_eq!(e.code(), code, "{what}: {e}");
                assert!(!e.hint().is_empty());
            }
        }
    }
}

#[test]
fn delegate_segment_index_out_of_range() {
    let bytes = rewrite("mlp/xnnpack.pte", |d| d.plans[0].delegates[0].processed = DataLocation::Segment(999));
    let e = Program::from_bytes(&bytes).expect_err("accepted");
    assert_eq!(e.code(), "P010", "{e}");
}

#[test]
fn header_fields_forced_to_extremes() {
    let original = fixture("mlp/portable.pte");
    assert_eq!(&original[8..12], b"eh00");
    // (byte offset, value) pairs for the u64 header fields and the u32 length.
    let patches: [(usize, &[u8]); 7] = [
        (12, &u32::MAX.to_le_bytes()),
        (12, &3u32.to_le_bytes()),
        (16, &u64::MAX.to_le_bytes()),
        (16, &4u64.to_le_bytes()),
        (24, &u64::MAX.to_le_bytes()),
        (24, &7u64.to_le_bytes()),
        (32, &u64::MAX.to_le_bytes()),
    ];
    for (at, value) in patches {
        let mut bytes = original.clone();
        bytes[at..at + value.len()].copy_from_slice(value);
        let e = Program::from_bytes(&bytes).expect_err("patched header accepted");
        assert!(matches!(e.code(), "P004" | "P005" | "P021"), "patch at {at}: {e}");
    }
}

#[test]
fn not_a_program() {
    for (data, code) in [(&b""[..], "P002"), (b"1234567", "P002"), (b"\x10\0\0\0PK\x03\x04zzzzzzzz", "P003")] {
        assert_eq!(Program::from_bytes(data).expect_err("accepted").code(), code);
    }
    let e = Program::read("/definitely/not/here.pte").expect_err("missing file");
    assert_eq!(e.code(), "P001");
}
