//! Rewriting the program around its delegate calls: dropping the values and constants no
//! instruction uses any more, and the segments nothing refers to.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use ferrite_program::{
    DataLocation, Program, ProgramDef, ProgramError, SubsegmentOffsets, TensorStorage, Value, TENSOR_ALIGNMENT,
};

use crate::error::{LowerError, Result};

/// Rebuilds the constant segment with only the constants some method still uses, and drops
/// segments nothing refers to any more.
pub(crate) fn compact_constants<'a>(
    program: &'a Program<'_>,
    def: &mut ProgramDef,
    mut segments: Vec<Cow<'a, [u8]>>,
) -> Result<Vec<Cow<'a, [u8]>>> {
    // Old buffer index -> new index, in first-use order.
    let mut remap: BTreeMap<usize, usize> = BTreeMap::new();
    let mut data = Vec::new();
    let mut offsets = vec![0u64];
    for plan in &mut def.plans {
        for val in &mut plan.values {
            let Value::Tensor(t) = val else { continue };
            let TensorStorage::Constant { buffer } = t.storage() else { continue };
            let new = match remap.get(&buffer) {
                Some(&n) => n,
                None => {
                    let bytes = program.constant_buffer(buffer).and_then(|b| b.get(..t.nbytes())).ok_or_else(|| {
                        LowerError::Program(ProgramError::Inconsistent(format!(
                            "constant buffer {buffer} is missing from the program"
                        )))
                    })?;
                    let at = data.len().div_ceil(TENSOR_ALIGNMENT) * TENSOR_ALIGNMENT;
                    data.resize(at, 0);
                    data.extend_from_slice(bytes);
                    offsets.push(at as u64);
                    let n = offsets.len() - 1;
                    remap.insert(buffer, n);
                    n
                }
            };
            t.data_buffer_idx = new as u32;
        }
    }
    segments.push(Cow::Owned(data));
    def.segments.push(ferrite_program::DataSegment { offset: 0, size: 0 });
    def.constant_segment = Some(SubsegmentOffsets { segment_index: (def.segments.len() - 1) as u32, offsets });
    def.constant_buffer_sizes.clear();

    // Keep only referenced segments.
    let mut used = BTreeSet::new();
    if let Some(cs) = &def.constant_segment {
        used.insert(cs.segment_index as usize);
    }
    for m in &def.mutable_data_segments {
        used.insert(m.segment_index as usize);
    }
    for nd in &def.named_data {
        used.insert(nd.segment_index as usize);
    }
    for plan in &def.plans {
        for d in &plan.delegates {
            if let DataLocation::Segment(s) = d.processed {
                used.insert(s);
            }
        }
    }
    let mut seg_remap = vec![usize::MAX; segments.len()];
    let mut kept_segments = Vec::new();
    let mut kept_defs = Vec::new();
    for (i, seg) in segments.into_iter().enumerate() {
        if used.contains(&i) {
            seg_remap[i] = kept_segments.len();
            kept_segments.push(seg);
            kept_defs.push(def.segments[i]);
        }
    }
    def.segments = kept_defs;
    if let Some(cs) = &mut def.constant_segment {
        cs.segment_index = seg_remap[cs.segment_index as usize] as u32;
    }
    for m in &mut def.mutable_data_segments {
        m.segment_index = seg_remap[m.segment_index as usize] as u32;
    }
    for nd in &mut def.named_data {
        nd.segment_index = seg_remap[nd.segment_index as usize] as u32;
    }
    for plan in &mut def.plans {
        for d in &mut plan.delegates {
            if let DataLocation::Segment(s) = &mut d.processed {
                *s = seg_remap[*s];
            }
        }
    }
    Ok(kept_segments)
}
