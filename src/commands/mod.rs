//! One module per CLI command: each turns parsed arguments into library calls and
//! prints what the user asked for.

pub mod bench;
pub mod bench_decode;
pub mod bench_embed;
pub mod bench_harness;
pub mod bench_search;
pub mod generate;
pub mod grade;
pub mod merge;
pub mod parity;
pub mod report;
pub mod run;
pub mod tasks;

use candle_core::DType;

use std::sync::Arc;

use crate::cli::{EngineArgs, RemoteArgs};
use crate::engine::candle::{self, parse_device, LocalOptions};
use crate::engine::profile::Profile;
use std::time::Duration;

use crate::data::hub::HubRepo;
use crate::engine::local::LocalGenerator;
use crate::engine::openai::{
    Endpoint, RemoteEmbedder, RemoteGenerator, RemoteOptions, RetryPolicy, Secret,
};
use crate::engine::ModelRef;
use crate::engine::{Embedder, Generator};
use crate::error::{Error, Result};
use std::path::Path;

/// Applies `--threads` before any compute pool starts and returns how many batches to run
/// at once. On CPU each batch runs single-threaded and `threads` batches run side by side:
/// candle's intra-op threads spend more time waiting at barriers than computing on small
/// matrices (measured: 1 thread embeds 2.5x faster than 2 intra-op threads).
pub fn configure_threads(threads: Option<usize>, device: &str) -> usize {
    let threads = thread_count(threads);
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

/// A reference script under `benches/`: beside the working directory when run from the
/// repo, else in the source tree the binary was built from.
fn bench_script(name: &str) -> std::path::PathBuf {
    let local = Path::new("benches").join(name);
    if local.is_file() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("benches")
            .join(name)
    }
}

/// `--threads`, or every core when it is absent or 0.
fn thread_count(threads: Option<usize>) -> usize {
    threads
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Loads (or connects to) the embedder named by `model` with the engine flags.
/// `concurrency`: requests in flight at once for a remote engine.
pub fn load_embedder(
    model: &ModelRef,
    args: &EngineArgs,
    concurrency: usize,
) -> Result<Box<dyn Embedder>> {
    match model {
        ModelRef::OpenAi(endpoint) => {
            Ok(Box::new(load_remote_embedder(endpoint, args, concurrency)?))
        }
        local => load_local_embedder(local, args),
    }
}

/// Connects to a remote embedder.
pub fn load_remote_embedder(
    endpoint: &Endpoint,
    args: &EngineArgs,
    concurrency: usize,
) -> Result<RemoteEmbedder> {
    let (key, mut options) = remote_options(&args.remote, concurrency)?;
    // A served model's name is free text: only a named profile or an unmistakable
    // name (`e5-mistral-7b-instruct`, `Qwen3-Embedding-0.6B`) brings prompts.
    options.profile = match &args.profile {
        Some(name) => Some(Profile::named(name).ok_or_else(|| {
            Error::Usage(format!(
                "--profile `{name}`: expected one of {}",
                Profile::names().join(", ")
            ))
        })?),
        None => Profile::detect(&endpoint.model, ""),
    };
    RemoteEmbedder::connect(endpoint.clone(), key, options)
}

/// Loads (or connects to) the chat / completion model named by `model`.
pub fn load_generator(
    model: &ModelRef,
    args: &EngineArgs,
    concurrency: usize,
) -> Result<Box<dyn Generator>> {
    let device = parse_device(&args.device)?;
    let path = match model {
        ModelRef::OpenAi(endpoint) => {
            return Ok(Box::new(load_remote_generator(
                endpoint,
                &args.remote,
                concurrency,
            )?))
        }
        ModelRef::Dir { path } => path.clone(),
        ModelRef::Hf { repo, revision } => {
            // config, tokenizer and weights; the chat template lands beside them.
            let files = candle::ModelFiles::resolve(model)?;
            let _ = HubRepo::model(repo, revision.as_deref()).get("tokenizer_config.json");
            files
                .config
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        }
    };
    configure_generation_threads(args.threads, &args.device);
    Ok(Box::new(LocalGenerator::load(
        &path,
        args.remote.tokenizer.as_deref(),
        device,
    )?))
}

/// Decoding runs one sequence at a time: every thread goes to its matrix products.
pub fn configure_generation_threads(threads: Option<usize>, device: &str) {
    let threads = thread_count(threads);
    if device == "cpu" {
        std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
}

/// Connects to a chat / completion endpoint.
pub fn load_remote_generator(
    endpoint: &Endpoint,
    args: &RemoteArgs,
    concurrency: usize,
) -> Result<RemoteGenerator> {
    let (key, options) = remote_options(args, concurrency)?;
    RemoteGenerator::connect(endpoint.clone(), key, options)
}

/// The API key and connection settings from the remote flags. The key comes from a file
/// or an environment variable, never from a flag value.
fn remote_options(r: &RemoteArgs, concurrency: usize) -> Result<(Option<Secret>, RemoteOptions)> {
    let key = match &r.api_key_file {
        Some(path) => Some(Secret::from_file(path)?),
        None => Secret::from_env(&r.api_key_env),
    };
    let base64 = match r.encoding_format.as_str() {
        "float" => false,
        "base64" => true,
        other => {
            return Err(Error::Usage(format!(
                "--encoding-format `{other}`: expected float or base64"
            )))
        }
    };
    let seconds = |v: f64, flag: &str| {
        Duration::try_from_secs_f64(v)
            .map_err(|_| Error::Usage(format!("{flag} must be a positive number of seconds")))
    };
    let tokenizer = match &r.tokenizer {
        Some(path) => Some(Arc::new(crate::engine::candle::load::read_tokenizer(path)?)),
        None => None,
    };
    let options = RemoteOptions {
        concurrency: concurrency.max(1),
        timeout: seconds(r.timeout, "--timeout")?,
        base64,
        dimensions: r.dimensions,
        retry: RetryPolicy {
            max_attempts: r.max_attempts.max(1),
            max_elapsed: seconds(r.max_retry_time, "--max-retry-time")?,
            ..RetryPolicy::default()
        },
        tokenizer,
        profile: None,
        max_response_bytes: r.max_response_bytes,
    };
    Ok((key, options))
}

/// Loads the local (candle) embedder named by `model` with the engine flags.
pub fn load_local_embedder(model: &ModelRef, args: &EngineArgs) -> Result<Box<dyn Embedder>> {
    let workers = configure_threads(args.threads, &args.device);
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
    let options = LocalOptions {
        device: parse_device(&args.device)?,
        dtype,
        pooling: args.pooling,
        max_tokens: args.max_tokens,
        normalize: None,
        workers,
        profile: args.profile.clone(),
    };
    candle::load_embedder(model, &options)
}
