//! STS datasets: sentence pairs with a gold similarity score.

use std::path::Path;

use polars::prelude::*;

use crate::data::lines::{self, json_objects, num_field, parse_f64, str_field};
use crate::data::source::DataSource;
use crate::error::{Error, Result};
use crate::spec::{DatasetFormat, DatasetSpec, StsSpec};

#[derive(Debug, Clone, PartialEq)]
pub struct StsPair {
    /// Stable id: `<split>-<index>` in file order.
    pub id: String,
    pub sentence1: String,
    pub sentence2: String,
    /// Gold score scaled to [0, 1] by the spec's score range.
    pub score: f64,
}

#[derive(Debug, Clone)]
pub struct StsDataset {
    pub pairs: Vec<StsPair>,
    /// sha256 of the file read.
    pub fingerprint: String,
    pub origin: String,
}

/// A raw row before scaling: line number, sentence1, sentence2, score.
type Row = (usize, String, String, f64);

impl StsDataset {
    pub fn load(dataset: &DatasetSpec, sts: &StsSpec, source: &DataSource) -> Result<StsDataset> {
        let default_file = match dataset.format {
            DatasetFormat::StsbTsv => "sts-{split}.csv",
            _ => "{split}.jsonl",
        };
        let path = source.file(&source.split_file(dataset, default_file))?;
        let bytes = lines::read_bytes(&path)?;
        let uses_own_layout =
            dataset.format == DatasetFormat::StsbTsv && matches!(source, DataSource::Local(_));
        Ok(StsDataset {
            pairs: parse_pairs(&path, &bytes, uses_own_layout, dataset, sts)?,
            fingerprint: lines::sha256_hex(&bytes),
            origin: format!("{} ({})", source.describe(), path.display()),
        })
    }
}

/// The pairs of one STS file's (already gunzipped) bytes: STS Benchmark's own layout
/// when `stsb_layout`, else a table chosen by `path`'s extension; scores scaled by the
/// spec's range.
pub fn parse_pairs(
    path: &Path,
    bytes: &[u8],
    stsb_layout: bool,
    dataset: &DatasetSpec,
    sts: &StsSpec,
) -> Result<Vec<StsPair>> {
    let rows = if stsb_layout {
        read_stsb_tsv(path, bytes)?
    } else {
        read_table(path, bytes, sts)?
    };
    if rows.is_empty() {
        return Err(Error::input(path, "no sentence pairs"));
    }
    let [lo, hi] = sts.score_range;
    let mut pairs = Vec::with_capacity(rows.len());
    for (i, (line, sentence1, sentence2, score)) in rows.into_iter().enumerate() {
        if !(lo..=hi).contains(&score) {
            return Err(Error::record(
                path,
                line,
                &sts.score,
                format!("score {score} outside the range [{lo}, {hi}] set in the task spec"),
            ));
        }
        pairs.push(StsPair {
            id: format!("{}-{i}", dataset.split),
            sentence1,
            sentence2,
            score: (score - lo) / (hi - lo),
        });
    }
    Ok(pairs)
}

/// STS Benchmark's own files: tab-separated genre, file, year, id, score, sentence1,
/// sentence2, sometimes followed by extra columns; quotes are literal characters.
fn read_stsb_tsv(path: &Path, bytes: &[u8]) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (line, text) in lines::utf8_lines(path, bytes)? {
        let fields: Vec<&str> = text.split('\t').collect();
        let get = |i: usize, name: &str| {
            fields.get(i).copied().ok_or_else(|| {
                Error::record(
                    path,
                    line,
                    name,
                    format!("missing (line has {} columns)", fields.len()),
                )
            })
        };
        let score = parse_f64(path, line, "score", get(4, "score")?)?;
        rows.push((
            line,
            get(5, "sentence1")?.to_string(),
            get(6, "sentence2")?.to_string(),
            score,
        ));
    }
    Ok(rows)
}

