//! [`Program`]: a verified program and the bytes it was read from.

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use crate::header::ExtendedHeader;
use crate::load::{decode, Layout};
use crate::model::*;
use crate::{ProgramError, Result};

/// The bytes a program was read from. Constants and delegate blobs are slices of these.
enum Bytes<'a> {
    Borrowed(&'a [u8]),
    /// 16-byte aligned owned copy (constants are read in place as f32/f64/i64).
    Owned(Arc<AlignedBytes>),
    Mapped(Arc<memmap2::Mmap>),
}

impl Bytes<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Borrowed(b) => b,
            Bytes::Owned(b) => b.as_slice(),
            Bytes::Mapped(m) => m,
        }
    }
}

impl Clone for Bytes<'_> {
    fn clone(&self) -> Self {
        match self {
            Bytes::Borrowed(b) => Bytes::Borrowed(b),
            Bytes::Owned(b) => Bytes::Owned(Arc::clone(b)),
            Bytes::Mapped(m) => Bytes::Mapped(Arc::clone(m)),
        }
    }
}

/// An owned byte buffer whose start is 16-byte aligned.
struct AlignedBytes {
    words: Vec<u128>,
    len: usize,
}

impl AlignedBytes {
    fn from_reader(mut r: impl std::io::Read, len: usize) -> std::io::Result<Self> {
        let mut words = vec![0u128; len.div_ceil(16)];
        let bytes: &mut [u8] = bytemuck_bytes_mut(&mut words);
        r.read_exact(&mut bytes[..len])?;
        Ok(AlignedBytes { words, len })
    }

    fn as_slice(&self) -> &[u8] {
        &bytemuck_bytes(&self.words)[..self.len]
    }
}

fn bytemuck_bytes(w: &[u128]) -> &[u8] {
    bytemuck::cast_slice(w)
}

fn bytemuck_bytes_mut(w: &mut [u128]) -> &mut [u8] {
    bytemuck::cast_slice_mut(w)
}

/// A verified ExecuTorch program.
///
/// Loading checks everything (see the crate docs); afterwards every index in [`Program::def`] is
/// in range and every tensor's bytes lie inside its buffer or arena. Constant data and delegate
/// blobs are borrowed from the loaded bytes, never copied. `Program<'static>` (from a file, an
/// owned buffer or a memory map) is `Send + Sync` and cheap to clone.
#[derive(Clone)]
pub struct Program<'a> {
    bytes: Bytes<'a>,
    header: Option<ExtendedHeader>,
    def: ProgramDef,
    layout: Layout,
}

impl fmt::Debug for Program<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Program")
            .field("bytes", &self.bytes.as_slice().len())
            .field("methods", &self.method_names().collect::<Vec<_>>())
            .field("segments", &self.def.segments.len())
            .finish()
    }
}

impl<'a> Program<'a> {
    /// Verifies `data` and borrows it.
    pub fn from_bytes(data: &'a [u8]) -> Result<Self> {
        Self::new(Bytes::Borrowed(data))
    }

    fn new(bytes: Bytes<'a>) -> Result<Self> {
        let _span = tracing::debug_span!("program.load", bytes = bytes.as_slice().len()).entered();
        let (header, def, layout) = decode(bytes.as_slice())?;
        tracing::debug!(methods = def.plans.len(), segments = def.segments.len(), "program verified");
        Ok(Program { bytes, header, def, layout })
    }

    /// The program's model: methods, values, instructions, operators, delegates.
    pub fn def(&self) -> &ProgramDef {
        &self.def
    }

    /// The extended header, when the file has one.
    pub fn header(&self) -> Option<&ExtendedHeader> {
        self.header.as_ref()
    }

    /// All bytes the program was read from.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    /// Names of the methods, in file order.
    pub fn method_names(&self) -> impl Iterator<Item = &str> {
        self.def.plans.iter().map(|p| p.name.as_str())
    }

    /// The method called `name`.
    pub fn plan(&self, name: &str) -> Option<&ExecutionPlan> {
        self.def.plans.iter().find(|p| p.name == name)
    }

    fn slice(&self, r: &Range<usize>) -> &[u8] {
        // Ranges were checked against the data when the program was loaded.
        self.bytes.as_slice().get(r.clone()).unwrap_or(&[])
    }

    /// Bytes of segment `index`.
    pub fn segment(&self, index: usize) -> Option<&[u8]> {
        self.layout.segments.get(index).map(|r| self.slice(r))
    }

    /// Number of constant buffers (including the reserved entry 0).
    pub fn constant_buffer_count(&self) -> usize {
        self.layout.constants.len()
    }

    /// Bytes from the start of constant buffer `index` to the end of its container. A tensor's
    /// data is the first [`Tensor::nbytes`] of these; see [`Program::tensor_data`].
    pub fn constant_buffer(&self, index: usize) -> Option<&[u8]> {
        self.layout.constants.get(index).map(|r| self.slice(r))
    }

    /// Total bytes of constant data (the constant segment, or the legacy inline buffers).
    pub fn constant_bytes(&self) -> u64 {
        match &self.def.constant_segment {
            Some(cs) if !cs.offsets.is_empty() => {
                self.def.segments.get(cs.segment_index as usize).map_or(0, |s| s.size)
            }
            _ => self.def.constant_buffer_sizes.iter().sum(),
        }
    }

