//! Content-addressed embedding cache: one append-only file per embedder fingerprint,
//! each record the sha256 of the exact text the model saw, its vector, and a CRC-32 of
//! both. A batch is appended as soon as it is computed, so a killed run loses at most the
//! batch in flight: a torn last record is dropped. A record whose checksum fails (a
//! flipped bit anywhere in the file) is dropped with a warning and computed again.
//!
//! Opening keeps only where each vector is; vectors are read from a map of the file when
//! asked for, so a large cache costs little memory. Runs sharing a cache take turns
//! through the file's lock and never cut or overwrite each other's records.

mod disk;
mod format;

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use disk::Disk;

pub type Key = [u8; 32];

/// The cache key of a prepared text.
pub fn key_of(text: &str) -> Key {
    Sha256::digest(text.as_bytes()).into()
}

pub struct EmbeddingCache {
    dim: usize,
    store: Store,
    damaged: usize,
}

enum Store {
    /// `--no-cache` (and comparisons): the run's own vectors, in memory only.
    Memory(HashMap<Key, Vec<f32>>),
    File(Disk),
}

impl EmbeddingCache {
    /// A cache that keeps vectors in memory for this run only (for `--no-cache`).
    pub fn disabled(dim: usize) -> Self {
        EmbeddingCache {
            dim,
            store: Store::Memory(HashMap::new()),
            damaged: 0,
        }
    }

    /// Opens (or creates) `<dir>/embeddings/<fingerprint>.bin`. Damaged records are
    /// dropped (and counted in `damaged()`); a file that held any, or an older version,
    /// is replaced by a clean copy. Checking and repairing happen under the file's lock,
    /// which every append also takes: a run opening the cache never mistakes another
    /// run's append in flight for a torn record.
    pub fn open(dir: &Path, fingerprint: &str, dim: usize) -> Result<Self> {
        let folder = dir.join("embeddings");
        std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
        let (disk, damaged) = Disk::open(folder.join(format!("{fingerprint}.bin")), dim)?;
        Ok(EmbeddingCache {
            dim,
            store: Store::File(disk),
            damaged,
        })
    }

    /// Records dropped because their checksum failed.
    pub fn damaged(&self) -> usize {
        self.damaged
    }

    /// A copy of the vector stored for `key`.
    pub fn get(&self, key: &Key) -> Option<Vec<f32>> {
        match &self.store {
            Store::Memory(vectors) => vectors.get(key).cloned(),
            Store::File(disk) => disk.get(key),
        }
    }

    pub fn contains(&self, key: &Key) -> bool {
        match &self.store {
            Store::Memory(vectors) => vectors.contains_key(key),
            Store::File(disk) => disk.contains(key),
        }
    }

