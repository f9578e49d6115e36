//! Pure metric functions: plain vectors in, numbers out, no I/O.

pub mod answer;
pub mod bootstrap;
pub mod correlation;
pub mod image_text;
pub mod math_equiv;
pub mod quantile;
pub mod ranking;
