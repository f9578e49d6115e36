//! Tasks answered by generating text: build each prompt as the official evaluation does,
//! generate (greedy, `max_tokens` always set, requests in parallel up to the engine's
//! limit), extract the answer as the official grader does, and score. Every item goes to
//! `samples.jsonl` with its prompt, output, extracted answers, gold and verdict.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::data::generation::{
    self as loaders, ChoiceItem, GenerationData, Loaded, MathProblem, WordProblem,
};
use crate::data::gpqa::GpqaItem;
use crate::data::DataSource;
use crate::engine::{
    ChatMessage, Generation, GenerationParams, GenerationRequest, Generator, Prompt,
};
use crate::error::{Error, Result};
use crate::eval::task::{Engine, Measure, Needs, Task};
use crate::eval::TaskInput;
use crate::eval::{DatasetRecord, EmbedStats, Score, TaskResult};
use crate::metrics::answer::{self, Gsm8kMode, Level};
use crate::metrics::bootstrap::mean_ci;
use crate::metrics::math_equiv;
use serde::{Deserialize, Serialize};

use crate::metrics::rng::PyRandom;
use crate::spec::{TaskKind, TaskSpec};

/// How prompts reach the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptStyle {
    /// The prompt as one user message (chat models, `/chat/completions`).
    Chat,
    /// The prompt as raw text (`/completions`), as the official MMLU-Pro script does.
    Completion,
}

