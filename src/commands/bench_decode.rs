//! `assay bench-decode`: a local GGUF model next to llama.cpp's llama-server serving the
//! same file, on the same MMLU-Pro prompts (rendered with the model's chat template, sent
//! to both as the same token ids):
//! (a) greedy agreement — the share of prompts whose first N generated tokens are
//!     identical (end-of-turn tokens banned on both sides, as llama-server's `ignore_eos`);
//! (b) prefill and decode tokens/s, local against the server's own `timings`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::cli::BenchDecodeArgs;
use crate::data::generation::GenerationData;
use crate::data::DataSource;
use crate::engine::generate::{ChatMessage, GenerationParams, Generator, Prompt};
use crate::engine::local::LocalGenerator;
use crate::engine::openai::Endpoint;
use crate::engine::ModelRef;
use crate::error::{Error, Result};
use crate::eval::generation::{mmlu_pro_prompt, stratified_sample, GenerationTask};
use crate::spec;

/// What one side produced for one prompt.
struct Side {
    ids: Vec<u32>,
    prefill_tokens_per_s: f64,
    decode_tokens_per_s: f64,
}

pub fn run(args: &BenchDecodeArgs) -> Result<()> {
    super::configure_generation_threads(Some(args.threads), "cpu");
    let path: PathBuf = match &args.model {
        ModelRef::Dir { path } => path.clone(),
        ModelRef::Hf { .. } | ModelRef::OpenAi(_) => {
            return Err(Error::Usage(
                "bench-decode takes a local GGUF: --model dir:PATH".into(),
            ))
        }
    };
    let generator =
        LocalGenerator::load(&path, args.tokenizer.as_deref(), candle_core::Device::Cpu)?;
    let endpoint = Endpoint::parse(&args.reference)?;
    // llama-server's native /completion sits beside its OpenAI routes.
    let root = endpoint
        .base_url
        .trim_end_matches('/')
        .trim_end_matches("/v1");
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .map_err(|e| Error::External(format!("cannot build the HTTP client: {e}")))?;

    let prompts = mmlu_pro_prompts(args)?;
    println!(
        "{} MMLU-Pro prompts (chat template of {}), {} thread(s)",
        prompts.len(),
        path.display(),
        args.threads
    );
    match &generator.info().arithmetic {
        Some(arithmetic) => println!(
            "native arithmetic: {arithmetic}; token-for-token agreement needs a reference \
             llama.cpp built for the same instruction set (AVX2, FMA, F16C; no AVX-512)"
        ),
        None => println!(
            "engine: {} (not llama.cpp's arithmetic: expect near-ties to flip)",
            generator.info().engine
        ),
    }
    if let Some(weights) = generator.native_weights() {
        println!("weights: {weights}");
    }
    let mut agree = 0;
    let mut compared = 0;
    let mut local_speed = Vec::new();
    let mut server_speed = Vec::new();
    for (i, prompt) in prompts.iter().enumerate() {
        let ids = generator.encode(&Prompt::Chat(vec![ChatMessage::user(prompt.clone())]))?;
        let timed = i < args.speed_prompts;
        let n = if timed {
            args.decode_tokens.max(args.tokens)
        } else {
            args.tokens
        };
        let ours = local(&generator, &ids, n)?;
        let theirs = reference(&http, root, &ids, n)?;
        compared += 1;
        let k = args.tokens as usize;
        if ours.ids.len() >= k && theirs.ids.len() >= k && ours.ids[..k] == theirs.ids[..k] {
            agree += 1;
        } else {
            tracing::info!(prompt = i, ours = ?&ours.ids[..k.min(ours.ids.len())], theirs = ?&theirs.ids[..k.min(theirs.ids.len())], "first tokens differ");
        }
        if timed {
            local_speed.push((ours.prefill_tokens_per_s, ours.decode_tokens_per_s));
            server_speed.push((theirs.prefill_tokens_per_s, theirs.decode_tokens_per_s));
        }
    }
    println!(
        "greedy agreement: {agree} of {compared} prompts have identical first {} tokens ({:.2})",
        args.tokens,
        agree as f64 / compared.max(1) as f64
    );
    let median = |v: &[(f64, f64)], pick: fn(&(f64, f64)) -> f64| {
        crate::metrics::quantile::percentile(&v.iter().map(pick).collect::<Vec<_>>(), 50.0)
    };
    if !local_speed.is_empty() {
        println!(
            "speed over {} prompts ({} generated tokens each), median tokens/s:",
            local_speed.len(),
            args.decode_tokens
        );
        println!(
            "{:>8} {:>10} {:>14} {:>7}",
            "", "assay", "llama-server", "ratio"
        );
        for (name, pick) in [
            ("prefill", (|s: &(f64, f64)| s.0) as fn(&(f64, f64)) -> f64),
            ("decode", |s: &(f64, f64)| s.1),
        ] {
            let (a, b) = (median(&local_speed, pick), median(&server_speed, pick));
            println!("{name:>8} {a:>10.1} {b:>14.1} {:>7.2}", a / b);
        }
    }
    Ok(())
}

