//! Files from the Hugging Face hub through hf-hub, reading its local cache first so
//! that everything works offline once fetched (or when the cache was filled by another
//! tool that uses the same layout: `<cache>/<kind>s--ORG--NAME/{refs,snapshots}`).

use std::path::PathBuf;

use hf_hub::{Cache, Repo, RepoType};

use crate::error::{Error, Result};

/// A repository on the hub at a revision (branch, tag or commit).
#[derive(Debug, Clone)]
pub struct HubRepo {
    pub id: String,
    pub kind: RepoType,
    pub revision: String,
}

impl HubRepo {
    pub fn dataset(id: &str, revision: Option<&str>) -> Self {
        HubRepo {
            id: id.to_string(),
            kind: RepoType::Dataset,
            revision: revision.unwrap_or("main").to_string(),
        }
    }

    pub fn model(id: &str, revision: Option<&str>) -> Self {
        HubRepo {
            id: id.to_string(),
            kind: RepoType::Model,
            revision: revision.unwrap_or("main").to_string(),
        }
    }

    fn repo(&self) -> Repo {
        Repo::with_revision(self.id.clone(), self.kind, self.revision.clone())
    }

    /// Where the file is: the cache if it holds it, else a download (unless offline).
    pub fn get(&self, filename: &str) -> Result<PathBuf> {
        if let Some(path) = self.cached(filename) {
            return Ok(path);
        }
        if offline() {
            return Err(self.error(format!(
                "`{filename}` is not in the local cache ({}) and HF_HUB_OFFLINE is set",
                Cache::from_env().path().display()
            )));
        }
        let mut builder = hf_hub::api::sync::ApiBuilder::from_env().with_progress(false);
        // Gated datasets (GPQA) need a token: HF_TOKEN, else the one `hf auth login` saved.
        if let Some(token) = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()) {
            builder = builder.with_token(Some(token));
        }
        let api = builder
            .build()
            .map_err(|e| self.error(format!("cannot start the hub client: {e}")))?;
        api.repo(self.repo())
            .get(filename)
            .map_err(|e| self.error(format!("cannot fetch `{filename}`: {e}")))
    }

    /// The cached copy, if any. A commit revision may have a snapshot without a ref file
    /// (Python's huggingface_hub writes it that way), so look for the snapshot directly too.
    pub fn cached(&self, filename: &str) -> Option<PathBuf> {
        let cache = Cache::from_env();
        if let Some(path) = cache.repo(self.repo()).get(filename) {
            return Some(path);
        }
        let is_commit =
            self.revision.len() == 40 && self.revision.chars().all(|c| c.is_ascii_hexdigit());
        if is_commit {
            let path = cache
                .path()
                .join(self.repo().folder_name())
                .join("snapshots")
                .join(&self.revision)
                .join(filename);
            if path.is_file() {
                return Some(path);
            }
        }
        None
    }

    pub fn error(&self, message: String) -> Error {
        Error::Hub {
            repo: format!("{}@{}", self.id, self.revision),
            message,
        }
    }
}

/// `HF_HUB_OFFLINE=1` (the variable the Python tools use) forbids network access.
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes"))
}
