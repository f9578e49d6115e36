//! `assay merge` for a bench spread over several generators: their requests go on one
//! timeline (each generator's origin, corrected by its measured offset to the server's
//! clock) and every level is summarised over the union: percentiles of the pooled
//! requests, never averages of per-generator percentiles; throughput over the common
//! window. Each generator's own schedule lag is kept beside the pool.

use std::path::Path;

use crate::cost::{self, Capacity};
use crate::error::{Error, Result};
use crate::eval::merge::{check_named, shard_dirs};
use crate::load::runner::LevelPlan;
use crate::load::schedule::LoadModel;
use crate::load::stats;
use crate::store::bench::{
    self, best_level, saturation_of, BenchRecord, GeneratorClock, GeneratorShare, Level, PerfLine,
    TurnSummary,
};
use crate::store::run::{Machine, ToolInfo};

/// One generator's record and requests.
struct Generator {
    record: BenchRecord,
    clock: GeneratorClock,
    perf: Vec<PerfLine>,
}

/// Merges the generators under `run_dir` into one bench record in `out`.
pub fn merge_bench(run_dir: &Path, out: &Path) -> Result<BenchRecord> {
    let mut generators = Vec::new();
    for (named, dir) in shard_dirs(run_dir, "run.json")? {
        let record = bench::read(&dir)?;
        let clock = record.generator.clone().ok_or_else(|| {
            Error::input(
                dir.join("run.json"),
                "a bench record without a generator (not run with --shard)",
            )
        })?;
        check_named(&dir, &named, &clock.shard)?;
        let perf = bench::read_perf(&dir.join("perf.jsonl"))?;
        generators.push(Generator {
            record,
            clock,
            perf,
        });
    }
    check_same_bench(run_dir, &generators)?;

    // Server time where measured, else each machine's own clock.
    let base = |g: &Generator| g.clock.origin_unix + g.clock.clock.offset.unwrap_or(0.0);
    let t0 = generators.iter().map(base).fold(f64::INFINITY, f64::min);
    let mut perf = Vec::new();
    for g in &generators {
        let shift = base(g) - t0;
        perf.extend(g.perf.iter().cloned().map(|mut line| {
            shift_times(&mut line, shift);
            line
        }));
    }

    let first = &generators[0].record;
    let slo = first.slo;
    let mut levels = Vec::new();
    for (i, level) in first.levels.iter().enumerate() {
        let pooled: Vec<&_> = perf
            .iter()
            .filter(|p| p.level == Some(i) && !p.warmup)
            .map(|p| &p.record)
            .collect();
        let shares: Vec<&Level> = generators.iter().map(|g| &g.record.levels[i]).collect();
        let plan = LevelPlan {
            load: total_load(&shares),
            requests: level
                .plan
                .requests
                .map(|_| shares.iter().filter_map(|l| l.plan.requests).sum()),
            ..level.plan.clone()
        };
        let stopped: Vec<String> = generators
            .iter()
            .zip(&shares)
            .filter_map(|(g, l)| {
                l.stopped
                    .as_ref()
                    .map(|why| format!("generator {}: {why}", g.clock.shard))
            })
            .collect();
        let turns = TurnSummary::by_turn(
            perf.iter()
                .filter(|p| p.level == Some(i) && !p.warmup)
                .filter_map(|p| Some((p.turn?, &p.record))),
        );
        levels.push(Level {
            // Each generator scraped the same server: the first one's view stands.
            server: level.server.clone(),
            // Energy is each generator's own host: not summed into the pooled level.
            energy: Vec::new(),
            batch_size: level.batch_size,
            turns,
            label: plan.load.label(),
            summary: stats::summarize(&pooled, &slo),
            plan,
            stopped: (!stopped.is_empty()).then(|| stopped.join("; ")),
            abandoned: shares.iter().map(|l| l.abandoned).sum(),
            generators: generators
                .iter()
                .zip(&shares)
                .map(|(g, l)| GeneratorShare {
                    shard: g.clock.shard,
                    requests: l.summary.requests,
                    schedule_lag: l.summary.schedule_lag,
                })
                .collect(),
        });
    }
    let cost = best_level(&levels).map(|level| {
        cost::estimate(
            &level.label,
            Capacity::within_slo(&level.summary),
            &first.pricing,
        )
    });
    let merged = BenchRecord {
        schema: first.schema.clone(),
        run_id: first.run_id.clone(),
        tool: ToolInfo::current(),
        machine: Machine::current(),
        started: generators
            .iter()
            .map(|g| g.record.started.clone())
            .min()
            .unwrap_or_default(),
        finished: generators
            .iter()
            .map(|g| g.record.finished.clone())
            .max()
            .unwrap_or_default(),
        model: first.model.clone(),
        workload: first.workload.clone(),
        slo,
        pricing: first.pricing,
        saturation: saturation_of(&levels),
        levels,
        cost,
        // A search adapts each probe to the last one: it runs from one generator.
        max_rate: None,
        energy_sources: Vec::new(),
        interrupted: generators.iter().any(|g| g.record.interrupted),
        definitions: first.definitions.clone(),
        generator: None,
        generators: generators.iter().map(|g| g.clock.clone()).collect(),
    };
    bench::write(out, &merged, &perf)?;
    Ok(merged)
}

