//! The command line: one clap struct per command; every flag can also be set by an
//! environment variable (shown in `--help`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::engine::candle::Pooling;

#[derive(Debug, Parser)]
#[command(
    name = "assay",
    version,
    about = "Evaluate and benchmark embedding and generation models"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the task specs, one line each.
    Tasks(TasksArgs),
    /// Evaluate a model on tasks and write a run record under reports/<run-id>/.
    Run(RunArgs),
    /// Embedding throughput of the local engine next to onnxruntime on the same sentences.
    BenchEmbed(BenchEmbedArgs),
    /// Embed a task's inputs through two engines and compare vectors and scores.
    Parity(ParityArgs),
    /// Send one prompt to a chat or completion model and show the answer with its timing.
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub struct TasksArgs {
    /// Folder of task specs (*.toml).
    #[arg(long, env = "ASSAY_TASKS_DIR", default_value = "tasks")]
    pub tasks_dir: PathBuf,
}

/// How a model is run (local flags; remote ones are flattened in).
#[derive(Debug, Args, Clone)]
pub struct EngineArgs {
    /// cpu, cuda[:N] or metal.
    #[arg(long, env = "ASSAY_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Weight precision: f32, f16 or bf16.
    #[arg(long, env = "ASSAY_DTYPE", default_value = "f32")]
    pub dtype: String,
    /// Texts per forward pass.
    #[arg(long, env = "ASSAY_BATCH_SIZE", default_value_t = 32)]
    pub batch_size: usize,
    /// Compute threads (default: all cores).
    #[arg(long, env = "ASSAY_THREADS")]
    pub threads: Option<usize>,
    /// Override the model's pooling (mean, cls, last-token).
    #[arg(long, env = "ASSAY_POOLING")]
    pub pooling: Option<Pooling>,
    /// Override the model's truncation length in tokens.
    #[arg(long, env = "ASSAY_MAX_TOKENS")]
    pub max_tokens: Option<usize>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// How a remote (openai:) model is reached. The API key is never a flag value: it comes
/// from the environment variable named by --api-key-env, or from --api-key-file.
#[derive(Debug, Args, Clone)]
pub struct RemoteArgs {
    /// Environment variable holding the API key.
    #[arg(long, env = "ASSAY_API_KEY_ENV", default_value = "OPENAI_API_KEY")]
    pub api_key_env: String,
    /// File whose first line is the API key (instead of the environment variable).
    #[arg(long, env = "ASSAY_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Requests in flight at once.
    #[arg(long, env = "ASSAY_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,
    /// Seconds before one attempt of a request is abandoned (and retried).
    #[arg(long, env = "ASSAY_TIMEOUT", default_value_t = 60.0)]
    pub timeout: f64,
    /// Attempts per request before giving up.
    #[arg(long, env = "ASSAY_MAX_ATTEMPTS", default_value_t = 8)]
    pub max_attempts: u32,
    /// Seconds after which a request is not retried any more.
    #[arg(long, env = "ASSAY_MAX_RETRY_TIME", default_value_t = 300.0)]
    pub max_retry_time: f64,
    /// `float` or `base64` vectors in embedding responses.
    #[arg(long, env = "ASSAY_ENCODING_FORMAT", default_value = "float")]
    pub encoding_format: String,
    /// Ask the server for vectors of this size (models that support it).
    #[arg(long, env = "ASSAY_DIMENSIONS")]
    pub dimensions: Option<usize>,
    /// tokenizer.json of the served model: counts tokens when the server reports none.
    #[arg(long, env = "ASSAY_TOKENIZER")]
    pub tokenizer: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Task name (from the tasks folder) or path to a spec file; repeat for several.
    #[arg(
        long = "task",
        env = "ASSAY_TASKS",
        value_delimiter = ',',
        required = true
    )]
    pub tasks: Vec<String>,
    /// Model: dir:PATH, hf:ORG/NAME[@REV] or openai:BASE_URL#MODEL.
    #[arg(long, env = "ASSAY_MODEL")]
    pub model: String,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Folder holding datasets by name (stsb/, scifact/, ...); missing ones come from the hub.
    #[arg(long, env = "ASSAY_DATA", default_value = "datasets")]
    pub data_root: PathBuf,
    /// Folder of task specs (*.toml).
    #[arg(long, env = "ASSAY_TASKS_DIR", default_value = "tasks")]
    pub tasks_dir: PathBuf,
    /// Where run records go.
    #[arg(long, env = "ASSAY_REPORTS", default_value = "reports")]
    pub reports: PathBuf,
    /// Name of the run folder (default: time stamp and model name).
    #[arg(long, env = "ASSAY_RUN_ID")]
    pub run_id: Option<String>,
    /// Embedding cache folder (default: ~/.cache/assay).
    #[arg(long, env = "ASSAY_CACHE")]
    pub cache_dir: Option<PathBuf>,
    /// Recompute every vector and store nothing.
    #[arg(long, env = "ASSAY_NO_CACHE")]
    pub no_cache: bool,
    /// Bootstrap resamples for the 95% confidence intervals.
    #[arg(long, env = "ASSAY_BOOTSTRAP", default_value_t = 1000)]
    pub bootstrap: usize,
    /// Seed for the bootstrap.
    #[arg(long, env = "ASSAY_SEED", default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct BenchEmbedArgs {
    /// Local model: dir:PATH or hf:ORG/NAME[@REV].
    #[arg(long, env = "ASSAY_MODEL")]
    pub model: String,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// STS-B-layout folder to take the sentences from.
    #[arg(
        long,
        env = "ASSAY_BENCH_STSB",
        default_value = "../shared/assets/data/stsb"
    )]
    pub stsb: PathBuf,
    /// Number of distinct sentences (STS-B test, then dev, in file order).
    #[arg(long, env = "ASSAY_BENCH_SENTENCES", default_value_t = 2000)]
    pub sentences: usize,
    /// ONNX export of the same model for the onnxruntime reference.
    #[arg(
        long,
        env = "ASSAY_BENCH_ONNX",
        default_value = "../shared/assets/models/all-MiniLM-L6-v2/model.onnx"
    )]
    pub onnx: PathBuf,
    /// Python interpreter with onnxruntime, tokenizers and numpy (benches/requirements.txt).
    #[arg(long, env = "ASSAY_PYTHON", default_value = "python3")]
    pub python: String,
    /// Rounds, alternating assay and onnxruntime; medians are reported.
    #[arg(long, env = "ASSAY_BENCH_ROUNDS", default_value_t = 3)]
    pub rounds: usize,
    /// Skip the onnxruntime reference.
    #[arg(long, env = "ASSAY_BENCH_NO_REFERENCE")]
    pub no_reference: bool,
}

