//! Sharded runs. A shard does its share of a run's model work and records it; `merge`
//! replays the recorded work through each task's own scoring, so a merged run computes
//! exactly what one unsharded run computes.
//!
//! What is split, and why it is exact:
//! - Embedding tasks: the texts are batched exactly as a whole run batches them (every
//!   shard plans all batches), and each batch belongs to the shard its first text's key
//!   hashes to. A vector therefore comes from the same batch it would in a whole run, and
//!   is bit-identical. The merge hands every task the recorded vectors.
//! - Retrieval splits the corpus this way; each shard embeds all queries and keeps its
//!   top-k per query (see `retrieval.rs`); the merge unions the lists and cuts them again.
//! - Generation tasks: each request belongs to the shard its key hashes to; the merge
//!   replays the recorded answers, so grading (and its seeded fallbacks) runs in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::generate::{Generation, GenerationRequest, GeneratorInfo, TokenCounts};
use crate::engine::{Embedder, EmbedderInfo, Generator, ImageInput, RequestRecord, Role, Timing};
use crate::error::{Error, Result};
use crate::eval::embed::{embed_batches, EmbedStats};
use crate::eval::task::{Engine, Task};
use crate::eval::{Needs, TaskInput};
use crate::store::cache::{key_of, Key};
use crate::store::EmbeddingCache;

/// One worker's place in a sharded run: `index` of `count`, counted from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// `INDEX/COUNT` (e.g. `3/8`), or `auto` for the scheduler's variables (`env`).
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Shard> {
        if text.trim() == "auto" {
            return Shard::from_scheduler(env);
        }
        let parsed = text
            .split_once('/')
            .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        let Some((index, count)) = parsed else {
            return Err(Error::Usage(format!(
                "--shard `{text}`: expected INDEX/COUNT such as 0/8 (counted from 0), or auto"
            )));
        };
        Shard::new(index, count, &format!("--shard `{text}`"))
    }

    fn new(index: usize, count: usize, what: &str) -> Result<Shard> {
        if count == 0 || index >= count {
            return Err(Error::Usage(format!(
                "{what}: the index counts from 0 and must be below the count ({index} of {count}; \
                 valid: 0/{count} to {}/{count})",
                count.saturating_sub(1)
            )));
        }
        Ok(Shard { index, count })
    }

    /// Slurm job arrays (`SLURM_ARRAY_TASK_ID`, with `_COUNT`, or `_MIN`, `_MAX` and
    /// `_STEP`) or a Kubernetes Indexed Job (`JOB_COMPLETION_INDEX`, with the completion
    /// count in `ASSAY_SHARD_COUNT`, which the manifest sets: Kubernetes does not export it).
    pub fn from_scheduler(env: impl Fn(&str) -> Option<String>) -> Result<Shard> {
        let number = |name: &str| -> Result<Option<usize>> {
            env(name)
                .map(|v| {
                    v.trim().parse::<usize>().map_err(|_| {
                        Error::Usage(format!("--shard auto: {name}=`{v}` is not a whole number"))
                    })
                })
                .transpose()
        };
        if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
            let count = match number("SLURM_ARRAY_TASK_COUNT")? {
                Some(n) => n,
                None => match number("SLURM_ARRAY_TASK_MAX")? {
                    Some(max) => (max.saturating_sub(min)) / step + 1,
                    None => {
                        return Err(Error::Usage(
                            "--shard auto: SLURM_ARRAY_TASK_ID is set but neither \
                             SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX is"
                                .into(),
                        ))
                    }
                },
            };
            let index = id.checked_sub(min).map(|d| d / step).ok_or_else(|| {
                Error::Usage(format!(
                    "--shard auto: SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"
                ))
            })?;
            return Shard::new(index, count, "--shard auto (Slurm array)");
        }
        if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = number("ASSAY_SHARD_COUNT")?.ok_or_else(|| {
                Error::Usage(
                    "--shard auto: JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but \
                     ASSAY_SHARD_COUNT is not: set it to the Job's completions in the manifest"
                        .into(),
                )
            })?;
            return Shard::new(index, count, "--shard auto (Indexed Job)");
        }
        Err(Error::Usage(
            "--shard auto: neither a Slurm job array (SLURM_ARRAY_TASK_ID) nor a Kubernetes \
             Indexed Job (JOB_COMPLETION_INDEX) is in the environment; give --shard INDEX/COUNT"
                .into(),
        ))
    }

    /// Whether a piece of work keyed by `key` (a sha256) is this shard's.
    pub fn owns(&self, key: &Key) -> bool {
        let head = u64::from_le_bytes(key[..8].try_into().expect("8 bytes"));
        (head % self.count as u64) as usize == self.index
    }

    /// The folder a shard writes under its run's folder.
    pub fn dir_name(&self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The key a task input's vector is recorded under: what the task asked for (text, role,
/// instruction), not the model-specific prepared text, so a merge needs no model.
pub fn input_key(text: &str, role: Role, instruction: Option<&str>) -> Key {
    key_of(&replay_text(text, role, instruction))
}

fn replay_text(text: &str, role: Role, instruction: Option<&str>) -> String {
    serde_json::to_string(&(text, role, instruction)).expect("strings serialise")
}

/// The key an image's vector is recorded under.
pub fn image_key(image: &ImageInput, prompt: Option<&str>) -> Key {
    let mut hash = Sha256::new();
    hash.update(b"image\0");
    hash.update(prompt.unwrap_or("").as_bytes());
    hash.update(b"\0");
    hash.update(&image.bytes);
    hash.finalize().into()
}

/// The key of a generation request (prompt and parameters).
fn request_key(request: &impl Serialize) -> Key {
    Sha256::digest(serde_json::to_vec(request).expect("requests serialise")).into()
}

/// What a shard computed for its run, gathered task by task.
#[derive(Default)]
pub struct ShardWork {
    /// Vectors by [`input_key`] / [`image_key`].
    pub vectors: Vec<(Key, Vec<f32>)>,
    /// Retrieval: each query's top-k over this shard's slice of the corpus, by task.
    pub ranked: Vec<(String, Vec<RankedQuery>)>,
    pub embedding: EmbedStats,
}

/// One query's best documents in one shard: `(doc id, score)`, best first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RankedQuery {
    pub query: String,
    pub hits: Vec<(String, f32)>,
}

