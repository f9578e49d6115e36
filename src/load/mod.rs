//! Load generation for `assay bench`: when requests go out (`schedule`), what they carry
//! (`workload`), what runs them (`target`), the level loop (`runner`), what the
//! records add up to (`stats`) and what the server's own metrics said (`scrape`).

pub mod clock;
pub mod energy;
pub mod merge;
pub mod runner;
pub mod saturation;
pub mod schedule;
pub mod scrape;
pub mod search;
pub mod stats;
pub mod target;
pub mod trace;
pub mod workload;