impl PromptStyle {
    /// `chat` or `completion`, as `--prompt-style` and records spell them.
    pub fn parse(name: &str) -> Result<PromptStyle> {
        match name {
            "chat" => Ok(PromptStyle::Chat),
            "completion" => Ok(PromptStyle::Completion),
            other => Err(Error::Usage(format!(
                "--prompt-style `{other}`: expected chat or completion"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationSettings {
    /// Items at most: a seeded sample, stratified by category where there is one.
    pub limit: Option<usize>,
    pub seed: u64,
    pub style: PromptStyle,
    /// Overrides the spec's `max_tokens`.
    pub max_tokens: Option<u32>,
    pub bootstrap_resamples: usize,
    /// Multiple choice by the log-likelihood of each option instead of a generated answer.
    pub loglikelihood: bool,
    /// Code tasks: samples per problem and how their programs run.
    #[serde(default)]
    pub code: CodeSettings,
    /// GPQA: passes over the questions (overrides the spec's `repeats`).
    #[serde(default)]
    pub repeats: Option<usize>,
}

/// How code tasks sample and run programs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeSettings {
    /// Completions per problem (pass@k needs k of them).
    pub samples: usize,
    /// Sampling temperature; by default greedy for one sample, 0.8 (top-p 0.95) for more.
    pub temperature: Option<f64>,
    /// `bubblewrap` or `none`.
    pub sandbox: String,
    /// The Python programs run with (default the system's).
    pub python: Option<std::path::PathBuf>,
}

impl Default for CodeSettings {
    fn default() -> Self {
        CodeSettings {
            samples: 1,
            temperature: None,
            sandbox: "bubblewrap".into(),
            python: None,
        }
    }
}

const LETTERS: [char; 10] = ['A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J'];

/// The official MMLU-Pro CoT prompt: instruction with the category, up to `shots` worked
/// examples of that category, then the question with lettered options.
pub fn mmlu_pro_prompt(item: &ChoiceItem, examples: &[&ChoiceItem]) -> String {
    let mut prompt = format!(
        "The following are multiple choice questions (with answers) about {}. Think step by step and then output the answer in the format of \"The answer is (X)\" at the end.\n\n",
        item.category
    );
    let question = |q: &ChoiceItem| {
        let mut text = format!("Question:\n{}\nOptions:\n", q.question);
        for (letter, option) in LETTERS.iter().zip(&q.options) {
            text.push_str(&format!("{letter}. {option}\n"));
        }
        text
    };
    for example in examples {
        prompt.push_str(&question(example));
        let cot = example.cot_content.replace(
            "A: Let's think step by step.",
            "Answer: Let's think step by step.",
        );
        prompt.push_str(&cot);
        prompt.push_str("\n\n");
    }
    prompt.push_str(&question(item));
    prompt.push_str("Answer: Let's think step by step.");
    prompt
}

/// Zero-shot chain of thought asking for GSM8K's own answer format.
pub fn gsm8k_prompt(item: &WordProblem) -> String {
    format!(
        "Solve the following math problem step by step. End your response with a line of the form \"#### <number>\" holding only the final answer.\n\nQuestion: {}\nAnswer:",
        item.question
    )
}

/// Zero-shot, asking for the answer in a box (as MATH solutions give it).
pub fn math_prompt(item: &MathProblem) -> String {
    format!(
        "Solve the following math problem step by step. Put your final answer within \\boxed{{}}.\n\nProblem: {}\nSolution:",
        item.problem
    )
}

/// Indices of a seeded sample of `limit` items, allocated to groups in proportion to
/// their sizes (largest remainders), in dataset order.
pub fn stratified_sample(groups: &[&str], limit: usize, seed: u64) -> Vec<usize> {
    if limit >= groups.len() {
        return (0..groups.len()).collect();
    }
    let mut by_group: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        by_group.entry(g).or_default().push(i);
    }
    let total = groups.len() as f64;
    let mut quotas: Vec<(&str, usize, f64)> = by_group
        .iter()
        .map(|(g, members)| {
            let exact = limit as f64 * members.len() as f64 / total;
            (*g, exact.floor() as usize, exact - exact.floor())
        })
        .collect();
    let mut left = limit - quotas.iter().map(|q| q.1).sum::<usize>();
    let mut order: Vec<usize> = (0..quotas.len()).collect();
    order.sort_by(|&a, &b| quotas[b].2.total_cmp(&quotas[a].2).then(a.cmp(&b)));
    for i in order {
        if left == 0 {
            break;
        }
        quotas[i].1 += 1;
        left -= 1;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut chosen = Vec::with_capacity(limit);
    for (group, quota, _) in quotas {
        let mut members = by_group[group].clone();
        members.shuffle(&mut rng);
        chosen.extend(members.into_iter().take(quota));
    }
    chosen.sort_unstable();
    chosen
}

/// The items a run takes: all, or `--limit`'s seeded sample stratified by `groups`.
pub(crate) fn choose(groups: &[&str], settings: &GenerationSettings) -> Vec<usize> {
    match settings.limit {
        Some(n) => stratified_sample(groups, n, settings.seed),
        None => (0..groups.len()).collect(),
    }
}

/// Greedy, unstreamed answers of at most `max_tokens` (the flag overrides the spec).
fn answer_params(
    settings: &GenerationSettings,
    max_tokens: u32,
    stop: &[&str],
) -> GenerationParams {
    GenerationParams {
        max_tokens: settings.max_tokens.unwrap_or(max_tokens),
        temperature: 0.0,
        stop: stop.iter().map(|s| s.to_string()).collect(),
        stream: false,
        ..GenerationParams::default()
    }
}

/// What `run.json` records of how items and prompts were chosen, plus task-specific fields.
pub(crate) fn selection(
    settings: &GenerationSettings,
    params: &GenerationParams,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut record = json!({
        "limit": settings.limit,
        "seed": settings.seed,
        "max_tokens": params.max_tokens,
        "prompt_style": format!("{:?}", settings.style).to_lowercase(),
    });
    if let (Some(map), serde_json::Value::Object(more)) = (record.as_object_mut(), extra) {
        map.extend(more);
    }
    record
}

/// One generation per prompt, `generator.parallel_requests()` at a time, in input order.
fn generate_all(
    generator: &dyn Generator,
    prompts: &[String],
    params: &GenerationParams,
    style: PromptStyle,
    label: &str,
) -> Result<Vec<Generation>> {
    let requests: Vec<GenerationRequest> = prompts
        .iter()
        .map(|p| GenerationRequest {
            prompt: match style {
                PromptStyle::Chat => Prompt::Chat(vec![ChatMessage::user(p)]),
                PromptStyle::Completion => Prompt::Text(p.clone()),
            },
            params: params.clone(),
        })
        .collect();
    generate_requests(generator, &requests, label)
}

/// One generation per request, `generator.parallel_requests()` at a time, in order; the
/// first failure stops handing out work and is returned.
pub(crate) fn generate_requests(
    generator: &dyn Generator,
    requests: &[GenerationRequest],
    label: &str,
) -> Result<Vec<Generation>> {
    let progress = indicatif::ProgressBar::new(requests.len() as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} {elapsed} ETA {eta}")
            .expect("valid template"),
    );
    progress.set_message(label.to_string());
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Generation>>>> =
        Mutex::new((0..requests.len()).map(|_| None).collect());
    let workers = generator
        .parallel_requests()
        .clamp(1, requests.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests.len() {
                    break;
                }
                let outcome = generator.generate(&requests[i]);
                let failed = outcome.is_err();
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(outcome);
                progress.inc(1);
                if failed {
                    // Stop handing out work; requests in flight finish.
                    next.store(requests.len(), Ordering::Relaxed);
                }
            });
        }
    });
    progress.finish_and_clear();
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::with_capacity(requests.len());
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Some(Ok(g)) => out.push(g),
            Some(Err(e)) => return Err(e),
            None => {
                return Err(Error::External(format!(
                    "{label}: item {i} was not generated"
                )))
            }
        }
    }
    Ok(out)
}

pub(crate) fn score(values: &[f64], settings: &GenerationSettings) -> Score {
    Score {
        value: values.iter().sum::<f64>() / values.len().max(1) as f64,
        ci95: mean_ci(values, settings.bootstrap_resamples, settings.seed),
    }
}

/// Per-item values of every score (each is a mean over items), by sample position; `None`
/// where an item does not count (another category). Kept in the samples so `compare` can
/// pair items across runs.
pub(crate) type PerItem = BTreeMap<String, Vec<Option<f64>>>;

fn every(values: Vec<f64>) -> Vec<Option<f64>> {
    values.into_iter().map(Some).collect()
}

