//! 2-D pooling (max with indices, average, adaptive average/max) and 2-D upsampling (nearest,
//! bilinear) over contiguous `[planes, H, W]` data, with PyTorch's window and index arithmetic.

use crate::num::{Element, Real};
use crate::{KResult, KernelError};

/// Geometry of a 2-D sliding-window pooling over `planes` independent `[in_h, in_w]` planes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2d {
    /// Independent planes (batch × channels).
    pub planes: usize,
    /// Input height and width.
    pub input: [usize; 2],
    /// Output height and width.
    pub output: [usize; 2],
    /// Window size.
    pub kernel: [usize; 2],
    /// Window step.
    pub stride: [usize; 2],
    /// Implicit padding on both sides.
    pub padding: [usize; 2],
    /// Spacing of window taps.
    pub dilation: [usize; 2],
}

/// PyTorch's `pooling_output_shape`: floor (or ceil) of the window count, where in ceil mode
/// the last window must start inside the input or the left padding.
pub fn pool_output_size(
    input: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    ceil_mode: bool,
) -> KResult<usize> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return Err(KernelError::Argument(format!(
            "pooling: kernel {kernel}, stride {stride}, dilation {dilation} must be positive"
        )));
    }
    if pad > kernel / 2 {
        return Err(KernelError::Argument(format!(
            "pooling: padding {pad} must be at most half the kernel size {kernel}"
        )));
    }
    let (i, k, s, p, d) = (input as i64, kernel as i64, stride as i64, pad as i64, dilation as i64);
    let num = i + 2 * p - d * (k - 1) - 1 + if ceil_mode { s - 1 } else { 0 };
    let mut out = num.div_euclid(s) + 1;
    if ceil_mode && (out - 1) * s >= i + p {
        out -= 1;
    }
    if out <= 0 {
        return Err(KernelError::Argument(format!(
            "pooling: input size {input} with kernel {kernel}, stride {stride}, padding {pad}, dilation {dilation} gives an empty output"
        )));
    }
    Ok(out as usize)
}

impl Pool2d {
    fn check<T>(&self, x: &[T], y: &[T]) -> KResult<(usize, usize)> {
        let isz = self.input[0] * self.input[1];
        let osz = self.output[0] * self.output[1];
        if x.len() != self.planes * isz {
            return Err(KernelError::Length { what: "pooling input", expected: self.planes * isz, actual: x.len() });
        }
        if y.len() != self.planes * osz {
            return Err(KernelError::Length { what: "pooling output", expected: self.planes * osz, actual: y.len() });
        }
        if self.stride.contains(&0) || self.dilation.contains(&0) {
            return Err(KernelError::Argument("pooling: stride and dilation must be positive".into()));
        }
        Ok((isz, osz))
    }

    /// Valid taps `start, start + d, ... < end` of output `o` along axis `a`
    /// (PyTorch: start moved forward past the padding by whole dilation steps).
    #[inline]
    fn taps(&self, a: usize, o: usize) -> (usize, usize) {
        let (s, p, d, k, n) = (self.stride[a], self.padding[a], self.dilation[a], self.kernel[a], self.input[a]);
        let mut start = (o * s) as isize - p as isize;
        let end = (start + ((k.saturating_sub(1)) * d) as isize + 1).min(n as isize);
        while start < 0 {
            start += d as isize;
        }
        (start.max(0) as usize, end.max(0) as usize)
    }
}

/// Calls `f(i, plane)` for every `osz`-element output plane, on several threads when large.
fn par_planes<T: Send>(y: &mut [T], osz: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    if osz == 0 {
        return;
    }
    crate::par::chunks(y, osz, y.len() >= 1 << 14 && crate::threads() > 1, f);
}

