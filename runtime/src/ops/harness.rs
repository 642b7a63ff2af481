//! A tiny method environment for operator tests: values are created one by one, tensors own
//! their data, outputs are unbound-dynamic so the operator's resize decides their shape.

use crate::env::{Env, RValue, Storage, TensorSlot};
use crate::error::Result;
use crate::registry::KernelRegistry;
use crate::tensor::{AlignedBuf, TensorData};
use ferrite_kernels::Element;
use ferrite_program::{Program, ScalarType, ShapeDynamism};
use std::sync::OnceLock;

fn program() -> &'static Program<'static> {
    static P: OnceLock<Program<'static>> = OnceLock::new();
    P.get_or_init(|| {
        Program::from_bytes(include_bytes!("../../../tests/fixtures/mlp/portable.pte")).expect("fixture program")
    })
}

fn registry() -> &'static KernelRegistry {
    static R: OnceLock<KernelRegistry> = OnceLock::new();
    R.get_or_init(crate::ops::portable_kernels)
}

/// Values of one test call.
#[derive(Default)]
pub(crate) struct H {
    values: Vec<RValue>,
    owned: Vec<AlignedBuf>,
}

impl H {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, v: RValue) -> usize {
        self.values.push(v);
        self.values.len() - 1
    }

    pub fn tensor_bytes(&mut self, dtype: ScalarType, sizes: &[usize], bytes: &[u8]) -> usize {
        self.owned.push(AlignedBuf::from_bytes(bytes));
        let index = self.owned.len() - 1;
        self.push(RValue::Tensor(TensorSlot {
            dtype,
            sizes: sizes.to_vec(),
            bound: sizes.to_vec(),
            dim_order: (0..sizes.len() as u8).collect(),
            dynamism: ShapeDynamism::DynamicUnbound,
            storage: Storage::Owned { index },
        }))
    }

    pub fn t<T: Element>(&mut self, sizes: &[usize], data: &[T]) -> usize {
        assert_eq!(sizes.iter().product::<usize>(), data.len());
        self.tensor_bytes(crate::tensor::scalar_type(T::DTYPE), sizes, bytemuck::cast_slice(data))
    }

    pub fn bools(&mut self, sizes: &[usize], data: &[bool]) -> usize {
        let b: Vec<u8> = data.iter().map(|&x| u8::from(x)).collect();
        self.tensor_bytes(ScalarType::Bool, sizes, &b)
    }

    /// An output tensor of `rank` dims (shape decided by the operator).
    pub fn out(&mut self, dtype: ScalarType, rank: usize) -> usize {
        self.push(RValue::Tensor(TensorSlot {
            dtype,
            sizes: vec![0; rank],
            bound: vec![0; rank],
            dim_order: (0..rank as u8).collect(),
            dynamism: ShapeDynamism::DynamicUnbound,
            storage: Storage::Empty,
        }))
    }

    pub fn int(&mut self, i: i64) -> usize {
        self.push(RValue::Int(i))
    }
    pub fn double(&mut self, d: f64) -> usize {
        self.push(RValue::Double(d))
    }
    pub fn bool(&mut self, b: bool) -> usize {
        self.push(RValue::Bool(b))
    }
    pub fn none(&mut self) -> usize {
        self.push(RValue::None)
    }
    pub fn ints(&mut self, l: &[i64]) -> usize {
        let ids: Vec<usize> = l.iter().map(|&i| self.int(i)).collect();
        self.push(RValue::IntList(ids))
    }
    pub fn opt_tensors(&mut self, l: &[Option<usize>]) -> usize {
        self.push(RValue::OptionalTensorList(l.to_vec()))
    }

    pub fn call(&mut self, op: ferrite_op_support::Op, args: &[usize]) -> Result<()> {
        let f = registry().get(op.name()).unwrap_or_else(|| panic!("{op} is not registered"));
        let mut env = Env::owned(
            &mut self.values,
            &mut self.owned,
            program().bytes(),
            false,
            ferrite_kernels::simd::Level::detect(),
        );
        f(&mut env, args)
    }

    pub fn get(&mut self, v: usize) -> TensorData {
        let env = Env::owned(
            &mut self.values,
            &mut self.owned,
            program().bytes(),
            false,
            ferrite_kernels::simd::Level::detect(),
        );
        let t = env.read(v).expect("readable tensor");
        TensorData::from_bytes(t.dtype, t.sizes.to_vec(), t.data).expect("tensor data")
    }

    pub fn f64s(&mut self, v: usize) -> (Vec<usize>, Vec<f64>) {
        let t = self.get(v);
        (t.sizes().to_vec(), t.to_f64_vec().expect("numeric"))
    }
}

/// Asserts two float vectors agree within `tol` (relative to magnitude), NaN matching NaN.
pub fn close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "lengths differ: {got:?} vs {want:?}");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= tol * w.abs().max(1.0);
        assert!(ok, "element {i}: got {g}, want {w}\n got {got:?}\nwant {want:?}");
    }
}

/// Deterministic pseudo-random values in [-2, 2).
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}
