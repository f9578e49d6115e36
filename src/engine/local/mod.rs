//! Local chat models: loading, chat templates and decoding; llama-family GGUF files with
//! legacy quantizations run on a native path with llama.cpp's arithmetic, the rest on candle.

pub mod arithmetic;
pub mod chat_template;
pub mod generator;
mod ggml_gelu;
mod ggml_ops;
pub mod gguf_header;
mod gguf_llama;
mod kquants;
mod workers;

pub use generator::LocalGenerator;