    /// The serialized bytes of a tensor: its constant data, or the initial value of a planned
    /// mutable tensor. `None` for tensors without serialized data.
    pub fn tensor_data(&self, tensor: &Tensor) -> Option<&[u8]> {
        let n = tensor.nbytes();
        match tensor.storage() {
            TensorStorage::Constant { buffer } => self.constant_buffer(buffer)?.get(..n),
            TensorStorage::Planned { initial: Some(idx), .. } => {
                let which = tensor.extra.as_ref().map_or(0, |e| e.mutable_data_segments_idx) as usize;
                let r = self.layout.mutable.get(which)?.get(idx)?;
                self.slice(r).get(..n)
            }
            _ => None,
        }
    }

    /// The processed blob of a delegate.
    pub fn delegate_data(&self, delegate: &BackendDelegate) -> Option<&[u8]> {
        match delegate.processed {
            DataLocation::Inline(i) => self.layout.inline_delegates.get(i).map(|r| self.slice(r)),
            DataLocation::Segment(i) => self.segment(i),
        }
    }

    /// The bytes stored under `key` in the named data map.
    pub fn named_data(&self, key: &str) -> Option<&[u8]> {
        let n = self.def.named_data.iter().find(|n| n.key == key)?;
        self.segment(n.segment_index as usize)
    }

    /// Bytes of inline delegate blob `index` (`Program.backend_delegate_data`).
    pub fn inline_delegate_data(&self, index: usize) -> Option<&[u8]> {
        self.layout.inline_delegates.get(index).map(|r| self.slice(r))
    }

    /// Lets the operating system take back the memory of `bytes`, a slice of
    /// [`Program::bytes`] not needed again soon — a delegate blob whose backend has copied what
    /// it needs at init, as ExecuTorch frees a delegate's processed data after init. For a
    /// memory-mapped program the file pages wholly inside `bytes` leave the process's resident
    /// memory (their contents do not change: a later read brings the same bytes back from the
    /// page cache), and are marked for random access, so such a read maps only the pages it
    /// touches (an embedding's rows), not its neighbours too. Returns the bytes released: 0 for programs read into memory, on systems
    /// without `madvise`, and for slices that are not the program's.
    pub fn release(&self, bytes: &[u8]) -> usize {
        let Bytes::Mapped(map) = &self.bytes else { return 0 };
        let (base, start) = (map.as_ptr() as usize, bytes.as_ptr() as usize);
        let Some(offset) = start.checked_sub(base).filter(|&o| o.saturating_add(bytes.len()) <= map.len()) else {
            return 0;
        };
        // Whole pages only (4 KiB, the smallest page size Ferrite runs on), so neighbouring data
        // stays resident.
        const PAGE: usize = 4096;
        let first = (start.div_ceil(PAGE) * PAGE - base).min(offset + bytes.len());
        let end = ((start + bytes.len()) / PAGE * PAGE - base).max(first);
        if end == first {
            return 0;
        }
        match drop_pages(map, first, end - first) {
            Ok(()) => end - first,
            Err(e) => {
                tracing::debug!(error = %e, "madvise(DONTNEED) refused; the pages stay resident");
                0
            }
        }
    }
}

#[cfg(unix)]
#[allow(unsafe_code)]
fn drop_pages(map: &memmap2::Mmap, offset: usize, len: usize) -> std::io::Result<()> {
    // SAFETY: `Mmap::map` maps the file read-only and shared (PROT_READ, MAP_SHARED): no byte of
    // it was written through the map, so MADV_DONTNEED only drops the process's page-table
    // entries and the next read faults the same file contents back in (the file must not change
    // while mapped, `Program::mmap`'s contract). References into the range stay valid and see
    // the same bytes. `offset..offset + len` lies inside the map (checked by the caller).
    unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) }?;
    // MADV_RANDOM (safe advice) keeps later reads from mapping neighbouring pages too.
    map.advise_range(memmap2::Advice::Random, offset, len)
}

#[cfg(not(unix))]
fn drop_pages(_map: &memmap2::Mmap, _offset: usize, _len: usize) -> std::io::Result<()> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "no madvise"))
}

impl Program<'static> {
    /// Verifies and takes ownership of `data` (copied once into an aligned buffer).
    pub fn from_vec(data: Vec<u8>) -> Result<Self> {
        Self::copy_from(&data)
    }

    /// Copies `data` once into an aligned buffer it owns, and verifies it (for bytes whose
    /// owner outlives no program, such as a C caller's buffer).
    pub fn copy_from(data: &[u8]) -> Result<Self> {
        let owned = AlignedBytes::from_reader(data, data.len())
            .map_err(|e| ProgramError::Io { path: "<memory>".into(), source: e })?;
        Self::new(Bytes::Owned(Arc::new(owned)))
    }

    /// Reads a file into memory and verifies it.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io = |source| ProgramError::Io { path: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let len = usize::try_from(len).map_err(|_| io(std::io::Error::other("file too large")))?;
        let owned = AlignedBytes::from_reader(file, len).map_err(io)?;
        Self::new(Bytes::Owned(Arc::new(owned)))
    }

    /// Memory-maps a file and verifies it; constants stay in the page cache.
    ///
    /// The file must not be modified while the program is alive (as with any memory map).
    pub fn mmap(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io = |source| ProgramError::Io { path: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        let map = map_file(&file).map_err(io)?;
        Self::new(Bytes::Mapped(Arc::new(map)))
    }
}

#[allow(unsafe_code)]
fn map_file(file: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: `Mmap::map` is unsafe because another process could modify or truncate the file
    // while it is mapped. Ferrite documents that a mapped program's file must not change while
    // the program is alive (the same contract as ExecuTorch's MmapDataLoader); every byte read
    // through the map is bounds-checked against the length captured at map time.
    unsafe { memmap2::Mmap::map(file) }
}
