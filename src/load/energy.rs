//! Energy used by the host during a load level, for joules per output token.
//!
//! There are two sources. Both only read, and both are optional:
//! - RAPL counters in the Linux powercap sysfs (`/sys/class/powercap`) on x86 hosts. The
//!   kernel's `intel-rapl` driver also covers AMD Zen and Hygon parts (Linux 5.8 and
//!   later).
//! - NVIDIA GPUs through `nvidia-smi`, which reads NVML. `nvidia-smi --help-query-gpu`
//!   lists power fields (`power.draw`, `power.draw.instant`, `power.draw.average`) but no
//!   energy counter. So GPU energy is the trapezoid integral of power samples, taken every
//!   `interval`. (NVML has `nvmlDeviceGetTotalEnergyConsumption`, in mJ since the driver
//!   loaded, on Volta and newer GPUs. Reading it would mean linking NVML itself.) The
//!   board's own power sensor is sampled too: on A100 and H100 it sees about a quarter of
//!   the time (arXiv:2312.02741, "Part-time Power Measurements"). So short levels give
//!   noisy GPU joules.
//!
//! A source that cannot be read is reported as missing, with the reason. Nothing is
//! estimated. The readings cover the whole host (every CPU package, every GPU), not only
//! the server process. If the load generator runs on the same host, its own use is
//! included.

use std::collections::BTreeSet;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Where Linux exposes power zones.
pub const POWERCAP_ROOT: &str = "/sys/class/powercap";

/// Powercap control types that read RAPL, in order of preference. When more than one is
/// present, they expose the same packages again (the MMIO interface of client parts, the
/// TPMI interface of recent Xeons). Only the first present one is read, so that nothing
/// is counted twice.
const RAPL_CONTROL_TYPES: [&str; 3] = ["intel-rapl", "intel-rapl-tpmi", "intel-rapl-mmio"];

/// The `nvidia-smi` query. Its power fields come last, in order of preference.
/// `power.draw.instant` is the instantaneous board power. `power.draw` is a 1-second
/// average on Ampere and newer, so integrating it would smear each level's edges by up
/// to a second.
const NVML_QUERY: &str = "timestamp,index,name,power.draw.instant,power.draw";
/// The same query for drivers that do not know `power.draw.instant`.
const NVML_FALLBACK_QUERY: &str = "timestamp,index,name,power.draw";
/// Without persistence mode each `nvidia-smi` run has to initialise the driver, which is
/// slow. But ten seconds means the driver is stuck.
const NVIDIA_SMI_TIMEOUT: Duration = Duration::from_secs(10);

/// The kind of counter behind a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnergyKind {
    /// CPU packages (and DRAM, where it is metered) through Linux powercap.
    Rapl,
    /// NVIDIA GPUs through `nvidia-smi`.
    Nvml,
}

impl EnergyKind {
    /// `"rapl"` or `"nvml"`: the name used in readings and messages.
    pub fn name(self) -> &'static str {
        match self {
            EnergyKind::Rapl => "rapl",
            EnergyKind::Nvml => "nvml",
        }
    }
}

/// A source that this host can measure.
#[derive(Debug, Clone)]
pub struct EnergySource {
    pub kind: EnergyKind,
    /// One label per measured domain, e.g. `package-0`, `package-0/dram`, or
    /// `gpu0 NVIDIA H100 80GB HBM3`.
    pub domains: Vec<String>,
    /// Which domains add up to the total, and why any others are left out.
    pub method: String,
    reader: Reader,
}

#[derive(Debug, Clone)]
enum Reader {
    Rapl(Vec<Zone>),
    Nvml {
        program: PathBuf,
        query: &'static str,
        /// The GPUs measured: index and label.
        gpus: Vec<(u32, String)>,
    },
}

/// One RAPL power zone.
#[derive(Debug, Clone)]
struct Zone {
    /// The names of the zone and its parents, e.g. `package-0/dram`.
    label: String,
    energy_uj: PathBuf,
    range_uj: u64,
    /// Whether the zone adds to the total, or lies inside another zone.
    in_total: bool,
}

/// What a probe found.
#[derive(Debug, Clone)]
pub enum Availability {
    Available(EnergySource),
    /// Cannot be measured here. `source` is `"rapl"` or `"nvml"`, and `why` gives the
    /// reason, e.g. `nvidia-smi not found` or `permission denied reading ...`.
    Missing {
        source: &'static str,
        why: String,
    },
}

/// Probes both sources on this host: RAPL under [`POWERCAP_ROOT`], then `nvidia-smi`.
pub fn probe_host() -> Vec<Availability> {
    vec![probe_rapl(Path::new(POWERCAP_ROOT)), probe_nvml()]
}

