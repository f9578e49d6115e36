//! Reports read run records only: tables (polars), plots (plotters), the HTML page,
//! paired comparisons and the gate's inputs.

pub mod compare;
pub mod html;
pub mod plot;
pub mod runs;
pub mod table;

use std::path::{Path, PathBuf};

use polars::prelude::DataFrame;

use crate::error::Result;
use crate::report::runs::{Run, RunKind};
use crate::store::bench::saturation_of;

/// What `assay report` produced.
pub struct Written {
    pub quality: DataFrame,
    pub performance: DataFrame,
    pub files: Vec<PathBuf>,
    pub html: PathBuf,
}

/// Tables, plots and the HTML page for `runs`, into `out`.
pub fn write(runs: &[Run], out: &Path, title: &str) -> Result<Written> {
    let quality = table::quality(runs)?;
    let performance = table::performance(runs)?;
    let mut files = table::write_all(&quality, &out.join("quality"), "Quality")?;
    files.extend(table::write_all(
        &performance,
        &out.join("performance"),
        "Performance",
    )?);
    let plots = plots(runs, &out.join("plots"))?;
    let mut figures = Vec::new();
    for (caption, written) in &plots {
        if let Some(svg) = written
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == "svg"))
        {
            let text = std::fs::read_to_string(svg).map_err(|e| crate::Error::io(svg, e))?;
            figures.push(html::Figure {
                title: caption.clone(),
                svg: text,
            });
        }
        files.extend(written.iter().cloned());
    }
    let main = table::main_scores(&quality)?;
    let tables = [
        (
            "Quality: main score per task (bootstrap 95% CI over items)",
            &main,
        ),
        (
            "Performance (ms; percentiles by linear interpolation)",
            &performance,
        ),
        ("All scores", &quality),
    ]
    .into_iter()
    .filter(|(_, frame)| frame.height() > 0)
    .map(|(name, frame)| {
        let (headers, rows) = table::cells(frame);
        html::Table {
            title: name.to_string(),
            headers,
            rows,
            numeric: frame
                .columns()
                .iter()
                .map(|c| c.dtype().is_primitive_numeric())
                .collect(),
            folded: name == "All scores",
        }
    })
    .collect::<Vec<_>>();
    let page = html::render(title, &run_lines(runs), &tables, &figures)?;
    let html_path = out.join("report.html");
    crate::store::run::write_atomic(&html_path, page.as_bytes())?;
    files.push(html_path.clone());
    Ok(Written {
        quality,
        performance,
        files,
        html: html_path,
    })
}

