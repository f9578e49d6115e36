//! Finding a model's files (a local folder or the hub) and reading its configs.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

use crate::data::hub::HubRepo;
use crate::engine::ModelRef;
use crate::error::{Error, Result};

/// The files of a local or hub model that the candle engines read.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// Where the files came from, for error messages and run records.
    pub location: String,
    pub config: PathBuf,
    pub tokenizer: PathBuf,
    pub weights: Vec<PathBuf>,
    /// sentence-transformers configs, when the model has them.
    pub modules: Option<PathBuf>,
    pub sentence_bert_config: Option<PathBuf>,
    /// `<dir>/<pooling module path>/config.json`, found through `modules.json`.
    pub pooling_config: Option<PathBuf>,
    /// sentence-transformers Dense modules after the pooling, in order: (config, weights).
    pub dense_modules: Vec<(PathBuf, PathBuf)>,
    pub tokenizer_config: Option<PathBuf>,
    /// How images are prepared for a vision model (`preprocessor_config.json`).
    pub preprocessor_config: Option<PathBuf>,
}

impl ModelFiles {
    pub fn resolve(model: &ModelRef) -> Result<ModelFiles> {
        match model {
            ModelRef::Dir { path } => Self::from_dir(path),
            ModelRef::Hf { repo, revision } => {
                Self::from_hub(&HubRepo::model(repo, revision.as_deref()))
            }
            ModelRef::OpenAi(_) => Err(Error::Usage(format!(
                "model `{model}` is an endpoint: local weights are dir:PATH or hf:ORG/NAME"
            ))),
        }
    }

    fn from_dir(dir: &Path) -> Result<ModelFiles> {
        let location = dir.display().to_string();
        if !dir.is_dir() {
            return Err(Error::model(&location, "not a directory"));
        }
        let mut weights: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        weights.sort();
        if weights.is_empty() {
            return Err(Error::model(
                &location,
                "missing weights: no *.safetensors file",
            ));
        }
        let required = |name: &str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(Error::model(&location, format!("missing {name}")))
            }
        };
        let optional = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
        Self::assemble(location.clone(), weights, required, optional)
    }

    fn from_hub(repo: &HubRepo) -> Result<ModelFiles> {
        let location = format!("hf:{}@{}", repo.id, repo.revision);
        let weights = match repo.get("model.safetensors") {
            Ok(path) => vec![path],
            Err(single) => sharded_weights(repo).map_err(|_| single)?,
        };
        Self::assemble(
            location,
            weights,
            |name| repo.get(name),
            |name| repo.get(name).ok(),
        )
    }

    /// The config files, wherever `required` / `optional` find them.
    fn assemble(
        location: String,
        weights: Vec<PathBuf>,
        required: impl Fn(&str) -> Result<PathBuf>,
        optional: impl Fn(&str) -> Option<PathBuf>,
    ) -> Result<ModelFiles> {
        let modules = optional("modules.json");
        let pooling_config = match &modules {
            Some(path) => {
                pooling_module_dir(path)?.and_then(|sub| optional(&format!("{sub}/config.json")))
            }
            None => None,
        };
        let mut dense_modules = Vec::new();
        if let Some(path) = &modules {
            for sub in module_dirs(path, "Dense")? {
                dense_modules.push((
                    required(&format!("{sub}/config.json"))?,
                    required(&format!("{sub}/model.safetensors"))?,
                ));
            }
        }
        Ok(ModelFiles {
            config: required("config.json")?,
            tokenizer: required("tokenizer.json")?,
            weights,
            modules,
            sentence_bert_config: optional("sentence_bert_config.json"),
            pooling_config,
            dense_modules,
            tokenizer_config: optional("tokenizer_config.json"),
            preprocessor_config: optional("preprocessor_config.json"),
            location,
        })
    }

    /// sha256 over the weight files, in name order.
    pub fn weights_sha256(&self) -> Result<String> {
        let mut outer = Sha256::new();
        for path in &self.weights {
            let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            let mut inner = Sha256::new();
            std::io::copy(&mut file, &mut inner).map_err(|e| Error::io(path, e))?;
            outer.update(inner.finalize());
        }
        Ok(hex::encode(outer.finalize()))
    }

    /// sha256 over the Dense modules' weights (empty when there are none).
    pub fn dense_sha256(&self) -> Result<String> {
        let mut outer = Sha256::new();
        for (_, path) in &self.dense_modules {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            outer.update(Sha256::digest(&bytes));
        }
        Ok(hex::encode(outer.finalize()))
    }

    /// `max_seq_length` of `sentence_bert_config.json`, when the model has one.
    pub fn max_seq_length(&self) -> Result<Option<usize>> {
        #[derive(serde::Deserialize)]
        struct SentenceBertConfig {
            max_seq_length: Option<usize>,
        }
        match &self.sentence_bert_config {
            Some(path) => Ok(self.read_json::<SentenceBertConfig>(path)?.max_seq_length),
            None => Ok(None),
        }
    }

    /// The tokenizer beside the weights.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        read_tokenizer(&self.tokenizer)
    }

    /// The weights, memory-mapped, as `dtype` on `device`.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
        mmap_safetensors(&self.weights, dtype, device)
    }

    /// Parses a JSON config file, naming it on failure.
    pub fn read_json<T: serde::de::DeserializeOwned>(&self, path: &Path) -> Result<T> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::model(&self.location, format!("{}: {e}", path.display())))
    }
}

