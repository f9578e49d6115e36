//! The MMLU-Pro grader against the official evaluation's own outputs: Mistral-7B-Instruct
//! v0.2, 5-shot CoT, 12,032 answers (`../shared/assets/golden`). The official
//! `compute_accuracy.py` gives, per extraction level, the share correct when unparsed
//! answers count as wrong, the unparsed count, and the share with its seeded random
//! fallback (`random.seed(12345)`, then `random.choice` over the l1 loop, then the l2 loop).

mod common;

use assay::metrics::answer::{mmlu_pro, Level};
use assay::metrics::rng::PyRandom;

#[test]
fn official_mmlu_pro_extraction_reproduced_exactly() {
    let path = common::assets().join("golden/mmlu_pro_outputs_Mistral-7B-Instruct-v0.2_5shots.zip");
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut file = archive.by_index(0).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text).unwrap();
    let records: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(records.len(), 12_032);

    let letters: Vec<char> = "ABCDEFGHIJ".chars().collect();
    let mut rng = PyRandom::seed(12345);
    let mut results = Vec::new();
    for level in [Level::L1, Level::L2] {
        let (mut correct, mut unparsed, mut with_fallback) = (0usize, 0usize, 0usize);
        for r in &records {
            let gold = r["answer"].as_str().unwrap().chars().next().unwrap();
            let pred = mmlu_pro(r["generated_text"].as_str().unwrap(), level);
            if pred.is_none() {
                unparsed += 1;
            }
            correct += usize::from(pred == Some(gold));
            let drawn = pred.unwrap_or_else(|| rng.choice(&letters));
            with_fallback += usize::from(drawn == gold);
        }
        let pct = |n: usize| format!("{:.4}", 100.0 * n as f64 / records.len() as f64);
        results.push((pct(correct), unparsed, pct(with_fallback)));
    }
    assert_eq!(results[0], ("28.7566".into(), 2237, "30.4272".into()), "l1");
    assert_eq!(results[1], ("30.1779".into(), 1066, "30.9840".into()), "l2");
}
