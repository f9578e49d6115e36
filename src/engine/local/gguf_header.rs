//! The GGUF header and metadata, read defensively into candle's `Content`.
//!
//! candle's own reader trusts some fields (an alignment of 0 divides by zero, a shape's
//! element count can overflow), so this one checks everything before using it: every
//! length against the bytes left in the file (nothing is allocated by a length field),
//! array nesting depth, the alignment (a non-zero power of two), each tensor's element
//! count and byte size with checked arithmetic, and each tensor's extent inside the file.

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, TensorInfo, Value, VersionedMagic};
use candle_core::quantized::GgmlDType;

use crate::error::{Error, Result};

/// GGUF's default tensor-data alignment when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's GGML_MAX_DIMS.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays deeper than this are refused (the reader recurses per level).
const MAX_NESTING: usize = 8;

/// What is wrong with a GGUF header, and at which byte.
#[derive(Debug, thiserror::Error)]
#[error("at byte {offset}: {what}")]
pub struct Malformed {
    pub offset: u64,
    pub what: String,
}

/// Reads the header of the GGUF file at `path` (only the header: the tensor data is
/// checked to lie inside the file, not read).
pub fn read(path: &Path) -> Result<Content> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    read_content(BufReader::new(file), size).map_err(|e| not_gguf(path, e))
}

/// The same for a file already in memory (`path` only names it in errors).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Content> {
    read_content(bytes, bytes.len() as u64).map_err(|e| not_gguf(path, e))
}

fn not_gguf(path: &Path, e: Malformed) -> Error {
    Error::model(
        path.display().to_string(),
        format!("not a readable GGUF file: {e}"),
    )
}

/// A reader that knows how many bytes the file has left.
struct Bounded<R> {
    inner: R,
    pos: u64,
    size: u64,
}

impl<R: Read> Bounded<R> {
    fn fail<T>(&self, what: impl Into<String>) -> std::result::Result<T, Malformed> {
        Err(Malformed {
            offset: self.pos,
            what: what.into(),
        })
    }

    fn remaining(&self) -> u64 {
        self.size.saturating_sub(self.pos)
    }

    fn bytes<const N: usize>(&mut self) -> std::result::Result<[u8; N], Malformed> {
        let mut buf = [0u8; N];
        self.fill(&mut buf)?;
        Ok(buf)
    }

