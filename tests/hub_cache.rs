//! The hub path, tested offline: a Hugging Face cache laid out as hf-hub and Python's
//! huggingface_hub lay it out (`<HF_HOME>/hub/<kind>s--ORG--NAME/{blobs,refs,snapshots}`),
//! built here from the staged files, with HF_HUB_OFFLINE=1.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use assay::data::{BeirDataset, DataSource, StsDataset};
use assay::spec::{TaskKind, TaskSpec};
use polars::prelude::*;
use sha2::{Digest, Sha256};

const STSB_REVISION: &str = "b0fddb56ed78048fa8b90373c8a3cfc37b684831";
const SCIFACT_REVISION: &str = "0228b52cf27578f30900b9e5271d331663a030d7";
const MODEL_COMMIT: &str = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf";

/// Puts `bytes` into the cache as `<repo>/snapshots/<commit>/<file>`, a link to its blob.
fn put(hub: &Path, repo_dir: &str, commit: &str, file: &str, bytes: &[u8]) {
    let repo = hub.join(repo_dir);
    let blob = repo.join("blobs").join(hex::encode(Sha256::digest(bytes)));
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::write(&blob, bytes).unwrap();
    let link = repo.join("snapshots").join(commit).join(file);
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&blob, &link).unwrap();
}

/// `refs/<name>` holding the commit, as hf-hub writes it after a download.
fn put_ref(hub: &Path, repo_dir: &str, name: &str, commit: &str) {
    let path = hub.join(repo_dir).join("refs").join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, commit).unwrap();
}

fn stsb_rows() -> Vec<(String, String, f64)> {
    let text = std::fs::read_to_string(common::data_root().join("stsb/sts-test.csv")).unwrap();
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[5].to_string(), f[6].to_string(), f[4].parse().unwrap())
        })
        .collect()
}

/// An HF_HOME with STS-B (gzipped JSONL, as MTEB's repo has it, Python layout: no ref
/// for the pinned commit), SciFact (BEIR files, hf-hub layout) and the MiniLM model.
fn build_cache(home: &Path) {
    let hub = home.join("hub");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for (s1, s2, score) in stsb_rows() {
        let line = serde_json::json!({"sentence1": s1, "sentence2": s2, "score": score});
        writeln!(gz, "{line}").unwrap();
    }
    put(
        &hub,
        "datasets--mteb--stsbenchmark-sts",
        STSB_REVISION,
        "test.jsonl.gz",
        &gz.finish().unwrap(),
    );

    let scifact = common::data_root().join("scifact");
    for file in ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"] {
        let bytes = std::fs::read(scifact.join(file)).unwrap();
        put(
            &hub,
            "datasets--mteb--scifact",
            SCIFACT_REVISION,
            file,
            &bytes,
        );
    }
    put_ref(
        &hub,
        "datasets--mteb--scifact",
        SCIFACT_REVISION,
        SCIFACT_REVISION,
    );

    let model = common::minilm();
    let repo = "models--sentence-transformers--all-MiniLM-L6-v2";
    for file in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ] {
        put(
            &hub,
            repo,
            MODEL_COMMIT,
            file,
            &std::fs::read(model.join(file)).unwrap(),
        );
    }
    put_ref(&hub, repo, "main", MODEL_COMMIT);
}

fn spec(name: &str) -> TaskSpec {
    TaskSpec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tasks/{name}.toml")))
        .unwrap()
}

fn with_hf_home<T>(home: &Path, f: impl FnOnce() -> T) -> T {
    // Library calls read HF_HOME from the environment; tests in this file that touch it
    // run one at a time under this lock.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    std::env::set_var("HF_HOME", home);
    std::env::set_var("HF_HUB_OFFLINE", "1");
    f()
}

