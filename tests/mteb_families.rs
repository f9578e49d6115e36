//! The MTEB families beyond STS and retrieval, on the staged real data with
//! all-MiniLM-L6-v2 through the real CLI:
//! - classification against mteb's published scores for this model;
//! - every family against the reference implementation (sklearn / scipy, run by
//!   `tests/reference/mteb_reference.py`) on assay's own saved vectors;
//! - suites, their aggregates and gate rules on them; a classification set with other
//!   column names; bad input.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

const FAMILY_TASKS: [&str; 6] = [
    "banking77",
    "emotion",
    "amazon-counterfactual",
    "twitter-url-corpus",
    "summeval",
    "banking77-clustering",
];

/// `ASSAY_TEST_CACHE` lets CI hand the vectors on to the default suite.
fn cache_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        std::env::var_os("ASSAY_TEST_CACHE").map_or_else(
            || {
                let dir = tempfile::tempdir().unwrap().keep();
                dir.join("cache")
            },
            PathBuf::from,
        )
    })
    .clone()
}

fn run_assay(args: &[&str], reports: &Path, run_id: &str) -> (i32, String, String) {
    common::output(
        common::assay()
            .args(["run", "--model", &common::minilm_ref(), "--run-id", run_id])
            .args(args)
            .arg("--data-root")
            .arg(common::data_root())
            .arg("--cache-dir")
            .arg(cache_dir())
            .arg("--reports")
            .arg(reports),
    )
}

/// One run of every new family's task (shared by the tests of this file).
fn families_run() -> &'static PathBuf {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let reports = tempfile::tempdir().unwrap().keep();
        let tasks = FAMILY_TASKS.join(",");
        let (code, stdout, stderr) = run_assay(&["--task", &tasks], &reports, "families");
        assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
        println!("{stdout}");
        reports.join("families")
    })
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("file")).expect("json")
}

fn result<'a>(record: &'a Value, task: &str) -> &'a Value {
    record["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["result"])
        .find(|r| r["task"] == task)
        .unwrap_or_else(|| panic!("task {task} in run.json"))
}

fn value(record: &Value, task: &str, measure: &str) -> f64 {
    result(record, task)["scores"][measure]["value"]
        .as_f64()
        .unwrap_or_else(|| panic!("{task}.{measure}"))
}

#[test]
fn classification_reproduces_mteb_published_scores() {
    let record = json(&families_run().join("run.json"));
    // mteb's published all-MiniLM-L6-v2 results (v1 sampling, which v2 keeps).
    for (task, measure, published) in [
        ("banking77", "accuracy", 0.80042),
        ("emotion", "accuracy", 0.40830),
        ("amazon-counterfactual", "accuracy[en]", 0.63642),
        ("amazon-counterfactual", "accuracy[en-ext]", 0.65592),
        ("amazon-counterfactual", "accuracy[de]", 0.57816),
        ("amazon-counterfactual", "accuracy[ja]", 0.60899),
    ] {
        let got = value(&record, task, measure);
        println!("{task} {measure}: {got:.8} (mteb {published})");
        assert!((got - published).abs() <= 0.005, "{task} {measure} {got}");
    }
    let banking = result(&record, "banking77");
    assert_eq!(banking["dataset"]["items"], 3080);
    assert_eq!(banking["family"], "classification");
    assert_eq!(banking["measures"][0]["name"], "accuracy");
    // Only the drawn training rows are embedded: at most 8 x 77 x 10, plus the test set.
    assert!(banking["embedding"]["inputs"].as_u64().unwrap() <= 3080 + 6160);
    let ci = &banking["scores"]["accuracy"]["ci95"];
    let acc = value(&record, "banking77", "accuracy");
    assert!(ci["low"].as_f64().unwrap() < acc && acc < ci["high"].as_f64().unwrap());
    // The MTEB results layout is written for every task with an MTEB name.
    let mteb = json(&families_run().join("mteb/Banking77Classification.json"));
    assert_eq!(mteb["scores"]["test"][0]["main_score"].as_f64(), Some(acc));
}