/// Finds the RAPL zones under `root` (normally [`POWERCAP_ROOT`]) and checks that every
/// counter can be read.
///
/// The total is the top-level zones (`package-N`) plus the `dram` subzones. DRAM is
/// metered apart from the package, but `core` and `uncore` are parts of it. A top-level
/// `psys` zone covers the whole SoC, packages included, so it is added only when it is
/// the only top-level zone.
pub fn probe_rapl(root: &Path) -> Availability {
    let missing = |why: String| Availability::Missing {
        source: "rapl",
        why,
    };
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return missing(format!(
                "no {} (a kernel without powercap, or not Linux)",
                root.display()
            ))
        }
        Err(e) => return missing(read_failure(root, &e)),
    };
    // (control type, zone numbers, directory name), e.g. ("intel-rapl", [0, 1], "intel-rapl:0:1").
    let mut found: Vec<(String, Vec<u32>, String)> = entries
        .flatten()
        .filter_map(|entry| {
            let dir = entry.file_name().to_string_lossy().into_owned();
            let (control, numbers) = parse_zone_dir(&dir)?;
            Some((control.to_string(), numbers, dir))
        })
        .collect();
    let Some(control) = RAPL_CONTROL_TYPES
        .into_iter()
        .find(|c| found.iter().any(|(t, _, _)| t == c))
    else {
        return missing(format!(
            "no RAPL zones under {} (the intel_rapl_msr module is not loaded, or the CPU \
             has no RAPL)",
            root.display()
        ));
    };
    let skipped: BTreeSet<String> = found
        .iter()
        .filter(|(t, _, _)| t != control)
        .map(|(t, _, _)| t.clone())
        .collect();
    found.retain(|(t, _, _)| t == control);
    // Numeric order: intel-rapl:2 before intel-rapl:10, and each zone before its subzones.
    found.sort_by(|a, b| a.1.cmp(&b.1));

    let mut names = Vec::with_capacity(found.len());
    for (_, _, dir) in &found {
        match read_trimmed(&root.join(dir).join("name")) {
            Ok(name) => names.push(name),
            Err(why) => return missing(why),
        }
    }
    let name_of = |numbers: &[u32]| {
        found
            .iter()
            .position(|(_, n, _)| n == numbers)
            .map(|i| names[i].clone())
    };
    let top_level = found.iter().filter(|(_, n, _)| n.len() == 1).count();

    let mut zones = Vec::with_capacity(found.len());
    for ((_, numbers, dir), name) in found.iter().zip(&names) {
        // The label names the parents too: every package has its own "dram".
        let mut parts: Vec<String> = (1..numbers.len())
            .filter_map(|depth| name_of(&numbers[..depth]))
            .collect();
        parts.push(name.clone());
        let in_total = if numbers.len() == 1 {
            name != "psys" || top_level == 1
        } else {
            name == "dram"
        };
        let zone_dir = root.join(dir);
        let range_uj = match read_u64(&zone_dir.join("max_energy_range_uj")) {
            Ok(v) => v,
            Err(why) => return missing(why),
        };
        let energy_uj = zone_dir.join("energy_uj");
        // Read once now: an unreadable counter makes the whole source missing, here
        // rather than mid-run.
        if let Err(why) = read_u64(&energy_uj) {
            return missing(why);
        }
        zones.push(Zone {
            label: parts.join("/"),
            energy_uj,
            range_uj,
            in_total,
        });
    }

    let list = |in_total: bool| {
        zones
            .iter()
            .filter(|z| z.in_total == in_total)
            .map(|z| z.label.as_str())
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let mut method = format!("RAPL counters ({control}): total = {}", list(true));
    if zones.iter().any(|z| !z.in_total) {
        method.push_str(&format!(
            "; not added: {} (core/uncore lie inside their package, psys covers the packages)",
            list(false).replace(" + ", ", ")
        ));
    }
    for other in skipped {
        method.push_str(&format!("; {other} skipped (the same packages again)"));
    }
    Availability::Available(EnergySource {
        kind: EnergyKind::Rapl,
        domains: zones.iter().map(|z| z.label.clone()).collect(),
        method,
        reader: Reader::Rapl(zones),
    })
}

/// Splits a powercap directory name such as `intel-rapl:0:1` into its control type and
/// zone numbers. Returns `None` for anything else, e.g. the `intel-rapl` control-type
/// directory itself.
fn parse_zone_dir(dir: &str) -> Option<(&str, Vec<u32>)> {
    let mut parts = dir.split(':');
    let control = parts.next()?;
    if !RAPL_CONTROL_TYPES.contains(&control) {
        return None;
    }
    let numbers: Vec<u32> = parts.map(|p| p.parse().ok()).collect::<Option<_>>()?;
    (!numbers.is_empty()).then_some((control, numbers))
}

/// Says why a file could not be read. A permission error gets its own wording because it
/// is the usual case for RAPL: `energy_uj` has been root-only since the CVE-2020-8694 fix.
fn read_failure(path: &Path, e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::PermissionDenied {
        format!(
            "permission denied reading {} (RAPL counters are root-only: run as root or \
             grant read access)",
            path.display()
        )
    } else {
        format!("cannot read {}: {e}", path.display())
    }
}

fn read_trimmed(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| read_failure(path, &e))
}

fn read_u64(path: &Path) -> Result<u64, String> {
    let text = read_trimmed(path)?;
    text.parse()
        .map_err(|e| format!("{}: `{text}` is not a counter: {e}", path.display()))
}

/// The µJ used between two readings of one RAPL counter that wrapped at most once.
///
/// Wrap semantics, from the kernel source rather than the docs. The powercap docs
/// (Documentation/power/powercap/powercap.rst) say only "Range of the above energy counter
/// in micro-joules". `drivers/powercap/intel_rapl_common.c` reports
/// `max_energy_range_uj` as `ENERGY_STATUS_MASK` (0xFFFFFFFF, the 32-bit hardware
/// counter) times the zone's energy unit (`get_max_energy_counter`, `rapl_unit_xlate`).
/// It reports `energy_uj` as the raw count times that same unit, truncated to whole µJ.
/// So the counter goes from `max_energy_range_uj` back to 0 one unit later: it counts
/// modulo range + unit, where unit = range / 0xFFFFFFFF (61 µJ for Intel packages, 15 µJ
/// for server DRAM). A zone whose range is too small for that gets a unit of 1 µJ, which
/// is the plain "mod range + 1".
fn counter_delta_uj(start: u64, end: u64, range_uj: u64) -> u64 {
    if end >= start {
        return end - start;
    }
    let mask = u64::from(u32::MAX);
    let unit = (range_uj.saturating_add(mask / 2) / mask).max(1);
    range_uj.saturating_add(unit).saturating_sub(start) + end
}