#[test]
fn datasets_load_from_the_offline_hub_cache_exactly_as_from_local_files() {
    let tmp = tempfile::tempdir().unwrap();
    build_cache(tmp.path());
    let empty_root = tmp.path().join("no-data-here");

    with_hf_home(tmp.path(), || {
        let stsb = spec("stsb");
        let hub = DataSource::resolve(&stsb.dataset, &empty_root).unwrap();
        assert!(matches!(hub, DataSource::Hub(_)));
        let local = DataSource::resolve(&stsb.dataset, &common::data_root()).unwrap();
        let TaskKind::Sts(sts) = &stsb.kind else {
            panic!("stsb is an STS task")
        };
        let from_hub = StsDataset::load(&stsb.dataset, sts, &hub).unwrap();
        let from_local = StsDataset::load(&stsb.dataset, sts, &local).unwrap();
        assert_eq!(from_hub.pairs.len(), 1379);
        assert_eq!(from_hub.pairs, from_local.pairs);

        let scifact = spec("scifact");
        let hub = DataSource::resolve(&scifact.dataset, &empty_root).unwrap();
        let local = DataSource::resolve(&scifact.dataset, &common::data_root()).unwrap();
        let from_hub = BeirDataset::load(&scifact.dataset, &hub).unwrap();
        let from_local = BeirDataset::load(&scifact.dataset, &local).unwrap();
        assert_eq!(from_hub.corpus, from_local.corpus);
        assert_eq!(from_hub.queries, from_local.queries);
        assert_eq!(from_hub.qrels, from_local.qrels);
        assert_eq!(from_hub.fingerprint, from_local.fingerprint);
        assert!(from_hub.origin.starts_with("hf:mteb/scifact@"));

        // A file the cache does not hold is a clear error, not a network attempt.
        let missing = DataSource::Hub(assay::data::hub::HubRepo::dataset(
            "mteb/scifact",
            Some("main"),
        ));
        let err = missing.file("corpus.jsonl").unwrap_err().to_string();
        assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
    });
}

#[test]
fn a_parquet_sts_table_on_the_hub_needs_only_a_task_spec() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = stsb_rows();
    let mut frame = DataFrame::new_infer_height(vec![
        Column::new(
            "text_a".into(),
            rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "text_b".into(),
            rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
        ),
        Column::new("label".into(), rows.iter().map(|r| r.2).collect::<Vec<_>>()),
    ])
    .unwrap();
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes).finish(&mut frame).unwrap();
    let hub = tmp.path().join("hub");
    put(
        &hub,
        "datasets--someone--sts-parquet",
        MODEL_COMMIT,
        "data/test-00000-of-00001.parquet",
        &bytes,
    );
    put_ref(&hub, "datasets--someone--sts-parquet", "main", MODEL_COMMIT);
    let spec_path = tmp.path().join("sts-parquet.toml");
    std::fs::write(
        &spec_path,
        r#"
name = "sts-parquet"
description = "STS-B test as a parquet table with other column names"
[dataset]
local = "sts-parquet"
hub = "someone/sts-parquet"
split = "test"
format = "table"
file = "data/{split}-00000-of-00001.parquet"
[sts]
sentence1 = "text_a"
sentence2 = "text_b"
score = "label"
score_range = [0, 5]
"#,
    )
    .unwrap();
    with_hf_home(tmp.path(), || {
        let spec = TaskSpec::load(&spec_path).unwrap();
        let source = DataSource::resolve(&spec.dataset, &tmp.path().join("none")).unwrap();
        let TaskKind::Sts(sts) = &spec.kind else {
            panic!("an STS spec")
        };
        let data = StsDataset::load(&spec.dataset, sts, &source).unwrap();
        assert_eq!(data.pairs.len(), 1379);
        assert_eq!(data.pairs[0].sentence1, rows[0].0);
        assert_eq!(data.pairs[0].score, rows[0].2 / 5.0);
    });
}