fn run_lines(runs: &[Run]) -> Vec<html::RunLine> {
    runs.iter()
        .map(|r| {
            let (kind, detail) = match &r.kind {
                RunKind::Eval(e) => (
                    "evaluation".to_string(),
                    e.tasks
                        .iter()
                        .map(|t| format!("{} ({} items)", t.result.task, t.result.dataset.items))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                RunKind::Bench(b) => (
                    format!("bench ({})", b.workload.kind),
                    b.levels
                        .iter()
                        .map(|l| l.label.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            };
            html::RunLine {
                run_id: r.run_id.clone(),
                label: r.label.clone(),
                kind,
                model: r.model.clone(),
                detail,
            }
        })
        .collect()
}

/// Every plot the runs have data for, with its caption.
fn plots(runs: &[Run], dir: &Path) -> Result<Vec<(String, Vec<PathBuf>)>> {
    use plot::{LoadAxis, LoadCurve, LoadPoint, Samples};
    let mut out = Vec::new();
    let ms = |records: Vec<f64>| -> Vec<f64> { records.into_iter().map(|s| s * 1e3).collect() };

    // Requests of each run: a bench run's capacity level, or an evaluation run's requests.
    let mut latency = Vec::new();
    let mut ttft = Vec::new();
    let mut tpot = Vec::new();
    for run in runs {
        let (level, label) = match &run.kind {
            RunKind::Bench(b) => match b.capacity_level() {
                Some((i, l)) => (Some(i), format!("{} @ {}", run.label, l.label)),
                None => continue,
            },
            RunKind::Eval(_) => (None, run.label.clone()),
        };
        let ok: Vec<_> = run.measured(level).filter(|r| r.error.is_none()).collect();
        if ok.is_empty() {
            continue;
        }
        let series = |values: Vec<f64>| Samples {
            label: label.clone(),
            values_ms: ms(values),
        };
        latency.push(series(
            ok.iter().map(|r| crate::load::stats::latency(r)).collect(),
        ));
        let t: Vec<f64> = ok
            .iter()
            .filter_map(|r| crate::load::stats::ttft(r))
            .collect();
        if !t.is_empty() {
            ttft.push(series(t));
        }
        let t: Vec<f64> = ok
            .iter()
            .filter_map(|r| crate::load::stats::tpot(r))
            .collect();
        if !t.is_empty() {
            tpot.push(series(t));
        }
    }
    if !latency.is_empty() {
        let files = plot::latency_cdf(&dir.join("latency_cdf"), "Latency CDF", &latency)?;
        out.push((
            "Latency CDF (scheduled send to end), per engine".into(),
            files,
        ));
    }
    if !ttft.is_empty() || !tpot.is_empty() {
        let files = plot::ttft_tpot(&dir.join("ttft_tpot"), "TTFT and TPOT", &ttft, &tpot)?;
        out.push((
            "Time to first token and time per output token".into(),
            files,
        ));
    }

    for (axis, name, open) in [
        (LoadAxis::Concurrency, "throughput_vs_concurrency", false),
        (LoadAxis::RequestRate, "throughput_vs_rate", true),
    ] {
        let curves: Vec<LoadCurve> = runs
            .iter()
            .filter_map(|r| Some((r, r.bench()?)))
            .filter(|(_, b)| b.open_loop() == open && b.levels.len() > 1)
            .flat_map(|(r, b)| {
                let saturated: Vec<usize> = saturation_of(&b.levels)
                    .iter()
                    .map(|s| s.first_saturated)
                    .collect();
                // One curve per batch size of an embedding sweep over several.
                let mut batches: Vec<Option<usize>> =
                    b.levels.iter().map(|l| l.batch_size).collect();
                batches.sort();
                batches.dedup();
                let several = batches.len() > 1;
                batches
                    .into_iter()
                    .map(|batch| {
                        let mut points: Vec<LoadPoint> = b
                            .levels
                            .iter()
                            .enumerate()
                            .filter(|(_, l)| l.batch_size == batch)
                            .filter_map(|(i, l)| {
                                let d = l.summary.latency.as_ref()?;
                                Some(LoadPoint {
                                    offered: l.offered(),
                                    throughput: l.summary.requests_per_second,
                                    p50_ms: d.p50 * 1e3,
                                    p99_ms: d.p99 * 1e3,
                                    saturated: saturated.contains(&i),
                                })
                            })
                            .collect();
                        // A max-rate search probes out of order: the curve runs by load.
                        points.sort_by(|a, b| a.offered.total_cmp(&b.offered));
                        let label = match batch {
                            Some(n) if several => format!("{} (batch {n})", r.label),
                            _ => r.label.clone(),
                        };
                        LoadCurve { label, points }
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        if !curves.is_empty() {
            let title = "Throughput and latency under load";
            let files = plot::throughput_vs_load(&dir.join(name), title, axis, &curves)?;
            out.push((format!("{title} (a sizing study's curve)"), files));
        }
    }

    // The Pareto plane of generation sweeps: what a user sees against what a replica does.
    let pareto: Vec<plot::ParetoCurve> = runs
        .iter()
        .filter_map(|r| Some((r, r.bench()?)))
        .map(|(r, b)| plot::ParetoCurve {
            label: r.label.clone(),
            points: b
                .levels
                .iter()
                .filter_map(|l| {
                    let tpot = l.summary.tpot.as_ref()?.p50;
                    (tpot > 0.0).then(|| plot::ParetoPoint {
                        level: l.label.clone(),
                        per_user: 1.0 / tpot,
                        per_replica: l.summary.output_tokens_per_second,
                    })
                })
                .collect(),
        })
        .filter(|c| c.points.len() > 1)
        .collect();
    if !pareto.is_empty() {
        let title = "Tokens per user against tokens per replica";
        let files = plot::pareto(&dir.join("pareto"), title, &pareto)?;
        out.push((
            format!("{title}: a point per load level, the Pareto front joined"),
            files,
        ));
    }
    for (k, (run, bench)) in runs
        .iter()
        .filter_map(|r| Some((r, r.bench()?)))
        .enumerate()
    {
        let series = time_series(run, bench);
        let title = format!("Latency over time: {}", run.label);
        let stem = dir.join(format!("latency_over_time-{}", k + 1));
        let files = plot::latency_over_time(&stem, &title, &series)?;
        out.push((
            format!("{title} (p50 and p99 per time bucket; the server's requests beneath)"),
            files,
        ));
    }

    let scores: Vec<plot::TaskScore> = runs
        .iter()
        .filter_map(|r| Some((r, r.eval()?)))
        .flat_map(|(r, e)| {
            e.tasks.iter().filter_map(move |t| {
                let s = t.result.scores.get(&t.result.main_score)?;
                Some(plot::TaskScore {
                    task: t.result.task.clone(),
                    metric: t.result.main_score.clone(),
                    model: r.label.clone(),
                    value: s.value,
                    low: s.ci95.low,
                    high: s.ci95.high,
                })
            })
        })
        .collect();
    if !scores.is_empty() {
        let files =
            plot::scores_by_task(&dir.join("scores_by_task"), "Main score per task", &scores)?;
        out.push((
            "Main score per task with bootstrap 95% CI, per model".into(),
            files,
        ));
    }

    // Suites: each aggregate (mean per task type, overall mean) per run.
    let suite_scores: Vec<plot::TaskScore> = runs
        .iter()
        .filter_map(|r| Some((r, r.eval()?.suite.as_ref()?)))
        .flat_map(|(r, suite)| {
            suite.scores.iter().map(move |(name, s)| plot::TaskScore {
                task: match name.strip_prefix("mean[").and_then(|n| n.strip_suffix(']')) {
                    Some(family) => family.to_string(),
                    None => format!("{} ({name})", suite.name),
                },
                metric: String::new(),
                model: r.label.clone(),
                value: s.value,
                low: s.ci95.low,
                high: s.ci95.high,
            })
        })
        .collect();
    if !suite_scores.is_empty() {
        let title = "Suite aggregates: mean main score per task type, and overall";
        let files = plot::scores_by_task(&dir.join("suite_by_type"), title, &suite_scores)?;
        out.push((
            "Suite aggregates with bootstrap 95% CI (items resampled within each task), per model"
                .into(),
            files,
        ));
    }

    let points = cost_points(runs);
    if !points.is_empty() {
        let files = plot::cost_vs_quality(
            &dir.join("cost_vs_quality"),
            "Cost versus quality",
            "quality (mean main score)",
            &points,
        )?;
        out.push((
            "Cost per 1M tokens versus quality, per model and engine".into(),
            files,
        ));
    }
    Ok(out)
}

/// A point per bench run with a cost whose model also has an evaluation run: its cost at
/// capacity against the mean main score of that model's tasks.
fn cost_points(runs: &[Run]) -> Vec<plot::CostPoint> {
    let mut points = Vec::new();
    for run in runs {
        let Some(usd) = run
            .bench()
            .and_then(|b| b.cost.as_ref())
            .and_then(|c| c.usd_per_mtok)
        else {
            continue;
        };
        let mains: Vec<f64> = runs
            .iter()
            .filter(|r| r.model == run.model)
            .filter_map(|r| r.eval())
            .flat_map(|e| e.tasks.iter().filter_map(|t| t.result.main_value()))
            .collect();
        if !mains.is_empty() {
            points.push(plot::CostPoint {
                label: run.label.clone(),
                usd_per_mtok: usd,
                quality: mains.iter().sum::<f64>() / mains.len() as f64,
            });
        }
    }
    points
}

/// A bench run's requests and server readings on one timeline: seconds since its first
/// scheduled request.
fn time_series(run: &Run, bench: &crate::store::bench::BenchRecord) -> plot::TimeSeries {
    let t0 = run
        .perf
        .iter()
        .map(|p| p.record.timing.scheduled)
        .fold(f64::INFINITY, f64::min);
    let levels = bench
        .levels
        .iter()
        .enumerate()
        .map(|(i, l)| plot::TimeLevel {
            label: l.label.clone(),
            requests: run
                .perf
                .iter()
                .filter(|p| p.level == Some(i) && p.record.error.is_none())
                .map(|p| {
                    let r = &p.record;
                    (
                        r.timing.scheduled - t0,
                        crate::load::stats::latency(r) * 1e3,
                    )
                })
                .collect(),
        })
        .collect();
    let server = bench
        .levels
        .iter()
        .filter_map(|l| l.server.as_ref())
        .flat_map(|v| v.log.readings.iter())
        .map(|r| plot::ServerPoint {
            t: r.t - t0,
            running: r.running,
            queued: r.queued,
        })
        .collect();
    plot::TimeSeries { levels, server }
}
