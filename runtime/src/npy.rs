//! Reading and writing `.npy` files as tensors (feature `npy`). Files are untrusted: the
//! header's dtype, order and shape are checked against the file before any allocation.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use ferrite_program::ScalarType;
use npyz::{DType, NpyFile, TypeChar, WriterBuilder};

use crate::error::{Result, RuntimeError};
use crate::TensorData;

fn bad(name: &str, reason: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Npy { path: name.to_string(), reason: reason.to_string() }
}

/// The longest header accepted, as numpy's own reader (`max_header_size`, numpy ≥ 1.24).
const MAX_HEADER: u64 = 10_000;
/// The deepest bracket nesting accepted in the header's dict: `{`, a shape's `(`, and a
/// structured dtype's `[(…(…)…)]`; real headers never go deeper.
const MAX_DEPTH: usize = 4;

/// Checks the header before npyz parses it. npyz allocates the declared length before reading
/// it (up to 4 GiB in format versions 2 and 3), and its parser backtracks exponentially on
/// nested brackets (a fuzzed 150-byte header with 17 `{` ran for minutes): refuse a header
/// longer than the file or than numpy's limit, or nested deeper than a real one. Leaves `file`
/// at its start.
fn check_header<R: Read + Seek>(name: &str, file: &mut R, file_len: u64) -> Result<()> {
    let mut head = Vec::with_capacity(12);
    file.by_ref().take(12).read_to_end(&mut head).map_err(|e| bad(name, e))?;
    file.seek(SeekFrom::Start(0)).map_err(|e| bad(name, e))?;
    if head.len() < 10 || !head.starts_with(b"\x93NUMPY") {
        return Ok(()); // npyz reports what is wrong
    }
    let (declared, prefix) = match (head[6], head.get(8..12)) {
        (1, _) => (u64::from(u16::from_le_bytes([head[8], head[9]])) + 10, 10),
        (2 | 3, Some(&[a, b, c, d])) => (u64::from(u32::from_le_bytes([a, b, c, d])) + 12, 12),
        _ => return Ok(()),
    };
    if declared > file_len {
        return Err(bad(name, format!("the header claims {declared} bytes, the file has {file_len}")));
    }
    if declared > MAX_HEADER {
        return Err(bad(name, format!("the header claims {declared} bytes, more than numpy's limit of {MAX_HEADER}")));
    }
    let mut text = Vec::new();
    file.by_ref().take(declared).read_to_end(&mut text).map_err(|e| bad(name, e))?;
    file.seek(SeekFrom::Start(0)).map_err(|e| bad(name, e))?;
    let mut depth = 0usize;
    // The dict's text only: the length bytes before it may happen to be `{`, `(` or `[`.
    for &c in text.get(prefix..).unwrap_or_default() {
        match c {
            b'{' | b'(' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(bad(name, format!("the header's brackets nest deeper than {MAX_DEPTH}")));
                }
            }
            b'}' | b')' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    check_shape(name, text.get(prefix..).unwrap_or_default())
}

/// npyz multiplies the header's dimensions (element count, strides) without checking: a shape
/// such as `(3, 8868681381313932163)` panicked in a debug build (found by the `npy_read` fuzz
/// target) and wraps in a release one. Parses the dict as npyz does (one trailing newline
/// dropped, UTF-8, a Python literal) and refuses a shape whose non-zero dimensions multiply past
/// `u64`; anything else npyz reports itself.
fn check_shape(name: &str, dict: &[u8]) -> Result<()> {
    use py_literal::Value;
    let dict = dict.strip_suffix(b"\n").unwrap_or(dict);
    let Some(Value::Dict(entries)) = std::str::from_utf8(dict).ok().and_then(|t| t.parse::<Value>().ok()) else {
        return Ok(());
    };
    for (key, value) in &entries {
        let (Some("shape"), Value::Tuple(dims) | Value::List(dims)) = (key.as_string().map(String::as_str), value)
        else {
            continue;
        };
        let mut count = 1u64;
        for dim in dims {
            let Value::Integer(d) = dim else { continue };
            let Ok(d) = u64::try_from(d) else { continue };
            count = count
                .checked_mul(d.max(1))
                .ok_or_else(|| bad(name, "the header's shape has more elements than fit in 64 bits"))?;
        }
    }
    Ok(())
}

/// Reads a C-order `.npy` file holding f32, f64, f16, i64, i32, i16, i8, u8 or bool values.
pub fn read_npy(path: &Path) -> Result<TensorData> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| bad(&name, e))?;
    let file_len = file.metadata().map_err(|e| bad(&name, e))?.len();
    read_npy_from(&name, std::io::BufReader::new(file), file_len)
}

