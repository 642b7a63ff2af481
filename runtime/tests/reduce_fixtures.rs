//! End-to-end checks of the reduction / normalisation / linear-algebra / indexing operators on
//! the real fixture programs, independent of the elementwise family: the few elementwise
//! operators these programs also use are supplied here by simple f64 reference kernels, so a
//! mismatch against ExecuTorch's outputs points at this family's kernels.

use ferrite_op_support::Op;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferrite_program::{Program, ScalarType};
use ferrite_runtime::{Env, KernelRegistry, Result, Runtime, RuntimeError, Scalar, TensorData};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// Minimal `.npy` reader (little-endian f32 / f64 / i64 / i32 / bool, C order).
fn npy(path: &Path) -> TensorData {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let (hlen, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
    };
    let header = std::str::from_utf8(&bytes[start..start + hlen]).expect("header");
    let descr = header.split("'descr':").nth(1).expect("descr").split('\'').nth(1).expect("descr value");
    let shape_s =
        header.split("'shape':").nth(1).expect("shape").split('(').nth(1).expect("(").split(')').next().expect(")");
    let shape: Vec<usize> =
        shape_s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.parse().expect("dim")).collect();
    let dtype = match descr {
        "<f4" => ScalarType::Float,
        "<f8" => ScalarType::Double,
        "<i8" => ScalarType::Long,
        "<i4" => ScalarType::Int,
        "|b1" => ScalarType::Bool,
        other => panic!("unsupported npy dtype {other}"),
    };
    TensorData::from_bytes(dtype, shape, &bytes[start + hlen..]).expect("npy data")
}

fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let x = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
            let y = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
            if x == y || y == 1 {
                Ok(x)
            } else if x == 1 {
                Ok(y)
            } else {
                Err(RuntimeError::Invalid(format!("cannot broadcast {a:?} and {b:?}")))
            }
        })
        .collect()
}

/// Element of `vals` (shape `from`) at output flat index `k` of shape `to` (broadcast).
fn at(vals: &[f64], from: &[usize], to: &[usize], k: usize) -> f64 {
    let mut rem = k;
    let mut off = 0;
    let mut stride = 1;
    let lead = to.len() - from.len();
    for d in (0..to.len()).rev() {
        let c = rem % to[d];
        rem /= to[d];
        if d >= lead {
            let f = from[d - lead];
            if f != 1 {
                off += c * stride;
            }
            stride *= f;
        }
    }
    vals[off]
}

/// Reference n-ary elementwise kernel: inputs (tensors, broadcast) computed in f64.
fn nary(env: &mut Env<'_>, inputs: &[usize], out: usize, f: impl Fn(&[f64]) -> f64) -> Result<()> {
    let mut shape = Vec::new();
    for &i in inputs {
        shape = broadcast(&shape, env.sizes(i)?)?;
    }
    env.resize(out, &shape)?;
    let n: usize = shape.iter().product();
    env.run(inputs, &[out], |ins, outs| {
        let vals: Vec<Vec<f64>> = ins.iter().map(|t| t.to_f64_vec()).collect::<Result<_>>()?;
        let res: Vec<f64> = (0..n)
            .map(|k| {
                let args: Vec<f64> = ins.iter().zip(&vals).map(|(t, v)| at(v, t.sizes, &shape, k)).collect();
                f(&args)
            })
            .collect();
        let o = &mut outs[0];
        match o.dtype {
            ScalarType::Float => o.typed::<f32>()?.iter_mut().zip(&res).for_each(|(d, &v)| *d = v as f32),
            ScalarType::Double => o.typed::<f64>()?.iter_mut().zip(&res).for_each(|(d, &v)| *d = v),
            ScalarType::Long => o.typed::<i64>()?.iter_mut().zip(&res).for_each(|(d, &v)| *d = v as i64),
            ScalarType::Bool => o.typed::<u8>()?.iter_mut().zip(&res).for_each(|(d, &v)| *d = u8::from(v != 0.0)),
            other => return Err(RuntimeError::Unsupported(format!("{other} in the test kernels"))),
        }
        Ok(())
    })
}

fn scalar(env: &Env<'_>, v: usize) -> Result<f64> {
    Ok(match env.scalar(v)? {
        Scalar::Bool(b) => f64::from(u8::from(b)),
        s => s.to_f64(),
    })
}