#[test]
fn cli_runs_a_hub_model_on_a_hub_dataset_offline() {
    let tmp = tempfile::tempdir().unwrap();
    build_cache(tmp.path());
    let reports: PathBuf = tmp.path().join("reports");
    let (code, stdout, stderr) = common::output(
        common::assay()
            .args([
                "run",
                "--task",
                "stsb",
                "--model",
                "hf:sentence-transformers/all-MiniLM-L6-v2",
                "--run-id",
                "hub",
            ])
            .arg("--data-root")
            .arg(tmp.path().join("no-data-here"))
            .arg("--cache-dir")
            .arg(tmp.path().join("cache"))
            .arg("--reports")
            .arg(&reports)
            .env("HF_HOME", tmp.path())
            .env("HF_HUB_OFFLINE", "1"),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let spearman = common::score(&reports.join("hub"), "stsb", "cosine_spearman");
    assert!((spearman - 0.8203).abs() <= 0.0005, "{spearman}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reports.join("hub/run.json")).unwrap())
            .unwrap();
    assert_eq!(
        record["model"]["model"],
        "hf:sentence-transformers/all-MiniLM-L6-v2"
    );
    assert!(record["tasks"][0]["result"]["dataset"]["origin"]
        .as_str()
        .unwrap()
        .starts_with("hf:mteb/stsbenchmark-sts@"));
}

/// JSON lines as a Parquet table (list columns stay lists), as the hub stores datasets.
fn jsonl_to_parquet(lines: &[u8]) -> Vec<u8> {
    let mut frame = JsonReader::new(std::io::Cursor::new(lines))
        .with_json_format(JsonFormat::JsonLines)
        .finish()
        .unwrap();
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes).finish(&mut frame).unwrap();
    bytes
}

#[test]
fn generation_tasks_load_parquet_from_the_hub_with_mmlu_pro_shots() {
    use assay::data::generation::{load_gsm8k, load_mmlu_pro, GenerationData};
    let tmp = tempfile::tempdir().unwrap();
    let hub = tmp.path().join("hub");
    let repo = "datasets--TIGER-Lab--MMLU-Pro";
    let test = std::fs::read(common::data_root().join("mmlu_pro/test.jsonl")).unwrap();
    put(
        &hub,
        repo,
        MODEL_COMMIT,
        "data/test-00000-of-00001.parquet",
        &jsonl_to_parquet(&test),
    );
    // The hub's validation split holds worked CoT examples, 5 per category; the staged data
    // has none, so this one is made of 2 test questions per category with an answer written
    // in the official examples' form.
    let mut per_category = std::collections::HashMap::<String, usize>::new();
    let mut validation = Vec::new();
    for line in String::from_utf8_lossy(&test).lines() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        let n = per_category
            .entry(v["category"].as_str().unwrap().into())
            .or_default();
        if *n < 2 {
            *n += 1;
            let cot = format!(
                "A: Let's think step by step. Worked example. The answer is ({}).",
                v["answer"].as_str().unwrap()
            );
            v["cot_content"] = cot.into();
            validation.extend(serde_json::to_vec(&v).unwrap());
            validation.push(b'\n');
        }
    }
    put(
        &hub,
        repo,
        MODEL_COMMIT,
        "data/validation-00000-of-00001.parquet",
        &jsonl_to_parquet(&validation),
    );
    put_ref(&hub, repo, "main", MODEL_COMMIT);
    let gsm = std::fs::read(common::data_root().join("gsm8k/test.jsonl")).unwrap();
    let gsm_repo = "datasets--openai--gsm8k";
    put(
        &hub,
        gsm_repo,
        MODEL_COMMIT,
        "main/test-00000-of-00001.parquet",
        &jsonl_to_parquet(&gsm),
    );
    put_ref(&hub, gsm_repo, "main", MODEL_COMMIT);

    let empty_root = tmp.path().join("no-data-here");
    with_hf_home(tmp.path(), || {
        let mmlu = spec("mmlu-pro");
        let TaskKind::MmluPro(section) = &mmlu.kind else {
            panic!("mmlu-pro is an MMLU-Pro task")
        };
        let hub = DataSource::resolve(&mmlu.dataset, &empty_root).unwrap();
        let local = DataSource::resolve(&mmlu.dataset, &common::data_root()).unwrap();
        let from_hub = load_mmlu_pro(&mmlu.dataset, &hub, section).unwrap();
        let from_local = load_mmlu_pro(&mmlu.dataset, &local, section).unwrap();
        let (
            GenerationData::MmluPro {
                test: h,
                validation: hv,
            },
            GenerationData::MmluPro {
                test: l,
                validation: lv,
            },
        ) = (&from_hub.data, &from_local.data)
        else {
            panic!("MMLU-Pro data");
        };
        assert_eq!(h.len(), 12_032);
        for (a, b) in h.iter().zip(l) {
            assert_eq!(
                (&a.id, &a.question, &a.options, a.answer, &a.category),
                (&b.id, &b.question, &b.options, b.answer, &b.category)
            );
        }
        // Zero-shot locally (no validation file); shots from the hub's validation split.
        assert!(lv.is_none());
        let shots = hv.as_ref().expect("validation split from the hub");
        assert_eq!(shots.len(), 28);
        let question = &h[5000];
        let examples: Vec<_> = shots
            .iter()
            .filter(|s| s.category == question.category)
            .collect();
        let prompt = assay::eval::generation::mmlu_pro_prompt(question, &examples);
        assert_eq!(
            prompt.matches("Worked example. The answer is (").count(),
            2,
            "{prompt}"
        );
        assert!(
            prompt.ends_with("Answer: Let's think step by step."),
            "{prompt}"
        );

        let gsm8k = spec("gsm8k");
        let hub = DataSource::resolve(&gsm8k.dataset, &empty_root).unwrap();
        let local = DataSource::resolve(&gsm8k.dataset, &common::data_root()).unwrap();
        let (GenerationData::Gsm8k(h), GenerationData::Gsm8k(l)) = (
            load_gsm8k(&gsm8k.dataset, &hub).unwrap().data,
            load_gsm8k(&gsm8k.dataset, &local).unwrap().data,
        ) else {
            panic!("GSM8K data");
        };
        assert_eq!(h.len(), 1319);
        // Row numbers of the table are the line numbers of the JSONL file: same ids.
        for (a, b) in h.iter().zip(&l) {
            assert_eq!(
                (&a.id, &a.question, &a.answer),
                (&b.id, &b.question, &b.answer)
            );
        }
    });
}

