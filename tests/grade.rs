//! `assay grade`: saved outputs graded without a model into an ordinary run record. The
//! official MMLU-Pro outputs of Mistral-7B-Instruct-v0.2 give the official script's
//! numbers; human-eval sample files run in the sandbox; bad files are refused with the
//! file, line and field.

mod common;

use std::path::Path;

fn grade(outputs: &Path, task: &str, reports: &Path, extra: &[&str]) -> (i32, String, String) {
    common::output(
        common::assay()
            .args(["grade", "--task", task, "--run-id", "graded"])
            .arg("--outputs")
            .arg(outputs)
            .arg("--data-root")
            .arg(common::data_root())
            .arg("--reports")
            .arg(reports)
            .args(extra),
    )
}

fn result(reports: &Path) -> serde_json::Value {
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reports.join("graded/run.json")).unwrap())
            .unwrap();
    run["tasks"][0]["result"].clone()
}

fn value(result: &serde_json::Value, measure: &str) -> f64 {
    result["scores"][measure]["value"].as_f64().unwrap()
}

#[test]
fn official_mmlu_pro_outputs_give_the_golden_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let golden =
        common::assets().join("golden/mmlu_pro_outputs_Mistral-7B-Instruct-v0.2_5shots.zip");
    let (code, out, err) = grade(&golden, "mmlu-pro", tmp.path(), &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let r = result(tmp.path());
    assert_eq!(r["dataset"]["items"], 12_032);
    let pct = |m: &str| format!("{:.4}", 100.0 * value(&r, m));
    let count = |m: &str| (value(&r, m) * 12_032.0).round() as u64;
    // compute_accuracy.py's numbers for this file (tests/mmlu_pro_golden.rs).
    assert_eq!(
        (
            pct("accuracy_l1"),
            count("unparsed_rate_l1"),
            pct("accuracy_l1_random_fallback")
        ),
        ("28.7566".into(), 2237, "30.4272".into())
    );
    assert_eq!(
        (
            pct("accuracy_l2"),
            count("unparsed_rate_l2"),
            pct("accuracy_l2_random_fallback")
        ),
        ("30.1779".into(), 1066, "30.9840".into())
    );
    assert_eq!(r["main_score"], "accuracy_l2");
    // A record compare and gate read: measures and one sample per answer.
    assert!(r["measures"].as_array().unwrap().len() > 3);
    let samples = std::fs::read_to_string(tmp.path().join("graded/samples.jsonl")).unwrap();
    assert_eq!(samples.lines().count(), 12_032);
}

