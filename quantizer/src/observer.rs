//! Observers: what a quantizer learns about a tensor's values during calibration, and the
//! quantization parameters it derives from that.
//!
//! [`ObserverKind::Histogram`] reproduces PyTorch's `HistogramObserver` (PT2E's default for
//! activations) step by step in `f32`, as PyTorch computes it: the running 2048-bin histogram,
//! the re-binning when the range grows (16× upsampling), and the L2-error search for the
//! clipping range. The same data in the same order therefore gives the same scale and zero
//! point as `prepare_pt2e` + `convert_pt2e`. [`ObserverKind::MinMax`] and
//! [`ObserverKind::MovingAverageMinMax`] are PyTorch's `MinMaxObserver` and
//! `MovingAverageMinMaxObserver`; [`ObserverKind::Percentile`] and [`ObserverKind::Mse`] clip
//! on the same histogram by a percentile of the values or by the least expected squared error,
//! and [`ObserverKind::Entropy`] by the least KL divergence (TensorRT's calibration).

use serde::Serialize;

/// Which observer watches activations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObserverKind {
    /// The running minimum and maximum (PyTorch's `MinMaxObserver`).
    MinMax,
    /// Minimum and maximum averaged over calls with factor 0.01 (`MovingAverageMinMaxObserver`).
    MovingAverageMinMax,
    /// PyTorch's `HistogramObserver`: 2048 bins, L2-optimal clipping (PT2E's default).
    Histogram,
    /// Clip at a percentile of the observed values (both tails), e.g. 99.99.
    Percentile(f64),
    /// The range whose quantization has the least expected squared error over the histogram.
    Mse,
    /// The clipping threshold whose quantized distribution is closest to the observed one in
    /// Kullback-Leibler divergence (TensorRT's entropy calibration, on `|x|`).
    Entropy,
}

impl ObserverKind {
    /// The name the CLI and reports use.
    pub fn name(&self) -> String {
        match self {
            ObserverKind::MinMax => "minmax".into(),
            ObserverKind::MovingAverageMinMax => "moving-average".into(),
            ObserverKind::Histogram => "histogram".into(),
            ObserverKind::Percentile(p) => format!("percentile:{p}"),
            ObserverKind::Mse => "mse".into(),
            ObserverKind::Entropy => "entropy".into(),
        }
    }
}

/// Per-tensor affine parameters for an integer range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QParams {
    /// Scale (an `f32` value, as PyTorch computes it; programs store it as a double).
    pub scale: f32,
    /// Zero point.
    pub zero_point: i64,
    /// Smallest quantized value.
    pub qmin: i64,
    /// Largest quantized value.
    pub qmax: i64,
}

impl QParams {
    /// The smallest and largest real values representable.
    pub fn range(&self) -> (f32, f32) {
        ((self.qmin - self.zero_point) as f32 * self.scale, (self.qmax - self.zero_point) as f32 * self.scale)
    }
}

/// The epsilon PT2E's XNNPACK configuration gives its observers: no scale is smaller.
pub const SCALE_EPS: f32 = 1.0 / 4096.0;

/// PyTorch's `_calculate_qparams` for per-tensor affine parameters: the range is widened to
/// include zero, `scale = (max - min) / (qmax - qmin)` floored at `eps`, and the zero point is
/// `qmin - round(min / scale)` clamped into range. All arithmetic in `f32`, as PyTorch does.
pub fn affine_qparams(min: f32, max: f32, qmin: i64, qmax: i64, eps: f32) -> QParams {
    if min.partial_cmp(&max).is_none_or(|o| o == std::cmp::Ordering::Greater) || !min.is_finite() || !max.is_finite() {
        // PyTorch returns scale 1, zero point 0 for an observer that saw nothing valid.
        return QParams { scale: 1.0, zero_point: 0, qmin, qmax };
    }
    let min_neg = min.min(0.0);
    let max_pos = max.max(0.0);
    let scale = ((max_pos - min_neg) / (qmax - qmin) as f32).max(eps);
    let zp = qmin - (min_neg / scale).round_ties_even() as i64;
    QParams { scale, zero_point: zp.clamp(qmin, qmax), qmin, qmax }
}

/// PyTorch's symmetric per-channel parameters: `scale = max(|min|, |max|) / ((qmax - qmin) / 2)`,
/// floored at `eps`, zero point 0.
pub fn symmetric_scale(min: f32, max: f32, qmin: i64, qmax: i64, eps: f32) -> f32 {
    let amax = (-min.min(0.0)).max(max.max(0.0));
    (amax / ((qmax - qmin) as f32 / 2.0)).max(eps)
}

