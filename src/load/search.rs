//! The highest open-loop rate at which an SLO holds (`assay bench --find-max-rate`).
//!
//! The SLO holds at percentile P when at least P of the requests met every bound (a failed
//! request meets none). A probe at one rate counts its violations, and an exact binomial
//! (Clopper–Pearson) bound on the violation share decides it: it passes when even the upper
//! bound is within 1 − P, fails when even the lower bound is above it, and is undecided
//! otherwise (the driver then sends more requests at the same rate and judges them all
//! together).
//!
//! The search doubles the rate until a probe fails (halves it until one passes), then
//! bisects between the highest pass and the lowest failure until they are within the
//! precision. The limit lies between the highest *confident* pass and the lowest
//! *confident* failure; each verdict is taken at 1 − (1 − C)/2, so both hold together with
//! confidence C (assuming attainment does not rise with the rate).

use serde::{Deserialize, Serialize};
use statrs::distribution::{Beta, ContinuousCDF};

/// What the SLO is held to, and how sure a verdict must be.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SloTarget {
    /// Share of requests that must meet the SLO (0.99 for p99).
    pub percentile: f64,
    /// Confidence of the interval on the limit (each verdict: 1 − (1 − C)/2).
    pub confidence: f64,
}

/// A probe's outcome against the SLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Undecided,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    pub verdict: Verdict,
    /// Exact bounds on the share of requests that miss the SLO, at the verdict confidence.
    pub violation_share_low: f64,
    pub violation_share_high: f64,
}

impl SloTarget {
    pub fn new(percentile: f64, confidence: f64) -> Result<Self, String> {
        if !(percentile > 0.0 && percentile < 1.0) {
            return Err(format!(
                "percentile {}: between 0 and 100, exclusive",
                percentile * 100.0
            ));
        }
        if !(confidence > 0.0 && confidence < 1.0) {
            return Err(format!(
                "confidence {confidence}: between 0 and 1, exclusive"
            ));
        }
        Ok(SloTarget {
            percentile,
            confidence,
        })
    }

    /// Confidence of one verdict: two of them bracket the limit.
    pub fn verdict_confidence(&self) -> f64 {
        1.0 - (1.0 - self.confidence) / 2.0
    }

    /// The violation share the SLO allows.
    fn allowed(&self) -> f64 {
        1.0 - self.percentile
    }

    /// The fewest requests that can pass: with no violation among them, the upper bound
    /// on the violation share is 1 − (1 − c)^(1/n), which must be within 1 − P.
    pub fn min_requests(&self) -> usize {
        let c = self.verdict_confidence();
        ((1.0 - c).ln() / self.percentile.ln()).ceil() as usize
    }

    /// Exact one-sided bounds on the violation share from `violations` of `requests`.
    pub fn bounds(&self, requests: usize, violations: usize) -> (f64, f64) {
        if requests == 0 {
            return (0.0, 1.0);
        }
        let c = self.verdict_confidence();
        let (n, k) = (requests as f64, violations.min(requests) as f64);
        let low = if k == 0.0 {
            0.0
        } else {
            Beta::new(k, n - k + 1.0).map_or(0.0, |b| b.inverse_cdf(1.0 - c))
        };
        let high = if k == n {
            1.0
        } else {
            Beta::new(k + 1.0, n - k).map_or(1.0, |b| b.inverse_cdf(c))
        };
        (low, high)
    }

    pub fn judge(&self, requests: usize, violations: usize) -> Judgement {
        let (low, high) = self.bounds(requests, violations);
        let verdict = if high <= self.allowed() {
            Verdict::Pass
        } else if low > self.allowed() {
            Verdict::Fail
        } else {
            Verdict::Undecided
        };
        Judgement {
            verdict,
            violation_share_low: low,
            violation_share_high: high,
        }
    }

    /// Violations after which a probe of `planned` requests fails with confidence even if
    /// every remaining request meets the SLO: the probe can stop sending.
    pub fn certain_failure(&self, planned: usize) -> usize {
        let allowed = self.allowed();
        // The lower bound only grows with k: the first k above `allowed`.
        let mut k = (allowed * planned as f64).floor() as usize;
        while k <= planned && self.bounds(planned, k).0 <= allowed {
            k += 1;
        }
        k
    }
}

