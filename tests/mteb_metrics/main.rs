//! The MTEB metric modules (`assay::metrics::{classification, logistic,
//! pair_classification, clustering, kmeans, summarization, correlation, rng}`)
//! against their Python references. Fixtures and the two scripts that wrote them
//! (numpy 2.4.6, scipy 1.17.1, scikit-learn 1.9.1) are in
//! `tests/fixtures/mteb_metrics`.

mod classification;
mod clustering;
mod correlation;
mod fixtures;
mod pair_classification;
mod rng;
mod summarization;
