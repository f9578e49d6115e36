//! Cost and sizing from measured throughput: what a million tokens (or a thousand
//! embeddings) cost on hardware rented by the hour, how many replicas a target load needs,
//! and where self-hosting breaks even with a provider's per-token price.
//!
//! Capacity is the best goodput a run measured: requests per second that met the SLO (all
//! successful requests when no SLO is set), at the load level where that was highest.

use serde::{Deserialize, Serialize};

/// Prices and targets from the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Pricing {
    /// Dollars per hour for one replica (a GPU-hour, an instance).
    pub per_hour: Option<f64>,
    /// A provider's dollars per 1M tokens for the same work, to compare with.
    pub provider_per_mtok: Option<f64>,
    /// Requests per second the deployment must sustain within the SLO.
    pub target_rate: Option<f64>,
}

/// Capacity of one replica at the SLO.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    pub requests_per_second: f64,
    pub items_per_second: f64,
    pub input_tokens_per_second: f64,
    pub output_tokens_per_second: f64,
}

impl Capacity {
    /// What a load level delivered within the SLO (all successes when none is set).
    pub fn within_slo(s: &crate::load::stats::LevelSummary) -> Self {
        Capacity {
            requests_per_second: s.goodput,
            items_per_second: s.good_items_per_second,
            input_tokens_per_second: s.good_input_tokens_per_second,
            output_tokens_per_second: s.good_output_tokens_per_second,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostEstimate {
    /// Which load level the capacity was measured at.
    pub at_level: String,
    pub capacity: Capacity,
    /// Dollars per 1M tokens, input and output together.
    pub usd_per_mtok: Option<f64>,
    /// Dollars per 1M input tokens if the whole price is charged to input (embeddings).
    pub usd_per_mtok_input: Option<f64>,
    /// Dollars per 1M output tokens if the whole price is charged to output (generation).
    pub usd_per_mtok_output: Option<f64>,
    /// Dollars per 1,000 embedded items.
    pub usd_per_1k_items: Option<f64>,
    /// Replicas needed for the target rate: ceil(target / capacity).
    pub replicas: Option<u64>,
    /// Dollars per hour the provider would charge for one replica's capacity.
    pub provider_usd_per_hour_at_capacity: Option<f64>,
    /// Share of capacity a replica must be busy for self-hosting to cost no more than the
    /// provider (above 1: the provider is cheaper even at full load).
    pub breakeven_utilization: Option<f64>,
    /// Tokens per hour above which self-hosting one replica is cheaper.
    pub breakeven_tokens_per_hour: Option<f64>,
}

/// Dollars per `unit` of something produced at `per_second`, at `per_hour` dollars.
fn price_per(per_hour: f64, per_second: f64, unit: f64) -> Option<f64> {
    (per_second > 0.0).then(|| per_hour / (per_second * 3600.0) * unit)
}

pub fn estimate(at_level: &str, capacity: Capacity, pricing: &Pricing) -> CostEstimate {
    let tokens_per_second = capacity.input_tokens_per_second + capacity.output_tokens_per_second;
    let hourly = |f: fn(f64, f64) -> Option<f64>, per_second: f64| {
        pricing.per_hour.and_then(|p| f(p, per_second))
    };
    let mtok = |p: f64, s: f64| price_per(p, s, 1e6);
    let replicas = pricing.target_rate.and_then(|target| {
        (capacity.requests_per_second > 0.0).then(|| {
            (target / capacity.requests_per_second - 1e-9)
                .ceil()
                .max(1.0) as u64
        })
    });
    let provider_hourly = pricing
        .provider_per_mtok
        .map(|p| p * tokens_per_second * 3600.0 / 1e6);
    let breakeven_tokens = match (pricing.per_hour, pricing.provider_per_mtok) {
        (Some(h), Some(p)) if p > 0.0 => Some(h / p * 1e6),
        _ => None,
    };
    let breakeven_utilization = match (breakeven_tokens, tokens_per_second > 0.0) {
        (Some(t), true) => Some(t / (tokens_per_second * 3600.0)),
        _ => None,
    };
    CostEstimate {
        at_level: at_level.to_string(),
        capacity,
        usd_per_mtok: hourly(mtok, tokens_per_second),
        usd_per_mtok_input: hourly(mtok, capacity.input_tokens_per_second),
        usd_per_mtok_output: hourly(mtok, capacity.output_tokens_per_second),
        usd_per_1k_items: hourly(|p, s| price_per(p, s, 1e3), capacity.items_per_second),
        replicas,
        provider_usd_per_hour_at_capacity: provider_hourly,
        breakeven_utilization,
        breakeven_tokens_per_hour: breakeven_tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_checked_costs() {
        // 2 requests/s of 500 input + 250 output tokens, one embedding item each, $2.49/h.
        let capacity = Capacity {
            requests_per_second: 2.0,
            items_per_second: 2.0,
            input_tokens_per_second: 1000.0,
            output_tokens_per_second: 500.0,
        };
        let pricing = Pricing {
            per_hour: Some(2.49),
            provider_per_mtok: Some(0.5),
            target_rate: Some(9.0),
        };
        let c = estimate("rate 2/s", capacity, &pricing);
        // 1500 tok/s = 5.4M tok/h: $2.49 / 5.4 = $0.46111 per 1M tokens.
        assert!((c.usd_per_mtok.unwrap() - 2.49 / 5.4).abs() < 1e-12);
        // Output alone: 1.8M tok/h -> $1.38333 per 1M.
        assert!((c.usd_per_mtok_output.unwrap() - 2.49 / 1.8).abs() < 1e-12);
        assert!((c.usd_per_mtok_input.unwrap() - 2.49 / 3.6).abs() < 1e-12);
        // 7,200 items/h: $0.34583 per 1k.
        assert!((c.usd_per_1k_items.unwrap() - 2.49 / 7.2).abs() < 1e-12);
        // 9 req/s at 2 per replica: 5 replicas (4.5 rounded up).
        assert_eq!(c.replicas, Some(5));
        // The provider charges 5.4M × $0.5 = $2.70/h for the same tokens; break-even at
        // 4.98M tokens/h = 92.2% utilisation.
        assert!((c.provider_usd_per_hour_at_capacity.unwrap() - 2.7).abs() < 1e-12);
        assert!((c.breakeven_tokens_per_hour.unwrap() - 4.98e6).abs() < 1e-6);
        assert!((c.breakeven_utilization.unwrap() - 4.98 / 5.4).abs() < 1e-12);
        // Exactly divisible targets need no extra replica.
        let exact = estimate(
            "x",
            capacity,
            &Pricing {
                target_rate: Some(8.0),
                ..pricing
            },
        );
        assert_eq!(exact.replicas, Some(4));
        // No price, no dollar figures; no throughput, no division by zero.
        let none = estimate("x", capacity, &Pricing::default());
        assert!(none.usd_per_mtok.is_none() && none.replicas.is_none());
        let zero = Capacity {
            requests_per_second: 0.0,
            items_per_second: 0.0,
            input_tokens_per_second: 0.0,
            output_tokens_per_second: 0.0,
        };
        let z = estimate("x", zero, &pricing);
        assert!(
            z.usd_per_mtok.is_none() && z.replicas.is_none() && z.breakeven_utilization.is_none()
        );
    }
}