/// Probes `nvidia-smi` on `PATH`.
pub fn probe_nvml() -> Availability {
    probe_nvml_with(Path::new("nvidia-smi"))
}

/// Probes the GPUs through `program`, a path to `nvidia-smi` or a bare name to find on
/// `PATH`. GPUs that report no power draw (`[N/A]`, `[Not Supported]`) are not measured,
/// and `method` names them.
pub fn probe_nvml_with(program: &Path) -> Availability {
    let missing = |why: String| Availability::Missing {
        source: "nvml",
        why,
    };
    // An older driver rejects the whole query if it does not know power.draw.instant.
    let (query, text) = match run_nvidia_smi(program, NVML_QUERY) {
        Ok(text) => (NVML_QUERY, text),
        Err(_) => match run_nvidia_smi(program, NVML_FALLBACK_QUERY) {
            Ok(text) => (NVML_FALLBACK_QUERY, text),
            Err(why) => return missing(why),
        },
    };
    let samples = match parse_nvidia_smi(&text, query) {
        Ok(samples) => samples,
        Err(why) => return missing(why),
    };
    if samples.is_empty() {
        return missing(format!("{} lists no GPU", program.display()));
    }
    let label = |s: &GpuSample| format!("gpu{} {}", s.index, s.name);
    let gpus: Vec<(u32, String)> = samples
        .iter()
        .filter(|s| s.watts.is_some())
        .map(|s| (s.index, label(s)))
        .collect();
    let unmeasured: Vec<String> = samples
        .iter()
        .filter(|s| s.watts.is_none())
        .map(label)
        .collect();
    if gpus.is_empty() {
        return missing(format!(
            "no GPU reports its power draw ({} gave [N/A] or [Not Supported] for {})",
            program.display(),
            unmeasured.join(", ")
        ));
    }
    let fields = query
        .trim_start_matches("timestamp,index,name,")
        .replace(',', ", else ");
    let mut method = format!(
        "nvidia-smi {fields}, sampled and integrated with the trapezoid rule (nvidia-smi \
         has no energy counter query): total = {}",
        gpus.iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join(" + ")
    );
    if !unmeasured.is_empty() {
        method.push_str(&format!(
            "; not measured (no power reading): {}",
            unmeasured.join(", ")
        ));
    }
    Availability::Available(EnergySource {
        kind: EnergyKind::Nvml,
        domains: gpus.iter().map(|(_, l)| l.clone()).collect(),
        method,
        reader: Reader::Nvml {
            program: program.to_path_buf(),
            query,
            gpus,
        },
    })
}

/// Runs one `nvidia-smi --query-gpu` and returns what it printed.
fn run_nvidia_smi(program: &Path, query: &str) -> Result<String, String> {
    let shown = program.display();
    let spawn = || {
        Command::new(program)
            .arg(format!("--query-gpu={query}"))
            .arg("--format=csv,noheader,nounits")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    // "Text file busy" is transient: a process forked while the program was being
    // written still holds it open for writing until that child execs or exits.
    let mut busy_retries = 100;
    let mut child = loop {
        match spawn() {
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy && busy_retries > 0 => {
                busy_retries -= 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => {
                break other.map_err(|e| match e.kind() {
                    io::ErrorKind::NotFound => format!("{shown} not found"),
                    _ => format!("cannot run {shown}: {e}"),
                })?
            }
        }
    };
    // A wedged driver can hang nvidia-smi: poll rather than wait forever. The output is a
    // line per GPU, far below a pipe's buffer, so nothing blocks on unread output.
    let deadline = Instant::now() + NVIDIA_SMI_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{shown} did not answer within {} s",
                    NVIDIA_SMI_TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("waiting for {shown}: {e}")),
        }
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout
            .read_to_string(&mut out)
            .map_err(|e| format!("reading {shown}'s output: {e}"))?;
    }
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut err);
    }
    if !status.success() {
        // nvidia-smi prints its errors on stdout ("NVIDIA-SMI has failed because ...").
        let said = out
            .lines()
            .chain(err.lines())
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no message");
        return Err(format!("{shown} failed ({status}): {said}"));
    }
    Ok(out)
}

/// One GPU in one `nvidia-smi` run.
#[derive(Debug, Clone, PartialEq)]
struct GpuSample {
    /// The `timestamp` field (local wall clock), in µs. Only differences are used.
    at_us: i64,
    index: u32,
    name: String,
    /// The first power field the GPU reported, in watts.
    watts: Option<f64>,
}

/// Parses `nvidia-smi --query-gpu=<query> --format=csv,noheader,nounits` output, where
/// `query` is [`NVML_QUERY`] or [`NVML_FALLBACK_QUERY`]: timestamp, index, name, then
/// the power fields. A bracketed value such as `[N/A]` or `[Not Supported]` counts as
/// missing.
fn parse_nvidia_smi(text: &str, query: &str) -> Result<Vec<GpuSample>, String> {
    let power_fields = query.split(',').count() - 3;
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |what: String| format!("nvidia-smi output line {}: {what}: `{line}`", n + 1);
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() < 3 + power_fields {
            return Err(bad(format!(
                "expected {} fields, found {}",
                3 + power_fields,
                fields.len()
            )));
        }
        let at = chrono::NaiveDateTime::parse_from_str(fields[0], "%Y/%m/%d %H:%M:%S%.f")
            .map_err(|e| bad(format!("timestamp `{}`: {e}", fields[0])))?;
        let index = fields[1]
            .parse()
            .map_err(|_| bad(format!("GPU index `{}`", fields[1])))?;
        // The name sits between the fixed fields. Parsing from both ends keeps a comma
        // in a name harmless.
        let power_at = fields.len() - power_fields;
        let mut watts = None;
        for value in &fields[power_at..] {
            if let Some(w) = parse_watts(value).map_err(bad)? {
                watts = Some(w);
                break;
            }
        }
        samples.push(GpuSample {
            at_us: at.and_utc().timestamp_micros(),
            index,
            name: fields[2..power_at].join(","),
            watts,
        });
    }
    Ok(samples)
}

