//! `assay bench`: load levels (closed-loop concurrency or open-loop rates, one or a sweep)
//! against a remote endpoint or the local embedder; prints latency, throughput, goodput,
//! cost and sizing with their definitions, and writes `reports/<run-id>/` (`run.json` with
//! schema `assay.bench/1`, `perf.jsonl` with every request).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::cli::BenchArgs;
use crate::cost::{self, Capacity, CostEstimate, Pricing};
use crate::data::DataSource;
use crate::engine::ModelRef;
use crate::error::{Error, Result};
use crate::eval;
use crate::eval::shard::Shard;
use crate::load::clock::{self, ClockCheck};
use crate::load::energy::{self, Availability, EnergyMeter, EnergySource};
use crate::load::runner::{run_level, Conversation, Interrupt, LevelPlan, Live, Sample, SloStop};
use crate::load::schedule::{Arrivals, LoadModel};
use crate::load::scrape::{self, ScrapeLog};
use crate::load::search::{point_verdict, MaxRate, Probe, RateSearch, SloTarget, Verdict};
use crate::load::stats::{self, Distribution, LevelSummary, Slo};
use crate::load::target::{Payload, Target};
use crate::load::trace::{self, TraceInfo};
use crate::load::workload::{read_inputs, Workload, WorkloadKind};
use crate::spec;
use crate::store;
use crate::store::bench::{
    best_level, saturation_of, BenchRecord, EnergySourceStatus, EnergyUse, GeneratorClock, Level,
    PerfLine, ServerView, TurnSummary,
};
use crate::store::run::{self as record, Machine, ToolInfo};

/// The definitions printed under every table and stored in `run.json`.
pub const DEFINITIONS: &[(&str, &str)] = &[
    ("latency", "scheduled send -> last byte; in open-loop runs this includes any wait the server caused (no coordinated omission)"),
    ("service", "actual send -> last byte (what the server took, retries included)"),
    ("TTFT", "scheduled send -> first streamed chunk with text"),
    ("TPOT", "(last byte - first token) / (output tokens - 1), per request"),
    ("ITL", "gaps between consecutive streamed text chunks, pooled over all requests"),
    ("lag", "actual send - scheduled send (how late the load generator was)"),
    ("goodput", "successful requests per second that met every SLO bound"),
    ("percentiles", "exact, linear interpolation between order statistics (numpy's default); warm-up requests excluded"),
];

