//! Task specs (`tasks/*.toml`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One evaluation task, as written in `tasks/<name>.toml`: common fields, and one
/// section naming the family (`[sts]`, `[retrieval]`, ...) with its settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "SpecFile", into = "SpecFile")]
pub struct TaskSpec {
    /// Short name used on the command line (`--task stsb`).
    pub name: String,
    /// Name in the MTEB results layout (`mteb/<mteb_name>.json`), if the task is an MTEB task.
    pub mteb_name: Option<String>,
    pub description: String,
    pub dataset: DatasetSpec,
    pub kind: TaskKind,
}

/// Every task family, once: its variant and settings type, the section that names it in
/// a spec file, and its name in records. Adding a family is one line here (plus its
/// settings struct and its `eval` file).
macro_rules! families {
    ($($(#[$doc:meta])* $variant:ident($settings:ty) = $section:literal, $family:literal;)*) => {
        /// The task family and its settings: which eval runner drives the task.
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum TaskKind {
            $($(#[$doc])* $variant($settings),)*
        }

        impl TaskKind {
            /// The family's name in records and listings.
            pub fn family(&self) -> &'static str {
                match self {
                    $(TaskKind::$variant(_) => $family,)*
                }
            }

            /// The section that names this family in a spec file.
            fn section(&self) -> &'static str {
                match self {
                    $(TaskKind::$variant(_) => $section,)*
                }
            }

            /// Every family section, for error messages.
            const SECTIONS: &'static [&'static str] = &[$($section),*];
        }

        /// A spec file as written: the family is whichever one section is present. Keeps
        /// the TOML files flat (`[sts]` beside `[dataset]`) and unknown keys an error.
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(non_snake_case)]
        struct SpecFile {
            name: String,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            mteb_name: Option<String>,
            description: String,
            dataset: DatasetSpec,
            $(
                #[serde(default, skip_serializing_if = "Option::is_none", rename = $section)]
                $variant: Option<$settings>,
            )*
        }

        impl SpecFile {
            /// The family sections present.
            fn kinds(self) -> (SpecFile, Vec<TaskKind>) {
                let mut f = self;
                let mut kinds = Vec::new();
                $(kinds.extend(f.$variant.take().map(TaskKind::$variant));)*
                (f, kinds)
            }

            fn with_kind(mut self, kind: TaskKind) -> SpecFile {
                match kind {
                    $(TaskKind::$variant(x) => self.$variant = Some(x),)*
                }
                self
            }

            fn empty(name: String, mteb_name: Option<String>, description: String, dataset: DatasetSpec) -> SpecFile {
                SpecFile {
                    name,
                    mteb_name,
                    description,
                    dataset,
                    $($variant: None,)*
                }
            }
        }
    };
}

families! {
    Sts(StsSpec) = "sts", "sts";
    Retrieval(RetrievalSpec) = "retrieval", "retrieval";
    /// Retrieval restricted to each query's candidate list (`top_ranked`).
    Reranking(RetrievalSpec) = "reranking", "reranking";
    Classification(ClassificationSpec) = "classification", "classification";
    PairClassification(PairClassificationSpec) = "pair_classification", "pair-classification";
    Clustering(ClusteringSpec) = "clustering", "clustering";
    Summarization(SummarizationSpec) = "summarization", "summarization";
    ImageText(ImageTextSpec) = "image_text", "image-text";
    MmluPro(MmluProSpec) = "mmlu_pro", "mmlu-pro";
    Gsm8k(Gsm8kSpec) = "gsm8k", "gsm8k";
    Math(MathSpec) = "math", "math";
    /// Code written by the model and graded by running it against tests.
    Code(CodeSpec) = "code", "code";
    /// GPQA four-way multiple choice, as simple-evals asks and grades it.
    Gpqa(GpqaSpec) = "gpqa", "gpqa";
}

impl TaskKind {
    /// Whether the task is answered by generating text (else by embedding).
    pub fn generates(&self) -> bool {
        matches!(
            self,
            TaskKind::MmluPro(_)
                | TaskKind::Gsm8k(_)
                | TaskKind::Math(_)
                | TaskKind::Code(_)
                | TaskKind::Gpqa(_)
        )
    }
}

impl TryFrom<SpecFile> for TaskSpec {
    type Error = String;