const BINS: usize = 2048;
const UPSAMPLE: usize = 16;

/// An activation observer.
#[derive(Debug, Clone)]
pub struct Observer {
    kind: ObserverKind,
    min: f32,
    max: f32,
    calls: u64,
    histogram: Vec<f32>,
}

impl Observer {
    /// An observer that has seen nothing.
    pub fn new(kind: ObserverKind) -> Self {
        let histogram = if matches!(kind, ObserverKind::MinMax | ObserverKind::MovingAverageMinMax) {
            Vec::new()
        } else {
            vec![0.0; BINS]
        };
        Observer { kind, min: f32::INFINITY, max: f32::NEG_INFINITY, calls: 0, histogram }
    }

    /// The smallest and largest values seen (averaged for the moving-average observer).
    pub fn min_max(&self) -> (f32, f32) {
        (self.min, self.max)
    }

    /// Observes one tensor's values. Infinities and NaNs are left out (PyTorch's histogram
    /// observer ignores infinities; NaN has no place in a range).
    pub fn observe(&mut self, values: &[f32]) {
        let finite: Vec<f32>;
        let x: &[f32] = if values.iter().all(|v| v.is_finite()) {
            values
        } else {
            finite = values.iter().copied().filter(|v| v.is_finite()).collect();
            &finite
        };
        if x.is_empty() {
            return;
        }
        let (lo, hi) = x.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        match self.kind {
            ObserverKind::MinMax => {
                self.min = self.min.min(lo);
                self.max = self.max.max(hi);
            }
            ObserverKind::MovingAverageMinMax => {
                if self.calls == 0 {
                    self.min = lo;
                    self.max = hi;
                } else {
                    self.min += 0.01 * (lo - self.min);
                    self.max += 0.01 * (hi - self.max);
                }
            }
            _ => self.observe_histogram(x, lo, hi),
        }
        self.calls += 1;
    }

    fn observe_histogram(&mut self, x: &[f32], lo: f32, hi: f32) {
        if self.calls == 0 {
            self.min = lo;
            self.max = hi;
            self.histogram = histc(x, lo, hi);
            return;
        }
        let (cur_min, cur_max) = (self.min, self.max);
        let new_min = cur_min.min(lo);
        let new_max = cur_max.max(hi);
        let update = histc(x, new_min, new_max);
        if new_min == cur_min && new_max == cur_max {
            self.histogram.iter_mut().zip(&update).for_each(|(h, u)| *h += u);
            return;
        }
        let transformed = if cur_min == cur_max {
            let total: f32 = self.histogram.iter().sum();
            histc(&[cur_min], new_min, new_max).into_iter().map(|c| c * total).collect()
        } else {
            upscale(&self.histogram, cur_min, cur_max, new_min, new_max)
        };
        self.histogram = update.iter().zip(&transformed).map(|(u, t)| u + t).collect();
        self.min = new_min;
        self.max = new_max;
    }

    /// The quantization parameters for `[qmin, qmax]` from what was observed.
    pub fn qparams(&self, qmin: i64, qmax: i64) -> QParams {
        if self.calls == 0 {
            return QParams { scale: 1.0, zero_point: 0, qmin, qmax };
        }
        let (lo, hi) = match self.kind {
            ObserverKind::MinMax | ObserverKind::MovingAverageMinMax => (self.min, self.max),
            ObserverKind::Histogram => self.l2_search((qmax - qmin + 1) as usize),
            ObserverKind::Percentile(p) => self.percentile(p),
            ObserverKind::Mse => self.mse_search(qmin, qmax),
            ObserverKind::Entropy => self.entropy_search((qmax - qmin + 1) as usize),
        };
        affine_qparams(lo, hi, qmin, qmax, SCALE_EPS)
    }

    /// The fraction of the observed values that `q` clips (bins whose centre lies more than half
    /// a step outside its range), from the histogram; `None` for observers without one.
    pub fn clipped_fraction(&self, q: &QParams) -> Option<f64> {
        if self.histogram.is_empty() || self.calls == 0 {
            return None;
        }
        let (lo, hi) = q.range();
        let width = (self.max - self.min) as f64 / BINS as f64;
        let (mut out, mut total) = (0f64, 0f64);
        for (i, &h) in self.histogram.iter().enumerate() {
            let c = self.min as f64 + width * (i as f64 + 0.5);
            total += h as f64;
            // Values within half a step of the range round onto its ends: not clipped.
            let half = q.scale as f64 / 2.0;
            if c < lo as f64 - half || c > hi as f64 + half {
                out += h as f64;
            }
        }
        Some(if total > 0.0 { out / total } else { 0.0 })
    }

