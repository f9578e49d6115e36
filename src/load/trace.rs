//! Recorded traffic to replay (`assay bench --trace`): when each request arrived and how
//! long its input and output were.
//!
//! - Mooncake's JSONL: `{"timestamp": ms, "input_length": n, "output_length": m,
//!   "hash_ids": [...]}`. Each hash id names a 512-token block of the prompt; equal ids are
//!   equal blocks, so a replay that gives every id its own fixed text keeps the trace's
//!   shared prefixes (and what a prefix cache makes of them).
//! - CSV with a header: a time column (`timestamp` in seconds or as a date-time such as
//!   Azure's `2023-11-16 18:15:46.6805900`, or `timestamp_ms`), an input-length column
//!   (`input_tokens`, `input_length`, `prompt_tokens` or Azure's `ContextTokens`) and an
//!   output-length column (`output_tokens`, `output_length`, `completion_tokens` or
//!   `GeneratedTokens`); names are matched without case.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Tokens in one Mooncake hash block.
pub const MOONCAKE_BLOCK_TOKENS: usize = 512;

/// One recorded request.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRow {
    /// Seconds after the trace's first request.
    pub at: f64,
    pub input_tokens: usize,
    pub output_tokens: u32,
    /// Mooncake's prompt blocks (empty for a CSV trace).
    pub blocks: Vec<u64>,
}

/// What `run.json` says about a replayed trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceInfo {
    pub file: String,
    pub format: String,
    pub requests: usize,
    /// Seconds from the first to the last recorded arrival, before scaling.
    pub span_seconds: f64,
    /// Gaps between arrivals are multiplied by this (0.5: twice as fast).
    pub time_scale: f64,
}

/// Reads a trace: `.jsonl` as Mooncake's format, anything else as CSV. Rows come back in
/// arrival order, times counted from the first.
pub fn read(path: &Path) -> Result<(Vec<TraceRow>, &'static str)> {
    let body = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let jsonl = path.extension().is_some_and(|e| e == "jsonl");
    let (mut rows, format) = if jsonl {
        (read_mooncake(path, &body)?, "mooncake-jsonl")
    } else {
        (read_csv(path, &body)?, "csv")
    };
    if rows.is_empty() {
        return Err(Error::input(path, "the trace holds no requests"));
    }
    rows.sort_by(|a, b| a.at.total_cmp(&b.at));
    let first = rows[0].at;
    for row in &mut rows {
        row.at -= first;
    }
    Ok((rows, format))
}

fn read_mooncake(path: &Path, body: &str) -> Result<Vec<TraceRow>> {
    let mut rows = Vec::new();
    for (i, line) in body.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |field: &str, why: &str| Error::record(path, i + 1, field, why.to_string());
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad("(line)", &format!("not JSON: {e}")))?;
        let number = |field: &str| {
            value[field]
                .as_f64()
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad(field, "missing, or not a number"))
        };
        let count = |field: &str| {
            value[field]
                .as_u64()
                .ok_or_else(|| bad(field, "missing, or not a whole number of tokens"))
        };
        let blocks = match &value["hash_ids"] {
            serde_json::Value::Null => Vec::new(),
            ids => ids
                .as_array()
                .and_then(|a| a.iter().map(|v| v.as_u64()).collect::<Option<Vec<_>>>())
                .ok_or_else(|| bad("hash_ids", "not a list of block ids"))?,
        };
        rows.push(TraceRow {
            at: number("timestamp")? / 1e3,
            input_tokens: count("input_length")? as usize,
            output_tokens: count("output_length")?.min(u64::from(u32::MAX)) as u32,
            blocks,
        });
    }
    Ok(rows)
}

/// Which CSV columns hold what.
struct Columns {
    time: usize,
    time_in_ms: bool,
    input: usize,
    output: usize,
}

fn columns(path: &Path, header: &csv::StringRecord) -> Result<Columns> {
    let find = |names: &[&str]| {
        header
            .iter()
            .position(|h| names.iter().any(|n| h.trim().eq_ignore_ascii_case(n)))
    };
    let missing = |what: &str, names: &[&str]| {
        Error::record(
            path,
            1,
            what,
            format!("no column named any of {}", names.join(", ")),
        )
    };
    const TIME: &[&str] = &["timestamp", "time", "arrival_time"];
    const INPUT: &[&str] = &[
        "input_tokens",
        "input_length",
        "prompt_tokens",
        "contexttokens",
    ];
    const OUTPUT: &[&str] = &[
        "output_tokens",
        "output_length",
        "completion_tokens",
        "generatedtokens",
    ];
    let (time, time_in_ms) = match (find(TIME), find(&["timestamp_ms"])) {
        (Some(c), _) => (c, false),
        (None, Some(c)) => (c, true),
        (None, None) => return Err(missing("timestamp", &[TIME, &["timestamp_ms"]].concat())),
    };
    Ok(Columns {
        time,
        time_in_ms,
        input: find(INPUT).ok_or_else(|| missing("input_tokens", INPUT))?,
        output: find(OUTPUT).ok_or_else(|| missing("output_tokens", OUTPUT))?,
    })
}

