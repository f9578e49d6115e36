//! The report's two tables as polars frames: quality (one row per model, engine, task and
//! metric) and performance (one row per model, engine, workload and load level); written as
//! CSV, Parquet, JSON and Markdown, and printed aligned.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::load::stats::{Distribution, LevelSummary};
use crate::report::runs::{Run, RunKind};
use crate::store::run::write_atomic;

fn polars_err(context: &str) -> impl Fn(PolarsError) -> Error + '_ {
    move |source| Error::Polars {
        context: context.to_string(),
        source,
    }
}

/// One row per (model, engine, task, metric): value and bootstrap 95% CI over items; a
/// suite's aggregates follow its tasks as task `suite.<name>`.
pub fn quality(runs: &[Run]) -> Result<DataFrame> {
    let mut c = QualityColumns::default();
    for run in runs {
        let RunKind::Eval(eval) = &run.kind else {
            continue;
        };
        for task in &eval.tasks {
            let r = &task.result;
            for (metric, score) in &r.scores {
                c.model.push(run.label.clone());
                c.engine.push(run.engine.clone());
                c.run_id.push(run.run_id.clone());
                c.task.push(r.task.clone());
                c.metric.push(metric.clone());
                c.main.push(*metric == r.main_score);
                c.value.push(finite(score.value));
                c.low.push(finite(score.ci95.low));
                c.high.push(finite(score.ci95.high));
                c.items.push(r.dataset.items as u64);
            }
        }
        // A suite's aggregates as rows of task `suite.<name>` (`mean` is its main score).
        if let Some(suite) = &eval.suite {
            let items: usize = eval.tasks.iter().map(|t| t.result.dataset.items).sum();
            for (name, score) in &suite.scores {
                c.model.push(run.label.clone());
                c.engine.push(run.engine.clone());
                c.run_id.push(run.run_id.clone());
                c.task.push(format!("suite.{}", suite.name));
                c.metric.push(name.clone());
                c.main.push(name == "mean");
                c.value.push(finite(score.value));
                c.low.push(finite(score.ci95.low));
                c.high.push(finite(score.ci95.high));
                c.items.push(items as u64);
            }
        }
    }
    df!(
        "model" => c.model,
        "engine" => c.engine,
        "run_id" => c.run_id,
        "task" => c.task,
        "metric" => c.metric,
        "main" => c.main,
        "value" => c.value,
        "ci95_low" => c.low,
        "ci95_high" => c.high,
        "items" => c.items,
    )
    .map_err(polars_err("quality table"))
}

#[derive(Default)]
struct QualityColumns {
    model: Vec<String>,
    engine: Vec<String>,
    run_id: Vec<String>,
    task: Vec<String>,
    metric: Vec<String>,
    main: Vec<bool>,
    value: Vec<Option<f64>>,
    low: Vec<Option<f64>>,
    high: Vec<Option<f64>>,
    items: Vec<u64>,
}

/// One performance row: a bench load level, or the requests of an evaluation run against
/// an endpoint.
pub struct PerfRow<'a> {
    pub run: &'a Run,
    pub workload: String,
    pub level: String,
    pub offered: Option<f64>,
    pub summary: &'a LevelSummary,
    pub usd_per_mtok: Option<f64>,
    pub usd_per_1k_items: Option<f64>,
}

/// Every performance row of the runs, in run then level order.
pub fn perf_rows(runs: &[Run]) -> Vec<PerfRow<'_>> {
    let mut rows = Vec::new();
    for run in runs {
        match &run.kind {
            RunKind::Bench(bench) => {
                for level in &bench.levels {
                    let cost = level.cost(&bench.pricing);
                    rows.push(PerfRow {
                        run,
                        workload: bench.workload.kind.to_string(),
                        level: level.label.clone(),
                        offered: Some(level.offered()),
                        summary: &level.summary,
                        usd_per_mtok: cost.as_ref().and_then(|c| c.usd_per_mtok),
                        usd_per_1k_items: cost.as_ref().and_then(|c| c.usd_per_1k_items),
                    });
                }
            }
            RunKind::Eval(eval) => {
                if let Some(summary) = &eval.requests {
                    let tasks: Vec<&str> =
                        eval.tasks.iter().map(|t| t.result.task.as_str()).collect();
                    rows.push(PerfRow {
                        run,
                        workload: format!("run: {}", tasks.join("+")),
                        level: "whole run".into(),
                        offered: None,
                        summary,
                        usd_per_mtok: None,
                        usd_per_1k_items: None,
                    });
                }
            }
        }
    }
    rows
}

