//! Code tasks graded by execution: each problem's prompt as the official evaluation
//! (completion form) or lm-eval's instruct form (chat, code taken from the reply's code
//! block) frames it (LiveCodeBench: its generic chat template), `--samples n` completions per problem, each completion run with the
//! problem's tests in the sandbox, and pass@k by the unbiased estimator. Every completion's
//! code, verdict, reason, time and output tails go to `samples.jsonl`.

use std::time::Instant;

use regex::Regex;
use serde_json::json;

use crate::data::code::{load_code, CodeData, CodeProblem};
use crate::data::DataSource;
use crate::engine::{ChatMessage, GenerationParams, GenerationRequest, Generator, Prompt};
use crate::error::{Error, Result};
use crate::eval::generation::{
    choose, finish, generate_requests, selection, GenerationSettings, PerItem, PromptStyle,
};
use crate::eval::task::{Engine, Measure, Needs, Task};
use crate::eval::{DatasetRecord, EmbedStats, TaskInput, TaskResult};
use crate::metrics::pass_at_k::pass_at_k;
use crate::sandbox::{Execution, Limits, Program, Sandbox};
use crate::spec::{CodeBenchmark, CodeSpec, TaskKind, TaskSpec};

/// Where the Codex paper (and human-eval) stop a HumanEval completion: the function ends
/// where top-level code starts.
pub const HUMANEVAL_STOP: [&str; 5] = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"];

pub struct CodeTask {
    spec: TaskSpec,
    section: CodeSpec,
    data: CodeData,
}

/// A program of a problem's completion with its tests, and the code the model wrote.
pub struct Graded {
    pub code: String,
    pub execution: Execution,
}

impl CodeTask {
    pub fn load(spec: &TaskSpec, section: &CodeSpec, source: &DataSource) -> Result<CodeTask> {
        Ok(CodeTask {
            spec: spec.clone(),
            section: section.clone(),
            data: load_code(&spec.dataset, section, source)?,
        })
    }

    pub fn problems(&self) -> &[CodeProblem] {
        &self.data.problems
    }

    /// The request for a problem in the given style (before sampling parameters).
    pub fn prompt(&self, problem: &CodeProblem, style: PromptStyle) -> Prompt {
        match (self.data.benchmark, style) {
            (CodeBenchmark::Humaneval, PromptStyle::Completion) => {
                Prompt::Text(problem.prompt.clone())
            }
            (CodeBenchmark::Humaneval, PromptStyle::Chat) => {
                Prompt::Chat(vec![ChatMessage::user(humaneval_instruct(problem))])
            }
            (CodeBenchmark::Mbpp, PromptStyle::Completion) => {
                let mut text = String::new();
                for shot in &self.data.shots {
                    text.push_str(&mbpp_header(shot));
                    text.push_str(&shot.canonical);
                    text.push_str("\n[DONE]\n\n");
                }
                text.push_str(&mbpp_header(problem));
                Prompt::Text(text)
            }
            (CodeBenchmark::Livecodebench, PromptStyle::Chat) => Prompt::Chat(vec![
                ChatMessage {
                    role: "system".into(),
                    content: LCB_SYSTEM.into(),
                },
                ChatMessage::user(lcb_question(problem)),
            ]),
            (CodeBenchmark::Livecodebench, PromptStyle::Completion) => {
                Prompt::Text(format!("{LCB_SYSTEM}\n\n{}", lcb_question(problem)))
            }
            (CodeBenchmark::Mbpp, PromptStyle::Chat) => {
                let mut messages = Vec::new();
                for shot in &self.data.shots {
                    messages.push(ChatMessage::user(mbpp_instruct(shot)));
                    messages.push(ChatMessage {
                        role: "assistant".into(),
                        content: format!("```python\n{}\n```", shot.canonical),
                    });
                }
                messages.push(ChatMessage::user(mbpp_instruct(problem)));
                Prompt::Chat(messages)
            }
        }
    }

    fn stop(&self, style: PromptStyle) -> Vec<String> {
        match (self.data.benchmark, style) {
            (CodeBenchmark::Humaneval, PromptStyle::Completion) => {
                HUMANEVAL_STOP.iter().map(|s| s.to_string()).collect()
            }
            (CodeBenchmark::Mbpp, PromptStyle::Completion) => vec!["[DONE]".into()],
            (CodeBenchmark::Livecodebench, _) | (_, PromptStyle::Chat) => Vec::new(),
        }
    }

