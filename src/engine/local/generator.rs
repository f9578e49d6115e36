//! A chat model run locally with candle: GGUF files (llama-family incl. Mistral and
//! Mixtral, Qwen2, Qwen3, Gemma3 through candle-transformers' quantized models) and
//! safetensors folders (Llama, Mistral, Qwen2; Mixtral as GGUF only: candle's safetensors
//! Mixtral cannot clear its KV cache between prompts). Greedy or seeded sampling, stop
//! strings, `max_tokens`, the chat template from the model's own files, and a timing
//! record like the remote engine's (first token, every token).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models as m;
use tokenizers::Tokenizer;

use crate::engine::generate::{
    Generation, GenerationParams, GenerationRequest, Generator, GeneratorInfo, Prompt, TokenCounts,
};
use crate::engine::local::chat_template::ChatTemplate;
use crate::engine::openai::RequestLog;
use crate::engine::{RequestRecord, Timing};
use crate::error::{Error, Result};

/// The architectures a GGUF file may declare (`general.architecture`).
const GGUF_ARCHITECTURES: &[&str] = &["llama", "mistral", "qwen2", "qwen3", "gemma3"];

/// Tokens that end a turn in the chat formats these models use.
const END_OF_TURN: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<eos>",
];

enum Model {
    /// llama-family or Gemma 3 GGUF with legacy or K-quant weights on the CPU: llama.cpp's
    /// arithmetic.
    Native(super::gguf_llama::GgufLlama),
    Llama(m::quantized_llama::ModelWeights),
    Qwen2(m::quantized_qwen2::ModelWeights),
    Qwen3(m::quantized_qwen3::ModelWeights),
    Gemma3(m::quantized_gemma3::ModelWeights),
    Mistral(m::mistral::Model),
    Qwen2Full(m::qwen2::ModelForCausalLM),
    LlamaFull(m::llama::Llama, m::llama::Cache, m::llama::Config),
}

impl Model {
    /// Next-token logits (f32, one row) after `ids`, which start at position `pos`.
    fn forward(&mut self, ids: &Tensor, pos: usize) -> Result<Tensor> {
        let logits = match self {
            Model::Native(m) => {
                let logits = m.forward(&ids.flatten_all()?.to_vec1::<u32>()?, pos)?;
                let n = logits.len();
                return Ok(Tensor::from_vec(logits, n, &Device::Cpu)?);
            }
            Model::Llama(w) => w.forward(ids, pos)?,
            Model::Qwen2(w) => w.forward(ids, pos)?,
            Model::Qwen3(w) => w.forward(ids, pos)?,
            Model::Gemma3(w) => w.forward(ids, pos)?,
            Model::Mistral(w) => w.forward(ids, pos)?,
            Model::Qwen2Full(w) => w.forward(ids, pos)?,
            Model::LlamaFull(w, cache, _) => w.forward(ids, pos, cache)?,
        };
        Ok(logits.flatten_all()?.to_dtype(DType::F32)?)
    }

    /// Forgets the previous prompt.
    fn reset(&mut self, device: &Device) -> candle_core::Result<()> {
        match self {
            Model::Native(m) => m.reset(),
            Model::Llama(w) => w.clear_kv_cache(),
            Model::Qwen2(w) => w.clear_kv_cache(),
            Model::Qwen3(w) => w.clear_kv_cache(),
            // Gemma3's quantized model restarts its cache at position 0.
            Model::Gemma3(_) => {}
            Model::Mistral(w) => w.clear_kv_cache(),
            Model::Qwen2Full(w) => w.clear_kv_cache(),
            Model::LlamaFull(_, cache, config) => {
                *cache = m::llama::Cache::new(true, DType::F32, config, device)?
            }
        }
        Ok(())
    }
}

pub struct LocalGenerator {
    info: GeneratorInfo,
    model: Mutex<Model>,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    /// Prepended to raw-text prompts (the chat template writes its own).
    bos: Option<u32>,
    end_tokens: Vec<u32>,
    context: usize,
    device: Device,
    epoch: Instant,
    log: RequestLog,
}