/// Max pooling with PyTorch semantics: NaN propagates, the first maximum wins, `indices` (if
/// given) receive the flat index `h * in_w + w` of the maximum within its plane.
pub fn max_pool2d<T: Element>(x: &[T], y: &mut [T], indices: Option<&mut [i64]>, p: &Pool2d) -> KResult {
    let (isz, osz) = p.check(x, y)?;
    if let Some(ix) = &indices {
        if ix.len() != y.len() {
            return Err(KernelError::Length { what: "max_pool2d indices", expected: y.len(), actual: ix.len() });
        }
    }
    let [_, iw] = p.input;
    let [oh_, ow_] = p.output;
    let (dh, dw) = (p.dilation[0], p.dilation[1]);
    let plane = |i: usize, yp: &mut [T], mut ip: Option<&mut [i64]>| {
        let xp = &x[i * isz..][..isz];
        for oh in 0..oh_ {
            let (h0, h1) = p.taps(0, oh);
            for ow in 0..ow_ {
                let (w0, w1) = p.taps(1, ow);
                let mut best_i = h0 * iw + w0;
                let mut best = if h0 < h1 && w0 < w1 { xp[best_i] } else { T::from_f64(f64::NEG_INFINITY) };
                for h in (h0..h1).step_by(dh) {
                    for w in (w0..w1).step_by(dw) {
                        let v = xp[h * iw + w];
                        if v > best || v.is_nan() {
                            best = v;
                            best_i = h * iw + w;
                        }
                    }
                }
                yp[oh * ow_ + ow] = best;
                if let Some(ip) = ip.as_deref_mut() {
                    ip[oh * ow_ + ow] = best_i as i64;
                }
            }
        }
    };
    if osz == 0 {
        return Ok(());
    }
    match indices {
        Some(ix) => {
            let par = y.len() >= 1 << 14 && crate::threads() > 1;
            crate::par::chunks2(y, osz, ix, osz, par, |i, yp, ip| plane(i, yp, Some(ip)));
        }
        None => par_planes(y, osz, |i, yp| plane(i, yp, None)),
    }
    Ok(())
}

/// Average pooling with PyTorch semantics (`count_include_pad` counts padded taps but not taps
/// past the padding; `divisor_override` replaces the count; empty windows give 0).
pub fn avg_pool2d<T: Real>(
    x: &[T],
    y: &mut [T],
    p: &Pool2d,
    count_include_pad: bool,
    divisor_override: Option<i64>,
) -> KResult {
    let (isz, osz) = p.check(x, y)?;
    if divisor_override == Some(0) {
        return Err(KernelError::Argument("avg_pool2d: divisor must be non-zero".into()));
    }
    let [ih, iw] = p.input;
    let [oh_, ow_] = p.output;
    par_planes(y, osz, |i, yp: &mut [T]| {
        let xp = &x[i * isz..][..isz];
        for oh in 0..oh_ {
            let hs = (oh * p.stride[0]) as isize - p.padding[0] as isize;
            let he = (hs + p.kernel[0] as isize).min((ih + p.padding[0]) as isize);
            for ow in 0..ow_ {
                let ws = (ow * p.stride[1]) as isize - p.padding[1] as isize;
                let we = (ws + p.kernel[1] as isize).min((iw + p.padding[1]) as isize);
                let pool = (he - hs) * (we - ws);
                let (h0, w0) = (hs.max(0) as usize, ws.max(0) as usize);
                let (h1, w1) = (he.min(ih as isize).max(0) as usize, we.min(iw as isize).max(0) as usize);
                if h0 >= h1 || w0 >= w1 {
                    yp[oh * ow_ + ow] = T::ZERO;
                    continue;
                }
                let mut sum = T::ZERO;
                for h in h0..h1 {
                    for &v in &xp[h * iw + w0..h * iw + w1] {
                        sum += v;
                    }
                }
                let div = match divisor_override {
                    Some(d) => d as f64,
                    None if count_include_pad => pool as f64,
                    None => ((h1 - h0) * (w1 - w0)) as f64,
                };
                yp[oh * ow_ + ow] = T::from_f64(sum.to_f64() / div);
            }
        }
    });
    Ok(())
}

/// PyTorch's adaptive window `[start, end)` for output `o` of `out` over `input`.
#[inline]
pub fn adaptive_window(o: usize, out: usize, input: usize) -> (usize, usize) {
    let start = (o * input) / out;
    let end = ((o + 1) * input).div_ceil(out);
    (start, end)
}