#[derive(Debug, Args)]
pub struct ParityArgs {
    /// The two models to compare (give --model twice): dir:, hf: or openai: references.
    #[arg(long = "model", required = true, num_args = 1)]
    pub models: Vec<String>,
    /// Task name or spec path; repeat for several.
    #[arg(
        long = "task",
        env = "ASSAY_TASKS",
        value_delimiter = ',',
        required = true
    )]
    pub tasks: Vec<String>,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[arg(long, env = "ASSAY_DATA", default_value = "datasets")]
    pub data_root: PathBuf,
    #[arg(long, env = "ASSAY_TASKS_DIR", default_value = "tasks")]
    pub tasks_dir: PathBuf,
    /// Exit with status 1 if any item's cosine falls below this.
    #[arg(long, env = "ASSAY_MIN_COSINE")]
    pub min_cosine: Option<f64>,
    /// Also write the comparison as JSON here.
    #[arg(long, env = "ASSAY_PARITY_OUT")]
    pub out: Option<PathBuf>,
    /// Items with the lowest cosine to list.
    #[arg(long, default_value_t = 5)]
    pub worst: usize,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Model: openai:BASE_URL#MODEL.
    #[arg(long, env = "ASSAY_MODEL")]
    pub model: String,
    /// The user message (or, with --completion, the raw prompt).
    #[arg(long)]
    pub prompt: String,
    /// A system message before the prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Use /completions with the raw prompt instead of /chat/completions.
    #[arg(long)]
    pub completion: bool,
    /// Wait for the whole answer instead of streaming it (no time to first token).
    #[arg(long)]
    pub no_stream: bool,
    #[arg(long, env = "ASSAY_MAX_NEW_TOKENS", default_value_t = 128)]
    pub max_new_tokens: u32,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    #[arg(long)]
    pub top_p: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop strings; repeat for several.
    #[arg(long)]
    pub stop: Vec<String>,
    /// Print the answer, token counts and timing as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
}