    fn try_from(f: SpecFile) -> std::result::Result<Self, String> {
        let (f, mut kinds) = f.kinds();
        if kinds.len() > 1 {
            let names: Vec<String> = kinds.iter().map(|k| format!("[{}]", k.section())).collect();
            return Err(format!(
                "has {}: a task belongs to one family",
                names.join(" and ")
            ));
        }
        let kind = kinds.pop().ok_or_else(|| {
            let sections: Vec<String> = TaskKind::SECTIONS
                .iter()
                .map(|s| format!("[{s}]"))
                .collect();
            format!("needs one family section: {}", sections.join(", "))
        })?;
        Ok(TaskSpec {
            name: f.name,
            mteb_name: f.mteb_name,
            description: f.description,
            dataset: f.dataset,
            kind,
        })
    }
}

impl From<TaskSpec> for SpecFile {
    fn from(t: TaskSpec) -> SpecFile {
        SpecFile::empty(t.name, t.mteb_name, t.description, t.dataset).with_kind(t.kind)
    }
}

/// Image-text retrieval: captions retrieve images and images retrieve captions, scored
/// with CLIP_benchmark's recall@k.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageTextSpec {
    /// Karpathy layout: the split file (`dataset_coco.json`), relative to the dataset folder.
    #[serde(default)]
    pub file: Option<String>,
    /// Karpathy layout: where the images are, relative to the dataset folder.
    #[serde(default)]
    pub images: Option<String>,
    #[serde(default = "default_recall_ks")]
    pub k_values: Vec<usize>,
    /// `image_retrieval_recall@K` (caption → image) or `text_retrieval_recall@K`.
    #[serde(default = "default_image_text_main")]
    pub main_score: String,
    /// Instruction for the caption queries of instruction-following embedders.
    #[serde(default)]
    pub instruction: Option<String>,
}

fn default_recall_ks() -> Vec<usize> {
    vec![1, 5, 10]
}

fn default_image_text_main() -> String {
    "image_retrieval_recall@5".into()
}

/// GPQA: simple-evals' prompt and `Answer: X` extraction, the four choices shuffled by a
/// seeded generator on every repeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpqaSpec {
    /// `main`, `diamond` or `extended`: the CSV is `gpqa_<variant>.csv`.
    pub variant: String,
    /// The authors' password-protected archive in the dataset folder, read when the CSV
    /// is not there extracted.
    #[serde(default = "default_gpqa_zip")]
    pub zip: String,
    /// Passes over the questions, each with its own shuffle (`--repeats` overrides).
    #[serde(default = "default_gpqa_repeats")]
    pub repeats: usize,
    #[serde(default = "default_gpqa_tokens")]
    pub max_tokens: u32,
}

fn default_gpqa_zip() -> String {
    "dataset.zip".into()
}

fn default_gpqa_repeats() -> usize {
    1
}

fn default_gpqa_tokens() -> u32 {
    2048
}

/// Which code benchmark's layout, prompts and checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodeBenchmark {
    /// HumanEval: complete a function; `check(entry_point)` runs its asserts.
    Humaneval,
    /// MBPP: write a function from a statement and three asserts.
    Mbpp,
    /// LiveCodeBench: a contest problem, tested on standard input/output or by calling a
    /// method of `class Solution`.
    Livecodebench,
}

/// Code generation graded by execution in the sandbox, scored by pass@k.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeSpec {
    pub benchmark: CodeBenchmark,
    #[serde(default = "default_code_tokens")]
    pub max_tokens: u32,
    /// pass@k reported for each k not above `--samples`.
    #[serde(default = "default_pass_ks")]
    pub k_values: Vec<usize>,
    /// Only problems whose numeric task id is in `[low, high]` (MBPP's test split is
    /// 11–510 of the full file).
    #[serde(default)]
    pub task_ids: Option<[u64; 2]>,
    /// Wall-clock seconds per program (its tests included); for LiveCodeBench, per test
    /// case, as its grader times each one.
    #[serde(default = "default_code_timeout")]
    pub timeout_seconds: f64,
    /// LiveCodeBench: the version tag (`release_v1` ... `release_latest`, `v2`, `v1_v3`).
    #[serde(default)]
    pub release: Option<String>,
    /// LiveCodeBench: only contests on or after / on or before this day (`YYYY-MM-DD`).
    #[serde(default)]
    pub start_date: Option<String>,
    #[serde(default)]
    pub end_date: Option<String>,
}

fn default_code_tokens() -> u32 {
    512
}

