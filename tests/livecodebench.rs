//! LiveCodeBench: a hand-made fixture in the layout of `livecodebench/code_generation_lite`
//! (tests/fixtures/livecodebench/make_fixture.py; private tests packed as the dataset packs
//! them) read through the offline hub cache and graded in the bubblewrap sandbox by
//! LiveCodeBench's rules; release and date filters; bad records refused; and a real run of
//! SmolLM2 through llama-server with LiveCodeBench's chat prompt.

mod common;

use std::path::{Path, PathBuf};

use assay::data::DataSource;
use assay::eval::code::CodeTask;
use assay::spec::{self, TaskKind};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/livecodebench")
}

/// A task spec like tasks/livecodebench.toml with a release, dates and a 1 s test timeout.
fn spec_file(dir: &Path, release: &str, dates: &str) -> PathBuf {
    let path = dir.join(format!("lcb-{release}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"name = "livecodebench"
description = "LiveCodeBench fixture"
[dataset]
local = "livecodebench"
hub = "livecodebench/code_generation_lite"
split = "test"
format = "jsonl"
[code]
benchmark = "livecodebench"
k_values = [1, 2]
timeout_seconds = 1.0
release = "{release}"
{dates}
"#
        ),
    )
    .unwrap();
    path
}

fn load(dir: &Path, release: &str, dates: &str) -> CodeTask {
    let spec = spec::TaskSpec::load(&spec_file(dir, release, dates)).unwrap();
    let TaskKind::Code(section) = &spec.kind else {
        panic!("a code task")
    };
    let data_root = fixture().parent().unwrap().to_path_buf();
    let source = DataSource::resolve(&spec.dataset, &data_root).unwrap();
    CodeTask::load(&spec, section, &source).unwrap()
}

fn ids(task: &CodeTask) -> Vec<&str> {
    task.problems().iter().map(|p| p.id.as_str()).collect()
}

#[test]
fn releases_and_dates_select_the_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert_eq!(
        ids(&load(dir, "release_v1", "")),
        ["fx001_a", "2001", "fx002_b"]
    );
    assert_eq!(
        ids(&load(dir, "release_v2", "")),
        ["fx001_a", "2001", "fx002_b", "2002", "1950C"]
    );
    assert_eq!(ids(&load(dir, "v2", "")), ["2002", "1950C"]);
    // Both ends inclusive, as LiveCodeBench filters them.
    assert_eq!(
        ids(&load(
            dir,
            "release_v2",
            "start_date = \"2024-01-20\"\nend_date = \"2024-04-14\""
        )),
        ["fx002_b", "2002"]
    );
    // Tests decoded from both forms, public first; functional problems name their method.
    let task = load(dir, "release_v1", "");
    let pair = &task.problems()[1];
    assert_eq!(pair.entry_point, "pairIndices");
    assert_eq!(pair.io_tests.len(), 4);
    assert!(pair.io_tests.iter().all(|t| t.functional));
    assert_eq!(pair.io_tests[1].input, "[3, 2, 4]\n6");
    assert_eq!(task.problems()[0].io_tests[3].output, "2000000000\n");
    assert_eq!(task.problems()[2].io_tests.len(), 3);
    assert_eq!(task.problems()[2].date, "2024-01-20");
    // The prompt is LiveCodeBench's: starter code for functional problems, the stdin
    // instruction otherwise.
    let text = |i: usize| {
        task.prompt(
            &task.problems()[i],
            assay::eval::generation::PromptStyle::Completion,
        )
        .plain_text()
    };
    assert!(text(1).contains("### Format: You will use the following starter code"));
    assert!(text(1).contains("def pairIndices(self, nums: List[int]"));
    assert!(text(0).contains("Read the inputs from stdin solve the problem"));
    assert!(text(0).ends_with("### Answer: (use the provided format with backticks)\n\n"));
}

/// A chat reply around a program, as a model writes it.
fn reply(code: &str) -> String {
    format!("Here is my solution.\n```python\n{code}\n```\nIt reads the input.")
}