/// The scores, with each item's values written into its sample (`scores`) and the task
/// named in every sample.
pub(crate) fn finish(
    per_item: &PerItem,
    samples: &mut [serde_json::Value],
    task: &str,
    settings: &GenerationSettings,
) -> BTreeMap<String, Score> {
    for sample in samples.iter_mut() {
        sample["task"] = json!(task);
        sample["scores"] = json!({});
    }
    let mut scores = BTreeMap::new();
    for (name, values) in per_item {
        for (sample, value) in samples.iter_mut().zip(values) {
            if let Some(v) = value {
                sample["scores"][name] = json!(v);
            }
        }
        let counted: Vec<f64> = values.iter().flatten().copied().collect();
        scores.insert(name.clone(), score(&counted, settings));
    }
    scores
}

/// MMLU-Pro, GSM8K or MATH: questions answered by a generator.
pub struct GenerationTask {
    spec: TaskSpec,
    loaded: Loaded,
}

impl GenerationTask {
    pub fn load(spec: &TaskSpec, source: &DataSource) -> Result<GenerationTask> {
        let loaded = match &spec.kind {
            TaskKind::MmluPro(section) => loaders::load_mmlu_pro(&spec.dataset, source, section)?,
            TaskKind::Gsm8k(_) => loaders::load_gsm8k(&spec.dataset, source)?,
            TaskKind::Math(_) => loaders::load_math(&spec.dataset, source)?,
            TaskKind::Gpqa(section) => {
                crate::data::gpqa::load_gpqa(&spec.dataset, section, source)?
            }
            other => {
                return Err(Error::Usage(format!(
                    "task {}: family {} is not answered by generation",
                    spec.name,
                    other.family()
                )))
            }
        };
        Ok(GenerationTask {
            spec: spec.clone(),
            loaded,
        })
    }

    /// The loaded questions (`bench-decode` prompts with them).
    pub fn data(&self) -> &Loaded {
        &self.loaded
    }
}

impl Task for GenerationTask {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    fn dataset_fingerprint(&self) -> String {
        self.loaded.fingerprint.clone()
    }

    fn measures(&self) -> Vec<Measure> {
        match &self.loaded.data {
            GenerationData::MmluPro { .. } => mmlu_pro_measures(),
            GenerationData::Gsm8k(_) => gsm8k_measures(),
            GenerationData::Math(_) => math_measures(),
            GenerationData::Gpqa(_) => gpqa_measures(),
        }
    }

    fn needs(&self) -> Needs {
        Needs::Generations
    }

    /// Each question as a zero-shot prompt in the task's own layout.
    fn inputs(&self) -> Result<Vec<TaskInput>> {
        let texts: Vec<String> = match &self.loaded.data {
            GenerationData::MmluPro { test, .. } => {
                test.iter().map(|q| mmlu_pro_prompt(q, &[])).collect()
            }
            GenerationData::Gsm8k(problems) => problems.iter().map(gsm8k_prompt).collect(),
            GenerationData::Math(problems) => problems.iter().map(math_prompt).collect(),
            GenerationData::Gpqa(items) => items
                .iter()
                .map(|q| gpqa_prompt(q, &[0, 1, 2, 3]).0)
                .collect(),
        };
        Ok(texts
            .into_iter()
            .map(|text| TaskInput {
                text,
                role: crate::engine::Role::Query,
                instruction: None,
            })
            .collect())
    }

    fn run(&self, engine: Engine<'_>) -> Result<TaskResult> {
        let (generator, settings) = engine.generator(&self.spec)?;
        run(&self.spec, &self.loaded, generator, settings)
    }
}

fn run(
    spec: &TaskSpec,
    loaded: &Loaded,
    generator: &dyn Generator,
    settings: &GenerationSettings,
) -> Result<TaskResult> {
    let started = Instant::now();
    let (per_item, mut samples, selection, items, main) = match &loaded.data {
        GenerationData::MmluPro { test, validation } => {
            mmlu_pro(spec, test, validation.as_deref(), generator, settings)?
        }
        GenerationData::Gsm8k(problems) => gsm8k(spec, problems, generator, settings)?,
        GenerationData::Math(problems) => math(spec, problems, generator, settings)?,
        GenerationData::Gpqa(items) => gpqa(spec, items, generator, settings)?,
    };
    let scores = finish(&per_item, &mut samples, &spec.name, settings);
    Ok(TaskResult {
        task: spec.name.clone(),
        task_name: spec.name.clone(),
        family: spec.family().into(),
        split: spec.dataset.split.clone(),
        main_score: main.into(),
        scores,
        measures: Vec::new(),
        dataset: DatasetRecord {
            origin: loaded.origin.clone(),
            fingerprint: loaded.fingerprint.clone(),
            items,
            corpus_size: None,
            selection: Some(selection),
        },
        replicates: Vec::new(),
        embedding: EmbedStats::default(),
        search_seconds: 0.0,
        seconds: started.elapsed().as_secs_f64(),
        samples,
    })
}

/// The result of answers graded from saved outputs (`assay grade`), in the outputs'
/// order; `origin` and `fingerprint` are the outputs file's.
pub struct GradedOutputs {
    pub origin: String,
    pub fingerprint: String,
    pub format: String,
}

/// MMLU-Pro answers graded from saved outputs.
pub fn mmlu_pro_graded(
    spec: &TaskSpec,
    rows: &[MmluProRow],
    from: GradedOutputs,
    settings: &GenerationSettings,
    started: Instant,
) -> TaskResult {
    let (per_item, samples, per_category) = grade_mmlu_pro(rows);
    let extra = json!({"per_category": per_category});
    graded_result(
        spec,
        "accuracy_l2",
        mmlu_pro_measures(),
        per_item,
        samples,
        from,
        extra,
        settings,
        started,
    )
}

