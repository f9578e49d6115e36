//! What survives a run: the embedding cache (resume) and the run record.

pub mod bench;
pub mod cache;
pub mod partial;
pub mod run;

pub use cache::EmbeddingCache;