/// `--prompts` MMLU-Pro questions, stratified by category with the run's seed.
fn mmlu_pro_prompts(args: &BenchDecodeArgs) -> Result<Vec<String>> {
    let spec = spec::find(&args.tasks_dir, "mmlu-pro")?;
    let source = DataSource::resolve(&spec.dataset, &args.data_root)?;
    let task = GenerationTask::load(&spec, &source)?;
    let GenerationData::MmluPro { test, .. } = &task.data().data else {
        return Err(Error::Usage(format!(
            "{}: bench-decode prompts with the mmlu-pro task, which must be an [mmlu_pro] spec",
            spec.name
        )));
    };
    let categories: Vec<&str> = test.iter().map(|t| t.category.as_str()).collect();
    Ok(stratified_sample(&categories, args.prompts, args.seed)
        .into_iter()
        .map(|i| mmlu_pro_prompt(&test[i], &[]))
        .collect())
}

fn local(generator: &LocalGenerator, ids: &[u32], n: u32) -> Result<Side> {
    let params = GenerationParams {
        max_tokens: n,
        ignore_eos: true,
        ..GenerationParams::default()
    };
    let start = generator.now();
    let (out, times, _) = generator.generate_ids(ids, &params, |_| false)?;
    let first = times.first().copied().unwrap_or(start) - start;
    let last = times.last().copied().unwrap_or(start) - start;
    Ok(Side {
        prefill_tokens_per_s: ids.len() as f64 / first.max(1e-9),
        decode_tokens_per_s: (out.len().saturating_sub(1)) as f64 / (last - first).max(1e-9),
        ids: out,
    })
}

/// The same token ids through llama-server's `/completion`: greedy, fixed length, no
/// prompt cache (its prefill timing must be a real prefill).
fn reference(http: &reqwest::blocking::Client, root: &str, ids: &[u32], n: u32) -> Result<Side> {
    let url = format!("{root}/completion");
    let body = json!({
        "prompt": ids,
        "n_predict": n,
        "temperature": 0.0,
        "top_k": 1,
        "ignore_eos": true,
        "cache_prompt": false,
        "return_tokens": true,
        "samplers": ["top_k"],
    });
    let reply: serde_json::Value = http
        .post(&url)
        .json(&body)
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .map_err(|e| {
            Error::Remote(format!(
                "POST {}: {e}",
                crate::engine::openai::redact_url(&url)
            ))
        })?;
    let tokens: Vec<u32> = reply["tokens"]
        .as_array()
        .ok_or_else(|| Error::Remote(format!("{url}: no `tokens` in the answer (a llama-server with return_tokens support is needed)")))?
        .iter()
        .filter_map(|t| t.as_u64().map(|t| t as u32))
        .collect();
    let timing = |key: &str| reply["timings"][key].as_f64().unwrap_or(f64::NAN);
    Ok(Side {
        ids: tokens,
        prefill_tokens_per_s: timing("prompt_per_second"),
        decode_tokens_per_s: timing("predicted_per_second"),
    })
}
