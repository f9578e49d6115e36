//! A safetensors file's header, checked before candle memory-maps the file.
//!
//! The safetensors crate (0.8) validates each tensor's size with checked arithmetic but
//! adds the header length to the data's end unchecked: tensors ending near 2^64 overflow
//! that sum, a panic wherever overflow checks are on (debug and test builds). This check
//! does the same validation in checked arithmetic, reading only the header.

use std::io::Read;
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// The safetensors crate's own limit on the header's JSON.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Checks the header of the safetensors file at `path` against the file's length.
pub fn check_file(path: &Path) -> Result<()> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut prefix = [0u8; 8];
    if size < 8 {
        return Err(bad(path, "shorter than the 8-byte header length".into()));
    }
    file.read_exact(&mut prefix)
        .map_err(|e| Error::io(path, e))?;
    let n = header_len(path, prefix, size)?;
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header)
        .map_err(|e| Error::io(path, e))?;
    check_header(path, &header, size - 8 - n)
}

/// The same for a whole file in memory (`path` only names it in errors).
pub fn check_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    let Some((prefix, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(bad(path, "shorter than the 8-byte header length".into()));
    };
    let n = header_len(path, *prefix, bytes.len() as u64)?;
    let (header, data) = rest.split_at(n as usize);
    check_header(path, header, data.len() as u64)
}

fn bad(path: &Path, what: String) -> Error {
    Error::input(path, format!("not a readable safetensors file: {what}"))
}

/// The header's length from its 8-byte prefix, refused unless the file holds it.
fn header_len(path: &Path, prefix: [u8; 8], size: u64) -> Result<u64> {
    let n = u64::from_le_bytes(prefix);
    if n > MAX_HEADER_BYTES || n > size - 8 {
        return Err(bad(
            path,
            format!(
                "header length {n} (the file has {} bytes after it; at most {MAX_HEADER_BYTES})",
                size - 8
            ),
        ));
    }
    Ok(n)
}

/// The header's tensors must tile the `data_len` bytes after it exactly, in offset order,
/// each as long as its shape and dtype say.
fn check_header(path: &Path, header: &[u8], data_len: u64) -> Result<()> {
    let json: serde_json::Map<String, Value> = serde_json::from_slice(header)
        .map_err(|e| bad(path, format!("header is not a JSON object: {e}")))?;
    let mut extents = Vec::with_capacity(json.len());
    for (name, info) in &json {
        if name == "__metadata__" {
            continue;
        }
        let field = |what: &str| bad(path, format!("tensor `{name}`: {what}"));
        let bits = info["dtype"]
            .as_str()
            .and_then(dtype_bits)
            .ok_or_else(|| field("unknown or missing dtype"))?;
        let elements = info["shape"]
            .as_array()
            .ok_or_else(|| field("missing shape"))?
            .iter()
            .try_fold(1u64, |n, d| n.checked_mul(d.as_u64()?))
            .ok_or_else(|| field("shape is not a list of sizes, or too large"))?;
        let bytes = elements
            .checked_mul(bits)
            .filter(|b| b % 8 == 0)
            .map(|b| b / 8)
            .ok_or_else(|| field("size is not a whole number of bytes"))?;
        let offsets = info["data_offsets"].as_array().map(Vec::as_slice);
        let Some([start, end]) = offsets else {
            return Err(field("data_offsets is not [start, end]"));
        };
        let (Some(start), Some(end)) = (start.as_u64(), end.as_u64()) else {
            return Err(field("data_offsets is not [start, end]"));
        };
        if end.checked_sub(start) != Some(bytes) {
            return Err(field(&format!(
                "data_offsets [{start}, {end}] do not hold its {bytes} bytes"
            )));
        }
        extents.push((start, end, name));
    }
    extents.sort();
    let mut next = 0;
    for (start, end, name) in extents {
        if start != next {
            return Err(bad(
                path,
                format!("tensor `{name}` starts at {start}, expected {next}"),
            ));
        }
        next = end;
    }
    if next != data_len {
        return Err(bad(
            path,
            format!("the tensors hold {next} bytes but {data_len} follow the header"),
        ));
    }
    Ok(())
}

/// Bits per element of each safetensors dtype.
fn dtype_bits(name: &str) -> Option<u64> {
    Some(match name {
        "F4" => 4,
        "F6_E2M3" | "F6_E3M2" => 6,
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" | "F8_E4M3FNUZ"
        | "F8_E5M2FNUZ" => 8,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "I64" | "U64" | "F64" | "C64" => 64,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: usize) -> Vec<u8> {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend(header.as_bytes());
        b.extend(vec![0u8; data]);
        b
    }

    #[test]
    fn accepts_a_valid_file_and_names_a_bad_one() {
        let ok = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[3],"data_offsets":[8,11]}}"#;
        check_bytes(Path::new("w.safetensors"), &file(ok, 11)).unwrap();
        let err = check_bytes(Path::new("w.safetensors"), &file(ok, 12))
            .unwrap_err()
            .to_string();
        assert!(err.contains("w.safetensors") && err.contains("12"), "{err}");
    }

    /// Tensors ending at 2^64 − 1 overflow the crate's unchecked end-of-data sum.
    #[test]
    fn tensors_ending_near_2_pow_64_are_refused() {
        let big = 1u128 << 61;
        let mut entries = Vec::new();
        for i in 0..8u128 {
            let (start, end) = (i * big, ((i + 1) * big).min(u64::MAX.into()));
            entries.push(format!(
                r#""t{i}":{{"dtype":"U8","shape":[{}],"data_offsets":[{start},{end}]}}"#,
                end - start
            ));
        }
        let header = format!("{{{}}}", entries.join(","));
        let err = check_bytes(Path::new("w.safetensors"), &file(&header, 0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("w.safetensors"), "{err}");
    }
}