/// A `tokenizer.json` file.
pub fn read_tokenizer(path: &Path) -> Result<Tokenizer> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_tokenizer(path, &bytes)
}

/// A `tokenizer.json`'s bytes (`path` names it in errors). The tokenizers crate is
/// third-party code that panics on some malformed files, while reading them or on first
/// use (a template naming a special token it does not define): the file is read and
/// tried on a probe text with panics contained, so both become errors naming it.
pub fn parse_tokenizer(path: &Path, bytes: &[u8]) -> Result<Tokenizer> {
    let bad = |e: String| Error::input(path, format!("not a readable tokenizer.json: {e}"));
    let tokenizer = crate::engine::contain::contain(|| Tokenizer::from_bytes(bytes))
        .map_err(bad)?
        .map_err(|e| bad(e.to_string()))?;
    crate::engine::contain::contain(|| probe(&tokenizer))
        .map_err(|panic| bad(format!("fails on a probe text: {panic}")))?;
    Ok(tokenizer)
}

/// Encodes and decodes a text and a pair, with and without special tokens; errors (an
/// unknown word without an unknown token, say) are fine, panics are not.
fn probe(tokenizer: &Tokenizer) {
    for special in [true, false] {
        if let Ok(e) = tokenizer.encode("Probe text, 12 ab.", special) {
            let _ = tokenizer.decode(e.get_ids(), special);
        }
        let _ = tokenizer.encode(("a probe", "pair"), special);
    }
}

/// Safetensors files memory-mapped as `dtype` on `device`, each header checked first
/// (see `safetensors_header`); errors name the file.
pub fn mmap_safetensors(
    paths: &[PathBuf],
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>> {
    for path in paths {
        super::safetensors_header::check_file(path)?;
    }
    // SAFETY: the weight files are memory-mapped read-only; we never write to them.
    unsafe { VarBuilder::from_mmaped_safetensors(paths, dtype, device) }.map_err(|e| {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        Error::model(names.join(", "), e.to_string())
    })
}

/// `model.safetensors.index.json` lists the shards of a large model.
fn sharded_weights(repo: &HubRepo) -> Result<Vec<PathBuf>> {
    let index = repo.get("model.safetensors.index.json")?;
    let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| repo.error(format!("model.safetensors.index.json: {e}")))?;
    let mut shards: Vec<String> = json["weight_map"]
        .as_object()
        .ok_or_else(|| repo.error("model.safetensors.index.json has no weight_map".into()))?
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    shards.sort();
    shards.dedup();
    shards.iter().map(|name| repo.get(name)).collect()
}