/// GSM8K answers graded from saved outputs.
pub fn gsm8k_graded(
    spec: &TaskSpec,
    rows: &[Gsm8kRow],
    from: GradedOutputs,
    settings: &GenerationSettings,
    started: Instant,
) -> TaskResult {
    let (per_item, samples) = grade_gsm8k(rows);
    graded_result(
        spec,
        "exact_match_strict",
        gsm8k_measures(),
        per_item,
        samples,
        from,
        json!({}),
        settings,
        started,
    )
}

#[allow(clippy::too_many_arguments)]
fn graded_result(
    spec: &TaskSpec,
    main: &str,
    measures: Vec<Measure>,
    per_item: PerItem,
    mut samples: Vec<serde_json::Value>,
    from: GradedOutputs,
    extra: serde_json::Value,
    settings: &GenerationSettings,
    started: Instant,
) -> TaskResult {
    let scores = finish(&per_item, &mut samples, &spec.name, settings);
    let mut selection = json!({"graded_from": from.origin, "format": from.format});
    if let (Some(map), serde_json::Value::Object(more)) = (selection.as_object_mut(), extra) {
        map.extend(more);
    }
    TaskResult {
        task: spec.name.clone(),
        task_name: spec.name.clone(),
        family: spec.family().into(),
        split: spec.dataset.split.clone(),
        main_score: main.into(),
        scores,
        measures,
        dataset: DatasetRecord {
            origin: from.origin,
            fingerprint: from.fingerprint,
            items: samples.len(),
            corpus_size: None,
            selection: Some(selection),
        },
        replicates: Vec::new(),
        embedding: EmbedStats::default(),
        search_seconds: 0.0,
        seconds: started.elapsed().as_secs_f64(),
        samples,
    }
}

type Outcome = (
    PerItem,
    Vec<serde_json::Value>,
    serde_json::Value,
    usize,
    &'static str,
);

fn mmlu_pro(
    spec: &TaskSpec,
    test: &[ChoiceItem],
    validation: Option<&[ChoiceItem]>,
    generator: &dyn Generator,
    settings: &GenerationSettings,
) -> Result<Outcome> {
    let TaskKind::MmluPro(section) = &spec.kind else {
        unreachable!("MMLU-Pro data comes from an [mmlu_pro] spec")
    };
    let categories: Vec<&str> = test.iter().map(|t| t.category.as_str()).collect();
    let chosen = choose(&categories, settings);
    if settings.loglikelihood {
        return mmlu_pro_loglikelihood(test, &chosen, generator, settings);
    }
    let shots = if validation.is_some() {
        section.shots
    } else {
        0
    };
    let prompts: Vec<String> = chosen
        .iter()
        .map(|&i| {
            let item = &test[i];
            let examples: Vec<&ChoiceItem> = validation
                .unwrap_or_default()
                .iter()
                .filter(|v| v.category == item.category)
                .take(shots)
                .collect();
            mmlu_pro_prompt(item, &examples)
        })
        .collect();
    let params = answer_params(settings, section.max_tokens, &["Question:"]);
    let outputs = generate_all(generator, &prompts, &params, settings.style, &spec.name)?;
    let rows: Vec<MmluProRow> = chosen
        .iter()
        .zip(prompts)
        .zip(&outputs)
        .map(|((&i, prompt), g)| MmluProRow {
            id: test[i].id.clone(),
            category: test[i].category.clone(),
            gold: test[i].answer,
            prompt: Some(prompt),
            output: g.text.clone(),
            finish_reason: g.finish_reason.clone(),
        })
        .collect();
    let (scores, samples, per_category) = grade_mmlu_pro(&rows);
    let selection = selection(
        settings,
        &params,
        json!({
            "stratified_by": "category",
            "per_category": per_category,
            "shots": shots,
            "shots_source": if shots > 0 { "validation split" } else { "none: zero-shot (no validation split found)" },
        }),
    );
    Ok((scores, samples, selection, chosen.len(), "accuracy_l2"))
}

/// MMLU-Pro's measures, the main score first.
pub fn mmlu_pro_measures() -> Vec<Measure> {
    let h = Measure::higher;
    let l = Measure::lower;
    vec![
        h("accuracy_l2"),
        h("accuracy_l1").headline(),
        l("unparsed_rate_l2").headline(),
        l("unparsed_rate_l1"),
        h("accuracy_l2_random_fallback").headline(),
        h("accuracy_l1_random_fallback"),
        h("accuracy_lm_eval_strict").headline(),
        // --scoring loglikelihood
        h("acc"),
        h("acc_norm").headline(),
    ]
}

/// One MMLU-Pro answer to grade.
#[derive(Debug, Clone)]
pub struct MmluProRow {
    pub id: String,
    pub category: String,
    pub gold: char,
    pub prompt: Option<String>,
    pub output: String,
    pub finish_reason: Option<String>,
}