fn default_pass_ks() -> Vec<usize> {
    vec![1, 10, 100]
}

fn default_code_timeout() -> f64 {
    10.0
}

/// MATH-style problems: zero-shot, the answer is the last `\boxed{}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MathSpec {
    #[serde(default = "default_math_tokens")]
    pub max_tokens: u32,
}

fn default_math_tokens() -> u32 {
    1024
}

/// MMLU-Pro as the official evaluation runs it: CoT prompt, stop at "Question:".
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MmluProSpec {
    /// Few-shot CoT examples per question, from the validation split when present.
    #[serde(default = "default_shots")]
    pub shots: usize,
    /// File of the validation split (relative to the dataset folder).
    #[serde(default)]
    pub validation_file: Option<String>,
    /// The same in the hub repository, when its layout differs.
    #[serde(default)]
    pub hub_validation_file: Option<String>,
    /// `max_tokens` per answer (the official evaluation allows 2048).
    #[serde(default = "default_mmlu_pro_tokens")]
    pub max_tokens: u32,
}

/// GSM8K: zero-shot chain of thought, answers read strictly (`#### N`) and flexibly.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gsm8kSpec {
    #[serde(default = "default_gsm8k_tokens")]
    pub max_tokens: u32,
}

fn default_shots() -> usize {
    5
}
fn default_mmlu_pro_tokens() -> u32 {
    2048
}
fn default_gsm8k_tokens() -> u32 {
    512
}

/// Where a task's data comes from: a folder under the data root, else the hub.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// Folder name under the data root (`--data-root`), e.g. `stsb`.
    pub local: String,
    /// Hub dataset id used when the local copy is absent, e.g. `mteb/stsbenchmark-sts`.
    #[serde(default)]
    pub hub: Option<String>,
    /// Hub revision (branch, tag or commit); `main` when absent.
    #[serde(default)]
    pub hub_revision: Option<String>,
    pub split: String,
    pub format: DatasetFormat,
    /// File (relative to the dataset folder, local or hub) holding the split when the
    /// format is a generic table; `{split}` is replaced by the split name.
    #[serde(default)]
    pub file: Option<String>,
    /// The same for the hub copy, when its layout differs from the local one.
    #[serde(default)]
    pub hub_file: Option<String>,
    /// Field separator of a delimited table when the extension does not say it
    /// (`.csv` is `,`, `.tsv` and `.txt` are tab).
    #[serde(default)]
    pub delimiter: Option<char>,
    /// Column names of a delimited table without a header row.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Whether `"` quotes fields of a delimited table (CSV-style); false reads quotes as
    /// text.
    #[serde(default = "yes")]
    pub quoting: bool,
    /// Columns renamed when read from the hub (hub name → the name the task uses), for
    /// hub copies whose columns differ from the local files'.
    #[serde(default)]
    pub hub_rename: std::collections::BTreeMap<String, String>,
    /// Subsets scored separately (e.g. languages), each replacing `{subset}` in `file`
    /// (by its `local` value when given) and in `hub_file` (by its name).
    #[serde(default)]
    pub subsets: Vec<SubsetSpec>,
}

/// One separately scored part of a dataset.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubsetSpec {
    /// Name in scores and in the hub layout, e.g. `en`.
    pub name: String,
    /// What `{subset}` becomes in local file names, when it differs (e.g. `EN`).
    #[serde(default)]
    pub local: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetFormat {
    /// STS Benchmark's own tab-separated files (`sts-<split>.csv`).
    StsbTsv,
    /// A table (TSV, CSV, JSONL or Parquet, by file extension) with named columns.
    Table,
    /// BEIR: `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`.
    Beir,
    /// One JSON record per line, fields as the task family expects.
    Jsonl,
    /// COCO captions: `annotations/captions_<split>.json`, images in `<split>/`.
    CocoCaptions,
    /// Karpathy splits (COCO 5k, Flickr30k 1k): one JSON file of images with sentences.
    Karpathy,
}

/// Columns and score range of an STS table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StsSpec {
    #[serde(default = "default_sentence1")]
    pub sentence1: String,
    #[serde(default = "default_sentence2")]
    pub sentence2: String,
    #[serde(default = "default_score")]
    pub score: String,
    /// Gold score range, e.g. `[0, 5]`; scores are scaled to [0, 1] (Spearman is unaffected).
    pub score_range: [f64; 2],
    /// Instruction for instruction-following embedders (MTEB's text for the task).
    #[serde(default)]
    pub instruction: Option<String>,
}

