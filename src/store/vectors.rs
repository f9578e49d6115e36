//! A file of embedding rows (f32 or f16), memory-mapped for search so a corpus larger than
//! memory can be scored a chunk at a time.
//!
//! Layout, little-endian: a 32-byte header (magic `ASSAYVEC`, version u32, dtype u32,
//! dim u64, count u64), then `count` rows of `dim` values. The writer builds a temp file and
//! renames it into place with the count filled in, so a store at its path is complete.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use half::f16;
use memmap2::{Mmap, UncheckedAdvice};
use tempfile::NamedTempFile;

use crate::error::{Error, Result};
use crate::search::Corpus;

const MAGIC: &[u8; 8] = b"ASSAYVEC";
const VERSION: u32 = 1;
/// Bytes before the first row.
pub const HEADER_BYTES: usize = 32;
/// Byte offset of the row count in the header.
const COUNT_OFFSET: u64 = 24;

/// How a store keeps its values: f16 halves the file at about 3 decimal digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreDtype {
    #[default]
    F32,
    F16,
}

impl StoreDtype {
    /// Bytes per value.
    pub fn width(self) -> usize {
        match self {
            StoreDtype::F32 => 4,
            StoreDtype::F16 => 2,
        }
    }

    fn code(self) -> u32 {
        match self {
            StoreDtype::F32 => 0,
            StoreDtype::F16 => 1,
        }
    }

    fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(StoreDtype::F32),
            1 => Some(StoreDtype::F16),
            _ => None,
        }
    }
}

impl FromStr for StoreDtype {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(StoreDtype::F32),
            "f16" => Ok(StoreDtype::F16),
            other => Err(Error::Usage(format!(
                "store dtype `{other}`: expected f32 or f16"
            ))),
        }
    }
}

impl std::fmt::Display for StoreDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreDtype::F32 => "f32",
            StoreDtype::F16 => "f16",
        })
    }
}

/// Appends rows to a new store; nothing appears at `path` until `finish`.
pub struct VectorWriter {
    path: PathBuf,
    out: BufWriter<NamedTempFile>,
    dim: usize,
    dtype: StoreDtype,
    count: u64,
    bytes: Vec<u8>,
}

impl VectorWriter {
    pub fn create(path: impl AsRef<Path>, dim: usize, dtype: StoreDtype) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if dim == 0 {
            return Err(Error::input(&path, "vector store: dim must be at least 1"));
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let tmp = NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, tmp);
        let mut header = Vec::with_capacity(HEADER_BYTES);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&dtype.code().to_le_bytes());
        header.extend_from_slice(&(dim as u64).to_le_bytes());
        header.extend_from_slice(&0u64.to_le_bytes());
        out.write_all(&header).map_err(|e| Error::io(&path, e))?;
        Ok(VectorWriter {
            path,
            out,
            dim,
            dtype,
            count: 0,
            bytes: Vec::with_capacity(dim * 4),
        })
    }

    pub fn push(&mut self, row: &[f32]) -> Result<()> {
        if row.len() != self.dim {
            return Err(Error::input(
                &self.path,
                format!(
                    "vector store: row {} has {} values, the store holds {}",
                    self.count,
                    row.len(),
                    self.dim
                ),
            ));
        }
        self.bytes.clear();
        match self.dtype {
            StoreDtype::F32 => row
                .iter()
                .for_each(|v| self.bytes.extend_from_slice(&v.to_le_bytes())),
            StoreDtype::F16 => row.iter().for_each(|v| {
                self.bytes
                    .extend_from_slice(&f16::from_f32(*v).to_le_bytes())
            }),
        }
        self.out
            .write_all(&self.bytes)
            .map_err(|e| Error::io(&self.path, e))?;
        self.count += 1;
        Ok(())
    }

    /// Writes the row count, syncs and moves the file into place. Returns the row count.
    pub fn finish(self) -> Result<u64> {
        let path = self.path;
        let io = |e| Error::io(&path, e);
        let mut tmp = self.out.into_inner().map_err(|e| io(e.into_error()))?;
        tmp.seek(SeekFrom::Start(COUNT_OFFSET)).map_err(io)?;
        tmp.write_all(&self.count.to_le_bytes()).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(&path).map_err(|e| io(e.error))?;
        Ok(self.count)
    }
}

/// A store opened for reading, its rows mapped into memory.
pub struct VectorStore {
    path: PathBuf,
    map: Mmap,
    dim: usize,
    count: usize,
    dtype: StoreDtype,
}

