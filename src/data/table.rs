//! Generic tables for the families whose datasets are rows of named fields
//! (classification, pair classification, clustering, summarization): JSONL, CSV/TSV with
//! or without a header, or Parquet, chosen by file extension. Every row keeps its line
//! number, so a bad value is reported with file, line and field.

use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde_json::{Map, Value};

use crate::data::lines::{self, json_objects, num_field, str_field};
use crate::data::source::DataSource;
use crate::error::{Error, Result};
use crate::spec::{DatasetSpec, SubsetSpec};

/// One file of a dataset, read.
#[derive(Debug, Clone)]
pub struct Table {
    pub path: PathBuf,
    /// sha256 of the file's bytes.
    pub fingerprint: String,
    pub rows: Vec<Row>,
}

/// One record with its 1-based line (row number for Parquet).
#[derive(Debug, Clone)]
pub struct Row {
    pub line: usize,
    pub fields: Map<String, Value>,
}

impl Table {
    /// The file holding `split` (of `subset`, if any) from the spec's layout.
    pub fn load(
        source: &DataSource,
        dataset: &DatasetSpec,
        split: &str,
        subset: Option<&SubsetSpec>,
    ) -> Result<Table> {
        let pattern = match source {
            DataSource::Hub(_) => dataset.hub_file.as_deref().or(dataset.file.as_deref()),
            DataSource::Local(_) => dataset.file.as_deref(),
        }
        .unwrap_or("{split}.jsonl");
        let subset_value = subset.map(|s| match source {
            DataSource::Local(_) => s.local.as_deref().unwrap_or(&s.name),
            DataSource::Hub(_) => &s.name,
        });
        let relative = pattern
            .replace("{split}", split)
            .replace("{subset}", subset_value.unwrap_or(""));
        let path = source.file(&relative)?;
        let mut table = Table::read(&path, dataset)?;
        if matches!(source, DataSource::Hub(_)) && !dataset.hub_rename.is_empty() {
            for row in &mut table.rows {
                for (from, to) in &dataset.hub_rename {
                    if let Some(v) = row.fields.remove(from) {
                        row.fields.insert(to.clone(), v);
                    }
                }
            }
        }
        Ok(table)
    }

    /// Reads one table file.
    pub fn read(path: &Path, dataset: &DatasetSpec) -> Result<Table> {
        let bytes = lines::read_bytes(path)?;
        Table::parse(path, &bytes, dataset)
    }

    /// A table file's (already gunzipped) bytes; `path` names it in errors and chooses
    /// the format by its extension.
    pub fn parse(path: &Path, bytes: &[u8], dataset: &DatasetSpec) -> Result<Table> {
        let name = path.to_string_lossy().to_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        let rows = if name.ends_with(".jsonl") || name.ends_with(".json") {
            json_objects(path, bytes)?
                .into_iter()
                .map(|(line, fields)| Row { line, fields })
                .collect()
        } else if name.ends_with(".parquet") {
            // polars is third-party code that may panic on a malformed file.
            crate::engine::contain::contain(|| read_parquet(path, bytes)).map_err(|panic| {
                Error::input(path, format!("unreadable Parquet file: {panic}"))
            })??
        } else {
            let delimiter = match dataset.delimiter {
                Some(c) if c.is_ascii() => c as u8,
                Some(c) => {
                    return Err(Error::input(
                        path,
                        format!("delimiter `{c}` set in the task spec is not a single-byte character"),
                    ))
                }
                None if name.ends_with(".csv") => b',',
                None if name.ends_with(".tsv") || name.ends_with(".txt") => b'\t',
                None => {
                    return Err(Error::input(
                        path,
                        "unknown table format: expected .jsonl, .csv, .tsv, .txt or .parquet (optionally .gz), or set `delimiter` in the task spec",
                    ))
                }
            };
            read_delimited(path, bytes, delimiter, dataset)?
        };
        if rows.is_empty() {
            return Err(Error::input(path, "no rows"));
        }
        Ok(Table {
            path: path.to_path_buf(),
            fingerprint: lines::sha256_hex(bytes),
            rows,
        })
    }

    /// A required text field of one row.
    pub fn text(&self, row: &Row, field: &str) -> Result<String> {
        str_field(&self.path, row.line, &row.fields, field)
    }

    /// A required number field of one row.
    pub fn number(&self, row: &Row, field: &str) -> Result<f64> {
        num_field(&self.path, row.line, &row.fields, field)
    }

