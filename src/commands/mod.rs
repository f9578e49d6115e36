//! One module per CLI command: each turns parsed arguments into library calls and
//! prints what the user asked for.

pub mod bench_embed;
pub mod run;
pub mod tasks;

use candle_core::DType;

use crate::cli::EngineArgs;
use crate::engine::candle::{load_embedder, parse_device, BertOptions};
use crate::engine::Embedder;
use crate::error::{Error, Result};
use crate::spec::ModelRef;

/// Applies `--threads` before any compute pool starts (candle and rayon read it).
pub fn set_threads(threads: Option<usize>) {
    if let Some(n) = threads.filter(|&n| n > 0) {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
}

/// Loads the embedder named by `--model` with the engine flags.
pub fn load_local_embedder(args: &EngineArgs) -> Result<Box<dyn Embedder>> {
    let model: ModelRef = args.model.parse()?;
    let dtype = match args.dtype.as_str() {
        "f32" => DType::F32,
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        other => {
            return Err(Error::Usage(format!(
                "--dtype `{other}`: expected f32, f16 or bf16"
            )))
        }
    };
    let options = BertOptions {
        device: parse_device(&args.device)?,
        dtype,
        pooling: args.pooling,
        max_tokens: args.max_tokens,
        normalize: None,
    };
    load_embedder(&model, &options)
}