pub fn run(args: &BenchArgs) -> Result<PathBuf> {
    let started = chrono::Utc::now();
    let kind: WorkloadKind = args.workload.parse().map_err(usage("--workload"))?;
    let shard = args
        .shard
        .as_deref()
        .map(|text| Shard::parse(text, |name| std::env::var(name).ok()))
        .transpose()?;
    if args.trace.is_some() && args.shard.is_some() {
        return Err(Error::Usage(
            "--trace replays one recording from one generator (drop --shard)".into(),
        ));
    }
    let workload = workload(args, kind)?;
    if args.find_max_rate && (args.shard.is_some() || args.start_at.is_some()) {
        return Err(Error::Usage(
            "--find-max-rate runs from one generator: each probe's rate follows the last \
             verdict, which generators on other machines cannot see (drop --shard / --start-at)"
                .into(),
        ));
    }
    let mut loads = levels(args, &workload)?;
    let mut requests = args.requests;
    if let Some(shard) = &shard {
        if args.run_id.is_none() {
            return Err(Error::Usage(
                "--shard needs --run-id: every generator writes under the same run folder".into(),
            ));
        }
        loads = loads
            .iter()
            .map(|load| share_of_load(load, shard))
            .collect::<Result<_>>()?;
        requests = requests.map(|n| share_of(n, shard));
    }
    let start_at = args
        .start_at
        .as_deref()
        .map(|text| {
            chrono::DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|e| {
                    Error::Usage(format!(
                        "--start-at `{text}`: {e} (expected RFC 3339, e.g. 2026-12-01T10:00:00Z)"
                    ))
                })
        })
        .transpose()?;
    let seconds = |text: &str, flag: &str| -> Result<f64> {
        humantime::parse_duration(text)
            .map(|d| d.as_secs_f64())
            .map_err(|e| Error::Usage(format!("{flag} `{text}`: {e}")))
    };
    let duration = match (&args.duration, args.requests) {
        (Some(text), _) => seconds(text, "--duration")?,
        // A replay runs to the trace's end unless told otherwise.
        (None, _) if workload.trace_rows.is_some() => f64::INFINITY,
        (None, Some(_)) => f64::INFINITY,
        (None, None) => 30.0,
    };
    let warmup = seconds(&args.warmup, "--warmup")?;
    let slo = match &args.slo {
        Some(text) => Slo::parse(text).map_err(usage("--slo"))?,
        None => Slo::default(),
    };
    if !(0.0..=1.0).contains(&args.max_error_rate) {
        return Err(Error::Usage(
            "--max-error-rate is a share between 0 and 1".into(),
        ));
    }
    let batch_sizes: Vec<usize> = match (kind, args.batch_sizes.is_empty()) {
        (_, true) => vec![workload.batch_size],
        (WorkloadKind::Embed, false) if !args.batch_sizes.contains(&0) => args.batch_sizes.clone(),
        (WorkloadKind::Embed, false) => {
            return Err(Error::Usage(
                "--batch-sizes 0: at least one text per request".into(),
            ))
        }
        _ => {
            return Err(Error::Usage(
                "--batch-sizes is an axis of embedding sweeps (--workload embed)".into(),
            ))
        }
    };
    let workload = Workload {
        batch_size: batch_sizes[0],
        ..workload
    };
    let max_concurrency = loads
        .iter()
        .map(|l| match l {
            LoadModel::Closed { concurrency } => *concurrency,
            LoadModel::Open { .. } => 64,
        })
        .max()
        .unwrap_or(1);
    if let Some(t) = start_at {
        if t < chrono::Utc::now() - chrono::Duration::seconds(1) {
            return Err(Error::Usage(format!(
                "--start-at {}: that was {:.1} s ago; start every generator before the common \
                 start",
                t.to_rfc3339(),
                (chrono::Utc::now() - t).num_milliseconds() as f64 / 1e3
            )));
        }
    }
    if start_at.is_some() && loads.len() > 1 && !duration.is_finite() {
        return Err(Error::Usage(
            "--start-at with several levels needs --duration: every generator starts each \
             level on a common schedule"
                .into(),
        ));
    }
    let (target, model_info) = connect(args, kind, max_concurrency)?;
    let payloads = Arc::new(workload.payloads());
    let payloads_len = payloads.len();
    // Where this generator's record times sit on the common timeline.
    let origin_unix = clock::unix_now() - target.now();
    let clock_check = match &args.model {
        ModelRef::OpenAi(endpoint) if shard.is_some() || start_at.is_some() => clock::check(
            &format!("{}/models", endpoint.base_url.trim_end_matches('/')),
            Duration::from_millis(2500),
        ),
        _ => ClockCheck {
            offset: Some(0.0),
            bound: Some(0.0),
            method: "a local engine: its own clock".into(),
        },
    };
    // The first level's start on the target's clock; each later level one slot after.
    let first_start = match start_at {
        Some(t) => {
            let wait = (t - chrono::Utc::now()).num_microseconds().unwrap_or(0) as f64 / 1e6;
            if wait < -1.0 {
                return Err(Error::Usage(format!(
                    "--start-at {}: that was {:.1} s ago; start every generator before the \
                     common start",
                    t.to_rfc3339(),
                    -wait
                )));
            }
            eprintln!(
                "waiting {:.1} s for the common start {}",
                wait.max(0.0),
                t.to_rfc3339()
            );
            Some(target.now() + wait.max(0.0))
        }
        None => None,
    };
    let slot = warmup + duration + LEVEL_SETTLE_SECONDS;

    let runtime = crate::load::runner::client_runtime(args.client_threads)?;
    let interrupt = Arc::new(Interrupt::default());
    {
        let interrupt = interrupt.clone();
        runtime.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupt.flag.store(true, Ordering::Relaxed);
            }
        });
    }

    // Energy where the host can read it; a missing source is recorded as missing.
    let energy_sources = energy::probe_host();
    let scrape = match &args.scrape {
        Some(url) => {
            let interval = humantime::parse_duration(&args.scrape_interval).map_err(|e| {
                Error::Usage(format!("--scrape-interval `{}`: {e}", args.scrape_interval))
            })?;
            // A wrong URL is better found now than as a run with no server figures.
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| Error::External(format!("cannot build an HTTP client: {e}")))?;
            let (kind, _) = runtime.block_on(scrape::scrape_once(&client, url))?;
            eprintln!(
                "scraping {} every {:?} ({kind:?} metrics)",
                crate::engine::openai::redact_url(url),
                interval
            );
            Some((url.clone(), interval))
        }
        None => None,
    };
    let mut driver = Driver {
        runtime,
        target,
        payloads,
        interrupt: interrupt.clone(),
        slo,
        seed: args.seed,
        shard,
        warmup,
        max_error_rate: args.max_error_rate,
        max_in_flight: args.max_in_flight,
        // Generators start at different payloads, so a server's prompt cache cannot serve
        // one the prompts another just sent.
        next_payload: shard.map_or(0, |s| s.index * payloads_len / s.count),
        replay: workload
            .trace_rows
            .as_ref()
            .map(|rows| Arc::new(rows.iter().map(|r| r.at * args.time_scale).collect())),
        conversation: workload.conversation,
        batch_size: (kind == WorkloadKind::Embed).then_some(workload.batch_size),
        batch_in_label: false,
        scrape,
        energy: energy_sources
            .iter()
            .filter_map(|a| match a {
                Availability::Available(source) => Some(source.clone()),
                Availability::Missing { .. } => None,
            })
            .collect(),
        energy_per_input: kind == WorkloadKind::Embed,
        levels: Vec::new(),
        samples: Vec::new(),
    };
    let max_rate = if args.find_max_rate {
        let min_seconds = args
            .duration
            .as_ref()
            .map_or(Ok(10.0), |d| seconds(d, "--duration"))?;
        Some(find_max_rate(&mut driver, args, min_seconds)?)
    } else {
        let total = loads.len() * batch_sizes.len();
        driver.batch_in_label = batch_sizes.len() > 1;
        for (b, &batch) in batch_sizes.iter().enumerate() {
            if b > 0 {
                // Another batch size: its own payloads, the same texts regrouped.
                let mut regrouped = workload.clone();
                regrouped.batch_size = batch;
                driver.payloads = Arc::new(regrouped.payloads());
            }
            driver.batch_size = (kind == WorkloadKind::Embed).then_some(batch);
            for load in &loads {
                let i = driver.levels.len();
                if interrupt.is_set() {
                    break;
                }
                // Level 0 at the common start itself: without --duration the slot is
                // infinite, and 0 × ∞ is NaN (a NaN start sent nothing).
                let start = first_start.map(|t| if i == 0 { t } else { t + i as f64 * slot });
                let tag = format!("[{}/{}]", i + 1, total);
                driver.run(*load, duration, requests, start, None, &tag);
            }
        }
        None
    };
    let Driver {
        runtime,
        levels,
        samples: all_samples,
        ..
    } = driver;
    // Let requests the runtime still holds (an interrupted level's) go without waiting.
    runtime.shutdown_timeout(Duration::from_millis(100));

    let pricing = Pricing {
        per_hour: args.price_per_hour,
        provider_per_mtok: args.provider_price_per_mtok,
        target_rate: args.target_rate,
    };
    // Capacity where the search found the limit, else the sweep's best goodput.
    let capacity_at = match &max_rate {
        Some(found) => found.limit_level().map(|i| &levels[i]),
        None => best_level(&levels),
    };
    let cost = capacity_at
        .map(|level| cost::estimate(&level.label, Capacity::within_slo(&level.summary), &pricing));
    let run_id = args
        .run_id
        .clone()
        .unwrap_or_else(|| format!("{}-bench", chrono::Utc::now().format("%Y%m%dT%H%M%S")));
    let bench = BenchRecord {
        schema: record::BENCH_SCHEMA.into(),
        run_id: run_id.clone(),
        tool: ToolInfo::current(),
        machine: Machine::current(),
        started: started.to_rfc3339(),
        finished: chrono::Utc::now().to_rfc3339(),
        model: model_info,
        workload,
        slo,
        pricing,
        // A search's probes are not a sweep: its verdicts say where the limit is.
        saturation: if max_rate.is_none() {
            saturation_of(&levels)
        } else {
            Vec::new()
        },
        levels,
        cost,
        max_rate,
        energy_sources: energy_sources
            .iter()
            .map(|a| match a {
                Availability::Available(source) => EnergySourceStatus {
                    source: source.kind.name().into(),
                    available: true,
                    detail: source.method.clone(),
                },
                Availability::Missing { source, why } => EnergySourceStatus {
                    source: source.to_string(),
                    available: false,
                    detail: why.clone(),
                },
            })
            .collect(),
        interrupted: interrupt.is_set(),
        definitions: DEFINITIONS
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        generator: shard.map(|shard| GeneratorClock {
            shard,
            hostname: Machine::current().hostname,
            start_at: start_at.map(|t| t.to_rfc3339()),
            origin_unix,
            clock: clock_check.clone(),
        }),
        generators: Vec::new(),
    };
    let mut dir = record::run_dir(&args.reports, &run_id);
    if let Some(shard) = &shard {
        dir = dir.join(shard.dir_name());
    }
    let perf: Vec<PerfLine> = all_samples
        .into_iter()
        .map(|(level, sample)| PerfLine {
            turn: sample.turn,
            ..PerfLine::new(Some(level), sample.warmup, sample.record)
        })
        .collect();
    store::bench::write(&dir, &bench, &perf)?;
    print(&bench, kind);
    println!("\nrun record: {}", dir.display());
    Ok(dir)
}

