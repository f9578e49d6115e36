//! Code-generation datasets graded by execution: HumanEval (a function signature and
//! docstring to complete, a `check` function of asserts) and MBPP (a task statement and
//! assert lines), and LiveCodeBench (see `livecodebench`). JSONL (optionally gzipped, as HumanEval ships) or the hub's Parquet; a
//! bad record is an error naming the file, line and field.

use std::path::Path;

use serde_json::{Map, Value};

use crate::data::generation::records;
use crate::data::lines::{json_objects, opt_str_field, read_bytes, sha256_hex, str_field};
use crate::data::livecodebench::{self, DateWindow, IoTest};
use crate::data::DataSource;
use crate::error::{Error, Result};
use crate::spec::{CodeBenchmark, CodeSpec, DatasetSpec};

/// One problem and how it is checked.
#[derive(Debug, Clone, Default)]
pub struct CodeProblem {
    /// `HumanEval/0`, or MBPP's task id (`11`).
    pub id: String,
    /// HumanEval: the code to complete; MBPP: the task statement.
    pub prompt: String,
    /// HumanEval: the function `check` is called with.
    pub entry_point: String,
    /// HumanEval: the test code defining `check(candidate)`; MBPP: the assert lines.
    pub tests: Vec<String>,
    /// MBPP: code run before the asserts (usually empty).
    pub test_setup: String,
    /// The reference solution (HumanEval: the body that completes the prompt).
    pub canonical: String,
    /// LiveCodeBench: the code the answer starts from (`class Solution` for functional
    /// problems, empty for standard-input ones).
    pub starter_code: String,
    /// LiveCodeBench: input/output tests (public, then private); `entry_point` names the
    /// method functional tests call.
    pub io_tests: Vec<IoTest>,
    /// LiveCodeBench: the contest day (`YYYY-MM-DD`) and difficulty.
    pub date: String,
    pub difficulty: String,
}

pub struct CodeData {
    pub benchmark: CodeBenchmark,
    pub problems: Vec<CodeProblem>,
    /// MBPP's few-shot examples (task ids 2, 3, 4, as lm-eval and the MBPP paper use).
    pub shots: Vec<CodeProblem>,
    pub origin: String,
    pub fingerprint: String,
}

fn string_list(
    path: &Path,
    line: usize,
    obj: &Map<String, Value>,
    field: &str,
) -> Result<Vec<String>> {
    match obj.get(field) {
        Some(Value::Array(values)) => values
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Error::record(path, line, field, "every entry must be a string"))
            })
            .collect(),
        None | Some(Value::Null) => Err(Error::record(path, line, field, "missing list")),
        Some(_) => Err(Error::record(
            path,
            line,
            field,
            "expected a list of strings",
        )),
    }
}

fn humaneval(path: &Path, obj: &Map<String, Value>, line: usize) -> Result<CodeProblem> {
    Ok(CodeProblem {
        id: str_field(path, line, obj, "task_id")?,
        prompt: str_field(path, line, obj, "prompt")?,
        entry_point: str_field(path, line, obj, "entry_point")?,
        tests: vec![str_field(path, line, obj, "test")?],
        test_setup: String::new(),
        canonical: opt_str_field(path, line, obj, "canonical_solution")?,
        ..CodeProblem::default()
    })
}

fn mbpp(path: &Path, obj: &Map<String, Value>, line: usize) -> Result<CodeProblem> {
    let tests = string_list(path, line, obj, "test_list")?;
    if tests.is_empty() {
        return Err(Error::record(path, line, "test_list", "no tests"));
    }
    Ok(CodeProblem {
        id: str_field(path, line, obj, "task_id")?,
        prompt: str_field(path, line, obj, "text")?,
        entry_point: String::new(),
        tests,
        test_setup: opt_str_field(path, line, obj, "test_setup_code")?,
        canonical: opt_str_field(path, line, obj, "code")?,
        ..CodeProblem::default()
    })
}

pub fn load_code(spec: &DatasetSpec, section: &CodeSpec, source: &DataSource) -> Result<CodeData> {
    if section.benchmark == CodeBenchmark::Livecodebench {
        return load_livecodebench(section, source);
    }
    let relative = source.split_file(spec, "{split}.jsonl");
    let path = source.file(&relative)?;
    let bytes = read_bytes(&path)?;
    let mut problems = Vec::new();
    let mut shots = Vec::new();
    for (line, obj) in records(&path, &bytes)? {
        let problem = match section.benchmark {
            CodeBenchmark::Humaneval => humaneval(&path, &obj, line)?,
            CodeBenchmark::Mbpp => mbpp(&path, &obj, line)?,
            CodeBenchmark::Livecodebench => unreachable!("read by load_livecodebench"),
        };
        let number: Option<u64> = problem.id.parse().ok();
        if section.benchmark == CodeBenchmark::Mbpp && matches!(number, Some(2..=4)) {
            shots.push(problem.clone());
        }
        let kept = match (section.task_ids, number) {
            (Some([low, high]), Some(n)) => (low..=high).contains(&n),
            (Some(_), None) => {
                return Err(Error::record(
                    &path,
                    line,
                    "task_id",
                    format!(
                        "`{}` is not a number, and the spec selects task_ids",
                        problem.id
                    ),
                ))
            }
            (None, _) => true,
        };
        if kept {
            problems.push(problem);
        }
    }
    if problems.is_empty() {
        return Err(Error::input(
            &path,
            "no problems (after the spec's task_ids)",
        ));
    }
    shots.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(CodeData {
        benchmark: section.benchmark,
        problems,
        shots,
        origin: source.describe(),
        fingerprint: sha256_hex(&bytes),
    })
}

/// The problems of the spec's release whose contest date is in its window, in file order.
fn load_livecodebench(section: &CodeSpec, source: &DataSource) -> Result<CodeData> {
    let release = section.release.as_deref().unwrap_or("release_latest");
    let window = DateWindow {
        start: section
            .start_date
            .as_deref()
            .map(livecodebench::parse_day)
            .transpose()?,
        end: section
            .end_date
            .as_deref()
            .map(livecodebench::parse_day)
            .transpose()?,
    };
    let mut problems = Vec::new();
    let mut fingerprints = Vec::new();
    let mut last_path = None;
    for file in livecodebench::release_files(release)? {
        let path = source.file(&file)?;
        let bytes = read_bytes(&path)?;
        fingerprints.push(sha256_hex(&bytes));
        for (line, obj) in json_objects(&path, &bytes)? {
            if let Some(problem) = livecodebench::problem(&path, &obj, line, window)? {
                problems.push(problem);
            }
        }
        last_path = Some(path);
    }
    if problems.is_empty() {
        let path = last_path.expect("a release names at least one file");
        return Err(Error::input(
            &path,
            format!(
                "no problems in release {release} between {} and {}",
                section.start_date.as_deref().unwrap_or("the start"),
                section.end_date.as_deref().unwrap_or("the end")
            ),
        ));
    }
    Ok(CodeData {
        benchmark: CodeBenchmark::Livecodebench,
        problems,
        shots: Vec::new(),
        origin: format!("{} ({release})", source.describe()),
        fingerprint: sha256_hex(fingerprints.join(",").as_bytes()),
    })
}
