//! float32 vector helpers shared by the MTEB metric modules.
//!
//! Reductions accumulate in f64 and round once to f32. The reference runs them
//! in f32 through SIMD/BLAS kernels whose summation order is not reproducible;
//! an almost correctly rounded f32 result is the nearest stand-in and differs
//! from theirs by a few ulps at most.

use super::MetricError;

/// Checks that `rows` is non-empty and rectangular with a non-zero width;
/// returns the width. Values are not looked at.
pub(crate) fn check_shape<R: AsRef<[f32]>>(
    what: &'static str,
    rows: &[R],
) -> Result<usize, MetricError> {
    let first = rows.first().ok_or(MetricError::Empty { what })?;
    let dim = first.as_ref().len();
    if dim == 0 {
        return Err(MetricError::InvalidParameter(format!(
            "{what}: embeddings have dimension 0"
        )));
    }
    for (row, r) in rows.iter().enumerate() {
        let got = r.as_ref().len();
        if got != dim {
            return Err(MetricError::DimensionMismatch {
                what,
                row,
                expected: dim,
                got,
            });
        }
    }
    Ok(dim)
}

/// Errors on the first NaN or infinity in `values`, which is row `row` of `what`.
pub(crate) fn check_finite_row(
    what: &'static str,
    row: usize,
    values: &[f32],
) -> Result<(), MetricError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(col) => Err(MetricError::NonFinite {
            what,
            row,
            col: Some(col),
        }),
        None => Ok(()),
    }
}

/// [`check_shape`] plus finiteness of every value; returns the width.
pub(crate) fn check_rows<R: AsRef<[f32]>>(
    what: &'static str,
    rows: &[R],
) -> Result<usize, MetricError> {
    let dim = check_shape(what, rows)?;
    for (row, r) in rows.iter().enumerate() {
        check_finite_row(what, row, r.as_ref())?;
    }
    Ok(dim)
}

pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum::<f64>() as f32
}

pub(crate) fn sq_norm_f32(a: &[f32]) -> f32 {
    dot_f32(a, a)
}

/// scikit-learn's `normalize(X)` for one f32 row: divide by the L2 norm, a norm
/// below `10 * f32::EPSILON` counting as 1.
pub(crate) fn sklearn_normalize(a: &[f32]) -> Vec<f32> {
    let mut norm = sq_norm_f32(a).sqrt();
    if norm < 10.0 * f32::EPSILON {
        norm = 1.0;
    }
    a.iter().map(|&x| x / norm).collect()
}

/// torch's `F.normalize(x, p=2, eps=1e-12)` for one f32 row.
pub(crate) fn torch_normalize(a: &[f32]) -> Vec<f32> {
    let norm = sq_norm_f32(a).sqrt().max(1e-12);
    a.iter().map(|&x| x / norm).collect()
}

/// Cosine similarity as mteb's torch helpers compute it: both rows normalised
/// the torch way, then an f32 dot product.
pub(crate) fn torch_cosine(a: &[f32], b: &[f32]) -> f32 {
    dot_f32(&torch_normalize(a), &torch_normalize(b))
}
