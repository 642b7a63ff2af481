//! [`Calibration`]: the samples a static scheme observes (and an evaluation set), read with the
//! same `.npy` reader as `ferrite run`.
//!
//! Three forms: one `.npy` whose leading axis indexes samples (PT2E's calibration inputs
//! stacked, as the fixtures' `calibration.npy`), a folder of `input_<i>.npy` files (one sample
//! each, for single-input methods) or of sample folders each holding `input_<j>.npy` (one per
//! method input), and samples built in memory. Folders are read one sample at a time, so memory
//! stays bounded by one sample however many there are.

use std::path::{Path, PathBuf};

use ferrite_runtime::{read_npy, read_npy_bytes, TensorData};

use crate::error::{QuantizeError, Result};

/// Calibration (or evaluation) samples: each sample is one value per method input.
#[derive(Debug, Clone)]
pub struct Calibration {
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    Memory(Vec<Vec<TensorData>>),
    Stacked(TensorData),
    Files(Vec<Vec<PathBuf>>),
}

impl Calibration {
    /// No samples (for dynamic and weight-only schemes).
    pub fn none() -> Self {
        Calibration { source: Source::Memory(Vec::new()) }
    }

    /// Samples held in memory.
    pub fn from_samples(samples: Vec<Vec<TensorData>>) -> Self {
        Calibration { source: Source::Memory(samples) }
    }

    /// One tensor whose leading axis indexes samples of a single-input method.
    pub fn from_stacked(tensor: TensorData) -> Self {
        Calibration { source: Source::Stacked(tensor) }
    }

    /// Reads `path`: a `.npy` file (leading axis = samples) or a folder (see the module docs).
    pub fn open(path: &Path) -> Result<Self> {
        let bad = |message: String| QuantizeError::CalibrationData { path: path.display().to_string(), message };
        if path.is_dir() {
            let mut files = numbered(path, "input_", ".npy").map_err(|e| bad(e.to_string()))?;
            if !files.is_empty() {
                return Ok(Calibration { source: Source::Files(files.drain(..).map(|f| vec![f]).collect()) });
            }
            // Sample folders, in name order.
            let mut dirs: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| bad(e.to_string()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            dirs.sort();
            let mut samples = Vec::new();
            for d in dirs {
                let f = numbered(&d, "input_", ".npy").map_err(|e| bad(e.to_string()))?;
                if !f.is_empty() {
                    samples.push(f);
                }
            }
            if samples.is_empty() {
                return Err(bad("the folder has no input_<i>.npy files and no sample folders holding them".into()));
            }
            return Ok(Calibration { source: Source::Files(samples) });
        }
        let t = read_npy(path).map_err(|e| bad(e.to_string()))?;
        Self::stacked(&path.display().to_string(), t)
    }

    /// A stacked `.npy` held in memory (as [`Calibration::open`] reads a file); `name` labels
    /// the errors.
    pub fn from_npy_bytes(name: &str, bytes: &[u8]) -> Result<Self> {
        let t = read_npy_bytes(name, bytes)
            .map_err(|e| QuantizeError::CalibrationData { path: name.to_string(), message: e.to_string() })?;
        Self::stacked(name, t)
    }

    /// Samples stacked along the leading axis of `t`, read from `name`.
    fn stacked(name: &str, t: TensorData) -> Result<Self> {
        if t.sizes().is_empty() {
            return Err(QuantizeError::CalibrationData {
                path: name.to_string(),
                message: "a 0-d array has no sample axis".into(),
            });
        }
        Ok(Calibration { source: Source::Stacked(t) })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        match &self.source {
            Source::Memory(s) => s.len(),
            Source::Stacked(t) => t.sizes().first().copied().unwrap_or(0),
            Source::Files(f) => f.len(),
        }
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sample `i`: one tensor per method input.
    pub fn sample(&self, i: usize) -> Result<Vec<TensorData>> {
        match &self.source {
            Source::Memory(s) => s.get(i).cloned().ok_or_else(|| QuantizeError::Option(format!("no sample {i}"))),
            Source::Stacked(t) => {
                // `from_stacked` may be given a 0-d tensor: it has no samples.
                let n = t.sizes().first().copied().unwrap_or(0);
                if i >= n {
                    return Err(QuantizeError::Option(format!("no sample {i}")));
                }
                let per = t.bytes().len() / n.max(1);
                let bytes = &t.bytes()[i * per..(i + 1) * per];
                Ok(vec![TensorData::from_bytes(t.dtype(), t.sizes().get(1..).unwrap_or_default().to_vec(), bytes)?])
            }
            Source::Files(f) => {
                let files = f.get(i).ok_or_else(|| QuantizeError::Option(format!("no sample {i}")))?;
                files
                    .iter()
                    .map(|p| {
                        read_npy(p).map_err(|e| QuantizeError::CalibrationData {
                            path: p.display().to_string(),
                            message: e.to_string(),
                        })
                    })
                    .collect()
            }
        }
    }

    /// Reads labels (one integer class per output row, in sample order) from a `.npy` file.
    pub fn labels(path: &Path) -> Result<Vec<i64>> {
        let t = read_npy(path)
            .map_err(|e| QuantizeError::CalibrationData { path: path.display().to_string(), message: e.to_string() })?;
        let v = t.to_f64_vec()?;
        if v.iter().any(|x| x.fract() != 0.0) {
            return Err(QuantizeError::CalibrationData {
                path: path.display().to_string(),
                message: "labels must be integer class indices".into(),
            });
        }
        Ok(v.into_iter().map(|x| x as i64).collect())
    }
}

/// `dir/<prefix><i><suffix>` for i = 0, 1, ... while they exist.
fn numbered(dir: &Path, prefix: &str, suffix: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    loop {
        let p = dir.join(format!("{prefix}{}{suffix}", out.len()));
        if !p.is_file() {
            break;
        }
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stack_without_a_sample_axis_has_no_samples() {
        let scalar = TensorData::from_slice(vec![], &[1f32]).unwrap();
        let c = Calibration::from_stacked(scalar);
        assert_eq!(c.len(), 0);
        assert!(c.sample(0).is_err());
        let stack = TensorData::from_slice(vec![2, 3], &[0f32; 6]).unwrap();
        let c = Calibration::from_stacked(stack);
        assert_eq!(c.sample(1).unwrap()[0].sizes(), &[3]);
        assert!(c.sample(2).is_err());
    }

    /// Bytes in memory read as the same file does, with the same errors.
    #[test]
    fn npy_bytes_calibrate_as_the_file_does() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/mlp/calibration.npy");
        let from_file = Calibration::open(&path).unwrap();
        let from_bytes = Calibration::from_npy_bytes("calibration.npy", &std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(from_bytes.len(), from_file.len());
        assert!(from_file.len() > 1);
        let last = from_file.len() - 1;
        assert_eq!(from_bytes.sample(last).unwrap()[0].bytes(), from_file.sample(last).unwrap()[0].bytes());
        // A 0-d array has no sample axis.
        let scalar = std::env::temp_dir().join(format!("ferrite-calibration-0d-{}.npy", std::process::id()));
        ferrite_runtime::write_npy(&scalar, &TensorData::from_slice(vec![], &[1f32]).unwrap()).unwrap();
        let bytes = std::fs::read(&scalar).unwrap();
        std::fs::remove_file(&scalar).ok();
        let err = Calibration::from_npy_bytes("scalar.npy", &bytes).unwrap_err();
        assert!(err.to_string().contains("no sample axis") && err.to_string().contains("scalar.npy"), "{err}");
    }
}