/// [`read_npy`] for a `.npy` file held in memory (downloaded, embedded, or from an archive);
/// `name` labels the errors.
pub fn read_npy_bytes(name: &str, bytes: &[u8]) -> Result<TensorData> {
    read_npy_from(name, std::io::Cursor::new(bytes), bytes.len() as u64)
}

/// The reader behind [`read_npy`] and [`read_npy_bytes`]: `file` holds `file_len` bytes.
fn read_npy_from<R: Read + Seek>(name: &str, mut file: R, file_len: u64) -> Result<TensorData> {
    check_header(name, &mut file, file_len)?;
    let npy = NpyFile::new(file).map_err(|e| bad(name, format!("not a valid .npy file: {e}")))?;
    if npy.order() == npyz::Order::Fortran {
        return Err(bad(name, "Fortran-order arrays are not supported; save with np.ascontiguousarray"));
    }
    let shape: Vec<usize> = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad(name, format!("dimension {d} is too large"))))
        .collect::<Result<_, _>>()?;
    let DType::Plain(ts) = npy.dtype() else {
        return Err(bad(name, "structured or array dtypes are not supported"));
    };
    let dtype = match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 4) => ScalarType::Float,
        (TypeChar::Float, 8) => ScalarType::Double,
        (TypeChar::Float, 2) => ScalarType::Half,
        (TypeChar::Int, 8) => ScalarType::Long,
        (TypeChar::Int, 4) => ScalarType::Int,
        (TypeChar::Int, 2) => ScalarType::Short,
        (TypeChar::Int, 1) => ScalarType::Char,
        (TypeChar::Uint, 1) => ScalarType::Byte,
        (TypeChar::Bool, 1) => ScalarType::Bool,
        (c, s) => return Err(bad(name, format!("dtype {c:?}{s} is not supported"))),
    };
    let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad(name, "shape overflows"))?;
    let need = numel.checked_mul(dtype.element_size()).ok_or_else(|| bad(name, "shape overflows"))?;
    if need as u64 > file_len {
        return Err(bad(name, format!("the header promises {need} bytes of data but the file has {file_len}")));
    }
    let io = |e: std::io::Error| bad(name, format!("truncated or corrupt data: {e}"));
    let t = match dtype {
        ScalarType::Float => TensorData::from_slice(shape, &npy.into_vec::<f32>().map_err(io)?),
        ScalarType::Double => TensorData::from_slice(shape, &npy.into_vec::<f64>().map_err(io)?),
        ScalarType::Half => TensorData::from_slice(shape, &npy.into_vec::<half::f16>().map_err(io)?),
        ScalarType::Long => TensorData::from_slice(shape, &npy.into_vec::<i64>().map_err(io)?),
        ScalarType::Int => TensorData::from_slice(shape, &npy.into_vec::<i32>().map_err(io)?),
        ScalarType::Short => TensorData::from_slice(shape, &npy.into_vec::<i16>().map_err(io)?),
        ScalarType::Char => TensorData::from_slice(shape, &npy.into_vec::<i8>().map_err(io)?),
        ScalarType::Byte => TensorData::from_slice(shape, &npy.into_vec::<u8>().map_err(io)?),
        _ => TensorData::from_bools(shape, &npy.into_vec::<bool>().map_err(io)?),
    };
    t.map_err(|e| bad(name, e))
}

fn write_typed<T: npyz::Serialize + npyz::AutoSerialize + Copy>(
    path: &Path,
    shape: &[u64],
    values: &[T],
) -> Result<()> {
    let io = |e: std::io::Error| RuntimeError::Write { path: path.display().to_string(), source: e };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(io)?;
    w.extend(values.iter().copied()).map_err(io)?;
    w.finish().map_err(io)
}