/// The largest error of the common timeline: the worst generator's clock bound (none
/// when a generator could not measure its offset).
pub fn clock_bound(generators: &[GeneratorClock]) -> Option<f64> {
    generators
        .iter()
        .map(|g| g.clock.bound)
        .try_fold(0.0f64, |worst, b| b.map(|b| worst.max(b)))
}

/// The level's load summed over the generators' shares.
fn total_load(shares: &[&Level]) -> LoadModel {
    match shares[0].plan.load {
        LoadModel::Open { arrivals, .. } => LoadModel::Open {
            rate: shares.iter().map(|l| l.offered()).sum(),
            arrivals,
        },
        LoadModel::Closed { .. } => LoadModel::Closed {
            concurrency: shares.iter().map(|l| l.offered() as usize).sum(),
        },
    }
}

fn shift_times(line: &mut PerfLine, by: f64) {
    let t = &mut line.record.timing;
    t.scheduled += by;
    t.sent += by;
    t.end += by;
    for v in [&mut t.first_byte, &mut t.first_token]
        .into_iter()
        .flatten()
    {
        *v += by;
    }
    for v in &mut t.token_times {
        *v += by;
    }
}

/// The generators must have benched one thing: model, workload, SLO, levels, start.
fn check_same_bench(run_dir: &Path, generators: &[Generator]) -> Result<()> {
    let first = &generators[0];
    for g in &generators[1..] {
        let (a, b) = (&first.record, &g.record);
        let mut differs: Vec<&str> = Vec::new();
        if a.run_id != b.run_id {
            differs.push("run id");
        }
        if a.model != b.model {
            differs.push("model");
        }
        if !same(&a.workload, &b.workload) {
            differs.push("workload");
        }
        if !same(&a.slo, &b.slo) {
            differs.push("SLO");
        }
        let loads = |r: &BenchRecord| -> Vec<String> {
            r.levels
                .iter()
                .map(|l| {
                    // Shares of users may differ by one; the kind and times may not.
                    let kind = match l.plan.load {
                        LoadModel::Open { arrivals, .. } => format!("open {arrivals:?}"),
                        LoadModel::Closed { .. } => "closed".into(),
                    };
                    format!("{kind} {} {}", l.plan.warmup, l.plan.duration)
                })
                .collect()
        };
        if loads(a) != loads(b) {
            differs.push("levels");
        }
        if first.clock.start_at != g.clock.start_at {
            differs.push("--start-at");
        }
        if !differs.is_empty() {
            return Err(Error::input(
                run_dir,
                format!(
                    "not one bench: generators {} and {} differ in {}",
                    first.clock.shard,
                    g.clock.shard,
                    differs.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Two records' fields equal as they are written.
fn same<T: serde::Serialize>(a: &T, b: &T) -> bool {
    serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
}
