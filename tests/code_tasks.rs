//! HumanEval and MBPP graded by execution in the bubblewrap sandbox: every canonical
//! solution passes (pass@1 = 1.0 on all 164 and all 500), broken ones fail, and real runs
//! of SmolLM2 (through llama-server and locally) record every completion's code, verdict,
//! reason, time and output with pass@k consistent with them.

mod common;

use std::path::Path;

use assay::data::DataSource;
use assay::eval::code::CodeTask;
use assay::eval::generation::{GenerationSettings, PromptStyle};
use assay::spec::{self, TaskKind};

fn task(name: &str) -> CodeTask {
    let spec = spec::find(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tasks"), name).unwrap();
    let TaskKind::Code(section) = &spec.kind else {
        panic!("{name} is a code task")
    };
    let source = DataSource::resolve(&spec.dataset, &common::data_root()).unwrap();
    CodeTask::load(&spec, section, &source).unwrap()
}

fn settings() -> GenerationSettings {
    serde_json::from_value(serde_json::json!({
        "limit": null, "seed": 0, "style": "completion", "max_tokens": null,
        "bootstrap_resamples": 0, "loglikelihood": false,
    }))
    .unwrap()
}

/// Grades one piece of code per problem; returns pass@1 and the failures' ids and reasons.
fn grade(
    task: &CodeTask,
    code: impl Fn(&assay::data::code::CodeProblem) -> String,
) -> (f64, Vec<String>) {
    let settings = settings();
    let sandbox = task.sandbox(&settings).expect("bubblewrap is installed");
    let chosen: Vec<usize> = (0..task.problems().len()).collect();
    let codes: Vec<Vec<String>> = task.problems().iter().map(|p| vec![code(p)]).collect();
    let (per_item, samples) = task.grade(&chosen, &codes, &sandbox).unwrap();
    let values: Vec<f64> = per_item["pass@1"].iter().map(|v| v.unwrap()).collect();
    let failures = samples
        .iter()
        .filter(|s| s["passed"] == 0)
        .map(|s| {
            let c = &s["completions"][0];
            format!("{} {} {}", s["id"], c["reason"], c["stderr_tail"])
        })
        .collect();
    (values.iter().sum::<f64>() / values.len() as f64, failures)
}

#[test]
fn humaneval_canonical_solutions_all_pass_and_broken_ones_fail() {
    let task = task("humaneval");
    assert_eq!(task.problems().len(), 164);
    let started = std::time::Instant::now();
    let (pass, failures) = grade(&task, |p| {
        task.code_of(p, &p.canonical, PromptStyle::Completion)
    });
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        failures.is_empty(),
        "canonical solutions failed: {failures:#?}"
    );
    assert_eq!(pass, 1.0);
    println!("164 canonical HumanEval programs in {seconds:.1} s");

    // The same bodies made wrong: every problem fails, for the right reason.
    let (pass, failures) = grade(&task, |p| {
        task.code_of(
            p,
            "    raise NotImplementedError\n",
            PromptStyle::Completion,
        )
    });
    assert_eq!(pass, 0.0);
    assert_eq!(failures.len(), 164);
    assert!(
        failures.iter().all(|f| f.contains("NotImplementedError")),
        "{failures:?}"
    );
}

#[test]
fn mbpp_canonical_solutions_all_pass_and_broken_ones_fail() {
    let task = task("mbpp");
    let ids: Vec<u64> = task
        .problems()
        .iter()
        .map(|p| p.id.parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 500);
    assert_eq!((ids[0], ids[499]), (11, 510));
    let (pass, failures) = grade(&task, |p| {
        task.code_of(p, &p.canonical, PromptStyle::Completion)
    });
    assert!(
        failures.is_empty(),
        "canonical solutions failed: {failures:#?}"
    );
    assert_eq!(pass, 1.0);
    // An answer that defines nothing fails every problem's asserts.
    let (pass, failures) = grade(&task, |p| {
        task.code_of(p, "pass\n", PromptStyle::Completion)
    });
    assert_eq!(pass, 0.0);
    // Mostly NameError; MBPP 126 names its function `sum`, so the builtin answers wrongly.
    let other: Vec<&String> = failures
        .iter()
        .filter(|f| !f.contains("NameError"))
        .collect();
    assert_eq!(other.len(), 1, "{other:?}");
    assert!(other[0].starts_with("\"126\" \"error\""), "{other:?}");
}