/// One right and one wrong answer per problem, with what the wrong one must fail by.
fn answers() -> Vec<(&'static str, String, String, &'static str)> {
    vec![
        (
            "fx001_a",
            reply("a, b = map(int, input().split())\nprint(a + b)"),
            reply("a, b = map(int, input().split())\nprint(a - b)"),
            "wrong_answer",
        ),
        (
            // `List` comes from the grader's star imports, as in LiveCodeBench.
            "2001",
            reply("class Solution:\n    def pairIndices(self, nums: List[int], target: int) -> List[int]:\n        seen = {}\n        for i, x in enumerate(nums):\n            if target - x in seen:\n                return [seen[target - x], i]\n            seen[x] = i"),
            reply("class Solution:\n    def pairIndices(self, nums, target):\n        return nums[10]"),
            "error",
        ),
        (
            // "2.5" against "2.500000": equal as decimals.
            "fx002_b",
            reply("n = int(input())\nxs = list(map(int, input().split()))\nprint(sum(xs) / n)"),
            reply("while True:\n    pass"),
            "timeout",
        ),
        (
            // A tuple counts as a list.
            "2002",
            reply("class Solution:\n    def minMax(self, nums):\n        return min(nums), max(nums)"),
            reply("class Solution:\n    def minMax(self, nums):\n        return [max(nums), min(nums)]"),
            "wrong_answer",
        ),
        (
            // A main guard and sys.exit(0) at the end, as contest code often has.
            "1950C",
            reply("import sys\ndef main():\n    n = int(sys.stdin.readline())\n    for _ in range(n):\n        print(sys.stdin.readline().strip()[::-1])\n    sys.exit(0)\nif __name__ == '__main__':\n    main()"),
            reply("n = int(input())\nfor _ in range(n):\n    print(input())"),
            "wrong_answer",
        ),
    ]
}

/// An HF_HOME whose hub cache holds the fixture as the hub serves it.
fn hub_home(files: &[(&str, Vec<u8>)]) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let repo = home
        .path()
        .join("hub/datasets--livecodebench--code_generation_lite");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    for (name, bytes) in files {
        std::fs::write(snapshot.join(name), bytes).unwrap();
    }
    home
}

fn fixture_files() -> Vec<(&'static str, Vec<u8>)> {
    ["test.jsonl", "test2.jsonl"]
        .into_iter()
        .map(|f| (f, std::fs::read(fixture().join(f)).unwrap()))
        .collect()
}

fn grade(home: &Path, spec: &Path, outputs: &Path, reports: &Path) -> (i32, String, String) {
    let empty = tempfile::tempdir().unwrap();
    common::output(
        common::assay()
            .args(["grade", "--run-id", "lcb", "--prompt-style", "chat"])
            .args(["--format", "human-eval", "--bootstrap", "0"])
            .arg("--task")
            .arg(spec)
            .arg("--outputs")
            .arg(outputs)
            .arg("--data-root")
            .arg(empty.path())
            .arg("--reports")
            .arg(reports)
            .env("HF_HOME", home)
            .env("HF_HUB_OFFLINE", "1"),
    )
}

#[test]
fn answers_are_graded_by_livecodebench_rules_from_the_offline_hub_cache() {
    let home = hub_home(&fixture_files());
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_file(tmp.path(), "release_v2", "");
    let outputs = tmp.path().join("answers.jsonl");
    let mut lines = String::new();
    for (id, right, wrong, _) in answers() {
        for completion in [right, wrong] {
            lines.push_str(
                &serde_json::json!({"task_id": id, "completion": completion}).to_string(),
            );
            lines.push('\n');
        }
    }
    std::fs::write(&outputs, lines).unwrap();
    let reports = tmp.path().join("reports");
    let (code, out, err) = grade(home.path(), &spec, &outputs, &reports);
    assert_eq!(code, 0, "{out}\n{err}");
    let run = reports.join("lcb");
    assert_eq!(common::score(&run, "livecodebench", "pass@1"), 0.5);
    assert_eq!(common::score(&run, "livecodebench", "pass@2"), 1.0);
    let text = std::fs::read_to_string(run.join("samples.jsonl")).unwrap();
    let samples: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(samples.len(), 5);
    for (id, _, _, reason) in answers() {
        let s = samples.iter().find(|s| s["id"] == id).unwrap();
        let c = s["completions"].as_array().unwrap();
        assert_eq!(c[0]["verdict"], "passed", "{id}: {}", c[0]);
        assert_eq!(c[1]["verdict"], "failed", "{id}");
        assert_eq!(c[1]["reason"], reason, "{id}: {}", c[1]);
        // The failing test is named.
        assert!(
            c[1]["stderr_tail"].as_str().unwrap().contains("test 0:"),
            "{}",
            c[1]
        );
    }
    // The per-test timeout (1 s) ended the loop, not the program's whole allowance.
    let looping = samples.iter().find(|s| s["id"] == "fx002_b").unwrap();
    assert!(looping["completions"][1]["seconds"].as_f64().unwrap() < 3.0);
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    let origin = record["tasks"][0]["result"]["dataset"]["origin"]
        .as_str()
        .unwrap();
    assert!(
        origin.contains("livecodebench/code_generation_lite") && origin.contains("release_v2"),
        "{origin}"
    );
}

