//! Reports, comparisons and release gates on real runs: the committed baseline of the
//! default suite, a deliberately worse configuration of the same model (truncation at 16
//! tokens), and an evaluation plus a load test through llama-server. The HTML report is
//! loaded in headless Chromium.

mod common;

use std::path::{Path, PathBuf};

use quick_xml::events::Event;

const TWO_TASK_RULES: &str = "\
[[rule]]\nmetric = \"stsb.cosine_spearman\"\nmin = 0.80\n\n\
[[rule]]\nmetric = \"stsb.cosine_spearman\"\nmax_drop = 0.01\n\n\
[[rule]]\nmetric = \"scifact.ndcg_at_10\"\nmin = 0.60\n\n\
[[rule]]\nmetric = \"scifact.ndcg_at_10\"\nmax_drop = 0.01\n\n\
[[rule]]\nmetric = \"scifact.recall_at_100\"\nmax_drop = 0.02\n";

fn baseline() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("reports/baseline")
}

fn cache_dir(tmp: &Path) -> PathBuf {
    std::env::var_os("ASSAY_TEST_CACHE").map_or_else(|| tmp.join("cache"), PathBuf::from)
}

/// A testcase's name and its child element, if any (`failure` or `error`).
type Case = (String, Option<String>);

/// Rule outcomes in a JUnit file: (tests, failures, errors) from the attributes, and the
/// testcases.
fn junit(path: &Path) -> ((u64, u64, u64), Vec<Case>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut reader = quick_xml::Reader::from_str(&text);
    let mut totals = None;
    let mut cases: Vec<Case> = Vec::new();
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) | Event::Empty(e) => {
                let attr = |name: &str| {
                    e.try_get_attribute(name)
                        .unwrap()
                        .map(|a| a.unescape_value().unwrap().into_owned())
                };
                match e.name().as_ref() {
                    b"testsuite" => {
                        let n = |k: &str| attr(k).unwrap_or_else(|| panic!("testsuite lacks {k}"));
                        assert!(attr("name").is_some() && attr("time").is_some());
                        totals = Some((
                            n("tests").parse().unwrap(),
                            n("failures").parse().unwrap(),
                            n("errors").parse().unwrap(),
                        ));
                    }
                    b"testcase" => {
                        assert!(attr("classname").is_some() && attr("time").is_some());
                        cases.push((attr("name").expect("testcase name"), None));
                    }
                    b"failure" | b"error" => {
                        assert!(attr("message").is_some() && attr("type").is_some());
                        let kind = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                        cases.last_mut().expect("inside a testcase").1 = Some(kind);
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let totals = totals.expect("a testsuite element");
    let count = |k: &str| cases.iter().filter(|c| c.1.as_deref() == Some(k)).count() as u64;
    assert_eq!(
        totals,
        (cases.len() as u64, count("failure"), count("error")),
        "counts agree with the testcases"
    );
    (totals, cases)
}

fn gate(candidate: &Path, rules: &Path, out: &Path) -> (i32, String, String) {
    common::output(
        common::assay()
            .arg("gate")
            .arg(candidate)
            .arg("--rules")
            .arg(rules)
            .arg("--baseline")
            .arg(baseline())
            .arg("--junit")
            .arg(out.join("gate.xml"))
            .arg("--summary")
            .arg(out.join("gate.md")),
    )
}

#[test]
fn gate_passes_the_baseline_and_fails_a_truncated_model() {
    let tmp = tempfile::tempdir().unwrap();
    // The release rules of the two tasks this baseline ran (gates/release.toml gates the
    // mteb-lite suite against reports/mteb-lite).
    let rules = tmp.path().join("release.toml");
    std::fs::write(&rules, TWO_TASK_RULES).unwrap();

    // The baseline against itself: every rule passes, deltas are exactly zero.
    let (code, out, err) = gate(&baseline(), &rules, tmp.path());
    assert_eq!(code, 0, "{out}\n{err}");
    let (totals, cases) = junit(&tmp.path().join("gate.xml"));
    assert_eq!(totals, (5, 0, 0));
    assert!(cases.iter().any(|c| c.0 == "stsb.cosine_spearman >= 0.8"));
    assert!(
        out.contains("delta +0.0000 (95% CI +0.0000 to +0.0000, 1379 items)"),
        "{out}"
    );

    // The same model cut at 16 tokens: real scores fall below the floors and the drops are
    // significant, so every rule fails and the exit code says so.
    let (code, out, err) = common::output(
        common::assay()
            .args([
                "run", "--task", "stsb", "--task", "scifact", "--run-id", "trunc16",
            ])
            .args(["--model", &common::minilm_ref(), "--max-tokens", "16"])
            .arg("--data-root")
            .arg(common::data_root())
            .arg("--cache-dir")
            .arg(cache_dir(tmp.path()))
            .arg("--reports")
            .arg(tmp.path()),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let worse = tmp.path().join("trunc16");
    let (code, out, err) = gate(&worse, &rules, tmp.path());
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("gate FAILED: 0 passed, 5 failed, 0 errors"),
        "{out}"
    );
    let (totals, cases) = junit(&tmp.path().join("gate.xml"));
    assert_eq!(totals, (5, 5, 0));
    assert!(cases.iter().all(|c| c.1.as_deref() == Some("failure")));
    let summary = std::fs::read_to_string(tmp.path().join("gate.md")).unwrap();
    assert!(
        summary.contains("| ❌ fail | scifact.ndcg_at_10 >= 0.6 |"),
        "{summary}"
    );

    // compare marks the STS drop as significant and worse.
    let (code, out, err) =
        common::output(common::assay().arg("compare").arg(baseline()).arg(&worse));
    assert_eq!(code, 0, "{out}\n{err}");
    let row = out
        .lines()
        .find(|l| l.contains("| stsb ") && l.contains("cosine_spearman"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("worse") && row.contains("1379"), "{row}");

    // A regression rule with an allowance larger than the drop passes; a missing score is
    // an error (exit 2), recorded as a JUnit <error>.
    let lenient = tmp.path().join("lenient.toml");
    std::fs::write(
        &lenient,
        "[[rule]]\nmetric = \"stsb.cosine_spearman\"\nmax_drop = 0.1\n\n\
         [[rule]]\nmetric = \"stsb.no_such_score\"\nmin = 0.5\n",
    )
    .unwrap();
    let (code, out, _) = gate(&worse, &lenient, tmp.path());
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("PASS  stsb.cosine_spearman drops at most 0.1"),
        "{out}"
    );
    let (totals, _) = junit(&tmp.path().join("gate.xml"));
    assert_eq!(totals, (2, 0, 1));
}

#[test]
fn bad_gate_and_compare_inputs_are_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();

    // A typo in a rules file: exit 2, the file and the key named.
    let rules = tmp.path().join("typo.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nmetric = \"stsb.cosine_spearman\"\nminimum = 0.8\n",
    )
    .unwrap();
    let (code, _, err) = gate(&baseline(), &rules, tmp.path());
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("typo.toml") && err.contains("minimum"),
        "{err}"
    );

    // Runs over different items cannot be paired: one STS pair missing from the candidate.
    let partial = tmp.path().join("partial");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::copy(baseline().join("run.json"), partial.join("run.json")).unwrap();
    let samples = std::fs::read_to_string(baseline().join("samples.jsonl")).unwrap();
    let kept: Vec<&str> = samples
        .lines()
        .filter(|l| !l.contains("\"id\":\"test-7\""))
        .collect();
    assert_eq!(kept.len() + 1, samples.lines().count());
    std::fs::write(partial.join("samples.jsonl"), kept.join("\n")).unwrap();
    let (code, _, err) =
        common::output(common::assay().arg("compare").arg(baseline()).arg(&partial));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "task stsb: the runs scored different items (1 only in the baseline, e.g. `test-7`"
        ),
        "{err}"
    );

    // Not a run directory.
    let (code, _, err) = common::output(
        common::assay()
            .arg("report")
            .arg(tmp.path())
            .arg("--out")
            .arg(tmp.path().join("out")),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no run.json"), "{err}");
}