/// The reference script's numbers for one task, on the vectors this run cached.
fn reference(task: &str, extra: &[&str]) -> Value {
    let python = std::env::var("ASSAY_SKLEARN_PYTHON").expect(
        "ASSAY_SKLEARN_PYTHON is not set: eval \"$(scripts/python-sklearn.sh)\" first (scripts/test.sh does)",
    );
    let record = json(&families_run().join("run.json"));
    let cache = record["settings"]["cache"].as_str().unwrap().to_string();
    let out = std::process::Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/mteb_reference.py"))
        .args(["--cache", &cache, "--task", task])
        .arg("--data-root")
        .arg(common::data_root())
        .args(extra)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "reference for {task}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("reference prints JSON")
}

fn agree(task: &str, keys: &[String], reference: &Value, tolerance: f64) {
    let record = json(&families_run().join("run.json"));
    for key in keys {
        let ours = value(&record, task, key);
        let theirs = reference[key.as_str()]
            .as_f64()
            .unwrap_or_else(|| panic!("reference {task}.{key}"));
        println!("{task} {key}: assay {ours:.10} reference {theirs:.10}");
        assert!(
            (ours - theirs).abs() <= tolerance,
            "{task} {key}: assay {ours} vs reference {theirs} (tolerance {tolerance})"
        );
    }
}

#[test]
fn pair_classification_matches_sklearn_on_the_same_vectors() {
    let reference = reference("twitter-url-corpus", &[]);
    let record = json(&families_run().join("run.json"));
    assert_eq!(
        result(&record, "twitter-url-corpus")["dataset"]["items"].as_u64(),
        reference["pairs"].as_u64()
    );
    let mut keys = Vec::new();
    for f in ["cosine", "dot", "euclidean", "manhattan", "similarity"] {
        for m in ["ap", "accuracy", "f1", "precision", "recall"] {
            keys.push(format!("{f}_{m}"));
        }
    }
    keys.extend(["max_ap", "max_accuracy", "max_f1"].map(String::from));
    // Deterministic given the vectors: AP, best-threshold accuracy and F1.
    agree("twitter-url-corpus", &keys, &reference, 1e-6);
}

#[test]
fn summarization_matches_scipy_on_the_same_vectors() {
    let reference = reference("summeval", &[]);
    let keys: Vec<String> = [
        "cosine_spearman",
        "cosine_pearson",
        "dot_spearman",
        "dot_pearson",
    ]
    .map(String::from)
    .to_vec();
    agree("summeval", &keys, &reference, 1e-6);
}

#[test]
fn clustering_matches_sklearn_on_the_same_vectors() {
    let samples = families_run().join("samples.jsonl");
    let reference = reference(
        "banking77-clustering",
        &["--samples", samples.to_str().unwrap()],
    );
    let record = json(&families_run().join("run.json"));
    let ours = value(&record, "banking77-clustering", "v_measure");
    // v-measure of assay's own cluster assignments, computed by sklearn: deterministic.
    let given = reference["v_measure_given"].as_f64().unwrap();
    assert!((ours - given).abs() <= 1e-6, "{ours} vs {given}");
    // sklearn's MiniBatchKMeans on the same draws (1 thread): stated tolerance 0.01; on
    // this data the two agree to every printed digit.
    let sklearn = reference["v_measure"].as_f64().unwrap();
    println!("banking77-clustering v_measure: assay {ours:.10} sklearn k-means {sklearn:.10}");
    assert!((ours - sklearn).abs() <= 0.01, "{ours} vs {sklearn}");
}

