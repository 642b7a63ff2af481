//! The values of a running method and the safe split-borrowing that hands kernels their
//! inputs and outputs.
//!
//! A method's tensors live in memory-planned arenas (as ExecuTorch plans them), in the
//! program's constant data, or in buffers the runtime owns (unplanned inputs, dynamic-unbound
//! tensors). To give a kernel `&[u8]` inputs and `&mut [u8]` outputs from the same arena without
//! `unsafe`, [`Env::run`] splits each arena around the outputs' byte ranges with
//! `split_at_mut`; an input that overlaps an output (an in-place update as planned) is copied
//! first, so the kernel still sees its old value.

use ferrite_program::ScalarType;

use crate::error::{Result, RuntimeError};
use crate::tensor::{nbytes, AlignedBuf, TensorMut, TensorRef};

/// Where a tensor's bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Storage {
    /// `arenas[id][offset .. offset + capacity]`.
    Arena { id: usize, offset: usize, capacity: usize },
    /// `program.bytes()[start .. start + capacity]` (read-only).
    Constant { start: usize, capacity: usize },
    /// `owned[index]`.
    Owned { index: usize },
    /// No data yet (an unplanned tensor before anything wrote it).
    Empty,
}

/// A tensor value's runtime state.
#[derive(Debug, Clone)]
pub(crate) struct TensorSlot {
    pub dtype: ScalarType,
    pub sizes: Vec<usize>,
    /// Upper-bound sizes from the program (for resize checks).
    pub bound: Vec<usize>,
    pub dim_order: Vec<u8>,
    pub dynamism: ferrite_program::ShapeDynamism,
    pub storage: Storage,
}

/// A runtime value.
#[derive(Debug, Clone)]
pub(crate) enum RValue {
    None,
    Int(i64),
    Double(f64),
    Bool(bool),
    String(String),
    /// Value indices of Int values.
    IntList(Vec<usize>),
    DoubleList(Vec<f64>),
    BoolList(Vec<bool>),
    Tensor(TensorSlot),
    /// Value indices of tensors.
    TensorList(Vec<usize>),
    OptionalTensorList(Vec<Option<usize>>),
}

impl RValue {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            RValue::None => "None",
            RValue::Int(_) => "Int",
            RValue::Double(_) => "Double",
            RValue::Bool(_) => "Bool",
            RValue::String(_) => "String",
            RValue::IntList(_) => "IntList",
            RValue::DoubleList(_) => "DoubleList",
            RValue::BoolList(_) => "BoolList",
            RValue::Tensor(_) => "Tensor",
            RValue::TensorList(_) => "TensorList",
            RValue::OptionalTensorList(_) => "OptionalTensorList",
        }
    }
}

/// A scalar argument (`Scalar` in ATen schemas).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    /// Integer.
    Int(i64),
    /// Floating point.
    Double(f64),
    /// Boolean.
    Bool(bool),
}

impl Scalar {
    /// As f64.
    pub fn to_f64(self) -> f64 {
        match self {
            Scalar::Int(i) => i as f64,
            Scalar::Double(d) => d,
            Scalar::Bool(b) => f64::from(u8::from(b)),
        }
    }

    /// Whether this is a floating-point scalar.
    pub fn is_float(self) -> bool {
        matches!(self, Scalar::Double(_))
    }
}

/// Everything a kernel can reach: the method's values and memory, and the program's constants.
#[derive(Debug)]
pub struct Env<'m> {
    pub(crate) values: &'m mut [RValue],
    pub(crate) arenas: &'m mut [AlignedBuf],
    pub(crate) owned: &'m mut Vec<AlignedBuf>,
    /// The program's bytes, which `Storage::Constant` tensors point into (inside Ferrite's
    /// backend too: constants it does not pack are read there in place).
    pub(crate) program: &'m [u8],
    /// Sum convolutions and matrix products in ExecuTorch's portable order (see
    /// [`crate::Accumulation`]).
    pub(crate) reference_order: bool,
    /// The SIMD level kernels run at.
    pub(crate) level: ferrite_kernels::simd::Level,
}