/// Grades answers in the order given, as the official `compute_accuracy.py` does: both
/// extraction levels, and its one seeded fallback generator drawn for every unparsed
/// answer of the l1 pass, then of the l2 pass. Returns per-item scores, the samples and
/// the count per category.
pub fn grade_mmlu_pro(
    rows: &[MmluProRow],
) -> (PerItem, Vec<serde_json::Value>, BTreeMap<String, usize>) {
    let mut rng = PyRandom::seed(12345);
    let mut per_level = Vec::new();
    for level in [Level::L1, Level::L2] {
        let mut graded = Vec::new();
        for row in rows {
            let pred = answer::mmlu_pro(&row.output, level);
            let drawn = pred.unwrap_or_else(|| rng.choice(&LETTERS));
            graded.push((pred, drawn == row.gold));
        }
        per_level.push(graded);
    }
    let mut scores = BTreeMap::new();
    for (name, graded) in [("l1", &per_level[0]), ("l2", &per_level[1])] {
        let correct: Vec<f64> = rows
            .iter()
            .zip(graded.iter())
            .map(|(row, (p, _))| f64::from(u8::from(*p == Some(row.gold))))
            .collect();
        let unparsed: Vec<f64> = graded
            .iter()
            .map(|(p, _)| f64::from(u8::from(p.is_none())))
            .collect();
        let fallback: Vec<f64> = graded
            .iter()
            .map(|(_, ok)| f64::from(u8::from(*ok)))
            .collect();
        scores.insert(format!("accuracy_{name}"), every(correct));
        scores.insert(format!("unparsed_rate_{name}"), every(unparsed));
        scores.insert(format!("accuracy_{name}_random_fallback"), every(fallback));
    }
    let strict: Vec<f64> = rows
        .iter()
        .map(|row| {
            f64::from(u8::from(
                answer::mmlu_pro_lm_eval(&row.output) == Some(row.gold),
            ))
        })
        .collect();
    scores.insert("accuracy_lm_eval_strict".into(), every(strict));
    // Per category, at level l2 with unparsed answers wrong.
    let mut per_category: BTreeMap<String, usize> = BTreeMap::new();
    for (k, row) in rows.iter().enumerate() {
        *per_category.entry(row.category.clone()).or_default() += 1;
        let ok = per_level[1][k].0 == Some(row.gold);
        scores
            .entry(format!("accuracy_l2/{}", row.category))
            .or_insert_with(|| vec![None; rows.len()])[k] = Some(f64::from(u8::from(ok)));
    }
    let samples = rows
        .iter()
        .enumerate()
        .map(|(k, row)| {
            json!({
                "id": row.id,
                "category": row.category,
                "prompt": row.prompt,
                "output": row.output,
                "finish_reason": row.finish_reason,
                "extracted": {
                    "l1": per_level[0][k].0.map(String::from),
                    "l2": per_level[1][k].0.map(String::from),
                },
                "gold": row.gold.to_string(),
                "correct": per_level[1][k].0 == Some(row.gold),
            })
        })
        .collect();
    (scores, samples, per_category)
}

/// lm-eval's `acc` / `acc_norm` for multiple choice: each option's text is a continuation
/// of the question ("Answer:" then the option), the prediction the option with the highest
/// summed log-probability (`acc`) or the highest per byte (`acc_norm`). Zero-shot cloze
/// scoring: a fast check, not comparable with CoT accuracy.
fn mmlu_pro_loglikelihood(
    test: &[ChoiceItem],
    chosen: &[usize],
    generator: &dyn Generator,
    settings: &GenerationSettings,
) -> Result<Outcome> {
    let (mut acc, mut acc_norm, mut samples) = (Vec::new(), Vec::new(), Vec::new());
    for &i in chosen {
        let item = &test[i];
        let context = format!(
            "The following are multiple choice questions (with answers) about {}.\n\nQuestion: {}\nAnswer:",
            item.category, item.question
        );
        let continuations: Vec<String> = item.options.iter().map(|o| format!(" {o}")).collect();
        let lls = generator.loglikelihoods(&context, &continuations)?;
        let best = |score: &dyn Fn(usize) -> f64| {
            (0..lls.len())
                .max_by(|&a, &b| score(a).total_cmp(&score(b)).then(b.cmp(&a)))
                .map(|k| LETTERS[k])
        };
        let pick = best(&|k| lls[k]);
        let pick_norm = best(&|k| lls[k] / continuations[k].len() as f64);
        acc.push(f64::from(u8::from(pick == Some(item.answer))));
        acc_norm.push(f64::from(u8::from(pick_norm == Some(item.answer))));
        samples.push(json!({
            "id": item.id,
            "category": item.category,
            "prompt": context,
            "continuations": continuations,
            "loglikelihoods": lls,
            "extracted": {"acc": pick.map(String::from), "acc_norm": pick_norm.map(String::from)},
            "gold": item.answer.to_string(),
            "correct": pick == Some(item.answer),
        }));
    }
    let mut scores = BTreeMap::new();
    scores.insert("acc".to_string(), every(acc));
    scores.insert("acc_norm".to_string(), every(acc_norm));
    let selection = json!({
        "limit": settings.limit,
        "seed": settings.seed,
        "stratified_by": "category",
        "scoring": "loglikelihood (zero-shot cloze over the option texts; not comparable with CoT accuracy)",
    });
    Ok((scores, samples, selection, chosen.len(), "acc"))
}

