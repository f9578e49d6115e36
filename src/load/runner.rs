//! Runs one load level against a target and collects every request's record.
//!
//! Open loop: a dedicated thread sleeps until each scheduled instant (the last stretch
//! spun, so sends leave within microseconds of their schedule, not on a millisecond timer
//! tick) and hands the request to the runtime; nothing waits for earlier requests.
//! Closed loop: N tasks, each sending its next request when the previous one ends.
//! Records flow to one collector over a channel: no lock on the request path.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::engine::openai::RequestRecord;
use crate::engine::Timing;
use crate::load::schedule::{LoadModel, Schedule};
use crate::load::stats::error_kind;
use crate::load::target::{Payload, Target};
use crate::metrics::quantile::percentile;

/// Bounds and guards of one level.
#[derive(Debug, Clone, Serialize)]
pub struct LevelPlan {
    pub load: LoadModel,
    /// Seconds measured after the warm-up (infinite: bounded by `requests` only).
    pub duration: f64,
    /// Measured requests at most.
    pub requests: Option<usize>,
    /// Seconds at the start whose requests are sent but not measured.
    pub warmup: f64,
    /// Stop the level when more than this share of measured requests failed (checked
    /// once at least 20 have finished).
    pub max_error_rate: f64,
    /// Open loop: requests in flight at most; an arrival beyond it is recorded as dropped
    /// (never delayed, which would hide the overload).
    pub max_in_flight: usize,
    pub seed: u64,
    /// Index of the first payload to send: each level continues where the last stopped,
    /// so a server's prompt cache cannot serve one level the prompts of another.
    #[serde(skip)]
    pub first_payload: usize,
}

/// One request as the level saw it.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub warmup: bool,
    #[serde(flatten)]
    pub record: RequestRecord,
}

#[derive(Debug, Default)]
pub struct LevelOutcome {
    pub samples: Vec<Sample>,
    /// Why the level ended early, if it did.
    pub stopped: Option<String>,
    /// Requests still in flight when an interrupted level gave up waiting for them.
    pub abandoned: usize,
}

/// Set by Ctrl-C: levels stop sending, wait a little for what is in flight, and return.
#[derive(Default)]
pub struct Interrupt {
    pub flag: AtomicBool,
}

impl Interrupt {
    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }
}

/// How long an interrupted level waits for requests in flight.
const GRACE: Duration = Duration::from_secs(3);

/// Live figures for the progress line.
#[derive(Clone)]
pub struct Live {
    pub label: String,
    pub bar: indicatif::ProgressBar,
}