fn numel_of(sizes: &[usize]) -> Result<usize> {
    crate::tensor::numel(sizes)
}

fn invalid(msg: String) -> RuntimeError {
    RuntimeError::Invalid(msg)
}

impl<'m> Env<'m> {
    /// An environment over values whose tensors all live in `owned` (no planned arenas): a
    /// delegate's private memory, or a test's.
    pub(crate) fn owned(
        values: &'m mut [RValue],
        owned: &'m mut Vec<AlignedBuf>,
        program: &'m [u8],
        reference_order: bool,
        level: ferrite_kernels::simd::Level,
    ) -> Self {
        Env { values, arenas: &mut [], owned, program, reference_order, level }
    }
}

impl Env<'_> {
    fn value(&self, v: usize) -> Result<&RValue> {
        self.values.get(v).ok_or_else(|| invalid(format!("value {v} out of range")))
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the method has no values.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Whether value `v` is None.
    pub fn is_none(&self, v: usize) -> Result<bool> {
        Ok(matches!(self.value(v)?, RValue::None))
    }

    /// Whether value `v` is a tensor.
    pub fn is_tensor(&self, v: usize) -> Result<bool> {
        Ok(matches!(self.value(v)?, RValue::Tensor(_)))
    }

    /// An `int` argument.
    pub fn int(&self, v: usize) -> Result<i64> {
        match self.value(v)? {
            RValue::Int(i) => Ok(*i),
            RValue::Bool(b) => Ok(i64::from(*b)),
            other => Err(invalid(format!("value {v}: expected an Int, found {}", other.kind()))),
        }
    }

    /// An optional `int` argument.
    pub fn opt_int(&self, v: usize) -> Result<Option<i64>> {
        if self.is_none(v)? {
            Ok(None)
        } else {
            self.int(v).map(Some)
        }
    }

    /// A `float` argument (ints are accepted).
    pub fn double(&self, v: usize) -> Result<f64> {
        match self.value(v)? {
            RValue::Double(d) => Ok(*d),
            RValue::Int(i) => Ok(*i as f64),
            other => Err(invalid(format!("value {v}: expected a Double, found {}", other.kind()))),
        }
    }

    /// An optional `float` argument.
    pub fn opt_double(&self, v: usize) -> Result<Option<f64>> {
        if self.is_none(v)? {
            Ok(None)
        } else {
            self.double(v).map(Some)
        }
    }

    /// A `bool` argument.
    pub fn bool(&self, v: usize) -> Result<bool> {
        match self.value(v)? {
            RValue::Bool(b) => Ok(*b),
            RValue::Int(i) => Ok(*i != 0),
            other => Err(invalid(format!("value {v}: expected a Bool, found {}", other.kind()))),
        }
    }

    /// A `Scalar` argument.
    pub fn scalar(&self, v: usize) -> Result<Scalar> {
        match self.value(v)? {
            RValue::Int(i) => Ok(Scalar::Int(*i)),
            RValue::Double(d) => Ok(Scalar::Double(*d)),
            RValue::Bool(b) => Ok(Scalar::Bool(*b)),
            other => Err(invalid(format!("value {v}: expected a Scalar, found {}", other.kind()))),
        }
    }

    /// An optional `Scalar` argument.
    pub fn opt_scalar(&self, v: usize) -> Result<Option<Scalar>> {
        if self.is_none(v)? {
            Ok(None)
        } else {
            self.scalar(v).map(Some)
        }
    }

    /// A `str` argument.
    pub fn string(&self, v: usize) -> Result<&str> {
        match self.value(v)? {
            RValue::String(s) => Ok(s),
            other => Err(invalid(format!("value {v}: expected a String, found {}", other.kind()))),
        }
    }

    /// An optional `str` argument.
    pub fn opt_string(&self, v: usize) -> Result<Option<&str>> {
        if self.is_none(v)? {
            Ok(None)
        } else {
            self.string(v).map(Some)
        }
    }

    /// An `int[]` argument.
    pub fn int_list(&self, v: usize) -> Result<Vec<i64>> {
        match self.value(v)? {
            RValue::IntList(items) => items.iter().map(|&i| self.int(i)).collect(),
            RValue::Int(i) => Ok(vec![*i]),
            other => Err(invalid(format!("value {v}: expected an IntList, found {}", other.kind()))),
        }
    }

    /// An optional `int[]` argument.
    pub fn opt_int_list(&self, v: usize) -> Result<Option<Vec<i64>>> {
        if self.is_none(v)? {
            Ok(None)
        } else {
            self.int_list(v).map(Some)
        }
    }

    /// A `float[]` argument.
    pub fn double_list(&self, v: usize) -> Result<Vec<f64>> {
        match self.value(v)? {
            RValue::DoubleList(items) => Ok(items.clone()),
            other => Err(invalid(format!("value {v}: expected a DoubleList, found {}", other.kind()))),
        }
    }

    /// An optional `float[]` argument.
    pub fn opt_double_list(&self, v: usize) -> Result<Option<Vec<f64>>> {
        if self.is_none(v)? {
            Ok(None)
        } else {
            self.double_list(v).map(Some)
        }
    }

    /// A `bool[]` argument.
    pub fn bool_list(&self, v: usize) -> Result<Vec<bool>> {
        match self.value(v)? {
            RValue::BoolList(items) => Ok(items.clone()),
            other => Err(invalid(format!("value {v}: expected a BoolList, found {}", other.kind()))),
        }
    }

    /// A `Tensor[]` argument: the tensors' value indices.
    pub fn tensor_list(&self, v: usize) -> Result<Vec<usize>> {
        match self.value(v)? {
            RValue::TensorList(items) => Ok(items.clone()),
            other => Err(invalid(format!("value {v}: expected a TensorList, found {}", other.kind()))),
        }
    }

    /// A `Tensor?[]` argument.
    pub fn opt_tensor_list(&self, v: usize) -> Result<Vec<Option<usize>>> {
        match self.value(v)? {
            RValue::OptionalTensorList(items) => Ok(items.clone()),
            RValue::TensorList(items) => Ok(items.iter().map(|&i| Some(i)).collect()),
            other => Err(invalid(format!("value {v}: expected an OptionalTensorList, found {}", other.kind()))),
        }
    }

    /// Sets an `Int` value (symbolic sizes).
    pub fn set_int(&mut self, v: usize, x: i64) -> Result<()> {
        match self.values.get_mut(v) {
            Some(slot @ (RValue::Int(_) | RValue::None)) => {
                *slot = RValue::Int(x);
                Ok(())
            }
            Some(other) => Err(invalid(format!("value {v}: expected an Int, found {}", other.kind()))),
            None => Err(invalid(format!("value {v} out of range"))),
        }
    }

    /// Sets a scalar value (outputs of symbolic-int operators).
    pub fn set_scalar(&mut self, v: usize, x: Scalar) -> Result<()> {
        let slot = self.values.get_mut(v).ok_or_else(|| invalid(format!("value {v} out of range")))?;
        match slot {
            RValue::Int(_) | RValue::Double(_) | RValue::Bool(_) | RValue::None => {
                *slot = match x {
                    Scalar::Int(i) => RValue::Int(i),
                    Scalar::Double(d) => RValue::Double(d),
                    Scalar::Bool(b) => RValue::Bool(b),
                };
                Ok(())
            }
            other => Err(invalid(format!("value {v}: expected a scalar, found {}", other.kind()))),
        }
    }

    /// Makes tensor `dst` a view of `src`'s data with new `sizes` (same number of elements):
    /// ExecuTorch's `et_view`, which aliases instead of copying.
    pub fn view_of(&mut self, src: usize, dst: usize, sizes: &[usize]) -> Result<()> {
        let s = self.slot(src)?.clone();
        if numel_of(sizes)? != numel_of(&s.sizes)? {
            return Err(invalid(format!("cannot view {:?} as {sizes:?}", s.sizes)));
        }
        let d = self.slot_mut(dst)?;
        if d.dtype != s.dtype {
            return Err(invalid(format!("view changes dtype {} to {}", s.dtype, d.dtype)));
        }
        d.storage = s.storage;
        d.sizes = sizes.to_vec();
        d.dim_order = (0..sizes.len() as u8).collect();
        Ok(())
    }

    pub(crate) fn slot(&self, v: usize) -> Result<&TensorSlot> {
        match self.value(v)? {
            RValue::Tensor(t) => Ok(t),
            other => Err(invalid(format!("value {v}: expected a Tensor, found {}", other.kind()))),
        }
    }

    fn slot_mut(&mut self, v: usize) -> Result<&mut TensorSlot> {
        match self.values.get_mut(v) {
            Some(RValue::Tensor(t)) => Ok(t),
            Some(other) => Err(invalid(format!("value {v}: expected a Tensor, found {}", other.kind()))),
            None => Err(invalid(format!("value {v} out of range"))),
        }
    }

    /// A tensor's dtype.
    pub fn dtype(&self, v: usize) -> Result<ScalarType> {
        Ok(self.slot(v)?.dtype)
    }

    /// A tensor's current sizes.
    pub fn sizes(&self, v: usize) -> Result<&[usize]> {
        Ok(&self.slot(v)?.sizes)
    }

    /// Resizes an output tensor before a kernel writes it. Static tensors must keep their shape;
    /// bounded dynamic tensors must stay within their planned capacity.
    pub fn resize(&mut self, v: usize, sizes: &[usize]) -> Result<()> {
        let slot = self.slot(v)?;
        if slot.sizes == sizes {
            return Ok(());
        }
        if sizes.len() != slot.bound.len() {
            return Err(invalid(format!(
                "value {v}: cannot resize a rank-{} tensor {:?} to rank {} {sizes:?}",
                slot.bound.len(),
                slot.sizes,
                sizes.len()
            )));
        }
        let need = nbytes(slot.dtype, sizes)?;
        let fits = match slot.storage {
            Storage::Arena { capacity, .. } | Storage::Constant { capacity, .. } => need <= capacity,
            Storage::Owned { .. } | Storage::Empty => true,
        };
        let within_bound = sizes.iter().zip(&slot.bound).all(|(s, b)| s <= b);
        let allowed = match slot.dynamism {
            ferrite_program::ShapeDynamism::Static => false,
            ferrite_program::ShapeDynamism::DynamicBound => within_bound && fits,
            ferrite_program::ShapeDynamism::DynamicUnbound => true,
        };
        if !allowed {
            return Err(invalid(format!(
                "value {v}: shape {sizes:?} does not fit the planned {:?} tensor {:?}",
                slot.dynamism, slot.bound
            )));
        }
        let slot = self.slot_mut(v)?;
        slot.sizes = sizes.to_vec();
        if matches!(slot.storage, Storage::Owned { .. } | Storage::Empty) {
            let dtype = slot.dtype;
            self.ensure_owned(v, nbytes(dtype, sizes)?)?;
        }
        Ok(())
    }

    /// Gives an unplanned tensor an owned buffer of at least `len` bytes.
    fn ensure_owned(&mut self, v: usize, len: usize) -> Result<()> {
        let storage = self.slot(v)?.storage;
        match storage {
            Storage::Owned { index } if self.owned.get(index).is_some_and(|b| b.len() < len) => {
                self.owned[index] = AlignedBuf::zeroed(len);
            }
            Storage::Empty => {
                self.owned.push(AlignedBuf::zeroed(len));
                let index = self.owned.len() - 1;
                self.slot_mut(v)?.storage = Storage::Owned { index };
            }
            _ => {}
        }
        Ok(())
    }

    /// Points tensor `to` at the same data as tensor `from` (ExecuTorch's move semantics).
    pub(crate) fn alias(&mut self, from: usize, to: usize) -> Result<()> {
        let v = self.value(from)?.clone();
        match self.values.get_mut(to) {
            Some(slot) => {
                *slot = v;
                Ok(())
            }
            None => Err(invalid(format!("value {to} out of range"))),
        }
    }

    /// Reads tensor `v` (a copy-free view when possible).
    pub fn read(&self, v: usize) -> Result<TensorRef<'_>> {
        let slot = self.slot(v)?;
        let n = nbytes(slot.dtype, &slot.sizes)?;
        let data = match slot.storage {
            Storage::Arena { id, offset, .. } => self.arenas.get(id).and_then(|a| a.as_slice().get(offset..offset + n)),
            Storage::Constant { start, .. } => self.program.get(start..start + n),
            Storage::Owned { index } => self.owned.get(index).and_then(|b| b.as_slice().get(..n)),
            Storage::Empty if n == 0 => Some(&[][..]),
            Storage::Empty => None,
        }
        .ok_or_else(|| invalid(format!("value {v}: tensor has no data")))?;
        Ok(TensorRef { dtype: slot.dtype, sizes: &slot.sizes, dim_order: &slot.dim_order, data })
    }

    /// Runs `f` with read views of `inputs` and write views of `outputs`.
    ///
    /// Outputs must be resized first ([`Env::resize`]). Output byte ranges must not overlap each
    /// other; an input overlapping an output is copied before `f` runs.
    ///
    /// Every input and output must be in the default (contiguous) dim order; a kernel that
    /// handles other orders uses [`Env::run_any_layout`].
    pub fn run<R>(
        &mut self,
        inputs: &[usize],
        outputs: &[usize],
        f: impl FnOnce(&[TensorRef<'_>], &mut [TensorMut<'_>]) -> Result<R>,
    ) -> Result<R> {
        self.check_default_order(inputs.iter().chain(outputs))?;
        self.run_any_layout(inputs, outputs, f)
    }

    /// An error unless every tensor of `values` is in the default dim order (or has at most one
    /// dimension longer than 1, where the orders coincide).
    fn check_default_order<'v>(&self, values: impl Iterator<Item = &'v usize>) -> Result<()> {
        for &v in values {
            let slot = self.slot(v)?;
            if !ferrite_kernels::layout::is_contiguous_order(&slot.dim_order)
                && slot.sizes.iter().filter(|&&s| s > 1).count() > 1
            {
                return Err(RuntimeError::Unsupported(format!(
                    "value {v} has dim order {:?}; this operator needs the default order (convert with _to_dim_order_copy first)",
                    slot.dim_order
                )));
            }
        }
        Ok(())
    }

    /// [`Env::run`] without the dim-order check: views carry their `dim_order` and the kernel
    /// interprets the bytes accordingly.
    pub fn run_any_layout<R>(
        &mut self,
        inputs: &[usize],
        outputs: &[usize],
        f: impl FnOnce(&[TensorRef<'_>], &mut [TensorMut<'_>]) -> Result<R>,
    ) -> Result<R> {
        // This function is instantiated for every kernel closure in the crate: all the work is
        // in `run_views`, which is not generic, `f` reaching it as a `dyn` call.
        let (mut f, mut result) = (Some(f), None);
        self.run_views(inputs, outputs, &mut |ins, outs| {
            if let Some(f) = f.take() {
                result = Some(f(ins, outs));
            }
        })?;
        result.unwrap_or_else(|| Err(invalid("internal: a kernel's body did not run".to_string())))
    }

    /// [`Env::run_any_layout`]'s work: the views, then `f` on them.
    #[inline(never)]
    fn run_views(
        &mut self,
        inputs: &[usize],
        outputs: &[usize],
        f: &mut dyn FnMut(&[TensorRef<'_>], &mut [TensorMut<'_>]),
    ) -> Result<()> {
        let mut copies = Vec::new();
        let (in_views, mut out_views) = self.views(inputs, outputs, &mut copies)?;
        f(&in_views, &mut out_views);
        Ok(())
    }

    /// The read views of `inputs` and write views of `outputs` for [`Env::run_any_layout`];
    /// inputs that overlap an output are copied into `copies` first.
    #[inline(never)]
    fn views<'s>(
        &'s mut self,
        inputs: &[usize],
        outputs: &[usize],
        copies: &'s mut Vec<Option<AlignedBuf>>,
    ) -> Result<(Vec<TensorRef<'s>>, Vec<TensorMut<'s>>)> {
        // Make sure every output has storage.
        for &o in outputs {
            let slot = self.slot(o)?;
            if matches!(slot.storage, Storage::Empty) {
                let n = nbytes(slot.dtype, &slot.sizes)?;
                self.ensure_owned(o, n)?;
            }
        }
        // Locate every output.
        #[derive(Clone, Copy)]
        enum Loc {
            Arena(usize, usize, usize), // arena, start, end
            Owned(usize, usize),        // index, len
        }
        let mut out_locs = Vec::with_capacity(outputs.len());
        for &o in outputs {
            let slot = self.slot(o)?;
            let n = nbytes(slot.dtype, &slot.sizes)?;
            out_locs.push(match slot.storage {
                Storage::Arena { id, offset, .. } => Loc::Arena(id, offset, offset + n),
                Storage::Owned { index } => Loc::Owned(index, n),
                Storage::Constant { .. } => {
                    return Err(invalid(format!("value {o}: a kernel cannot write a constant")))
                }
                Storage::Empty => return Err(invalid(format!("value {o}: output has no storage"))),
            });
        }
        for (i, a) in out_locs.iter().enumerate() {
            for b in &out_locs[i + 1..] {
                let clash = match (a, b) {
                    (Loc::Arena(x, s1, e1), Loc::Arena(y, s2, e2)) => x == y && s1 < e2 && s2 < e1,
                    (Loc::Owned(x, _), Loc::Owned(y, _)) => x == y,
                    _ => false,
                };
                if clash {
                    return Err(invalid("two outputs of one kernel share memory".into()));
                }
            }
        }
        // Inputs that overlap an output are copied now (in-place updates read old values).
        copies.clear();
        copies.reserve(inputs.len());
        for &i in inputs {
            let slot = self.slot(i)?;
            let n = nbytes(slot.dtype, &slot.sizes)?;
            let overlaps = match slot.storage {
                Storage::Arena { id, offset, .. } => out_locs.iter().any(|l| match *l {
                    Loc::Arena(a, s, e) => a == id && offset < e && s < offset + n,
                    Loc::Owned(..) => false,
                }),
                Storage::Owned { index } => out_locs.iter().any(|l| matches!(*l, Loc::Owned(x, _) if x == index)),
                _ => false,
            };
            copies.push(if overlaps { Some(AlignedBuf::from_bytes(self.read(i)?.data)) } else { None });
        }

        // Split every arena around its outputs' ranges.
        let program_bytes = self.program;
        let mut arena_shared: Vec<Vec<(usize, &[u8])>> = Vec::with_capacity(self.arenas.len());
        let mut out_slices: Vec<Option<&mut [u8]>> = (0..outputs.len()).map(|_| None).collect();
        for (id, arena) in self.arenas.iter_mut().enumerate() {
            let mut cuts: Vec<(usize, usize, usize)> = out_locs
                .iter()
                .enumerate()
                .filter_map(|(k, l)| match *l {
                    Loc::Arena(a, s, e) if a == id => Some((s, e, k)),
                    _ => None,
                })
                .collect();
            cuts.sort_unstable();
            let mut rest: &mut [u8] = arena.as_mut_slice();
            let mut pos = 0usize;
            let mut pieces = Vec::with_capacity(cuts.len() + 1);
            for (s, e, k) in cuts {
                let tail = std::mem::take(&mut rest);
                if s < pos || e > pos + tail.len() {
                    return Err(invalid(format!("output range {s}..{e} lies outside arena {id}")));
                }
                let (gap, tail) = tail.split_at_mut(s - pos);
                let (out, tail) = tail.split_at_mut(e - s);
                pieces.push((pos, &*gap));
                out_slices[k] = Some(out);
                rest = tail;
                pos = e;
            }
            pieces.push((pos, &*rest));
            arena_shared.push(pieces);
        }
        let mut owned_shared: Vec<Option<&[u8]>> = Vec::with_capacity(self.owned.len());
        for (index, buf) in self.owned.iter_mut().enumerate() {
            let hit = out_locs.iter().enumerate().find_map(|(k, l)| match *l {
                Loc::Owned(x, n) if x == index => Some((k, n)),
                _ => None,
            });
            match hit {
                Some((k, n)) => {
                    out_slices[k] = buf.as_mut_slice().get_mut(..n);
                    owned_shared.push(None);
                }
                None => owned_shared.push(Some(buf.as_slice())),
            }
        }

        let values: &[RValue] = self.values;
        let slot_of = |v: usize| -> Result<&TensorSlot> {
            match values.get(v) {
                Some(RValue::Tensor(t)) => Ok(t),
                _ => Err(invalid(format!("value {v} is not a tensor"))),
            }
        };
        let mut in_views = Vec::with_capacity(inputs.len());
        for (k, &i) in inputs.iter().enumerate() {
            let slot = slot_of(i)?;
            let n = nbytes(slot.dtype, &slot.sizes)?;
            let data: &[u8] = if let Some(copy) = &copies[k] {
                copy.as_slice()
            } else {
                match slot.storage {
                    Storage::Arena { id, offset, .. } => {
                        let pieces = arena_shared.get(id).ok_or_else(|| invalid(format!("arena {id} missing")))?;
                        let (base, piece) = pieces
                            .iter()
                            .rev()
                            .find(|(base, _)| *base <= offset)
                            .ok_or_else(|| invalid(format!("value {i}: arena range not found")))?;
                        piece
                            .get(offset - base..offset - base + n)
                            .ok_or_else(|| invalid(format!("value {i}: input lies outside arena {id}")))?
                    }
                    Storage::Constant { start, .. } => program_bytes
                        .get(start..start + n)
                        .ok_or_else(|| invalid(format!("value {i}: constant out of range")))?,
                    Storage::Owned { index } => owned_shared
                        .get(index)
                        .copied()
                        .flatten()
                        .and_then(|b| b.get(..n))
                        .ok_or_else(|| invalid(format!("value {i}: owned buffer unavailable")))?,
                    Storage::Empty if n == 0 => &[],
                    Storage::Empty => return Err(invalid(format!("value {i}: input tensor has no data"))),
                }
            };
            in_views.push(TensorRef { dtype: slot.dtype, sizes: &slot.sizes, dim_order: &slot.dim_order, data });
        }
        let mut out_views = Vec::with_capacity(outputs.len());
        for (k, &o) in outputs.iter().enumerate() {
            let slot = slot_of(o)?;
            let data = out_slices[k].take().ok_or_else(|| invalid(format!("value {o}: output unavailable")))?;
            out_views.push(TensorMut { dtype: slot.dtype, sizes: &slot.sizes, dim_order: &slot.dim_order, data });
        }
        Ok((in_views, out_views))
    }
}
