//! Runs one load level against a target and collects every request's record.
//!
//! Open loop: a dedicated thread sleeps until each scheduled instant (the last stretch
//! spun, so sends leave within microseconds of their schedule, not on a millisecond timer
//! tick) and hands the request to the runtime; nothing waits for earlier requests.
//! Closed loop: N tasks, each sending its next request when the previous one ends.
//! Each finished request appends its record to one shared list (an uncontended lock, no
//! task to wake: a collector woken per request cost ~5% of the client's requests/s).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::engine::openai::RequestRecord;
use crate::engine::{ChatMessage, Prompt, Timing};
use crate::load::schedule::{LoadModel, Schedule};
use crate::load::stats::{error_kind, Slo};
use crate::load::target::{Payload, Target};
use crate::metrics::quantile::percentile;

/// Bounds and guards of one level.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct LevelPlan {
    pub load: LoadModel,
    /// Seconds measured after the warm-up (infinite: bounded by `requests` only; JSON
    /// writes that as `null`).
    #[serde(deserialize_with = "null_as_infinite")]
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
    /// When the level starts, on the target's clock (a common `--start-at`); else at once.
    #[serde(skip)]
    pub start_at: Option<f64>,
    /// A max-rate probe: stop sending once this many measured requests missed the SLO
    /// (the probe has failed whatever the rest do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_after_violations: Option<SloStop>,
    /// A trace replay's send times (seconds from the start, scaled); payload i goes at
    /// time i.
    #[serde(skip)]
    pub replay: Option<Arc<Vec<f64>>>,
    /// Closed loop only: each user holds conversations of this shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<Conversation>,
}

/// Multi-turn chats: each user sends `turns` messages, each with the whole conversation
/// so far (its earlier messages and the model's answers), pausing `think_time` seconds
/// after each answer; then starts a new conversation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct Conversation {
    pub turns: usize,
    pub think_time: f64,
}

/// When a probe's failure is already certain.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize)]
pub struct SloStop {
    pub slo: Slo,
    pub violations: usize,
}

/// Reads back a duration JSON wrote as `null` (infinite).
fn null_as_infinite<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(<Option<f64> as serde::Deserialize>::deserialize(d)?.unwrap_or(f64::INFINITY))
}

/// One request as the level saw it.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub warmup: bool,
    /// Multi-turn runs: which turn of its conversation (1 = the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn: Option<usize>,
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

/// Where finished requests go, and the error budget they are held to.
struct Sink {
    samples: Mutex<Vec<Sample>>,
    measured: AtomicUsize,
    failed: AtomicUsize,
    max_error_rate: f64,
    violations: AtomicUsize,
    slo_stop: Option<SloStop>,
    /// Why the level stopped early (the first reason wins).
    stopped: Mutex<Option<String>>,
    stop: Arc<AtomicBool>,
}

impl Sink {
    fn push(&self, sample: Sample) {
        if !sample.warmup {
            let done = self.measured.fetch_add(1, Ordering::Relaxed) + 1;
            if let Some(stop) = &self.slo_stop {
                if !stop.slo.met_by(&sample.record) {
                    let missed = self.violations.fetch_add(1, Ordering::Relaxed) + 1;
                    if missed >= stop.violations {
                        self.stop_early(format!(
                            "SLO: {missed} of {done} requests missed it, so the probe fails whatever the rest do"
                        ));
                    }
                }
            }
            if let Some(error) = &sample.record.error {
                let failed = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
                if done >= 20 && failed as f64 / done as f64 > self.max_error_rate {
                    self.stop_early(format!(
                        "error budget: {failed} of {done} requests failed (more than {:.0}%); last: {}",
                        self.max_error_rate * 100.0,
                        error_kind(error)
                    ));
                }
            }
        }
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(sample);
    }

    /// Stops sending; the first reason given is the one kept.
    fn stop_early(&self, why: String) {
        self.stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why);
        self.stop.store(true, Ordering::Relaxed);
    }
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