    /// A list field of one row, each element read by `each` (which gets the element's
    /// field name, `field[i]`).
    pub fn list<T>(
        &self,
        row: &Row,
        field: &str,
        each: impl Fn(&Value, &str) -> Result<T>,
    ) -> Result<Vec<T>> {
        match row.fields.get(field) {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| each(v, &format!("{field}[{i}]")))
                .collect(),
            None | Some(Value::Null) => Err(Error::record(&self.path, row.line, field, "missing")),
            Some(_) => Err(Error::record(
                &self.path,
                row.line,
                field,
                "expected a list",
            )),
        }
    }

    /// A list of strings.
    pub fn texts(&self, row: &Row, field: &str) -> Result<Vec<String>> {
        self.list(row, field, |v, name| match v {
            Value::String(s) => Ok(s.clone()),
            _ => Err(Error::record(
                &self.path,
                row.line,
                name,
                "expected a string",
            )),
        })
    }

    /// A list of finite numbers.
    pub fn numbers(&self, row: &Row, field: &str) -> Result<Vec<f64>> {
        self.list(row, field, |v, name| {
            v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
                Error::record(&self.path, row.line, name, "expected a finite number")
            })
        })
    }
}

fn read_delimited(
    path: &Path,
    bytes: &[u8],
    delimiter: u8,
    dataset: &DatasetSpec,
) -> Result<Vec<Row>> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .quoting(dataset.quoting)
        .has_headers(dataset.columns.is_none())
        .flexible(true)
        .from_reader(bytes);
    let names: Vec<String> = match &dataset.columns {
        Some(columns) => columns.clone(),
        None => reader
            .headers()
            .map_err(|e| Error::record(path, 1, "<header>", e.to_string()))?
            .iter()
            .map(str::to_string)
            .collect(),
    };
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            Error::record(path, line, "<line>", e.to_string())
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        // A headerless file may carry unnamed trailing fields; a header names them all.
        let fits = match &dataset.columns {
            Some(_) => record.len() >= names.len(),
            None => record.len() == names.len(),
        };
        if !fits {
            return Err(Error::record(
                path,
                line,
                "<line>",
                format!(
                    "{} fields where the {} has {} ({})",
                    record.len(),
                    if dataset.columns.is_some() {
                        "task spec's `columns`"
                    } else {
                        "header"
                    },
                    names.len(),
                    names.join(", ")
                ),
            ));
        }
        let fields = names
            .iter()
            .zip(record.iter())
            .map(|(n, v)| (n.clone(), Value::String(v.to_string())))
            .collect();
        rows.push(Row { line, fields });
    }
    Ok(rows)
}

/// Parquet rows as JSON objects: strings, numbers, booleans and lists of them.
fn read_parquet(path: &Path, bytes: &[u8]) -> Result<Vec<Row>> {
    let polars_err = |source: PolarsError| Error::Polars {
        context: format!("{}", path.display()),
        source,
    };
    let frame = ParquetReader::new(std::io::Cursor::new(bytes))
        .finish()
        .map_err(polars_err)?;
    let mut rows: Vec<Row> = (0..frame.height())
        .map(|i| Row {
            line: i + 1,
            fields: Map::new(),
        })
        .collect();
    for column in frame.columns() {
        let series = column.as_materialized_series();
        for (i, row) in rows.iter_mut().enumerate() {
            let value = series.get(i).map_err(polars_err)?;
            row.fields
                .insert(column.name().to_string(), any_to_json(&value));
        }
    }
    Ok(rows)
}

fn any_to_json(value: &AnyValue) -> Value {
    match value {
        AnyValue::Null => Value::Null,
        AnyValue::Boolean(b) => Value::Bool(*b),
        AnyValue::String(s) => Value::String(s.to_string()),
        AnyValue::StringOwned(s) => Value::String(s.to_string()),
        AnyValue::List(series) => Value::Array(
            (0..series.len())
                .map(|i| series.get(i).map_or(Value::Null, |v| any_to_json(&v)))
                .collect(),
        ),
        other => match other.extract::<i64>() {
            Some(i) if other.is_integer() => Value::from(i),
            _ => other
                .extract::<f64>()
                .and_then(serde_json::Number::from_f64)
                .map_or(Value::Null, Value::Number),
        },
    }
}