fn default_sentence1() -> String {
    "sentence1".into()
}
fn default_sentence2() -> String {
    "sentence2".into()
}
fn default_score() -> String {
    "score".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrievalSpec {
    /// Cut-offs for every ranking measure.
    #[serde(default = "default_k_values")]
    pub k_values: Vec<usize>,
    /// Drop a retrieved doc whose id equals the query id (MTEB does this for some tasks).
    #[serde(default)]
    pub ignore_identical_ids: bool,
    /// The headline measure, e.g. `ndcg_at_10`.
    #[serde(default = "default_main_score")]
    pub main_score: String,
    /// Instruction for instruction-following embedders (MTEB's text for the task).
    #[serde(default)]
    pub query_instruction: Option<String>,
    /// Separator between a document's title and text (sentence-transformers uses a space).
    #[serde(default = "default_title_separator")]
    pub title_separator: String,
    /// Reranking: JSONL file (in the dataset folder; `{split}` replaced) of each query's
    /// candidates, `{"query-id": ..., "corpus-ids": [...]}` as mteb v2 stores them.
    #[serde(default)]
    pub top_ranked: Option<String>,
}

fn default_k_values() -> Vec<usize> {
    vec![1, 3, 5, 10, 20, 100, 1000]
}
fn default_main_score() -> String {
    "ndcg_at_10".into()
}
fn default_title_separator() -> String {
    " ".into()
}

/// Classification by a linear probe on frozen embeddings (MTEB's protocol).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassificationSpec {
    #[serde(default = "default_text")]
    pub text: String,
    #[serde(default = "default_label")]
    pub label: String,
    /// Split the probe is trained on (the dataset's `split` is scored).
    #[serde(default = "default_train_split")]
    pub train_split: String,
    /// Training rows drawn per label in each experiment (mteb: 8; Emotion 16).
    #[serde(default = "default_samples_per_label")]
    pub samples_per_label: usize,
    #[serde(default = "default_experiments")]
    pub n_experiments: usize,
    /// Seed of mteb's undersampling (numpy `RandomState`).
    #[serde(default = "default_task_seed")]
    pub seed: u32,
    /// Logistic regression's iteration budget (sklearn's default, 100).
    #[serde(default = "default_max_iter")]
    pub max_iter: usize,
    #[serde(default)]
    pub instruction: Option<String>,
}

/// Pair classification: is each sentence pair a positive (paraphrase, duplicate)?
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairClassificationSpec {
    #[serde(default = "default_sentence1")]
    pub sentence1: String,
    #[serde(default = "default_sentence2")]
    pub sentence2: String,
    #[serde(default = "default_label")]
    pub label: String,
    #[serde(default)]
    pub label_format: PairLabelFormat,
    #[serde(default)]
    pub instruction: Option<String>,
}

/// How a pair's label is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairLabelFormat {
    /// `0` or `1`.
    #[default]
    Binary,
    /// Annotator votes `(n,6)` as in the Twitter URL and PIT-2015 corpora: positive
    /// when n >= 4, negative when n <= 2, and a tie (n = 3) is left out.
    Votes,
}

/// Clustering: k-means with k = number of labels, scored by v-measure (mteb's
/// current evaluator: bootstrap draws of the embedded documents).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusteringSpec {
    #[serde(default = "default_text")]
    pub text: String,
    #[serde(default = "default_label")]
    pub label: String,
    #[serde(default = "default_task_seed")]
    pub seed: u32,
    /// Fraction of documents embedded (mteb's default 0.04; absent embeds all).
    #[serde(default)]
    pub max_fraction_of_documents_to_embed: Option<f64>,
    /// Documents drawn (with replacement) for each experiment.
    #[serde(default = "default_documents_per_experiment")]
    pub max_documents_per_cluster: usize,
    #[serde(default = "default_experiments")]
    pub n_experiments: usize,
    #[serde(default = "default_kmeans_batch")]
    pub k_mean_batch_size: usize,
    #[serde(default)]
    pub instruction: Option<String>,
}

/// Summarization: machine summaries scored by their closest human summary, correlated
/// with expert scores per article.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummarizationSpec {
    #[serde(default = "default_human_summaries")]
    pub human_summaries: String,
    #[serde(default = "default_machine_summaries")]
    pub machine_summaries: String,
    /// The expert score list correlated against (one per machine summary).
    #[serde(default = "default_relevance")]
    pub score: String,
    /// Range of the expert scores (min-max normalised as mteb does).
    pub score_range: [f64; 2],
    #[serde(default)]
    pub instruction: Option<String>,
}