fn check_adaptive<T, U>(
    x: &[T],
    y: &[U],
    planes: usize,
    input: [usize; 2],
    output: [usize; 2],
) -> KResult<(usize, usize)> {
    let isz = input[0] * input[1];
    let osz = output[0] * output[1];
    if output.contains(&0) || input.contains(&0) {
        return Err(KernelError::Argument(format!("adaptive pooling: sizes {input:?} -> {output:?} must be positive")));
    }
    if x.len() != planes * isz || y.len() != planes * osz {
        return Err(KernelError::Shape(format!(
            "adaptive pooling: {} / {} elements for {planes} planes",
            x.len(),
            y.len()
        )));
    }
    Ok((isz, osz))
}

/// Adaptive average pooling to `output` (window sums divided by the window size).
pub fn adaptive_avg_pool2d<T: Real>(
    x: &[T],
    y: &mut [T],
    planes: usize,
    input: [usize; 2],
    output: [usize; 2],
) -> KResult {
    let (isz, osz) = check_adaptive(x, y, planes, input, output)?;
    let [ih, iw] = input;
    let [oh_, ow_] = output;
    par_planes(y, osz, |i, yp: &mut [T]| {
        let xp = &x[i * isz..][..isz];
        for oh in 0..oh_ {
            let (h0, h1) = adaptive_window(oh, oh_, ih);
            for ow in 0..ow_ {
                let (w0, w1) = adaptive_window(ow, ow_, iw);
                let mut sum = T::ZERO;
                for h in h0..h1 {
                    for &v in &xp[h * iw + w0..h * iw + w1] {
                        sum += v;
                    }
                }
                yp[oh * ow_ + ow] = T::from_f64(sum.to_f64() / ((h1 - h0) * (w1 - w0)) as f64);
            }
        }
    });
    Ok(())
}

/// Adaptive max pooling to `output`, with flat in-plane indices of the maxima.
pub fn adaptive_max_pool2d<T: Element>(
    x: &[T],
    y: &mut [T],
    indices: &mut [i64],
    planes: usize,
    input: [usize; 2],
    output: [usize; 2],
) -> KResult {
    let (isz, osz) = check_adaptive(x, y, planes, input, output)?;
    if indices.len() != y.len() {
        return Err(KernelError::Length {
            what: "adaptive_max_pool2d indices",
            expected: y.len(),
            actual: indices.len(),
        });
    }
    let [ih, iw] = input;
    let [oh_, ow_] = output;
    for (i, (yp, ip)) in y.chunks_mut(osz).zip(indices.chunks_mut(osz)).enumerate() {
        let xp = &x[i * isz..][..isz];
        for oh in 0..oh_ {
            let (h0, h1) = adaptive_window(oh, oh_, ih);
            for ow in 0..ow_ {
                let (w0, w1) = adaptive_window(ow, ow_, iw);
                let mut bi = h0 * iw + w0;
                let mut best = xp[bi];
                for h in h0..h1 {
                    for w in w0..w1 {
                        let v = xp[h * iw + w];
                        if v > best || v.is_nan() {
                            best = v;
                            bi = h * iw + w;
                        }
                    }
                }
                yp[oh * ow_ + ow] = best;
                ip[oh * ow_ + ow] = bi as i64;
            }
        }
    }
    Ok(())
}

/// Scale used by upsampling index arithmetic: `1 / scale` when a scale was given, else
/// `input / output` (PyTorch's `compute_scales_value`), or the `align_corners` ratio.
pub fn upsample_scale(input: usize, output: usize, align_corners: bool, scale: Option<f64>) -> f32 {
    if align_corners {
        if output > 1 {
            (input as f32 - 1.0) / (output as f32 - 1.0)
        } else {
            0.0
        }
    } else {
        match scale {
            Some(s) if s > 0.0 => (1.0 / s) as f32,
            _ => input as f32 / output as f32,
        }
    }
}

fn check_up<T>(x: &[T], y: &[T], planes: usize, input: [usize; 2], output: [usize; 2]) -> KResult<(usize, usize)> {
    let isz = input[0] * input[1];
    let osz = output[0] * output[1];
    if x.len() != planes * isz || y.len() != planes * osz {
        return Err(KernelError::Shape(format!("upsample: {} / {} elements for {planes} planes", x.len(), y.len())));
    }
    if isz == 0 && osz != 0 {
        return Err(KernelError::Argument("upsample: empty input".into()));
    }
    Ok((isz, osz))
}