fn humaneval_problems() -> Vec<serde_json::Value> {
    let path = common::data_root().join("humaneval/HumanEval.jsonl.gz");
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()),
        &mut text,
    )
    .unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn human_eval_samples_are_run_and_scored_by_pass_at_k() {
    let tmp = tempfile::tempdir().unwrap();
    let problems = humaneval_problems();
    // Every canonical solution, as human-eval's own sample file would hold it.
    let canonical: String = problems
        .iter()
        .map(|p| {
            serde_json::json!({"task_id": p["task_id"], "completion": p["canonical_solution"]})
                .to_string()
                + "\n"
        })
        .collect();
    let file = tmp.path().join("samples.jsonl");
    std::fs::write(&file, canonical).unwrap();
    let (code, out, err) = grade(&file, "humaneval", tmp.path(), &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let r = result(tmp.path());
    assert_eq!(value(&r, "pass@1"), 1.0);
    assert_eq!(r["dataset"]["items"], 164);

    // Three problems, two completions each: one right, one wrong -> pass@1 = 0.5 each.
    let mut mixed = String::new();
    for p in &problems[..3] {
        for completion in [
            p["canonical_solution"].as_str().unwrap(),
            "    return None\n",
        ] {
            mixed += &(serde_json::json!({"task_id": p["task_id"], "completion": completion})
                .to_string()
                + "\n");
        }
    }
    std::fs::write(&file, mixed).unwrap();
    let reports = tmp.path().join("mixed");
    let (code, out, err) = grade(&file, "humaneval", &reports, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let r = result(&reports);
    assert_eq!(value(&r, "pass@1"), 0.5);
    assert_eq!(r["dataset"]["items"], 3);
}

#[test]
fn lm_eval_gsm8k_samples_are_graded_strictly_and_flexibly() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(common::data_root().join("gsm8k/test.jsonl")).unwrap();
    let docs: Vec<serde_json::Value> = text
        .lines()
        .take(4)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let gold = |d: &serde_json::Value| {
        d["answer"]
            .as_str()
            .unwrap()
            .rsplit("#### ")
            .next()
            .unwrap()
            .trim()
            .to_string()
    };
    // Real GSM8K docs with answers lm-eval would have logged: the reference itself (both
    // right), a wrong number, the right number without `####` (flexible only), `#### N`.
    let responses = [
        docs[0]["answer"].as_str().unwrap().to_string(),
        "The answer is 123456789.".to_string(),
        format!("So the total is {}.", gold(&docs[2])),
        format!("Working...\n#### {}", gold(&docs[3])),
    ];
    let lines: String = docs
        .iter()
        .zip(&responses)
        .enumerate()
        .map(|(i, (doc, resp))| {
            serde_json::json!({
                "doc_id": i, "doc": doc, "target": gold(doc),
                "arguments": {"gen_args_0": {"arg_0": "..."}},
                "resps": [[resp]], "filtered_resps": [resp],
            })
            .to_string()
                + "\n"
        })
        .collect();
    let file = tmp.path().join("samples_gsm8k_2024.jsonl");
    std::fs::write(&file, lines).unwrap();
    let (code, out, err) = grade(&file, "gsm8k", tmp.path(), &["--format", "lm-eval"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let r = result(tmp.path());
    assert_eq!(value(&r, "exact_match_strict"), 0.5);
    assert_eq!(value(&r, "exact_match_flexible"), 0.75);

    // Another task's lm-eval file (ARC-style docs) is refused, naming the field.
    let other = tmp.path().join("samples_arc_easy.jsonl");
    std::fs::write(
        &other,
        "{\"doc_id\": 0, \"doc\": {\"id\": \"x\", \"choices\": {}}, \"resps\": [[\"A\"]]}\n",
    )
    .unwrap();
    let (code, _, err) = grade(&other, "gsm8k", &tmp.path().join("o"), &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("samples_arc_easy.jsonl:1") && err.contains("doc.question"),
        "{err}"
    );
}

/// lm-eval `--log_samples` lines around real dataset rows and the responses given.
fn lm_eval_file(path: &Path, docs: &[serde_json::Value], responses: &[String]) {
    let lines: String = docs
        .iter()
        .zip(responses)
        .enumerate()
        .map(|(i, (doc, resp))| {
            serde_json::json!({
                "doc_id": i, "doc": doc, "target": "",
                "arguments": {"gen_args_0": {"arg_0": "..."}},
                "resps": [[resp]], "filtered_resps": [resp],
            })
            .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(path, lines).unwrap();
}

fn rows(file: &str, n: usize) -> Vec<serde_json::Value> {
    std::fs::read_to_string(common::data_root().join(file))
        .unwrap()
        .lines()
        .take(n)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn lm_eval_mmlu_pro_and_math_samples_are_graded_by_the_official_rules() {
    let tmp = tempfile::tempdir().unwrap();
    // MMLU-Pro: lm-eval logs the dataset's rows as docs. Right, wrong, right, wrong.
    let docs = rows("mmlu_pro/test.jsonl", 4);
    let letter = |d: &serde_json::Value| d["answer"].as_str().unwrap().chars().next().unwrap();
    let other = |c: char| if c == 'A' { 'B' } else { 'A' };
    let responses: Vec<String> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let pick = if i % 2 == 0 {
                letter(d)
            } else {
                other(letter(d))
            };
            format!("Let's think step by step. ... The answer is ({pick}).")
        })
        .collect();
    let file = tmp.path().join("samples_mmlu_pro_math.jsonl");
    lm_eval_file(&file, &docs, &responses);
    let reports = tmp.path().join("mmlu");
    let (code, out, err) = grade(&file, "mmlu-pro", &reports, &["--format", "lm-eval"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let r = result(&reports);
    assert_eq!(value(&r, "accuracy_l2"), 0.5);
    assert_eq!(value(&r, "unparsed_rate_l2"), 0.0);
    assert_eq!(r["dataset"]["items"], 4);

    // MATH: hendrycks_math docs (the reference is the solution's last box) and
    // minerva_math docs (with `answer`). Right, wrong, no box, right.
    let math = rows("math500/test.jsonl", 4);
    let docs: Vec<serde_json::Value> = math
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut doc = serde_json::json!({
                "problem": m["problem"], "level": format!("Level {}", m["level"]),
                "type": m["subject"], "solution": m["solution"],
            });
            if i >= 2 {
                doc["answer"] = m["answer"].clone();
            }
            doc
        })
        .collect();
    let answer = |i: usize| math[i]["answer"].as_str().unwrap().to_string();
    let responses = vec![
        format!("So the result is $\\boxed{{{}}}$.", answer(0)),
        "So the result is $\\boxed{123456789}$.".to_string(),
        format!("The result is {}.", answer(2)),
        format!("Final: \\boxed{{{}}}", answer(3)),
    ];
    let file = tmp.path().join("samples_minerva_math.jsonl");
    lm_eval_file(&file, &docs, &responses);
    let reports = tmp.path().join("math");
    let (code, out, err) = grade(&file, "math500", &reports, &["--format", "lm-eval"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let r = result(&reports);
    assert_eq!(value(&r, "accuracy"), 0.5);
    assert_eq!(value(&r, "unboxed_rate"), 0.25);

    // Each task refuses the other's file, naming the field its docs lack.
    let (code, _, err) = grade(
        &file,
        "mmlu-pro",
        &tmp.path().join("x"),
        &["--format", "lm-eval"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("samples_minerva_math.jsonl:1") && err.contains("doc.question_id"),
        "{err}"
    );
    let mmlu_file = tmp.path().join("samples_mmlu_pro_math.jsonl");
    let (code, _, err) = grade(
        &mmlu_file,
        "math500",
        &tmp.path().join("y"),
        &["--format", "lm-eval"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("doc.problem"), "{err}");
}

#[test]
fn bad_outputs_name_the_file_line_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>, &str, Vec<&str>)> = vec![
        (
            "unknown.jsonl",
            b"{\"task_id\": \"HumanEval/0\", \"completion\": \"    pass\\n\"}\n{\"task_id\": \"HumanEval/999\", \"completion\": \"x\"}\n".to_vec(),
            "humaneval",
            vec![":2:", "task_id", "HumanEval/999"],
        ),
        (
            "latin1.jsonl",
            b"{\"task_id\": \"HumanEval/0\", \"completion\": \"caf\xe9\"}\n".to_vec(),
            "humaneval",
            vec!["latin1.jsonl", ":1"],
        ),
        ("corrupt.zip", b"PK\x03\x04 not really a zip".to_vec(), "mmlu-pro", vec!["corrupt.zip", "zip"]),
        (
            "wrong-task.jsonl",
            b"{\"task_id\": \"HumanEval/0\", \"completion\": \"    pass\\n\"}\n".to_vec(),
            "gsm8k",
            vec!["gsm8k"],
        ),
    ];
    for (name, bytes, task, needles) in cases {
        let file = tmp.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        let (code, out, err) = grade(&file, task, tmp.path(), &[]);
        assert_eq!(code, 2, "{name}: {out}\n{err}");
        for needle in needles {
            assert!(err.contains(needle), "{name}: `{needle}` in {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// Grades human-eval lines (task id, completion) into `<reports>/<run_id>`.
fn graded_run(tmp: &Path, run_id: &str, lines: &[(String, String)]) -> std::path::PathBuf {
    let file = tmp.join(format!("{run_id}.jsonl"));
    let text: String = lines
        .iter()
        .map(|(id, c)| serde_json::json!({"task_id": id, "completion": c}).to_string() + "\n")
        .collect();
    std::fs::write(&file, text).unwrap();
    let reports = tmp.join("reports");
    let (code, out, err) = common::output(
        common::assay()
            .args(["grade", "--task", "humaneval", "--run-id", run_id])
            .arg("--outputs")
            .arg(&file)
            .arg("--data-root")
            .arg(common::data_root())
            .arg("--reports")
            .arg(&reports),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    reports.join(run_id)
}

#[test]
fn compare_gate_and_report_pair_pass_at_k_by_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let problems = humaneval_problems();
    let first: Vec<&serde_json::Value> = problems.iter().take(20).collect();
    let id = |p: &serde_json::Value| p["task_id"].as_str().unwrap().to_string();
    let right = |p: &serde_json::Value| p["canonical_solution"].as_str().unwrap().to_string();
    let wrong = "    return None\n";
    // Baseline: ten right samples per problem. Candidate: the same 20 problems, the first
    // ten with five right and five wrong samples (pass@1 0.5, pass@10 1), the rest all
    // wrong.
    let base: Vec<(String, String)> = first
        .iter()
        .flat_map(|p| (0..10).map(|_| (id(p), right(p))))
        .collect();
    let cand: Vec<(String, String)> = first
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            (0..10).map(move |j| {
                let ok = i < 10 && j % 2 == 0;
                (id(p), if ok { right(p) } else { wrong.to_string() })
            })
        })
        .collect();
    let base_dir = graded_run(tmp.path(), "base", &base);
    let cand_dir = graded_run(tmp.path(), "cand", &cand);

    let out_dir = tmp.path().join("cmp");
    let (code, out, err) = common::output(
        common::assay()
            .arg("compare")
            .arg(&base_dir)
            .arg(&cand_dir)
            .arg("--out")
            .arg(&out_dir),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("pass@1") && out.contains("pass@10"), "{out}");
    let cmp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("compare.json")).unwrap())
            .unwrap();
    let delta = |metric: &str| {
        cmp["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["metric"] == metric)
            .unwrap()
            .clone()
    };
    // Paired over the 20 problems: pass@1 1.0 -> 0.25, pass@10 1.0 -> 0.5, both significant.
    let p1 = delta("pass@1");
    assert_eq!(p1["items"], 20);
    assert!((p1["delta"].as_f64().unwrap() + 0.75).abs() < 1e-12, "{p1}");
    assert_eq!(p1["significant"], true);
    assert!(p1["ci95"]["high"].as_f64().unwrap() < 0.0);
    let p2 = delta("pass@10");
    assert!((p2["delta"].as_f64().unwrap() + 0.5).abs() < 1e-12, "{p2}");
    assert_eq!(p2["higher_is_better"], true);

    // A gate on pass@1 fails the candidate and passes the baseline against itself.
    let rules = tmp.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nmetric = \"humaneval.pass@1\"\nmin = 0.5\n\n[[rule]]\nmetric = \"humaneval.pass@1\"\nmax_drop = 0.05\n",
    )
    .unwrap();
    let gate = |candidate: &Path| {
        common::output(
            common::assay()
                .args(["gate", "--rules"])
                .arg(&rules)
                .arg(candidate)
                .arg("--baseline")
                .arg(&base_dir),
        )
    };
    let (code, out, err) = gate(&cand_dir);
    assert_eq!(code, 1, "{out}\n{err}");
    let (code, out, err) = gate(&base_dir);
    assert_eq!(code, 0, "{out}\n{err}");

    // Different problems cannot be paired.
    let other: Vec<(String, String)> = problems[20..40].iter().map(|p| (id(p), right(p))).collect();
    let other_dir = graded_run(tmp.path(), "other", &other);
    let (code, _, err) = common::output(
        common::assay()
            .arg("compare")
            .arg(&base_dir)
            .arg(&other_dir),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("different items"), "{err}");

    // The report tabulates pass@k for both runs.
    let report = tmp.path().join("report");
    let (code, out, err) = common::output(
        common::assay()
            .arg("report")
            .arg(&base_dir)
            .arg(&cand_dir)
            .arg("--out")
            .arg(&report),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let files: String = std::fs::read_dir(&report)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .collect();
    assert!(
        files.contains("pass@1") && files.contains("pass@10"),
        "{files}"
    );
}