fn gsm8k(
    spec: &TaskSpec,
    problems: &[WordProblem],
    generator: &dyn Generator,
    settings: &GenerationSettings,
) -> Result<Outcome> {
    let TaskKind::Gsm8k(section) = &spec.kind else {
        unreachable!("GSM8K data comes from a [gsm8k] spec")
    };
    let chosen = choose(&vec![""; problems.len()], settings);
    let prompts: Vec<String> = chosen.iter().map(|&i| gsm8k_prompt(&problems[i])).collect();
    let params = answer_params(settings, section.max_tokens, &["Question:"]);
    let outputs = generate_all(generator, &prompts, &params, settings.style, &spec.name)?;
    let rows: Vec<Gsm8kRow> = chosen
        .iter()
        .zip(prompts)
        .zip(&outputs)
        .map(|((&i, prompt), g)| Gsm8kRow {
            id: problems[i].id.clone(),
            prompt: Some(prompt),
            output: g.text.clone(),
            finish_reason: g.finish_reason.clone(),
            reference: problems[i].answer.clone(),
        })
        .collect();
    let (scores, samples) = grade_gsm8k(&rows);
    let selection = selection(settings, &params, json!({}));
    Ok((
        scores,
        samples,
        selection,
        chosen.len(),
        "exact_match_strict",
    ))
}

pub fn gsm8k_measures() -> Vec<Measure> {
    vec![
        Measure::higher("exact_match_strict"),
        Measure::higher("exact_match_flexible").headline(),
    ]
}

pub fn math_measures() -> Vec<Measure> {
    vec![
        Measure::higher("accuracy"),
        Measure::higher("accuracy_hendrycks").headline(),
        Measure::lower("unboxed_rate").headline(),
    ]
}

/// One GSM8K answer to grade.
#[derive(Debug, Clone)]
pub struct Gsm8kRow {
    pub id: String,
    pub prompt: Option<String>,
    pub output: String,
    pub finish_reason: Option<String>,
    /// The reference solution (its final answer follows `#### `).
    pub reference: String,
}

/// lm-eval's strict (`#### N`) and flexible (last number) exact match of each answer.
pub fn grade_gsm8k(rows: &[Gsm8kRow]) -> (PerItem, Vec<serde_json::Value>) {
    let mut strict = Vec::new();
    let mut flexible = Vec::new();
    let mut samples = Vec::new();
    for row in rows {
        let gold = answer::gsm8k_normalize(&row.reference);
        let s = answer::gsm8k(&row.output, Gsm8kMode::Strict);
        let f = answer::gsm8k(&row.output, Gsm8kMode::Flexible);
        let hit = |x: &Option<String>| {
            x.as_deref()
                .is_some_and(|x| answer::gsm8k_normalize(x) == gold)
        };
        strict.push(f64::from(u8::from(hit(&s))));
        flexible.push(f64::from(u8::from(hit(&f))));
        samples.push(json!({
            "id": row.id,
            "prompt": row.prompt,
            "output": row.output,
            "finish_reason": row.finish_reason,
            "extracted": {"strict": s, "flexible": f},
            "gold": gold,
            "correct": hit(&s),
            "correct_flexible": hit(&f),
        }));
    }
    let mut scores = BTreeMap::new();
    scores.insert("exact_match_strict".into(), every(strict));
    scores.insert("exact_match_flexible".into(), every(flexible));
    (scores, samples)
}

fn math(
    spec: &TaskSpec,
    problems: &[MathProblem],
    generator: &dyn Generator,
    settings: &GenerationSettings,
) -> Result<Outcome> {
    let TaskKind::Math(section) = &spec.kind else {
        unreachable!("MATH data comes from a [math] spec")
    };
    let subjects: Vec<&str> = problems.iter().map(|p| p.subject.as_str()).collect();
    let chosen = choose(&subjects, settings);
    let prompts: Vec<String> = chosen.iter().map(|&i| math_prompt(&problems[i])).collect();
    let params = answer_params(settings, section.max_tokens, &[]);
    let outputs = generate_all(generator, &prompts, &params, settings.style, &spec.name)?;
    let rows: Vec<MathRow> = chosen
        .iter()
        .zip(prompts)
        .zip(&outputs)
        .map(|((&i, prompt), g)| MathRow {
            id: problems[i].id.clone(),
            subject: problems[i].subject.clone(),
            level: problems[i].level.clone(),
            prompt: Some(prompt),
            output: g.text.clone(),
            finish_reason: g.finish_reason.clone(),
            gold: problems[i].answer.clone(),
        })
        .collect();
    let (scores, samples) = grade_math(&rows);
    let selection = selection(settings, &params, json!({"stratified_by": "subject"}));
    Ok((scores, samples, selection, chosen.len(), "accuracy"))
}

/// One MATH answer to grade.
#[derive(Debug, Clone)]
pub struct MathRow {
    pub id: String,
    pub subject: String,
    pub level: String,
    pub prompt: Option<String>,
    pub output: String,
    pub finish_reason: Option<String>,
    /// The reference final answer.
    pub gold: String,
}

