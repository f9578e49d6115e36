//! Datasets answered by generation: MMLU-Pro (multiple choice with up to ten options,
//! by category), GSM8K (grade-school math, the answer after `#### `) and MATH (LaTeX
//! answers, by subject). JSONL records, or Parquet as the hub holds them; a bad record is
//! an error naming the file, line (or row) and field.

use std::path::Path;

use serde_json::{Map, Value};

use crate::data::lines::{json_objects, opt_str_field, read_bytes, sha256_hex, str_field};
use crate::data::DataSource;
use crate::error::{Error, Result};
use crate::spec::{DatasetSpec, MmluProSpec};

/// One MMLU-Pro question.
#[derive(Debug, Clone)]
pub struct ChoiceItem {
    pub id: String,
    pub question: String,
    /// The options, `N/A` placeholders removed (as the official evaluation does).
    pub options: Vec<String>,
    /// The gold letter, A–J.
    pub answer: char,
    pub category: String,
    /// Worked answer of a validation example (the few-shot demonstrations).
    pub cot_content: String,
}

/// One GSM8K problem.
#[derive(Debug, Clone)]
pub struct WordProblem {
    pub id: String,
    pub question: String,
    /// The full reference solution; its final answer follows `#### `.
    pub answer: String,
}

/// One MATH problem.
#[derive(Debug, Clone)]
pub struct MathProblem {
    pub id: String,
    pub problem: String,
    /// The official final answer (LaTeX).
    pub answer: String,
    pub subject: String,
    pub level: String,
}

#[derive(Debug, Clone)]
pub enum GenerationData {
    MmluPro {
        test: Vec<ChoiceItem>,
        /// Few-shot examples, when the validation split is available.
        validation: Option<Vec<ChoiceItem>>,
    },
    Gsm8k(Vec<WordProblem>),
    Math(Vec<MathProblem>),
    Gpqa(Vec<crate::data::gpqa::GpqaItem>),
}

pub struct Loaded {
    pub data: GenerationData,
    pub origin: String,
    pub fingerprint: String,
}

fn read_records(source: &DataSource, relative: &str) -> Result<(std::path::PathBuf, Vec<u8>)> {
    let path = source.file(relative)?;
    let bytes = read_bytes(&path)?;
    Ok((path, bytes))
}

/// The file's records as JSON objects with their 1-based line (JSONL) or row (Parquet).
pub(crate) fn records(path: &Path, bytes: &[u8]) -> Result<Vec<(usize, Map<String, Value>)>> {
    if path.extension().is_none_or(|e| e != "parquet") {
        return json_objects(path, bytes);
    }
    use polars::prelude::*;
    let polars_err = |source: PolarsError| Error::Polars {
        context: path.display().to_string(),
        source,
    };
    let mut frame = ParquetReader::new(std::io::Cursor::new(bytes))
        .finish()
        .map_err(polars_err)?;
    // One JSON object per row: the same readers then serve both layouts.
    let mut lines = Vec::new();
    JsonWriter::new(&mut lines)
        .with_json_format(JsonFormat::JsonLines)
        .finish(&mut frame)
        .map_err(polars_err)?;
    json_objects(path, &lines)
}

fn choice_items(path: &Path, bytes: &[u8]) -> Result<Vec<ChoiceItem>> {
    let mut items = Vec::new();
    for (line, obj) in records(path, bytes)? {
        let options = match obj.get("options") {
            Some(Value::Array(values)) => values
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        Error::record(path, line, "options", "every option must be a string")
                    })
                })
                .collect::<Result<Vec<_>>>()?,
            _ => {
                return Err(Error::record(
                    path,
                    line,
                    "options",
                    "missing list of options",
                ))
            }
        };
        let options: Vec<String> = options.into_iter().filter(|o| o != "N/A").collect();
        if options.is_empty() || options.len() > 10 {
            return Err(Error::record(
                path,
                line,
                "options",
                "expected 1 to 10 options",
            ));
        }
        let answer = str_field(path, line, &obj, "answer")?;
        let letter = answer.chars().next().filter(|c| {
            answer.len() == 1
                && ('A'..='J').contains(c)
                && ((*c as u8 - b'A') as usize) < options.len()
        });
        let answer = letter.ok_or_else(|| {
            Error::record(
                path,
                line,
                "answer",
                format!("`{answer}` is not the letter of an option"),
            )
        })?;
        items.push(ChoiceItem {
            id: str_field(path, line, &obj, "question_id")?,
            question: str_field(path, line, &obj, "question")?,
            options,
            answer,
            category: str_field(path, line, &obj, "category")?,
            cot_content: opt_str_field(path, line, &obj, "cot_content")?,
        });
    }
    if items.is_empty() {
        return Err(Error::input(path, "no questions"));
    }
    Ok(items)
}