/// Embeds this shard's share of `inputs` (batched as a whole run batches them) and
/// records the vectors; returns each input's vector where this shard computed it.
pub fn embed_share(
    inputs: &[TaskInput],
    embedder: &dyn Embedder,
    cache: &mut EmbeddingCache,
    batch_size: usize,
    label: &str,
    shard: &Shard,
    work: &mut ShardWork,
) -> Result<Vec<Option<Vec<f32>>>> {
    let texts: Vec<String> = inputs.iter().map(|i| i.prepared(embedder)).collect();
    let (vectors, stats) = embed_batches(embedder, cache, &texts, batch_size, label, &|key| {
        shard.owns(key)
    })?;
    work.embedding.add(&stats);
    let mut recorded = std::collections::HashSet::new();
    for (input, vector) in inputs.iter().zip(&vectors) {
        if let Some(v) = vector {
            let key = input_key(&input.text, input.role, input.instruction.as_deref());
            if recorded.insert(key) {
                work.vectors.push((key, v.clone()));
            }
        }
    }
    Ok(vectors)
}

/// The default share of a task: an embedding task's inputs, or a generation task run over
/// the shard's generator (which answers only this shard's requests; see
/// [`ShardGenerator`]). What the task scores from partial work is thrown away.
pub fn default_share<T: Task + ?Sized>(
    task: &T,
    engine: Engine<'_>,
    shard: &Shard,
    work: &mut ShardWork,
) -> Result<()> {
    match task.needs() {
        Needs::Embeddings => {
            let (embedder, cache, settings) = engine.embedder(task.spec())?;
            let inputs = task.inputs()?;
            embed_share(
                &inputs,
                embedder,
                cache,
                settings.batch_size,
                &task.spec().name,
                shard,
                work,
            )?;
            Ok(())
        }
        Needs::Generations => task.run(engine).map(|_| ()),
    }
}

