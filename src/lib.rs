//! assay: evaluation and benchmarking harness for embedding and generation models.
//!
//! Data flows one way: task spec + dataset + model ref -> eval runner -> engine, then
//! scores and per-item samples -> run record under `reports/<run-id>/`.

pub mod cli;
pub mod commands;
pub mod cost;
pub mod cpu;
pub mod data;
pub mod engine;
pub mod error;
pub mod eval;
pub mod gate;
pub mod load;
pub mod metrics;
pub mod report;
pub mod sandbox;
pub mod search;
pub mod spec;
pub mod store;

pub use error::{Error, Result};