/// The last `\boxed{}` of each answer against the reference: equivalent as the MATH-500
/// grader judges (`accuracy`), as Hendrycks' `is_equiv` does, and the share with no box.
pub fn grade_math(rows: &[MathRow]) -> (PerItem, Vec<serde_json::Value>) {
    let (mut equivalent, mut exact, mut unboxed, mut samples) = (vec![], vec![], vec![], vec![]);
    for row in rows {
        let extracted = math_equiv::boxed_answer(&row.output);
        let correct = extracted.is_some_and(|e| math_equiv::is_equiv(&row.gold, e));
        let strict = extracted.is_some_and(|e| math_equiv::hendrycks_equiv(&row.gold, e));
        equivalent.push(f64::from(u8::from(correct)));
        exact.push(f64::from(u8::from(strict)));
        unboxed.push(f64::from(u8::from(extracted.is_none())));
        samples.push(json!({
            "id": row.id,
            "subject": row.subject,
            "level": row.level,
            "prompt": row.prompt,
            "output": row.output,
            "finish_reason": row.finish_reason,
            "extracted": extracted,
            "gold": row.gold,
            "correct": correct,
            "correct_hendrycks": strict,
        }));
    }
    let mut scores = BTreeMap::new();
    scores.insert("accuracy".into(), every(equivalent));
    scores.insert("accuracy_hendrycks".into(), every(exact));
    scores.insert("unboxed_rate".into(), every(unboxed));
    (scores, samples)
}

/// MATH answers graded from saved outputs.
pub fn math_graded(
    spec: &TaskSpec,
    rows: &[MathRow],
    from: GradedOutputs,
    settings: &GenerationSettings,
    started: Instant,
) -> TaskResult {
    let (per_item, samples) = grade_math(rows);
    graded_result(
        spec,
        "accuracy",
        math_measures(),
        per_item,
        samples,
        from,
        json!({}),
        settings,
        started,
    )
}

/// One GPQA answer (one question in one repeat's shuffle) to grade.
#[derive(Debug, Clone)]
pub struct GpqaRow {
    /// `<question id>#<repeat>`.
    pub id: String,
    pub repeat: usize,
    pub domain: String,
    /// The shuffle of (correct, incorrect 1, 2, 3) the prompt showed.
    pub permutation: Vec<usize>,
    pub prompt: Option<String>,
    pub output: String,
    pub finish_reason: Option<String>,
    /// The letter the correct answer had in that shuffle.
    pub gold: char,
}

/// simple-evals' `Answer: X` extraction against each row's gold letter.
pub fn grade_gpqa(rows: &[GpqaRow]) -> (PerItem, Vec<serde_json::Value>) {
    let (mut correct, mut unparsed, mut samples) = (vec![], vec![], vec![]);
    for row in rows {
        let extracted = answer::gpqa(&row.output);
        let hit = extracted == Some(row.gold);
        correct.push(f64::from(u8::from(hit)));
        unparsed.push(f64::from(u8::from(extracted.is_none())));
        samples.push(json!({
            "id": row.id,
            "repeat": row.repeat,
            "domain": row.domain,
            "permutation": row.permutation,
            "prompt": row.prompt,
            "output": row.output,
            "finish_reason": row.finish_reason,
            "extracted": extracted.map(String::from),
            "gold": row.gold.to_string(),
            "correct": hit,
        }));
    }
    let mut scores = BTreeMap::new();
    scores.insert("accuracy".into(), every(correct));
    scores.insert("unparsed_rate".into(), every(unparsed));
    (scores, samples)
}

pub fn gpqa_measures() -> Vec<Measure> {
    vec![
        Measure::higher("accuracy"),
        Measure::lower("unparsed_rate").headline(),
    ]
}

/// GPQA answers graded from saved outputs (each line one question in one repeat).
pub fn gpqa_graded(
    spec: &TaskSpec,
    rows: &[GpqaRow],
    from: GradedOutputs,
    settings: &GenerationSettings,
    started: Instant,
) -> TaskResult {
    let (per_item, samples) = grade_gpqa(rows);
    let repeats = rows.iter().map(|r| r.repeat + 1).max().unwrap_or(0);
    graded_result(
        spec,
        "accuracy",
        gpqa_measures(),
        per_item,
        samples,
        from,
        json!({"repeats": repeats}),
        settings,
        started,
    )
}

/// simple-evals' multiple-choice prompt over the choices in `permutation` order (of
/// correct, incorrect 1, 2, 3), and the gold letter: where the correct answer's text first
/// appears among them.
pub fn gpqa_prompt(item: &GpqaItem, permutation: &[usize]) -> (String, char) {
    let original = [
        &item.correct,
        &item.incorrect[0],
        &item.incorrect[1],
        &item.incorrect[2],
    ];
    let choices: Vec<&String> = permutation.iter().map(|&i| original[i]).collect();
    let gold = choices
        .iter()
        .position(|c| **c == item.correct)
        .expect("the correct answer is among the choices");
    let prompt = format!(
        "Answer the following multiple choice question. The last line of your response should be of the following format: 'Answer: $LETTER' (without quotes) where LETTER is one of ABCD. Think step by step before answering.\n\n{}\n\nA) {}\nB) {}\nC) {}\nD) {}",
        item.question, choices[0], choices[1], choices[2], choices[3]
    );
    (prompt, LETTERS[gold])
}