fn default_text() -> String {
    "text".into()
}
fn default_label() -> String {
    "label".into()
}
fn default_train_split() -> String {
    "train".into()
}
fn default_samples_per_label() -> usize {
    8
}
fn default_experiments() -> usize {
    10
}
fn default_task_seed() -> u32 {
    42
}
fn default_max_iter() -> usize {
    100
}
fn default_documents_per_experiment() -> usize {
    16_384
}
fn default_kmeans_batch() -> usize {
    512
}
fn default_human_summaries() -> String {
    "human_summaries".into()
}
fn default_machine_summaries() -> String {
    "machine_summaries".into()
}
fn default_relevance() -> String {
    "relevance".into()
}

impl TaskSpec {
    /// Reads and checks one spec file.
    pub fn load(path: &Path) -> Result<TaskSpec> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        TaskSpec::parse(path, &bytes)
    }

    /// A spec file's bytes (`path` names it in errors).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<TaskSpec> {
        let text = utf8(path, bytes)?;
        let spec: TaskSpec = toml::from_str(text).map_err(|e| Error::Spec {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        spec.check().map_err(|message| Error::Spec {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(spec)
    }

    /// The family's name in records and listings (`sts`, `retrieval`, ...).
    pub fn family(&self) -> &'static str {
        self.kind.family()
    }

    /// Checks that the family's settings fit together and fit the dataset format.
    fn check(&self) -> std::result::Result<(), String> {
        let format = self.dataset.format;
        match &self.kind {
            TaskKind::MmluPro(_) | TaskKind::Gsm8k(_) | TaskKind::Math(_) => {
                if format != DatasetFormat::Jsonl {
                    return Err("a generation task needs format jsonl".into());
                }
            }
            TaskKind::Gpqa(g) => {
                if format != DatasetFormat::Table {
                    return Err("a GPQA task needs format table (its CSV)".into());
                }
                if !["main", "diamond", "extended"].contains(&g.variant.as_str()) {
                    return Err(format!(
                        "[gpqa] variant `{}`: expected main, diamond or extended",
                        g.variant
                    ));
                }
                if g.repeats == 0 {
                    return Err("[gpqa] repeats must be at least 1".into());
                }
            }
            TaskKind::Code(c) => {
                if format != DatasetFormat::Jsonl {
                    return Err("a code task needs format jsonl".into());
                }
                if c.k_values.is_empty() || c.k_values.contains(&0) {
                    return Err("[code] k_values must be at least 1 each".into());
                }
                if !(c.timeout_seconds > 0.0 && c.timeout_seconds.is_finite()) {
                    return Err(format!(
                        "[code] timeout_seconds must be positive, got {}",
                        c.timeout_seconds
                    ));
                }
                let filters = c.release.is_some() || c.start_date.is_some() || c.end_date.is_some();
                if c.benchmark == CodeBenchmark::Livecodebench {
                    if let Some(tag) = &c.release {
                        crate::data::livecodebench::release_files(tag)
                            .map_err(|e| format!("[code] {e}"))?;
                    }
                    for day in [&c.start_date, &c.end_date].into_iter().flatten() {
                        crate::data::livecodebench::parse_day(day)
                            .map_err(|e| format!("[code] {e}"))?;
                    }
                } else if filters {
                    return Err(
                        "[code] release, start_date and end_date are LiveCodeBench's".into(),
                    );
                }
            }
            TaskKind::ImageText(it) => {
                let valid = it.main_score.rsplit_once('@').is_some_and(|(m, k)| {
                    ["image_retrieval_recall", "text_retrieval_recall"].contains(&m)
                        && k.parse().is_ok_and(|k: usize| it.k_values.contains(&k))
                });
                if !valid {
                    return Err(format!(
                        "main_score `{}` must be image_retrieval_recall@K or text_retrieval_recall@K with K in k_values {:?}",
                        it.main_score, it.k_values
                    ));
                }
                match format {
                    DatasetFormat::CocoCaptions => {}
                    DatasetFormat::Karpathy if it.file.is_some() => {}
                    DatasetFormat::Karpathy => {
                        return Err(
                            "a karpathy task names its split file in [image_text] file".into()
                        )
                    }
                    _ => {
                        return Err(
                            "an image-text task needs format coco-captions or karpathy".into()
                        )
                    }
                }
            }
            TaskKind::Sts(_) => {
                if !matches!(format, DatasetFormat::StsbTsv | DatasetFormat::Table) {
                    return Err("an STS task needs format stsb-tsv or table".into());
                }
            }
            TaskKind::Classification(c) => {
                table_format(format)?;
                if c.samples_per_label == 0 || c.n_experiments == 0 || c.max_iter == 0 {
                    return Err(
                        "[classification] samples_per_label, n_experiments and max_iter must be at least 1"
                            .into(),
                    );
                }
            }
            TaskKind::PairClassification(_) => table_format(format)?,
            TaskKind::Clustering(c) => {
                table_format(format)?;
                if let Some(f) = c.max_fraction_of_documents_to_embed {
                    if !(f > 0.0 && f <= 1.0) {
                        return Err(format!(
                            "[clustering] max_fraction_of_documents_to_embed must be in (0, 1], got {f}"
                        ));
                    }
                }
                if c.max_documents_per_cluster == 0
                    || c.n_experiments == 0
                    || c.k_mean_batch_size == 0
                {
                    return Err(
                        "[clustering] max_documents_per_cluster, n_experiments and k_mean_batch_size must be at least 1"
                            .into(),
                    );
                }
            }
            TaskKind::Summarization(s) => {
                table_format(format)?;
                if s.score_range[0] >= s.score_range[1]
                    || s.score_range.iter().any(|x| !x.is_finite())
                {
                    return Err(format!(
                        "[summarization] score_range must be [low, high] with low < high, got {:?}",
                        s.score_range
                    ));
                }
            }
            TaskKind::Retrieval(r) | TaskKind::Reranking(r) => {
                if format != DatasetFormat::Beir {
                    return Err("a retrieval or reranking task needs format beir".into());
                }
                match (&self.kind, &r.top_ranked) {
                    (TaskKind::Reranking(_), None) => {
                        return Err("[reranking] names its candidate lists in `top_ranked`".into())
                    }
                    (TaskKind::Retrieval(_), Some(_)) => {
                        return Err(
                            "`top_ranked` belongs to a [reranking] task, not [retrieval]".into(),
                        )
                    }
                    _ => {}
                }
                let known = ["ndcg", "map", "mrr", "recall", "precision"];
                let valid = r.main_score.rsplit_once("_at_").is_some_and(|(m, k)| {
                    known.contains(&m) && k.parse().is_ok_and(|k: usize| r.k_values.contains(&k))
                });
                if !valid {
                    return Err(format!(
                        "main_score `{}` must be one of {}_at_K with K in k_values {:?}",
                        r.main_score,
                        known.join("/"),
                        r.k_values
                    ));
                }
            }
        }
        Ok(())
    }

    /// The subsets scored separately; one unnamed subset when the dataset has none.
    pub fn subsets(&self) -> Vec<Option<&SubsetSpec>> {
        if self.dataset.subsets.is_empty() {
            vec![None]
        } else {
            self.dataset.subsets.iter().map(Some).collect()
        }
    }

    /// Name for reports and the MTEB layout.
    pub fn display_name(&self) -> &str {
        self.mteb_name.as_deref().unwrap_or(&self.name)
    }
}

/// A TOML file's text; bad UTF-8 is a spec error naming the byte.
fn utf8<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| Error::Spec {
        path: path.to_path_buf(),
        message: format!("not valid UTF-8 (byte {})", e.valid_up_to()),
    })
}