/// What the model's files say about tokens and templates.
#[derive(Default)]
struct Vocabulary {
    template: Option<(String, String)>,
    bos: Option<u32>,
    add_bos: bool,
    eos: Option<u32>,
    context: Option<usize>,
}

impl LocalGenerator {
    /// Loads a `.gguf` file, a folder holding one, or a safetensors folder
    /// (`config.json` + weights). The tokenizer is `tokenizer.json` beside the weights
    /// unless `tokenizer` names one.
    pub fn load(path: &Path, tokenizer: Option<&Path>, device: Device) -> Result<Self> {
        let gguf = find_gguf(path)?;
        let location = gguf.as_deref().unwrap_or(path).display().to_string();
        let folder = if path.is_dir() {
            path.to_path_buf()
        } else {
            path.parent().map_or_else(PathBuf::new, Path::to_path_buf)
        };
        let tokenizer_path = tokenizer
            .map(Path::to_path_buf)
            .unwrap_or_else(|| folder.join("tokenizer.json"));
        if !tokenizer_path.is_file() {
            return Err(Error::model(
                &location,
                format!(
                    "no tokenizer: {} does not exist (put tokenizer.json beside the weights or pass --tokenizer)",
                    tokenizer_path.display()
                ),
            ));
        }
        let tokenizer = crate::engine::candle::load::read_tokenizer(&tokenizer_path)?;
        let (model, mut vocab) = match &gguf {
            Some(file) => load_gguf(file, &device)?,
            None => load_safetensors(&folder, &device)?,
        };
        // tokenizer_config.json beside the weights (else beside --tokenizer's file)
        // overrides what the GGUF says.
        let config_path = [folder.as_path(), tokenizer_path.parent().unwrap_or(&folder)]
            .map(|dir| dir.join("tokenizer_config.json"))
            .into_iter()
            .find(|p| p.is_file());
        if let Some(config_path) = config_path {
            read_tokenizer_config(&config_path, &tokenizer, &mut vocab)?;
        }
        let template = match &vocab.template {
            Some((source, origin)) => {
                let token = |id: Option<u32>| {
                    id.and_then(|i| tokenizer.id_to_token(i))
                        .unwrap_or_default()
                };
                Some(ChatTemplate::new(
                    source,
                    &token(vocab.bos),
                    &token(vocab.eos),
                    origin,
                )?)
            }
            None => None,
        };
        let mut end_tokens: Vec<u32> = END_OF_TURN
            .iter()
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        end_tokens.extend(vocab.eos);
        end_tokens.sort_unstable();
        end_tokens.dedup();
        Ok(LocalGenerator {
            info: GeneratorInfo {
                model: location,
                engine: match model {
                    // llama.cpp's arithmetic on our own kernels (see gguf_llama.rs).
                    Model::Native(_) => "native-ggml".into(),
                    _ => "candle".into(),
                },
                device: format!("{:?}", device.location()).to_lowercase(),
                arithmetic: matches!(model, Model::Native(_)).then(super::arithmetic::describe),
            },
            model: Mutex::new(model),
            tokenizer,
            template,
            bos: vocab.bos.filter(|_| vocab.add_bos),
            end_tokens,
            context: vocab.context.unwrap_or(4096),
            device,
            epoch: Instant::now(),
            log: RequestLog::default(),
        })
    }

    /// The weight encodings the native GGUF path reads (e.g. "Q4_K, Q5_0, Q6_K, Q8_0"), or
    /// None on candle.
    pub fn native_weights(&self) -> Option<String> {
        match &*self.model.lock().unwrap_or_else(|e| e.into_inner()) {
            Model::Native(m) => Some(m.weight_types()),
            _ => None,
        }
    }

