//! Every level against plain references: GEMM tiles, depthwise rows, edge cases.

use super::*;

fn reference_gemm(a: &[f32], lda: usize, m: usize, k: usize, b: &[f32], n: usize, bias: &[f32]) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = f64::from(bias[j]);
            for p in 0..k {
                s += f64::from(a[i * lda + p]) * f64::from(b[p * n + j]);
            }
            c[i * n + j] = s as f32;
        }
    }
    c
}

/// Packing a row-major or a column-major matrix by runs gives the panels element-wise packing
/// gives, with and without a bias, at every level and ragged sizes.
#[test]
fn packing_by_rows_and_columns_matches_packing_by_element() {
    for level in Level::available() {
        for &(k, n) in &[(1, 1), (3, 5), (17, 33), (0, 40), (24, 0), (64, 97)] {
            let w: Vec<f32> = (0..k * n).map(|i| i as f32 * 0.25 - 3.0).collect();
            let bias: Vec<f32> = (0..n).map(|j| j as f32 / 3.0).collect();
            for b in [None, Some(bias.as_slice())] {
                let by_element = PackedB::new(level, k, n, b, |p, j| w[p * n + j]).unwrap();
                assert_eq!(PackedB::from_rows(level, k, n, b, &w).unwrap(), by_element, "{k}x{n}");
                let by_element = PackedB::new(level, k, n, b, |p, j| w[j * k + p]).unwrap();
                assert_eq!(PackedB::from_columns(level, k, n, b, &w).unwrap(), by_element, "{k}x{n}");
            }
        }
        assert!(PackedB::from_rows(level, 2, 3, None, &[0.0; 5]).is_err(), "wrong length");
    }
}

#[test]
fn gemm_matches_reference_at_every_level_and_edge() {
    for level in Level::available() {
        for &(m, k, n) in &[(1, 1, 1), (7, 3, 5), (9, 17, 33), (13, 0, 40), (65, 24, 17), (3, 64, 96)] {
            let lda = k + 2;
            let a: Vec<f32> = (0..m * lda).map(|i| ((i * 7 % 13) as f32 - 6.0) / 4.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 8.0).collect();
            let bias: Vec<f32> = (0..n).map(|j| j as f32 / 3.0).collect();
            let packed = PackedB::new(level, k, n, Some(&bias), |p, j| b[p * n + j]).unwrap();
            let mut c = vec![f32::NAN; m * n];
            gemm(&a, lda, m, &packed, &mut c, n, f32::NEG_INFINITY, f32::INFINITY).unwrap();
            let want = reference_gemm(&a, lda, m, k, &b, n, &bias);
            for (x, y) in c.iter().zip(&want) {
                assert!((x - y).abs() <= 1e-4 * y.abs().max(1.0), "{level:?} {m}x{k}x{n}: {x} vs {y}");
            }
            // Clamped, and the output's stride respected.
            let mut c2 = vec![7.0f32; m * (n + 3)];
            gemm(&a, lda, m, &packed, &mut c2, n + 3, -0.5, 0.5).unwrap();
            for i in 0..m {
                for j in 0..n + 3 {
                    let got = c2[i * (n + 3) + j];
                    if j < n {
                        assert!((got - want[i * n + j].clamp(-0.5, 0.5)).abs() <= 1e-4);
                    } else {
                        assert_eq!(got, 7.0, "wrote past the row");
                    }
                }
            }
        }
    }
}

#[test]
fn column_split_gemm_matches_the_whole_product() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    for level in Level::available() {
        for &(m, k, n, tasks) in &[(1, 7, 100, 3), (5, 16, 33, 2), (3, 4, 8, 5), (2, 9, 200, 64)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 4.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 8.0).collect();
            let bias: Vec<f32> = (0..n).map(|j| j as f32 / 7.0).collect();
            let packed = PackedB::new(level, k, n, Some(&bias), |p, j| b[p * n + j]).unwrap();
            let mut whole = vec![0.0f32; m * (n + 1)];
            gemm(&a, k, m, &packed, &mut whole, n + 1, -1.0, 2.0).unwrap();
            let mut split = vec![0.0f32; m * (n + 1)];
            pool.install(|| gemm_split_columns(&a, k, m, &packed, &mut split, n + 1, -1.0, 2.0, tasks)).unwrap();
            assert_eq!(whole, split, "{level:?} {m}x{k}x{n} in {tasks}");
        }
        let packed = PackedB::new(level, 2, 3, None, |_, _| 1.0).unwrap();
        assert!(gemm_split_columns(&[0.0; 3], 2, 2, &packed, &mut [0.0; 6], 3, 0.0, 1.0, 2).is_err());
    }
}