#[test]
fn classification_probe_matches_sklearn_on_the_same_subsamples() {
    // sklearn's lbfgs and assay's stop at slightly different points within the same
    // tolerance: a prediction can flip. Stated tolerance 0.002 on every score.
    for task in ["banking77", "emotion", "amazon-counterfactual"] {
        let reference = reference(task, &[]);
        let mut keys: Vec<String> = ["accuracy", "f1", "f1_weighted", "precision", "recall"]
            .map(String::from)
            .to_vec();
        if task == "amazon-counterfactual" {
            keys.push("ap".into());
            for s in ["en", "en-ext", "de", "ja"] {
                keys.push(format!("accuracy[{s}]"));
            }
        }
        agree(task, &keys, &reference, 0.002);
    }
}

#[test]
fn suite_aggregates_and_gate_rules() {
    families_run();
    let tmp = tempfile::tempdir().unwrap();
    // A suite of already-embedded tasks (everything comes from the cache).
    let suite = tmp.path().join("lite-test.toml");
    std::fs::write(
        &suite,
        "name = \"lite-test\"\ndescription = \"test\"\naggregate = \"mteb\"\n\
         tasks = [\"banking77\", \"emotion\", \"twitter-url-corpus\", \"summeval\"]\n",
    )
    .unwrap();
    let reports = tmp.path().join("reports");
    let (code, stdout, stderr) =
        run_assay(&["--suite", suite.to_str().unwrap()], &reports, "suite");
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("suite lite-test"), "{stdout}");
    let record = json(&reports.join("suite/run.json"));
    let v = |t: &str, m: &str| value(&record, t, m);
    let classification = (v("banking77", "accuracy") + v("emotion", "accuracy")) / 2.0;
    let pair = v("twitter-url-corpus", "max_ap");
    let summarization = v("summeval", "cosine_spearman");
    let scores = &record["suite"]["scores"];
    let get = |k: &str| scores[k]["value"].as_f64().unwrap();
    assert!((get("mean[classification]") - classification).abs() < 1e-12);
    assert!((get("mean[pair-classification]") - pair).abs() < 1e-12);
    let mean = (classification + pair + summarization) / 3.0;
    assert!(
        (get("mean") - mean).abs() < 1e-12,
        "{} vs {mean}",
        get("mean")
    );
    let mean_task =
        (v("banking77", "accuracy") + v("emotion", "accuracy") + pair + summarization) / 4.0;
    assert!((get("mean_task") - mean_task).abs() < 1e-12);
    let ci = &scores["mean"]["ci95"];
    let (lo, hi) = (ci["low"].as_f64().unwrap(), ci["high"].as_f64().unwrap());
    assert!(
        lo < mean && mean < hi && hi - lo < 0.1,
        "[{lo}, {hi}] around {mean}"
    );
    assert_eq!(
        record["suite"]["replicates"].as_array().unwrap().len(),
        1000
    );

    // Gate rules on the aggregate: a floor that holds, one that fails, and no drop
    // against itself.
    let rules = tmp.path().join("rules.toml");
    let gate = |body: String| {
        std::fs::write(&rules, body).unwrap();
        common::output(
            common::assay()
                .args(["gate", "--rules"])
                .arg(&rules)
                .arg(reports.join("suite"))
                .arg("--baseline")
                .arg(reports.join("suite")),
        )
    };
    let (code, out, err) = gate(format!(
        "[[rule]]\nmetric = \"suite.lite-test.mean\"\nmin = {}\n\n[[rule]]\nmetric = \"suite.lite-test.mean\"\nmax_drop = 0.01\n",
        mean - 0.01
    ));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("suite.lite-test.mean"), "{out}");
    let (code, out, err) = gate(format!(
        "[[rule]]\nmetric = \"suite.lite-test.mean\"\nmin = {}\n",
        mean + 0.01
    ));
    assert_eq!(code, 1, "{out}\n{err}");
}

#[test]
fn tasks_lists_families_and_suites() {
    let (code, stdout, stderr) = common::output(common::assay().arg("tasks"));
    assert_eq!(code, 0, "{stderr}");
    for needle in [
        "banking77 ",
        "classification",
        "pair-classification",
        "clustering",
        "summarization",
        "mteb-lite",
        "beir",
    ] {
        assert!(stdout.contains(needle), "{needle} in {stdout}");
    }
}