#[test]
fn mbpp_prompt_is_lm_eval_three_shot() {
    let task = task("mbpp");
    let problem = &task.problems()[0];
    let assay::engine::Prompt::Text(text) = task.prompt(problem, PromptStyle::Completion) else {
        panic!("completion form is raw text")
    };
    // Three demonstrations (task ids 2, 3, 4), each closed by [DONE], then the problem.
    assert_eq!(text.matches("[DONE]").count(), 3, "{text}");
    assert!(text.starts_with(
        "You are an expert Python programmer, and here is your task: Write a function to find the similar elements from the given two tuple lists. Your code should pass these tests:\n\nassert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)\n"
    ));
    assert!(text.ends_with(&format!(
        "here is your task: {} Your code should pass these tests:\n\n{}\n[BEGIN]\n",
        problem.prompt,
        problem.tests.join("\n")
    )));
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn samples(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("samples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A run's record agrees with its samples: every completion ran and was graded, and
/// pass@1 is the mean share of passing completions.
fn check_run(dir: &Path, task: &str, problems: usize, n: usize) {
    let run = json(&dir.join("run.json"));
    let result = &run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["result"]["task"] == task)
        .unwrap()["result"];
    assert_eq!(result["main_score"], "pass@1");
    let items: Vec<_> = samples(dir)
        .into_iter()
        .filter(|s| s["task"] == task)
        .collect();
    assert_eq!(items.len(), problems);
    let mut expected = 0.0;
    for item in &items {
        let completions = item["completions"].as_array().unwrap();
        assert_eq!(completions.len(), n);
        for c in completions {
            for field in [
                "code",
                "output",
                "verdict",
                "reason",
                "seconds",
                "stdout_tail",
                "stderr_tail",
            ] {
                assert!(!c[field].is_null(), "{field} in {c}");
            }
            assert_eq!(c["verdict"] == "passed", c["reason"] == "passed", "{c}");
            assert_ne!(c["reason"], "sandbox_error", "{c}");
        }
        let passed = completions
            .iter()
            .filter(|c| c["verdict"] == "passed")
            .count();
        assert_eq!(item["passed"], passed);
        expected += passed as f64 / n as f64;
    }
    let pass1 = result["scores"]["pass@1"]["value"].as_f64().unwrap();
    assert!(
        (pass1 - expected / problems as f64).abs() < 1e-12,
        "{pass1}"
    );
}

#[test]
fn smollm2_writes_code_through_llama_server_and_locally() {
    let server = common::LlamaServer::start(&common::smollm2_gguf(), &["-c", "4096", "-np", "4"]);
    let tmp = tempfile::tempdir().unwrap();
    let run = |model: String, run_id: &str, extra: &[&str]| {
        let (code, out, err) = common::output(
            common::assay()
                .args([
                    "run",
                    "--task",
                    "humaneval",
                    "--task",
                    "mbpp",
                    "--limit",
                    "3",
                ])
                .args([
                    "--samples",
                    "2",
                    "--max-new-tokens",
                    "96",
                    "--run-id",
                    run_id,
                ])
                .args(["--model", &model])
                .arg("--data-root")
                .arg(common::data_root())
                .arg("--reports")
                .arg(tmp.path())
                .args(extra),
        );
        assert_eq!(code, 0, "{out}\n{err}");
        (out, err)
    };
    let (out, _) = run(
        format!("openai:{}#smollm2", server.base_url()),
        "served",
        &["--prompt-style", "completion"],
    );
    assert!(out.contains("pass@1"), "{out}");
    let dir = tmp.path().join("served");
    check_run(&dir, "humaneval", 3, 2);
    check_run(&dir, "mbpp", 3, 2);
    // Sampled at 0.8 with a seed per sample, and the completion continues the prompt.
    for item in samples(&dir).iter().filter(|s| s["task"] == "humaneval") {
        let prompt = item["prompt"].as_str().unwrap();
        for c in item["completions"].as_array().unwrap() {
            assert!(c["code"].as_str().unwrap().starts_with(prompt));
        }
    }
    // Graded again from its samples (`assay grade`), the run gives the same scores.
    for task in ["humaneval", "mbpp"] {
        let reports = tmp.path().join(format!("regraded-{task}"));
        let (code, out, err) = common::output(
            common::assay()
                .args(["grade", "--task", task, "--run-id", "again"])
                .arg("--outputs")
                .arg(dir.join("samples.jsonl"))
                .arg("--data-root")
                .arg(common::data_root())
                .arg("--reports")
                .arg(&reports),
        );
        assert_eq!(
            code, 0,
            "{out}
{err}"
        );
        let score = |run: &Path| {
            json(&run.join("run.json"))["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["result"]["task"] == task)
                .unwrap()["result"]["scores"]["pass@1"]["value"]
                .as_f64()
                .unwrap()
        };
        assert_eq!(score(&reports.join("again")), score(&dir), "{task}");
    }
    let run_json = json(&dir.join("run.json"));
    let selection = &run_json["tasks"][0]["result"]["dataset"]["selection"];
    assert_eq!(selection["samples"], 2);
    assert_eq!(selection["temperature"], 0.8);

    // Locally (the native GGUF engine), chat form, without isolation: a warning says so.
    let tokenizer = common::assets().join("tokenizers/smollm2-135m-instruct/tokenizer.json");
    let (_, err) = run(
        format!("dir:{}", common::smollm2_gguf().display()),
        "local",
        &[
            "--sandbox",
            "none",
            "--tokenizer",
            tokenizer.to_str().unwrap(),
        ],
    );
    assert!(err.contains("warning: --sandbox none"), "{err}");
    let dir = tmp.path().join("local");
    check_run(&dir, "humaneval", 3, 2);
    check_run(&dir, "mbpp", 3, 2);

    // compare pairs the two runs problem by problem on pass@1, and gate reads it.
    let out_dir = tmp.path().join("compare");
    let (code, out, err) = common::output(
        common::assay()
            .arg("compare")
            .arg(tmp.path().join("served"))
            .arg(&dir)
            .arg("--out")
            .arg(&out_dir),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("pass@1"), "{out}");
    let compare = json(&out_dir.join("compare.json"));
    let text = compare.to_string();
    assert!(text.contains("pass@1"), "{text}");
    let rules = tmp.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nmetric = \"humaneval.pass@1\"\nmin = 0.0\n\n[[rule]]\nmetric = \"mbpp.pass@1\"\nmax_drop = 1.0\n",
    )
    .unwrap();
    let (code, out, err) = common::output(
        common::assay()
            .args(["gate", "--rules"])
            .arg(&rules)
            .arg(&dir)
            .arg("--baseline")
            .arg(tmp.path().join("served")),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("humaneval.pass@1"), "{out}");
}