fn parse_watts(value: &str) -> Result<Option<f64>, String> {
    if value.starts_with('[') || value == "N/A" {
        return Ok(None);
    }
    match value.parse::<f64>() {
        Ok(w) if w.is_finite() && w >= 0.0 => Ok(Some(w)),
        _ => Err(format!("`{value}` is not a power in watts")),
    }
}

/// The joules under a power curve given as (seconds, watts) points in time order. Uses
/// the trapezoid rule, i.e. power is taken as linear between samples.
fn trapezoid_joules(points: &[(f64, f64)]) -> f64 {
    points
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
        .sum()
}

/// Joules per GPU in `gpus`, integrated over that GPU's samples. Samples without a power
/// value are skipped, so the trapezoid bridges them.
fn integrate_gpus(
    samples: &[GpuSample],
    gpus: &[(u32, String)],
) -> Result<Vec<(String, f64)>, String> {
    gpus.iter()
        .map(|(index, label)| {
            let mut points: Vec<(i64, f64)> = samples
                .iter()
                .filter(|s| s.index == *index)
                .filter_map(|s| Some((s.at_us, s.watts?)))
                .collect();
            points.sort_by_key(|p| p.0);
            let Some(&(t0, _)) = points.first() else {
                return Err(format!("{label}: no power sample"));
            };
            if points.len() < 2 {
                return Err(format!("{label}: only one power sample"));
            }
            // Relative times keep µs differences exact: absolute epoch seconds in an f64
            // would round them.
            let points: Vec<(f64, f64)> = points
                .iter()
                .map(|&(t, w)| ((t - t0) as f64 / 1e6, w))
                .collect();
            Ok((label.clone(), trapezoid_joules(&points)))
        })
        .collect()
}

/// The energy used while a meter ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyReading {
    /// `"rapl"` or `"nvml"`.
    pub source: String,
    /// The total, in joules.
    pub joules: f64,
    /// How long the meter ran, in seconds.
    pub seconds: f64,
    /// `joules / seconds` (0 for an empty window).
    pub mean_watts: f64,
    /// Joules for every measured domain. Some domains overlap: `method` says which ones
    /// make up the total.
    pub domains: Vec<(String, f64)>,
    /// How the total was formed and measured.
    pub method: String,
}

impl EnergySource {
    /// A sampling interval that suits the source. RAPL needs only to be read more often
    /// than its counter wraps (at least minutes). GPU power is sampled fast enough to
    /// follow load changes.
    pub fn default_interval(&self) -> Duration {
        match self.kind {
            EnergyKind::Rapl => Duration::from_secs(1),
            EnergyKind::Nvml => Duration::from_millis(100),
        }
    }
}

/// Measures one source around a load level: [`EnergyMeter::start`] before the level,
/// [`EnergyMeter::stop`] after it. A background thread reads the source every
/// `interval`. For RAPL this means at most one counter wrap between reads. For NVML these
/// are the power samples. Dropping a meter without `stop` ends its thread after one last
/// read.
pub struct EnergyMeter {
    kind: EnergyKind,
    started: Instant,
    stop: mpsc::Sender<()>,
    worker: JoinHandle<Result<Measured, String>>,
}

/// What the worker thread hands back.
struct Measured {
    domains: Vec<(String, f64)>,
    joules: f64,
    method: String,
    ended: Instant,
}

/// A source being read: one read per `sample`, then the totals.
trait Sampler: Send {
    fn sample(&mut self) -> Result<(), String>;
    /// Per-domain joules and the total.
    fn finish(self: Box<Self>) -> Result<(Vec<(String, f64)>, f64), String>;
}

impl EnergyMeter {
    /// Takes the first reading now, so that a broken source fails here and not at `stop`.
    /// Then keeps reading every `interval` until `stop`.
    pub fn start(source: &EnergySource, interval: Duration) -> Result<EnergyMeter, String> {
        let mut sampler: Box<dyn Sampler> = match &source.reader {
            Reader::Rapl(zones) => Box::new(RaplSampler::new(zones.clone())?),
            Reader::Nvml {
                program,
                query,
                gpus,
            } => Box::new(NvmlSampler {
                program: program.clone(),
                query,
                gpus: gpus.clone(),
                samples: Vec::new(),
            }),
        };
        if source.kind == EnergyKind::Nvml {
            sampler.sample()?;
        }
        let started = Instant::now();
        let (stop, stopped) = mpsc::channel::<()>();
        let method = source.method.clone();
        let worker = std::thread::Builder::new()
            .name("energy-meter".into())
            .spawn(move || {
                let mut failures = 0usize;
                let mut last_failure = String::new();
                loop {
                    let stopping = !matches!(
                        stopped.recv_timeout(interval),
                        Err(RecvTimeoutError::Timeout)
                    );
                    match sampler.sample() {
                        Ok(()) => {}
                        // The last read closes the window: without it the total would
                        // stop short.
                        Err(why) if stopping => {
                            return Err(format!("the last reading failed: {why}"));
                        }
                        // A missed read in between is bridged by the next one.
                        Err(why) => {
                            failures += 1;
                            last_failure = why;
                        }
                    }
                    if stopping {
                        break;
                    }
                }
                let ended = Instant::now();
                let (domains, joules) = sampler.finish()?;
                let mut method = method;
                if failures > 0 {
                    method.push_str(&format!(
                        "; {failures} reading(s) failed and were bridged, the last with: \
                         {last_failure}"
                    ));
                }
                Ok(Measured {
                    domains,
                    joules,
                    method,
                    ended,
                })
            })
            .map_err(|e| format!("cannot start the energy meter thread: {e}"))?;
        Ok(EnergyMeter {
            kind: source.kind,
            started,
            stop,
            worker,
        })
    }

