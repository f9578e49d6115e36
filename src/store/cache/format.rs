//! The cache file's layout: a 16-byte header (magic, version, dimension), then records of
//! key, little-endian f32 vector and (version 2) the CRC-32 of both.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::Key;
use crate::error::{Error, Result};

pub const MAGIC: &[u8; 8] = b"ASSAYEMB";
/// 1: key and vector; 2: key, vector and CRC-32. Version 1 files are read and rewritten.
pub const VERSION: u32 = 2;
pub const HEADER_LEN: usize = 16;
pub const KEY_LEN: usize = 32;
pub const CRC_LEN: usize = 4;

pub fn header(dim: usize) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&(dim as u32).to_le_bytes());
    header
}

/// Bytes of one record of the current version.
pub fn record_len(dim: usize) -> usize {
    KEY_LEN + 4 * dim + CRC_LEN
}

/// One record: key, vector, and the CRC-32 of both.
pub fn encode(key: &Key, vector: &[f32], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(key);
    for v in vector {
        out.extend_from_slice(&v.to_le_bytes());
    }
    seal(out, start);
}

/// One record from a vector already in its on-disk form (a repair copying it over).
pub fn encode_raw(key: &Key, vector: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(key);
    out.extend_from_slice(vector);
    seal(out, start);
}

fn seal(out: &mut Vec<u8>, start: usize) {
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

pub fn decode(vector: &[u8]) -> Vec<f32> {
    vector
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Where the records of a checked file are.
pub struct Scan {
    /// Offset of each good record's vector.
    pub index: HashMap<Key, usize>,
    /// Bytes up to the end of the last whole record.
    pub whole_len: usize,
    /// Records whose checksum failed.
    pub damaged: usize,
    pub version: u32,
}

/// Bytes read at a time while scanning.
const CHUNK: usize = 1 << 20;

/// Checks the header and every record's checksum of the first `len` bytes of `file`
/// (at least `HEADER_LEN`), reading a chunk at a time; keeps only where each vector is.
pub fn scan(path: &Path, file: &File, len: usize, dim: usize) -> Result<Scan> {
    let io = |e| Error::io(path, e);
    let mut reader = file;
    reader.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut head = [0u8; HEADER_LEN];
    reader.read_exact(&mut head).map_err(io)?;
    let word = |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let version = word(8);
    if &head[..8] != MAGIC || !(version == 1 || version == VERSION) || word(12) as usize != dim {
        return Err(Error::input(
            path,
            format!("not an assay embedding cache of dimension {dim}: delete it to start afresh"),
        ));
    }
    let crc_len = if version == 1 { 0 } else { CRC_LEN };
    let record_len = KEY_LEN + 4 * dim + crc_len;
    let whole = (len - HEADER_LEN) / record_len;
    let mut scan = Scan {
        index: HashMap::with_capacity(whole),
        whole_len: HEADER_LEN + whole * record_len,
        damaged: 0,
        version,
    };
    let per_chunk = (CHUNK / record_len).max(1);
    let mut buf = vec![0u8; per_chunk * record_len];
    let mut at = HEADER_LEN;
    while at < scan.whole_len {
        let n = (scan.whole_len - at).min(buf.len());
        reader.read_exact(&mut buf[..n]).map_err(io)?;
        for record in buf[..n].chunks_exact(record_len) {
            let (body, crc) = record.split_at(record_len - crc_len);
            if crc_len > 0 && crc32fast::hash(body).to_le_bytes() != crc {
                scan.damaged += 1;
            } else {
                let key = Key::try_from(&body[..KEY_LEN]).expect("32 bytes");
                scan.index.insert(key, at + KEY_LEN);
            }
            at += record_len;
        }
    }
    Ok(scan)
}