/// The module list of a sentence-transformers `modules.json`.
fn read_modules(modules: &Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(modules).map_err(|e| Error::io(modules, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::input(modules, format!("invalid modules.json: {e}")))
}

/// Whether a module's type ends in `.{kind}` (e.g. `sentence_transformers.models.Pooling`).
fn is_module(module: &serde_json::Value, kind: &str) -> bool {
    module["type"]
        .as_str()
        .is_some_and(|t| t.rsplit('.').next() == Some(kind))
}

/// The folder of the sentence-transformers Pooling module named in `modules.json`.
fn pooling_module_dir(modules: &Path) -> Result<Option<String>> {
    Ok(read_modules(modules)?
        .iter()
        .find(|m| is_module(m, "Pooling"))
        .and_then(|m| m["path"].as_str().map(str::to_string)))
}

/// The folders of every module of one kind named in `modules.json`, in order.
fn module_dirs(modules: &Path, kind: &str) -> Result<Vec<String>> {
    Ok(read_modules(modules)?
        .iter()
        .filter(|m| is_module(m, kind))
        .filter_map(|m| m["path"].as_str().map(str::to_string))
        .collect())
}

/// Whether `modules.json` lists a Normalize module.
pub fn has_normalize_module(modules: &Path) -> Result<bool> {
    Ok(read_modules(modules)?
        .iter()
        .any(|m| is_module(m, "Normalize")))
}

/// `cpu`, `cuda`, `cuda:N` or `metal`.
pub fn parse_device(name: &str) -> Result<Device> {
    let unsupported = |what: &str| Error::Usage(format!("device `{name}`: {what}"));
    match name {
        "cpu" => Ok(Device::Cpu),
        "metal" => Device::new_metal(0).map_err(|e| unsupported(&e.to_string())),
        _ => {
            let ordinal = match name.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| unsupported("expected cuda or cuda:N"))?,
                None => return Err(unsupported("expected cpu, cuda[:N] or metal")),
            };
            Device::new_cuda(ordinal).map_err(|e| unsupported(&e.to_string()))
        }
    }
}

/// The dtype vision towers run in: candle's CPU convolution has no bf16 kernel, so a
/// bf16 run on CPU keeps the tower (patch convolution, projector) in f32.
pub fn vision_dtype(dtype: DType, device: &Device) -> DType {
    if dtype == DType::BF16 && device.is_cpu() {
        DType::F32
    } else {
        dtype
    }
}

/// Token ids of `text` with the tokenizer's own special tokens.
pub fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    // The tokenizers crate can panic on a malformed file's first use (see parse_tokenizer).
    Ok(
        crate::engine::contain::contain(|| tokenizer.encode(text, true))
            .map_err(Error::Tokenizer)?
            .map_err(|e| Error::Tokenizer(e.to_string()))?
            .get_ids()
            .to_vec(),
    )
}

/// What a local embedder records about itself. `shape` names everything besides the
/// weights, dtype and device that shapes its vectors (implementation version, pooling,
/// truncation, ...): the embedding cache is keyed by the hash of them all.
pub struct LocalInfo<'a> {
    pub weights_sha256: String,
    pub shape: String,
    pub dim: usize,
    pub max_tokens: usize,
    pub pooling: String,
    pub normalize: bool,
    pub dtype: DType,
    pub device: &'a Device,
}

impl LocalInfo<'_> {
    pub fn into_info(self, model: &ModelRef) -> crate::engine::EmbedderInfo {
        let dtype = format!("{:?}", self.dtype).to_lowercase();
        let fingerprint = hex::encode(Sha256::digest(format!(
            "{}|{}|{}",
            self.shape, self.weights_sha256, dtype
        )));
        crate::engine::EmbedderInfo {
            model: model.to_string(),
            engine: "candle".into(),
            weights_sha256: self.weights_sha256,
            fingerprint,
            dim: self.dim,
            max_tokens: self.max_tokens,
            pooling: self.pooling,
            normalize: self.normalize,
            dtype,
            device: format!("{:?}", self.device.location()).to_lowercase(),
            served_model: None,
        }
    }
}

/// Token counts for batching by length; a text the tokenizer refuses counts its chars.
pub fn token_lengths(texts: &[&str], ids: impl Fn(&str) -> Result<Vec<u32>>) -> Vec<usize> {
    texts
        .iter()
        .map(|t| ids(t).map_or_else(|_| t.chars().count(), |ids| ids.len()))
        .collect()
}
