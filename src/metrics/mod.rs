//! Pure metric functions: plain vectors in, numbers out, no I/O.

pub mod answer;
pub mod bootstrap;
pub mod classification;
pub mod clustering;
pub mod correlation;
mod error;
pub mod image_text;
pub mod kmeans;
pub mod lbfgs;
pub mod logistic;
pub mod math_equiv;
pub mod numpy;
pub mod pair_classification;
pub mod pass_at_k;
pub mod quantile;
pub mod ranking;
pub mod rng;
pub mod summarization;
mod vectors;

pub use error::MetricError;
