//! What survives a run: the embedding cache (resume), the run record, and vector stores
//! (memory-mapped embedding rows for search).

pub mod bench;
pub mod cache;
pub mod partial;
pub mod run;
pub mod vectors;

pub use cache::EmbeddingCache;
pub use vectors::{StoreDtype, VectorStore, VectorWriter};