    /// PyTorch's `_non_linear_param_search`.
    fn l2_search(&self, dst_nbins: usize) -> (f32, f32) {
        let bin_width = (self.max - self.min) / BINS as f32;
        let total: f32 = self.histogram.iter().sum();
        let mut csum = Vec::with_capacity(BINS);
        let mut acc = 0f32;
        for &h in &self.histogram {
            acc += h;
            csum.push(acc);
        }
        let stepsize = 1e-5f64;
        let (mut alpha, mut beta) = (0.0f64, 1.0f64);
        let (mut start_bin, mut end_bin) = (0usize, BINS - 1);
        let mut norm_min = f32::INFINITY;
        let total = total as f64;
        while alpha < beta {
            let next_alpha = alpha + stepsize;
            let next_beta = beta - stepsize;
            let (mut l, mut r) = (start_bin, end_bin);
            // PyTorch compares an f32 tensor with a Python float: the bound is rounded to f32.
            let lo_bound = (next_alpha * total) as f32;
            let hi_bound = (next_beta * total) as f32;
            while l < end_bin && csum[l] < lo_bound {
                l += 1;
            }
            while r > start_bin && csum[r] > hi_bound {
                r -= 1;
            }
            let (mut next_start, mut next_end) = (start_bin, end_bin);
            if (l - start_bin) > (end_bin - r) {
                next_start = l;
                alpha = next_alpha;
            } else {
                next_end = r;
                beta = next_beta;
            }
            if next_start == start_bin && next_end == end_bin {
                continue;
            }
            let norm = self.quantization_error(next_start, next_end, dst_nbins);
            if norm > norm_min {
                break;
            }
            norm_min = norm;
            start_bin = next_start;
            end_bin = next_end;
        }
        (self.min + bin_width * start_bin as f32, self.min + bin_width * (end_bin + 1) as f32)
    }

    /// PyTorch's `_compute_quantization_error`: the L2 error of quantizing the histogram's
    /// mass with the range `[start, end]` into `dst_nbins` levels.
    fn quantization_error(&self, start: usize, end: usize, dst_nbins: usize) -> f32 {
        let bin_width64 = (self.max as f64 - self.min as f64) / BINS as f64;
        let dst_bin_width64 = bin_width64 * (end - start + 1) as f64 / dst_nbins as f64;
        if dst_bin_width64 == 0.0 {
            return 0.0;
        }
        let bin_width = bin_width64 as f32;
        let dbw = dst_bin_width64 as f32;
        let half = (dst_bin_width64 / 2.0) as f32;
        let last = (dst_nbins - 1) as f32;
        let norm_fn = |b: f32, e: f32, density: f32| density * ((e * e * e - b * b * b) / 3.0);
        let mut total = 0f32;
        for (i, &h) in self.histogram.iter().enumerate() {
            let begin = (i as f32 - start as f32) * bin_width;
            let end_ = begin + bin_width;
            let of_begin = div_floor(begin, dbw).clamp(0.0, last);
            let of_begin_center = (of_begin + 0.5) * dbw;
            let of_end = div_floor(end_, dbw).clamp(0.0, last);
            let density = h / bin_width;
            let mut norm = norm_fn(begin - of_begin_center, half, density);
            norm += (of_end - of_begin - 1.0) * norm_fn(-half, half, density);
            let of_end_center = of_end * dbw + half;
            norm += norm_fn(-half, end_ - of_end_center, density);
            total += norm;
        }
        total
    }

    fn percentile(&self, p: f64) -> (f32, f32) {
        let p = p.clamp(50.0, 100.0) / 100.0;
        let bin_width = (self.max - self.min) / BINS as f32;
        let total: f64 = self.histogram.iter().map(|&h| h as f64).sum();
        let mut acc = 0f64;
        let mut lo_bin = 0;
        for (i, &h) in self.histogram.iter().enumerate() {
            acc += h as f64;
            if acc > (1.0 - p) * total {
                lo_bin = i;
                break;
            }
        }
        acc = 0.0;
        let mut hi_bin = BINS - 1;
        for (i, &h) in self.histogram.iter().enumerate().rev() {
            acc += h as f64;
            if acc > (1.0 - p) * total {
                hi_bin = i;
                break;
            }
        }
        (self.min + bin_width * lo_bin as f32, self.min + bin_width * (hi_bin.max(lo_bin) + 1) as f32)
    }