    /// The code a model's output amounts to: a HumanEval completion continues the prompt;
    /// a chat reply's first code block is taken (after the prompt, unless it is the whole
    /// function); MBPP's output is read as lm-eval reads it.
    pub fn code_of(&self, problem: &CodeProblem, output: &str, style: PromptStyle) -> String {
        match (self.data.benchmark, style) {
            (CodeBenchmark::Humaneval, PromptStyle::Completion) => {
                format!("{}{}", problem.prompt, output)
            }
            (CodeBenchmark::Humaneval, PromptStyle::Chat) => {
                let block = first_code_block(output).unwrap_or(output);
                if block.contains(&format!("def {}(", problem.entry_point)) {
                    format!("{}\n{}", problem.prompt, block)
                } else {
                    format!("{}{}", problem.prompt, block)
                }
            }
            (CodeBenchmark::Mbpp, style) => {
                lm_eval_extract_code(output, style == PromptStyle::Completion)
            }
            (CodeBenchmark::Livecodebench, PromptStyle::Chat) => {
                lcb_extract_code(output).unwrap_or_default()
            }
            // A base model may write the program without fences.
            (CodeBenchmark::Livecodebench, PromptStyle::Completion) => {
                lcb_extract_code(output).unwrap_or_else(|| output.trim().to_string())
            }
        }
    }

    /// The program run for a piece of code: the code, then the problem's tests
    /// (LiveCodeBench: its grader's checks, given the code and tests on standard input).
    pub fn program(&self, problem: &CodeProblem, code: &str) -> Program {
        let source = match self.data.benchmark {
            // human-eval's check program.
            CodeBenchmark::Humaneval => format!(
                "{code}\n{}\ncheck({})\n",
                problem.tests.join("\n"),
                problem.entry_point
            ),
            CodeBenchmark::Mbpp => format!(
                "{code}\n{}\n{}\n",
                problem.test_setup,
                problem.tests.join("\n")
            ),
            CodeBenchmark::Livecodebench => {
                let per_test = self.section.timeout_seconds;
                let job = json!({
                    "code": code,
                    "func_name": problem.entry_point,
                    "tests": problem.io_tests,
                    "timeout": per_test,
                });
                return Program {
                    source: LCB_HARNESS.to_string(),
                    stdin: job.to_string().into_bytes(),
                    // LiveCodeBench's own bound on a whole check.
                    timeout_seconds: Some((per_test + 1.0) * problem.io_tests.len() as f64 + 5.0),
                };
            }
        };
        Program {
            source,
            stdin: Vec::new(),
            timeout_seconds: None,
        }
    }

    /// The sandbox the settings ask for, with this task's time limits.
    pub fn sandbox(&self, settings: &GenerationSettings) -> Result<Sandbox> {
        let limits = Limits {
            timeout_seconds: self.section.timeout_seconds,
            cpu_seconds: self.section.timeout_seconds.ceil() as u64,
            ..Limits::default()
        };
        Sandbox::new(&settings.code.sandbox, settings.code.python.clone(), limits)
    }