/// The runtime a bench's requests run on, with `threads` workers.
pub fn client_runtime(threads: usize) -> crate::error::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| crate::error::Error::External(format!("cannot start the async runtime: {e}")))
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
    let sink = Arc::new(Sink {
        samples: Mutex::new(Vec::new()),
        measured: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        max_error_rate: plan.max_error_rate,
        violations: AtomicUsize::new(0),
        slo_stop: plan.stop_after_violations,
        stopped: Mutex::new(None),
        stop: stop.clone(),
    });
    // Carries nothing: it closes when the last task holding a sender ends.
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    // Leave 20 ms to set up, so the first sends are not late by construction.
    let start = plan.start_at.unwrap_or_else(|| target.now() + 0.02);
    let warm_end = start + plan.warmup;
    let end = warm_end + plan.duration;

    let dispatcher = match plan.load {
        LoadModel::Open { rate, arrivals } => {
            // Offsets from `start`, compared with the plan's own numbers: no rounding from
            // adding and subtracting clock readings decides whether an arrival counts.
            let schedule = match &plan.replay {
                Some(times) => {
                    Schedule::replay(times.clone(), plan.warmup + plan.duration, usize::MAX)
                }
                None => Schedule::new(
                    rate,
                    arrivals,
                    plan.seed,
                    plan.warmup + plan.duration,
                    usize::MAX,
                ),
            };
            let warmup = plan.warmup;
            let ctx = Dispatch {
                target: target.clone(),
                payloads: payloads.clone(),
                tx: tx.clone(),
                sink: sink.clone(),
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
                let sink = sink.clone();
                let (stop, interrupt, in_flight) =
                    (stop.clone(), interrupt.clone(), in_flight.clone());
                let (measured, claimed) = (measured.clone(), claimed.clone());
                let requests = plan.requests.unwrap_or(usize::MAX);
                let conversation = plan.conversation;
                tokio::spawn(async move {
                    let wait = start - target.now();
                    if wait > 0.0 {
                        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
                    }
                    if let Some(shape) = conversation {
                        let user = User {
                            target,
                            payloads,
                            sink,
                            stop,
                            interrupt,
                            in_flight,
                            measured,
                            claimed,
                            requests,
                            warm_end,
                            end,
                        };
                        user.converse(shape).await;
                        drop(tx);
                        return;
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
                        sink.push(Sample {
                            warmup,
                            turn: None,
                            record,
                        });
                    }
                    drop(tx);
                });
            }
            None
        }
    };
    drop(tx);

    let mut outcome = LevelOutcome::default();
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = rx.recv() => break,
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
                    let (latencies, failures) = measured_so_far(&sink);
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
    if outcome.stopped.is_none() {
        outcome.stopped = sink
            .stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
    outcome.samples = std::mem::take(&mut *sink.samples.lock().unwrap_or_else(|e| e.into_inner()));
    outcome
}

/// One closed-loop user holding conversations.
struct User {
    target: Arc<Target>,
    payloads: Arc<Vec<Payload>>,
    sink: Arc<Sink>,
    stop: Arc<AtomicBool>,
    interrupt: Arc<Interrupt>,
    in_flight: Arc<AtomicUsize>,
    measured: Arc<AtomicUsize>,
    claimed: Arc<AtomicUsize>,
    requests: usize,
    warm_end: f64,
    end: f64,
}

impl User {
    fn done(&self) -> bool {
        self.target.now() >= self.end
            || self.stop.load(Ordering::Relaxed)
            || self.interrupt.is_set()
    }

    /// Conversations until the level ends. A turn's payload supplies its new user
    /// message (and the system prompt on the first turn); a failed turn ends the
    /// conversation, since its history has no answer to carry on from.
    async fn converse(self, shape: Conversation) {
        let mut history: Vec<ChatMessage> = Vec::new();
        let mut turn = 0;
        while !self.done() {
            let now = self.target.now();
            let warmup = now < self.warm_end;
            if !warmup && self.measured.fetch_add(1, Ordering::Relaxed) >= self.requests {
                break;
            }
            let i = self.claimed.fetch_add(1, Ordering::Relaxed);
            let Payload::Generate(mut request) = self.payloads[i % self.payloads.len()].clone()
            else {
                break;
            };
            let Prompt::Chat(messages) = &request.prompt else {
                break;
            };
            if turn == 0 {
                history = messages.clone();
            } else if let Some(user) = messages.last() {
                history.push(user.clone());
            }
            request.prompt = Prompt::Chat(history.clone());
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            let (answer, record) = self.target.converse(request, now).await;
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.sink.push(Sample {
                warmup,
                turn: Some(turn + 1),
                record,
            });
            turn += 1;
            match answer {
                Some(text) if turn < shape.turns => {
                    history.push(ChatMessage {
                        role: "assistant".into(),
                        content: text,
                    });
                    // Thinking is the user's time, not the server's: no request is due.
                    let left = self.end - self.target.now();
                    let pause = shape.think_time.min(left.max(0.0));
                    if pause > 0.0 {
                        tokio::time::sleep(Duration::from_secs_f64(pause)).await;
                    }
                }
                _ => turn = 0,
            }
        }
    }
}

/// Latencies of the measured requests that succeeded so far, and how many failed.
fn measured_so_far(sink: &Sink) -> (Vec<f64>, usize) {
    let samples = sink.samples.lock().unwrap_or_else(|e| e.into_inner());
    let measured = samples.iter().filter(|s| !s.warmup);
    let latencies: Vec<f64> = measured
        .clone()
        .filter(|s| s.record.error.is_none())
        .map(|s| s.record.timing.end - s.record.timing.scheduled)
        .collect();
    let failures = measured.filter(|s| s.record.error.is_some()).count();
    (latencies, failures)
}

struct Dispatch {
    target: Arc<Target>,
    payloads: Arc<Vec<Payload>>,
    tx: mpsc::UnboundedSender<()>,
    sink: Arc<Sink>,
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
                self.sink.push(Sample {
                    warmup,
                    turn: None,
                    record,
                });
                continue;
            }
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            let (target, tx, in_flight, sink) = (
                self.target.clone(),
                self.tx.clone(),
                self.in_flight.clone(),
                self.sink.clone(),
            );
            let payload = self.payloads[(first_payload + i) % self.payloads.len()].clone();
            self.handle.spawn(async move {
                let record = target.call(payload, scheduled).await;
                in_flight.fetch_sub(1, Ordering::Relaxed);
                sink.push(Sample {
                    warmup,
                    turn: None,
                    record,
                });
                drop(tx);
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