/// Nearest-neighbour upsampling: source index `min(floor(dst * scale), in - 1)` (PyTorch's
/// legacy `nearest` mode), `scale` per axis as [`upsample_scale`] gives it.
pub fn upsample_nearest2d<T: Copy + Send + Sync>(
    x: &[T],
    y: &mut [T],
    planes: usize,
    input: [usize; 2],
    output: [usize; 2],
    scale: [f32; 2],
) -> KResult {
    let (isz, osz) = check_up(x, y, planes, input, output)?;
    let src = |a: usize, o: usize| -> usize {
        let (i, n) = (input[a], output[a]);
        if n == i {
            o
        } else if n == 2 * i {
            o >> 1
        } else {
            ((o as f32 * scale[a]).floor() as usize).min(i - 1)
        }
    };
    let hs: Vec<usize> = (0..output[0]).map(|o| src(0, o)).collect();
    let ws: Vec<usize> = (0..output[1]).map(|o| src(1, o)).collect();
    let iw = input[1];
    let run = |i: usize, yp: &mut [T]| {
        let xp = &x[i * isz..][..isz];
        for (row, &h) in yp.chunks_exact_mut(output[1]).zip(&hs) {
            let xr = &xp[h * iw..][..iw];
            for (d, &w) in row.iter_mut().zip(&ws) {
                *d = xr[w];
            }
        }
    };
    if osz == 0 || output[1] == 0 {
        return Ok(());
    }
    par_planes(y, osz, run);
    Ok(())
}

/// Source indices and weights of one output coordinate of bilinear interpolation.
fn linear_taps(o: usize, input: usize, output: usize, ratio: f32, align_corners: bool) -> (usize, usize, f32, f32) {
    if input == output {
        return (o, o, 1.0, 0.0);
    }
    let real = if align_corners {
        ratio * o as f32
    } else {
        let r = ratio * (o as f32 + 0.5) - 0.5;
        if r < 0.0 {
            0.0
        } else {
            r
        }
    };
    let i0 = (real.floor() as usize).min(input - 1);
    let l1 = (real - i0 as f32).clamp(0.0, 1.0);
    let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
    (i0, i1, 1.0 - l1, l1)
}