fn registry() -> KernelRegistry {
    fn erf(x: f64) -> f64 {
        // Abramowitz-Stegun 7.1.26 is too coarse; integrate the series instead.
        let mut sum = x;
        let mut term = x;
        let x2 = x * x;
        if x.abs() > 6.0 {
            return x.signum();
        }
        for n in 1..200 {
            term *= -x2 / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
    let mut r = ferrite_runtime::portable_kernels();
    r.register(Op::Relu, |e, a| nary(e, &[a[0]], a[1], |x| x[0].max(0.0)));
    r.register(Op::Tanh, |e, a| nary(e, &[a[0]], a[1], |x| x[0].tanh()));
    r.register(Op::Gelu, |e, a| {
        let tanh = e.string(a[1]).map(|s| s == "tanh").unwrap_or(false);
        nary(e, &[a[0]], a[2], move |x| {
            let v = x[0];
            if tanh {
                0.5 * v * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v)).tanh())
            } else {
                0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2))
            }
        })
    });
    r.register(Op::Add, |e, a| {
        let alpha = scalar(e, a[2])?;
        nary(e, &[a[0], a[1]], a[3], move |x| x[0] + alpha * x[1])
    });
    r.register(Op::Sub, |e, a| {
        let alpha = scalar(e, a[2])?;
        nary(e, &[a[0], a[1]], a[3], move |x| x[0] - alpha * x[1])
    });
    r.register(Op::MulScalar, |e, a| {
        let s = scalar(e, a[1])?;
        nary(e, &[a[0]], a[2], move |x| x[0] * s)
    });
    r.register(Op::EqScalar, |e, a| {
        let s = scalar(e, a[1])?;
        nary(e, &[a[0]], a[2], move |x| f64::from(u8::from(x[0] == s)))
    });
    r.register(Op::LeScalar, |e, a| {
        let s = scalar(e, a[1])?;
        nary(e, &[a[0]], a[2], move |x| f64::from(u8::from(x[0] <= s)))
    });
    r.register(Op::LogicalNot, |e, a| nary(e, &[a[0]], a[1], |x| f64::from(u8::from(x[0] == 0.0))));
    r.register(Op::LogicalAnd, |e, a| {
        nary(e, &[a[0], a[1]], a[2], |x| f64::from(u8::from(x[0] != 0.0 && x[1] != 0.0)))
    });
    r.register(Op::WhereSelf, |e, a| nary(e, &[a[0], a[1], a[2]], a[3], |x| if x[0] != 0.0 { x[1] } else { x[2] }));
    r
}

fn check(name: &str, method: &str, output: &str) {
    let dir = fixtures().join(name);
    let bytes = std::fs::read(dir.join("portable.pte")).expect("pte");
    let program = Arc::new(Program::from_vec(bytes).expect("program"));
    for threads in [1, 3] {
        let rt = Runtime::new().with_threads(threads).expect("threads").with_kernels(registry());
        let mut m = rt.load_method(&program, method).unwrap_or_else(|e| panic!("{name}.{method}: {e}"));
        let got = m.run(&[npy(&dir.join("input_0.npy"))]).unwrap_or_else(|e| panic!("{name}.{method}: {e}"));
        let want = npy(&dir.join(output));
        assert_eq!(got[0].sizes(), want.sizes(), "{name}.{method}: shape");
        let (g, w) = (got[0].to_f64_vec().expect("f64"), want.to_f64_vec().expect("f64"));
        let tol = 1e-4 * w.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let worst = g.iter().zip(&w).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst <= tol, "{name}.{method} ({threads} threads): max |diff| {worst:e} exceeds {tol:e}");
    }
}

#[test]
fn mlp_matches_executorch() {
    check("mlp", "forward", "portable.output_0.npy");
}

#[test]
fn two_methods_match_executorch() {
    check("two_methods", "forward", "portable.output_0.npy");
    check("two_methods", "encode", "portable.encode.output_0.npy");
}

#[test]
fn tiny_transformer_matches_executorch() {
    check("tiny_transformer", "forward", "portable.output_0.npy");
}

#[test]
fn tiny_gpt_matches_executorch() {
    check("tiny_gpt", "forward", "portable.output_0.npy");
}