    /// Takes the last reading and returns the energy used since `start`.
    pub fn stop(self) -> Result<EnergyReading, String> {
        let _ = self.stop.send(());
        let measured = self
            .worker
            .join()
            .map_err(|_| "the energy meter thread panicked".to_string())??;
        let seconds = measured
            .ended
            .saturating_duration_since(self.started)
            .as_secs_f64();
        Ok(EnergyReading {
            source: self.kind.name().to_string(),
            joules: measured.joules,
            seconds,
            mean_watts: if seconds > 0.0 {
                measured.joules / seconds
            } else {
                0.0
            },
            domains: measured.domains,
            method: measured.method,
        })
    }
}

/// RAPL: the wrap-corrected µJ of every zone, added up read by read.
struct RaplSampler {
    zones: Vec<Zone>,
    last: Vec<u64>,
    used_uj: Vec<u64>,
}

impl RaplSampler {
    fn new(zones: Vec<Zone>) -> Result<Self, String> {
        let last = read_zones(&zones)?;
        let used_uj = vec![0; zones.len()];
        Ok(RaplSampler {
            zones,
            last,
            used_uj,
        })
    }
}

fn read_zones(zones: &[Zone]) -> Result<Vec<u64>, String> {
    zones.iter().map(|z| read_u64(&z.energy_uj)).collect()
}

impl Sampler for RaplSampler {
    fn sample(&mut self) -> Result<(), String> {
        // All zones or none, so that a failed read leaves every zone at its last value.
        let now = read_zones(&self.zones)?;
        for (i, zone) in self.zones.iter().enumerate() {
            self.used_uj[i] += counter_delta_uj(self.last[i], now[i], zone.range_uj);
        }
        self.last = now;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(Vec<(String, f64)>, f64), String> {
        // Add in whole µJ, then convert once.
        let total_uj: u64 = self
            .zones
            .iter()
            .zip(&self.used_uj)
            .filter(|(z, _)| z.in_total)
            .map(|(_, uj)| uj)
            .sum();
        let domains = self
            .zones
            .iter()
            .zip(&self.used_uj)
            .map(|(z, &uj)| (z.label.clone(), uj as f64 / 1e6))
            .collect();
        Ok((domains, total_uj as f64 / 1e6))
    }
}

/// NVML: every power sample, integrated at the end.
struct NvmlSampler {
    program: PathBuf,
    query: &'static str,
    gpus: Vec<(u32, String)>,
    samples: Vec<GpuSample>,
}

impl Sampler for NvmlSampler {
    fn sample(&mut self) -> Result<(), String> {
        let text = run_nvidia_smi(&self.program, self.query)?;
        let samples = parse_nvidia_smi(&text, self.query)?;
        self.samples.extend(samples);
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(Vec<(String, f64)>, f64), String> {
        let domains = integrate_gpus(&self.samples, &self.gpus)?;
        let joules = domains.iter().map(|(_, j)| j).sum();
        Ok((domains, joules))
    }
}

/// Joules per output token, or `None` when no token came out.
pub fn per_token(reading: &EnergyReading, output_tokens: u64) -> Option<f64> {
    (output_tokens > 0).then(|| reading.joules / output_tokens as f64)
}

/// Joules per million output tokens, or `None` when no token came out.
pub fn per_million_tokens(reading: &EnergyReading, output_tokens: u64) -> Option<f64> {
    // Scale before dividing: one rounding instead of two.
    (output_tokens > 0).then(|| reading.joules * 1e6 / output_tokens as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/energy")
            .join(path)
    }

    /// A writable copy of a fixture tree.
    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_tree(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }

    fn tree(name: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&fixture(name), dir.path());
        dir
    }

    fn set_counter(root: &Path, zone: &str, uj: u64) {
        std::fs::write(root.join(zone).join("energy_uj"), format!("{uj}\n")).unwrap();
    }

    fn available(a: Availability) -> EnergySource {
        match a {
            Availability::Available(source) => source,
            Availability::Missing { source, why } => panic!("{source} missing: {why}"),
        }
    }

    fn missing(a: Availability) -> (&'static str, String) {
        match a {
            Availability::Available(s) => panic!("unexpectedly available: {:?}", s.domains),
            Availability::Missing { source, why } => (source, why),
        }
    }

    /// Start a meter that will not read on its own before `stop` (an hour's interval).
    fn start_still(source: &EnergySource) -> EnergyMeter {
        EnergyMeter::start(source, Duration::from_secs(3600)).unwrap()
    }

    #[test]
    fn probe_finds_server_zones_and_skips_the_control_type_directory() {
        let source = available(probe_rapl(&fixture("powercap-server")));
        assert_eq!(source.kind, EnergyKind::Rapl);
        assert_eq!(
            source.domains,
            ["package-0", "package-0/dram", "package-1", "package-1/dram"]
        );
        assert_eq!(
            source.method,
            "RAPL counters (intel-rapl): total = package-0 + package-0/dram + package-1 + \
             package-1/dram"
        );
    }

