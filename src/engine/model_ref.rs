//! What `--model` names, parsed once: a hub model, a local folder or file, or an
//! OpenAI-compatible endpoint.

use std::path::PathBuf;

use crate::engine::openai::Endpoint;
use crate::error::{Error, Result};

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    /// `hf:ORG/NAME[@REV]`: the hub, or its local cache when offline.
    Hf {
        repo: String,
        revision: Option<String>,
    },
    /// `dir:PATH`: a local folder with config.json, tokenizer.json and weights (or a GGUF).
    Dir { path: PathBuf },
    /// `openai:BASE_URL#MODEL`: an OpenAI-compatible endpoint.
    OpenAi(Endpoint),
}

impl ModelRef {
    /// Whether the model runs here (else behind an endpoint).
    pub fn is_local(&self) -> bool {
        !matches!(self, ModelRef::OpenAi(_))
    }
}

impl std::str::FromStr for ModelRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        if s.starts_with("openai:") {
            Ok(ModelRef::OpenAi(Endpoint::parse(s)?))
        } else if let Some(rest) = s.strip_prefix("hf:") {
            let (repo, revision) = match rest.split_once('@') {
                Some((repo, rev)) => (repo, Some(rev.to_string())),
                None => (rest, None),
            };
            if repo.split('/').count() != 2 || repo.split('/').any(str::is_empty) {
                return Err(Error::Usage(format!(
                    "model `{s}`: a hub reference is hf:ORG/NAME[@REVISION]"
                )));
            }
            Ok(ModelRef::Hf {
                repo: repo.to_string(),
                revision,
            })
        } else if let Some(path) = s.strip_prefix("dir:") {
            Ok(ModelRef::Dir {
                path: PathBuf::from(path),
            })
        } else {
            Err(Error::Usage(format!(
                "model `{}`: expected hf:ORG/NAME[@REV], dir:PATH or openai:BASE_URL#MODEL",
                crate::engine::openai::redact_url(s)
            )))
        }
    }
}

/// The reference as given, credentials removed.
impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelRef::Hf {
                repo,
                revision: Some(rev),
            } => write!(f, "hf:{repo}@{rev}"),
            ModelRef::Hf { repo, .. } => write!(f, "hf:{repo}"),
            ModelRef::Dir { path } => write!(f, "dir:{}", path.display()),
            ModelRef::OpenAi(endpoint) => f.write_str(&endpoint.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_model_refs() {
        let m: ModelRef = "hf:sentence-transformers/all-MiniLM-L6-v2@abc"
            .parse()
            .unwrap();
        assert_eq!(
            m,
            ModelRef::Hf {
                repo: "sentence-transformers/all-MiniLM-L6-v2".into(),
                revision: Some("abc".into())
            }
        );
        assert_eq!(
            m.to_string(),
            "hf:sentence-transformers/all-MiniLM-L6-v2@abc"
        );
        let d: ModelRef = "dir:/x/y".parse().unwrap();
        assert_eq!(d.to_string(), "dir:/x/y");
        assert!("hf:noslash".parse::<ModelRef>().is_err());
        let o: ModelRef = "openai:http://user:pw@127.0.0.1:8080/v1/#m"
            .parse()
            .unwrap();
        assert!(!o.is_local());
        assert_eq!(o.to_string(), "openai:http://***@127.0.0.1:8080/v1#m");
        assert!("openai:http://127.0.0.1:8080/v1"
            .parse::<ModelRef>()
            .is_err());
        assert!("s3://bucket".parse::<ModelRef>().is_err());
    }
}