fn word_problems(path: &Path, bytes: &[u8]) -> Result<Vec<WordProblem>> {
    let mut items = Vec::new();
    for (line, obj) in records(path, bytes)? {
        let answer = str_field(path, line, &obj, "answer")?;
        if !answer.contains("#### ") {
            return Err(Error::record(
                path,
                line,
                "answer",
                "no final answer after `#### `",
            ));
        }
        items.push(WordProblem {
            id: line.to_string(),
            question: str_field(path, line, &obj, "question")?,
            answer,
        });
    }
    if items.is_empty() {
        return Err(Error::input(path, "no problems"));
    }
    Ok(items)
}

pub fn load_mmlu_pro(
    spec: &DatasetSpec,
    source: &DataSource,
    section: &MmluProSpec,
) -> Result<Loaded> {
    let (path, bytes) = read_records(source, &source.split_file(spec, "{split}.jsonl"))?;
    let test = choice_items(&path, &bytes)?;
    let validation = match source {
        DataSource::Hub(_) => section
            .hub_validation_file
            .as_deref()
            .or(section.validation_file.as_deref()),
        DataSource::Local(_) => section.validation_file.as_deref(),
    };
    let validation = match validation {
        // The few-shot split is optional: zero-shot when it is absent (recorded).
        Some(file) => match source.file(file) {
            Ok(p) => Some(choice_items(&p, &read_bytes(&p)?)?),
            Err(_) => None,
        },
        None => None,
    };
    Ok(Loaded {
        data: GenerationData::MmluPro { test, validation },
        origin: source.describe(),
        fingerprint: sha256_hex(&bytes),
    })
}

pub fn load_gsm8k(spec: &DatasetSpec, source: &DataSource) -> Result<Loaded> {
    let (path, bytes) = read_records(source, &source.split_file(spec, "{split}.jsonl"))?;
    Ok(Loaded {
        data: GenerationData::Gsm8k(word_problems(&path, &bytes)?),
        origin: source.describe(),
        fingerprint: sha256_hex(&bytes),
    })
}

fn math_problems(path: &Path, bytes: &[u8]) -> Result<Vec<MathProblem>> {
    let mut items = Vec::new();
    for (line, obj) in records(path, bytes)? {
        let level = match obj.get("level") {
            Some(Value::Number(n)) => n.to_string(),
            _ => opt_str_field(path, line, &obj, "level")?,
        };
        items.push(MathProblem {
            id: opt_str_field(path, line, &obj, "unique_id")?,
            problem: str_field(path, line, &obj, "problem")?,
            answer: str_field(path, line, &obj, "answer")?,
            subject: opt_str_field(path, line, &obj, "subject")?,
            level,
        });
    }
    if items.is_empty() {
        return Err(Error::input(path, "no problems"));
    }
    Ok(items)
}

pub fn load_math(spec: &DatasetSpec, source: &DataSource) -> Result<Loaded> {
    let (path, bytes) = read_records(source, &source.split_file(spec, "{split}.jsonl"))?;
    Ok(Loaded {
        data: GenerationData::Math(math_problems(&path, &bytes)?),
        origin: source.describe(),
        fingerprint: sha256_hex(&bytes),
    })
}