    /// The token ids the model sees for `prompt`.
    pub fn encode(&self, prompt: &Prompt) -> Result<Vec<u32>> {
        let text = match prompt {
            Prompt::Chat(messages) => match &self.template {
                Some(t) => t.render(messages)?,
                None => {
                    return Err(Error::NoChatTemplate {
                        model: self.info.model.clone(),
                        hint: String::new(),
                    })
                }
            },
            Prompt::Text(text) => text.clone(),
        };
        let encoding = self
            .tokenizer
            .encode(text.as_str(), false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut ids = Vec::with_capacity(encoding.len() + 1);
        if matches!(prompt, Prompt::Text(_)) {
            ids.extend(self.bos);
        }
        ids.extend_from_slice(encoding.get_ids());
        Ok(ids)
    }

    /// Seconds since the generator started: the time base of its token times.
    pub fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    pub fn context_length(&self) -> usize {
        self.context
    }

    /// Generates from token ids; the answer's ids and when each was made (seconds since
    /// the generator started), and why it stopped.
    pub fn generate_ids(
        &self,
        prompt: &[u32],
        params: &GenerationParams,
        mut on_token: impl FnMut(&[u32]) -> bool,
    ) -> Result<(Vec<u32>, Vec<f64>, &'static str)> {
        if prompt.is_empty() {
            return Err(Error::Usage("empty prompt".into()));
        }
        if prompt.len() >= self.context {
            return Err(Error::Usage(format!(
                "the prompt has {} tokens; {} takes at most {} (its context length) including the answer",
                prompt.len(),
                self.info.model,
                self.context
            )));
        }
        let sampling = match (params.temperature, params.top_p) {
            (t, _) if t <= 0.0 => Sampling::ArgMax,
            (t, Some(p)) if p < 1.0 => Sampling::TopP { p, temperature: t },
            (t, _) => Sampling::All { temperature: t },
        };
        let mut sampler = LogitsProcessor::from_sampling(params.seed.unwrap_or(0), sampling);
        let mut model = self.model.lock().unwrap_or_else(|e| e.into_inner());
        model.reset(&self.device)?;
        let input = Tensor::new(prompt, &self.device)?.unsqueeze(0)?;
        let mut logits = model.forward(&input, 0)?;
        let mut pos = prompt.len();
        let (mut ids, mut times) = (Vec::new(), Vec::new());
        let banned = if params.ignore_eos {
            self.end_tokens.as_slice()
        } else {
            &[]
        };
        loop {
            if !banned.is_empty() {
                logits = ban(&logits, banned)?;
            }
            let next = sampler.sample(&logits)?;
            if !params.ignore_eos && self.end_tokens.contains(&next) {
                return Ok((ids, times, "stop"));
            }
            // One time per token of the answer (the end-of-turn token is not one).
            times.push(self.epoch.elapsed().as_secs_f64());
            ids.push(next);
            if on_token(&ids) {
                return Ok((ids, times, "stop"));
            }
            if ids.len() >= params.max_tokens as usize || pos + 1 >= self.context {
                return Ok((ids, times, "length"));
            }
            let input = Tensor::new(&[next], &self.device)?.unsqueeze(0)?;
            logits = model.forward(&input, pos)?;
            pos += 1;
        }
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }
}

impl Generator for LocalGenerator {
    fn info(&self) -> &GeneratorInfo {
        &self.info
    }

    fn generate(&self, request: &GenerationRequest) -> Result<Generation> {
        let scheduled = self.epoch.elapsed().as_secs_f64();
        let kind = match request.prompt {
            Prompt::Chat(_) => "chat",
            Prompt::Text(_) => "completions",
        };
        let outcome = self.generate_once(request, scheduled);
        let record = match &outcome {
            Ok(g) => RequestRecord {
                kind: kind.into(),
                inputs: 1,
                timing: g.timing.clone(),
                input_tokens: g.tokens.input,
                output_tokens: g.tokens.output,
                tokens_from: Some("local-tokenizer".into()),
                served_model: None,
                finish_reason: g.finish_reason.clone(),
                error: None,
            },
            Err(e) => {
                let now = self.epoch.elapsed().as_secs_f64();
                let timing = Timing {
                    scheduled,
                    sent: scheduled,
                    end: now,
                    attempts: 1,
                    ..Timing::default()
                };
                RequestRecord::failed(kind, 1, timing, e.to_string())
            }
        };
        self.log.push(record);
        outcome
    }

