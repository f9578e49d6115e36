//! The `assay bench` record (`run.json`, schema `assay.bench/1`) and the request lines of
//! `perf.jsonl` (bench and evaluation runs alike): written by the commands and read back
//! by `report`, `compare` and `gate` through these same types.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cost::{Capacity, CostEstimate, Pricing};
use crate::engine::RequestRecord;
use crate::error::{Error, Result};
use crate::eval::shard::Shard;
use crate::load::clock::ClockCheck;
use crate::load::energy::EnergyReading;
use crate::load::runner::LevelPlan;
use crate::load::saturation::{self, LoadStep, Saturation};
use crate::load::schedule::LoadModel;
use crate::load::scrape::{ScrapeLog, ServerSummary};
use crate::load::search::MaxRate;
use crate::load::stats::{self, LevelSummary, Slo};
use crate::load::workload::Workload;
use crate::store::run::{write_atomic, Machine, ToolInfo};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchRecord {
    pub schema: String,
    pub run_id: String,
    pub tool: ToolInfo,
    pub machine: Machine,
    pub started: String,
    pub finished: String,
    pub model: serde_json::Value,
    pub workload: Workload,
    pub slo: Slo,
    #[serde(default)]
    pub pricing: Pricing,
    pub levels: Vec<Level>,
    /// Cost at the level with the best goodput (where capacity at the SLO was measured).
    pub cost: Option<CostEstimate>,
    /// A sweep's saturation points (see `load::saturation`): one per batch size that
    /// has one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub saturation: Vec<Saturation>,
    /// Energy sources this host was probed for (NVML, RAPL): measured, or missing and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub energy_sources: Vec<EnergySourceStatus>,
    /// `--find-max-rate`: the highest rate meeting the SLO, its interval and the probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate: Option<MaxRate>,
    #[serde(default)]
    pub interrupted: bool,
    pub definitions: serde_json::Value,
    /// One generator of a bench spread over machines (`--shard`): which one, and its clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<GeneratorClock>,
    /// A merged bench: every generator's clock, in shard order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generators: Vec<GeneratorClock>,
}

/// Where one generator's times sit on the common timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratorClock {
    pub shard: Shard,
    pub hostname: String,
    /// The common start every generator waited for (`--start-at`), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<String>,
    /// Unix time (this machine's clock) at which this generator's record times count 0.
    pub origin_unix: f64,
    /// This machine's clock against the target server's.
    pub clock: ClockCheck,
}

/// One generator's part of a merged level.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GeneratorShare {
    pub shard: Shard,
    pub requests: usize,
    /// Its own lag behind its schedule (a late generator shows here, not in the pool).
    pub schedule_lag: Option<stats::Distribution>,
}

/// One load level: what was planned and what was measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Level {
    pub label: String,
    pub plan: LevelPlan,
    pub summary: LevelSummary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    #[serde(default)]
    pub abandoned: usize,
    /// A merged bench: each generator's share of this level.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generators: Vec<GeneratorShare>,
    /// Energy over the whole level (warm-up included) from each source this host has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub energy: Vec<EnergyUse>,
    /// `--scrape`: what the server's metrics said during this level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerView>,
    /// Embedding sweeps over batch sizes: the texts per request at this level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// Multi-turn runs: the measured requests of each turn (1 = the first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turns: Vec<TurnSummary>,
}

/// One energy source's reading over a level, per token of the level's work.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnergyUse {
    pub reading: EnergyReading,
    /// `output` tokens for generation, `input` tokens for embeddings: every request of
    /// the level, warm-up included, as the meter ran over all of them.
    pub token_kind: String,
    pub tokens: u64,
    pub joules_per_token: Option<f64>,
    pub joules_per_mtok: Option<f64>,
}

/// Whether this host can measure energy one way, and if not why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnergySourceStatus {
    pub source: String,
    pub available: bool,
    /// What is measured, or why it cannot be.
    pub detail: String,
}

/// The server's own view of a level: every reading (for plots over time) and their
/// summary over the measured window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerView {
    pub log: ScrapeLog,
    /// Over the readings from the first measured send to the last measured end.
    pub summary: ServerSummary,
}

/// What the requests of one turn measured: later turns carry longer histories.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TurnSummary {
    pub turn: usize,
    pub requests: usize,
    pub ttft: Option<stats::Distribution>,
    pub latency: Option<stats::Distribution>,
    /// Mean input tokens per request, as the server counted them.
    pub mean_input_tokens: Option<f64>,
}

impl TurnSummary {
    /// One summary per turn seen among `(turn, record)`, in turn order.
    pub fn by_turn<'a>(
        samples: impl Iterator<Item = (usize, &'a RequestRecord)>,
    ) -> Vec<TurnSummary> {
        let mut turns: std::collections::BTreeMap<usize, Vec<&RequestRecord>> = Default::default();
        for (turn, record) in samples {
            turns.entry(turn).or_default().push(record);
        }
        turns
            .into_iter()
            .map(|(turn, records)| {
                let ok: Vec<&RequestRecord> = records
                    .iter()
                    .copied()
                    .filter(|r| r.error.is_none())
                    .collect();
                let inputs: Vec<f64> = ok
                    .iter()
                    .filter_map(|r| r.input_tokens.map(|t| t as f64))
                    .collect();
                TurnSummary {
                    turn,
                    requests: records.len(),
                    ttft: stats::Distribution::of(
                        ok.iter().filter_map(|r| stats::ttft(r)).collect(),
                    ),
                    latency: stats::Distribution::of(
                        ok.iter().map(|r| stats::latency(r)).collect(),
                    ),
                    mean_input_tokens: (!inputs.is_empty())
                        .then(|| inputs.iter().sum::<f64>() / inputs.len() as f64),
                }
            })
            .collect()
    }
}

