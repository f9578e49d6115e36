//! The deployment recipes under deploy/ say what assay reads: the Kubernetes Indexed Job
//! shards with `--shard auto` and an ASSAY_SHARD_COUNT equal to its completions, the merge
//! job merges exactly the run the shards write, both on the same ReadWriteMany claim, and
//! every command line is one the real CLI accepts. The Slurm example runs an array with
//! `--shard auto` and queues the merge behind it.

use std::path::{Path, PathBuf};

use clap::Parser;
use serde_yaml_ng::Value;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(deploy(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn text(path: &str) -> String {
    std::fs::read_to_string(deploy(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `v[a][b]...` as a string, naming the path when it is missing.
fn str_at<'a>(v: &'a Value, keys: &[&str]) -> &'a str {
    let mut cur = v;
    for k in keys {
        cur = &cur[*k];
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("{} is not a string: {cur:?}", keys.join(".")))
}

/// The pod spec's only container.
fn container(job: &Value) -> &Value {
    let containers = job["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("spec.template.spec.containers");
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

fn command(job: &Value) -> Vec<String> {
    container(job)["command"]
        .as_sequence()
        .expect("container command")
        .iter()
        .map(|a| a.as_str().expect("command items are strings").to_string())
        .collect()
}

/// The value after `flag` in an argument list.
fn flag<'a>(args: &'a [String], name: &str) -> &'a str {
    let at = args
        .iter()
        .position(|a| a == name)
        .unwrap_or_else(|| panic!("{name} in {args:?}"));
    args.get(at + 1)
        .unwrap_or_else(|| panic!("a value after {name} in {args:?}"))
}

fn env_value<'a>(job: &'a Value, name: &str) -> &'a str {
    container(job)["env"]
        .as_sequence()
        .expect("container env")
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("env {name}"))["value"]
        .as_str()
        .unwrap_or_else(|| panic!("env {name} has a literal value"))
}

fn env_defined(job: &Value, name: &str) {
    let env = container(job)["env"].as_sequence().expect("container env");
    assert!(
        env.iter().any(|e| e["name"].as_str() == Some(name)),
        "$({name}) in the command needs env {name}"
    );
}

