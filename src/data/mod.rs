//! Dataset loaders: each turns files in a standard layout into a typed dataset, and
//! reports malformed input with the file, line and field.

pub mod beir;
pub mod code;
pub mod generation;
pub mod gpqa;
pub mod hub;
pub mod image_text;
pub mod lines;
pub mod livecodebench;
pub mod source;
pub mod sts;
pub mod table;

pub use beir::{BeirDataset, Document, Query};
pub use source::DataSource;
pub use sts::{StsDataset, StsPair};
