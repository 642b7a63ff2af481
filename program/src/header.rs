//! The extended header (`eh00`) that follows the FlatBuffer's first 8 bytes when a program has
//! segments.

use crate::{ProgramError, Result};

/// Magic bytes of the extended header.
pub const EXTENDED_HEADER_MAGIC: &[u8; 4] = b"eh00";
/// Length of the header ExecuTorch writes today (with `segment_data_size`).
pub const EXTENDED_HEADER_LEN: usize = 32;
/// Minimum length of a valid header (without `segment_data_size`).
pub const EXTENDED_HEADER_MIN_LEN: usize = 24;

/// The decoded extended header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtendedHeader {
    /// Header length as written.
    pub length: u32,
    /// Size of the FlatBuffer data including both headers.
    pub program_size: u64,
    /// File offset of the first segment.
    pub segment_base_offset: u64,
    /// Bytes of segment data (0 when the header is too short to say).
    pub segment_data_size: u64,
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)?.try_into().ok().map(u32::from_le_bytes)
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)?.try_into().ok().map(u64::from_le_bytes)
}

impl ExtendedHeader {
    /// Reads the header of `data` (a whole file), if it has one, and checks it against the
    /// file length.
    pub fn read(data: &[u8]) -> Result<Option<Self>> {
        if data.get(8..12) != Some(EXTENDED_HEADER_MAGIC.as_slice()) {
            return Ok(None);
        }
        let bad = |reason: String| ProgramError::BadHeader { reason };
        let length = le_u32(data, 12).ok_or_else(|| bad("the file ends inside the header".into()))?;
        if (length as usize) < EXTENDED_HEADER_MIN_LEN {
            return Err(bad(format!("header length {length} is below the minimum {EXTENDED_HEADER_MIN_LEN}")));
        }
        let end = 8usize.saturating_add(length as usize);
        if data.len() < end {
            return Err(bad(format!("the file ({} bytes) ends inside the {length}-byte header", data.len())));
        }
        let program_size = le_u64(data, 16).ok_or_else(|| bad("truncated".into()))?;
        let segment_base_offset = le_u64(data, 24).ok_or_else(|| bad("truncated".into()))?;
        let segment_data_size = if length as usize >= EXTENDED_HEADER_LEN {
            le_u64(data, 32).ok_or_else(|| bad("truncated".into()))?
        } else {
            0
        };
        let len = data.len() as u64;
        if program_size > len || program_size < end as u64 {
            return Err(bad(format!(
                "program_size {program_size} is outside the file ({len} bytes) or inside the header"
            )));
        }
        if segment_base_offset != 0 && (segment_base_offset < program_size || segment_base_offset > len) {
            return Err(bad(format!(
                "segment_base_offset {segment_base_offset} must lie between program_size {program_size} and the file end {len}"
            )));
        }
        if segment_base_offset.checked_add(segment_data_size).is_none_or(|e| e > len) {
            return Err(bad(format!(
                "segment data ({segment_data_size} bytes at {segment_base_offset}) runs past the file end {len}"
            )));
        }
        Ok(Some(ExtendedHeader { length, program_size, segment_base_offset, segment_data_size }))
    }

    /// The 32 bytes ExecuTorch writes.
    pub fn to_bytes(&self) -> [u8; EXTENDED_HEADER_LEN] {
        let mut out = [0u8; EXTENDED_HEADER_LEN];
        out[0..4].copy_from_slice(EXTENDED_HEADER_MAGIC);
        out[4..8].copy_from_slice(&(EXTENDED_HEADER_LEN as u32).to_le_bytes());
        out[8..16].copy_from_slice(&self.program_size.to_le_bytes());
        out[16..24].copy_from_slice(&self.segment_base_offset.to_le_bytes());
        out[24..32].copy_from_slice(&self.segment_data_size.to_le_bytes());
        out
    }
}
