//! Loading the reference fixtures of `tests/fixtures/mteb_metrics` (written by the
//! two Python scripts there).
//!
//! serde_json's default float parsing can be one ulp off for 17-digit numbers, and
//! some checks compare floats exactly, so every number is re-parsed from its JSON
//! text with Rust's correctly rounded parser (through serde_json's `RawValue`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use serde_json::value::RawValue;
use serde_json::Value;

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mteb_metrics")
        .join(name)
}

/// A fixture's bytes, gunzipped when the name ends in `.gz`.
pub fn bytes(name: &str) -> Vec<u8> {
    let raw = std::fs::read(path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"));
    if !name.ends_with(".gz") {
        return raw;
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .expect("gzip");
    out
}

/// A JSON fixture (`name` with its extension). Python's bare `NaN` tokens, which
/// JSON does not allow, become `null`.
pub fn json(name: &str) -> Value {
    let text = String::from_utf8(bytes(name)).expect("utf-8");
    let text = text.replace("NaN", "null");
    let raw: &RawValue = serde_json::from_str(&text).expect("json");
    exact(raw)
}

/// `name.json.gz`.
pub fn load(name: &str) -> Value {
    json(&format!("{name}.json.gz"))
}

fn exact(raw: &RawValue) -> Value {
    let text = raw.get().trim();
    match text.as_bytes().first() {
        Some(b'{') => {
            let map: BTreeMap<String, &RawValue> = serde_json::from_str(text).expect("object");
            Value::Object(map.into_iter().map(|(k, v)| (k, exact(v))).collect())
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).expect("array");
            Value::Array(items.into_iter().map(exact).collect())
        }
        Some(b'-' | b'0'..=b'9') => number(text),
        _ => serde_json::from_str(text).expect("scalar"),
    }
}

fn number(text: &str) -> Value {
    let is_float = text.contains(['.', 'e', 'E']);
    if !is_float {
        if let Ok(v) = text.parse::<u64>() {
            return Value::from(v);
        }
        if let Ok(v) = text.parse::<i64>() {
            return Value::from(v);
        }
    }
    let v: f64 = text.parse().expect("number");
    Value::from(v)
}

/// A float, with JSON null standing for NaN.
pub fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

pub fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(f).collect()
}

pub fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("unsigned") as usize)
        .collect()
}

pub fn i64s(v: &Value) -> Vec<i64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_i64().expect("integer"))
        .collect()
}

/// Rows of f32 stored as their uint32 bit patterns.
pub fn matrix(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|row| {
            row.as_array()
                .expect("row")
                .iter()
                .map(|b| f32::from_bits(b.as_u64().expect("bits") as u32))
                .collect()
        })
        .collect()
}

/// |a - b|, two NaNs counting as equal.
pub fn diff(a: f64, b: f64) -> f64 {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => 0.0,
        (false, false) => (a - b).abs(),
        _ => f64::INFINITY,
    }
}

/// Checks values against a tolerance and remembers the largest difference seen,
/// printed by `report` (run with `--nocapture` to see it).
pub struct MaxDiff {
    label: &'static str,
    max: f64,
}

impl MaxDiff {
    pub fn new(label: &'static str) -> Self {
        MaxDiff { label, max: 0.0 }
    }

    pub fn check(&mut self, got: f64, want: f64, tol: f64, what: &str) {
        let d = diff(got, want);
        assert!(
            d <= tol,
            "{}: {what}: got {got}, want {want} (diff {d})",
            self.label
        );
        self.max = self.max.max(d);
    }

    pub fn report(&self) {
        println!("max abs diff [{}]: {:e}", self.label, self.max);
    }
}

/// The order-sensitive checksum the fixture script stores for long label lists.
pub fn checksum(values: &[usize]) -> u64 {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| ((i as u64 + 1) * (v as u64 + 1)) % 1_000_000_007)
        .fold(0, |a, b| (a + b) % 1_000_000_007)
}

/// The synthetic classification data set: float32 rows exactly as the Python
/// side builds them (`int16 / 30000` in float32).
pub struct Blobs {
    pub dim: usize,
    pub train: Vec<Vec<f32>>,
    pub train_labels: Vec<i64>,
    pub test: Vec<Vec<f32>>,
    pub test_labels: Vec<i64>,
}

pub fn load_blobs() -> Blobs {
    let b = bytes("blobs.bin.gz");
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize;
    let (n_train, n_test, dim, quant) = (u32_at(0), u32_at(4), u32_at(8), u32_at(12));
    let u16_at = |o: usize| u16::from_le_bytes(b[o..o + 2].try_into().unwrap());
    let labels = |start: usize, n: usize| -> Vec<i64> {
        (0..n).map(|i| i64::from(u16_at(start + 2 * i))).collect()
    };
    let train_labels = labels(16, n_train);
    let test_labels = labels(16 + 2 * n_train, n_test);
    let q = quant as f32;
    let rows = |start: usize, n: usize| -> Vec<Vec<f32>> {
        (0..n)
            .map(|r| {
                (0..dim)
                    .map(|c| {
                        let o = start + 2 * (r * dim + c);
                        f32::from(i16::from_le_bytes(b[o..o + 2].try_into().unwrap())) / q
                    })
                    .collect()
            })
            .collect()
    };
    let train_start = 16 + 2 * (n_train + n_test);
    Blobs {
        dim,
        train: rows(train_start, n_train),
        train_labels,
        test: rows(train_start + 2 * n_train * dim, n_test),
        test_labels,
    }
}