    fn request_log(&self) -> Vec<RequestRecord> {
        self.log.take()
    }

    /// As lm-eval: the pair is tokenized whole and the continuation is what follows the
    /// context's own tokens; each continuation costs one prefill (candle's causal models
    /// return the last position's logits only).
    fn loglikelihoods(&self, context: &str, continuations: &[String]) -> Result<Vec<f64>> {
        let context_ids = self.encode(&Prompt::Text(context.to_string()))?;
        let mut out = Vec::with_capacity(continuations.len());
        for continuation in continuations {
            let whole = self.encode(&Prompt::Text(format!("{context}{continuation}")))?;
            let shared = context_ids
                .iter()
                .zip(&whole)
                .take_while(|(a, b)| a == b)
                .count()
                .min(whole.len().saturating_sub(1));
            let (prefix, tail) = whole.split_at(shared.max(1));
            if whole.len() > self.context {
                return Err(Error::Usage(format!(
                    "context and continuation take {} tokens; {} takes at most {}",
                    whole.len(),
                    self.info.model,
                    self.context
                )));
            }
            let mut model = self.model.lock().unwrap_or_else(|e| e.into_inner());
            model.reset(&self.device)?;
            let input = Tensor::new(prefix, &self.device)?.unsqueeze(0)?;
            let mut logits = model.forward(&input, 0)?;
            let mut total = 0.0;
            for (j, &token) in tail.iter().enumerate() {
                let logp = candle_nn::ops::log_softmax(&logits, 0)?;
                total += f64::from(logp.get(token as usize)?.to_scalar::<f32>()?);
                if j + 1 < tail.len() {
                    let input = Tensor::new(&[token], &self.device)?.unsqueeze(0)?;
                    logits = model.forward(&input, prefix.len() + j)?;
                }
            }
            out.push(total);
        }
        Ok(out)
    }
}

impl LocalGenerator {
    fn generate_once(&self, request: &GenerationRequest, scheduled: f64) -> Result<Generation> {
        let prompt = self.encode(&request.prompt)?;
        let stops = &request.params.stop;
        // Stop strings are checked on the decoded text's tail as tokens arrive.
        let longest = stops.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut cut: Option<String> = None;
        let (ids, times, finish) = self.generate_ids(&prompt, &request.params, |ids| {
            if stops.is_empty() {
                return false;
            }
            let text = self.decode(ids).unwrap_or_default();
            let from = text.len().saturating_sub(longest + 16);
            let from = (0..=from)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            match stops
                .iter()
                .filter_map(|s| text[from..].find(s.as_str()).map(|i| from + i))
                .min()
            {
                Some(at) => {
                    cut = Some(text[..at].to_string());
                    true
                }
                None => false,
            }
        })?;
        let text = match cut {
            Some(text) => text,
            None => self.decode(&ids)?,
        };
        let end = self.epoch.elapsed().as_secs_f64();
        Ok(Generation {
            text,
            finish_reason: Some(finish.to_string()),
            tokens: TokenCounts {
                input: Some(prompt.len() as u64),
                output: Some(ids.len() as u64),
                source: Some("local-tokenizer".into()),
            },
            served_model: None,
            timing: Timing {
                scheduled,
                sent: scheduled,
                first_byte: times.first().copied(),
                first_token: times.first().copied(),
                token_times: times,
                end,
                attempts: 1,
                ..Timing::default()
            },
        })
    }
}

/// Sets the logits of `tokens` to -inf (generate a fixed length: no end of turn).
fn ban(logits: &Tensor, tokens: &[u32]) -> candle_core::Result<Tensor> {
    let mut values = logits.to_vec1::<f32>()?;
    for &t in tokens {
        if let Some(v) = values.get_mut(t as usize) {
            *v = f32::NEG_INFINITY;
        }
    }
    Tensor::new(values, logits.device())
}

/// The GGUF file `path` is or holds (one), or None for a safetensors folder.
fn find_gguf(path: &Path) -> Result<Option<PathBuf>> {
    if path.is_file() {
        return Ok(Some(path.to_path_buf()));
    }
    let entries = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("gguf"))
        })
        .collect();
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(Error::model(
            path.display().to_string(),
            format!(
                "{} GGUF files in the folder: name one (dir:{})",
                found.len(),
                found[0].display()
            ),
        )),
    }
}