/// `chromium` from PATH (scripts/install-chromium.sh) or `ASSAY_CHROMIUM`.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("ASSAY_CHROMIUM") {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .flat_map(|d| [d.join("chromium"), d.join("chromium-browser")])
            .find(|p| p.is_file())
    });
    found.expect("chromium not found: run scripts/install-chromium.sh (or set ASSAY_CHROMIUM)")
}

#[test]
fn report_tables_plots_and_html_from_real_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let reports = tmp.path().join("reports");
    let server = common::minilm_server();
    let model = format!("openai:{}#all-MiniLM-L6-v2", server.base_url());
    // The same model through an endpoint: scored on STS-B, then load-tested with a price.
    let (code, out, err) = common::output(
        common::assay()
            .args(["run", "--task", "stsb", "--no-cache", "--run-id", "remote"])
            .args(["--model", &model, "--concurrency", "4"])
            .arg("--data-root")
            .arg(common::data_root())
            .arg("--reports")
            .arg(&reports),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = common::output(
        common::assay()
            .args([
                "bench",
                "--run-id",
                "load",
                "--warmup",
                "0s",
                "--workload",
                "embed",
            ])
            .args([
                "--model",
                &model,
                "--concurrency",
                "1,4",
                "--requests",
                "40",
            ])
            .args(["--price-per-hour", "1.2"])
            .arg("--reports")
            .arg(&reports),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    drop(server);

    let out_dir = tmp.path().join("summary");
    let (code, out, err) = common::output(
        common::assay()
            .arg("report")
            .arg(baseline())
            .arg(reports.join("remote"))
            .arg(reports.join("load"))
            .arg("--out")
            .arg(&out_dir),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("| cosine_spearman |") || out.contains("cosine_spearman"),
        "{out}"
    );

    // Tables: every format, the same rows.
    let csv = std::fs::read_to_string(out_dir.join("quality.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert_eq!(
        header,
        "model,engine,run_id,task,metric,main,value,ci95_low,ci95_high,items"
    );
    // 2 STS + 35 SciFact scores in the baseline, 2 STS scores through the endpoint.
    assert_eq!(csv.lines().count(), 1 + 37 + 2, "{csv}");
    let parquet = std::fs::File::open(out_dir.join("performance.parquet")).unwrap();
    use polars::prelude::SerReader;
    let frame = polars::prelude::ParquetReader::new(parquet)
        .finish()
        .unwrap();
    // The evaluation run's own requests, then two load levels priced at $1.2/hour.
    assert_eq!(frame.height(), 3, "{frame}");
    let cost = frame.column("usd_per_mtok").unwrap().f64().unwrap();
    assert!(cost.get(0).is_none(), "{frame}");
    assert!(cost.get(2).is_some_and(|c| c > 0.0), "{frame}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("quality.json")).unwrap())
            .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 39);
    let md = std::fs::read_to_string(out_dir.join("performance.md")).unwrap();
    assert!(
        md.contains("| concurrency 4 |") || md.contains("concurrency 4"),
        "{md}"
    );

    // Plots the data allows (no TTFT for embeddings), each as SVG and PNG.
    let plots = [
        "latency_cdf",
        "throughput_vs_concurrency",
        "latency_over_time-1",
        "scores_by_task",
        "cost_vs_quality",
    ];
    for name in plots {
        for ext in ["svg", "png"] {
            let p = out_dir.join("plots").join(format!("{name}.{ext}"));
            assert!(
                std::fs::metadata(&p).unwrap().len() > 1000,
                "{}",
                p.display()
            );
        }
    }

    // Performance rules read the bench run: its capacity level by default, or a named one.
    let rules = tmp.path().join("serving.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nmetric = \"p99_ms\"\nmax = 60000\n\n\
         [[rule]]\nmetric = \"goodput\"\nmin = 0.01\nlevel = \"concurrency 1\"\n\n\
         [[rule]]\nmetric = \"error_rate\"\nmax = 0\n\n\
         [[rule]]\nname = \"cost ceiling\"\nmetric = \"usd_per_mtok\"\nmax = 1e-12\n",
    )
    .unwrap();
    let (code, out, err) = common::output(
        common::assay()
            .arg("gate")
            .arg(reports.join("load"))
            .arg("--rules")
            .arg(&rules)
            .arg("--junit")
            .arg(tmp.path().join("serving.xml")),
    );
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("FAIL  cost ceiling: above the ceiling 0.000000000001"),
        "{out}"
    );
    assert!(
        out.contains("PASS  goodput >= 0.01 @ concurrency 1"),
        "{out}"
    );
    assert_eq!(junit(&tmp.path().join("serving.xml")).0, (4, 1, 0));

    // The page renders in a real browser: tables with rows, every plot with a box and
    // text, and no console message at all.
    let html = out_dir.join("report.html");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "self-contained"
    );
    let profile = tempfile::tempdir().unwrap();
    let browser = std::process::Command::new(chromium())
        .args(["--headless=new", "--no-sandbox", "--disable-gpu"])
        .args(["--enable-logging=stderr", "--v=0", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&browser.stdout);
    let log = String::from_utf8_lossy(&browser.stderr);
    assert!(browser.status.success(), "{log}");
    assert!(
        dom.contains(&format!(
            "data-rendered=\"tables=3 folded=1 plots={}\"",
            plots.len()
        )),
        "{}",
        dom.lines()
            .find(|l| l.contains("<body"))
            .unwrap_or("no body")
    );
    assert!(dom.contains("data-errors=\"0\""));
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "{console:?}");
}