#[test]
fn bad_records_and_missing_files_are_refused_with_file_line_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let outputs = tmp.path().join("answers.jsonl");
    std::fs::write(
        &outputs,
        serde_json::json!({"task_id": "fx001_a", "completion": reply("print(3)")}).to_string(),
    )
    .unwrap();
    // Private tests that are neither JSON nor the packed form, on the second line.
    let mut files = fixture_files();
    let text = String::from_utf8(files[0].1.clone()).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut row: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    row["private_test_cases"] = "bm90IHpsaWI=".into(); // base64 of "not zlib"
    lines[1] = row.to_string();
    files[0].1 = (lines.join("\n") + "\n").into_bytes();
    let home = hub_home(&files);
    let spec = spec_file(tmp.path(), "release_v1", "");
    let (code, _, err) = grade(home.path(), &spec, &outputs, &tmp.path().join("r1"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("test.jsonl:2") && err.contains("private_test_cases") && err.contains("zlib"),
        "{err}"
    );

    // A release whose file the cache does not hold, offline.
    let home = hub_home(&fixture_files());
    let spec = spec_file(tmp.path(), "release_v3", "");
    let (code, _, err) = grade(home.path(), &spec, &outputs, &tmp.path().join("r2"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("test3.jsonl"), "{err}");

    // An answer to a problem the release does not have.
    let spec = spec_file(tmp.path(), "v2", "");
    let (code, _, err) = grade(home.path(), &spec, &outputs, &tmp.path().join("r3"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("answers.jsonl:1") && err.contains("fx001_a"),
        "{err}"
    );
}

#[test]
fn smollm2_answers_livecodebench_through_llama_server() {
    let server = common::LlamaServer::start(&common::smollm2_gguf(), &["-c", "4096", "-np", "2"]);
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_file(tmp.path(), "release_v2", "");
    let (code, out, err) = common::output(
        common::assay()
            .args(["run", "--prompt-style", "chat", "--max-new-tokens", "160"])
            .args(["--run-id", "served", "--bootstrap", "0"])
            .arg("--task")
            .arg(&spec)
            .args(["--model", &format!("openai:{}#smollm2", server.base_url())])
            .arg("--data-root")
            .arg(fixture().parent().unwrap())
            .arg("--reports")
            .arg(tmp.path()),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let run = tmp.path().join("served");
    let text = std::fs::read_to_string(run.join("samples.jsonl")).unwrap();
    let samples: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(samples.len(), 5);
    let mut passed = 0;
    for s in &samples {
        assert!(s["prompt"].as_str().unwrap().contains("### Question:"));
        let c = &s["completions"][0];
        // The code is what LiveCodeBench's extraction takes from the reply.
        let code =
            assay::eval::code::lcb_extract_code(c["output"].as_str().unwrap()).unwrap_or_default();
        assert_eq!(c["code"], code.as_str());
        assert!(["passed", "failed"].contains(&c["verdict"].as_str().unwrap()));
        passed += usize::from(c["verdict"] == "passed");
    }
    let pass_at_1 = common::score(&run, "livecodebench", "pass@1");
    assert_eq!(pass_at_1, passed as f64 / 5.0);
}
