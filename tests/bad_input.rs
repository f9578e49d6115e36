//! Bad input gets a clear error naming the file, line and field, exit code 2, no panic.
//! Each case builds a tiny dataset (or model folder) in a temp dir and runs the real CLI.

mod common;

use std::path::Path;

const CORPUS: &str = r#"{"_id": "d1", "title": "T", "text": "first doc"}
{"_id": "d2", "title": "", "text": "second doc"}
"#;
const QUERIES: &str = r#"{"_id": "q1", "text": "a query"}
"#;
const QRELS: &str = "query-id\tcorpus-id\tscore\nq1\td1\t1\n";

/// A BEIR folder `<root>/scifact` with the given file contents.
fn beir(root: &Path, corpus: &[u8], queries: &[u8], qrels: &[u8]) {
    let dir = root.join("scifact");
    std::fs::create_dir_all(dir.join("qrels")).unwrap();
    std::fs::write(dir.join("corpus.jsonl"), corpus).unwrap();
    std::fs::write(dir.join("queries.jsonl"), queries).unwrap();
    std::fs::write(dir.join("qrels/test.tsv"), qrels).unwrap();
}

/// A BEIR folder `<root>/scifact` that loads.
fn valid_beir(root: &Path) {
    beir(
        root,
        CORPUS.as_bytes(),
        QUERIES.as_bytes(),
        QRELS.as_bytes(),
    );
}

/// Runs `assay run --task scifact` on the data root and checks the error contract.
fn expect_error(root: &Path, model: &str, must_contain: &[&str]) {
    let cache = root.join("cache");
    let (code, stdout, stderr) = common::output(
        common::assay()
            .args(["run", "--task", "scifact", "--model", model])
            .arg("--data-root")
            .arg(root)
            .arg("--cache-dir")
            .arg(&cache)
            .arg("--reports")
            .arg(root.join("reports")),
    );
    assert_eq!(code, 2, "exit code; stderr: {stderr}\nstdout: {stdout}");
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    for needle in must_contain {
        assert!(
            stderr.contains(needle),
            "stderr should contain {needle:?}: {stderr}"
        );
    }
    assert!(!root.join("reports").exists(), "no run record on failure");
}

fn minilm() -> String {
    common::minilm_ref()
}

#[test]
fn malformed_jsonl_names_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = format!("{CORPUS}{{\"_id\": \"d3\", \"text\": \"unterminated\n");
    beir(
        tmp.path(),
        corpus.as_bytes(),
        QUERIES.as_bytes(),
        QRELS.as_bytes(),
    );
    expect_error(
        tmp.path(),
        &minilm(),
        &["scifact/corpus.jsonl:3", "invalid JSON"],
    );
}

#[test]
fn missing_field_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let queries = "{\"_id\": \"q1\", \"txt\": \"typo\"}\n";
    beir(
        tmp.path(),
        CORPUS.as_bytes(),
        queries.as_bytes(),
        QRELS.as_bytes(),
    );
    expect_error(
        tmp.path(),
        &minilm(),
        &["queries.jsonl:1", "field `text`", "missing"],
    );
}

#[test]
fn duplicate_ids_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = format!("{CORPUS}{{\"_id\": \"d1\", \"title\": \"\", \"text\": \"again\"}}\n");
    beir(
        tmp.path(),
        corpus.as_bytes(),
        QUERIES.as_bytes(),
        QRELS.as_bytes(),
    );
    expect_error(
        tmp.path(),
        &minilm(),
        &["corpus.jsonl:3", "field `_id`", "duplicate id `d1`"],
    );
}

#[test]
fn qrels_pointing_at_unknown_docs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let qrels = format!("{QRELS}q1\tnope\t1\n");
    beir(
        tmp.path(),
        CORPUS.as_bytes(),
        QUERIES.as_bytes(),
        qrels.as_bytes(),
    );
    expect_error(
        tmp.path(),
        &minilm(),
        &[
            "qrels/test.tsv:3",
            "field `corpus-id`",
            "unknown document `nope`",
        ],
    );
}

#[test]
fn empty_corpus_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    beir(tmp.path(), b"\n", QUERIES.as_bytes(), QRELS.as_bytes());
    expect_error(tmp.path(), &minilm(), &["corpus.jsonl", "empty corpus"]);
}

#[test]
fn non_utf8_is_refused_with_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let mut corpus = CORPUS.as_bytes().to_vec();
    corpus.extend_from_slice(b"{\"_id\": \"d3\", \"text\": \"caf\xe9\"}\n");
    beir(tmp.path(), &corpus, QUERIES.as_bytes(), QRELS.as_bytes());
    expect_error(
        tmp.path(),
        &minilm(),
        &["corpus.jsonl:3", "not valid UTF-8"],
    );
}