/// A recorded answer to one generation request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    /// sha256 of the request, hex.
    pub key: String,
    #[serde(flatten)]
    pub value: AnswerValue,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnswerValue {
    Generation(Box<Generation>),
    Loglikelihoods(Vec<f64>),
}

/// A generator that answers the requests this shard owns through the real one, records
/// the answers, and gives an empty placeholder for the rest (another shard answers them).
pub struct ShardGenerator {
    inner: Box<dyn Generator>,
    shard: Shard,
    answers: Arc<Mutex<Vec<Answer>>>,
}

impl ShardGenerator {
    pub fn new(
        inner: Box<dyn Generator>,
        shard: Shard,
    ) -> (ShardGenerator, Arc<Mutex<Vec<Answer>>>) {
        let answers = Arc::new(Mutex::new(Vec::new()));
        let generator = ShardGenerator {
            inner,
            shard,
            answers: answers.clone(),
        };
        (generator, answers)
    }

    fn record(&self, key: Key, value: AnswerValue) {
        let answer = Answer {
            key: hex::encode(key),
            value,
        };
        self.answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(answer);
    }
}

impl Generator for ShardGenerator {
    fn info(&self) -> &GeneratorInfo {
        self.inner.info()
    }

    fn generate(&self, request: &GenerationRequest) -> Result<Generation> {
        let key = request_key(request);
        if !self.shard.owns(&key) {
            return Ok(Generation {
                text: String::new(),
                finish_reason: Some("another-shard".into()),
                tokens: TokenCounts::default(),
                served_model: None,
                timing: Timing::default(),
            });
        }
        let generation = self.inner.generate(request)?;
        self.record(key, AnswerValue::Generation(Box::new(generation.clone())));
        Ok(generation)
    }

    fn parallel_requests(&self) -> usize {
        self.inner.parallel_requests()
    }

    fn loglikelihoods(&self, context: &str, continuations: &[String]) -> Result<Vec<f64>> {
        let key = request_key(&(context, continuations));
        if !self.shard.owns(&key) {
            return Ok(vec![0.0; continuations.len()]);
        }
        let values = self.inner.loglikelihoods(context, continuations)?;
        self.record(key, AnswerValue::Loglikelihoods(values.clone()));
        Ok(values)
    }

    fn request_log(&self) -> Vec<RequestRecord> {
        self.inner.request_log()
    }
}

/// The merge's generator: every answer comes from a shard's record.
pub struct ReplayGenerator {
    info: GeneratorInfo,
    answers: HashMap<String, AnswerValue>,
}

impl ReplayGenerator {
    pub fn new(info: GeneratorInfo, answers: impl IntoIterator<Item = Answer>) -> ReplayGenerator {
        ReplayGenerator {
            info,
            answers: answers.into_iter().map(|a| (a.key, a.value)).collect(),
        }
    }

    fn answer(&self, key: Key) -> Result<&AnswerValue> {
        self.answers.get(&hex::encode(key)).ok_or_else(|| {
            Error::Usage(
                "no shard recorded the answer to one of the task's requests: the shards ran \
                 other settings or data than the merge replays"
                    .into(),
            )
        })
    }
}

impl Generator for ReplayGenerator {
    fn info(&self) -> &GeneratorInfo {
        &self.info
    }

    fn generate(&self, request: &GenerationRequest) -> Result<Generation> {
        match self.answer(request_key(request))? {
            AnswerValue::Generation(g) => Ok((**g).clone()),
            AnswerValue::Loglikelihoods(_) => Err(Error::Usage(
                "a shard recorded log-likelihoods where the merge asks for a generation".into(),
            )),
        }
    }

    fn parallel_requests(&self) -> usize {
        4
    }

    fn loglikelihoods(&self, context: &str, continuations: &[String]) -> Result<Vec<f64>> {
        match self.answer(request_key(&(context, continuations)))? {
            AnswerValue::Loglikelihoods(v) => Ok(v.clone()),
            AnswerValue::Generation(_) => Err(Error::Usage(
                "a shard recorded a generation where the merge asks for log-likelihoods".into(),
            )),
        }
    }
}