fn read_csv(path: &Path, body: &str) -> Result<Vec<TraceRow>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(body.as_bytes());
    let header = reader
        .headers()
        .map_err(|e| Error::record(path, 1, "(header)", e.to_string()))?
        .clone();
    let cols = columns(path, &header)?;
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| Error::record(path, line, "(line)", e.to_string()))?;
        let cell = |c: usize| record.get(c).unwrap_or("").trim();
        let name = |c: usize| header.get(c).unwrap_or("?").trim().to_string();
        let at = parse_time(cell(cols.time)).ok_or_else(|| {
            Error::record(
                path,
                line,
                name(cols.time),
                format!(
                    "`{}`: expected seconds or a date-time (YYYY-MM-DD HH:MM:SS[.f])",
                    cell(cols.time)
                ),
            )
        })?;
        let count = |c: usize| {
            cell(c).parse::<u64>().map_err(|_| {
                Error::record(
                    path,
                    line,
                    name(c),
                    format!("`{}`: expected a whole number of tokens", cell(c)),
                )
            })
        };
        rows.push(TraceRow {
            at: if cols.time_in_ms { at / 1e3 } else { at },
            input_tokens: count(cols.input)? as usize,
            output_tokens: count(cols.output)?.min(u64::from(u32::MAX)) as u32,
            blocks: Vec::new(),
        });
    }
    Ok(rows)
}

/// Seconds as a number, or a date-time as seconds since the Unix epoch. Fractions longer
/// than nanoseconds (Azure writes seven digits) are cut to nanoseconds.
fn parse_time(text: &str) -> Option<f64> {
    if let Ok(seconds) = text.parse::<f64>() {
        return seconds.is_finite().then_some(seconds);
    }
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) if f.chars().all(|c| c.is_ascii_digit()) => (w, f),
        _ => (text, ""),
    };
    let fraction: String = format!("{fraction:0<9}").chars().take(9).collect();
    let base = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(whole.trim_end_matches('Z'), f).ok())?;
    let nanos: f64 = fraction.parse::<u32>().ok()?.into();
    Some(base.and_utc().timestamp() as f64 + nanos / 1e9)
}

/// Mean arrival rate of a replay at `time_scale` (requests per second).
pub fn mean_rate(rows: &[TraceRow], time_scale: f64) -> f64 {
    let span = rows.last().map_or(0.0, |r| r.at) * time_scale;
    if span > 0.0 {
        (rows.len() - 1).max(1) as f64 / span
    } else {
        f64::INFINITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, body: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        (dir, path)
    }

    #[test]
    fn mooncake_lines_give_seconds_from_the_first_and_keep_blocks() {
        let (_d, path) = write(
            "t.jsonl",
            "{\"timestamp\": 1500, \"input_length\": 700, \"output_length\": 20, \"hash_ids\": [0, 1]}\n\
             {\"timestamp\": 500, \"input_length\": 600, \"output_length\": 10, \"hash_ids\": [0, 2]}\n",
        );
        let (rows, format) = read(&path).unwrap();
        assert_eq!(format, "mooncake-jsonl");
        assert_eq!(rows[0].at, 0.0);
        assert_eq!(rows[0].blocks, vec![0, 2]);
        assert_eq!(rows[1].at, 1.0);
        assert_eq!((rows[1].input_tokens, rows[1].output_tokens), (700, 20));
        let (_d, bad) = write(
            "b.jsonl",
            "{\"timestamp\": 1, \"input_length\": -3, \"output_length\": 1}\n",
        );
        let e = read(&bad).unwrap_err().to_string();
        assert!(
            e.contains("b.jsonl") && e.contains(":1") && e.contains("input_length"),
            "{e}"
        );
    }

    #[test]
    fn csv_traces_by_seconds_milliseconds_or_azure_date_times() {
        let (_d, path) = write(
            "a.csv",
            "timestamp,input_tokens,output_tokens\n0.5,100,10\n2.0,50,5\n",
        );
        let (rows, _) = read(&path).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.at).collect::<Vec<_>>(),
            vec![0.0, 1.5]
        );
        let (_d, path) = write(
            "m.csv",
            "timestamp_ms,prompt_tokens,completion_tokens\n1000,1,2\n1250,3,4\n",
        );
        let (rows, _) = read(&path).unwrap();
        assert_eq!(rows[1].at, 0.25);
        // Azure's LLM inference trace: seven-digit fractions, its own column names.
        let (_d, path) = write(
            "azure.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n\
             2023-11-16 18:15:46.6805900,374,44\n\
             2023-11-16 18:15:50.9951690,396,109\n",
        );
        let (rows, _) = read(&path).unwrap();
        assert!((rows[1].at - 4.314579).abs() < 1e-6, "{}", rows[1].at);
        assert_eq!((rows[1].input_tokens, rows[1].output_tokens), (396, 109));
        assert!((mean_rate(&rows, 0.5) - 1.0 / (4.314579 * 0.5)).abs() < 1e-6);
        let (_d, bad) = write("bad.csv", "timestamp,input_tokens,output_tokens\n1,ten,3\n");
        let e = read(&bad).unwrap_err().to_string();
        assert!(
            e.contains("bad.csv") && e.contains(":2") && e.contains("input_tokens"),
            "{e}"
        );
        let (_d, bad) = write("none.csv", "when,input_tokens,output_tokens\n1,1,1\n");
        assert!(read(&bad).unwrap_err().to_string().contains("timestamp"));
    }
}
