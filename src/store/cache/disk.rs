//! One cache file shared by any number of runs: an index of where each vector is, and a
//! read-only map of the file to read it from.
//!
//! Every change to the file happens under its exclusive lock: an append (write, then
//! sync), cutting a torn tail, a repair. So whatever a run sees under the lock is whole
//! records, and any bytes past the last one are a torn record of a run that died
//! mid-append, never one in flight. Whole records are never changed or cut in place: a
//! repair writes a new file and renames it over the old one, and a run that finds its file
//! replaced (checked under the lock before every append) opens the new one. Runs holding
//! the old file keep reading it, and all they appended to it is in the new one.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::format::{self, HEADER_LEN, KEY_LEN, VERSION};
use super::Key;
use crate::error::{Error, Result};

pub struct Disk {
    pub path: PathBuf,
    pub file: File,
    map: Mmap,
    /// Offset of each key's vector in the file.
    index: HashMap<Key, usize>,
    dim: usize,
}

/// Maps the whole file read-only.
fn map(path: &Path, file: &File) -> Result<Mmap> {
    // SAFETY: no run changes or shortens the bytes of whole records in place (see the
    // module comment); the bytes this run reads are only those of records it indexed.
    unsafe { Mmap::map(file) }.map_err(|e| Error::io(path, e))
}