/// Rows of a delimited staged file as (field, ...) strings.
fn table_rows(path: &Path, delimiter: u8) -> Vec<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_path(path)
        .unwrap();
    reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect()
}

fn jsonl(rows: impl IntoIterator<Item = serde_json::Value>) -> Vec<u8> {
    let mut out = Vec::new();
    for row in rows {
        writeln!(out, "{row}").unwrap();
    }
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// The new families' datasets in the layout of their hub repositories (mteb's column
/// names: `text`, `label`, `label_text`; pair sets as one row of three lists), made from
/// the staged files, load to the same inputs as the local files.
#[test]
fn family_datasets_load_from_the_offline_hub_cache() {
    use assay::eval::task;
    let tmp = tempfile::tempdir().unwrap();
    let hub = tmp.path().join("hub");
    let data = common::data_root();
    let specs = [
        "banking77",
        "emotion",
        "amazon-counterfactual",
        "twitter-url-corpus",
        "summeval",
    ];
    for name in specs {
        let s = spec(name);
        let repo = format!(
            "datasets--{}",
            s.dataset.hub.as_deref().unwrap().replace('/', "--")
        );
        let commit = s.dataset.hub_revision.clone().unwrap();
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        match name {
            "banking77" | "emotion" => {
                for split in ["train", "test"] {
                    let (file, delimiter) = if name == "banking77" {
                        (format!("banking77/{split}.csv"), b',')
                    } else {
                        (format!("emotion/{split}.txt"), b';')
                    };
                    let rows = table_rows(&data.join(file), delimiter);
                    files.push((
                        format!("{split}.jsonl"),
                        jsonl(rows.iter().map(
                            |r| serde_json::json!({"text": r[0], "label": 0, "label_text": r[1]}),
                        )),
                    ));
                }
            }
            "amazon-counterfactual" => {
                for (subset, local) in [
                    ("en", "EN"),
                    ("en-ext", "EN-ext"),
                    ("de", "DE"),
                    ("ja", "JP"),
                ] {
                    for split in ["train", "test"] {
                        let path = data.join(format!("amazon_counterfactual/{local}_{split}.tsv"));
                        let rows = table_rows(&path, b'\t');
                        files.push((
                            format!("{subset}/{split}.jsonl"),
                            jsonl(rows.iter().map(|r| {
                                serde_json::json!({"text": r[0], "label": r[1].parse::<i64>().unwrap()})
                            })),
                        ));
                    }
                }
            }
            "twitter-url-corpus" => {
                let text = std::fs::read_to_string(
                    data.join("twitter_url_corpus/Twitter_URL_Corpus_test.txt"),
                )
                .unwrap();
                let (mut s1, mut s2, mut labels) = (Vec::new(), Vec::new(), Vec::new());
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    let f: Vec<&str> = line.split('\t').collect();
                    let n: u32 = f[2][1..f[2].find(',').unwrap()].parse().unwrap();
                    if n == 3 {
                        continue;
                    }
                    s1.push(f[0]);
                    s2.push(f[1]);
                    labels.push(u8::from(n >= 4));
                }
                let row = serde_json::json!({"sent1": s1, "sent2": s2, "labels": labels});
                files.push(("test.jsonl.gz".into(), gzip(&jsonl([row]))));
            }
            "summeval" => {
                let bytes = std::fs::read(data.join("summeval/summeval.jsonl")).unwrap();
                files.push(("test.jsonl.gz".into(), gzip(&bytes)));
            }
            _ => unreachable!(),
        }
        for (file, bytes) in files {
            put(&hub, &repo, &commit, &file, &bytes);
        }
        put_ref(&hub, &repo, &commit, &commit);
    }

    with_hf_home(tmp.path(), || {
        let empty_root = tmp.path().join("no-data-here");
        for name in specs {
            let s = spec(name);
            let hub = DataSource::resolve(&s.dataset, &empty_root).unwrap();
            assert!(matches!(hub, DataSource::Hub(_)));
            let local = DataSource::resolve(&s.dataset, &data).unwrap();
            let from_hub = task::load(&s, &hub).unwrap_or_else(|e| panic!("{name}: {e}"));
            let from_local = task::load(&s, &local).unwrap();
            let (a, b) = (from_hub.inputs().unwrap(), from_local.inputs().unwrap());
            assert!(!a.is_empty(), "{name}");
            assert_eq!(a, b, "{name}: the hub copy gives the same inputs");
            assert_eq!(from_hub.measures(), from_local.measures(), "{name}");
        }
    });
}
