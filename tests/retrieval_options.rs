//! Per-task retrieval options through the real CLI on a tiny hand-made BEIR set.

mod common;

use std::path::Path;

fn spec(dir: &Path, ignore: bool) -> std::path::PathBuf {
    let path = dir.join(format!("tiny-{ignore}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
name = "tiny"
description = "a query whose own id is also a document"
[dataset]
local = "tiny"
split = "test"
format = "beir"
[retrieval]
k_values = [1, 3]
main_score = "ndcg_at_1"
ignore_identical_ids = {ignore}
"#
        ),
    )
    .unwrap();
    path
}

#[test]
fn ignore_identical_ids_drops_the_query_itself_from_its_results() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("tiny");
    std::fs::create_dir_all(data.join("qrels")).unwrap();
    std::fs::write(
        data.join("corpus.jsonl"),
        concat!(
            "{\"_id\": \"q1\", \"title\": \"\", \"text\": \"A cat sits on the warm mat.\"}\n",
            "{\"_id\": \"d2\", \"title\": \"\", \"text\": \"Stock markets fell sharply on Monday.\"}\n",
            "{\"_id\": \"d3\", \"title\": \"\", \"text\": \"A kitten is resting on a rug.\"}\n",
        ),
    )
    .unwrap();
    std::fs::write(
        data.join("queries.jsonl"),
        "{\"_id\": \"q1\", \"text\": \"A cat sits on the warm mat.\"}\n",
    )
    .unwrap();
    std::fs::write(
        data.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq1\td3\t1\n",
    )
    .unwrap();

    for (ignore, want_ndcg1) in [(false, 0.0), (true, 1.0)] {
        let run_id = format!("ignore-{ignore}");
        let (code, stdout, stderr) = common::output(
            common::assay()
                .args([
                    "run",
                    "--model",
                    &common::minilm_ref(),
                    "--no-cache",
                    "--run-id",
                    &run_id,
                ])
                .arg("--task")
                .arg(spec(tmp.path(), ignore))
                .arg("--data-root")
                .arg(tmp.path())
                .arg("--reports")
                .arg(tmp.path().join("reports")),
        );
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        let dir = tmp.path().join("reports").join(&run_id);
        assert_eq!(
            common::score(&dir, "tiny", "ndcg_at_1"),
            want_ndcg1,
            "ignore_identical_ids = {ignore}"
        );
        let samples = std::fs::read_to_string(dir.join("samples.jsonl")).unwrap();
        let first: serde_json::Value =
            serde_json::from_str(samples.lines().next().unwrap()).unwrap();
        let top = first["retrieved"][0][0].as_str().unwrap();
        assert_eq!(top, if ignore { "d3" } else { "q1" });
    }
}
