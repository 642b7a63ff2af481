//! [`BlobGraph::decode`]: blob bytes to a verified in-memory graph.

use ferrite_op_support::Op;
use ferrite_program::ScalarType;

use crate::generated::ferrite_blob as fb;
use crate::{
    bad, tensor_bytes, BlobGraph, BlobOp, BlobTensor, BlobValue, DebugValue, Result, CONSTANT_ALIGNMENT, HEADER_LEN,
    MAGIC, MAX_ITEMS, VERSION,
};

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn index(i: u64, len: usize, what: &str) -> Result<usize> {
    usize::try_from(i).ok().filter(|&i| i < len).ok_or_else(|| bad(format!("{what} index {i} out of range ({len})")))
}

impl BlobGraph {
    /// Reads and fully verifies a blob, copying its constants ([`BlobGraph::decode_borrowed`]
    /// reads them in place).
    pub fn decode(blob: &[u8]) -> Result<Self> {
        BlobGraph::decode_borrowed(blob).map(BlobGraph::into_owned)
    }
}

impl<'a> BlobGraph<&'a [u8]> {
    /// Reads and fully verifies a blob; the constants stay in `blob` (the runtime packs weights
    /// straight from the program's bytes).
    pub fn decode_borrowed(blob: &'a [u8]) -> Result<Self> {
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
        // The root offset and the identifier come first (`buffer_has_identifier` asserts there
        // are 8 bytes: a fuzzed blob with a 3-byte graph made it panic).
        if graph_bytes.len() < 8 || !fb::graph_buffer_has_identifier(graph_bytes) {
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
            constants.push(&section[r]);
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
                        tensor_bytes(dtype, &sizes).ok_or_else(|| bad(format!("value {i}: size overflows")))?;
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
                    BlobValue::Tensor(BlobTensor { dtype, sizes, constant, alias_of, dynamic: t.dynamic() })
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
        for (k, op) in g.ops().iter().enumerate() {
            let name = op.name();
            let id = Op::from_name(name).ok_or_else(|| {
                bad(format!("op {k}: {name:?} is not an operator this Ferrite knows (re-lower the program with it)"))
            })?;
            let args = op.args().iter().map(|x| index(u64::from(x), n_values, "argument")).collect::<Result<_>>()?;
            let activation = op.fused_activation().then_some((op.act_min(), op.act_max()));
            ops.push(BlobOp { op: id, args, activation });
        }
        let debug_entries = g.debug().map(|d| d.iter().collect::<Vec<_>>()).unwrap_or_default();
        if debug_entries.len() > MAX_ITEMS {
            return Err(bad("too many debug entries"));
        }
        let mut debug = Vec::with_capacity(debug_entries.len());
        for d in debug_entries {
            let value = index(u64::from(d.value()), n_values, "debug entry")?;
            if !matches!(values[value], BlobValue::Tensor(_)) {
                return Err(bad(format!("debug entry for value {value}, which is not a tensor")));
            }
            debug.push(DebugValue { value, origin: d.origin() as usize, channels_last: d.channels_last() });
        }
        let graph = BlobGraph { values, inputs, outputs, ops, constants, debug };
        graph.check_semantics()?;
        Ok(graph)
    }
}

impl<C: AsRef<[u8]>> BlobGraph<C> {
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
                    // An alias takes its shape from no operation: both sides must be static.
                    if t.dynamic || target.dynamic {
                        return Err(bad(format!("value {i}: an alias of value {a} with a dynamic shape")));
                    }
                }
                if t.dynamic && t.constant.is_some() {
                    return Err(bad(format!("value {i}: a constant with a dynamic shape")));
                }
            }
        }
        Ok(())
    }
}
