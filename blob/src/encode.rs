//! [`BlobGraph::encode`]: the in-memory graph to blob bytes.

use crate::generated::ferrite_blob as fb;
use crate::{bad, BlobGraph, BlobValue, Result, CONSTANT_ALIGNMENT, HEADER_LEN, MAGIC, MAX_ITEMS, VERSION};

impl<C: AsRef<[u8]>> BlobGraph<C> {
    /// Serializes the blob.
    pub fn encode(&self) -> Result<Vec<u8>> {
        if [self.values.len(), self.ops.len(), self.constants.len(), self.debug.len()].iter().any(|&n| n > MAX_ITEMS) {
            return Err(bad("too many values, ops, constants or debug entries"));
        }
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
                        dynamic: t.dynamic,
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
            let name = b.create_string(op.op.name());
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
            let c = c.as_ref();
            section.extend_from_slice(c);
            refs.push(fb::ConstantRef::new(at as u64, c.len() as u64));
        }
        let constants = b.create_vector(&refs);
        let debug = (!self.debug.is_empty()).then(|| {
            let entries: Vec<fb::DebugValue> = self
                .debug
                .iter()
                .map(|d| fb::DebugValue::new(d.value as u32, d.origin as u32, d.channels_last))
                .collect();
            b.create_vector(&entries)
        });
        let root = fb::Graph::create(
            &mut b,
            &fb::GraphArgs {
                values: Some(values),
                inputs: Some(inputs),
                outputs: Some(outputs),
                ops: Some(ops),
                constants: Some(constants),
                debug,
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
}
