//! Why a metric could not be computed. Metric code returns these instead of
//! panicking on bad input; they convert into the crate's [`crate::Error`].

/// Bad input to a metric, or a computation that cannot be scored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    #[error("{what}: input is empty")]
    Empty { what: &'static str },

    #[error("{what}: expected {expected} items, got {got}")]
    LengthMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },

    #[error("{what}: row {row} has {got} values, expected {expected}")]
    DimensionMismatch {
        what: &'static str,
        row: usize,
        expected: usize,
        got: usize,
    },

    /// NaN or infinity; `col` is set for matrix-shaped input.
    #[error("{what}: non-finite value at {}", position(*row, *col))]
    NonFinite {
        what: &'static str,
        row: usize,
        col: Option<usize>,
    },

    #[error("{what}: invalid label {label} at index {index} (expected 0 or 1)")]
    InvalidLabel {
        what: &'static str,
        index: usize,
        label: i64,
    },

    #[error("test label {label} (first seen at test row {row}) never occurs in the train split")]
    UnseenTestLabel { label: i64, row: usize },

    #[error("the training rows only have label {label}; logistic regression needs two or more")]
    SingleClass { label: i64 },

    #[error(
        "the labels are binary ({}, {}) but neither is 1, so average precision has no positive \
         class (scikit-learn raises here, and so does mteb)",
        labels[0], labels[1]
    )]
    NoPositiveLabel { labels: [i64; 2] },

    #[error("logistic regression produced non-finite coefficients in experiment {experiment}")]
    NumericalFailure { experiment: usize },

    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
}

fn position(row: usize, col: Option<usize>) -> String {
    match col {
        Some(col) => format!("row {row}, column {col}"),
        None => format!("index {row}"),
    }
}