/// Bilinear upsampling with PyTorch/ExecuTorch index arithmetic (f32 ratios and weights);
/// `ratio` per axis as [`upsample_scale`] gives it.
pub fn upsample_bilinear2d<T: Real>(
    x: &[T],
    y: &mut [T],
    planes: usize,
    input: [usize; 2],
    output: [usize; 2],
    align_corners: bool,
    ratio: [f32; 2],
) -> KResult {
    let (isz, osz) = check_up(x, y, planes, input, output)?;
    if osz == 0 || output[1] == 0 {
        return Ok(());
    }
    let hs: Vec<_> = (0..output[0]).map(|o| linear_taps(o, input[0], output[0], ratio[0], align_corners)).collect();
    let ws: Vec<_> = (0..output[1]).map(|o| linear_taps(o, input[1], output[1], ratio[1], align_corners)).collect();
    let iw = input[1];
    par_planes(y, osz, |i, yp: &mut [T]| {
        let xp = &x[i * isz..][..isz];
        for (row, &(h0, h1, wh0, wh1)) in yp.chunks_exact_mut(output[1]).zip(&hs) {
            let (r0, r1) = (&xp[h0 * iw..][..iw], &xp[h1 * iw..][..iw]);
            let (wh0, wh1) = (T::from_f32(wh0), T::from_f32(wh1));
            for (d, &(w0, w1, ww0, ww1)) in row.iter_mut().zip(&ws) {
                let (ww0, ww1) = (T::from_f32(ww0), T::from_f32(ww1));
                let top = r0[w0] * ww0 + r0[w1] * ww1;
                let bottom = r1[w0] * ww0 + r1[w1] * ww1;
                *d = top * wh0 + bottom * wh1;
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn naive_max(x: &[f32], p: &Pool2d) -> (Vec<f32>, Vec<i64>) {
        let [ih, iw] = p.input;
        let [oh_, ow_] = p.output;
        let mut y = vec![];
        let mut ix = vec![];
        for pl in 0..p.planes {
            for oh in 0..oh_ {
                for ow in 0..ow_ {
                    // PyTorch: an empty window yields -inf at its first tap past the padding.
                    let (mut hs, mut ws) = (
                        (oh * p.stride[0]) as isize - p.padding[0] as isize,
                        (ow * p.stride[1]) as isize - p.padding[1] as isize,
                    );
                    while hs < 0 {
                        hs += p.dilation[0] as isize;
                    }
                    while ws < 0 {
                        ws += p.dilation[1] as isize;
                    }
                    let mut best = f32::NEG_INFINITY;
                    let mut bi = hs as i64 * iw as i64 + ws as i64;
                    let mut found = false;
                    for kh in 0..p.kernel[0] {
                        for kw in 0..p.kernel[1] {
                            let h = (oh * p.stride[0] + kh * p.dilation[0]) as isize - p.padding[0] as isize;
                            let w = (ow * p.stride[1] + kw * p.dilation[1]) as isize - p.padding[1] as isize;
                            if h >= 0 && w >= 0 && (h as usize) < ih && (w as usize) < iw {
                                let v = x[pl * ih * iw + h as usize * iw + w as usize];
                                if !found || v > best {
                                    found = true;
                                    best = v;
                                    bi = h as i64 * iw as i64 + w as i64;
                                }
                            }
                        }
                    }
                    y.push(best);
                    ix.push(bi);
                }
            }
        }
        (y, ix)
    }

    fn naive_avg(x: &[f32], p: &Pool2d, include_pad: bool, div: Option<i64>) -> Vec<f32> {
        let [ih, iw] = p.input;
        let [oh_, ow_] = p.output;
        let mut y = vec![];
        for pl in 0..p.planes {
            for oh in 0..oh_ {
                for ow in 0..ow_ {
                    let (mut sum, mut n, mut padded) = (0f64, 0usize, 0usize);
                    for kh in 0..p.kernel[0] {
                        for kw in 0..p.kernel[1] {
                            let h = (oh * p.stride[0] + kh) as isize - p.padding[0] as isize;
                            let w = (ow * p.stride[1] + kw) as isize - p.padding[1] as isize;
                            if h < (ih + p.padding[0]) as isize && w < (iw + p.padding[1]) as isize {
                                padded += 1;
                            }
                            if h >= 0 && w >= 0 && (h as usize) < ih && (w as usize) < iw {
                                sum += x[pl * ih * iw + h as usize * iw + w as usize] as f64;
                                n += 1;
                            }
                        }
                    }
                    let d = div.map(|d| d as usize).unwrap_or(if include_pad { padded } else { n });
                    y.push(if n == 0 { 0.0 } else { (sum / d as f64) as f32 });
                }
            }
        }
        y
    }

    #[test]
    fn output_sizes_match_pytorch() {
        assert_eq!(pool_output_size(7, 2, 2, 0, 1, false).unwrap(), 3);
        assert_eq!(pool_output_size(7, 2, 2, 0, 1, true).unwrap(), 4);
        // ceil mode: the last window must start inside the input or left padding.
        assert_eq!(pool_output_size(6, 3, 2, 1, 1, true).unwrap(), 4);
        assert_eq!(pool_output_size(5, 3, 2, 1, 1, true).unwrap(), 3);
        assert!(pool_output_size(1, 3, 1, 0, 1, false).is_err());
        assert!(pool_output_size(5, 3, 1, 2, 1, false).is_err());
    }

    #[test]
    fn nan_propagates_and_first_max_wins() {
        let x = [1.0f32, 3.0, 3.0, f32::NAN, 0.0, 0.0];
        let p = Pool2d {
            planes: 1,
            input: [1, 6],
            output: [1, 2],
            kernel: [1, 3],
            stride: [1, 3],
            padding: [0, 0],
            dilation: [1, 1],
        };
        let mut y = [0f32; 2];
        let mut ix = [0i64; 2];
        max_pool2d(&x, &mut y, Some(&mut ix), &p).unwrap();
        assert_eq!(y[0], 3.0);
        assert!(y[1].is_nan());
        assert_eq!(ix, [1, 3]);
    }

    #[test]
    fn adaptive_and_upsample() {
        let x: Vec<f32> = (0..2 * 5 * 7).map(|i| i as f32).collect();
        let mut y = vec![0f32; 2 * 3 * 2];
        adaptive_avg_pool2d(&x, &mut y, 2, [5, 7], [3, 2]).unwrap();
        // window rows [0,2), cols [0,4) of plane 0
        let want: f32 = [0, 1, 2, 3, 7, 8, 9, 10].iter().map(|&v| v as f32).sum::<f32>() / 8.0;
        assert_eq!(y[0], want);
        let mut m = vec![0f32; 12];
        let mut ix = vec![0i64; 12];
        adaptive_max_pool2d(&x, &mut m, &mut ix, 2, [5, 7], [3, 2]).unwrap();
        assert_eq!((m[0], ix[0]), (10.0, 10));
        assert_eq!((m[11], ix[11]), (69.0, 34));

        let x = [1.0f32, 2.0, 3.0, 4.0];
        let mut y = [0f32; 16];
        upsample_nearest2d(&x, &mut y, 1, [2, 2], [4, 4], [0.5, 0.5]).unwrap();
        assert_eq!(y, [1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.]);
        let mut y = [0f32; 9];
        upsample_bilinear2d(&x, &mut y, 1, [2, 2], [3, 3], true, [upsample_scale(2, 3, true, None); 2]).unwrap();
        assert_eq!(y, [1.0, 1.5, 2.0, 2.0, 2.5, 3.0, 3.0, 3.5, 4.0]);
        let mut y = [0f32; 16];
        upsample_bilinear2d(&x, &mut y, 1, [2, 2], [4, 4], false, [0.5, 0.5]).unwrap();
        // PyTorch: F.interpolate(x, size=4, mode="bilinear") row 0 = [1, 1.25, 1.75, 2]
        assert_eq!(&y[..4], &[1.0, 1.25, 1.75, 2.0]);
        assert_eq!(&y[4..8], &[1.5, 1.75, 2.25, 2.5]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn pools_match_naive(
            planes in 1usize..4, ih in 1usize..10, iw in 1usize..10, kh in 1usize..4, kw in 1usize..4,
            sh in 1usize..4, sw in 1usize..4, ph in 0usize..2, pw in 0usize..2, dh in 1usize..3, dw in 1usize..3,
            ceil in any::<bool>(), include_pad in any::<bool>(), div in prop::option::of(1i64..5),
        ) {
            let (ph, pw) = (ph.min(kh / 2), pw.min(kw / 2));
            let oh = pool_output_size(ih, kh, sh, ph, dh, ceil);
            let ow = pool_output_size(iw, kw, sw, pw, dw, ceil);
            prop_assume!(oh.is_ok() && ow.is_ok());
            let p = Pool2d { planes, input: [ih, iw], output: [oh.unwrap(), ow.unwrap()], kernel: [kh, kw], stride: [sh, sw], padding: [ph, pw], dilation: [dh, dw] };
            let x: Vec<f32> = (0..planes * ih * iw).map(|i| ((i * 7919) % 23) as f32 - 11.0).collect();
            let n = planes * p.output[0] * p.output[1];
            let (mut y, mut ix) = (vec![0f32; n], vec![0i64; n]);
            max_pool2d(&x, &mut y, Some(&mut ix), &p).unwrap();
            let (wy, wix) = naive_max(&x, &p);
            prop_assert_eq!(&y, &wy);
            prop_assert_eq!(&ix, &wix);

            let oh = pool_output_size(ih, kh, sh, ph, 1, ceil);
            let ow = pool_output_size(iw, kw, sw, pw, 1, ceil);
            prop_assume!(oh.is_ok() && ow.is_ok());
            let p = Pool2d { output: [oh.unwrap(), ow.unwrap()], dilation: [1, 1], ..p };
            let n = planes * p.output[0] * p.output[1];
            let mut y = vec![0f32; n];
            avg_pool2d(&x, &mut y, &p, include_pad, div).unwrap();
            let want = naive_avg(&x, &p, include_pad, div);
            for (a, b) in y.iter().zip(&want) {
                prop_assert!((a - b).abs() < 1e-5, "{} vs {}", a, b);
            }
        }
    }
}