impl VectorStore {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        // SAFETY: the map is read-only; stores are written to a temp file and renamed into
        // place, never modified where they lie, so the mapped bytes do not change under us.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
        let bad = |message: String| Error::input(&path, format!("vector store: {message}"));
        if map.len() < HEADER_BYTES {
            return Err(bad(format!(
                "truncated: {} bytes, shorter than the {HEADER_BYTES}-byte header",
                map.len()
            )));
        }
        if &map[..8] != MAGIC {
            return Err(bad("not a vector store (bad magic)".to_string()));
        }
        let u32_at = |at: usize| u32::from_le_bytes(map[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(map[at..at + 8].try_into().unwrap());
        let version = u32_at(8);
        if version != VERSION {
            return Err(bad(format!(
                "version {version}, this build reads version {VERSION}"
            )));
        }
        let dtype = StoreDtype::from_code(u32_at(12))
            .ok_or_else(|| bad(format!("unknown dtype code {}", u32_at(12))))?;
        let (dim, count) = (u64_at(16), u64_at(24));
        if dim == 0 {
            return Err(bad("dim is 0".to_string()));
        }
        let expected = count
            .checked_mul(dim)
            .and_then(|n| n.checked_mul(dtype.width() as u64))
            .and_then(|n| n.checked_add(HEADER_BYTES as u64));
        let len = map.len() as u64;
        if expected != Some(len) {
            let what = if expected.is_some_and(|e| len > e) {
                "trailing bytes"
            } else {
                "truncated"
            };
            let expected = expected.map_or("more than 2^64".to_string(), |e| e.to_string());
            return Err(bad(format!(
                "{what}: {len} bytes, expected {expected} ({count} rows × {dim} × {} bytes + \
                 {HEADER_BYTES}-byte header)",
                dtype.width()
            )));
        }
        Ok(VectorStore {
            path,
            map,
            dim: dim as usize,
            count: count as usize,
            dtype,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn dtype(&self) -> StoreDtype {
        self.dtype
    }

    /// Row `i` as f32.
    pub fn row(&self, i: usize) -> Vec<f32> {
        let mut out = vec![0.0; self.dim];
        self.read_rows(i, self.dim, &mut out);
        out
    }
}

impl Corpus for VectorStore {
    fn len(&self) -> usize {
        self.count
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn read_rows(&self, start: usize, stride: usize, out: &mut [f32]) {
        let rows = out.len() / stride;
        let row_bytes = self.dim * self.dtype.width();
        let first = HEADER_BYTES + start * row_bytes;
        let bytes = &self.map[first..first + rows * row_bytes];
        for (src, dst) in bytes
            .chunks_exact(row_bytes)
            .zip(out.chunks_exact_mut(stride))
        {
            let dst = &mut dst[..self.dim];
            match self.dtype {
                StoreDtype::F32 => {
                    for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
                        *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
                    }
                }
                StoreDtype::F16 => {
                    for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                        *d = f16::from_le_bytes([s[0], s[1]]).to_f32();
                    }
                }
            }
        }
    }

    fn release(&self, rows: std::ops::Range<usize>) {
        let row_bytes = self.dim * self.dtype.width();
        let first = HEADER_BYTES + rows.start * row_bytes;
        let len = rows.len() * row_bytes;
        // Scanned rows leave this process's resident memory (the page cache keeps them), so
        // a search over a store larger than memory holds about one chunk, not the file.
        // SAFETY: a read-only file mapping: dropped pages are read back from the file.
        let _ = unsafe {
            self.map
                .unchecked_advise_range(UncheckedAdvice::DontNeed, first, len)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Vec<f32>> {
        (0..5)
            .map(|i| (0..3).map(|j| (i * 3 + j) as f32 * 0.5 - 2.0).collect())
            .collect()
    }

    fn write(path: &Path, dtype: StoreDtype) {
        let mut w = VectorWriter::create(path, 3, dtype).unwrap();
        for r in rows() {
            w.push(&r).unwrap();
        }
        assert_eq!(w.finish().unwrap(), 5);
    }

    #[test]
    fn round_trips_f32_and_f16() {
        let dir = tempfile::tempdir().unwrap();
        for dtype in [StoreDtype::F32, StoreDtype::F16] {
            let path = dir.path().join(format!("v.{dtype}"));
            write(&path, dtype);
            let store = VectorStore::open(&path).unwrap();
            assert_eq!((store.len(), store.dim(), store.dtype()), (5, 3, dtype));
            // Halves and small integers are exact in f16 too.
            let read: Vec<Vec<f32>> = (0..5).map(|i| store.row(i)).collect();
            assert_eq!(read, rows());
            let mut padded = vec![9.0; 2 * 4];
            store.read_rows(3, 4, &mut padded);
            assert_eq!(padded, [2.5, 3.0, 3.5, 9.0, 4.0, 4.5, 5.0, 9.0]);
        }
        assert_eq!("f16".parse::<StoreDtype>().unwrap(), StoreDtype::F16);
        assert!("bf16".parse::<StoreDtype>().is_err());
    }

    #[test]
    fn truncated_file_is_an_input_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.f32");
        write(&path, StoreDtype::F32);
        let full = std::fs::metadata(&path).unwrap().len();
        // Cut mid-vector.
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(full - 6).unwrap();
        let err = VectorStore::open(&path)
            .err()
            .expect("truncated store opened");
        assert!(matches!(err, Error::Input { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("truncated: 86 bytes, expected 92 (5 rows × 3 × 4 bytes"),
            "{text}"
        );
        file.set_len(10).unwrap();
        assert!(VectorStore::open(&path).is_err());
    }

    #[test]
    fn bad_magic_is_an_input_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.f32");
        write(&path, StoreDtype::F32);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] = b'X';
        std::fs::write(&path, bytes).unwrap();
        let err = VectorStore::open(&path).err().expect("bad magic opened");
        assert!(matches!(err, Error::Input { .. }), "{err:?}");
        assert!(err.to_string().contains("bad magic"), "{err}");
    }

    #[test]
    fn a_row_of_the_wrong_length_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.f32");
        let mut w = VectorWriter::create(&path, 3, StoreDtype::F32).unwrap();
        assert!(w.push(&[1.0, 2.0]).is_err());
        drop(w);
        assert!(!path.exists());
    }
}
