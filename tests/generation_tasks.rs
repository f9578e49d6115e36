//! Generation tasks end to end: MMLU-Pro and GSM8K samples answered by
//! SmolLM2-135M-Instruct through llama-server, graded as the official graders do, every
//! item in samples.jsonl.

mod common;

use common::LlamaServer;

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn mmlu_pro_and_gsm8k_through_llama_server() {
    let server = LlamaServer::start(&common::smollm2_gguf(), &["-c", "8192", "-np", "4"]);
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, err) = common::output(
        common::assay()
            .args([
                "run", "--task", "mmlu-pro", "--task", "gsm8k", "--limit", "30",
            ])
            .args([
                "--max-new-tokens",
                "96",
                "--concurrency",
                "4",
                "--run-id",
                "gen",
            ])
            .args(["--model", &format!("openai:{}#smollm2", server.base_url())])
            .arg("--data-root")
            .arg(common::data_root())
            .arg("--reports")
            .arg(tmp.path()),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("accuracy_l2") && out.contains("exact_match_strict"),
        "{out}"
    );
    let dir = tmp.path().join("gen");
    let run = json(&dir.join("run.json"));
    assert_eq!(run["model"]["engine"], "openai");
    let samples: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("samples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(samples.len(), 60);
    for s in &samples {
        for field in ["prompt", "output", "extracted", "gold", "correct"] {
            assert!(!s[field].is_null(), "{field} in {s}");
        }
        assert!(!s["output"].as_str().unwrap().is_empty(), "{s}");
    }
    let tasks = run["tasks"].as_array().unwrap();
    let mmlu = &tasks[0]["result"];
    // The headline equals the share of samples marked correct; stratified by category.
    let correct = samples[..30]
        .iter()
        .filter(|s| s["correct"] == true)
        .count();
    let accuracy = mmlu["scores"]["accuracy_l2"]["value"].as_f64().unwrap();
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
    assert!(samples[0]["prompt"]
        .as_str()
        .unwrap()
        .ends_with("Answer: Let's think step by step."));
    let unparsed = mmlu["scores"]["unparsed_rate_l1"]["value"]
        .as_f64()
        .unwrap();
    assert!((0.0..=1.0).contains(&unparsed));
    let gsm = &tasks[1]["result"];
    let strict = gsm["scores"]["exact_match_strict"]["value"]
        .as_f64()
        .unwrap();
    let flexible = gsm["scores"]["exact_match_flexible"]["value"]
        .as_f64()
        .unwrap();
    assert!((0.0..=1.0).contains(&strict) && (0.0..=1.0).contains(&flexible));
    // Latency of the run's requests next to the scores.
    assert_eq!(run["requests"]["requests"], 60);
    eprintln!("SmolLM2 MMLU-Pro(30) l2 {accuracy:.3}, GSM8K(30) strict {strict:.3} flexible {flexible:.3}");
}