    #[test]
    fn joules_between_two_snapshots_with_a_wrap() {
        let dir = tree("powercap-server");
        let source = available(probe_rapl(dir.path()));
        let meter = start_still(&source);
        // 1500 J and 200 J on socket 0, 1250 J and 180 J on socket 1. Package 1's counter
        // wraps: it sat 143_328_850 µJ below its range, and the counter runs modulo
        // range + 61 µJ (one 61.035 µJ unit).
        set_counter(dir.path(), "intel-rapl:0", 184_467_201_536 + 1_500_000_000);
        set_counter(dir.path(), "intel-rapl:0:0", 31_415_926_535 + 200_000_000);
        set_counter(
            dir.path(),
            "intel-rapl:1",
            262_000_000_000 + 1_250_000_000 - 262_143_328_911,
        );
        set_counter(dir.path(), "intel-rapl:1:0", 27_182_818_284 + 180_000_000);
        let reading = meter.stop().unwrap();
        assert_eq!(reading.source, "rapl");
        assert_eq!(reading.joules, 3130.0);
        assert_eq!(
            reading.domains,
            [
                ("package-0".to_string(), 1500.0),
                ("package-0/dram".to_string(), 200.0),
                ("package-1".to_string(), 1250.0),
                ("package-1/dram".to_string(), 180.0),
            ]
        );
        assert!(reading.seconds > 0.0);
        assert_eq!(reading.mean_watts, reading.joules / reading.seconds);
    }

    #[test]
    fn counter_delta_wraps_modulo_range_plus_one_unit() {
        // Intel package: unit 61.035 µJ, so 61 after rounding.
        assert_eq!(counter_delta_uj(100, 250, 262_143_328_850), 150);
        assert_eq!(
            counter_delta_uj(262_143_000_000, 500_000, 262_143_328_850),
            328_850 + 61 + 500_000
        );
        // Reading exactly the range, then 0, is one unit of energy.
        assert_eq!(counter_delta_uj(262_143_328_850, 0, 262_143_328_850), 61);
        // Server DRAM: unit 15.3 µJ, so 15.
        assert_eq!(counter_delta_uj(65_712_999_613, 10, 65_712_999_613), 25);
        // A small range falls back to "mod range + 1".
        assert_eq!(counter_delta_uj(90, 5, 100), 16);
        assert_eq!(counter_delta_uj(7, 7, 100), 0);
    }

    #[test]
    fn every_read_adds_so_two_wraps_over_three_reads_both_count() {
        let dir = tree("powercap-server");
        let Reader::Rapl(zones) = available(probe_rapl(dir.path())).reader else {
            unreachable!()
        };
        let mut sampler = Box::new(RaplSampler::new(zones).unwrap());
        // Package 1 rises by 1_000_000_000 µJ, then by 262_000_000_000 µJ: each rise is
        // less than one counter range and each crosses the top, so it wraps twice in all.
        let modulus = 262_143_328_850 + 61;
        let first = (262_000_000_000 + 1_000_000_000) % modulus;
        let second = (first + 262_000_000_000) % modulus;
        assert!(first < 262_000_000_000 && second < first);
        set_counter(dir.path(), "intel-rapl:1", first);
        sampler.sample().unwrap();
        set_counter(dir.path(), "intel-rapl:1", second);
        sampler.sample().unwrap();
        let (domains, joules) = sampler.finish().unwrap();
        assert_eq!(domains[2], ("package-1".to_string(), 263_000.0));
        assert_eq!(domains[0], ("package-0".to_string(), 0.0));
        assert_eq!(joules, 263_000.0);
    }

    #[test]
    fn laptop_core_uncore_psys_and_mmio_are_not_added() {
        let dir = tree("powercap-laptop");
        let source = available(probe_rapl(dir.path()));
        assert_eq!(
            source.domains,
            ["package-0", "package-0/core", "package-0/uncore", "psys"]
        );
        assert_eq!(
            source.method,
            "RAPL counters (intel-rapl): total = package-0; not added: package-0/core, \
             package-0/uncore, psys (core/uncore lie inside their package, psys covers the \
             packages); intel-rapl-mmio skipped (the same packages again)"
        );
        let meter = start_still(&source);
        set_counter(dir.path(), "intel-rapl:0", 73_021_554_307 + 5_000_000);
        set_counter(dir.path(), "intel-rapl:0:0", 41_877_302_911 + 3_000_000);
        set_counter(dir.path(), "intel-rapl:0:1", 1_203_356_672 + 250_000);
        set_counter(dir.path(), "intel-rapl:1", 98_765_432_109 + 9_000_000);
        set_counter(dir.path(), "intel-rapl-mmio:0", 73_021_601_425 + 5_000_000);
        let reading = meter.stop().unwrap();
        assert_eq!(reading.joules, 5.0);
        assert_eq!(
            reading.domains,
            [
                ("package-0".to_string(), 5.0),
                ("package-0/core".to_string(), 3.0),
                ("package-0/uncore".to_string(), 0.25),
                ("psys".to_string(), 9.0),
            ]
        );
    }

    #[test]
    fn psys_alone_is_the_total_and_mmio_alone_is_used() {
        let dir = tempfile::tempdir().unwrap();
        for zone in ["intel-rapl:0", "intel-rapl-mmio:0"] {
            let z = dir.path().join(zone);
            std::fs::create_dir(&z).unwrap();
            std::fs::write(z.join("energy_uj"), "1\n").unwrap();
            std::fs::write(z.join("max_energy_range_uj"), "262143328850\n").unwrap();
        }
        std::fs::write(dir.path().join("intel-rapl:0/name"), "psys\n").unwrap();
        std::fs::write(dir.path().join("intel-rapl-mmio:0/name"), "package-0\n").unwrap();
        let source = available(probe_rapl(dir.path()));
        assert_eq!(source.domains, ["psys"]);
        std::fs::remove_dir_all(dir.path().join("intel-rapl:0")).unwrap();
        let source = available(probe_rapl(dir.path()));
        assert_eq!(source.domains, ["package-0"]);
        assert!(source
            .method
            .starts_with("RAPL counters (intel-rapl-mmio): total = package-0"));
    }