/// Runs levels one after another against one target on one runtime, keeping every
/// level's summary and every request's record.
struct Driver {
    runtime: tokio::runtime::Runtime,
    target: Target,
    payloads: Arc<Vec<Payload>>,
    interrupt: Arc<Interrupt>,
    slo: Slo,
    seed: u64,
    shard: Option<Shard>,
    warmup: f64,
    max_error_rate: f64,
    max_in_flight: usize,
    next_payload: usize,
    /// A trace replay's send times (payload i at time i).
    replay: Option<Arc<Vec<f64>>>,
    conversation: Option<Conversation>,
    /// Embedding runs: texts per request of the levels being run.
    batch_size: Option<usize>,
    /// Whether labels name the batch size (a sweep over several).
    batch_in_label: bool,
    /// `--scrape`: the metrics URL and the polling interval.
    scrape: Option<(String, Duration)>,
    /// Energy sources this host has (NVML, RAPL), metered around every level.
    energy: Vec<EnergySource>,
    /// Tokens energy is divided by: output tokens, or input tokens for embeddings.
    energy_per_input: bool,
    levels: Vec<Level>,
    samples: Vec<(usize, Sample)>,
}

impl Driver {
    /// Runs one level and returns its index in `levels`.
    fn run(
        &mut self,
        load: LoadModel,
        duration: f64,
        requests: Option<usize>,
        start_at: Option<f64>,
        stop_after_violations: Option<SloStop>,
        tag: &str,
    ) -> usize {
        let i = self.levels.len();
        let mut level_target = self.target.clone();
        if let LoadModel::Closed { concurrency } = load {
            level_target.set_slots(concurrency);
        }
        let plan = LevelPlan {
            load,
            duration,
            requests,
            warmup: self.warmup,
            max_error_rate: self.max_error_rate,
            max_in_flight: self.max_in_flight,
            // Each generator its own arrivals: n copies of one schedule are not Poisson.
            seed: self
                .seed
                .wrapping_add(i as u64)
                .wrapping_add(self.shard.map_or(0, |s| s.index as u64 * 1_000_003)),
            first_payload: self.next_payload,
            start_at,
            stop_after_violations,
            replay: self.replay.clone(),
            conversation: self.conversation,
        };
        let label = match self.batch_size {
            Some(batch) if self.batch_in_label => format!("batch {batch}, {}", load.label()),
            _ => load.label(),
        };
        let live = Live {
            label: format!("{tag} {label}"),
            bar: spinner(),
        };
        let scraper = self.scrape.as_ref().map(|(url, interval)| {
            let stop = Arc::new(AtomicBool::new(false));
            let clock = self.target.clone();
            let task = scrape::spawn_scraper(
                self.runtime.handle(),
                url.clone(),
                *interval,
                move || clock.now(),
                stop.clone(),
            );
            (stop, task)
        });
        let meters: Vec<_> = self
            .energy
            .iter()
            .map(|source| EnergyMeter::start(source, source.default_interval()))
            .collect();
        let outcome = run_level(
            &self.runtime,
            Arc::new(level_target),
            self.payloads.clone(),
            &plan,
            self.interrupt.clone(),
            &live,
        );
        live.bar.finish_and_clear();
        let energy = self.energy_use(meters, &outcome.samples);
        let server = scraper.and_then(|(stop, task)| {
            stop.store(true, Ordering::Relaxed);
            let log = self.runtime.block_on(task).ok()?;
            Some(server_view(log, &outcome.samples))
        });
        let measured: Vec<&_> = outcome
            .samples
            .iter()
            .filter(|s| !s.warmup)
            .map(|s| &s.record)
            .collect();
        let summary = stats::summarize(&measured, &self.slo);
        eprintln!("{}", one_line(&label, &summary, outcome.stopped.as_deref()));
        let turns = TurnSummary::by_turn(
            outcome
                .samples
                .iter()
                .filter(|s| !s.warmup)
                .filter_map(|s| Some((s.turn?, &s.record))),
        );
        self.levels.push(Level {
            energy,
            server,
            batch_size: self.batch_size,
            turns,
            label,
            plan,
            summary,
            stopped: outcome.stopped,
            abandoned: outcome.abandoned,
            generators: Vec::new(),
        });
        self.next_payload += outcome.samples.len();
        self.samples
            .extend(outcome.samples.into_iter().map(|s| (i, s)));
        i
    }
}

