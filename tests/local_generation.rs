//! The local candle generator on the real SmolLM2-135M-Instruct GGUF: greedy agreement
//! with llama-server serving the same file, generation tasks run locally, and clear errors
//! for unusable models and prompts.

mod common;

use std::path::{Path, PathBuf};

use common::LlamaServer;

/// The heavy tests take turns: the speed ratios mean little with both cores shared.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn tokenizer() -> PathBuf {
    common::assets().join("tokenizers/smollm2-135m-instruct/tokenizer.json")
}

fn model_arg(path: &Path) -> String {
    format!("dir:{}", path.display())
}

#[test]
fn greedy_tokens_agree_with_llama_server() {
    let _turn = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    // Measured 50 of 50: the native path computes llama.cpp's floats. A near-tie flipped by
    // one rounding difference is enough to change a greedy continuation of this model.
    bench_decode_agrees(&common::smollm2_gguf(), &tokenizer(), "smollm2", "Q4_1");
}

/// Gemma 3 on the native path: Q5_0, Q8_0, Q4_K (repacked by llama.cpp) and Q6_K weights,
/// sliding-window layers, Q/K norms, GeGLU and the scaled embedding.
#[test]
fn gemma3_k_quants_agree_with_llama_server() {
    let _turn = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let tokenizer = common::assets().join("tokenizers/gemma3/tokenizer.json");
    bench_decode_agrees(&common::gemma3_gguf(), &tokenizer, "gemma3", "Q4_K");
}

/// `assay bench-decode` against llama-server on the same file: the first 16 greedy tokens
/// of 50 MMLU-Pro prompts agree on at least 45, and both speed rows are printed.
fn bench_decode_agrees(gguf: &Path, tokenizer: &Path, alias: &str, weights: &str) {
    // An f32 KV cache without flash attention: llama.cpp's one configuration whose output
    // does not depend on its thread count (its default f16 flash attention agrees with
    // itself across 1 and 2 threads on 39 of 50 prompts), and the one the native GGUF path
    // reproduces.
    let server = LlamaServer::start(
        gguf,
        &[
            "-c", "4096", "-np", "1", "-t", "2", "-fa", "off", "-ctk", "f32", "-ctv", "f32", "-lv",
            "4",
        ],
    );
    // The native path reproduces one build of llama.cpp's (AVX2, no AVX-512): a reference
    // built for another instruction set gives other floats, so say that rather than
    // measuring a low agreement.
    let system_info = server
        .system_info()
        .expect("llama-server logs its system_info at -lv 4");
    if let Err(why) = assay::engine::local::arithmetic::check_reference(&system_info) {
        panic!("{why}");
    }
    let (code, out, err) = common::output(
        common::assay()
            .args(["bench-decode", "--model", &model_arg(gguf)])
            .arg("--tokenizer")
            .arg(tokenizer)
            .args([
                "--reference",
                &format!("openai:{}#{alias}", server.base_url()),
            ])
            .args(["--threads", "2", "--prompts", "50", "--tokens", "16"])
            .args(["--speed-prompts", "2", "--decode-tokens", "32"])
            .arg("--data-root")
            .arg(common::data_root()),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    println!("{out}");
    assert!(
        out.contains("native arithmetic: ggml-x86-avx2 ("),
        "bench-decode names the arithmetic it computed:\n{out}"
    );
    assert!(
        out.contains(weights),
        "bench-decode names the weight types ({weights}):\n{out}"
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("greedy agreement:"))
        .expect("an agreement line");
    let words: Vec<&str> = line.split_whitespace().collect();
    let (agree, of): (f64, f64) = (words[2].parse().unwrap(), words[4].parse().unwrap());
    assert_eq!(of, 50.0, "{line}");
    assert!(agree / of >= 0.9, "{line}");
    for name in ["prefill", "decode"] {
        let row = out
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row:\n{out}"));
        let ratio: f64 = row.split_whitespace().last().unwrap().parse().unwrap();
        assert!(ratio > 0.05 && ratio < 5.0, "{row}");
    }
}

#[test]
fn generation_tasks_run_locally() {
    let _turn = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let gguf = common::smollm2_gguf();
    let tmp = tempfile::tempdir().unwrap();
    for (task, limit, run_id) in [("gsm8k", "20", "gsm8k"), ("mmlu-pro", "30", "mmlu")] {
        let (code, out, err) = common::output(
            common::assay()
                .args(["run", "--task", task, "--limit", limit, "--run-id", run_id])
                .args(["--model", &model_arg(&gguf)])
                .arg("--tokenizer")
                .arg(tokenizer())
                .args(["--max-new-tokens", "32", "--threads", "2"])
                .arg("--data-root")
                .arg(common::data_root())
                .arg("--reports")
                .arg(tmp.path()),
        );
        assert_eq!(code, 0, "{out}\n{err}");
        let dir = tmp.path().join(run_id);
        let samples: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("samples.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(samples.len(), limit.parse::<usize>().unwrap());
        for s in &samples {
            assert!(!s["output"].as_str().unwrap().is_empty(), "{s}");
            assert!(
                s["prompt"].as_str().is_some() && s.get("gold").is_some(),
                "{s}"
            );
        }
        // Every generation timed, token by token, in perf.jsonl.
        let perf = std::fs::read_to_string(dir.join("perf.jsonl")).unwrap();
        let records: Vec<serde_json::Value> = perf
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), samples.len());
        for r in &records {
            let tokens = r["output_tokens"].as_u64().unwrap();
            assert!((1..=32).contains(&tokens), "{r}");
            assert_eq!(
                r["token_times"].as_array().unwrap().len() as u64,
                tokens,
                "{r}"
            );
            assert_eq!(r["tokens_from"], "local-tokenizer");
        }
        // The run record says which of llama.cpp's arithmetics the native path computed.
        let run: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
        assert_eq!(run["model"]["engine"], "native-ggml", "{}", run["model"]);
        let arithmetic = run["model"]["arithmetic"].as_str().unwrap_or_default();
        assert!(
            arithmetic == "ggml-x86-avx2 (avx2+fma kernels)"
                || arithmetic == "ggml-x86-avx2 (portable kernels)",
            "{}",
            run["model"]
        );
    }
}

