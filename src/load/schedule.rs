//! When requests go out. Closed loop: N users, each sends its next request when the last
//! one ends. Open loop: arrivals at a target rate (constant spacing or a Poisson process),
//! sent on schedule whatever the server does, so a slow server cannot slow the load down
//! and hide its own latency (coordinated omission).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How arrivals are spaced in an open-loop run.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrivals {
    /// Exactly 1/rate apart.
    Constant,
    /// Exponential gaps with mean 1/rate, from a seeded generator.
    Poisson,
    /// A recorded trace's arrival times, gaps multiplied by `time_scale`.
    Replay { time_scale: f64 },
}

impl std::str::FromStr for Arrivals {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "constant" => Ok(Arrivals::Constant),
            "poisson" => Ok(Arrivals::Poisson),
            other => Err(format!("`{other}`: expected poisson or constant")),
        }
    }
}

/// One load level of a run (a sweep runs several).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "loop", rename_all = "lowercase")]
pub enum LoadModel {
    Closed { concurrency: usize },
    Open { rate: f64, arrivals: Arrivals },
}

impl LoadModel {
    pub fn label(&self) -> String {
        match self {
            LoadModel::Closed { concurrency } => format!("concurrency {concurrency}"),
            LoadModel::Open { rate, arrivals } => match arrivals {
                Arrivals::Constant => format!("rate {rate}/s constant"),
                Arrivals::Poisson => format!("rate {rate}/s poisson"),
                Arrivals::Replay { time_scale } => {
                    format!("trace x{time_scale} (mean {rate:.3}/s)")
                }
            },
        }
    }
}

/// Send times (seconds from the start of the level) of an open-loop schedule: every
/// arrival before `duration`, at most `limit` of them.
pub struct Schedule {
    /// A replay's send times, already scaled (else arrivals are drawn).
    replay: Option<std::sync::Arc<Vec<f64>>>,
    rate: f64,
    arrivals: Arrivals,
    rng: ChaCha8Rng,
    next: f64,
    emitted: usize,
    duration: f64,
    limit: usize,
}

impl Schedule {
    pub fn new(rate: f64, arrivals: Arrivals, seed: u64, duration: f64, limit: usize) -> Self {
        let mut schedule = Schedule {
            replay: None,
            rate,
            arrivals,
            rng: ChaCha8Rng::seed_from_u64(seed),
            next: 0.0,
            emitted: 0,
            duration,
            limit,
        };
        // A Poisson process does not start with an arrival at 0; a constant one does.
        if arrivals == Arrivals::Poisson {
            schedule.next = schedule.gap();
        }
        schedule
    }

    /// The recorded send times `at` (seconds from the start), in order.
    pub fn replay(at: std::sync::Arc<Vec<f64>>, duration: f64, limit: usize) -> Self {
        let mut schedule = Schedule::new(1.0, Arrivals::Constant, 0, duration, limit);
        schedule.next = at.first().copied().unwrap_or(f64::INFINITY);
        schedule.replay = Some(at);
        schedule
    }

    fn gap(&mut self) -> f64 {
        match self.arrivals {
            Arrivals::Constant | Arrivals::Replay { .. } => 1.0 / self.rate,
            // Inverse transform of a uniform in (0, 1].
            Arrivals::Poisson => -(1.0 - self.rng.random::<f64>()).ln() / self.rate,
        }
    }
}

impl Iterator for Schedule {
    type Item = f64;
    fn next(&mut self) -> Option<f64> {
        if self.emitted >= self.limit || self.next >= self.duration {
            return None;
        }
        if let Some(times) = &self.replay {
            let at = self.next;
            self.emitted += 1;
            self.next = times.get(self.emitted).copied().unwrap_or(f64::INFINITY);
            return Some(at);
        }
        let at = match self.arrivals {
            // Multiplying, not summing, keeps a constant schedule exact over millions of arrivals.
            Arrivals::Constant | Arrivals::Replay { .. } => self.emitted as f64 / self.rate,
            Arrivals::Poisson => self.next,
        };
        self.emitted += 1;
        self.next = match self.arrivals {
            Arrivals::Constant | Arrivals::Replay { .. } => self.emitted as f64 / self.rate,
            Arrivals::Poisson => self.next + self.gap(),
        };
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_rate_is_exact() {
        let times: Vec<f64> = Schedule::new(4.0, Arrivals::Constant, 0, 2.0, usize::MAX).collect();
        assert_eq!(times, vec![0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]);
        let times: Vec<f64> = Schedule::new(1000.0, Arrivals::Constant, 0, 1e9, 3).collect();
        assert_eq!(times, vec![0.0, 0.001, 0.002]);
        let n = Schedule::new(1000.0, Arrivals::Constant, 0, 3600.0, usize::MAX).count();
        assert_eq!(n, 3_600_000);
    }

    #[test]
    fn a_replay_sends_at_the_recorded_times_within_the_duration() {
        let at = std::sync::Arc::new(vec![0.0, 0.25, 1.0, 3.0]);
        let times: Vec<f64> = Schedule::replay(at.clone(), 2.0, usize::MAX).collect();
        assert_eq!(times, vec![0.0, 0.25, 1.0]);
        let times: Vec<f64> = Schedule::replay(at, f64::INFINITY, 2).collect();
        assert_eq!(times, vec![0.0, 0.25]);
    }

    #[test]
    fn poisson_gaps_have_the_exponential_mean_and_variance() {
        let rate = 50.0;
        let n = 100_000;
        let times: Vec<f64> = Schedule::new(rate, Arrivals::Poisson, 7, f64::MAX, n).collect();
        assert_eq!(times.len(), n);
        let mut prev = 0.0;
        let gaps: Vec<f64> = times
            .iter()
            .map(|&t| {
                let g = t - prev;
                prev = t;
                g
            })
            .collect();
        assert!(gaps.iter().all(|&g| g > 0.0));
        let mean = gaps.iter().sum::<f64>() / n as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        // Exponential(rate): mean 1/rate, variance 1/rate². The sample mean's standard
        // error is (1/rate)/sqrt(n) ≈ 0.32% of the mean: allow 4 standard errors; the
        // sample variance's relative standard error is sqrt(8/n) ≈ 0.9%: allow 4 of those.
        let (m, v) = (1.0 / rate, 1.0 / (rate * rate));
        assert!(
            (mean - m).abs() < 4.0 * m / (n as f64).sqrt(),
            "mean {mean}"
        );
        assert!(
            (var - v).abs() < 4.0 * v * (8.0 / n as f64).sqrt(),
            "variance {var}"
        );
        // Same seed, same schedule.
        let again: Vec<f64> = Schedule::new(rate, Arrivals::Poisson, 7, f64::MAX, n).collect();
        assert_eq!(times, again);
    }
}