    /// Runs every completion of the chosen problems (`codes[i]` holds the code of
    /// problem `chosen[i]`) and scores them; callers add the raw outputs to the samples.
    pub fn grade(
        &self,
        chosen: &[usize],
        codes: &[Vec<String>],
        sandbox: &Sandbox,
    ) -> Result<(PerItem, Vec<serde_json::Value>)> {
        let programs: Vec<Program> = chosen
            .iter()
            .zip(codes)
            .flat_map(|(&i, codes)| {
                codes
                    .iter()
                    .map(move |code| self.program(&self.data.problems[i], code))
            })
            .collect();
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut executions = sandbox.run_all(&programs, workers).into_iter();
        let n = codes.iter().map(Vec::len).min().unwrap_or(0);
        let ks: Vec<usize> = self
            .section
            .k_values
            .iter()
            .copied()
            .filter(|&k| k <= n)
            .collect();
        if ks.is_empty() {
            return Err(Error::Usage(format!(
                "task {}: no k in k_values {:?} is at most the {n} samples per problem",
                self.spec.name, self.section.k_values
            )));
        }
        let mut per_item = PerItem::new();
        let mut samples = Vec::with_capacity(chosen.len());
        for (&i, codes) in chosen.iter().zip(codes) {
            let problem = &self.data.problems[i];
            let graded: Vec<Graded> = codes
                .iter()
                .map(|code| Graded {
                    code: code.clone(),
                    execution: executions.next().expect("one execution per program"),
                })
                .collect();
            let passed = graded.iter().filter(|g| g.execution.passed()).count();
            for &k in &ks {
                let value = pass_at_k(graded.len(), passed, k).expect("k is at most n");
                per_item
                    .entry(format!("pass@{k}"))
                    .or_default()
                    .push(Some(value));
            }
            let mut sample = json!({
                "id": problem.id,
                "n": graded.len(),
                "passed": passed,
                "correct": passed > 0,
                "completions": graded.iter().map(|g| json!({
                    "code": g.code,
                    "verdict": if g.execution.passed() { "passed" } else { "failed" },
                    "reason": g.execution.reason,
                    "seconds": g.execution.seconds,
                    "exit_code": g.execution.exit_code,
                    "signal": g.execution.signal,
                    "stdout_tail": g.execution.stdout_tail,
                    "stderr_tail": g.execution.stderr_tail,
                })).collect::<Vec<_>>(),
            });
            if !problem.date.is_empty() {
                sample["date"] = json!(problem.date);
                sample["difficulty"] = json!(problem.difficulty);
            }
            samples.push(sample);
        }
        Ok((per_item, samples))
    }