impl Level {
    /// Offered load: concurrency, or requests per second for an open loop.
    pub fn offered(&self) -> f64 {
        match self.plan.load {
            LoadModel::Closed { concurrency } => concurrency as f64,
            LoadModel::Open { rate, .. } => rate,
        }
    }

    /// Cost of this level's capacity at the run's prices (`None` without `--price-per-hour`).
    pub fn cost(&self, pricing: &Pricing) -> Option<CostEstimate> {
        pricing.per_hour?;
        Some(crate::cost::estimate(
            &self.label,
            Capacity::within_slo(&self.summary),
            pricing,
        ))
    }
}

/// Where a sweep's throughput stopped rising while its latency rose (levels that measured
/// no latency take no part).
/// A sweep over batch sizes is a sweep of the load at each batch size.
pub fn saturation_of(levels: &[Level]) -> Vec<Saturation> {
    let mut batches: Vec<Option<usize>> = levels.iter().map(|l| l.batch_size).collect();
    batches.dedup();
    batches.sort();
    batches.dedup();
    batches
        .into_iter()
        .filter_map(|batch| {
            let group: Vec<usize> = (0..levels.len())
                .filter(|&i| levels[i].batch_size == batch)
                .collect();
            let steps: Vec<LoadStep> = group
                .iter()
                .map(|&i| {
                    let l = &levels[i];
                    LoadStep {
                        offered: l.offered(),
                        throughput: l.summary.requests_per_second,
                        latency_p50: l.summary.latency.map_or(f64::NAN, |d| d.p50),
                    }
                })
                .collect();
            // Back from the group's indices to the run's.
            saturation::find(&steps).map(|s| Saturation {
                first_saturated: group[s.first_saturated],
                knee: group[s.knee],
                ..s
            })
        })
        .collect()
}

/// The level with the highest goodput in items (texts embedded, or requests: a
/// generation request is one item): where capacity at the SLO was measured.
pub fn best_level(levels: &[Level]) -> Option<&Level> {
    levels
        .iter()
        .filter(|l| l.summary.good_requests > 0)
        .max_by(|a, b| {
            a.summary
                .good_items_per_second
                .total_cmp(&b.summary.good_items_per_second)
        })
}

impl BenchRecord {
    /// The level the cost was measured at (best goodput), else the last one.
    pub fn capacity_level(&self) -> Option<(usize, &Level)> {
        let wanted = self.cost.as_ref().map(|c| c.at_level.as_str());
        self.levels
            .iter()
            .enumerate()
            .find(|(_, l)| Some(l.label.as_str()) == wanted)
            .or_else(|| self.levels.iter().enumerate().next_back())
    }

    /// Whether levels differ by concurrency (closed loop) or by rate (open loop).
    pub fn open_loop(&self) -> bool {
        self.levels
            .iter()
            .any(|l| matches!(l.plan.load, LoadModel::Open { .. }))
    }
}

/// One line of `perf.jsonl`: a request with its timing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PerfLine {
    /// Bench runs: the index of the load level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<usize>,
    #[serde(default)]
    pub warmup: bool,
    /// Multi-turn runs: the turn of its conversation (1 = the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<usize>,
    #[serde(flatten)]
    pub record: RequestRecord,
    /// Scheduled send to the end (derived, for readers of the file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<f64>,
    /// Actual send to the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_latency: Option<f64>,
}

impl PerfLine {
    pub fn new(level: Option<usize>, warmup: bool, record: RequestRecord) -> PerfLine {
        PerfLine {
            level,
            warmup,
            turn: None,
            latency: Some(stats::latency(&record)),
            service_latency: Some(stats::service_latency(&record)),
            record,
        }
    }
}

/// Writes `perf.jsonl` (one line per request) when there is any.
pub fn write_perf(dir: &Path, perf: &[PerfLine]) -> Result<()> {
    if perf.is_empty() {
        return Ok(());
    }
    let mut lines = Vec::new();
    for line in perf {
        serde_json::to_writer(&mut lines, line).map_err(|e| Error::External(e.to_string()))?;
        lines.push(b'\n');
    }
    write_atomic(&dir.join("perf.jsonl"), &lines)
}

/// Reads `perf.jsonl` back (none when the file is absent).
pub fn read_perf(path: &Path) -> Result<Vec<PerfLine>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let bytes = crate::data::lines::read_bytes(path)?;
    let mut out = Vec::new();
    for (line, text) in crate::data::lines::utf8_lines(path, &bytes)? {
        let record: PerfLine = serde_json::from_str(text)
            .map_err(|e| Error::record(path, line, "(request record)", e.to_string()))?;
        out.push(record);
    }
    Ok(out)
}

/// Reads a bench record's `run.json`.
pub fn read(dir: &Path) -> Result<BenchRecord> {
    let path = dir.join("run.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::input(&path, format!("not a bench record: {e}")))
}

/// Writes a bench run: `perf.jsonl`, then `run.json` (last: its presence marks a
/// complete record).
pub fn write(dir: &Path, bench: &BenchRecord, perf: &[PerfLine]) -> Result<()> {
    write_perf(dir, perf)?;
    let json = serde_json::to_vec_pretty(bench).map_err(|e| Error::External(e.to_string()))?;
    write_atomic(&dir.join("run.json"), &json)
}