fn load_gguf(path: &Path, device: &Device) -> Result<(Model, Vocabulary)> {
    let location = path.display().to_string();
    let content = super::gguf_header::read(path)?;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = &content.metadata;
    let text = |key: &str| meta.get(key).and_then(|v| v.to_string().ok()).cloned();
    let number = |key: &str| meta.get(key).and_then(|v| v.to_u32().ok());
    let arch = text("general.architecture").unwrap_or_default();
    if !GGUF_ARCHITECTURES.contains(&arch.as_str()) {
        return Err(Error::model(
            &location,
            format!(
                "GGUF architecture `{arch}` is not supported (supported: {})",
                GGUF_ARCHITECTURES.join(", ")
            ),
        ));
    }
    let vocab = Vocabulary {
        template: text("tokenizer.chat_template")
            .map(|t| (t, format!("{location} (tokenizer.chat_template)"))),
        bos: number("tokenizer.ggml.bos_token_id"),
        add_bos: meta
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false),
        eos: number("tokenizer.ggml.eos_token_id"),
        context: number(&format!("{arch}.context_length")).map(|n| n as usize),
    };
    super::gguf_header::check_sizes(&content, &arch)
        .map_err(|why| Error::model(&location, format!("implausible GGUF metadata: {why}")))?;
    let failed = |e: candle_core::Error| Error::model(&location, format!("cannot load: {e}"));
    let native = match arch.as_str() {
        "llama" | "mistral" | "gemma3"
            if device.is_cpu() && std::env::var_os("ASSAY_GGUF_CANDLE").is_none() =>
        {
            super::gguf_llama::GgufLlama::load(&content, &mut file, &arch, &location)?
                .map_err(|why| tracing::info!(%why, "GGUF runs on candle's quantized model"))
                .ok()
        }
        _ => None,
    };
    if let Some(model) = native {
        return Ok((Model::Native(model), vocab));
    }
    // candle's model builders are third-party code reading header values we checked
    // only for plausibility: a panic in them becomes an error naming the file.
    let model = crate::engine::contain::contain(|| candle_model(&arch, content, &mut file, device))
        .map_err(|panic| Error::model(&location, format!("cannot load: {panic}")))?
        .map_err(failed)?;
    Ok((model, vocab))
}

/// candle's quantized model for a GGUF of a supported architecture.
fn candle_model(
    arch: &str,
    content: candle_core::quantized::gguf_file::Content,
    file: &mut std::fs::File,
    device: &Device,
) -> candle_core::Result<Model> {
    Ok(match arch {
        "llama" | "mistral" => Model::Llama(m::quantized_llama::ModelWeights::from_gguf(
            content, file, device,
        )?),
        "qwen2" => Model::Qwen2(m::quantized_qwen2::ModelWeights::from_gguf(
            content, file, device,
        )?),
        "qwen3" => Model::Qwen3(m::quantized_qwen3::ModelWeights::from_gguf(
            content, file, device,
        )?),
        _ => Model::Gemma3(m::quantized_gemma3::ModelWeights::from_gguf(
            content, file, device,
        )?),
    })
}