/// Writes `t` as a `.npy` file (bf16 is written as f32: NumPy has no bfloat16).
pub fn write_npy(path: &Path, t: &TensorData) -> Result<()> {
    let shape: Vec<u64> = t.sizes().iter().map(|&d| d as u64).collect();
    match t.dtype() {
        ScalarType::Float => write_typed(path, &shape, t.as_slice::<f32>()?),
        ScalarType::Double => write_typed(path, &shape, t.as_slice::<f64>()?),
        ScalarType::Half => write_typed(path, &shape, t.as_slice::<half::f16>()?),
        ScalarType::Long => write_typed(path, &shape, t.as_slice::<i64>()?),
        ScalarType::Int => write_typed(path, &shape, t.as_slice::<i32>()?),
        ScalarType::Short => write_typed(path, &shape, t.as_slice::<i16>()?),
        ScalarType::Char => write_typed(path, &shape, t.as_slice::<i8>()?),
        ScalarType::Byte => write_typed(path, &shape, t.as_slice::<u8>()?),
        ScalarType::Bool => {
            let v: Vec<bool> = t.bytes().iter().map(|&b| b != 0).collect();
            write_typed(path, &shape, &v)
        }
        _ => {
            let v: Vec<f32> = t.to_f64_vec()?.into_iter().map(|x| x as f32).collect();
            write_typed(path, &shape, &v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `npy_read` fuzz target: a version-3 header declaring 3.6 GB made npyz
    /// allocate that much before reading it.
    #[test]
    fn a_header_longer_than_the_file_is_refused_before_allocating() {
        let mut bytes = b"\x93NUMPY\x03\x00\x8a\xff\x84\xd8".to_vec();
        bytes.extend_from_slice(b"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 16), }\n");
        let path = std::env::temp_dir().join(format!("ferrite-npy-header-{}.npy", std::process::id()));
        std::fs::write(&path, &bytes).expect("write");
        let err = read_npy(&path).expect_err("refused");
        std::fs::remove_file(&path).ok();
        assert!(err.to_string().contains("the header claims"), "{err}");
        assert_eq!(err.code(), "C003");
    }

    /// Found by the `npy_read` fuzz target: nested `{` in the header made npyz's parser run
    /// for minutes (exponential backtracking). Also: a header over numpy's 10,000-byte limit.
    #[test]
    fn deeply_nested_or_oversized_headers_are_refused_before_parsing() {
        let write = |name: &str, header: &str| {
            let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
            bytes.extend_from_slice(&u16::try_from(header.len()).expect("short").to_le_bytes());
            bytes.extend_from_slice(header.as_bytes());
            bytes.extend_from_slice(&[0; 96]);
            let path = std::env::temp_dir().join(format!("ferrite-npy-{name}-{}.npy", std::process::id()));
            std::fs::write(&path, &bytes).expect("write");
            path
        };
        let nested = format!("{{'descr': '<f4', 'fortran_order':{} False, 'shape': (2, 3), }}\n", "{".repeat(40));
        let long = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }}{}\n", " ".repeat(10_100));
        for (name, header, says) in [("nested", nested, "nest deeper"), ("long", long, "numpy's limit")] {
            let path = write(name, &header);
            let err = read_npy(&path).expect_err("refused");
            std::fs::remove_file(&path).ok();
            assert!(err.to_string().contains(says), "{err}");
            assert_eq!(err.code(), "C003");
        }
        // A real header (dict, shape tuple) still reads.
        let path = write("plain", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n");
        let t = read_npy(&path);
        std::fs::remove_file(&path).ok();
        assert_eq!(t.expect("reads").sizes(), &[2, 3]);
    }

    /// The in-memory reader gives what the file reader gives, and the same coded errors.
    #[test]
    fn bytes_read_as_the_file_does() {
        let t = TensorData::from_slice(vec![2, 3], &[1.5f32, -2.0, 0.0, 3.25, f32::NAN, 7.0]).expect("tensor");
        let path = std::env::temp_dir().join(format!("ferrite-npy-bytes-{}.npy", std::process::id()));
        write_npy(&path, &t).expect("write");
        let bytes = std::fs::read(&path).expect("read back");
        let from_file = read_npy(&path);
        std::fs::remove_file(&path).ok();
        let (from_file, from_bytes) = (from_file.expect("file"), read_npy_bytes("mem.npy", &bytes).expect("bytes"));
        assert_eq!(from_bytes.sizes(), &[2, 3]);
        assert_eq!(from_file.bytes(), from_bytes.bytes());
        let err = read_npy_bytes("mem.npy", &bytes[..bytes.len() - 4]).expect_err("truncated");
        assert_eq!(err.code(), "C003");
        assert!(err.to_string().contains("mem.npy"), "{err}");
    }

    /// Found by the `npy_read` fuzz target: dimensions whose product overflows `u64` panicked
    /// inside npyz (`fuzz/regressions/npy_read/shape-product-overflow.npy`); with a zero
    /// dimension the element count is 0 but npyz's strides still overflow.
    #[test]
    fn a_shape_whose_product_overflows_is_refused() {
        for shape in
            ["(3, 000000000000008868681381313932163)", "(0, 4294967296, 4294967296)", "[8589934592, 2147483648]"]
        {
            let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}\n");
            let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
            bytes.extend_from_slice(&u16::try_from(header.len()).expect("short").to_le_bytes());
            bytes.extend_from_slice(header.as_bytes());
            let err = read_npy_bytes("overflow.npy", &bytes).expect_err("refused");
            assert!(err.to_string().contains("64 bits"), "{shape}: {err}");
            assert_eq!(err.code(), "C003");
        }
        let crash = include_bytes!("../../fuzz/regressions/npy_read/shape-product-overflow.npy");
        assert!(read_npy_bytes("crash.npy", crash).is_err());
    }
}