    pub fn len(&self) -> usize {
        match &self.store {
            Store::Memory(vectors) => vectors.len(),
            Store::File(disk) => disk.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn path(&self) -> Option<&Path> {
        match &self.store {
            Store::Memory(_) => None,
            Store::File(disk) => Some(&disk.path),
        }
    }

    /// Stores a computed batch, on disk first (one write, then synced).
    pub fn insert_batch(&mut self, entries: Vec<(Key, Vec<f32>)>) -> Result<()> {
        match &mut self.store {
            Store::Memory(vectors) => vectors.extend(entries),
            Store::File(disk) => {
                let mut records = Vec::with_capacity(entries.len() * format::record_len(self.dim));
                for (key, vector) in &entries {
                    if vector.len() != self.dim {
                        return Err(Error::input(
                            &disk.path,
                            format!(
                                "vector of dimension {} in a cache of dimension {}",
                                vector.len(),
                                self.dim
                            ),
                        ));
                    }
                    format::encode(key, vector, &mut records);
                }
                let keys: Vec<Key> = entries.iter().map(|(key, _)| *key).collect();
                self.damaged += disk.append(&keys, &records)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::io::Write;

    use super::format::{encode, CRC_LEN, HEADER_LEN, KEY_LEN, MAGIC};
    use super::*;

    fn file_of(cache: &mut EmbeddingCache) -> &mut std::fs::File {
        match &mut cache.store {
            Store::File(disk) => &mut disk.file,
            Store::Memory(_) => panic!("an in-memory cache"),
        }
    }

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
        assert_eq!(cache.get(&key_of("b")), Some(vec![3.0, 4.0]));
        cache
            .insert_batch(vec![(key_of("c"), vec![5.0, 6.0])])
            .unwrap();
        let cache = EmbeddingCache::open(dir.path(), "fp", 2).unwrap();
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&key_of("c")), Some(vec![5.0, 6.0]));
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
        assert_eq!(cache.get(&entries[5].0), Some(entries[5].1.clone()));
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
        let file = file_of(&mut writer);
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
        assert_eq!(reader.get(&key_of("b")), Some(vec![3.0, 4.0]));
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
        assert_eq!(cache.get(&key_of("a")), Some(vec![1.5, 2.5]));
        let rewritten = std::fs::read(folder.join("fp.bin")).unwrap();
        assert_eq!(rewritten[8], 2);
        assert_eq!(rewritten.len(), HEADER_LEN + KEY_LEN + 8 + CRC_LEN);
    }

    #[test]
    fn an_append_cuts_a_torn_record_of_a_dead_run_instead_of_writing_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = EmbeddingCache::open(dir.path(), "fp", 2).unwrap();
        writer
            .insert_batch(vec![(key_of("a"), vec![1.0, 2.0])])
            .unwrap();
        // Another run, killed mid-append after this one opened, left half a record.
        let path = writer.path().unwrap().to_path_buf();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[7u8; 20]).unwrap();
        drop(f);
        writer
            .insert_batch(vec![(key_of("b"), vec![3.0, 4.0])])
            .unwrap();
        assert_eq!(writer.get(&key_of("b")), Some(vec![3.0, 4.0]));
        let reader = EmbeddingCache::open(dir.path(), "fp", 2).unwrap();
        assert_eq!((reader.len(), reader.damaged()), (2, 0));
        assert_eq!(reader.get(&key_of("b")), Some(vec![3.0, 4.0]));
    }

    #[test]
    fn a_run_whose_file_another_run_repaired_appends_to_the_repaired_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = EmbeddingCache::open(dir.path(), "fp", 2).unwrap();
        writer
            .insert_batch(vec![(key_of("a"), vec![1.0, 2.0])])
            .unwrap();
        // A whole record whose checksum fails: the next run to open repairs the file.
        let mut bad = Vec::new();
        encode(&key_of("x"), &[9.0, 9.0], &mut bad);
        bad[KEY_LEN] ^= 1;
        let path = writer.path().unwrap().to_path_buf();
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&bad)
            .unwrap();
        let repairer = EmbeddingCache::open(dir.path(), "fp", 2).unwrap();
        assert_eq!((repairer.len(), repairer.damaged()), (1, 1));
        // The writer still reads what it had, and its next batch lands in the new file.
        assert_eq!(writer.get(&key_of("a")), Some(vec![1.0, 2.0]));
        writer
            .insert_batch(vec![(key_of("b"), vec![3.0, 4.0])])
            .unwrap();
        assert_eq!(writer.get(&key_of("a")), Some(vec![1.0, 2.0]));
        assert_eq!(writer.get(&key_of("b")), Some(vec![3.0, 4.0]));
        let reader = EmbeddingCache::open(dir.path(), "fp", 2).unwrap();
        assert_eq!((reader.len(), reader.damaged()), (2, 0));
        assert_eq!(reader.get(&key_of("b")), Some(vec![3.0, 4.0]));
        assert_eq!(
            std::fs::metadata(&path).unwrap().len() as usize,
            HEADER_LEN + 2 * (KEY_LEN + 8 + CRC_LEN)
        );
        let leftovers = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left beside the cache");
    }

    #[test]
    fn the_in_memory_cache_keeps_what_it_is_given() {
        let mut cache = EmbeddingCache::disabled(2);
        cache
            .insert_batch(vec![(key_of("a"), vec![1.0, 2.0])])
            .unwrap();
        assert!(cache.contains(&key_of("a")) && !cache.contains(&key_of("b")));
        assert_eq!(cache.get(&key_of("a")), Some(vec![1.0, 2.0]));
        assert_eq!(cache.path(), None);
    }
}
