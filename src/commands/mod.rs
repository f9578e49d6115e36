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

/// Applies `--threads` before any compute pool starts and returns how many batches to run
/// at once. On CPU each batch runs single-threaded and `threads` batches run side by side:
/// candle's intra-op threads spend more time waiting at barriers than computing on small
/// matrices (measured: 1 thread embeds 2.5x faster than 2 intra-op threads).
pub fn configure_threads(threads: Option<usize>, device: &str) -> usize {
    let threads = threads
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // Read by candle (its barrier pool and gemm) and rayon when they first start.
    if device == "cpu" {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
        std::env::set_var("RAYON_NUM_THREADS", "1");
        threads
    } else {
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
        1
    }
}

/// Loads the embedder named by `--model` with the engine flags.
pub fn load_local_embedder(args: &EngineArgs) -> Result<Box<dyn Embedder>> {
    let workers = configure_threads(args.threads, &args.device);
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
        workers,
    };
    load_embedder(&model, &options)
}