/// Runs one level to its end on `runtime`. The collector runs as a task on the runtime's
/// workers, not on the calling thread: a record handed over then wakes no other thread
/// (that cross-thread wake-up per request cost a third of the client's throughput).
pub fn run_level(
    runtime: &tokio::runtime::Runtime,
    target: Arc<Target>,
    payloads: Arc<Vec<Payload>>,
    plan: &LevelPlan,
    interrupt: Arc<Interrupt>,
    live: &Live,
) -> LevelOutcome {
    let (plan, live) = (plan.clone(), live.clone());
    let task = runtime.spawn(async move { level(target, payloads, &plan, interrupt, &live).await });
    match runtime.block_on(task) {
        Ok(outcome) => outcome,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

async fn level(
    target: Arc<Target>,
    payloads: Arc<Vec<Payload>>,
    plan: &LevelPlan,
    interrupt: Arc<Interrupt>,
    live: &Live,
) -> LevelOutcome {
    let stop = Arc::new(AtomicBool::new(false));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel::<Sample>();
    // Leave 20 ms to set up, so the first sends are not late by construction.
    let start = target.now() + 0.02;
    let warm_end = start + plan.warmup;
    let end = warm_end + plan.duration;

    let dispatcher = match plan.load {
        LoadModel::Open { rate, arrivals } => {
            // Offsets from `start`, compared with the plan's own numbers: no rounding from
            // adding and subtracting clock readings decides whether an arrival counts.
            let schedule = Schedule::new(
                rate,
                arrivals,
                plan.seed,
                plan.warmup + plan.duration,
                usize::MAX,
            );
            let warmup = plan.warmup;
            let ctx = Dispatch {
                target: target.clone(),
                payloads: payloads.clone(),
                tx: tx.clone(),
                stop: stop.clone(),
                interrupt: interrupt.clone(),
                in_flight: in_flight.clone(),
                handle: tokio::runtime::Handle::current(),
            };
            let (requests, max_in_flight) =
                (plan.requests.unwrap_or(usize::MAX), plan.max_in_flight);
            let first = plan.first_payload;
            let thread = std::thread::Builder::new()
                .name("assay-dispatch".into())
                .spawn(move || {
                    ctx.open_loop(schedule, start, warmup, requests, max_in_flight, first)
                })
                .expect("a thread can start");
            Some(thread)
        }
        LoadModel::Closed { concurrency } => {
            let measured = Arc::new(AtomicUsize::new(0));
            let claimed = Arc::new(AtomicUsize::new(plan.first_payload));
            for _ in 0..concurrency {
                let (target, payloads, tx) = (target.clone(), payloads.clone(), tx.clone());
                let (stop, interrupt, in_flight) =
                    (stop.clone(), interrupt.clone(), in_flight.clone());
                let (measured, claimed) = (measured.clone(), claimed.clone());
                let requests = plan.requests.unwrap_or(usize::MAX);
                tokio::spawn(async move {
                    let wait = start - target.now();
                    if wait > 0.0 {
                        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
                    }
                    loop {
                        let now = target.now();
                        if now >= end || stop.load(Ordering::Relaxed) || interrupt.is_set() {
                            break;
                        }
                        let warmup = now < warm_end;
                        if !warmup && measured.fetch_add(1, Ordering::Relaxed) >= requests {
                            break;
                        }
                        let i = claimed.fetch_add(1, Ordering::Relaxed);
                        in_flight.fetch_add(1, Ordering::Relaxed);
                        let record = target.call(payloads[i % payloads.len()].clone(), now).await;
                        in_flight.fetch_sub(1, Ordering::Relaxed);
                        if tx.send(Sample { warmup, record }).is_err() {
                            break;
                        }
                    }
                });
            }
            None
        }
    };
    drop(tx);

    let mut outcome = LevelOutcome::default();
    let mut latencies: Vec<f64> = Vec::new();
    let mut failures = 0usize;
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            sample = rx.recv() => {
                let Some(sample) = sample else { break };
                if !sample.warmup {
                    match &sample.record.error {
                        None => latencies.push(sample.record.timing.end - sample.record.timing.scheduled),
                        Some(_) => failures += 1,
                    }
                    let done = latencies.len() + failures;
                    if done >= 20
                        && failures as f64 / done as f64 > plan.max_error_rate
                        && outcome.stopped.is_none()
                    {
                        outcome.stopped = Some(format!(
                            "error budget: {failures} of {done} requests failed (more than {:.0}%); last: {}",
                            plan.max_error_rate * 100.0,
                            sample.record.error.as_deref().map(error_kind).unwrap_or_default()
                        ));
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                outcome.samples.push(sample);
            }
            _ = ticker.tick() => {
                if interrupt.is_set() && deadline.is_none() {
                    deadline = Some(tokio::time::Instant::now() + GRACE);
                    outcome.stopped.get_or_insert_with(|| "interrupted (Ctrl-C)".into());
                }
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    outcome.abandoned = in_flight.load(Ordering::Relaxed);
                    break;
                }
                // Percentiles sort every latency so far: only for a bar someone sees.
                if !live.bar.is_hidden() {
                    live.bar.set_message(progress_line(
                        &live.label,
                        &latencies,
                        failures,
                        in_flight.load(Ordering::Relaxed),
                        (target.now() - warm_end).max(1e-9),
                        target.now() < warm_end,
                    ));
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(thread) = dispatcher {
        let _ = thread.join();
    }
    outcome
}

struct Dispatch {
    target: Arc<Target>,
    payloads: Arc<Vec<Payload>>,
    tx: mpsc::UnboundedSender<Sample>,
    stop: Arc<AtomicBool>,
    interrupt: Arc<Interrupt>,
    in_flight: Arc<AtomicUsize>,
    handle: tokio::runtime::Handle,
}

impl Dispatch {
    fn open_loop(
        self,
        schedule: Schedule,
        start: f64,
        warmup_seconds: f64,
        requests: usize,
        max_in_flight: usize,
        first_payload: usize,
    ) {
        let epoch = self.target.epoch();
        let mut measured = 0usize;
        for (i, offset) in schedule.enumerate() {
            let scheduled = start + offset;
            let warmup = offset < warmup_seconds;
            if !warmup {
                if measured >= requests {
                    break;
                }
                measured += 1;
            }
            if !wait_until(
                epoch + Duration::from_secs_f64(scheduled),
                &self.stop,
                &self.interrupt,
            ) {
                break;
            }
            if self.in_flight.load(Ordering::Relaxed) >= max_in_flight {
                let record = dropped(scheduled, self.target.now(), max_in_flight);
                let _ = self.tx.send(Sample { warmup, record });
                continue;
            }
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            let (target, tx, in_flight) =
                (self.target.clone(), self.tx.clone(), self.in_flight.clone());
            let payload = self.payloads[(first_payload + i) % self.payloads.len()].clone();
            self.handle.spawn(async move {
                let record = target.call(payload, scheduled).await;
                in_flight.fetch_sub(1, Ordering::Relaxed);
                let _ = tx.send(Sample { warmup, record });
            });
        }
    }
}

/// Sleeps until `at`, the last 200 µs spinning (the OS timer is coarser than that).
/// False when told to stop first.
fn wait_until(at: Instant, stop: &AtomicBool, interrupt: &Interrupt) -> bool {
    const SPIN: Duration = Duration::from_micros(200);
    loop {
        if stop.load(Ordering::Relaxed) || interrupt.is_set() {
            return false;
        }
        let now = Instant::now();
        if now >= at {
            return true;
        }
        let left = at - now;
        if left > SPIN {
            // Wake at least every 50 ms to notice a stop.
            std::thread::sleep((left - SPIN).min(Duration::from_millis(50)));
        } else {
            std::hint::spin_loop();
        }
    }
}

fn dropped(scheduled: f64, now: f64, cap: usize) -> RequestRecord {
    let timing = Timing {
        scheduled,
        sent: now,
        end: now,
        ..Timing::default()
    };
    let why = format!("not sent: {cap} requests already in-flight (--max-in-flight)");
    RequestRecord::failed("dropped", 0, timing, why)
}

fn progress_line(
    label: &str,
    latencies: &[f64],
    failures: usize,
    in_flight: usize,
    elapsed: f64,
    warming: bool,
) -> String {
    if warming {
        return format!("{label}: warming up, {in_flight} in flight");
    }
    let ms = |q| {
        if latencies.is_empty() {
            "-".to_string()
        } else {
            format!("{:.0}", percentile(latencies, q) * 1e3)
        }
    };
    format!(
        "{label}: {} done, {:.1} req/s, {in_flight} in flight, latency p50 {} ms p99 {} ms, {failures} errors",
        latencies.len() + failures,
        latencies.len() as f64 / elapsed,
        ms(50.0),
        ms(99.0),
    )
}
