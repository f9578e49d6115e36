//! Task specs (`tasks/*.toml`) and model references (`hf:`, `dir:`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One evaluation task, as written in `tasks/<name>.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Short name used on the command line (`--task stsb`).
    pub name: String,
    /// Name in the MTEB results layout (`mteb/<mteb_name>.json`), if the task is an MTEB task.
    #[serde(default)]
    pub mteb_name: Option<String>,
    pub description: String,
    pub dataset: DatasetSpec,
    #[serde(default)]
    pub sts: Option<StsSpec>,
    #[serde(default)]
    pub retrieval: Option<RetrievalSpec>,
    #[serde(default)]
    pub mmlu_pro: Option<MmluProSpec>,
    #[serde(default)]
    pub gsm8k: Option<Gsm8kSpec>,
    #[serde(default)]
    pub math: Option<MathSpec>,
    #[serde(default)]
    pub image_text: Option<ImageTextSpec>,
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

/// The task family decides which runner drives the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskFamily {
    Sts,
    Retrieval,
    MmluPro,
    Gsm8k,
    Math,
    ImageText,
}

impl TaskFamily {
    /// Whether the task is answered by generating text (else by embedding).
    pub fn generates(self) -> bool {
        matches!(
            self,
            TaskFamily::MmluPro | TaskFamily::Gsm8k | TaskFamily::Math
        )
    }
}