/// A table with named columns; the format follows the file extension.
fn read_table(path: &Path, bytes: &[u8], sts: &StsSpec) -> Result<Vec<Row>> {
    let name = path.to_string_lossy().to_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".jsonl") || name.ends_with(".json") {
        json_objects(path, bytes)?
            .into_iter()
            .map(|(line, obj)| {
                Ok((
                    line,
                    str_field(path, line, &obj, &sts.sentence1)?,
                    str_field(path, line, &obj, &sts.sentence2)?,
                    num_field(path, line, &obj, &sts.score)?,
                ))
            })
            .collect()
    } else if name.ends_with(".tsv") || name.ends_with(".csv") {
        read_delimited(
            path,
            bytes,
            if name.ends_with(".tsv") { b'\t' } else { b',' },
            sts,
        )
    } else if name.ends_with(".parquet") {
        // polars is third-party code that may panic on a malformed file.
        crate::engine::contain::contain(|| read_parquet(path, bytes, sts))
            .map_err(|panic| Error::input(path, format!("unreadable Parquet file: {panic}")))?
    } else {
        Err(Error::input(
            path,
            "unknown table format: expected .jsonl, .tsv, .csv or .parquet (optionally .gz)",
        ))
    }
}

fn read_delimited(path: &Path, bytes: &[u8], delimiter: u8, sts: &StsSpec) -> Result<Vec<Row>> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| Error::record(path, 1, "<header>", e.to_string()))?
        .clone();
    let column = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            Error::record(
                path,
                1,
                name,
                format!(
                    "no such column (header: {})",
                    headers.iter().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    };
    let (c1, c2, cs) = (
        column(&sts.sentence1)?,
        column(&sts.sentence2)?,
        column(&sts.score)?,
    );
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            Error::record(path, line, "<line>", e.to_string())
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let cell = |c: usize, name: &str| {
            record
                .get(c)
                .map(str::to_string)
                .ok_or_else(|| Error::record(path, line, name, "missing"))
        };
        let score = parse_f64(path, line, &sts.score, &cell(cs, &sts.score)?)?;
        rows.push((
            line,
            cell(c1, &sts.sentence1)?,
            cell(c2, &sts.sentence2)?,
            score,
        ));
    }
    Ok(rows)
}

fn read_parquet(path: &Path, bytes: &[u8], sts: &StsSpec) -> Result<Vec<Row>> {
    let polars_err = |source: PolarsError| Error::Polars {
        context: format!("{}", path.display()),
        source,
    };
    let frame = ParquetReader::new(std::io::Cursor::new(bytes))
        .finish()
        .map_err(polars_err)?;
    let text_column = |name: &str| -> Result<Vec<Option<String>>> {
        let column = frame
            .column(name)
            .map_err(|_| Error::record(path, 0, name, "no such column in the parquet file"))?;
        let cast = column.cast(&DataType::String).map_err(polars_err)?;
        Ok(cast
            .str()
            .map_err(polars_err)?
            .into_iter()
            .map(|v| v.map(str::to_string))
            .collect())
    };
    let s1 = text_column(&sts.sentence1)?;
    let s2 = text_column(&sts.sentence2)?;
    let scores = frame
        .column(&sts.score)
        .map_err(|_| Error::record(path, 0, &sts.score, "no such column in the parquet file"))?
        .cast(&DataType::Float64)
        .map_err(polars_err)?;
    let scores: Vec<Option<f64>> = scores.f64().map_err(polars_err)?.into_iter().collect();
    let mut rows = Vec::with_capacity(scores.len());
    for (i, ((a, b), s)) in s1.into_iter().zip(s2).zip(scores).enumerate() {
        // Parquet has rows, not lines: report the 1-based row number.
        let row = i + 1;
        let missing = |field: &str| Error::record(path, row, field, "missing (null)");
        rows.push((
            row,
            a.ok_or_else(|| missing(&sts.sentence1))?,
            b.ok_or_else(|| missing(&sts.sentence2))?,
            s.ok_or_else(|| missing(&sts.score))?,
        ));
    }
    Ok(rows)
}