    #[test]
    fn an_unreadable_counter_makes_rapl_missing() {
        // Tests run as root, where chmod 000 does not stop a read: a directory in the
        // file's place fails the read the same way.
        let dir = tree("powercap-server");
        let counter = dir.path().join("intel-rapl:1/energy_uj");
        std::fs::remove_file(&counter).unwrap();
        std::fs::create_dir(&counter).unwrap();
        let (source, why) = missing(probe_rapl(dir.path()));
        assert_eq!(source, "rapl");
        assert!(
            why.starts_with(&format!("cannot read {}: ", counter.display())),
            "{why}"
        );

        let dir = tree("powercap-server");
        let counter = dir.path().join("intel-rapl:0:0/energy_uj");
        std::fs::remove_file(&counter).unwrap();
        let (_, why) = missing(probe_rapl(dir.path()));
        assert!(
            why.starts_with(&format!("cannot read {}: ", counter.display())),
            "{why}"
        );
    }

    #[test]
    fn permission_denied_is_said_so() {
        let path = Path::new("/sys/class/powercap/intel-rapl:0/energy_uj");
        let why = read_failure(path, &io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(
            why,
            "permission denied reading /sys/class/powercap/intel-rapl:0/energy_uj \
             (RAPL counters are root-only: run as root or grant read access)"
        );
    }

    #[test]
    fn no_powercap_or_no_zones_is_missing() {
        let (_, why) = missing(probe_rapl(Path::new("/nonexistent/powercap")));
        assert_eq!(
            why,
            "no /nonexistent/powercap (a kernel without powercap, or not Linux)"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("intel-rapl")).unwrap();
        let (_, why) = missing(probe_rapl(dir.path()));
        assert!(why.starts_with("no RAPL zones under "), "{why}");
    }

    #[test]
    fn zone_directories_parse() {
        assert_eq!(
            parse_zone_dir("intel-rapl:0"),
            Some(("intel-rapl", vec![0]))
        );
        assert_eq!(
            parse_zone_dir("intel-rapl-mmio:1:2"),
            Some(("intel-rapl-mmio", vec![1, 2]))
        );
        assert_eq!(parse_zone_dir("intel-rapl"), None);
        assert_eq!(parse_zone_dir("dtpm:0"), None);
        assert_eq!(parse_zone_dir("intel-rapl:x"), None);
    }

    #[test]
    fn h100_samples_integrate_with_the_trapezoid_rule() {
        let text = std::fs::read_to_string(fixture("nvidia-smi/h100x2.csv")).unwrap();
        let samples = parse_nvidia_smi(&text, NVML_QUERY).unwrap();
        assert_eq!(samples.len(), 8);
        assert_eq!(
            samples[0],
            GpuSample {
                at_us: chrono::NaiveDate::from_ymd_opt(2024, 5, 14)
                    .unwrap()
                    .and_hms_opt(9, 31, 7)
                    .unwrap()
                    .and_utc()
                    .timestamp_micros(),
                index: 0,
                name: "NVIDIA H100 80GB HBM3".into(),
                watts: Some(412.25),
            }
        );
        assert_eq!(samples[7].at_us - samples[0].at_us, 750_000);
        let gpus = [
            (0, "gpu0 NVIDIA H100 80GB HBM3".to_string()),
            (1, "gpu1 NVIDIA H100 80GB HBM3".to_string()),
        ];
        // GPU 0: 0.25 s × (412.25+436.75)/2 + 0.25 × (436.75+451.5)/2 + 0.25 × (451.5+420)/2.
        assert_eq!(
            integrate_gpus(&samples, &gpus).unwrap(),
            [
                ("gpu0 NVIDIA H100 80GB HBM3".to_string(), 326.09375),
                ("gpu1 NVIDIA H100 80GB HBM3".to_string(), 513.0625),
            ]
        );
    }

    #[test]
    fn not_available_values_are_missing() {
        let text = std::fs::read_to_string(fixture("nvidia-smi/a100-na.csv")).unwrap();
        let samples = parse_nvidia_smi(&text, NVML_QUERY).unwrap();
        let watts: Vec<_> = samples.iter().map(|s| (s.index, s.watts)).collect();
        // GPU 1 has no instant reading, so its power.draw is used.
        assert_eq!(watts, [(0, Some(287.41)), (1, Some(63.12)), (2, None)]);

        let text = std::fs::read_to_string(fixture("nvidia-smi/a100-no-instant.csv")).unwrap();
        let samples = parse_nvidia_smi(&text, NVML_FALLBACK_QUERY).unwrap();
        assert_eq!(samples[0].watts, Some(71.84));
        assert_eq!(samples[0].name, "NVIDIA A100-SXM4-80GB");
    }

    #[test]
    fn malformed_nvidia_smi_output_is_an_error() {
        let err =
            parse_nvidia_smi("2024/05/14 10:00:00.000, 0, GPU, 12.5\n", NVML_QUERY).unwrap_err();
        assert!(
            err.starts_with("nvidia-smi output line 1: expected 5 fields, found 4"),
            "{err}"
        );
        let err = parse_nvidia_smi("yesterday, 0, GPU, 1, 2\n", NVML_QUERY).unwrap_err();
        assert!(err.contains("timestamp `yesterday`"), "{err}");
        let err =
            parse_nvidia_smi("2024/05/14 10:00:00.000, 0, GPU, -3, 2\n", NVML_QUERY).unwrap_err();
        assert!(err.contains("`-3` is not a power in watts"), "{err}");
        let err =
            parse_nvidia_smi("2024/05/14 10:00:00.000, 0, GPU, lots, 2\n", NVML_QUERY).unwrap_err();
        assert!(err.contains("`lots` is not a power in watts"), "{err}");
    }

    #[test]
    fn trapezoid_on_known_samples() {
        assert_eq!(trapezoid_joules(&[]), 0.0);
        assert_eq!(trapezoid_joules(&[(0.0, 300.0)]), 0.0);
        // 150 + 400 + 100: a ramp, a plateau and a ramp down.
        assert_eq!(
            trapezoid_joules(&[(0.0, 100.0), (1.0, 200.0), (3.0, 200.0), (4.0, 0.0)]),
            650.0
        );
        // A missing value is bridged: 0..2 s at a straight 100 → 300 W is 400 J.
        let at = |s: i64| s * 1_000_000;
        let sample = |t: i64, w: Option<f64>| GpuSample {
            at_us: at(t),
            index: 3,
            name: "X".into(),
            watts: w,
        };
        let samples = [
            sample(2, Some(300.0)),
            sample(1, None),
            sample(0, Some(100.0)),
        ];
        assert_eq!(
            integrate_gpus(&samples, &[(3, "gpu3 X".into())]).unwrap(),
            [("gpu3 X".to_string(), 400.0)]
        );
        assert_eq!(
            integrate_gpus(&samples[..1], &[(3, "gpu3 X".into())]).unwrap_err(),
            "gpu3 X: only one power sample"
        );
    }

    /// An executable shell script standing in for nvidia-smi.
    fn fake_nvidia_smi(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("nvidia-smi");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn nvml_probe_measures_gpus_with_power_and_names_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let csv = fixture("nvidia-smi/a100-na.csv");
        let program = fake_nvidia_smi(dir.path(), &format!("cat '{}'", csv.display()));
        let source = available(probe_nvml_with(&program));
        assert_eq!(source.kind, EnergyKind::Nvml);
        assert_eq!(
            source.domains,
            ["gpu0 NVIDIA A100-SXM4-80GB", "gpu1 NVIDIA A100-SXM4-80GB"]
        );
        assert_eq!(
            source.method,
            "nvidia-smi power.draw.instant, else power.draw, sampled and integrated with \
             the trapezoid rule (nvidia-smi has no energy counter query): total = gpu0 \
             NVIDIA A100-SXM4-80GB + gpu1 NVIDIA A100-SXM4-80GB; not measured (no power \
             reading): gpu2 NVIDIA A100-SXM4-80GB"
        );
    }

    #[test]
    fn nvml_probe_falls_back_when_the_driver_lacks_instant_power() {
        let dir = tempfile::tempdir().unwrap();
        let csv = fixture("nvidia-smi/a100-no-instant.csv");
        let program = fake_nvidia_smi(
            dir.path(),
            &format!(
                "case \"$1\" in *power.draw.instant*) \
                 echo 'Field \"power.draw.instant\" is not a valid field to query.'; exit 2;; esac\n\
                 cat '{}'",
                csv.display()
            ),
        );
        let source = available(probe_nvml_with(&program));
        assert_eq!(source.domains, ["gpu0 NVIDIA A100-SXM4-80GB"]);
        assert!(
            source.method.starts_with("nvidia-smi power.draw, sampled"),
            "{}",
            source.method
        );
    }

    #[test]
    fn nvml_missing_says_why() {
        let (source, why) = missing(probe_nvml_with(Path::new("assay-test-no-nvidia-smi")));
        assert_eq!(
            (source, why.as_str()),
            ("nvml", "assay-test-no-nvidia-smi not found")
        );

        let dir = tempfile::tempdir().unwrap();
        let program = fake_nvidia_smi(
            dir.path(),
            "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"; exit 9",
        );
        let (_, why) = missing(probe_nvml_with(&program));
        assert_eq!(
            why,
            format!(
                "{} failed (exit status: 9): NVIDIA-SMI has failed because it couldn't \
                 communicate with the NVIDIA driver.",
                program.display()
            )
        );

        let program = fake_nvidia_smi(
            dir.path(),
            "echo '2024/05/14 10:02:45.119, 2, NVIDIA A100-SXM4-80GB, [Not Supported], [N/A]'",
        );
        let (_, why) = missing(probe_nvml_with(&program));
        assert!(why.starts_with("no GPU reports its power draw"), "{why}");
    }

    #[test]
    fn nvml_meter_samples_until_stopped() {
        // A constant 250 W board stamped with the real time: the joules are 250 W over
        // the span of the samples, which the meter's window contains.
        let dir = tempfile::tempdir().unwrap();
        let program = fake_nvidia_smi(
            dir.path(),
            "printf '%s, 0, Fake GPU, 250.00, 249.00\\n' \"$(date '+%Y/%m/%d %H:%M:%S.%6N')\"",
        );
        let source = available(probe_nvml_with(&program));
        let meter = EnergyMeter::start(&source, Duration::from_millis(20)).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let reading = meter.stop().unwrap();
        assert_eq!(reading.source, "nvml");
        assert_eq!(reading.domains.len(), 1);
        assert_eq!(reading.domains[0].0, "gpu0 Fake GPU");
        assert!(reading.joules >= 250.0 * 0.25, "{reading:?}");
        assert!(
            reading.joules <= 250.0 * (reading.seconds + 0.05),
            "{reading:?}"
        );
    }

    #[test]
    fn per_token_and_per_million() {
        let reading = EnergyReading {
            source: "rapl".into(),
            joules: 3130.0,
            seconds: 10.0,
            mean_watts: 313.0,
            domains: vec![],
            method: String::new(),
        };
        assert_eq!(per_token(&reading, 25_000), Some(0.1252));
        assert_eq!(per_million_tokens(&reading, 25_000), Some(125_200.0));
        assert_eq!(per_token(&reading, 0), None);
        assert_eq!(per_million_tokens(&reading, 0), None);
        let back: EnergyReading =
            serde_json::from_str(&serde_json::to_string(&reading).unwrap()).unwrap();
        assert_eq!(back, reading);
    }
}