#[test]
fn clamp_keeps_nan() {
    for level in Level::available() {
        let packed = PackedB::new(level, 1, 3, None, |_, _| 1.0).unwrap();
        let a = [f32::NAN, 5.0];
        let mut c = [0.0f32; 6];
        gemm(&a, 1, 2, &packed, &mut c, 3, 0.0, 1.0).unwrap();
        assert!(c[..3].iter().all(|x| x.is_nan()), "{level:?}: {c:?}");
        assert_eq!(&c[3..], &[1.0, 1.0, 1.0]);
    }
}

#[test]
fn bad_bounds_are_errors() {
    let level = Level::Portable;
    let packed = PackedB::new(level, 4, 4, None, |_, _| 1.0).unwrap();
    let mut c = [0.0f32; 8];
    assert!(gemm(&[0.0; 7], 4, 2, &packed, &mut c, 4, 0.0, 1.0).is_err());
    assert!(gemm(&[0.0; 8], 4, 2, &packed, &mut c[..7], 4, 0.0, 1.0).is_err());
    assert!(gemm(&[0.0; 8], 3, 2, &packed, &mut c, 4, 0.0, 1.0).is_err());
    let dw = PackedDw::new(level, 3, 1, &[1.0; 3], None).unwrap();
    let g =
        Window { h: 2, w: 2, c: 3, oh: 2, ow: 2, kernel: [1, 1], stride: [1, 1], padding: [0, 0], dilation: [1, 1] };
    let mut y = [0.0f32; 6];
    assert!(dw_row(&[0.0; 11], &g, 0, &dw, &mut y, 0.0, 1.0).is_err());
    assert!(dw_row(&[0.0; 12], &g, 2, &dw, &mut y, 0.0, 1.0).is_err());
    assert!(dw_row(&[0.0; 12], &g, 1, &dw, &mut y, 0.0, 1.0).is_ok());
    // A band must hold every row the output row reads: row 1 of a 3-row window over 4 rows with
    // padding 1 reads rows 0..3.
    let dw = PackedDw::new(level, 3, 3, &[1.0; 9], None).unwrap();
    let g = Window { h: 4, kernel: [3, 1], padding: [1, 0], oh: 4, ..g };
    assert!(dw_row_band(&[0.0; 18], 0, &g, 1, &dw, &mut y, 0.0, 1.0).is_ok());
    assert!(dw_row_band(&[0.0; 17], 0, &g, 1, &dw, &mut y, 0.0, 1.0).is_err());
    assert!(dw_row_band(&[0.0; 18], 1, &g, 1, &dw, &mut y, 0.0, 1.0).is_err());
    // Row 3 reads rows 2..4: a band starting at row 2 holds them.
    assert!(dw_row_band(&[0.0; 12], 2, &g, 3, &dw, &mut y, 0.0, 1.0).is_ok());
    assert!(dw_row_band(&[0.0; 12], 3, &g, 3, &dw, &mut y, 0.0, 1.0).is_err());
}

#[test]
fn levels_parse_by_name() {
    for level in [Level::Avx512, Level::Avx2, Level::Neon, Level::Portable] {
        assert_eq!(Level::parse(level.name()), Some(level));
    }
    // NEON is part of every aarch64 target: the tests there must run it.
    #[cfg(target_arch = "aarch64")]
    assert_eq!(Level::available(), [Level::Neon, Level::Portable]);
    assert_eq!(Level::parse("sse9"), None);
    assert_eq!(Level::available().last(), Some(&Level::Portable));
}

/// Pooling windows accept PyTorch's padding (at most half the dilated window) and refuse more:
/// a window wholly in the padding has no input to pool.
#[test]
fn pooling_refuses_padding_beyond_half_the_window() {
    let ok = Window::pooling(&[1, 4, 4, 2], &[1, 3, 3, 2], [2, 2], [2, 2], [1, 1], [1, 1]);
    assert!(ok.is_some());
    let wide = Window::pooling(&[1, 4, 4, 2], &[1, 4, 4, 2], [2, 2], [2, 2], [2, 2], [1, 1]);
    assert!(wide.is_none(), "padding 2 on a 2-wide window");
    // Dilation widens the window: kernel 2 at dilation 3 spans 4, so padding 2 is allowed.
    let dilated = Window::pooling(&[1, 4, 4, 2], &[1, 3, 3, 2], [2, 2], [2, 2], [2, 2], [3, 3]);
    assert!(dilated.is_some());
}