    fn fill(&mut self, buf: &mut [u8]) -> std::result::Result<(), Malformed> {
        if buf.len() as u64 > self.remaining() {
            return self.fail(format!(
                "needs {} more bytes, the file has {} left",
                buf.len(),
                self.remaining()
            ));
        }
        if let Err(e) = self.inner.read_exact(buf) {
            return self.fail(format!("cannot read: {e}"));
        }
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn u32(&mut self) -> std::result::Result<u32, Malformed> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> std::result::Result<u64, Malformed> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    /// A count or string length: u32 in GGUF v1, u64 after.
    fn length(&mut self, magic: VersionedMagic) -> std::result::Result<u64, Malformed> {
        match magic {
            VersionedMagic::GgufV1 => self.u32().map(u64::from),
            _ => self.u64(),
        }
    }

    /// A count of items at least `min_item_bytes` each, refused unless that many could
    /// fit in the rest of the file.
    fn count(
        &mut self,
        magic: VersionedMagic,
        min_item_bytes: u64,
        what: &str,
    ) -> std::result::Result<usize, Malformed> {
        let n = self.length(magic)?;
        if n.saturating_mul(min_item_bytes) > self.remaining() {
            return self.fail(format!(
                "{what} count {n} cannot fit in the {} bytes left",
                self.remaining()
            ));
        }
        usize::try_from(n).or_else(|_| self.fail(format!("{what} count {n} is too large")))
    }

    fn string(&mut self, magic: VersionedMagic) -> std::result::Result<String, Malformed> {
        let len = self.count(magic, 1, "string length")?;
        let mut buf = vec![0u8; len];
        self.fill(&mut buf)?;
        // As candle does: trailing NULs are dropped and bad UTF-8 is replaced.
        while buf.last() == Some(&0) {
            buf.pop();
        }
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    fn value(
        &mut self,
        kind: u32,
        magic: VersionedMagic,
        depth: usize,
    ) -> std::result::Result<Value, Malformed> {
        Ok(match kind {
            0 => Value::U8(u8::from_le_bytes(self.bytes()?)),
            1 => Value::I8(i8::from_le_bytes(self.bytes()?)),
            2 => Value::U16(u16::from_le_bytes(self.bytes()?)),
            3 => Value::I16(i16::from_le_bytes(self.bytes()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.bytes()?)),
            6 => Value::F32(f32::from_le_bytes(self.bytes()?)),
            7 => match self.bytes::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return self.fail(format!("boolean byte {b} is neither 0 nor 1")),
            },
            8 => Value::String(self.string(magic)?),
            9 => {
                if depth >= MAX_NESTING {
                    return self.fail(format!("arrays nested deeper than {MAX_NESTING}"));
                }
                let item_kind = self.u32()?;
                let min = min_value_bytes(item_kind, magic)
                    .map_or_else(|| self.fail(format!("unknown value type {item_kind}")), Ok)?;
                let n = self.count(magic, min, "array")?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(item_kind, magic, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.bytes()?)),
            12 => Value::F64(f64::from_le_bytes(self.bytes()?)),
            other => return self.fail(format!("unknown value type {other}")),
        })
    }
}

/// The fewest bytes a value of GGUF type `kind` takes on disk.
fn min_value_bytes(kind: u32, magic: VersionedMagic) -> Option<u64> {
    let length = match magic {
        VersionedMagic::GgufV1 => 4,
        _ => 8,
    };
    Some(match kind {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 => length,
        9 => 4 + length,
        10..=12 => 8,
        _ => return None,
    })
}

/// ggml's type ids (those candle reads).
fn ggml_dtype(id: u32) -> Option<GgmlDType> {
    Some(match id {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        9 => GgmlDType::Q8_1,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        15 => GgmlDType::Q8K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}

/// A tensor as the header describes it, before its extent is checked.
struct Described {
    name: String,
    info: TensorInfo,
    bytes: u64,
    at: u64,
}

fn read_content<R: Read>(inner: R, size: u64) -> std::result::Result<Content, Malformed> {
    let mut r = Bounded {
        inner,
        pos: 0,
        size,
    };
    let magic = match r.u32()? {
        // "GGUF" as written; candle also takes the byte-swapped form.
        0x4655_4747 | 0x4747_5546 => match r.u32()? {
            1 => VersionedMagic::GgufV1,
            2 => VersionedMagic::GgufV2,
            3 => VersionedMagic::GgufV3,
            v => return r.fail(format!("unsupported GGUF version {v}")),
        },
        m => return r.fail(format!("no GGUF magic (found 0x{m:08x})")),
    };
    let length = min_value_bytes(8, magic).unwrap_or(8);
    // Smallest tensor info: name length, n_dims, type, offset.
    let tensor_count = r.count(magic, length + 16, "tensor")?;
    // Smallest metadata entry: key length, value type, one byte of value.
    let kv_count = r.count(magic, length + 5, "metadata")?;

    let mut metadata = HashMap::new();
    let mut alignment_at = 0;
    for _ in 0..kv_count {
        let at = r.pos;
        let key = r.string(magic)?;
        if key == "general.alignment" {
            alignment_at = at;
        }
        let kind = r.u32()?;
        let value = r.value(kind, magic, 0)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(Malformed {
                offset: at,
                what: format!("metadata key `{key}` appears twice"),
            });
        }
    }

    let mut described = Vec::new();
    for _ in 0..tensor_count {
        described.push(tensor_info(&mut r, magic)?);
    }

    let alignment = alignment(&metadata).map_err(|what| Malformed {
        offset: alignment_at,
        what,
    })?;
    let data_offset = r
        .pos
        .checked_next_multiple_of(alignment)
        .ok_or_else(|| Malformed {
            offset: r.pos,
            what: "tensor data offset overflows".into(),
        })?;

    let mut tensor_infos = HashMap::new();
    for t in described {
        let bad = |what: String| Malformed { offset: t.at, what };
        if t.info.offset % alignment != 0 {
            return Err(bad(format!(
                "tensor `{}` offset {} is not a multiple of the alignment {alignment}",
                t.name, t.info.offset
            )));
        }
        let end = data_offset
            .checked_add(t.info.offset)
            .and_then(|start| start.checked_add(t.bytes));
        if end.is_none_or(|end| end > size) {
            return Err(bad(format!(
                "tensor `{}` ({} bytes at data offset {}) extends past the end of the file ({size} bytes)",
                t.name, t.bytes, t.info.offset
            )));
        }
        if tensor_infos.contains_key(&t.name) {
            return Err(bad(format!("tensor `{}` appears twice", t.name)));
        }
        tensor_infos.insert(t.name, t.info);
    }
    Ok(Content {
        magic,
        metadata,
        tensor_infos,
        tensor_data_offset: data_offset,
    })
}

/// One tensor info: name, dimensions (GGUF lists the fastest-varying first; candle's
/// shapes list it last), ggml type and offset.
fn tensor_info<R: Read>(
    r: &mut Bounded<R>,
    magic: VersionedMagic,
) -> std::result::Result<Described, Malformed> {
    let at = r.pos;
    let name = r.string(magic)?;
    let n_dims = r.u32()?;
    if n_dims > MAX_DIMS {
        return r.fail(format!(
            "tensor `{name}` has {n_dims} dimensions (at most {MAX_DIMS})"
        ));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        let d = r.length(magic)?;
        let d = usize::try_from(d).or_else(|_| r.fail(format!("tensor `{name}` dimension {d}")))?;
        dims.push(d);
    }
    let type_id = r.u32()?;
    let dtype = ggml_dtype(type_id).map_or_else(
        || r.fail(format!("tensor `{name}` has unknown type {type_id}")),
        Ok,
    )?;
    let offset = r.u64()?;
    let block = dtype.block_size();
    if dims.first().is_some_and(|&row| row % block != 0) {
        return r.fail(format!(
            "tensor `{name}` rows of {} are not whole blocks of {block} ({dtype:?})",
            dims[0]
        ));
    }
    let bytes = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .and_then(|elements| (elements / block).checked_mul(dtype.type_size()))
        .and_then(|b| u64::try_from(b).ok());
    let Some(bytes) = bytes else {
        return r.fail(format!(
            "tensor `{name}` of shape {dims:?} is larger than memory"
        ));
    };
    dims.reverse();
    Ok(Described {
        name,
        info: TensorInfo {
            ggml_dtype: dtype,
            shape: dims.into(),
            offset,
        },
        bytes,
        at,
    })
}

/// `general.alignment`: a non-zero power of two; any integer type is accepted.
fn alignment(metadata: &HashMap<String, Value>) -> std::result::Result<u64, String> {
    let value = match metadata.get("general.alignment") {
        None => return Ok(DEFAULT_ALIGNMENT),
        Some(v) => v,
    };
    let n: Option<u64> = match *value {
        Value::U8(v) => Some(v.into()),
        Value::U16(v) => Some(v.into()),
        Value::U32(v) => Some(v.into()),
        Value::U64(v) => Some(v),
        Value::I8(v) => u64::try_from(v).ok(),
        Value::I16(v) => u64::try_from(v).ok(),
        Value::I32(v) => u64::try_from(v).ok(),
        Value::I64(v) => u64::try_from(v).ok(),
        _ => None,
    };
    match n {
        Some(n) if n.is_power_of_two() => Ok(n),
        _ => Err(format!(
            "general.alignment {value:?} is not a non-zero power of two"
        )),
    }
}

/// The longest context a model may declare: candle's qwen2/qwen3 build rotary tables of
/// this many positions up front.
const MAX_CONTEXT: u64 = 1 << 21;

/// The hyperparameters candle's GGUF models divide by or size allocations by, checked
/// against the tensors present: a crafted header must not divide by zero or ask for a
/// table of 2^32 layers. `Err` says which key is implausible.
pub fn check_sizes(content: &Content, arch: &str) -> std::result::Result<(), String> {
    let tensors = content.tensor_infos.len() as u64;
    let widest = content
        .tensor_infos
        .values()
        .flat_map(|t| t.shape.dims().iter().copied())
        .max()
        .unwrap_or(0) as u64;
    let get = |key: &str| {
        let key = format!("{arch}.{key}");
        let value = content.metadata.get(&key).and_then(|v| v.to_u64().ok());
        (key, value)
    };
    for key in ["block_count", "expert_count", "expert_used_count"] {
        if let (key, Some(n)) = get(key) {
            if n > tensors {
                return Err(format!("{key} = {n} but the file has {tensors} tensors"));
            }
        }
    }
    let widths = [
        "embedding_length",
        "feed_forward_length",
        "rope.dimension_count",
        "attention.key_length",
        "attention.value_length",
        "attention.head_count",
        "attention.head_count_kv",
    ];
    for key in widths {
        if let (key, Some(n)) = get(key) {
            if n > widest {
                return Err(format!(
                    "{key} = {n} but no tensor dimension is larger than {widest}"
                ));
            }
        }
    }
    let (heads_key, heads) = get("attention.head_count");
    let (kv_key, kv_heads) = get("attention.head_count_kv");
    if heads == Some(0) || kv_heads == Some(0) {
        return Err(format!("{heads_key} and {kv_key} must be at least 1"));
    }
    if let (Some(h), Some(kv)) = (heads, kv_heads) {
        if h % kv != 0 {
            return Err(format!(
                "{heads_key} = {h} is not a multiple of {kv_key} = {kv}"
            ));
        }
    }
    if let (Some(h), (embd_key, Some(embd))) = (heads, get("embedding_length")) {
        if h > embd {
            return Err(format!("{heads_key} = {h} exceeds {embd_key} = {embd}"));
        }
    }
    if let (key, Some(n)) = get("context_length") {
        if n > MAX_CONTEXT {
            return Err(format!("{key} = {n} is above {MAX_CONTEXT}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v3 header with the given metadata entries (already encoded) and no tensors.
    fn header(entries: &[&[u8]]) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend((entries.len() as u64).to_le_bytes());
        for e in entries {
            b.extend_from_slice(e);
        }
        b
    }

    fn entry(key: &str, kind: u32, value: &[u8]) -> Vec<u8> {
        let mut b = (key.len() as u64).to_le_bytes().to_vec();
        b.extend(key.as_bytes());
        b.extend(kind.to_le_bytes());
        b.extend(value);
        b
    }

    #[test]
    fn zero_alignment_is_an_error_not_a_division_by_zero() {
        let bytes = header(&[&entry("general.alignment", 4, &0u32.to_le_bytes())]);
        let err = parse(Path::new("m.gguf"), &bytes).unwrap_err().to_string();
        assert!(
            err.contains("m.gguf") && err.contains("power of two"),
            "{err}"
        );
    }

    #[test]
    fn a_huge_array_count_is_refused_before_allocating() {
        let mut value = 0u32.to_le_bytes().to_vec();
        value.extend(u64::MAX.to_le_bytes());
        let bytes = header(&[&entry("a", 9, &value)]);
        let err = parse(Path::new("m.gguf"), &bytes).unwrap_err().to_string();
        assert!(err.contains("array count"), "{err}");
    }
}
