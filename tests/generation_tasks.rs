//! Generation tasks end to end: MMLU-Pro and GSM8K samples answered by
//! SmolLM2-135M-Instruct through llama-server, graded as the official graders do, every
//! item in samples.jsonl.

mod common;

use common::LlamaServer;

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn run(server: &LlamaServer, reports: &std::path::Path, run_id: &str, args: &[&str]) -> String {
    let (code, out, err) = common::output(
        common::assay()
            .args(["run", "--concurrency", "4", "--run-id", run_id])
            .args(["--model", &format!("openai:{}#smollm2", server.base_url())])
            .arg("--data-root")
            .arg(common::data_root())
            .arg("--reports")
            .arg(reports)
            .args(args),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    out
}

fn samples(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("samples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn value(result: &serde_json::Value, measure: &str) -> f64 {
    result["scores"][measure]["value"].as_f64().unwrap()
}

#[test]
fn mmlu_pro_math500_and_gsm8k_through_llama_server() {
    let server = LlamaServer::start(&common::smollm2_gguf(), &["-c", "8192", "-np", "4"]);
    let tmp = tempfile::tempdir().unwrap();

    // 30 MMLU-Pro questions, stratified by category.
    let out = run(
        &server,
        tmp.path(),
        "mmlu",
        &[
            "--task",
            "mmlu-pro",
            "--limit",
            "30",
            "--max-new-tokens",
            "96",
        ],
    );
    assert!(out.contains("accuracy_l2"), "{out}");
    let dir = tmp.path().join("mmlu");
    let run_json = json(&dir.join("run.json"));
    assert_eq!(run_json["model"]["engine"], "openai");
    let items = samples(&dir);
    assert_eq!(items.len(), 30);
    for s in &items {
        for field in ["prompt", "output", "extracted", "gold", "correct"] {
            assert!(!s[field].is_null(), "{field} in {s}");
        }
        assert!(s["prompt"]
            .as_str()
            .unwrap()
            .ends_with("Answer: Let's think step by step."));
    }
    let mmlu = &run_json["tasks"][0]["result"];
    // `assay grade` on the run's own samples gives the run's scores.
    let regraded = tmp.path().join("regraded");
    let (code, out, err) = common::output(
        common::assay()
            .args([
                "grade", "--task", "mmlu-pro", "--format", "assay", "--run-id", "again",
            ])
            .arg("--outputs")
            .arg(dir.join("samples.jsonl"))
            .arg("--reports")
            .arg(&regraded),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let again = json(&regraded.join("again/run.json"));
    for measure in ["accuracy_l1", "accuracy_l2", "accuracy_l2_random_fallback"] {
        assert_eq!(
            value(&again["tasks"][0]["result"], measure),
            value(mmlu, measure),
            "{measure}"
        );
    }
    // The headline equals the share of samples marked correct.
    let correct = items.iter().filter(|s| s["correct"] == true).count();
    let accuracy = value(mmlu, "accuracy_l2");
    assert!((accuracy - correct as f64 / 30.0).abs() < 1e-12);
    let selection = &mmlu["dataset"]["selection"];
    let per_category: u64 = selection["per_category"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(per_category, 30);
    assert_eq!(
        selection["shots"], 0,
        "no validation split staged: zero-shot, recorded"
    );
    assert!((0.0..=1.0).contains(&value(mmlu, "unparsed_rate_l1")));
    assert_eq!(run_json["requests"]["requests"], 30);

    // 20 MATH-500 and 20 GSM8K problems in one run.
    let out = run(
        &server,
        tmp.path(),
        "math",
        &[
            "--task",
            "math500",
            "--task",
            "gsm8k",
            "--limit",
            "20",
            "--max-new-tokens",
            "128",
        ],
    );
    assert!(
        out.contains("exact_match_strict") && out.contains("accuracy_hendrycks"),
        "{out}"
    );
    let dir = tmp.path().join("math");
    let run_json = json(&dir.join("run.json"));
    let items = samples(&dir);
    assert_eq!(items.len(), 40);
    assert!(items
        .iter()
        .all(|s| !s["output"].as_str().unwrap().is_empty()));
    let tasks = run_json["tasks"].as_array().unwrap();
    let math = &tasks[0]["result"];
    let gsm = &tasks[1]["result"];
    let math_correct = items[..20].iter().filter(|s| s["correct"] == true).count();
    assert!((value(math, "accuracy") - math_correct as f64 / 20.0).abs() < 1e-12);
    assert!(value(math, "accuracy") >= value(math, "accuracy_hendrycks"));
    let strict = value(gsm, "exact_match_strict");
    let flexible = value(gsm, "exact_match_flexible");
    // Regraded from the run's own samples, the GSM8K scores are the same.
    let regraded = tmp.path().join("regraded-gsm8k");
    let (code, out, err) = common::output(
        common::assay()
            .args([
                "grade", "--task", "gsm8k", "--format", "assay", "--run-id", "again",
            ])
            .arg("--outputs")
            .arg(dir.join("samples.jsonl"))
            .arg("--reports")
            .arg(&regraded),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let again = &json(&regraded.join("again/run.json"))["tasks"][0]["result"];
    assert_eq!(value(again, "exact_match_strict"), strict);
    assert_eq!(value(again, "exact_match_flexible"), flexible);
    assert!((0.0..=1.0).contains(&strict) && (0.0..=1.0).contains(&flexible));
    // And the MATH-500 scores.
    let regraded = tmp.path().join("regraded-math");
    let (code, out, err) = common::output(
        common::assay()
            .args([
                "grade", "--task", "math500", "--format", "assay", "--run-id", "again",
            ])
            .arg("--outputs")
            .arg(dir.join("samples.jsonl"))
            .arg("--reports")
            .arg(&regraded),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let again = &json(&regraded.join("again/run.json"))["tasks"][0]["result"];
    for measure in ["accuracy", "accuracy_hendrycks", "unboxed_rate"] {
        assert_eq!(value(again, measure), value(math, measure), "{measure}");
    }
    eprintln!(
        "SmolLM2-135M: MMLU-Pro(30) l2 {accuracy:.3}; MATH-500(20) {:.3}; GSM8K(20) strict {strict:.3} flexible {flexible:.3}",
        value(math, "accuracy")
    );
}