impl TaskSpec {
    /// Reads and checks one spec file.
    pub fn load(path: &Path) -> Result<TaskSpec> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let spec: TaskSpec = toml::from_str(&text).map_err(|e| Error::Spec {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        spec.family_at(path)?;
        Ok(spec)
    }

    /// The task family, from which family section is present.
    pub fn family(&self) -> TaskFamily {
        if self.mmlu_pro.is_some() {
            TaskFamily::MmluPro
        } else if self.gsm8k.is_some() {
            TaskFamily::Gsm8k
        } else if self.math.is_some() {
            TaskFamily::Math
        } else if self.retrieval.is_some() {
            TaskFamily::Retrieval
        } else if self.image_text.is_some() {
            TaskFamily::ImageText
        } else {
            TaskFamily::Sts
        }
    }

    fn family_at(&self, path: &Path) -> Result<TaskFamily> {
        let spec_err = |message: &str| Error::Spec {
            path: path.to_path_buf(),
            message: message.to_string(),
        };
        let generation = match (&self.mmlu_pro, &self.gsm8k, &self.math) {
            (Some(_), None, None) => Some(TaskFamily::MmluPro),
            (None, Some(_), None) => Some(TaskFamily::Gsm8k),
            (None, None, Some(_)) => Some(TaskFamily::Math),
            (None, None, None) => None,
            _ => return Err(spec_err(
                "has more than one of [mmlu_pro], [gsm8k], [math]: a task belongs to one family",
            )),
        };
        if let Some(family) = generation {
            if self.sts.is_some() || self.retrieval.is_some() {
                return Err(spec_err(
                    "a generation task has no [sts] or [retrieval] section",
                ));
            }
            if self.dataset.format != DatasetFormat::Jsonl {
                return Err(spec_err("a generation task needs format jsonl"));
            }
            return Ok(family);
        }
        if let Some(it) = &self.image_text {
            if self.sts.is_some() || self.retrieval.is_some() {
                return Err(spec_err(
                    "an image-text task has no [sts] or [retrieval] section",
                ));
            }
            let valid = it.main_score.rsplit_once('@').is_some_and(|(m, k)| {
                ["image_retrieval_recall", "text_retrieval_recall"].contains(&m)
                    && k.parse().is_ok_and(|k: usize| it.k_values.contains(&k))
            });
            if !valid {
                return Err(spec_err(&format!(
                    "main_score `{}` must be image_retrieval_recall@K or text_retrieval_recall@K with K in k_values {:?}",
                    it.main_score, it.k_values
                )));
            }
            return match self.dataset.format {
                DatasetFormat::CocoCaptions => Ok(TaskFamily::ImageText),
                DatasetFormat::Karpathy if it.file.is_some() => Ok(TaskFamily::ImageText),
                DatasetFormat::Karpathy => Err(spec_err(
                    "a karpathy task names its split file in [image_text] file",
                )),
                _ => Err(spec_err(
                    "an image-text task needs format coco-captions or karpathy",
                )),
            };
        }
        match (&self.sts, &self.retrieval, self.dataset.format) {
            (Some(_), None, DatasetFormat::StsbTsv | DatasetFormat::Table) => Ok(TaskFamily::Sts),
            (None, Some(r), DatasetFormat::Beir) => {
                let known = ["ndcg", "map", "mrr", "recall", "precision"];
                let valid = r.main_score.rsplit_once("_at_").is_some_and(|(m, k)| {
                    known.contains(&m) && k.parse().is_ok_and(|k: usize| r.k_values.contains(&k))
                });
                if !valid {
                    return Err(spec_err(&format!(
                        "main_score `{}` must be one of {}_at_K with K in k_values {:?}",
                        r.main_score,
                        known.join("/"),
                        r.k_values
                    )));
                }
                Ok(TaskFamily::Retrieval)
            }
            (Some(_), Some(_), _) => Err(spec_err(
                "has both [sts] and [retrieval]: a task belongs to one family",
            )),
            (None, None, _) => Err(spec_err(
                "needs a [sts], [retrieval], [image_text], [mmlu_pro], [gsm8k] or [math] section",
            )),
            (Some(_), None, _) => Err(spec_err("an STS task needs format stsb-tsv or table")),
            (None, Some(_), _) => Err(spec_err("a retrieval task needs format beir")),
        }
    }

    /// Name for reports and the MTEB layout.
    pub fn display_name(&self) -> &str {
        self.mteb_name.as_deref().unwrap_or(&self.name)
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

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ModelRef {
    /// `hf:ORG/NAME[@REV]`: the hub, or its local cache when offline.
    Hf {
        repo: String,
        revision: Option<String>,
    },
    /// `dir:PATH`: a local folder with config.json, tokenizer.json and weights.
    Dir { path: PathBuf },
}

impl std::str::FromStr for ModelRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        if let Some(rest) = s.strip_prefix("hf:") {
            let (repo, revision) = match rest.split_once('@') {
                Some((repo, rev)) => (repo, Some(rev.to_string())),
                None => (rest, None),
            };
            if repo.split('/').count() != 2 || repo.split('/').any(str::is_empty) {
                return Err(Error::Usage(format!(
                    "model `{s}`: a hub reference is hf:ORG/NAME[@REVISION]"
                )));
            }
            Ok(ModelRef::Hf {
                repo: repo.to_string(),
                revision,
            })
        } else if let Some(path) = s.strip_prefix("dir:") {
            Ok(ModelRef::Dir {
                path: PathBuf::from(path),
            })
        } else {
            Err(Error::Usage(format!(
                "model `{s}`: expected hf:ORG/NAME[@REV], dir:PATH or openai:BASE_URL#MODEL"
            )))
        }
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelRef::Hf {
                repo,
                revision: Some(rev),
            } => write!(f, "hf:{repo}@{rev}"),
            ModelRef::Hf { repo, .. } => write!(f, "hf:{repo}"),
            ModelRef::Dir { path } => write!(f, "dir:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_model_refs() {
        let m: ModelRef = "hf:sentence-transformers/all-MiniLM-L6-v2@abc"
            .parse()
            .unwrap();
        assert_eq!(
            m,
            ModelRef::Hf {
                repo: "sentence-transformers/all-MiniLM-L6-v2".into(),
                revision: Some("abc".into())
            }
        );
        assert_eq!(
            m.to_string(),
            "hf:sentence-transformers/all-MiniLM-L6-v2@abc"
        );
        let d: ModelRef = "dir:/x/y".parse().unwrap();
        assert_eq!(d.to_string(), "dir:/x/y");
        assert!("hf:noslash".parse::<ModelRef>().is_err());
        assert!("s3://bucket".parse::<ModelRef>().is_err());
    }

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