/// The questions of each repeat with their shuffles, as simple-evals draws them from one
/// `random.Random(seed)`: a `--limit` sample first, then the list repeated, then one
/// `sample(range(4), 4)` per entry.
pub fn gpqa_schedule(
    n: usize,
    limit: Option<usize>,
    repeats: usize,
    seed: u64,
) -> Vec<(usize, Vec<usize>)> {
    let mut rng = PyRandom::seed(seed);
    let chosen: Vec<usize> = match limit {
        Some(k) if k < n => rng.sample(n, k).expect("k < n"),
        _ => (0..n).collect(),
    };
    let mut schedule = Vec::with_capacity(chosen.len() * repeats);
    for _ in 0..repeats {
        for &i in &chosen {
            schedule.push((i, Vec::new()));
        }
    }
    for entry in &mut schedule {
        entry.1 = rng.sample(4, 4).expect("4 of 4");
    }
    schedule
}

fn gpqa(
    spec: &TaskSpec,
    items: &[GpqaItem],
    generator: &dyn Generator,
    settings: &GenerationSettings,
) -> Result<Outcome> {
    let TaskKind::Gpqa(section) = &spec.kind else {
        unreachable!("GPQA data comes from a [gpqa] spec")
    };
    let repeats = settings.repeats.unwrap_or(section.repeats).max(1);
    let schedule = gpqa_schedule(items.len(), settings.limit, repeats, settings.seed);
    let prompts: Vec<(String, char)> = schedule
        .iter()
        .map(|(i, permutation)| gpqa_prompt(&items[*i], permutation))
        .collect();
    let texts: Vec<String> = prompts.iter().map(|(p, _)| p.clone()).collect();
    let params = answer_params(settings, section.max_tokens, &[]);
    let outputs = generate_all(generator, &texts, &params, settings.style, &spec.name)?;
    let questions = schedule.len() / repeats;
    let rows: Vec<GpqaRow> = schedule
        .iter()
        .zip(prompts)
        .zip(&outputs)
        .enumerate()
        .map(|(k, (((i, permutation), (prompt, gold)), g))| GpqaRow {
            id: format!("{}#{}", items[*i].id, k / questions),
            repeat: k / questions,
            domain: items[*i].domain.clone(),
            permutation: permutation.clone(),
            prompt: Some(prompt),
            output: g.text.clone(),
            finish_reason: g.finish_reason.clone(),
            gold,
        })
        .collect();
    let (scores, samples) = grade_gpqa(&rows);
    let selection = selection(
        settings,
        &params,
        json!({"repeats": repeats, "questions": questions, "shuffle": "simple-evals: random.Random(seed).sample(range(4), 4) per question and repeat"}),
    );
    Ok((scores, samples, selection, schedule.len(), "accuracy"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_sample_is_proportional_seeded_and_ordered() {
        // 60 a, 30 b, 10 c; 10 items: 6, 3, 1.
        let groups: Vec<&str> = (0..100)
            .map(|i| {
                if i < 60 {
                    "a"
                } else if i < 90 {
                    "b"
                } else {
                    "c"
                }
            })
            .collect();
        let chosen = stratified_sample(&groups, 10, 7);
        assert_eq!(chosen.len(), 10);
        assert!(chosen.windows(2).all(|w| w[0] < w[1]));
        let count = |g| chosen.iter().filter(|&&i| groups[i] == g).count();
        assert_eq!((count("a"), count("b"), count("c")), (6, 3, 1));
        assert_eq!(chosen, stratified_sample(&groups, 10, 7));
        assert_ne!(chosen, stratified_sample(&groups, 10, 8));
        // Largest remainders: 7 of (60, 30, 10) -> 4.2, 2.1, 0.7 -> 4, 2, 1.
        let chosen = stratified_sample(&groups, 7, 1);
        assert_eq!(
            (
                count_in(&chosen, &groups, "a"),
                count_in(&chosen, &groups, "c")
            ),
            (4, 1)
        );
        assert_eq!(stratified_sample(&groups, 500, 1).len(), 100);
    }

    fn count_in(chosen: &[usize], groups: &[&str], g: &str) -> usize {
        chosen.iter().filter(|&&i| groups[i] == g).count()
    }

    #[test]
    fn mmlu_pro_prompt_matches_the_official_layout() {
        let item = ChoiceItem {
            id: "1".into(),
            question: "What is 2+2?".into(),
            options: vec!["3".into(), "4".into()],
            answer: 'B',
            category: "math".into(),
            cot_content: String::new(),
        };
        let example = ChoiceItem {
            cot_content: "A: Let's think step by step. 1+1 is 2. The answer is (A).".into(),
            question: "What is 1+1?".into(),
            options: vec!["2".into(), "3".into()],
            answer: 'A',
            ..item.clone()
        };
        let p = mmlu_pro_prompt(&item, &[&example]);
        assert_eq!(
            p,
            "The following are multiple choice questions (with answers) about math. Think step by step and then output the answer in the format of \"The answer is (X)\" at the end.\n\n\
             Question:\nWhat is 1+1?\nOptions:\nA. 2\nB. 3\nAnswer: Let's think step by step. 1+1 is 2. The answer is (A).\n\n\
             Question:\nWhat is 2+2?\nOptions:\nA. 3\nB. 4\nAnswer: Let's think step by step."
        );
    }
}
