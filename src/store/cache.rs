//! Content-addressed embedding cache: one append-only file per embedder fingerprint,
//! each record the sha256 of the exact text the model saw followed by its vector.
//! A batch is appended as soon as it is computed, so a killed run loses at most the
//! batch in flight; a torn last record is dropped on open.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"ASSAYEMB";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 16;

pub type Key = [u8; 32];

/// The cache key of a prepared text.
pub fn key_of(text: &str) -> Key {
    Sha256::digest(text.as_bytes()).into()
}

pub struct EmbeddingCache {
    path: Option<PathBuf>,
    file: Option<File>,
    dim: usize,
    vectors: HashMap<Key, Vec<f32>>,
}

impl EmbeddingCache {
    /// A cache that keeps nothing (for `--no-cache`).
    pub fn disabled(dim: usize) -> Self {
        EmbeddingCache {
            path: None,
            file: None,
            dim,
            vectors: HashMap::new(),
        }
    }

    /// Opens (or creates) `<dir>/embeddings/<fingerprint>.bin`.
    pub fn open(dir: &Path, fingerprint: &str, dim: usize) -> Result<Self> {
        let folder = dir.join("embeddings");
        std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
        let path = folder.join(format!("{fingerprint}.bin"));
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let record_len = 32 + 4 * dim;
        let mut vectors = HashMap::new();
        let mut valid_len = 0;
        if bytes.len() >= HEADER_LEN {
            let header_ok = &bytes[..8] == MAGIC
                && u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) == VERSION
                && u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize == dim;
            if !header_ok {
                return Err(Error::input(
                    &path,
                    format!("not an assay embedding cache of dimension {dim}: delete it to start afresh"),
                ));
            }
            valid_len = HEADER_LEN;
            for record in bytes[HEADER_LEN..].chunks_exact(record_len) {
                let key: Key = record[..32].try_into().expect("32 bytes");
                let vector = record[32..]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                    .collect();
                vectors.insert(key, vector);
                valid_len += record_len;
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // Drop a record torn by a kill mid-write (or write the header of a new file).
        file.set_len(valid_len as u64)
            .map_err(|e| Error::io(&path, e))?;
        if valid_len == 0 {
            let mut header = Vec::with_capacity(HEADER_LEN);
            header.extend_from_slice(MAGIC);
            header.extend_from_slice(&VERSION.to_le_bytes());
            header.extend_from_slice(&(dim as u32).to_le_bytes());
            file.write_all(&header).map_err(|e| Error::io(&path, e))?;
        }
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(EmbeddingCache {
            path: Some(path),
            file: Some(file),
            dim,
            vectors,
        })
    }

    pub fn get(&self, key: &Key) -> Option<&Vec<f32>> {
        self.vectors.get(key)
    }

    pub fn len(&self) -> usize {
        self.vectors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Stores a computed batch, on disk first (one write, then synced).
    pub fn insert_batch(&mut self, entries: Vec<(Key, Vec<f32>)>) -> Result<()> {
        if let (Some(file), Some(path)) = (&mut self.file, &self.path) {
            let mut buf = Vec::with_capacity(entries.len() * (32 + 4 * self.dim));
            for (key, vector) in &entries {
                if vector.len() != self.dim {
                    return Err(Error::input(
                        path,
                        format!(
                            "vector of dimension {} in a cache of dimension {}",
                            vector.len(),
                            self.dim
                        ),
                    ));
                }
                buf.extend_from_slice(key);
                for v in vector {
                    buf.extend_from_slice(&v.to_le_bytes());
                }
            }
            // An exclusive lock keeps two runs sharing a cache from interleaving records.
            file.lock().map_err(|e| Error::io(path, e))?;
            let written = file.write_all(&buf).and_then(|_| file.sync_data());
            let _ = file.unlock();
            written.map_err(|e| Error::io(path, e))?;
        }
        self.vectors.extend(entries);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = EmbeddingCache::open(dir.path(), "fp", 2).unwrap();
        cache
            .insert_batch(vec![
                (key_of("a"), vec![1.0, 2.0]),
                (key_of("b"), vec![3.0, 4.0]),
            ])
            .unwrap();
        let path = cache.path().unwrap().to_path_buf();
        drop(cache);
        // Simulate a kill in the middle of writing a third record.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[7u8; 20]).unwrap();
        drop(f);
        let mut cache = EmbeddingCache::open(dir.path(), "fp", 2).unwrap();
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&key_of("b")), Some(&vec![3.0, 4.0]));
        cache
            .insert_batch(vec![(key_of("c"), vec![5.0, 6.0])])
            .unwrap();
        let cache = EmbeddingCache::open(dir.path(), "fp", 2).unwrap();
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&key_of("c")), Some(&vec![5.0, 6.0]));
        assert!(EmbeddingCache::open(dir.path(), "fp", 3).is_err());
    }
}