/// The names performance metrics go by in tables and gate rules, with how to read each
/// from a row. Latencies in milliseconds, rates per second.
pub type PerfMetric = (&'static str, fn(&PerfRow) -> Option<f64>);

pub const PERF_METRICS: &[PerfMetric] = &[
    ("requests_per_s", |r| Some(r.summary.requests_per_second)),
    ("output_tokens_per_s", |r| {
        Some(r.summary.output_tokens_per_second)
    }),
    ("goodput", |r| Some(r.summary.goodput)),
    ("error_rate", |r| Some(r.summary.error_rate)),
    ("latency_p50_ms", |r| ms(&r.summary.latency, |d| d.p50)),
    ("latency_p90_ms", |r| ms(&r.summary.latency, |d| d.p90)),
    ("latency_p99_ms", |r| ms(&r.summary.latency, |d| d.p99)),
    ("ttft_p50_ms", |r| ms(&r.summary.ttft, |d| d.p50)),
    ("ttft_p99_ms", |r| ms(&r.summary.ttft, |d| d.p99)),
    ("tpot_p50_ms", |r| ms(&r.summary.tpot, |d| d.p50)),
    ("tpot_p99_ms", |r| ms(&r.summary.tpot, |d| d.p99)),
    ("itl_p99_ms", |r| ms(&r.summary.itl, |d| d.p99)),
    ("usd_per_mtok", |r| r.usd_per_mtok),
    ("usd_per_1k_items", |r| r.usd_per_1k_items),
];

fn ms(d: &Option<Distribution>, pick: fn(&Distribution) -> f64) -> Option<f64> {
    d.as_ref().map(|d| pick(d) * 1e3)
}

/// One row per (model, engine, workload, load level).
pub fn performance(runs: &[Run]) -> Result<DataFrame> {
    let rows = perf_rows(runs);
    let text = |f: fn(&PerfRow) -> String| -> Vec<String> { rows.iter().map(f).collect() };
    let mut columns = vec![
        Column::new("model".into(), text(|r| r.run.label.clone())),
        Column::new("engine".into(), text(|r| r.run.engine.clone())),
        Column::new("run_id".into(), text(|r| r.run.run_id.clone())),
        Column::new("workload".into(), text(|r| r.workload.clone())),
        Column::new("level".into(), text(|r| r.level.clone())),
        Column::new(
            "offered".into(),
            rows.iter().map(|r| r.offered).collect::<Vec<_>>(),
        ),
        Column::new(
            "requests".into(),
            rows.iter()
                .map(|r| r.summary.requests as u64)
                .collect::<Vec<_>>(),
        ),
    ];
    for (name, read) in PERF_METRICS {
        let values: Vec<Option<f64>> = rows.iter().map(|r| read(r).and_then(finite)).collect();
        columns.push(Column::new((*name).into(), values));
    }
    DataFrame::new_infer_height(columns).map_err(polars_err("performance table"))
}

/// The quality rows of each task's main score, in the columns a reader needs.
pub fn main_scores(quality: &DataFrame) -> Result<DataFrame> {
    let err = polars_err("quality table");
    let main = quality
        .column("main")
        .map_err(&err)?
        .bool()
        .map_err(&err)?
        .clone();
    quality
        .filter(&main)
        .and_then(|f| {
            f.select([
                "model",
                "task",
                "metric",
                "value",
                "ci95_low",
                "ci95_high",
                "items",
            ])
        })
        .map_err(err)
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// Writes `<stem>.csv`, `.parquet`, `.json` and `.md`; returns the paths.
pub fn write_all(frame: &DataFrame, stem: &Path, title: &str) -> Result<Vec<PathBuf>> {
    let path = |ext: &str| stem.with_extension(ext);
    let context = stem.display().to_string();
    let mut frame = frame.clone();
    let mut csv = Vec::new();
    CsvWriter::new(&mut csv)
        .finish(&mut frame)
        .map_err(polars_err(&context))?;
    let mut parquet = Vec::new();
    ParquetWriter::new(&mut parquet)
        .finish(&mut frame)
        .map_err(polars_err(&context))?;
    let mut json = Vec::new();
    JsonWriter::new(&mut json)
        .with_json_format(JsonFormat::Json)
        .finish(&mut frame)
        .map_err(polars_err(&context))?;
    let markdown = format!("## {title}\n\n{}", markdown(&frame));
    let files = [
        (path("csv"), csv),
        (path("parquet"), parquet),
        (path("json"), json),
        (path("md"), markdown.into_bytes()),
    ];
    for (p, bytes) in &files {
        write_atomic(p, bytes)?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

/// Header and formatted cells of a frame (the numbers rounded for reading; the CSV,
/// Parquet and JSON files keep every digit).
pub fn cells(frame: &DataFrame) -> (Vec<String>, Vec<Vec<String>>) {
    let headers: Vec<String> = frame
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let rows = (0..frame.height())
        .map(|i| {
            frame
                .columns()
                .iter()
                .map(|c| format_cell(c.name(), c.get(i).unwrap_or(AnyValue::Null)))
                .collect()
        })
        .collect();
    (headers, rows)
}

fn format_cell(column: &str, value: AnyValue) -> String {
    let per_second = column.ends_with("_per_s") || column == "goodput";
    let digits = if column.ends_with("_ms") || per_second {
        1
    } else {
        4
    };
    match value {
        AnyValue::Null => "-".into(),
        AnyValue::Float64(v) if column == "offered" => format!("{v}"),
        AnyValue::Float64(v) => format!("{v:.digits$}"),
        AnyValue::Boolean(b) => if b { "yes" } else { "" }.into(),
        AnyValue::String(s) => s.to_string(),
        other => other.to_string().trim_matches('"').to_string(),
    }
}

/// A Markdown table padded so it also reads aligned in a terminal; numbers right-aligned.
pub fn markdown(frame: &DataFrame) -> String {
    let (headers, rows) = cells(frame);
    let numeric: Vec<bool> = frame
        .columns()
        .iter()
        .map(|c| c.dtype().is_primitive_numeric())
        .collect();
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(j, h)| {
            rows.iter()
                .map(|r| r[j].chars().count())
                .chain([h.chars().count(), 3])
                .max()
                .unwrap_or(3)
        })
        .collect();
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(j, c)| {
                if numeric[j] {
                    format!("{c:>w$}", w = widths[j])
                } else {
                    format!("{c:<w$}", w = widths[j])
                }
            })
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let rule: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(j, &w)| {
            if numeric[j] {
                format!("{}:", "-".repeat(w - 1))
            } else {
                "-".repeat(w)
            }
        })
        .collect();
    let mut out = line(&headers);
    out.push_str(&format!("| {} |\n", rule.join(" | ")));
    for row in &rows {
        out.push_str(&line(row));
    }
    out
}
