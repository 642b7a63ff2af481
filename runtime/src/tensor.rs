//! Tensors the user passes in and gets out ([`TensorData`]), and the borrowed views kernels
//! see ([`TensorRef`], [`TensorMut`]).

use ferrite_kernels::{DType, Element};
use ferrite_program::ScalarType;

use crate::error::{Result, RuntimeError};

/// A 16-byte aligned byte buffer (so any element type can be viewed in place).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AlignedBuf {
    words: Vec<u128>,
    len: usize,
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len)
    }
}

impl AlignedBuf {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> Self {
        AlignedBuf { words: vec![0u128; len.div_ceil(16)], len }
    }

    /// `len` zero bytes, or `None` when the allocator cannot give them (instead of aborting).
    pub fn try_zeroed(len: usize) -> Option<Self> {
        // Zeroed by the allocator (`alloc_zeroed`): large buffers come as fresh zero pages,
        // touched only when used, instead of being written with zeros here.
        let words = bytemuck::allocation::try_zeroed_vec::<u128>(len.div_ceil(16)).ok()?;
        Some(AlignedBuf { words, len })
    }

    /// A copy of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut b = Self::zeroed(bytes.len());
        b.as_mut_slice().copy_from_slice(bytes);
        b
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &bytemuck::cast_slice::<u128, u8>(&self.words)[..self.len]
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut::<u128, u8>(&mut self.words)[..self.len]
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The kernels' element type for tensors of `t`; `None` for types kernels do not compute on
/// (quantized, complex, bits and 8-bit float types).
pub fn element_type(t: ScalarType) -> Option<DType> {
    Some(match t {
        ScalarType::Bool => DType::Bool,
        ScalarType::Byte => DType::U8,
        ScalarType::Char => DType::I8,
        ScalarType::Short => DType::I16,
        ScalarType::UInt16 => DType::U16,
        ScalarType::Int => DType::I32,
        ScalarType::UInt32 => DType::U32,
        ScalarType::Long => DType::I64,
        ScalarType::UInt64 => DType::U64,
        ScalarType::Half => DType::F16,
        ScalarType::BFloat16 => DType::BF16,
        ScalarType::Float => DType::F32,
        ScalarType::Double => DType::F64,
        _ => return None,
    })
}

/// The scalar type of tensors whose elements are `d` (`u8` is `Byte`).
pub fn scalar_type(d: DType) -> ScalarType {
    match d {
        DType::Bool => ScalarType::Bool,
        DType::U8 => ScalarType::Byte,
        DType::I8 => ScalarType::Char,
        DType::I16 => ScalarType::Short,
        DType::U16 => ScalarType::UInt16,
        DType::I32 => ScalarType::Int,
        DType::U32 => ScalarType::UInt32,
        DType::I64 => ScalarType::Long,
        DType::U64 => ScalarType::UInt64,
        DType::F16 => ScalarType::Half,
        DType::BF16 => ScalarType::BFloat16,
        DType::F32 => ScalarType::Float,
        DType::F64 => ScalarType::Double,
    }
}

/// Whether tensors of `t` can be viewed as `T` (bool tensors as `u8` too).
pub(crate) fn viewable_as<T: Element>(t: ScalarType) -> bool {
    element_type(t) == Some(T::DTYPE) || (t == ScalarType::Bool && T::DTYPE == DType::U8)
}

fn view<T: bytemuck::Pod>(dtype: ScalarType, bytes: &[u8]) -> Result<&[T]> {
    bytemuck::try_cast_slice(bytes).map_err(|e| {
        RuntimeError::Invalid(format!(
            "cannot view {} bytes of {dtype} as {}: {e}",
            bytes.len(),
            std::any::type_name::<T>()
        ))
    })
}

fn view_mut<T: bytemuck::Pod>(dtype: ScalarType, bytes: &mut [u8]) -> Result<&mut [T]> {
    let n = bytes.len();
    bytemuck::try_cast_slice_mut(bytes).map_err(|e| {
        RuntimeError::Invalid(format!("cannot view {n} bytes of {dtype} as {}: {e}", std::any::type_name::<T>()))
    })
}

/// Element count of `sizes` (overflow-checked).
pub fn numel(sizes: &[usize]) -> Result<usize> {
    sizes
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| RuntimeError::Invalid(format!("shape {sizes:?} overflows")))
}

/// The machine's physical memory in bytes (Linux: `MemTotal` of `/proc/meminfo`), or `u64::MAX`
/// where it cannot be read: the default memory limit.
pub fn physical_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            kb.checked_mul(1024)
        })
        .unwrap_or(u64::MAX)
}

/// Byte size of a tensor of `dtype` and `sizes` (overflow-checked).
pub fn nbytes(dtype: ScalarType, sizes: &[usize]) -> Result<usize> {
    numel(sizes)?
        .checked_mul(dtype.element_size())
        .ok_or_else(|| RuntimeError::Invalid(format!("shape {sizes:?} overflows")))
}

/// An owned tensor: what you pass to and get from a method.
#[derive(Clone, PartialEq)]
pub struct TensorData {
    dtype: ScalarType,
    sizes: Vec<usize>,
    data: AlignedBuf,
}

impl std::fmt::Debug for TensorData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TensorData({} {:?})", self.dtype, self.sizes)
    }
}