    /// Tries ranges that clip the histogram's tails in 1/256 steps and keeps the one whose
    /// quantization (bin centres rounded to the grid, clipped values to its ends) has the
    /// least expected squared error.
    fn mse_search(&self, qmin: i64, qmax: i64) -> (f32, f32) {
        let bin_width = (self.max - self.min) as f64 / BINS as f64;
        let centre = |i: usize| self.min as f64 + bin_width * (i as f64 + 0.5);
        let error = |lo: f64, hi: f64| -> f64 {
            let q = affine_qparams(lo as f32, hi as f32, qmin, qmax, SCALE_EPS);
            let s = q.scale as f64;
            let z = q.zero_point as f64;
            self.histogram
                .iter()
                .enumerate()
                .map(|(i, &h)| {
                    let x = centre(i);
                    let xq = ((x / s).round() + z).clamp(qmin as f64, qmax as f64);
                    let d = (xq - z) * s - x;
                    h as f64 * d * d
                })
                .sum()
        };
        let (lo0, hi0) = (self.min as f64, self.max as f64);
        let mut best = (error(lo0, hi0), lo0, hi0);
        for k in 1..256 {
            let f = 1.0 - k as f64 / 256.0;
            let (lo, hi) = (lo0 * f, hi0 * f);
            let e = error(lo, hi);
            if e < best.0 {
                best = (e, lo, hi);
            }
        }
        (best.1 as f32, best.2 as f32)
    }
}

impl Observer {
    /// TensorRT's entropy calibration: the histogram folded onto `|x|`, then for each candidate
    /// threshold (from one quantized level's worth of bins up to all of them) the clipped
    /// distribution `P` (outliers added to its last bin) against `Q`, `P` merged into the
    /// available levels and spread back over the non-empty bins; the threshold of least
    /// `KL(P || Q)` wins. One-sided data (all values `>= 0` or `<= 0`) gets every level.
    fn entropy_search(&self, levels: usize) -> (f32, f32) {
        let amax = self.min.abs().max(self.max.abs()) as f64;
        if amax == 0.0 {
            return (self.min, self.max);
        }
        let width = (self.max - self.min) as f64 / BINS as f64;
        let mut abs = vec![0f64; BINS];
        for (i, &h) in self.histogram.iter().enumerate() {
            let c = (self.min as f64 + width * (i as f64 + 0.5)).abs();
            let b = ((c / amax) * BINS as f64) as usize;
            abs[b.min(BINS - 1)] += h as f64;
        }
        let one_sided = self.min >= 0.0 || self.max <= 0.0;
        let target = if one_sided { levels } else { levels / 2 }.max(2);
        let mut best = (f64::INFINITY, BINS);
        for i in target..=BINS {
            let mut p: Vec<f64> = abs[..i].to_vec();
            let outliers: f64 = abs[i..].iter().sum();
            if let Some(last) = p.last_mut() {
                *last += outliers;
            }
            // Merge the i bins into `target` levels, spread each level over its non-empty bins.
            let mut q = vec![0f64; i];
            for l in 0..target {
                let (a, b) = (l * i / target, ((l + 1) * i / target).max(l * i / target + 1).min(i));
                let mass: f64 = abs[a..b].iter().sum();
                let nonzero = abs[a..b].iter().filter(|&&x| x > 0.0).count();
                if nonzero > 0 {
                    for j in a..b {
                        if abs[j] > 0.0 {
                            q[j] = mass / nonzero as f64;
                        }
                    }
                }
            }
            let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
            if sp == 0.0 || sq == 0.0 {
                continue;
            }
            let mut kl = 0f64;
            for (&pj, &qj) in p.iter().zip(&q) {
                if pj > 0.0 {
                    // A bin Q leaves empty (its mass went to P's outlier bin) costs as if tiny.
                    let qn = (qj / sq).max(1e-12);
                    kl += (pj / sp) * ((pj / sp) / qn).ln();
                }
            }
            if kl < best.0 {
                best = (kl, i);
            }
        }
        let threshold = ((best.1 as f64 + 0.5) * amax / BINS as f64) as f32;
        (self.min.max(-threshold), self.max.min(threshold))
    }
}