#[test]
fn model_dir_without_weights_or_tokenizer_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    valid_beir(tmp.path());
    let src = common::minilm();
    for (missing, message) in [
        ("model.safetensors", "missing weights"),
        ("tokenizer.json", "missing tokenizer.json"),
    ] {
        let model = tmp.path().join(format!("model-without-{missing}"));
        std::fs::create_dir_all(&model).unwrap();
        for name in [
            "config.json",
            "tokenizer.json",
            "model.safetensors",
            "modules.json",
        ] {
            if name != missing {
                std::os::unix::fs::symlink(src.join(name), model.join(name)).unwrap();
            }
        }
        expect_error(
            tmp.path(),
            &format!("dir:{}", model.display()),
            &[&model.display().to_string(), message],
        );
    }
}

#[test]
fn unknown_task_and_bad_model_ref_are_usage_errors() {
    let (code, _, stderr) =
        common::output(common::assay().args(["run", "--task", "nope", "--model", "dir:/x"]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("unknown task `nope`") && stderr.contains("stsb"),
        "{stderr}"
    );
    let (code, _, stderr) =
        common::output(common::assay().args(["run", "--task", "stsb", "--model", "s3://x"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("expected hf:ORG/NAME"), "{stderr}");
}

#[test]
fn sts_score_outside_range_names_line_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("stsb");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("sts-test.csv"),
        "g\tf\t2012\t1\t2.5\ta\tb\ng\tf\t2012\t2\tseven\tc\td\n",
    )
    .unwrap();
    let (code, _, stderr) = common::output(
        common::assay()
            .args(["run", "--task", "stsb", "--model", &minilm(), "--no-cache"])
            .arg("--data-root")
            .arg(tmp.path()),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("sts-test.csv:2") && stderr.contains("field `score`"),
        "{stderr}"
    );
}

#[test]
fn a_spec_whose_main_score_is_not_computed_is_refused_with_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("broken.toml");
    std::fs::write(
        &spec,
        "name = \"broken\"\ndescription = \"x\"\n[dataset]\nlocal = \"x\"\nsplit = \"test\"\nformat = \"beir\"\n[retrieval]\nk_values = [1, 3]\n",
    )
    .unwrap();
    let (code, _, stderr) = common::output(
        common::assay()
            .args(["run", "--model", "dir:/nowhere", "--task"])
            .arg(&spec),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("broken.toml") && stderr.contains("main_score `ndcg_at_10`"),
        "{stderr}"
    );
}

/// `assay run` on a generation task whose data is broken: the error names file, line
/// and field before any model is contacted (the endpoint here does not exist).
fn expect_generation_error(task: &str, folder: &str, body: &str, must_contain: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(folder);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("test.jsonl"), body).unwrap();
    let (code, _, stderr) = common::output(
        common::assay()
            .args(["run", "--task", task])
            .args(["--model", "openai:http://127.0.0.1:9/v1#nobody"])
            .arg("--data-root")
            .arg(tmp.path()),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for needle in must_contain {
        assert!(
            stderr.contains(needle),
            "stderr should contain {needle:?}: {stderr}"
        );
    }
}

#[test]
fn broken_generation_records_name_file_line_and_field() {
    let q = r#"{"question_id": 1, "question": "Q?", "options": ["a", "b"], "answer": "B", "category": "math"}"#;
    let bad_letter = r#"{"question_id": 2, "question": "Q?", "options": ["a", "b"], "answer": "E", "category": "math"}"#;
    expect_generation_error(
        "mmlu-pro",
        "mmlu_pro",
        &format!("{q}\n{bad_letter}\n"),
        &["test.jsonl:2", "`answer`", "not the letter of an option"],
    );
    let no_options = r#"{"question_id": 3, "question": "Q?", "answer": "A", "category": "math"}"#;
    expect_generation_error(
        "mmlu-pro",
        "mmlu_pro",
        no_options,
        &["test.jsonl:1", "`options`"],
    );
    expect_generation_error(
        "gsm8k",
        "gsm8k",
        "{\"question\": \"1+1?\", \"answer\": \"2\"}\n",
        &["test.jsonl:1", "`answer`", "####"],
    );
    expect_generation_error(
        "math500",
        "math500",
        "{\"problem\": \"1+1?\"}\n",
        &["test.jsonl:1", "`answer`", "missing"],
    );
}

#[test]
fn an_os_error_is_stated_once() {
    // A cache folder below a regular file: "Not a directory", said once beside its path.
    let tmp = tempfile::tempdir().unwrap();
    valid_beir(tmp.path());
    let file = tmp.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let (code, _, stderr) = common::output(
        common::assay()
            .args(["run", "--task", "scifact", "--model", &minilm()])
            .arg("--data-root")
            .arg(tmp.path())
            .arg("--cache-dir")
            .arg(file.join("cache"))
            .arg("--reports")
            .arg(tmp.path().join("reports")),
    );
    assert_ne!(code, 0, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("plain-file"), "names the path: {stderr}");
    assert_eq!(stderr.matches("os error").count(), 1, "{stderr}");
}