/// Banking77 rows of the first `labels` intents, as (text, intent).
fn banking_rows(split: &str, labels: usize) -> Vec<(String, String)> {
    let path = common::data_root().join(format!("banking77/{split}.csv"));
    let mut reader = csv::Reader::from_path(path).unwrap();
    let rows: Vec<(String, String)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_string(), r[1].to_string())
        })
        .collect();
    let mut keep: Vec<String> = rows.iter().map(|(_, l)| l.clone()).collect();
    keep.sort();
    keep.dedup();
    keep.truncate(labels);
    rows.into_iter().filter(|(_, l)| keep.contains(l)).collect()
}

#[test]
fn a_classification_set_with_other_columns_needs_only_a_toml() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data/tickets");
    std::fs::create_dir_all(&data).unwrap();
    // The same rows twice: once as banking77 lays them out, once with other column
    // names, another order and another delimiter.
    for split in ["train", "test"] {
        let rows = banking_rows(split, 12);
        let mut plain = csv::Writer::from_path(data.join(format!("{split}.csv"))).unwrap();
        plain.write_record(["text", "category"]).unwrap();
        let mut other = csv::WriterBuilder::new()
            .delimiter(b'|')
            .from_path(data.join(format!("{split}-other.psv")))
            .unwrap();
        other
            .write_record(["Intent Label", "id", "Customer Message"])
            .unwrap();
        for (i, (text, label)) in rows.iter().enumerate() {
            plain.write_record([text, label]).unwrap();
            other.write_record([label, &i.to_string(), text]).unwrap();
        }
    }
    let spec = |name: &str, file: &str, extra: &str, columns: &str| {
        let path = tmp.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "name = \"{name}\"\ndescription = \"tickets\"\n\n[dataset]\nlocal = \"tickets\"\nsplit = \"test\"\nformat = \"table\"\nfile = \"{file}\"\n{extra}\n[classification]\n{columns}\n"
            ),
        )
        .unwrap();
        path
    };
    let plain = spec(
        "tickets-plain",
        "{split}.csv",
        "",
        "text = \"text\"\nlabel = \"category\"",
    );
    let other = spec(
        "tickets-other",
        "{split}-other.psv",
        "delimiter = \"|\"",
        "text = \"Customer Message\"\nlabel = \"Intent Label\"",
    );
    let reports = tmp.path().join("reports");
    let (code, stdout, stderr) = common::output(
        common::assay()
            .args(["run", "--model", &common::minilm_ref(), "--run-id", "t"])
            .arg("--task")
            .arg(&plain)
            .arg("--task")
            .arg(&other)
            .arg("--data-root")
            .arg(tmp.path().join("data"))
            .arg("--cache-dir")
            .arg(cache_dir())
            .arg("--reports")
            .arg(&reports),
    );
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let record = json(&reports.join("t/run.json"));
    let a = result(&record, "tickets-plain")["scores"].clone();
    let b = result(&record, "tickets-other")["scores"].clone();
    assert_eq!(a, b, "same rows, same scores");
    assert!(a["accuracy"]["value"].as_f64().unwrap() > 0.5);
}