impl Driver {
    /// Stops a level's energy meters and divides what they read by the level's tokens.
    /// A meter that failed is reported and left out, never estimated.
    fn energy_use(
        &self,
        meters: Vec<std::result::Result<EnergyMeter, String>>,
        samples: &[Sample],
    ) -> Vec<EnergyUse> {
        let tokens: u64 = samples
            .iter()
            .filter(|s| s.record.error.is_none())
            .map(|s| {
                if self.energy_per_input {
                    s.record.input_tokens.unwrap_or(0)
                } else {
                    s.record.output_tokens.unwrap_or(0)
                }
            })
            .sum();
        meters
            .into_iter()
            .filter_map(|meter| match meter.and_then(EnergyMeter::stop) {
                Ok(reading) => Some(EnergyUse {
                    joules_per_token: energy::per_token(&reading, tokens),
                    joules_per_mtok: energy::per_million_tokens(&reading, tokens),
                    reading,
                    token_kind: if self.energy_per_input {
                        "input"
                    } else {
                        "output"
                    }
                    .into(),
                    tokens,
                }),
                Err(why) => {
                    eprintln!("energy: {why} (this level has no energy figure)");
                    None
                }
            })
            .collect()
    }
}

/// The server's readings of a level, summarised over its measured window.
fn server_view(log: ScrapeLog, samples: &[Sample]) -> ServerView {
    let measured = samples
        .iter()
        .filter(|s| !s.warmup)
        .map(|s| &s.record.timing);
    let from = measured
        .clone()
        .map(|t| t.scheduled)
        .fold(f64::INFINITY, f64::min);
    let to = measured.map(|t| t.end).fold(f64::NEG_INFINITY, f64::max);
    let summary = scrape::summarize(log.within(from, to));
    ServerView { log, summary }
}

/// Times a probe whose verdict is undecided may send as many requests again (all of a
/// rate's requests are judged together).
const MAX_REPROBES: usize = 2;