/// `torch.histc(x, 2048, min, max)` on the CPU, in `f32`: values outside `[min, max]` are not
/// counted, the bin is `(x - min) * bins / (max - min)` truncated, the last edge belongs to
/// the last bin, and an empty range is widened by one on each side.
fn histc(x: &[f32], min: f32, max: f32) -> Vec<f32> {
    let (mut lo, mut hi) = (min, max);
    if lo == hi {
        lo -= 1.0;
        hi += 1.0;
    }
    let mut h = vec![0f32; BINS];
    let width = hi - lo;
    for &v in x {
        if !(v >= lo && v <= hi) {
            continue;
        }
        let mut pos = ((v - lo) * BINS as f32 / width) as usize;
        if pos >= BINS {
            pos = BINS - 1;
        }
        h[pos] += 1.0;
    }
    h
}

/// `torch.linspace(start, end, steps)` in `f32` (both halves computed from their own end).
fn linspace(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| if i < halfway { start + step * i as f32 } else { end - step * (steps - i - 1) as f32 })
        .collect()
}

/// PyTorch's `_upscale_histogram`: the old histogram spread over 16× finer bins, each mass
/// assigned by its mid-point to a bin of the new range.
fn upscale(hist: &[f32], orig_min: f32, orig_max: f32, new_min: f32, new_max: f32) -> Vec<f32> {
    let fine = BINS * UPSAMPLE;
    let bin_size = (orig_max - orig_min) / fine as f32;
    let mids = linspace(orig_min, orig_max, fine + 1);
    let bounds = linspace(new_min, new_max, BINS + 1);
    let mut out = vec![0f32; BINS];
    for (j, &m) in mids[..fine].iter().enumerate() {
        let mid = m + 0.5 * bin_size;
        // bucketize(right=True) - 1: the number of boundaries <= mid, less one.
        let count = bounds.partition_point(|&b| b <= mid);
        let bucket = (count as i64 - 1).clamp(0, BINS as i64 - 1) as usize;
        out[bucket] += hist[j / UPSAMPLE] / UPSAMPLE as f32;
    }
    out
}

/// PyTorch's floor division of floats (`div_floor_floating`).
fn div_floor(a: f32, b: f32) -> f32 {
    if b == 0.0 {
        return a / b;
    }
    let m = a % b;
    let mut div = (a - m) / b;
    if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
        div -= 1.0;
    }
    if div != 0.0 {
        let mut f = div.floor();
        if div - f > 0.5 {
            f += 1.0;
        }
        f
    } else {
        0f32.copysign(a / b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affine_parameters_follow_pytorch() {
        // min 0 (relu): zero point at qmin, scale max / 255.
        let q = affine_qparams(0.0, 2.55, -128, 127, SCALE_EPS);
        assert_eq!(q.zero_point, -128);
        assert!((q.scale - 0.01).abs() < 1e-7);
        // The range always contains zero; tiny ranges floor the scale at eps.
        let q = affine_qparams(1e-6, 2e-6, -128, 127, SCALE_EPS);
        assert_eq!(q.scale, SCALE_EPS);
        assert_eq!(q.zero_point, -128);
        assert_eq!(symmetric_scale(-2.54, 1.0, -127, 127, SCALE_EPS), 2.54 / 127.0);
    }

    #[test]
    fn minmax_sees_every_call() {
        let mut o = Observer::new(ObserverKind::MinMax);
        o.observe(&[0.5, 1.0]);
        o.observe(&[-2.0, f32::NAN, f32::INFINITY]);
        assert_eq!(o.min_max(), (-2.0, 1.0));
    }

    #[test]
    fn histogram_keeps_its_mass_and_range() {
        let mut o = Observer::new(ObserverKind::Histogram);
        let mut v: Vec<f32> = (0..10_000).map(|i| (i % 200) as f32 / 100.0 - 1.0).collect();
        v.push(50.0);
        o.observe(&v);
        let q = o.qparams(-128, 127);
        let (lo, hi) = q.range();
        // PyTorch's search moves one bin at a time and stops at the first step that costs more:
        // a lone far outlier is kept (as PT2E keeps it), the range never exceeds the data's.
        assert!(lo >= -1.0 - q.scale && hi <= 50.0 + q.scale && hi > 0.9, "{q:?}");
        // Growing the range keeps the mass: the histogram still sums to the count.
        o.observe(&[-3.0, 60.0]);
        let total: f32 = o.histogram.iter().sum();
        assert!((total - 10_003.0).abs() < 0.5, "{total}");
    }

    #[test]
    fn floor_division_matches_pytorch() {
        assert_eq!(div_floor(7.0, 2.0), 3.0);
        assert_eq!(div_floor(-7.0, 2.0), -4.0);
        assert_eq!(div_floor(-0.0, 2.0), -0.0);
    }
}