/// One probe of the search, as recorded in `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub rate: f64,
    /// Index of the probe's (last) level in the run's `levels`.
    pub level: usize,
    /// An undecided probe sent more requests at the same rate: every level judged
    /// together, in order (empty when one level decided).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pooled_levels: Vec<usize>,
    pub requests: usize,
    pub violations: usize,
    pub judgement: Judgement,
    /// The verdict the search used: an undecided probe that ran out of retries is
    /// counted by its point estimate (and cannot bound the interval).
    pub counted_as: Verdict,
}

/// What the search found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaxRate {
    pub target: SloTarget,
    /// Relative width at which bisection stopped: (fail − pass) / pass.
    pub precision: f64,
    /// The highest rate that passed (none passed: `None`).
    pub max_rate: Option<f64>,
    /// The lowest rate that failed (none failed within the doubling limit: `None`).
    pub lowest_failing_rate: Option<f64>,
    /// The limit lies in [low, high) with confidence `target.confidence`: the highest
    /// confident pass and the lowest confident failure (`None`: unbounded on that side).
    pub interval_low: Option<f64>,
    pub interval_high: Option<f64>,
    pub probes: Vec<Probe>,
    /// Replicas for `--target-rate` at the max rate, and at the interval's low end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_at_interval_low: Option<u64>,
    /// Why the search ended without bracketing the limit, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Doublings (or halvings) tried before the search gives up looking for a bracket.
const MAX_STEPS: usize = 16;

/// The search's state: feed it each probe's outcome, ask it for the next rate.
#[derive(Debug, Clone)]
pub struct RateSearch {
    start: f64,
    precision: f64,
    probes: Vec<Probe>,
}

impl RateSearch {
    pub fn new(start: f64, precision: f64) -> Self {
        RateSearch {
            start,
            precision,
            probes: Vec::new(),
        }
    }

    fn highest_pass(&self) -> Option<f64> {
        self.rates(Verdict::Pass).reduce(f64::max)
    }

    fn lowest_fail(&self) -> Option<f64> {
        self.rates(Verdict::Fail).reduce(f64::min)
    }

    fn rates(&self, counted_as: Verdict) -> impl Iterator<Item = f64> + '_ {
        self.probes
            .iter()
            .filter(move |p| p.counted_as == counted_as)
            .map(|p| p.rate)
    }

    /// The next rate to probe, or `None` when the search is done.
    pub fn next_rate(&self) -> Option<f64> {
        match (self.highest_pass(), self.lowest_fail()) {
            (None, None) => Some(self.start),
            (Some(pass), None) => (self.probes.len() < MAX_STEPS).then_some(pass * 2.0),
            (None, Some(fail)) => (self.probes.len() < MAX_STEPS).then_some(fail / 2.0),
            (Some(pass), Some(fail)) => {
                ((fail - pass) / pass > self.precision).then_some((pass + fail) / 2.0)
            }
        }
    }

    /// Records a probe; an undecided one must already be resolved into `counted_as`.
    pub fn record(&mut self, probe: Probe) {
        self.probes.push(probe);
    }

    pub fn result(self, target: SloTarget) -> MaxRate {
        let (pass, fail) = (self.highest_pass(), self.lowest_fail());
        let confident = |v: Verdict| {
            self.probes
                .iter()
                .filter(move |p| p.judgement.verdict == v)
                .map(|p| p.rate)
        };
        let note = match (pass, fail) {
            (None, _) => Some(format!(
                "no rate down to {:.4}/s met the SLO",
                fail.unwrap_or(self.start)
            )),
            (Some(p), None) => Some(format!(
                "every rate up to {p}/s met the SLO: the limit is above it"
            )),
            _ => None,
        };
        MaxRate {
            target,
            precision: self.precision,
            max_rate: pass,
            lowest_failing_rate: fail,
            interval_low: confident(Verdict::Pass).reduce(f64::max),
            interval_high: confident(Verdict::Fail).reduce(f64::min),
            probes: self.probes,
            replicas: None,
            replicas_at_interval_low: None,
            note,
        }
    }
}

impl MaxRate {
    /// The level of the probe that passed at the max rate: where capacity was measured.
    pub fn limit_level(&self) -> Option<usize> {
        let max = self.max_rate?;
        self.probes
            .iter()
            .rev()
            .find(|p| p.rate == max && p.counted_as == Verdict::Pass)
            .map(|p| p.level)
    }
}

