//! GPQA as simple-evals runs it: the shuffles drawn exactly as CPython's
//! `random.Random(0)` draws them, simple-evals' prompt and extraction, the official
//! password-protected zip (right, wrong and missing password, a corrupt archive), and a
//! run through llama-server with repeats. Uses a hand-made fixture in the official CSV
//! layout; no question is ever printed.

mod common;

use std::io::Write;

use std::path::{Path, PathBuf};
use zip::unstable::write::FileOptionsExt;

use assay::data::gpqa::{self, GpqaItem};
use assay::eval::generation::{gpqa_prompt, gpqa_schedule};
use assay::metrics::answer;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpqa/gpqa_diamond.csv")
}

fn items() -> Vec<GpqaItem> {
    let path = fixture();
    gpqa::parse(&path, &std::fs::read(&path).unwrap()).unwrap()
}

/// simple-evals' draws, by CPython itself.
fn python_schedule(n: usize, limit: Option<usize>, repeats: usize) -> Vec<(usize, Vec<usize>)> {
    let script = format!(
        "import random, json\nrng = random.Random(0)\nex = list(range({n}))\nif {limit}:\n    ex = rng.sample(ex, {limit})\nex = ex * {repeats}\nprint(json.dumps([[e, rng.sample(range(4), 4)] for e in ex]))",
        limit = limit.unwrap_or(0),
    );
    let out = std::process::Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn shuffles_prompt_and_extraction_follow_simple_evals() {
    assert_eq!(
        gpqa_schedule(198, None, 4, 0),
        python_schedule(198, None, 4)
    );
    assert_eq!(
        gpqa_schedule(198, Some(20), 1, 0),
        python_schedule(198, Some(20), 1)
    );
    assert_eq!(
        gpqa_schedule(5, Some(3), 2, 0),
        python_schedule(5, Some(3), 2)
    );

    let items = items();
    assert_eq!(items.len(), 4);
    assert_eq!(items[1].id, "recFIXTURE002");
    assert!(items[1].question.contains('\n'), "quoted fields span lines");
    assert!(
        items[3].question.contains("\"blip\""),
        "doubled quotes unescaped"
    );
    // Permutation [3, 1, 0, 2] of (correct, incorrect 1, 2, 3): the correct answer is third.
    let (prompt, gold) = gpqa_prompt(&items[0], &[3, 1, 0, 2]);
    assert_eq!(gold, 'C');
    assert_eq!(
        prompt,
        "Answer the following multiple choice question. The last line of your response should be of the following format: 'Answer: $LETTER' (without quotes) where LETTER is one of ABCD. Think step by step before answering.\n\n\
         A lighthouse keeper counts 12 flashes per minute. How many seconds separate two flashes?\n\n\
         A) 12\nB) 6\nC) 5\nD) 4"
    );

    assert_eq!(answer::gpqa("so\nAnswer: C"), Some('C'));
    assert_eq!(answer::gpqa("ANSWER:$B$ and later Answer: D"), Some('B'));
    assert_eq!(
        answer::gpqa("answer : d"),
        Some('d'),
        "spaces around the colon are allowed"
    );
    assert_eq!(
        answer::gpqa("answer:d"),
        Some('d'),
        "read, and then wrong against 'D'"
    );
    assert_eq!(answer::gpqa("The answer is C"), None);
}

#[test]
fn a_bad_row_names_its_line_and_column_but_not_the_question() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpqa_diamond.csv");
    let text = std::fs::read_to_string(fixture()).unwrap();
    // Empty the correct answer of the third question (line 5: the second spans two lines).
    let broken = text.replace(",42,36,", ",,36,");
    std::fs::write(&path, &broken).unwrap();
    let err = gpqa::parse(&path, broken.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(err.contains(":5: field `Correct Answer`"), "{err}");
    assert!(!err.contains("7 times 6"), "{err}");
}

/// `<root>/gpqa/dataset.zip` holding `dataset/gpqa_diamond.csv`, encrypted with `password`
/// as the official archive is (ZipCrypto).
fn official_zip(root: &Path, password: &str) -> PathBuf {
    let dir = root.join("gpqa");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dataset.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .with_deprecated_encryption(password.as_bytes());
    zip.start_file("dataset/gpqa_diamond.csv", options).unwrap();
    zip.write_all(&std::fs::read(fixture()).unwrap()).unwrap();
    zip.finish().unwrap();
    path
}

fn run(root: &Path, password: Option<&str>, extra: &[&str]) -> (i32, String, String) {
    let mut cmd = common::assay();
    cmd.env_remove(gpqa::PASSWORD_ENV);
    if let Some(p) = password {
        cmd.env(gpqa::PASSWORD_ENV, p);
    }
    common::output(
        cmd.args(["run", "--task", "gpqa-diamond", "--run-id", "gpqa"])
            .arg("--data-root")
            .arg(root)
            .arg("--reports")
            .arg(root.join("reports"))
            .args(extra),
    )
}

#[test]
fn the_official_zip_with_its_password_through_llama_server() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    official_zip(root, "fixture-password");
    let never_printed = [
        "lighthouse",
        "noble gas",
        "7 times 6",
        "blop",
        "fixture-password",
    ];
    let clean = |out: &str, err: &str| {
        for secret in never_printed {
            assert!(
                !out.contains(secret) && !err.contains(secret),
                "{secret} printed:\n{out}\n{err}"
            );
        }
    };

    // The archive is refused without the password, with a wrong one, and when corrupt;
    // each before any model is loaded (a model that does not exist is never reached).
    let nowhere = ["--model", "dir:/nonexistent/model.gguf"];
    let (code, out, err) = run(root, None, &nowhere);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(gpqa::PASSWORD_ENV) && err.contains("github.com/idavidrein/gpqa"),
        "{err}"
    );
    clean(&out, &err);
    let (code, out, err) = run(root, Some("not-the-password"), &nowhere);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("wrong password"), "{err}");
    clean(&out, &err);
    let zip = root.join("gpqa/dataset.zip");
    let good = std::fs::read(&zip).unwrap();
    std::fs::write(&zip, &good[..good.len() / 2]).unwrap();
    let (code, _, err) = run(root, Some("fixture-password"), &nowhere);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("dataset.zip") && err.contains("zip"), "{err}");
    std::fs::write(&zip, &good).unwrap();

    // Answered by SmolLM2 through llama-server: two repeats, each with its own shuffle.
    let server = common::LlamaServer::start(&common::smollm2_gguf(), &["-c", "4096", "-np", "4"]);
    let model = format!("openai:{}#smollm2", server.base_url());
    let (code, out, err) = run(
        root,
        Some("fixture-password"),
        &[
            "--model",
            &model,
            "--repeats",
            "2",
            "--max-new-tokens",
            "64",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    clean(&out, &err);
    let dir = root.join("reports/gpqa");
    let samples: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("samples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(samples.len(), 8);
    let schedule = gpqa_schedule(4, None, 2, 0);
    let items = items();
    for (s, (i, permutation)) in samples.iter().zip(&schedule) {
        assert_eq!(s["permutation"], serde_json::json!(permutation));
        let (prompt, gold) = gpqa_prompt(&items[*i], permutation);
        assert_eq!(s["prompt"], prompt);
        assert_eq!(s["gold"], gold.to_string());
        let extracted = answer::gpqa(s["output"].as_str().unwrap()).map(String::from);
        assert_eq!(s["extracted"], serde_json::json!(extracted));
        assert_eq!(s["correct"], extracted == Some(gold.to_string()));
    }
    assert_eq!(samples[0]["repeat"], 0);
    assert_eq!(samples[4]["repeat"], 1);
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    let result = &run["tasks"][0]["result"];
    let correct = samples.iter().filter(|s| s["correct"] == true).count();
    let accuracy = result["scores"]["accuracy"]["value"].as_f64().unwrap();
    assert!((accuracy - correct as f64 / 8.0).abs() < 1e-12);
    assert_eq!(result["dataset"]["selection"]["repeats"], 2);
    // Graded again from its samples (`assay grade`): the same scores, and no secret printed.
    let (code, out, err) = common::output(
        common::assay()
            .args(["grade", "--task", "gpqa-diamond", "--run-id", "again"])
            .arg("--outputs")
            .arg(dir.join("samples.jsonl"))
            .arg("--reports")
            .arg(root.join("regraded")),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    clean(&out, &err);
    let again: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("regraded/again/run.json")).unwrap(),
    )
    .unwrap();
    let again = &again["tasks"][0]["result"];
    for measure in ["accuracy", "unparsed_rate"] {
        assert_eq!(
            again["scores"][measure]["value"],
            result["scores"][measure]["value"]
        );
    }
    assert_eq!(again["dataset"]["selection"]["repeats"], 2);
    // The password is in no record.
    for file in ["run.json", "samples.jsonl"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(!text.contains("fixture-password"), "{file}");
    }
}