impl TensorData {
    /// A tensor from raw little-endian bytes.
    pub fn from_bytes(dtype: ScalarType, sizes: Vec<usize>, bytes: &[u8]) -> Result<Self> {
        let n = nbytes(dtype, &sizes)?;
        if bytes.len() != n {
            return Err(RuntimeError::Invalid(format!("{dtype} {sizes:?} needs {n} bytes, got {}", bytes.len())));
        }
        Ok(TensorData { dtype, sizes, data: AlignedBuf::from_bytes(bytes) })
    }

    /// A tensor from typed values.
    pub fn from_slice<T: Element>(sizes: Vec<usize>, values: &[T]) -> Result<Self> {
        Self::from_bytes(scalar_type(T::DTYPE), sizes, bytemuck::cast_slice(values))
    }

    /// A bool tensor.
    pub fn from_bools(sizes: Vec<usize>, values: &[bool]) -> Result<Self> {
        let bytes: Vec<u8> = values.iter().map(|&b| u8::from(b)).collect();
        Self::from_bytes(ScalarType::Bool, sizes, &bytes)
    }

    /// A zero-filled tensor.
    pub fn zeros(dtype: ScalarType, sizes: Vec<usize>) -> Result<Self> {
        let n = nbytes(dtype, &sizes)?;
        Ok(TensorData { dtype, sizes, data: AlignedBuf::zeroed(n) })
    }

    /// Element type.
    pub fn dtype(&self) -> ScalarType {
        self.dtype
    }

    /// Sizes.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.sizes.iter().product()
    }

    /// Raw bytes.
    pub fn bytes(&self) -> &[u8] {
        self.data.as_slice()
    }

    /// Raw bytes, mutably.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.data.as_mut_slice()
    }

    /// The elements as `T` (which must match the dtype).
    pub fn as_slice<T: Element>(&self) -> Result<&[T]> {
        if element_type(self.dtype) != Some(T::DTYPE) {
            return Err(RuntimeError::Invalid(format!("tensor is {}, not {}", self.dtype, T::DTYPE)));
        }
        view(self.dtype, self.bytes())
    }

    /// The elements converted to f64 (bool as 0/1), whatever the dtype.
    pub fn to_f64_vec(&self) -> Result<Vec<f64>> {
        TensorRef { dtype: self.dtype, sizes: &self.sizes, dim_order: &[], data: self.bytes() }.to_f64_vec()
    }

    /// A one-line description: dtype, shape and the first values (`f32 [1, 10] [0.1, -2, ...]`).
    pub fn summary(&self) -> String {
        let first: Vec<String> = self
            .to_f64_vec()
            .map(|v| {
                v.iter()
                    .take(6)
                    .map(|x| format!("{x:.6}").trim_end_matches('0').trim_end_matches('.').to_string())
                    .collect()
            })
            .unwrap_or_default();
        let more = if self.numel() > 6 { ", ..." } else { "" };
        format!("{} {:?} [{}{more}]", self.dtype, self.sizes, first.join(", "))
    }
}

/// A read-only tensor view handed to kernels. Always contiguous (row-major).
#[derive(Debug, Clone, Copy)]
pub struct TensorRef<'a> {
    /// Element type.
    pub dtype: ScalarType,
    /// Current sizes.
    pub sizes: &'a [usize],
    /// Dim order of the underlying value (informational; data is contiguous).
    pub dim_order: &'a [u8],
    /// Exactly `nbytes(dtype, sizes)` bytes.
    pub data: &'a [u8],
}

impl<'a> TensorRef<'a> {
    /// Typed elements; `T` must match the dtype (bool is viewed as `u8`).
    pub fn typed<T: Element>(&self) -> Result<&'a [T]> {
        if !viewable_as::<T>(self.dtype) {
            return Err(RuntimeError::Invalid(format!("expected a {} tensor, got {}", T::DTYPE, self.dtype)));
        }
        view(self.dtype, self.data)
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.sizes.iter().product()
    }

    /// Elements converted to f64, whatever the dtype.
    pub fn to_f64_vec(&self) -> Result<Vec<f64>> {
        // Quantized storage types read as their integers.
        let element = match self.dtype {
            ScalarType::QInt8 => Some(DType::I8),
            ScalarType::QUInt8 => Some(DType::U8),
            other => element_type(other),
        };
        let unreadable = || RuntimeError::Unsupported(format!("reading {} tensors", self.dtype));
        let element = element.ok_or_else(unreadable)?;
        ferrite_kernels::dispatch!(all element, T => Ok(view::<T>(self.dtype, self.data)?.iter().map(|v| v.to_f64()).collect()), else _other => Err(unreadable()))
    }
}

/// A writable tensor view handed to kernels. Always contiguous (row-major).
#[derive(Debug)]
pub struct TensorMut<'a> {
    /// Element type.
    pub dtype: ScalarType,
    /// Current sizes (already resized by the operator before the kernel runs).
    pub sizes: &'a [usize],
    /// Dim order of the underlying value.
    pub dim_order: &'a [u8],
    /// Exactly `nbytes(dtype, sizes)` bytes.
    pub data: &'a mut [u8],
}

impl TensorMut<'_> {
    /// Typed elements; `T` must match the dtype (bool is viewed as `u8`).
    pub fn typed<T: Element>(&mut self) -> Result<&mut [T]> {
        if !viewable_as::<T>(self.dtype) {
            return Err(RuntimeError::Invalid(format!("expected a {} output, got {}", T::DTYPE, self.dtype)));
        }
        view_mut(self.dtype, self.data)
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.sizes.iter().product()
    }

    /// Read-only view of the same data.
    pub fn as_ref(&self) -> TensorRef<'_> {
        TensorRef { dtype: self.dtype, sizes: self.sizes, dim_order: self.dim_order, data: self.data }
    }
}
