//! Content-addressed embedding cache: one append-only file per embedder fingerprint,
//! each record the sha256 of the exact text the model saw, its vector, and a CRC-32 of
//! both. A batch is appended as soon as it is computed, so a killed run loses at most the
//! batch in flight: a torn last record is dropped on open. A record whose checksum fails
//! (a flipped bit anywhere in the file) is dropped with a warning and computed again.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"ASSAYEMB";
/// 1: key and vector; 2: key, vector and CRC-32. Version 1 files are read and rewritten.
const VERSION: u32 = 2;
const HEADER_LEN: usize = 16;
const KEY_LEN: usize = 32;
const CRC_LEN: usize = 4;

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
    damaged: usize,
}

/// What a cache file holds once checked.
struct Contents {
    vectors: HashMap<Key, Vec<f32>>,
    /// Bytes up to the end of the last whole record.
    whole_len: usize,
    /// Records whose checksum failed.
    damaged: usize,
    version: u32,
}

fn header(dim: usize) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&(dim as u32).to_le_bytes());
    header
}

/// One record: key, vector, and (version 2) the CRC-32 of both.
fn encode(key: &Key, vector: &[f32], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(key);
    for v in vector {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Reads and checks a cache file's bytes; `None` for an empty file.
fn parse(path: &Path, bytes: &[u8], dim: usize) -> Result<Option<Contents>> {
    if bytes.len() < HEADER_LEN {
        return Ok(None);
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = word(8);
    if &bytes[..8] != MAGIC || !(version == 1 || version == VERSION) || word(12) as usize != dim {
        return Err(Error::input(
            path,
            format!("not an assay embedding cache of dimension {dim}: delete it to start afresh"),
        ));
    }
    let crc_len = if version == 1 { 0 } else { CRC_LEN };
    let record_len = KEY_LEN + 4 * dim + crc_len;
    let mut contents = Contents {
        vectors: HashMap::new(),
        whole_len: HEADER_LEN,
        damaged: 0,
        version,
    };
    for record in bytes[HEADER_LEN..].chunks_exact(record_len) {
        contents.whole_len += record_len;
        let (body, crc) = record.split_at(record_len - crc_len);
        if crc_len > 0 && crc32fast::hash(body).to_le_bytes() != crc {
            contents.damaged += 1;
            continue;
        }
        let (key, vector) = body.split_at(KEY_LEN);
        let vector = vector
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        contents
            .vectors
            .insert(Key::try_from(key).expect("32 bytes"), vector);
    }
    Ok(Some(contents))
}

impl EmbeddingCache {
    /// A cache that keeps nothing (for `--no-cache`).
    pub fn disabled(dim: usize) -> Self {
        EmbeddingCache {
            path: None,
            file: None,
            dim,
            vectors: HashMap::new(),
            damaged: 0,
        }
    }

    /// Opens (or creates) `<dir>/embeddings/<fingerprint>.bin`. Damaged records are
    /// dropped (and counted in `damaged()`); a file that held any, or an older version,
    /// is rewritten in place with only the good records. Reading and repairing happen
    /// under the file's lock, which every append also takes: a run opening the cache
    /// never mistakes another run's append in flight for a torn record.
    pub fn open(dir: &Path, fingerprint: &str, dim: usize) -> Result<Self> {
        let folder = dir.join("embeddings");
        std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
        let path = folder.join(format!("{fingerprint}.bin"));
        let io = |e| Error::io(&path, e);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        file.lock().map_err(io)?;
        let opened = Self::check(&path, &mut file, dim);
        let _ = file.unlock();
        let (vectors, damaged) = opened?;
        Ok(EmbeddingCache {
            path: Some(path),
            file: Some(file),
            dim,
            vectors,
            damaged,
        })
    }

    /// Reads the locked file, drops a torn tail, and rewrites it when records failed
    /// their checksum or it is of an older version (in place: other runs' handles stay
    /// valid). Appends go to the end whatever the position (the file is in append mode).
    fn check(path: &Path, file: &mut File, dim: usize) -> Result<(HashMap<Key, Vec<f32>>, usize)> {
        let io = |e| Error::io(path, e);
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let contents = parse(path, &bytes, dim)?;
        let rewrite = |file: &mut File, content: &[u8]| {
            file.set_len(0)
                .and_then(|_| file.write_all(content))
                .and_then(|_| file.sync_data())
                .map_err(io)
        };
        match contents {
            Some(c) if c.damaged > 0 || c.version != VERSION => {
                if c.damaged > 0 {
                    tracing::warn!(
                        "embedding cache {}: {} damaged record(s) failed their checksum and were dropped; they will be computed again",
                        path.display(),
                        c.damaged
                    );
                }
                let mut clean = header(dim);
                for (key, vector) in &c.vectors {
                    encode(key, vector, &mut clean);
                }
                rewrite(file, &clean)?;
                Ok((c.vectors, c.damaged))
            }
            Some(c) => {
                // Drop a record torn by a kill mid-write.
                if c.whole_len < bytes.len() {
                    file.set_len(c.whole_len as u64).map_err(io)?;
                }
                Ok((c.vectors, 0))
            }
            None => {
                rewrite(file, &header(dim))?;
                Ok((HashMap::new(), 0))
            }
        }
    }

    /// Records dropped on open because their checksum failed.
    pub fn damaged(&self) -> usize {
        self.damaged
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

    /// Stores a computed batch, on disk first (one write, then synced). A write that
    /// fails (disk full) is cut back off the file, so the records before it stay whole.
    pub fn insert_batch(&mut self, entries: Vec<(Key, Vec<f32>)>) -> Result<()> {
        if let (Some(file), Some(path)) = (&mut self.file, &self.path) {
            let mut buf = Vec::with_capacity(entries.len() * (KEY_LEN + 4 * self.dim + CRC_LEN));
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
                encode(key, vector, &mut buf);
            }
            // An exclusive lock keeps two runs sharing a cache from interleaving records.
            file.lock().map_err(|e| Error::io(path, e))?;
            let before = file.metadata().map(|m| m.len());
            let written = file.write_all(&buf).and_then(|_| file.sync_data());
            if written.is_err() {
                if let Ok(len) = before {
                    let _ = file.set_len(len);
                }
            }
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

    #[test]
    fn a_flipped_byte_mid_file_drops_only_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = EmbeddingCache::open(dir.path(), "fp", 3).unwrap();
        let entries: Vec<(Key, Vec<f32>)> = (0..9)
            .map(|i| (key_of(&i.to_string()), vec![i as f32, 0.5, -1.0]))
            .collect();
        cache.insert_batch(entries.clone()).unwrap();
        let path = cache.path().unwrap().to_path_buf();
        drop(cache);
        let mut bytes = std::fs::read(&path).unwrap();
        let record = KEY_LEN + 12 + CRC_LEN;
        // One bit of the fifth record's vector.
        bytes[HEADER_LEN + 4 * record + KEY_LEN + 5] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let cache = EmbeddingCache::open(dir.path(), "fp", 3).unwrap();
        assert_eq!((cache.len(), cache.damaged()), (8, 1));
        assert_eq!(cache.get(&entries[4].0), None);
        assert_eq!(cache.get(&entries[5].0), Some(&entries[5].1));
        // The file was rewritten without the damaged record.
        let cache = EmbeddingCache::open(dir.path(), "fp", 3).unwrap();
        assert_eq!((cache.len(), cache.damaged()), (8, 0));
        assert_eq!(
            std::fs::metadata(&path).unwrap().len() as usize,
            HEADER_LEN + 8 * record
        );
    }

    #[test]
    fn opening_waits_for_an_append_in_flight_instead_of_cutting_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = EmbeddingCache::open(dir.path(), "fp", 2).unwrap();
        writer
            .insert_batch(vec![(key_of("a"), vec![1.0, 2.0])])
            .unwrap();
        // Another run is mid-append: it holds the lock and half a record is on disk.
        let mut record = Vec::new();
        encode(&key_of("b"), &[3.0, 4.0], &mut record);
        let file = writer.file.as_mut().unwrap();
        file.lock().unwrap();
        file.write_all(&record[..20]).unwrap();
        let folder = dir.path().to_path_buf();
        let opener = std::thread::spawn(move || EmbeddingCache::open(&folder, "fp", 2).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!opener.is_finished(), "open waits for the lock");
        file.write_all(&record[20..]).unwrap();
        file.unlock().unwrap();
        let reader = opener.join().unwrap();
        assert_eq!(reader.len(), 2, "the append was kept whole");
        assert_eq!(reader.get(&key_of("b")), Some(&vec![3.0, 4.0]));
    }

    #[test]
    fn version_1_files_are_read_and_rewritten_with_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("embeddings");
        std::fs::create_dir_all(&folder).unwrap();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&2u32.to_le_bytes());
        bytes.extend_from_slice(&key_of("a"));
        bytes.extend_from_slice(&1.5f32.to_le_bytes());
        bytes.extend_from_slice(&2.5f32.to_le_bytes());
        std::fs::write(folder.join("fp.bin"), &bytes).unwrap();
        let cache = EmbeddingCache::open(dir.path(), "fp", 2).unwrap();
        assert_eq!(cache.get(&key_of("a")), Some(&vec![1.5, 2.5]));
        let rewritten = std::fs::read(folder.join("fp.bin")).unwrap();
        assert_eq!(rewritten[8], 2);
        assert_eq!(rewritten.len(), HEADER_LEN + KEY_LEN + 8 + CRC_LEN);
    }
}
