//! Line-oriented readers (JSONL, TSV) that keep line numbers for error messages and
//! fingerprint what they read.

use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A whole file's bytes, transparently gunzipped when the name ends in `.gz`.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if path.extension().is_some_and(|x| x == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::io(path, e))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// sha256 of bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Non-empty lines as UTF-8 with their 1-based line numbers; the first invalid line is
/// an error naming it.
pub fn utf8_lines<'a>(path: &Path, bytes: &'a [u8]) -> Result<Vec<(usize, &'a str)>> {
    let mut lines = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw).map_err(|e| {
            Error::record(
                path,
                i + 1,
                "<line>",
                format!("not valid UTF-8 (byte {})", e.valid_up_to()),
            )
        })?;
        if !line.trim().is_empty() {
            lines.push((i + 1, line));
        }
    }
    Ok(lines)
}

/// Parses each line as a JSON object.
pub fn json_objects(path: &Path, bytes: &[u8]) -> Result<Vec<(usize, Map<String, Value>)>> {
    utf8_lines(path, bytes)?
        .into_iter()
        .map(|(line, text)| match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok((line, map)),
            Ok(_) => Err(Error::record(
                path,
                line,
                "<line>",
                "expected a JSON object",
            )),
            Err(e) => Err(Error::record(
                path,
                line,
                "<line>",
                format!("invalid JSON: {e}"),
            )),
        })
        .collect()
}

/// A required string field; integer ids are accepted and turned into strings.
pub fn str_field(
    path: &Path,
    line: usize,
    obj: &Map<String, Value>,
    field: &str,
) -> Result<String> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        Some(Value::Null) | None => Err(Error::record(path, line, field, "missing")),
        Some(other) => Err(Error::record(
            path,
            line,
            field,
            format!("expected a string, found {}", type_name(other)),
        )),
    }
}

/// An optional string field (missing or null gives an empty string).
pub fn opt_str_field(
    path: &Path,
    line: usize,
    obj: &Map<String, Value>,
    field: &str,
) -> Result<String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(_) => str_field(path, line, obj, field),
    }
}

/// A required number field (numbers written as strings are accepted).
pub fn num_field(path: &Path, line: usize, obj: &Map<String, Value>, field: &str) -> Result<f64> {
    match obj.get(field) {
        Some(Value::Number(n)) => n
            .as_f64()
            .ok_or_else(|| Error::record(path, line, field, "not a finite number")),
        Some(Value::String(s)) => parse_f64(path, line, field, s),
        Some(Value::Null) | None => Err(Error::record(path, line, field, "missing")),
        Some(other) => Err(Error::record(
            path,
            line,
            field,
            format!("expected a number, found {}", type_name(other)),
        )),
    }
}

/// Parses a finite float or names the field that held something else.
pub fn parse_f64(path: &Path, line: usize, field: &str, text: &str) -> Result<f64> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(Error::record(
            path,
            line,
            field,
            format!("expected a number, found `{text}`"),
        )),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