/// A GGUF with only metadata, declaring `architecture`.
fn fake_gguf(dir: &Path, architecture: &str) -> PathBuf {
    use candle_core::quantized::gguf_file::{self, Value};
    let path = dir.join(format!("{architecture}.gguf"));
    let mut file = std::fs::File::create(&path).unwrap();
    let arch = Value::String(architecture.to_string());
    gguf_file::write(&mut file, &[("general.architecture", &arch)], &[]).unwrap();
    path
}

fn generate(model: &str, extra: &[&str]) -> (i32, String) {
    let (code, out, err) = common::output(
        common::assay()
            .args(["generate", "--model", model, "--max-new-tokens", "4"])
            .args(extra),
    );
    assert!(!err.contains("panicked"), "{err}");
    (code, format!("{out}{err}"))
}

#[test]
fn unusable_models_and_prompts_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer();
    let tok = tok.to_str().unwrap();

    let bert = fake_gguf(tmp.path(), "bert");
    let (code, err) = generate(&model_arg(&bert), &["--tokenizer", tok, "--prompt", "hi"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("architecture `bert` is not supported") && err.contains("bert.gguf"),
        "{err}"
    );

    // No tokenizer.json beside the weights and none given.
    let gguf = common::smollm2_gguf();
    let (code, err) = generate(&model_arg(&gguf), &["--prompt", "hi"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no tokenizer") && err.contains("--tokenizer"),
        "{err}"
    );

    // A chat template (tokenizer_config.json beside the weights) that fails to render.
    let folder = tmp.path().join("smollm2");
    std::fs::create_dir(&folder).unwrap();
    std::os::unix::fs::symlink(&gguf, folder.join("model.gguf")).unwrap();
    std::fs::copy(tokenizer(), folder.join("tokenizer.json")).unwrap();
    std::fs::write(
        folder.join("tokenizer_config.json"),
        r#"{"chat_template": "{{ raise_exception('only system turns here') }}"}"#,
    )
    .unwrap();
    let (code, err) = generate(&model_arg(&folder), &["--prompt", "hi"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("failed to render")
            && err.contains("only system turns here")
            && err.contains("tokenizer_config.json"),
        "{err}"
    );

    // A prompt longer than the context (8,192 tokens for SmolLM2).
    let long = "lorem ipsum ".repeat(6000);
    let (code, err) = generate(
        &model_arg(&gguf),
        &["--tokenizer", tok, "--completion", "--prompt", &long],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("context length") && err.contains("8192"),
        "{err}"
    );

    // A GGUF without a chat template (its metadata key renamed in a copy): the message
    // names generate's own flag, and with it the prompt goes through as plain text.
    let bare = tmp.path().join("bare");
    std::fs::create_dir(&bare).unwrap();
    let mut bytes = std::fs::read(&gguf).unwrap();
    let key = b"tokenizer.chat_template";
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("the GGUF has a chat template");
    bytes[at + key.len() - 1] = b'X';
    std::fs::write(bare.join("model.gguf"), &bytes).unwrap();
    drop(bytes);
    std::fs::copy(tokenizer(), bare.join("tokenizer.json")).unwrap();
    let (code, err) = generate(&model_arg(&bare), &["--prompt", "hi"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no chat template")
            && err.contains("--completion")
            && !err.contains("--prompt-style"),
        "{err}"
    );
    let (code, out) = generate(&model_arg(&bare), &["--completion", "--prompt", "2+2="]);
    assert_eq!(code, 0, "{out}");

    // The same folder with a working template answers.
    std::fs::remove_file(folder.join("tokenizer_config.json")).unwrap();
    let (code, out) = generate(&model_arg(&folder), &["--prompt", "What is 2+2?"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn multiple_choice_by_loglikelihood() {
    let _turn = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let gguf = common::smollm2_gguf();
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, err) = common::output(
        common::assay()
            .args([
                "run", "--task", "mmlu-pro", "--limit", "3", "--run-id", "ll",
            ])
            .args(["--scoring", "loglikelihood", "--threads", "2"])
            .args(["--model", &model_arg(&gguf)])
            .arg("--tokenizer")
            .arg(tokenizer())
            .arg("--data-root")
            .arg(common::data_root())
            .arg("--reports")
            .arg(tmp.path()),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let dir = tmp.path().join("ll");
    let samples: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("samples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(samples.len(), 3);
    let (mut acc, mut acc_norm) = (0.0, 0.0);
    for s in &samples {
        let lls: Vec<f64> = s["loglikelihoods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let lens: Vec<usize> = s["continuations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().len())
            .collect();
        assert_eq!(lls.len(), lens.len());
        assert!(lls.iter().all(|l| l.is_finite() && *l < 0.0), "{s}");
        let argmax = |f: &dyn Fn(usize) -> f64| {
            (0..lls.len()).fold(0, |best, k| if f(k) > f(best) { k } else { best })
        };
        let letter = |k: usize| ((b'A' + k as u8) as char).to_string();
        let pick = letter(argmax(&|k| lls[k]));
        let pick_norm = letter(argmax(&|k| lls[k] / lens[k] as f64));
        assert_eq!(s["extracted"]["acc"], pick.as_str(), "{s}");
        assert_eq!(s["extracted"]["acc_norm"], pick_norm.as_str(), "{s}");
        acc += f64::from(u8::from(s["gold"] == pick.as_str())) / 3.0;
        acc_norm += f64::from(u8::from(s["gold"] == pick_norm.as_str())) / 3.0;
    }
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    let scores = &run["tasks"][0]["result"]["scores"];
    assert!(
        (scores["acc"]["value"].as_f64().unwrap() - acc).abs() < 1e-12,
        "{scores}"
    );
    assert!(
        (scores["acc_norm"]["value"].as_f64().unwrap() - acc_norm).abs() < 1e-12,
        "{scores}"
    );
}
