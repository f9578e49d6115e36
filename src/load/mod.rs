//! Load generation for `assay bench`: when requests go out (`schedule`), what they carry
//! (`workload`), what runs them (`target`), the level loop (`runner`) and what the
//! records add up to (`stats`).

pub mod clock;
pub mod merge;
pub mod runner;
pub mod saturation;
pub mod schedule;
pub mod search;
pub mod stats;
pub mod target;
pub mod trace;
pub mod workload;