/// `--find-max-rate`: probes open-loop rates until the limit is bracketed (see
/// `load::search`). Each probe sends at least enough requests for a pass to be confident,
/// and at least `min_seconds` of them.
fn find_max_rate(driver: &mut Driver, args: &BenchArgs, min_seconds: f64) -> Result<MaxRate> {
    let target = SloTarget::new(args.slo_percentile / 100.0, args.slo_confidence)
        .map_err(usage("--slo-percentile / --slo-confidence"))?;
    if !(args.rate_precision > 0.0 && args.rate_precision.is_finite()) {
        return Err(Error::Usage(
            "--rate-precision is a positive share, e.g. 0.05".into(),
        ));
    }
    let arrivals: Arrivals = args.arrivals.parse().map_err(usage("--arrivals"))?;
    let start = args.rate.first().copied().unwrap_or(1.0);
    let mut search = RateSearch::new(start, args.rate_precision);
    eprintln!(
        "searching the highest rate where {}% of requests meet the SLO (each verdict at {:.1}% confidence, at least {} requests)",
        args.slo_percentile,
        target.verdict_confidence() * 100.0,
        target.min_requests()
    );
    let mut probe_number = 0;
    'search: while let Some(rate) = search.next_rate() {
        let requests = target
            .min_requests()
            .max((rate * min_seconds).ceil() as usize)
            .max(args.requests.unwrap_or(0));
        // An undecided probe sends as many requests again, judged with the ones before.
        let (mut pooled_requests, mut pooled_violations) = (0, 0);
        let mut levels = Vec::new();
        for attempt in 0..=MAX_REPROBES {
            if driver.interrupt.is_set() {
                break 'search;
            }
            probe_number += 1;
            let must_fail = target.certain_failure(pooled_requests + requests);
            let stop = SloStop {
                slo: driver.slo,
                violations: must_fail.saturating_sub(pooled_violations).max(1),
            };
            let load = LoadModel::Open { rate, arrivals };
            let tag = format!("[probe {probe_number}]");
            let level = driver.run(load, f64::INFINITY, Some(requests), None, Some(stop), &tag);
            if driver.interrupt.is_set() {
                break 'search;
            }
            let summary = &driver.levels[level].summary;
            pooled_requests += summary.requests;
            pooled_violations += summary.requests - summary.good_requests;
            levels.push(level);
            let judgement = target.judge(pooled_requests, pooled_violations);
            let counted_as = match judgement.verdict {
                Verdict::Undecided if attempt < MAX_REPROBES => {
                    eprintln!(
                        "  undecided: {pooled_violations} of {pooled_requests} missed the SLO; {requests} more requests at {rate}/s"
                    );
                    continue;
                }
                Verdict::Undecided => point_verdict(&target, pooled_requests, pooled_violations),
                decided => decided,
            };
            eprintln!(
                "  {rate}/s: {pooled_violations} of {pooled_requests} missed the SLO -> {counted_as:?}{}",
                if judgement.verdict == Verdict::Undecided {
                    " (by the point estimate: not confident)"
                } else {
                    ""
                }
            );
            search.record(Probe {
                rate,
                level,
                pooled_levels: if levels.len() > 1 { levels } else { Vec::new() },
                requests: pooled_requests,
                violations: pooled_violations,
                judgement,
                counted_as,
            });
            continue 'search;
        }
    }
    let mut found = search.result(target);
    if let (Some(target_rate), Some(max)) = (args.target_rate, found.max_rate) {
        found.replicas = Some(replicas(target_rate, max));
        found.replicas_at_interval_low = found.interval_low.map(|low| replicas(target_rate, low));
    }
    Ok(found)
}

/// Replicas of `per_replica` requests/s that serve `target` requests/s.
fn replicas(target: f64, per_replica: f64) -> u64 {
    (target / per_replica - 1e-9).ceil().max(1.0) as u64
}

fn usage(flag: &'static str) -> impl Fn(String) -> Error {
    move |e| Error::Usage(format!("{flag} {e}"))
}

/// Seconds between one level's planned end and the next level's common start, for the
/// requests in flight to finish.
const LEVEL_SETTLE_SECONDS: f64 = 5.0;

/// `n` split over the shards: the first `n % count` get one more.
fn share_of(n: usize, shard: &Shard) -> usize {
    n / shard.count + usize::from(shard.index < n % shard.count)
}

/// One generator's part of a level: rate / n of an open loop, its share of the users of a
/// closed one.
fn share_of_load(load: &LoadModel, shard: &Shard) -> Result<LoadModel> {
    Ok(match *load {
        LoadModel::Open { rate, arrivals } => LoadModel::Open {
            rate: rate / shard.count as f64,
            arrivals,
        },
        LoadModel::Closed { concurrency } => {
            if concurrency < shard.count {
                return Err(Error::Usage(format!(
                    "--concurrency {concurrency} cannot be split over {} generators: give at \
                     least one user each",
                    shard.count
                )));
            }
            LoadModel::Closed {
                concurrency: share_of(concurrency, shard),
            }
        }
    })
}

fn levels(args: &BenchArgs, workload: &Workload) -> Result<Vec<LoadModel>> {
    if let Some(rows) = &workload.trace_rows {
        let time_scale = args.time_scale;
        return Ok(vec![LoadModel::Open {
            rate: trace::mean_rate(rows, time_scale),
            arrivals: Arrivals::Replay { time_scale },
        }]);
    }
    let arrivals: Arrivals = args.arrivals.parse().map_err(usage("--arrivals"))?;
    if !args.rate.is_empty() {
        if let Some(bad) = args.rate.iter().find(|r| !(r.is_finite() && **r > 0.0)) {
            return Err(Error::Usage(format!(
                "--rate {bad}: rates are positive requests per second"
            )));
        }
        return Ok(args
            .rate
            .iter()
            .map(|&rate| LoadModel::Open { rate, arrivals })
            .collect());
    }
    let concurrency = if args.concurrency.is_empty() {
        vec![1]
    } else {
        args.concurrency.clone()
    };
    if concurrency.contains(&0) {
        return Err(Error::Usage("--concurrency 0: at least one user".into()));
    }
    Ok(concurrency
        .into_iter()
        .map(|concurrency| LoadModel::Closed { concurrency })
        .collect())
}