/// The merge's embedder: every vector comes from a shard's record. `prepare` keeps what
/// the task asked for (its recorded key), so no model is loaded.
pub struct ReplayEmbedder {
    info: EmbedderInfo,
    stores: Vec<EmbeddingCache>,
}

impl ReplayEmbedder {
    pub fn new(info: EmbedderInfo, stores: Vec<EmbeddingCache>) -> ReplayEmbedder {
        ReplayEmbedder { info, stores }
    }

    fn vector(&self, key: &Key, what: impl FnOnce() -> String) -> Result<Vec<f32>> {
        self.stores.iter().find_map(|s| s.get(key)).ok_or_else(|| {
            Error::Usage(format!(
                "no shard recorded the vector of {}: the shards ran other settings or \
                     data than the merge replays",
                what()
            ))
        })
    }
}

impl Embedder for ReplayEmbedder {
    fn info(&self) -> &EmbedderInfo {
        &self.info
    }

    fn prepare(&self, text: &str, role: Role, instruction: Option<&str>) -> String {
        replay_text(text, role, instruction)
    }

    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        texts
            .iter()
            .map(|t| self.vector(&key_of(t), || format!("input {t}")))
            .collect()
    }

    fn embed_images(&self, images: &[ImageInput], prompt: Option<&str>) -> Result<Vec<Vec<f32>>> {
        images
            .iter()
            .map(|i| {
                self.vector(&image_key(i, prompt), || {
                    format!("image {}", i.path.display())
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn parses_explicit_shards_and_refuses_bad_ones() {
        assert_eq!(
            Shard::parse("3/8", env(&[])).unwrap(),
            Shard { index: 3, count: 8 }
        );
        for bad in ["4/4", "a/b", "1", "0/0", "-1/4", ""] {
            let e = Shard::parse(bad, env(&[])).unwrap_err().to_string();
            assert!(e.contains("--shard"), "{bad}: {e}");
        }
        let e = Shard::parse("4/4", env(&[])).unwrap_err().to_string();
        assert!(e.contains("0/4 to 3/4"), "{e}");
    }

    #[test]
    fn auto_reads_slurm_arrays_and_indexed_jobs() {
        let slurm = [
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        assert_eq!(
            Shard::parse("auto", env(&slurm)).unwrap(),
            Shard { index: 2, count: 4 }
        );
        // --array=10-40:10 → ids 10, 20, 30, 40.
        let stepped = [
            ("SLURM_ARRAY_TASK_ID", "30"),
            ("SLURM_ARRAY_TASK_MIN", "10"),
            ("SLURM_ARRAY_TASK_MAX", "40"),
            ("SLURM_ARRAY_TASK_STEP", "10"),
        ];
        assert_eq!(
            Shard::parse("auto", env(&stepped)).unwrap(),
            Shard { index: 2, count: 4 }
        );
        let k8s = [("JOB_COMPLETION_INDEX", "7"), ("ASSAY_SHARD_COUNT", "8")];
        assert_eq!(
            Shard::parse("auto", env(&k8s)).unwrap(),
            Shard { index: 7, count: 8 }
        );
        let e = Shard::parse("auto", env(&[("JOB_COMPLETION_INDEX", "1")])).unwrap_err();
        assert!(e.to_string().contains("ASSAY_SHARD_COUNT"), "{e}");
        let e = Shard::parse("auto", env(&[])).unwrap_err().to_string();
        assert!(e.contains("SLURM_ARRAY_TASK_ID") && e.contains("JOB_COMPLETION_INDEX"));
    }

    #[test]
    fn every_key_has_exactly_one_owner() {
        for i in 0..200u32 {
            let key = key_of(&i.to_string());
            let owners = (0..5)
                .filter(|&index| Shard { index, count: 5 }.owns(&key))
                .count();
            assert_eq!(owners, 1);
        }
    }
}
