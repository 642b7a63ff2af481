//! The Ferrite backend's delegate blob: format, encoding and full verification.
//!
//! ```text
//! offset 0   header (64 bytes, little-endian)
//!            magic  b"FRBK"          u8[4]
//!            version (2)             u32   1: first release; 2: adds the backend's own
//!                                          operators (`ferrite::convolution_nhwc.out`)
//!            graph_offset            u64   FlatBuffer (`schema/ferrite_blob.fbs`, id "FRB1")
//!            graph_len               u64
//!            constants_offset        u64   a multiple of 64
//!            constants_len           u64
//!            zero padding to 64
//! then       the FlatBuffer
//! then       the constant section; every constant starts at a multiple of 64 within it
//! ```
//!
//! [`BlobGraph::decode`] verifies everything before anything uses it: the header's offsets, the
//! FlatBuffer (with the verifier), every value index, every constant's range and size, aliases.

use ferrite_program::ScalarType;

use super::generated::ferrite_blob as fb;
use crate::error::{Result, RuntimeError};

/// Magic bytes at the start of a blob.
pub const MAGIC: &[u8; 4] = b"FRBK";
/// The blob version this runtime writes. Versions `1..=VERSION` are read: version 2 only added
/// operators, so a version-1 blob is a valid version-2 blob.
pub const VERSION: u32 = 2;
/// Header size; the FlatBuffer follows it.
pub const HEADER_LEN: usize = 64;
/// Alignment of the constant section and of each constant in it.
pub const CONSTANT_ALIGNMENT: usize = 64;
/// Upper bound on values, ops and constants in one blob (a sanity limit against hostile files).
const MAX_ITEMS: usize = 1 << 20;

/// A tensor of the partition.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobTensor {
    /// Element type.
    pub dtype: ScalarType,
    /// Sizes (static).
    pub sizes: Vec<usize>,
    /// Index into [`BlobGraph::constants`] when the tensor is constant.
    pub constant: Option<usize>,
    /// Another tensor whose memory this one shares (a free reshape).
    pub alias_of: Option<usize>,
}

/// A value of the partition.
#[derive(Debug, Clone, PartialEq)]
pub enum BlobValue {
    /// None.
    None,
    /// int.
    Int(i64),
    /// float.
    Double(f64),
    /// bool.
    Bool(bool),
    /// str.
    String(String),
    /// int[] (the integers themselves).
    IntList(Vec<i64>),
    /// float[].
    DoubleList(Vec<f64>),
    /// bool[].
    BoolList(Vec<bool>),
    /// A tensor.
    Tensor(BlobTensor),
    /// Tensor[] (value indices).
    TensorList(Vec<usize>),
    /// Tensor?[] (value indices).
    OptionalTensorList(Vec<Option<usize>>),
}

/// One operation.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobOp {
    /// Operator (`name.overload`).
    pub name: String,
    /// Value indices (schema order, then outputs).
    pub args: Vec<usize>,
    /// Fused output activation: clamp the first output to `[min, max]`.
    pub activation: Option<(f32, f32)>,
}

/// A compiled partition.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BlobGraph {
    /// The value table.
    pub values: Vec<BlobValue>,
    /// Values the delegate call passes in.
    pub inputs: Vec<usize>,
    /// Values handed back.
    pub outputs: Vec<usize>,
    /// Operations in execution order.
    pub ops: Vec<BlobOp>,
    /// Constant data.
    pub constants: Vec<Vec<u8>>,
}