/// Runs `assay run` on a task file over a data folder; returns (code, stderr).
fn run_spec(tmp: &Path, toml: &str) -> (i32, String) {
    let spec = tmp.join("bad.toml");
    std::fs::write(&spec, toml).unwrap();
    let (code, _, stderr) = common::output(
        common::assay()
            .args(["run", "--model", &common::minilm_ref(), "--no-cache"])
            .arg("--task")
            .arg(&spec)
            .arg("--data-root")
            .arg(tmp.join("data"))
            .arg("--reports")
            .arg(tmp.join("reports")),
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    (code, stderr)
}

#[test]
fn bad_input_names_file_line_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data/set");
    std::fs::create_dir_all(&data).unwrap();
    let classification = "name = \"bad\"\ndescription = \"x\"\n[dataset]\nlocal = \"set\"\nsplit = \"test\"\nformat = \"table\"\nfile = \"{split}.csv\"\n[classification]\nsamples_per_label = 2\nn_experiments = 2\n";

    // A test label never seen in training.
    std::fs::write(
        data.join("train.csv"),
        "text,label\na b,x\nc d,x\ne f,y\ng h,y\n",
    )
    .unwrap();
    std::fs::write(data.join("test.csv"), "text,label\nk l,x\nm n,z\n").unwrap();
    let (code, err) = run_spec(tmp.path(), classification);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("test.csv:3: field `label`"), "{err}");
    assert!(err.contains("`z`"), "{err}");

    // A label with fewer training rows than samples_per_label: used whole (as mteb
    // does), with a warning and a note in the record.
    std::fs::write(
        data.join("train.csv"),
        "text,label\ncard lost,x\ncard stolen,x\nrate of exchange,y\n",
    )
    .unwrap();
    std::fs::write(
        data.join("test.csv"),
        "text,label\nmy card is gone,x\nexchange rates,y\n",
    )
    .unwrap();
    let (code, err) = run_spec(tmp.path(), classification);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("fewer than samples_per_label"), "{err}");
    let run = std::fs::read_dir(tmp.path().join("reports"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let record = json(&run.join("run.json"));
    assert_eq!(
        result(&record, "bad")["dataset"]["selection"]["labels_with_fewer_train_rows"][0]["label"],
        "y"
    );

    // A pair row without a label.
    std::fs::write(
        data.join("test.csv"),
        "sentence1,sentence2,label\na,b,1\nc,d,\ne,f,0\n",
    )
    .unwrap();
    let pair = "name = \"bad\"\ndescription = \"x\"\n[dataset]\nlocal = \"set\"\nsplit = \"test\"\nformat = \"table\"\nfile = \"{split}.csv\"\n[pair_classification]\n";
    let (code, err) = run_spec(tmp.path(), pair);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("test.csv:3: field `label`"), "{err}");

    // A summary score list of the wrong length.
    std::fs::write(
        data.join("test.jsonl"),
        "{\"human_summaries\": [\"a\"], \"machine_summaries\": [\"b\", \"c\"], \"relevance\": [1.0, 2.0]}\n\
         {\"human_summaries\": [\"a\"], \"machine_summaries\": [\"b\", \"c\"], \"relevance\": [1.0]}\n",
    )
    .unwrap();
    let summarization = "name = \"bad\"\ndescription = \"x\"\n[dataset]\nlocal = \"set\"\nsplit = \"test\"\nformat = \"jsonl\"\n[summarization]\nscore_range = [0, 5]\n";
    let (code, err) = run_spec(tmp.path(), summarization);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("test.jsonl:2: field `relevance`"), "{err}");

    // A suite naming an unknown task.
    let suite = tmp.path().join("broken-suite.toml");
    std::fs::write(&suite, "name = \"broken-suite\"\ndescription = \"x\"\naggregate = \"mean\"\ntasks = [\"stsb\", \"no-such-task\"]\n").unwrap();
    let (code, _, err) = common::output(
        common::assay()
            .args(["run", "--model", &common::minilm_ref(), "--suite"])
            .arg(&suite),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no-such-task") && err.contains("broken-suite"),
        "{err}"
    );
}