/// An undecided probe that may not be retried: counted by its point estimate.
pub fn point_verdict(target: &SloTarget, requests: usize, violations: usize) -> Verdict {
    if requests > 0 && violations as f64 / requests as f64 <= 1.0 - target.percentile {
        Verdict::Pass
    } else {
        Verdict::Fail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_bounds_match_the_closed_forms() {
        let t = SloTarget::new(0.99, 0.95).unwrap();
        assert!((t.verdict_confidence() - 0.975).abs() < 1e-15);
        // k = 0: upper bound 1 − (1 − c)^(1/n); k = n: lower bound (1 − c)^(1/n).
        let (low, high) = t.bounds(100, 0);
        assert_eq!(low, 0.0);
        assert!((high - (1.0 - 0.025f64.powf(0.01))).abs() < 1e-9, "{high}");
        let (low, high) = t.bounds(50, 50);
        assert!((low - 0.025f64.powf(1.0 / 50.0)).abs() < 1e-9, "{low}");
        assert_eq!(high, 1.0);
        // Clopper–Pearson for 5 of 100 at 97.5% one-sided (R's binom.test, conf 0.95):
        // [0.01643, 0.11283].
        let (low, high) = t.bounds(100, 5);
        assert!((low - 0.016431).abs() < 1e-5 && (high - 0.112835).abs() < 1e-5);
    }

    #[test]
    fn min_requests_is_the_first_sample_that_can_pass() {
        let t = SloTarget::new(0.99, 0.95).unwrap();
        let n = t.min_requests();
        assert_eq!(n, 368); // ln(0.025) / ln(0.99) = 367.04
        assert_eq!(t.judge(n, 0).verdict, Verdict::Pass);
        assert_eq!(t.judge(n - 1, 0).verdict, Verdict::Undecided);
        let t90 = SloTarget::new(0.9, 0.95).unwrap();
        assert_eq!(t90.min_requests(), 36);
        assert_eq!(t90.judge(200, 40).verdict, Verdict::Fail);
        assert_eq!(t90.judge(200, 20).verdict, Verdict::Undecided);
    }

    #[test]
    fn certain_failure_is_the_first_hopeless_count() {
        let t = SloTarget::new(0.9, 0.95).unwrap();
        let k = t.certain_failure(100);
        assert_eq!(t.judge(100, k).verdict, Verdict::Fail);
        assert_ne!(t.judge(100, k - 1).verdict, Verdict::Fail);
    }

    /// A server that meets the SLO below `capacity` and misses it above.
    fn search_against(capacity: f64, start: f64) -> MaxRate {
        let target = SloTarget::new(0.9, 0.95).unwrap();
        let mut search = RateSearch::new(start, 0.05);
        while let Some(rate) = search.next_rate() {
            let verdict = if rate <= capacity {
                Verdict::Pass
            } else {
                Verdict::Fail
            };
            let (violations, requests) = if verdict == Verdict::Pass {
                (0, 100)
            } else {
                (100, 100)
            };
            search.record(Probe {
                rate,
                level: search.probes.len(),
                pooled_levels: Vec::new(),
                requests,
                violations,
                judgement: target.judge(requests, violations),
                counted_as: verdict,
            });
        }
        search.result(target)
    }

    #[test]
    fn doubling_then_bisection_brackets_the_capacity() {
        let found = search_against(37.0, 1.0);
        let (pass, fail) = (found.max_rate.unwrap(), found.lowest_failing_rate.unwrap());
        assert!(pass <= 37.0 && 37.0 < fail && (fail - pass) / pass <= 0.05);
        assert_eq!(found.interval_low, Some(pass));
        assert_eq!(found.interval_high, Some(fail));
        // 1, 2, 4, ..., 64, then bisect [32, 64] to 5%: 5 more probes.
        assert_eq!(found.probes.len(), 12);
        // Starting above the capacity halves down first.
        let found = search_against(3.0, 100.0);
        assert!(found.max_rate.unwrap() <= 3.0 && found.lowest_failing_rate.unwrap() > 3.0);
        // Nothing passes: no max rate, a note says so.
        let found = search_against(0.0, 1.0);
        assert_eq!(found.max_rate, None);
        assert!(found.note.unwrap().contains("no rate"));
    }
}