/// (claim name, mount path) of the volume mounted by the container.
fn shared_mount(job: &Value) -> (String, String) {
    let pod = &job["spec"]["template"]["spec"];
    let volumes = pod["volumes"].as_sequence().expect("volumes");
    let mounts = container(job)["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts");
    assert_eq!(mounts.len(), 1, "one volume mount");
    let name = str_at(&mounts[0], &["name"]);
    let volume = volumes
        .iter()
        .find(|v| v["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("volume {name}"));
    (
        str_at(volume, &["persistentVolumeClaim", "claimName"]).to_string(),
        str_at(&mounts[0], &["mountPath"]).to_string(),
    )
}

fn assert_job(job: &Value, what: &str) {
    assert_eq!(str_at(job, &["apiVersion"]), "batch/v1", "{what}");
    assert_eq!(str_at(job, &["kind"]), "Job", "{what}");
    // A Job's pods must not restart in place: a failed shard is retried as a new pod.
    assert_eq!(
        str_at(job, &["spec", "template", "spec", "restartPolicy"]),
        "Never",
        "{what}"
    );
    assert!(
        !str_at(container(job), &["image"]).is_empty(),
        "{what}: image"
    );
}

/// The real CLI accepts the command line (every flag exists, every value parses).
fn assert_cli_accepts(args: &[String], what: &str) {
    if let Err(e) = assay::cli::Cli::try_parse_from(args) {
        panic!("{what}: assay refuses {args:?}:\n{e}");
    }
}

#[test]
fn indexed_job_shards_and_merge_job_merges_the_same_run_on_the_same_claim() {
    let shards = yaml("k8s/assay-indexed-job.yaml");
    let merge = yaml("k8s/assay-merge-job.yaml");
    let pvc = yaml("k8s/pvc.yaml");
    assert_job(&shards, "indexed job");
    assert_job(&merge, "merge job");

    // Indexed: each pod gets JOB_COMPLETION_INDEX; the count assay needs is the env var.
    let spec = &shards["spec"];
    assert_eq!(str_at(spec, &["completionMode"]), "Indexed");
    let completions = spec["completions"].as_u64().expect("spec.completions");
    let parallelism = spec["parallelism"].as_u64().expect("spec.parallelism");
    assert!(completions >= 2, "{completions} shards");
    assert!(
        (1..=completions).contains(&parallelism),
        "parallelism {parallelism} of {completions}"
    );
    let count: u64 = env_value(&shards, "ASSAY_SHARD_COUNT")
        .parse()
        .expect("ASSAY_SHARD_COUNT is a number");
    assert_eq!(
        count, completions,
        "ASSAY_SHARD_COUNT must equal spec.completions"
    );

    let run = command(&shards);
    assert_eq!(&run[..2], ["assay", "run"], "{run:?}");
    assert!(
        run.windows(2).any(|w| w[0] == "--shard" && w[1] == "auto"),
        "--shard auto in {run:?}"
    );
    let reports = flag(&run, "--reports");
    let run_id = flag(&run, "--run-id");
    assert_cli_accepts(&run, "indexed job");
    // Kubernetes expands $(NAME) in a command only for variables of the container's env.
    for arg in &run {
        let mut rest = arg.as_str();
        while let Some(at) = rest.find("$(") {
            let name = &rest[at + 2..at + rest[at..].find(')').expect("closing )")];
            env_defined(&shards, name);
            rest = &rest[at + 2 + name.len()..];
        }
    }
    assert!(
        flag(&run, "--cache-dir").contains("$(COMPLETION_INDEX)"),
        "one cache per shard"
    );

    // The merge job reads <reports>/<run-id>, the folder the shards write into.
    let merged = command(&merge);
    assert_eq!(&merged[..2], ["assay", "merge"], "{merged:?}");
    assert_eq!(
        Path::new(&merged[2]),
        Path::new(reports).join(run_id),
        "merge input vs the shards' --reports/--run-id"
    );
    let out = flag(&merged, "--out");
    assert_ne!(Path::new(out), Path::new(reports).join(run_id));
    assert_cli_accepts(&merged, "merge job");

    // Same claim, same mount path, and every path the commands use is on it.
    let (claim, mount) = shared_mount(&shards);
    assert_eq!(shared_mount(&merge), (claim.clone(), mount.clone()));
    for path in [reports, out, &merged[2]] {
        assert!(
            Path::new(path).starts_with(&mount),
            "{path} is on the shared volume {mount}"
        );
    }
    assert_eq!(str_at(&pvc, &["kind"]), "PersistentVolumeClaim");
    assert_eq!(str_at(&pvc, &["metadata", "name"]), claim);
    let modes = pvc["spec"]["accessModes"]
        .as_sequence()
        .expect("accessModes");
    assert!(
        modes.iter().any(|m| m.as_str() == Some("ReadWriteMany")),
        "pods on several nodes mount the claim at once: {modes:?}"
    );
}

#[test]
fn slurm_example_runs_an_array_of_auto_shards_and_a_dependent_merge() {
    let shards = text("slurm/assay-shards.sbatch");
    let merge = text("slurm/assay-merge.sbatch");
    let submit = text("slurm/submit.sh");
    assert!(
        shards.lines().any(|l| l.starts_with("#SBATCH --array=")),
        "an #SBATCH --array line"
    );
    assert!(shards.contains("--shard auto"));
    assert!(shards.contains("--run-id \"$run_id\"") && shards.contains("--reports \"$reports\""));
    assert!(merge.contains("merge \"$reports/$RUN_ID\" --out"));
    assert!(submit.contains("--dependency=\"afterok:$array\""));
    // The shards and the merge agree on where runs go by default.
    let default = "reports=${REPORTS:-$HOME/assay/runs}";
    assert!(shards.contains(default) && merge.contains(default));
    for script in [
        "slurm/assay-shards.sbatch",
        "slurm/assay-merge.sbatch",
        "slurm/submit.sh",
    ] {
        let status = std::process::Command::new("bash")
            .arg("-n")
            .arg(deploy(script))
            .status()
            .expect("bash runs");
        assert!(status.success(), "{script} is valid bash");
    }
}