/// The new families read generic tables (or JSONL).
fn table_format(format: DatasetFormat) -> std::result::Result<(), String> {
    match format {
        DatasetFormat::Table | DatasetFormat::Jsonl => Ok(()),
        _ => Err("this family reads format table (or jsonl)".into()),
    }
}

/// The tasks folder to read: `dir` if it exists, else (for the default relative `tasks`)
/// the stock specs of the source tree the binary was built from.
pub fn tasks_dir(dir: &Path) -> PathBuf {
    if dir.is_dir() || dir.is_absolute() {
        return dir.to_path_buf();
    }
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    if built_in.is_dir() {
        built_in
    } else {
        dir.to_path_buf()
    }
}

/// All specs in a folder, sorted by name.
pub fn load_all(dir: &Path) -> Result<Vec<TaskSpec>> {
    let dir = &tasks_dir(dir);
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut specs = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.extension().is_some_and(|x| x == "toml") {
            specs.push(TaskSpec::load(&path)?);
        }
    }
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(specs)
}

/// Finds a task by name in the tasks folder, or loads it from a path to a `.toml` file.
pub fn find(tasks_dir: &Path, name_or_path: &str) -> Result<TaskSpec> {
    let as_path = Path::new(name_or_path);
    if name_or_path.ends_with(".toml") {
        return TaskSpec::load(as_path);
    }
    let path = self::tasks_dir(tasks_dir).join(format!("{name_or_path}.toml"));
    if path.is_file() {
        return TaskSpec::load(&path);
    }
    let known = load_all(tasks_dir)
        .map(|specs| {
            specs
                .iter()
                .map(|s| s.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    Err(Error::Usage(format!(
        "unknown task `{name_or_path}` (no {}); known tasks: {known}",
        path.display()
    )))
}

/// A suite (`tasks/suites/<name>.toml`): tasks run together and how their scores
/// combine into aggregates.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteSpec {
    pub name: String,
    pub description: String,
    pub aggregate: Aggregate,
    /// The task measure aggregated; each task's main score when absent.
    #[serde(default)]
    pub measure: Option<String>,
    pub tasks: Vec<String>,
    /// The file it was read from.
    #[serde(skip)]
    pub path: PathBuf,
}

/// How a suite combines its tasks' scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aggregate {
    /// MTEB's: the mean per task type (family), then the mean over types (`mean`); also
    /// the mean over tasks (`mean_task`).
    Mteb,
    /// The plain mean over tasks (BEIR's mean nDCG@10).
    Mean,
}

impl SuiteSpec {
    pub fn load(path: &Path) -> Result<SuiteSpec> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        SuiteSpec::parse(path, &bytes)
    }

    /// A suite file's bytes (`path` names it in errors and is kept in the suite).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<SuiteSpec> {
        let text = utf8(path, bytes)?;
        let mut suite: SuiteSpec = toml::from_str(text).map_err(|e| Error::Spec {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        suite.path = path.to_path_buf();
        if suite.tasks.is_empty() {
            return Err(Error::Spec {
                path: path.to_path_buf(),
                message: "a suite names at least one task in `tasks`".into(),
            });
        }
        Ok(suite)
    }

    /// The suite's task specs; an unknown task is an error naming the suite file.
    pub fn task_specs(&self, tasks_dir: &Path) -> Result<Vec<TaskSpec>> {
        let path = &self.path;
        self.tasks
            .iter()
            .map(|name| {
                find(tasks_dir, name).map_err(|e| match e {
                    Error::Usage(message) => Error::Spec {
                        path: path.to_path_buf(),
                        message: format!("tasks: {message}"),
                    },
                    other => other,
                })
            })
            .collect()
    }
}

/// `<tasks>/suites`.
pub fn suites_dir(tasks_dir: &Path) -> PathBuf {
    self::tasks_dir(tasks_dir).join("suites")
}

/// Every suite, sorted by name (none when the folder is absent).
pub fn load_suites(tasks_dir: &Path) -> Result<Vec<SuiteSpec>> {
    let dir = suites_dir(tasks_dir);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    let mut suites = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(&dir, e))?.path();
        if path.extension().is_some_and(|x| x == "toml") {
            suites.push(SuiteSpec::load(&path)?);
        }
    }
    suites.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(suites)
}

/// A suite by name, or from a path to its `.toml` file.
pub fn find_suite(tasks_dir: &Path, name_or_path: &str) -> Result<SuiteSpec> {
    if name_or_path.ends_with(".toml") {
        return SuiteSpec::load(Path::new(name_or_path));
    }
    let path = suites_dir(tasks_dir).join(format!("{name_or_path}.toml"));
    if path.is_file() {
        return SuiteSpec::load(&path);
    }
    let known: Vec<String> = load_suites(tasks_dir)
        .map(|s| s.into_iter().map(|s| s.name).collect())
        .unwrap_or_default();
    Err(Error::Usage(format!(
        "unknown suite `{name_or_path}` (no {}); known suites: {}",
        path.display(),
        known.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_specs_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tasks");
        let specs = load_all(&dir).unwrap();
        let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
        for name in [
            "stsb",
            "scifact",
            "mmlu-pro",
            "math500",
            "gsm8k",
            "coco-mini",
        ] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
    }
}