/// Reranking is retrieval restricted to each query's candidates: with every document as
/// a candidate it scores exactly as retrieval; with a short list it ranks only that list.
#[test]
fn reranking_reuses_retrieval_over_each_querys_candidates() {
    let tmp = tempfile::tempdir().unwrap();
    let scifact = common::data_root().join("scifact");
    let corpus: Vec<String> = std::fs::read_to_string(scifact.join("corpus.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let qrels = std::fs::read_to_string(scifact.join("qrels/test.tsv")).unwrap();
    let mut judged: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for line in qrels.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        judged
            .entry(f[0].to_string())
            .or_default()
            .push(f[1].to_string());
    }
    for (folder, short) in [("scifact-all", false), ("scifact-short", true)] {
        let dir = tmp.path().join("data").join(folder);
        std::fs::create_dir_all(dir.join("qrels")).unwrap();
        for f in ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"] {
            std::os::unix::fs::symlink(scifact.join(f), dir.join(f)).unwrap();
        }
        let mut lines = String::new();
        for (qi, (query, relevant)) in judged.iter().enumerate() {
            let ids: Vec<&String> = if short {
                let mut ids: Vec<&String> = relevant.iter().collect();
                ids.extend((0..20).map(|j| &corpus[(qi * 37 + j * 101) % corpus.len()]));
                ids
            } else {
                corpus.iter().collect()
            };
            lines.push_str(&serde_json::json!({"query-id": query, "corpus-ids": ids}).to_string());
            lines.push('\n');
        }
        std::fs::write(dir.join("top_ranked.jsonl"), lines).unwrap();
        std::fs::write(
            tmp.path().join(format!("{folder}.toml")),
            format!(
                "name = \"{folder}\"\ndescription = \"SciFact reranking\"\n[dataset]\nlocal = \"{folder}\"\nsplit = \"test\"\nformat = \"beir\"\n\
                 [reranking]\ntop_ranked = \"top_ranked.jsonl\"\nk_values = [1, 3, 5, 10, 20, 100, 1000]\nmain_score = \"map_at_1000\"\n\
                 query_instruction = \"Given a scientific claim, retrieve documents that support or refute the claim\"\n"
            ),
        )
        .unwrap();
    }
    // SciFact itself from the staged folder; the reranking sets from the temporary one.
    let reports = tmp.path().join("reports");
    let run = |task: &str, data: &Path, id: &str| {
        let (code, out, err) = common::output(
            common::assay()
                .args(["run", "--model", &common::minilm_ref(), "--run-id", id])
                .arg("--task")
                .arg(task)
                .arg("--data-root")
                .arg(data)
                .arg("--cache-dir")
                .arg(cache_dir())
                .arg("--reports")
                .arg(&reports),
        );
        assert_eq!(code, 0, "{out}\n{err}");
        json(&reports.join(id).join("run.json"))
    };
    let retrieval = run("scifact", &common::data_root(), "retrieval");
    let data = tmp.path().join("data");
    let all = run(
        tmp.path().join("scifact-all.toml").to_str().unwrap(),
        &data,
        "all",
    );
    let short = run(
        tmp.path().join("scifact-short.toml").to_str().unwrap(),
        &data,
        "short",
    );
    assert_eq!(result(&all, "scifact-all")["family"], "reranking");
    for measure in ["map_at_1000", "mrr_at_10", "ndcg_at_10", "recall_at_100"] {
        assert_eq!(
            value(&all, "scifact-all", measure),
            value(&retrieval, "scifact", measure),
            "{measure}"
        );
    }
    // Twenty distractors per query are easier than the whole corpus.
    assert!(
        value(&short, "scifact-short", "map_at_1000") > value(&retrieval, "scifact", "map_at_1000")
    );
    let samples = std::fs::read_to_string(reports.join("short/samples.jsonl")).unwrap();
    for line in samples.lines() {
        let s: Value = serde_json::from_str(line).unwrap();
        let q = s["id"].as_str().unwrap();
        let qi = judged.keys().position(|k| k == q).unwrap();
        let allowed: Vec<&String> = judged[q]
            .iter()
            .chain((0..20).map(|j| &corpus[(qi * 37 + j * 101) % corpus.len()]))
            .collect();
        for hit in s["retrieved"].as_array().unwrap() {
            let id = hit[0].as_str().unwrap().to_string();
            assert!(allowed.contains(&&id), "{q}: {id} is not a candidate");
        }
    }
}