fn load_safetensors(folder: &Path, device: &Device) -> Result<(Model, Vocabulary)> {
    let location = folder.display().to_string();
    let config_path = folder.join("config.json");
    let raw = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
    let config: serde_json::Value = serde_json::from_str(&raw)
        .map_err(|e| Error::input(&config_path, format!("not JSON: {e}")))?;
    let kind = config["model_type"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let weights = safetensors_files(folder)?;
    let dtype = if device.is_cpu() {
        DType::F32
    } else {
        DType::BF16
    };
    let vb = crate::engine::candle::load::mmap_safetensors(&weights, dtype, device)?;
    let parse = |what: &'static str| {
        let path = config_path.clone();
        move |e: serde_json::Error| Error::input(&path, format!("not a {what} config: {e}"))
    };
    let model = match kind.as_str() {
        "mistral" => Model::Mistral(m::mistral::Model::new(
            &serde_json::from_str(&raw).map_err(parse("Mistral"))?,
            vb,
        )?),
        "qwen2" => Model::Qwen2Full(m::qwen2::ModelForCausalLM::new(
            &serde_json::from_str(&raw).map_err(parse("Qwen2"))?,
            vb,
        )?),
        "llama" => {
            let c: m::llama::LlamaConfig = serde_json::from_str(&raw).map_err(parse("Llama"))?;
            let c = c.into_config(false);
            let cache = m::llama::Cache::new(true, dtype, &c, device)?;
            Model::LlamaFull(m::llama::Llama::load(vb, &c)?, cache, c)
        }
        other => {
            return Err(Error::model(
                &location,
                format!("model_type `{other}` cannot generate locally (supported: llama, mistral, qwen2; Mixtral and others as GGUF)"),
            ))
        }
    };
    let vocab = Vocabulary {
        context: config["max_position_embeddings"]
            .as_u64()
            .map(|n| n as usize),
        ..Vocabulary::default()
    };
    Ok((model, vocab))
}

fn safetensors_files(folder: &Path) -> Result<Vec<PathBuf>> {
    let single = folder.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = folder.join("model.safetensors.index.json");
    let raw = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
    let parsed: serde_json::Value =
        serde_json::from_str(&raw).map_err(|e| Error::input(&index, format!("not JSON: {e}")))?;
    let mut files: Vec<PathBuf> = parsed["weight_map"]
        .as_object()
        .ok_or_else(|| Error::input(&index, "no `weight_map`"))?
        .values()
        .filter_map(|v| v.as_str().map(|f| folder.join(f)))
        .collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// `chat_template`, `bos_token`, `eos_token`, `add_bos_token` from tokenizer_config.json.
fn read_tokenizer_config(path: &Path, tokenizer: &Tokenizer, vocab: &mut Vocabulary) -> Result<()> {
    let raw = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let config: serde_json::Value =
        serde_json::from_str(&raw).map_err(|e| Error::input(path, format!("not JSON: {e}")))?;
    // A token is a string or {"content": ...}.
    let token = |key: &str| {
        let v = &config[key];
        v.as_str()
            .or_else(|| v["content"].as_str())
            .and_then(|t| tokenizer.token_to_id(t))
    };
    if let Some(source) = config["chat_template"].as_str() {
        vocab.template = Some((source.to_string(), path.display().to_string()));
    } else if let Some(list) = config["chat_template"].as_array() {
        // A list of named templates: the `default` one.
        let default = list
            .iter()
            .find(|t| t["name"] == "default")
            .and_then(|t| t["template"].as_str());
        if let Some(source) = default {
            vocab.template = Some((source.to_string(), path.display().to_string()));
        }
    }
    if let Some(id) = token("bos_token") {
        vocab.bos = Some(id);
    }
    if let Some(id) = token("eos_token") {
        vocab.eos = Some(id);
    }
    if let Some(add) = config["add_bos_token"].as_bool() {
        vocab.add_bos = add;
    }
    Ok(())
}