/// Whether `path` now names another file than `file` (a repair by another run replaced
/// it). A path gone altogether is not: appends keep going to the file this run has.
#[cfg(unix)]
fn replaced(file: &File, path: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let open = file.metadata().map_err(|e| Error::io(path, e))?;
    match std::fs::metadata(path) {
        Ok(now) => Ok((now.dev(), now.ino()) != (open.dev(), open.ino())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Elsewhere a file open in another run cannot be renamed over, so a repair fails
/// rather than replacing it.
#[cfg(not(unix))]
fn replaced(_file: &File, _path: &Path) -> Result<bool> {
    Ok(false)
}

impl Disk {
    /// Opens (or creates) the file and checks it under its lock; returns it with the
    /// number of damaged records dropped.
    pub fn open(path: PathBuf, dim: usize) -> Result<(Disk, usize)> {
        let io = |e| Error::io(&path, e);
        let (file, index, damaged) = loop {
            let file = OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&path)
                .map_err(io)?;
            file.lock().map_err(io)?;
            // Another run's repair may have replaced the file while this one waited.
            if replaced(&file, &path)? {
                continue;
            }
            // The lock goes with the old file if a repair replaces it.
            let (file, index, damaged) = check(&path, file, dim)?;
            let _ = file.unlock();
            break (file, index, damaged);
        };
        let map = map(&path, &file)?;
        Ok((
            Disk {
                path,
                file,
                map,
                index,
                dim,
            },
            damaged,
        ))
    }

    pub fn get(&self, key: &Key) -> Option<Vec<f32>> {
        let at = *self.index.get(key)?;
        Some(format::decode(&self.map[at..at + 4 * self.dim]))
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.index.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Appends encoded records (one write, then synced) under the lock; returns the
    /// damaged records dropped if the file had to be opened afresh. A write that fails
    /// (disk full) is cut back off the file, so the records before it stay whole.
    pub fn append(&mut self, keys: &[Key], records: &[u8]) -> Result<usize> {
        let mut damaged = 0;
        loop {
            self.file.lock().map_err(|e| Error::io(&self.path, e))?;
            match replaced(&self.file, &self.path) {
                Ok(false) => break,
                Ok(true) => {
                    let _ = self.file.unlock();
                    let (fresh, dropped) = Disk::open(self.path.clone(), self.dim)?;
                    *self = fresh;
                    damaged += dropped;
                }
                Err(e) => {
                    let _ = self.file.unlock();
                    return Err(e);
                }
            }
        }
        let written = self.write_locked(records);
        let remapped = written.and_then(|start| Ok((start, map(&self.path, &self.file)?)));
        let _ = self.file.unlock();
        let (start, map) = remapped?;
        self.map = map;
        let record_len = format::record_len(self.dim);
        for (i, key) in keys.iter().enumerate() {
            self.index.insert(*key, start + i * record_len + KEY_LEN);
        }
        Ok(damaged)
    }

    /// Writes at the end of the locked file; returns where the records start.
    fn write_locked(&mut self, records: &[u8]) -> Result<usize> {
        let io = |e| Error::io(&self.path, e);
        let len = self.file.metadata().map_err(io)?.len() as usize;
        let record_len = format::record_len(self.dim);
        let whole = HEADER_LEN + len.saturating_sub(HEADER_LEN) / record_len * record_len;
        // A torn record of a run killed mid-append: records after it would be misread.
        if whole < len {
            self.file.set_len(whole as u64).map_err(io)?;
        }
        let written = self
            .file
            .write_all(records)
            .and_then(|_| self.file.sync_data());
        if written.is_err() {
            let _ = self.file.set_len(whole as u64);
        }
        written.map_err(io)?;
        Ok(whole)
    }
}

/// Checks the locked file: writes the header of a new one, cuts a torn tail, and
/// replaces it with a clean copy when records failed their checksum or it is of an older
/// version. Returns the file to use (still locked unless replaced), the index and the
/// number of damaged records.
fn check(path: &Path, mut file: File, dim: usize) -> Result<(File, HashMap<Key, usize>, usize)> {
    let io = |e| Error::io(path, e);
    let len = file.metadata().map_err(io)?.len() as usize;
    if len < HEADER_LEN {
        // New, or its header torn: no run can have read a record from it.
        file.set_len(0)
            .and_then(|_| file.write_all(&format::header(dim)))
            .and_then(|_| file.sync_data())
            .map_err(io)?;
        return Ok((file, HashMap::new(), 0));
    }
    // Read, not mapped: a map's pages would stay resident after the scan.
    let scan = format::scan(path, &file, len, dim)?;
    if scan.damaged > 0 || scan.version != VERSION {
        if scan.damaged > 0 {
            tracing::warn!(
                "embedding cache {}: {} damaged record(s) failed their checksum and were dropped; they will be computed again",
                path.display(),
                scan.damaged
            );
        }
        let (file, index) = replace(path, &file, &map(path, &file)?, &scan.index, dim)?;
        return Ok((file, index, scan.damaged));
    }
    if scan.whole_len < len {
        file.set_len(scan.whole_len as u64).map_err(io)?;
    }
    Ok((file, scan.index, 0))
}

/// Writes the good records (`index` into `bytes`) to a new file beside `path` and renames
/// it over `path`. Returns the new file and its index.
fn replace(
    path: &Path,
    old: &File,
    bytes: &[u8],
    index: &HashMap<Key, usize>,
    dim: usize,
) -> Result<(File, HashMap<Key, usize>)> {
    let folder = path.parent().unwrap_or(Path::new("."));
    let temp = tempfile::Builder::new()
        .prefix(".repair-")
        .append(true)
        .tempfile_in(folder)
        .map_err(|e| Error::io(folder, e))?;
    let io = |e| Error::io(temp.path(), e);
    if let Ok(meta) = old.metadata() {
        std::fs::set_permissions(temp.path(), meta.permissions()).map_err(io)?;
    }
    // In file order, so the copy reads the old file front to back.
    let mut records: Vec<(&Key, usize)> = index.iter().map(|(k, &at)| (k, at)).collect();
    records.sort_unstable_by_key(|&(_, at)| at);
    let mut fresh = HashMap::with_capacity(records.len());
    let mut out = BufWriter::new(temp.as_file());
    out.write_all(&format::header(dim)).map_err(io)?;
    let mut at = HEADER_LEN;
    let mut record = Vec::with_capacity(format::record_len(dim));
    for (key, offset) in records {
        record.clear();
        format::encode_raw(key, &bytes[offset..offset + 4 * dim], &mut record);
        out.write_all(&record).map_err(io)?;
        fresh.insert(*key, at + KEY_LEN);
        at += record.len();
    }
    out.flush().map_err(io)?;
    drop(out);
    temp.as_file().sync_data().map_err(io)?;
    let file = temp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok((file, fresh))
}