fn bad(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::Backend { id: super::BACKEND_ID.into(), message: format!("invalid blob: {}", msg.into()) }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn index(i: u64, len: usize, what: &str) -> Result<usize> {
    usize::try_from(i).ok().filter(|&i| i < len).ok_or_else(|| bad(format!("{what} index {i} out of range ({len})")))
}

impl BlobGraph {
    /// A tensor value.
    pub fn tensor(&self, v: usize) -> Option<&BlobTensor> {
        match self.values.get(v) {
            Some(BlobValue::Tensor(t)) => Some(t),
            _ => None,
        }
    }

    /// Serializes the blob.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut b = flatbuffers::FlatBufferBuilder::new();
        let mut values = Vec::with_capacity(self.values.len());
        for v in &self.values {
            let (kind_type, kind) = match v {
                BlobValue::None => {
                    (fb::Kind::NoneValue, fb::NoneValue::create(&mut b, &fb::NoneValueArgs {}).as_union_value())
                }
                BlobValue::Int(x) => {
                    (fb::Kind::IntValue, fb::IntValue::create(&mut b, &fb::IntValueArgs { v: *x }).as_union_value())
                }
                BlobValue::Double(x) => (
                    fb::Kind::DoubleValue,
                    fb::DoubleValue::create(&mut b, &fb::DoubleValueArgs { v: *x }).as_union_value(),
                ),
                BlobValue::Bool(x) => {
                    (fb::Kind::BoolValue, fb::BoolValue::create(&mut b, &fb::BoolValueArgs { v: *x }).as_union_value())
                }
                BlobValue::String(s) => {
                    let s = b.create_string(s);
                    (
                        fb::Kind::StringValue,
                        fb::StringValue::create(&mut b, &fb::StringValueArgs { v: Some(s) }).as_union_value(),
                    )
                }
                BlobValue::IntList(items) => {
                    let items = b.create_vector(items);
                    (
                        fb::Kind::IntList,
                        fb::IntList::create(&mut b, &fb::IntListArgs { items: Some(items) }).as_union_value(),
                    )
                }
                BlobValue::DoubleList(items) => {
                    let items = b.create_vector(items);
                    (
                        fb::Kind::DoubleList,
                        fb::DoubleList::create(&mut b, &fb::DoubleListArgs { items: Some(items) }).as_union_value(),
                    )
                }
                BlobValue::BoolList(items) => {
                    let items = b.create_vector(items);
                    (
                        fb::Kind::BoolList,
                        fb::BoolList::create(&mut b, &fb::BoolListArgs { items: Some(items) }).as_union_value(),
                    )
                }
                BlobValue::Tensor(t) => {
                    let sizes: Vec<u64> = t.sizes.iter().map(|&s| s as u64).collect();
                    let sizes = b.create_vector(&sizes);
                    let args = fb::TensorArgs {
                        dtype: t.dtype.code(),
                        sizes: Some(sizes),
                        constant: t.constant.map_or(-1, |c| c as i32),
                        alias_of: t.alias_of.map_or(-1, |a| a as i32),
                    };
                    (fb::Kind::Tensor, fb::Tensor::create(&mut b, &args).as_union_value())
                }
                BlobValue::TensorList(items) => {
                    let items: Vec<u32> = items.iter().map(|&i| i as u32).collect();
                    let items = b.create_vector(&items);
                    (
                        fb::Kind::TensorList,
                        fb::TensorList::create(&mut b, &fb::TensorListArgs { items: Some(items) }).as_union_value(),
                    )
                }
                BlobValue::OptionalTensorList(items) => {
                    let items: Vec<i32> = items.iter().map(|i| i.map_or(-1, |i| i as i32)).collect();
                    let items = b.create_vector(&items);
                    let args = fb::OptionalTensorListArgs { items: Some(items) };
                    (fb::Kind::OptionalTensorList, fb::OptionalTensorList::create(&mut b, &args).as_union_value())
                }
            };
            values.push(fb::Value::create(&mut b, &fb::ValueArgs { kind_type, kind: Some(kind) }));
        }
        let values = b.create_vector(&values);
        let to_u32 = |v: &[usize]| v.iter().map(|&i| i as u32).collect::<Vec<u32>>();
        let inputs = b.create_vector(&to_u32(&self.inputs));
        let outputs = b.create_vector(&to_u32(&self.outputs));
        let mut ops = Vec::with_capacity(self.ops.len());
        for op in &self.ops {
            let name = b.create_string(&op.name);
            let args = b.create_vector(&to_u32(&op.args));
            let (fused, lo, hi) = op.activation.map_or((false, 0.0, 0.0), |(lo, hi)| (true, lo, hi));
            ops.push(fb::Op::create(
                &mut b,
                &fb::OpArgs { name: Some(name), args: Some(args), fused_activation: fused, act_min: lo, act_max: hi },
            ));
        }
        let ops = b.create_vector(&ops);
        let mut section = Vec::new();
        let mut refs = Vec::with_capacity(self.constants.len());
        for c in &self.constants {
            let at = section.len().div_ceil(CONSTANT_ALIGNMENT) * CONSTANT_ALIGNMENT;
            section.resize(at, 0);
            section.extend_from_slice(c);
            refs.push(fb::ConstantRef::new(at as u64, c.len() as u64));
        }
        let constants = b.create_vector(&refs);
        let root = fb::Graph::create(
            &mut b,
            &fb::GraphArgs {
                values: Some(values),
                inputs: Some(inputs),
                outputs: Some(outputs),
                ops: Some(ops),
                constants: Some(constants),
            },
        );
        fb::finish_graph_buffer(&mut b, root);
        let graph = b.finished_data();
        let graph_offset = HEADER_LEN;
        let constants_offset = (graph_offset + graph.len()).div_ceil(CONSTANT_ALIGNMENT) * CONSTANT_ALIGNMENT;
        let mut out = Vec::with_capacity(constants_offset + section.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        for x in [graph_offset, graph.len(), constants_offset, section.len()] {
            out.extend_from_slice(&(x as u64).to_le_bytes());
        }
        out.resize(HEADER_LEN, 0);
        out.extend_from_slice(graph);
        out.resize(constants_offset, 0);
        out.extend_from_slice(&section);
        Ok(out)
    }

    /// Reads and fully verifies a blob.
    pub fn decode(blob: &[u8]) -> Result<Self> {
        if blob.len() < HEADER_LEN {
            return Err(bad(format!("{} bytes is shorter than the {HEADER_LEN}-byte header", blob.len())));
        }
        if &blob[..4] != MAGIC {
            return Err(bad("wrong magic: not a Ferrite backend blob"));
        }
        let version = u32::from_le_bytes([blob[4], blob[5], blob[6], blob[7]]);
        if !(1..=VERSION).contains(&version) {
            return Err(bad(format!(
                "blob version {version}, this runtime reads versions 1 to {VERSION}; re-lower the program with this Ferrite"
            )));
        }
        let (go, gl, co, cl) = (u64_at(blob, 8), u64_at(blob, 16), u64_at(blob, 24), u64_at(blob, 32));
        let range = |o: u64, l: u64, what: &str| -> Result<std::ops::Range<usize>> {
            let o = usize::try_from(o).map_err(|_| bad(format!("{what} offset too large")))?;
            let l = usize::try_from(l).map_err(|_| bad(format!("{what} length too large")))?;
            let end = o.checked_add(l).filter(|&e| e <= blob.len() && o >= HEADER_LEN);
            end.map(|e| o..e).ok_or_else(|| bad(format!("{what} {o}+{l} lies outside the blob ({} bytes)", blob.len())))
        };
        let graph_range = range(go, gl, "graph")?;
        let const_range = range(co, cl, "constant section")?;
        if const_range.start % CONSTANT_ALIGNMENT != 0
            || graph_range.end > const_range.start && const_range.start != const_range.end
        {
            return Err(bad("constant section misplaced or misaligned"));
        }
        let graph_bytes = &blob[graph_range];
        if !fb::graph_buffer_has_identifier(graph_bytes) {
            return Err(bad("the FlatBuffer lacks the FRB1 identifier"));
        }
        let g = fb::root_as_graph(graph_bytes).map_err(|e| bad(format!("FlatBuffer verification failed: {e}")))?;
        let section = &blob[const_range];

        let fb_values = g.values();
        if fb_values.len() > MAX_ITEMS || g.ops().len() > MAX_ITEMS || g.constants().len() > MAX_ITEMS {
            return Err(bad("too many values, ops or constants"));
        }
        let n_values = fb_values.len();
        let n_constants = g.constants().len();
        let mut constants = Vec::with_capacity(n_constants);
        for (i, c) in g.constants().iter().enumerate() {
            let (o, l) = (c.offset(), c.size());
            let r = usize::try_from(o)
                .ok()
                .zip(usize::try_from(l).ok())
                .and_then(|(o, l)| o.checked_add(l).map(|e| o..e))
                .filter(|r| r.end <= section.len() && r.start % CONSTANT_ALIGNMENT == 0)
                .ok_or_else(|| {
                    bad(format!("constant {i} ({o}+{l}) lies outside the constant section or is misaligned"))
                })?;
            constants.push(section[r].to_vec());
        }
        let mut values = Vec::with_capacity(n_values);
        for (i, v) in fb_values.iter().enumerate() {
            let value = match v.kind_type() {
                fb::Kind::NoneValue => BlobValue::None,
                fb::Kind::IntValue => BlobValue::Int(v.kind_as_int_value().map(|x| x.v()).ok_or_else(|| bad("int"))?),
                fb::Kind::DoubleValue => {
                    BlobValue::Double(v.kind_as_double_value().map(|x| x.v()).ok_or_else(|| bad("double"))?)
                }
                fb::Kind::BoolValue => {
                    BlobValue::Bool(v.kind_as_bool_value().map(|x| x.v()).ok_or_else(|| bad("bool"))?)
                }
                fb::Kind::StringValue => {
                    BlobValue::String(v.kind_as_string_value().map(|x| x.v().to_string()).ok_or_else(|| bad("string"))?)
                }
                fb::Kind::IntList => {
                    BlobValue::IntList(v.kind_as_int_list().ok_or_else(|| bad("int list"))?.items().iter().collect())
                }
                fb::Kind::DoubleList => BlobValue::DoubleList(
                    v.kind_as_double_list().ok_or_else(|| bad("double list"))?.items().iter().collect(),
                ),
                fb::Kind::BoolList => {
                    BlobValue::BoolList(v.kind_as_bool_list().ok_or_else(|| bad("bool list"))?.items().iter().collect())
                }
                fb::Kind::TensorList => BlobValue::TensorList(
                    v.kind_as_tensor_list()
                        .ok_or_else(|| bad("tensor list"))?
                        .items()
                        .iter()
                        .map(|x| index(u64::from(x), n_values, "tensor list item"))
                        .collect::<Result<_>>()?,
                ),
                fb::Kind::OptionalTensorList => BlobValue::OptionalTensorList(
                    v.kind_as_optional_tensor_list()
                        .ok_or_else(|| bad("optional tensor list"))?
                        .items()
                        .iter()
                        .map(|x| if x < 0 { Ok(None) } else { index(x as u64, n_values, "tensor list item").map(Some) })
                        .collect::<Result<_>>()?,
                ),
                fb::Kind::Tensor => {
                    let t = v.kind_as_tensor().ok_or_else(|| bad("tensor"))?;
                    let dtype = ScalarType::from_code(t.dtype())
                        .ok_or_else(|| bad(format!("value {i}: unknown dtype code {}", t.dtype())))?;
                    if t.sizes().len() > ferrite_program::MAX_RANK {
                        return Err(bad(format!("value {i}: rank {} is too large", t.sizes().len())));
                    }
                    let sizes: Vec<usize> = t
                        .sizes()
                        .iter()
                        .map(|s| usize::try_from(s).map_err(|_| bad(format!("value {i}: size {s} too large"))))
                        .collect::<Result<_>>()?;
                    let nbytes =
                        crate::tensor::nbytes(dtype, &sizes).map_err(|_| bad(format!("value {i}: size overflows")))?;
                    let constant = if t.constant() < 0 {
                        None
                    } else {
                        Some(index(t.constant() as u64, n_constants, "constant")?)
                    };
                    if let Some(c) = constant {
                        if constants[c].len() != nbytes {
                            return Err(bad(format!(
                                "value {i}: constant {c} holds {} bytes, the tensor needs {nbytes}",
                                constants[c].len()
                            )));
                        }
                    }
                    let alias_of =
                        if t.alias_of() < 0 { None } else { Some(index(t.alias_of() as u64, n_values, "alias")?) };
                    BlobValue::Tensor(BlobTensor { dtype, sizes, constant, alias_of })
                }
                other => return Err(bad(format!("value {i}: unknown kind {other:?}"))),
            };
            values.push(value);
        }
        let inputs: Vec<usize> =
            g.inputs().iter().map(|x| index(u64::from(x), n_values, "input")).collect::<Result<_>>()?;
        let outputs: Vec<usize> =
            g.outputs().iter().map(|x| index(u64::from(x), n_values, "output")).collect::<Result<_>>()?;
        let mut ops = Vec::with_capacity(g.ops().len());
        for op in g.ops() {
            let args = op.args().iter().map(|x| index(u64::from(x), n_values, "argument")).collect::<Result<_>>()?;
            let activation = op.fused_activation().then_some((op.act_min(), op.act_max()));
            ops.push(BlobOp { name: op.name().to_string(), args, activation });
        }
        let graph = BlobGraph { values, inputs, outputs, ops, constants };
        graph.check_semantics()?;
        Ok(graph)
    }

    /// Checks what the FlatBuffer cannot: inputs and outputs are tensors, aliases point at
    /// non-alias tensors of the same dtype and element count, constants are never written.
    pub fn check_semantics(&self) -> Result<()> {
        for (what, list) in [("input", &self.inputs), ("output", &self.outputs)] {
            for &v in list {
                let t = self.tensor(v).ok_or_else(|| bad(format!("{what} value {v} is not a tensor")))?;
                if t.constant.is_some() && what == "input" {
                    return Err(bad(format!("input value {v} is a constant")));
                }
            }
        }
        for (i, v) in self.values.iter().enumerate() {
            if let BlobValue::Tensor(t) = v {
                if let Some(a) = t.alias_of {
                    let target = self.tensor(a).ok_or_else(|| bad(format!("value {i} aliases non-tensor {a}")))?;
                    let same = target.dtype == t.dtype
                        && target.sizes.iter().product::<usize>() == t.sizes.iter().product::<usize>();
                    if target.alias_of.is_some() || !same || a == i || t.constant.is_some() {
                        return Err(bad(format!("value {i}: invalid alias of value {a}")));
                    }
                }
            }
        }
        for (k, op) in self.ops.iter().enumerate() {
            if op.name.is_empty() {
                return Err(bad(format!("op {k} has no name")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BlobGraph {
        BlobGraph {
            values: vec![
                BlobValue::Tensor(BlobTensor {
                    dtype: ScalarType::Float,
                    sizes: vec![2, 3],
                    constant: None,
                    alias_of: None,
                }),
                BlobValue::Tensor(BlobTensor {
                    dtype: ScalarType::Float,
                    sizes: vec![2, 3],
                    constant: Some(0),
                    alias_of: None,
                }),
                BlobValue::Int(1),
                BlobValue::Tensor(BlobTensor {
                    dtype: ScalarType::Float,
                    sizes: vec![2, 3],
                    constant: None,
                    alias_of: None,
                }),
                BlobValue::Tensor(BlobTensor {
                    dtype: ScalarType::Float,
                    sizes: vec![6],
                    constant: None,
                    alias_of: Some(3),
                }),
                BlobValue::IntList(vec![6]),
                BlobValue::OptionalTensorList(vec![Some(0), None]),
                BlobValue::String("none".into()),
            ],
            inputs: vec![0],
            outputs: vec![4],
            ops: vec![BlobOp { name: "aten::add.out".into(), args: vec![0, 1, 2, 3, 3], activation: Some((0.0, 6.0)) }],
            constants: vec![vec![7u8; 24]],
        }
    }

    #[test]
    fn round_trip() {
        let g = sample();
        let bytes = g.encode().expect("encodes");
        assert_eq!(&bytes[..4], MAGIC);
        assert_eq!(BlobGraph::decode(&bytes).expect("decodes"), g);
    }

    #[test]
    fn corrupt_blobs_are_errors() {
        let bytes = sample().encode().expect("encodes");
        for cut in [0, 3, 10, HEADER_LEN, bytes.len() / 2, bytes.len() - 1] {
            assert!(BlobGraph::decode(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        for at in 0..bytes.len() {
            let mut b = bytes.clone();
            b[at] ^= 0x5a;
            // Either an error or a still-valid blob; never a panic.
            let _ = BlobGraph::decode(&b);
        }
        let mut b = bytes.clone();
        b[4] = 9;
        assert!(BlobGraph::decode(&b).expect_err("version").to_string().contains("version 9"));
    }

    #[test]
    fn bad_semantics_are_errors() {
        let mut g = sample();
        g.values[4] = BlobValue::Tensor(BlobTensor {
            dtype: ScalarType::Float,
            sizes: vec![5],
            constant: None,
            alias_of: Some(3),
        });
        assert!(BlobGraph::decode(&g.encode().expect("encodes")).is_err());
        let mut g = sample();
        g.constants[0].pop();
        assert!(BlobGraph::decode(&g.encode().expect("encodes")).is_err());
        let mut g = sample();
        g.inputs = vec![2];
        assert!(BlobGraph::decode(&g.encode().expect("encodes")).is_err());
    }
}