fn workload(args: &BenchArgs, kind: WorkloadKind) -> Result<Workload> {
    let (texts, source) = if let Some(path) = &args.inputs {
        (Some(read_inputs(path)?), Some(path.display().to_string()))
    } else if let Some(task) = &args.inputs_from_task {
        let spec = spec::find(&args.tasks_dir, task)?;
        let task = eval::task::load(&spec, &DataSource::resolve(&spec.dataset, &args.data_root)?)?;
        // Queries before documents; a generation task's zero-shot prompts; captions.
        let inputs = task.inputs()?;
        let texts = inputs.into_iter().map(|i| i.text).collect();
        (Some(texts), Some(format!("task {}", spec.name)))
    } else {
        (None, None)
    };
    let trace = args
        .trace
        .as_ref()
        .map(|path| -> Result<_> {
            if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
                return Err(Error::Usage(format!(
                    "--time-scale {}: a positive factor (0.5 replays twice as fast)",
                    args.time_scale
                )));
            }
            let (rows, format) = trace::read(path)?;
            let info = TraceInfo {
                file: path.display().to_string(),
                format: format.into(),
                requests: rows.len(),
                span_seconds: rows.last().map_or(0.0, |r| r.at),
                time_scale: args.time_scale,
            };
            Ok((info, rows))
        })
        .transpose()?;
    if args.prefix_tokens > 0 && kind == WorkloadKind::Embed {
        return Err(Error::Usage(
            "--prefix-tokens applies to chat and completions workloads".into(),
        ));
    }
    if args.prefix_tokens > 0 && args.prefixes == 0 {
        return Err(Error::Usage(
            "--prefixes 0: at least one shared prefix".into(),
        ));
    }
    let (trace, trace_rows) = trace.map_or((None, None), |(info, rows)| (Some(info), Some(rows)));
    let conversation = if kind == WorkloadKind::MultiTurn {
        if args.turns == 0 {
            return Err(Error::Usage(
                "--turns 0: a conversation has at least one turn".into(),
            ));
        }
        if !args.rate.is_empty() || args.find_max_rate || trace.is_some() {
            return Err(Error::Usage(
                "--workload multi-turn runs closed-loop users, each waiting for its answer \
                 before the next turn: give --concurrency (conversations at once)"
                    .into(),
            ));
        }
        let think_time = humantime::parse_duration(&args.think_time)
            .map_err(|e| Error::Usage(format!("--think-time `{}`: {e}", args.think_time)))?
            .as_secs_f64();
        Some(Conversation {
            turns: args.turns,
            think_time,
        })
    } else {
        None
    };
    Ok(Workload {
        prefix_words: args.prefix_tokens,
        prefixes: if args.prefix_tokens > 0 {
            args.prefixes
        } else {
            0
        },
        trace,
        trace_rows,
        conversation,
        kind,
        batch_size: if kind == WorkloadKind::Embed {
            args.engine.batch_size.max(1)
        } else {
            1
        },
        input_words: args.input_words.parse().map_err(usage("--input-words"))?,
        output_tokens: args.output_tokens,
        ignore_eos: args.ignore_eos,
        stream: !args.no_stream,
        seed: args.seed,
        source,
        texts,
    })
}

/// The engine to drive, and what the record says about it.
fn connect(
    args: &BenchArgs,
    kind: WorkloadKind,
    concurrency: usize,
) -> Result<(Target, serde_json::Value)> {
    match (&args.model, kind) {
        (ModelRef::OpenAi(endpoint), WorkloadKind::Embed) => {
            let embedder = super::load_remote_embedder(endpoint, &args.engine, concurrency)?;
            let info = serde_json::to_value(crate::engine::Embedder::info(&embedder))
                .unwrap_or_default();
            Ok((Target::RemoteEmbed(Arc::new(embedder)), info))
        }
        (ModelRef::OpenAi(endpoint), _) => {
            let generator = super::load_remote_generator(endpoint, &args.engine.remote, concurrency)?;
            let info = serde_json::to_value(crate::engine::Generator::info(&generator))
                .unwrap_or_default();
            Ok((Target::RemoteGenerate(Arc::new(generator)), info))
        }
        (_, WorkloadKind::Embed) => {
            let embedder = super::load_local_embedder(&args.model, &args.engine)?;
            let info = serde_json::to_value(embedder.info()).unwrap_or_default();
            let mut target = Target::local(Arc::from(embedder));
            target.set_slots(args.engine.threads.unwrap_or(1));
            Ok((target, info))
        }
        _ => Err(Error::Usage(format!(
            "model `{}`: assay bench loads an endpoint (or the local embedder); for a local chat model's prefill and decode speed use `assay bench-decode`, or serve it and bench the openai: endpoint",
            args.model
        ))),
    }
}

fn spinner() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

