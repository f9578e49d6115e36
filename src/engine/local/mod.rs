//! Local chat models run with candle: loading, chat templates and decoding.

pub mod chat_template;
pub mod generator;

pub use generator::LocalGenerator;