    /// The result record around graded problems.
    pub fn result(
        &self,
        per_item: &PerItem,
        mut samples: Vec<serde_json::Value>,
        selection: serde_json::Value,
        settings: &GenerationSettings,
        started: Instant,
    ) -> TaskResult {
        let scores = finish(per_item, &mut samples, &self.spec.name, settings);
        TaskResult {
            task: self.spec.name.clone(),
            task_name: self.spec.name.clone(),
            family: self.spec.family().into(),
            split: self.spec.dataset.split.clone(),
            main_score: "pass@1".into(),
            scores,
            measures: Vec::new(),
            dataset: DatasetRecord {
                origin: self.data.origin.clone(),
                fingerprint: self.data.fingerprint.clone(),
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
}

impl Task for CodeTask {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    fn dataset_fingerprint(&self) -> String {
        self.data.fingerprint.clone()
    }

    fn measures(&self) -> Vec<Measure> {
        let mut ks = self.section.k_values.clone();
        ks.sort_unstable();
        ks.dedup();
        let mut measures = vec![Measure::higher("pass@1").headline()];
        measures.extend(
            ks.into_iter()
                .filter(|&k| k != 1)
                .map(|k| Measure::higher(format!("pass@{k}")).headline()),
        );
        measures
    }

    fn needs(&self) -> Needs {
        Needs::Generations
    }

    fn inputs(&self) -> Result<Vec<TaskInput>> {
        Ok(self
            .data
            .problems
            .iter()
            .map(|p| TaskInput {
                text: self.prompt(p, PromptStyle::Completion).plain_text(),
                role: crate::engine::Role::Query,
                instruction: None,
            })
            .collect())
    }

    fn run(&self, engine: Engine<'_>) -> Result<TaskResult> {
        let (generator, settings) = engine.generator(&self.spec)?;
        // No model time is spent if the code cannot be run.
        let sandbox = self.sandbox(settings)?;
        let started = Instant::now();
        let chosen = choose(&vec![""; self.data.problems.len()], settings);
        let n = settings.code.samples.max(1);
        let params = self.params(settings, n);
        let style = settings.style;
        let requests: Vec<GenerationRequest> = chosen
            .iter()
            .flat_map(|&i| {
                let prompt = self.prompt(&self.data.problems[i], style);
                params.iter().map(move |p| GenerationRequest {
                    prompt: prompt.clone(),
                    params: p.clone(),
                })
            })
            .collect();
        let outputs = generate(generator, &requests, &self.spec.name)?;
        let mut codes = Vec::with_capacity(chosen.len());
        let mut raw = Vec::with_capacity(chosen.len());
        for (k, &i) in chosen.iter().enumerate() {
            let problem = &self.data.problems[i];
            let these = &outputs[k * n..(k + 1) * n];
            codes.push(
                these
                    .iter()
                    .map(|(text, _)| self.code_of(problem, text, style))
                    .collect::<Vec<_>>(),
            );
            raw.push(these);
        }
        let (per_item, mut samples) = self.grade(&chosen, &codes, &sandbox)?;
        for ((sample, these), &i) in samples.iter_mut().zip(&raw).zip(&chosen) {
            sample["prompt"] = json!(self.prompt(&self.data.problems[i], style).plain_text());
            if let Some(list) = sample["completions"].as_array_mut() {
                for (c, (text, finish_reason)) in list.iter_mut().zip(these.iter()) {
                    c["output"] = json!(text);
                    c["finish_reason"] = json!(finish_reason);
                }
            }
        }
        let selection = selection(
            settings,
            &params[0],
            json!({
                "benchmark": self.data.benchmark,
                "samples": n,
                "temperature": params[0].temperature,
                "top_p": params[0].top_p,
                "shots": if self.data.benchmark == CodeBenchmark::Mbpp { self.data.shots.len() } else { 0 },
                "sandbox": settings.code.sandbox,
                "timeout_seconds": self.section.timeout_seconds,
                "release": self.section.release,
                "start_date": self.section.start_date,
                "end_date": self.section.end_date,
            }),
        );
        Ok(self.result(&per_item, samples, selection, settings, started))
    }
}

impl CodeTask {
    /// One set of parameters per sample: greedy for a single sample, else sampled at the
    /// temperature with a seed per sample (so a rerun draws the same completions where the
    /// engine honours seeds).
    fn params(&self, settings: &GenerationSettings, n: usize) -> Vec<GenerationParams> {
        let temperature = settings
            .code
            .temperature
            .unwrap_or(if n > 1 { 0.8 } else { 0.0 });
        (0..n)
            .map(|j| GenerationParams {
                max_tokens: settings.max_tokens.unwrap_or(self.section.max_tokens),
                temperature,
                top_p: (temperature > 0.0).then_some(0.95),
                seed: (temperature > 0.0).then(|| settings.seed.wrapping_mul(1_000_003) + j as u64),
                stop: self.stop(settings.style),
                stream: false,
                ..GenerationParams::default()
            })
            .collect()
    }
}

/// Each request's text and finish reason.
fn generate(
    generator: &dyn Generator,
    requests: &[GenerationRequest],
    label: &str,
) -> Result<Vec<(String, Option<String>)>> {
    Ok(generate_requests(generator, requests, label)?
        .into_iter()
        .map(|g| (g.text, g.finish_reason))
        .collect())
}

/// MBPP's prompt (lm-eval `mbpp`, the MBPP paper's): statement, three asserts, `[BEGIN]`.
fn mbpp_header(problem: &CodeProblem) -> String {
    format!(
        "You are an expert Python programmer, and here is your task: {} Your code should pass these tests:\n\n{}\n[BEGIN]\n",
        problem.prompt,
        problem.tests.iter().take(3).cloned().collect::<Vec<_>>().join("\n")
    )
}

/// lm-eval's `mbpp_instruct` user turn.
fn mbpp_instruct(problem: &CodeProblem) -> String {
    format!(
        "You are an expert Python programmer, and here is your task:\n{}\nYour code should pass these tests:\n{}",
        problem.prompt,
        problem.tests.iter().take(3).cloned().collect::<Vec<_>>().join("\n")
    )
}

/// LiveCodeBench's checks (see the file's header), run as the sandboxed program.
const LCB_HARNESS: &str = include_str!("lcb_harness.py");

/// LiveCodeBench's system message for generic chat models.
const LCB_SYSTEM: &str = "You are an expert Python programmer. You will be given a question (problem specification) and will generate a correct Python program that matches the specification and passes all tests.";

/// LiveCodeBench's generic question template: the statement, the starter code or the
/// stdin/stdout instruction, and the answer cue.
fn lcb_question(problem: &CodeProblem) -> String {
    let format = if problem.starter_code.is_empty() {
        "Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on the sample inputs). Enclose your code within delimiters as follows. Ensure that when the python program runs, it reads the inputs, runs the algorithm and writes output to STDOUT.\n```python\n# YOUR CODE HERE\n```".to_string()
    } else {
        format!(
            "You will use the following starter code to write the solution to the problem and enclose your code within delimiters.\n```python\n{}\n```",
            problem.starter_code
        )
    };
    format!(
        "### Question:\n{}\n\n### Format: {format}\n\n### Answer: (use the provided format with backticks)\n\n",
        problem.prompt
    )
}

/// LiveCodeBench's extraction: the lines between the last two lines that hold a fence;
/// `None` with fewer than two.
pub fn lcb_extract_code(output: &str) -> Option<String> {
    let lines: Vec<&str> = output.split('\n').collect();
    let fences: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("```"))
        .collect();
    match fences[..] {
        [.., open, close] => Some(lines[open + 1..close].join("\n")),
        _ => None,
    }
}

/// lm-eval's `humaneval_instruct` user turn.
fn humaneval_instruct(problem: &CodeProblem) -> String {
    format!(
        "Write a solution to the following problem and make sure that it passes the tests:\n```python\n{}```",
        problem.prompt
    )
}

/// The first fenced code block's body (any language tag), as lm-eval's extraction reads it.
pub fn first_code_block(text: &str) -> Option<&str> {
    static BLOCK: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let block = BLOCK.get_or_init(|| Regex::new(r"(?s)```(?:\w+)?\n?(.*?)\n?```").expect("valid"));
    block
        .captures(text)
        .and_then(|c| c.get(1))
        .map(|m| m.as_str())
}

/// lm-eval's MBPP extraction: the first code block of the output (with a fence put in
/// front when the prompt opened one), else of the output with ```` ```python ```` fences
/// made plain, else the whole output; after `from __future__ import annotations`.
pub fn lm_eval_extract_code(output: &str, fence_in_front: bool) -> String {
    let header = "from __future__ import annotations\n";
    let fenced = if fence_in_front {
        format!("```{output}")
    } else {
        output.to_string()
    };
    if let Some(block) = first_code_block(&fenced) {
        return format!("{header}{block}");
    }
    let plain = output.replace("```python", "```");
    match first_code_block(&plain) {
        Some(block) => format!("{header}{block}"),
        None => format!("{header}{output}"),
    }
}

/// Which family implements a code spec (for `task::load`).
pub fn load(spec: &TaskSpec, source: &DataSource) -> Result<CodeTask> {
    match &spec.kind {
        TaskKind::Code(section) => CodeTask::load(spec, section, source),
        other => Err(Error::Usage(format!(
            "task {}: family {} is not a code task",
            spec.name,
            other.family()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_blocks_are_read_as_lm_eval_reads_them() {
        assert_eq!(
            first_code_block("Here:\n```python\ndef f():\n    return 1\n```\nDone"),
            Some("def f():\n    return 1")
        );
        assert_eq!(first_code_block("```\nx = 1\n```"), Some("x = 1"));
        assert_eq!(first_code_block("no block"), None);
        assert_eq!(
            lm_eval_extract_code("def f(): pass\n", true),
            "from __future__ import annotations\ndef f(): pass\n"
        );
        // A fence in front of an output that opens its own block closes at once (as in
        // lm-eval, whose prompt has no fence of its own for this form).
        assert_eq!(
            lm_eval_extract_code("```python\nx = 1\n```", true),
            "from __future__ import annotations\n"
        );
        assert_eq!(
            lm_eval_extract_code("Sure:\n```python\nx = 1\n```", false),
            "from __future__ import annotations\nx = 1"
        );
        // LiveCodeBench takes the last block.
        assert_eq!(
            lcb_extract_code("```python\na\n```\ntext\n```python\nb = 1\nc\n```\n").as_deref(),
            Some("b = 1\nc")
        );
        assert_eq!(lcb_extract_code("print(1)"), None);
        // The first of several.
        assert_eq!(
            first_code_block("```py\na\n``` and ```py\nb\n```"),
            Some("a")
        );
    }
}