fn ms(d: &Option<Distribution>, pick: fn(&Distribution) -> f64) -> String {
    d.as_ref()
        .map_or("-".into(), |d| format!("{:.1}", pick(d) * 1e3))
}

fn one_line(label: &str, s: &LevelSummary, stopped: Option<&str>) -> String {
    format!(
        "{label}: {} requests, {:.2} req/s, latency p50 {} ms p99 {} ms, {} errors{}",
        s.requests,
        s.requests_per_second,
        ms(&s.latency, |d| d.p50),
        ms(&s.latency, |d| d.p99),
        s.requests - s.ok,
        stopped
            .map(|s| format!(" — stopped: {s}"))
            .unwrap_or_default()
    )
}

pub(crate) fn print(bench: &BenchRecord, kind: WorkloadKind) {
    println!(
        "\nmodel {}  workload {:?}{}",
        bench.model["model"].as_str().unwrap_or("?"),
        kind,
        bench
            .workload
            .source
            .as_ref()
            .map(|s| format!(" (inputs from {s})"))
            .unwrap_or_default()
    );
    let generation = kind != WorkloadKind::Embed;
    let mut header = format!(
        "{:<22} {:>6} {:>6} {:>8} ",
        "level", "reqs", "err%", "req/s"
    );
    if generation {
        header += &format!(
            "{:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} ",
            "in tok/s", "out tok/s", "TTFT p50", "TTFT p99", "TPOT p50", "ITL p50", "ITL p99"
        );
    } else {
        header += &format!("{:>9} {:>9} ", "items/s", "in tok/s");
    }
    header += &format!(
        "{:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "lat p50", "lat p90", "lat p99", "lat max", "lag p99", "goodput"
    );
    println!("{header}   (times in ms)");
    let mark = |i: usize| {
        if bench.saturation.iter().any(|s| s.knee == i) {
            "  <- knee"
        } else if bench.saturation.iter().any(|s| s.first_saturated == i) {
            "  <- saturated"
        } else {
            ""
        }
    };
    for (i, level) in bench.levels.iter().enumerate() {
        let s = &level.summary;
        let mut row = format!(
            "{:<22} {:>6} {:>6.1} {:>8.2} ",
            level.label,
            s.requests,
            s.error_rate * 100.0,
            s.requests_per_second
        );
        if generation {
            row += &format!(
                "{:>9.1} {:>9.1} {:>9} {:>9} {:>8} {:>8} {:>8} ",
                s.input_tokens_per_second,
                s.output_tokens_per_second,
                ms(&s.ttft, |d| d.p50),
                ms(&s.ttft, |d| d.p99),
                ms(&s.tpot, |d| d.p50),
                ms(&s.itl, |d| d.p50),
                ms(&s.itl, |d| d.p99)
            );
        } else {
            row += &format!(
                "{:>9.1} {:>9.1} ",
                s.items_per_second, s.input_tokens_per_second
            );
        }
        row += &format!(
            "{:>9} {:>9} {:>9} {:>9} {:>8} {:>8.2}",
            ms(&s.latency, |d| d.p50),
            ms(&s.latency, |d| d.p90),
            ms(&s.latency, |d| d.p99),
            ms(&s.latency, |d| d.max),
            ms(&s.schedule_lag, |d| d.p99),
            s.goodput
        );
        println!("{row}{}", mark(i));
        for e in &level.energy {
            println!(
                "{:<22} energy ({}): {:.1} J over {:.1} s, mean {:.1} W; {} J per {} token, {} J per 1M",
                "",
                e.reading.source,
                e.reading.joules,
                e.reading.seconds,
                e.reading.mean_watts,
                e.joules_per_token.map_or("-".into(), |j| format!("{j:.4}")),
                e.token_kind,
                e.joules_per_mtok.map_or("-".into(), |j| format!("{j:.0}"))
            );
        }
        if let Some(view) = &level.server {
            println!("{:<22} {}", "", server_line(view, s));
        }
        for t in &level.turns {
            println!(
                "{:<22} turn {}: {} requests, TTFT p50 {} p99 {} ms, latency p50 {} ms, {} input tokens on average",
                "",
                t.turn,
                t.requests,
                ms(&t.ttft, |d| d.p50),
                ms(&t.ttft, |d| d.p99),
                ms(&t.latency, |d| d.p50),
                t.mean_input_tokens.map_or("-".into(), |n| format!("{n:.0}"))
            );
        }
        if !s.errors.is_empty() {
            println!("{:<22} errors: {:?}", "", s.errors);
        }
        if let Some(stopped) = &level.stopped {
            println!("{:<22} stopped: {stopped}", "");
        }
    }
    for sat in &bench.saturation {
        println!(
            "saturated at {} (knee: {}): {}",
            bench.levels[sat.first_saturated].label, bench.levels[sat.knee].label, sat.rule
        );
    }
    if bench.slo.is_set() {
        println!(
            "SLO: {}",
            serde_json::to_string(&bench.slo).unwrap_or_default()
        );
    }
    if let Some(found) = &bench.max_rate {
        print_max_rate(found, &bench.pricing);
    }
    if let Some(c) = &bench.cost {
        print_cost(c, &bench.pricing, kind);
    }
    println!();
    for (name, definition) in DEFINITIONS {
        println!("  {name:<12} {definition}");
    }
    for source in bench.energy_sources.iter().filter(|s| !s.available) {
        println!("  energy {:<6} missing: {}", source.source, source.detail);
    }
    if bench.interrupted {
        println!("\ninterrupted: the record holds what was measured until Ctrl-C");
    }
}

