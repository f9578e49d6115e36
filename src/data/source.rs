//! Where a task's files are read from: a folder under the data root, or the hub.

use std::path::{Path, PathBuf};

use crate::data::hub::HubRepo;
use crate::error::{Error, Result};
use crate::spec::DatasetSpec;

#[derive(Debug, Clone)]
pub enum DataSource {
    Local(PathBuf),
    Hub(HubRepo),
}

impl DataSource {
    /// The local copy when `<data_root>/<local>` exists, else the hub id of the spec.
    pub fn resolve(spec: &DatasetSpec, data_root: &Path) -> Result<DataSource> {
        let local = data_root.join(&spec.local);
        if local.is_dir() {
            return Ok(DataSource::Local(local));
        }
        match &spec.hub {
            Some(id) => Ok(DataSource::Hub(HubRepo::dataset(
                id,
                spec.hub_revision.as_deref(),
            ))),
            None => Err(Error::input(
                &local,
                "dataset folder not found, and the task spec names no hub id to fetch it from",
            )),
        }
    }

    /// Path of one file of the dataset (downloaded or read from the hub cache if remote).
    pub fn file(&self, relative: &str) -> Result<PathBuf> {
        match self {
            DataSource::Local(dir) => {
                let path = dir.join(relative);
                if path.is_file() {
                    Ok(path)
                } else {
                    Err(Error::input(&path, "file not found"))
                }
            }
            DataSource::Hub(repo) => repo.get(relative),
        }
    }

    /// The file name pattern of a split for this source (`{split}` replaced).
    pub fn split_file(&self, spec: &DatasetSpec, default: &str) -> String {
        let pattern = match self {
            DataSource::Hub(_) => spec.hub_file.as_deref().or(spec.file.as_deref()),
            DataSource::Local(_) => spec.file.as_deref(),
        };
        pattern.unwrap_or(default).replace("{split}", &spec.split)
    }

    /// Human-readable origin for run records.
    pub fn describe(&self) -> String {
        match self {
            DataSource::Local(dir) => dir.display().to_string(),
            DataSource::Hub(repo) => format!("hf:{}@{}", repo.id, repo.revision),
        }
    }
}