/// The server's figures beside the client's, e.g. `server: queue mean 1.2 max 4, ...`.
fn server_line(view: &ServerView, client: &LevelSummary) -> String {
    let s = &view.summary;
    let pair = |mean: Option<f64>, max: Option<f64>, scale: f64, unit: &str| match (mean, max) {
        (Some(m), Some(x)) => format!("mean {:.1}{unit} max {:.1}{unit}", m * scale, x * scale),
        _ => "-".into(),
    };
    let tokens = s
        .generated_tokens_per_s
        .map_or("-".into(), |t| format!("{t:.1}"));
    let mut line = format!(
        "server ({} readings): queued {}, running {}, KV cache {}, generated {tokens} tok/s (client counted {:.1})",
        s.readings,
        pair(s.queued_mean, s.queued_max, 1.0, ""),
        pair(s.running_mean, s.running_max, 1.0, ""),
        pair(s.kv_cache_usage_mean, s.kv_cache_usage_max, 100.0, "%"),
        client.output_tokens_per_second
    );
    if view.log.failures > 0 {
        line += &format!(
            "; {} of {} scrapes failed: {}",
            view.log.failures,
            view.log.attempts,
            view.log.first_error.as_deref().unwrap_or("?")
        );
    }
    if s.counter_resets > 0 {
        line += "; the server restarted during the level";
    }
    line
}

fn print_max_rate(found: &MaxRate, pricing: &Pricing) {
    let t = &found.target;
    let rate = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.3}/s"));
    println!(
        "\nmax rate meeting the SLO for {}% of requests: {} (lowest failing: {}; bisected to {:.0}%)",
        t.percentile * 100.0,
        rate(found.max_rate),
        rate(found.lowest_failing_rate),
        found.precision * 100.0
    );
    println!(
        "  {:.0}% interval on the limit: [{}, {})  (highest confident pass, lowest confident failure; each verdict at {:.1}%, exact binomial bounds)",
        t.confidence * 100.0,
        rate(found.interval_low),
        found.interval_high.map_or("unbounded".into(), |r| format!("{r:.3}/s")),
        t.verdict_confidence() * 100.0
    );
    for p in &found.probes {
        println!(
            "  probe {:>9.3}/s: {:>5} requests, {:>5} missed ({:.2}%, {:.2}%..{:.2}%) -> {:?}{}",
            p.rate,
            p.requests,
            p.violations,
            100.0 * p.violations as f64 / p.requests.max(1) as f64,
            100.0 * p.judgement.violation_share_low,
            100.0 * p.judgement.violation_share_high,
            p.counted_as,
            if p.judgement.verdict == Verdict::Undecided {
                " (undecided: point estimate)"
            } else {
                ""
            }
        );
    }
    if let (Some(target), Some(n)) = (pricing.target_rate, found.replicas) {
        println!(
            "  replicas for {target} req/s: {n} at the max rate{}",
            found
                .replicas_at_interval_low
                .map(|m| format!(", {m} at the interval's low end"))
                .unwrap_or_default()
        );
    }
    if let Some(note) = &found.note {
        println!("  note: {note}");
    }
}

fn print_cost(c: &CostEstimate, pricing: &Pricing, kind: WorkloadKind) {
    let dollars = |v: Option<f64>| v.map_or("-".into(), |v| format!("${v:.4}"));
    println!(
        "\ncapacity at the SLO (measured at {}): {:.2} req/s, {:.1} items/s, {:.1} input + {:.1} output tokens/s",
        c.at_level,
        c.capacity.requests_per_second,
        c.capacity.items_per_second,
        c.capacity.input_tokens_per_second,
        c.capacity.output_tokens_per_second
    );
    if let Some(p) = pricing.per_hour {
        if kind == WorkloadKind::Embed {
            println!(
                "cost at ${p}/hour: {} per 1M input tokens, {} per 1k embeddings",
                dollars(c.usd_per_mtok_input),
                dollars(c.usd_per_1k_items)
            );
        } else {
            println!(
                "cost at ${p}/hour: {} per 1M tokens (input+output), {} per 1M input tokens or {} per 1M output tokens (the whole price on one side), {} per 1k requests",
                dollars(c.usd_per_mtok),
                dollars(c.usd_per_mtok_input),
                dollars(c.usd_per_mtok_output),
                dollars(c.usd_per_1k_items)
            );
        }
    }
    if let (Some(target), Some(n)) = (pricing.target_rate, c.replicas) {
        println!("replicas for {target} req/s at the SLO: {n}");
    }
    if let (Some(p), Some(u)) = (pricing.provider_per_mtok, c.breakeven_utilization) {
        println!(
            "break-even with the provider at ${p}/1M tokens: {:.0} tokens/hour per replica = {:.1}% of capacity{}",
            c.breakeven_tokens_per_hour.unwrap_or_default(),
            u * 100.0,
            if u > 1.0 { " (the provider is cheaper even at full load)" } else { "" }
        );
    }
}
