//! Where a sweep saturates: the first level, in order of offered load, at which throughput
//! stopped rising with the load while latency rose.
//!
//! Going from level a to the next heavier level b, b is saturated when both
//! - throughput rose by less than a quarter of the rise in offered load:
//!   T_b / T_a − 1 < ¼ · (O_b / O_a − 1), and
//! - median latency rose by more than 10%: L_b > 1.1 · L_a.
//!
//! The knee is the level before the first saturated one: the most load that still bought
//! throughput. Every heavier level is past the knee.

use serde::{Deserialize, Serialize};

/// Share of the offered-load rise that throughput must keep up with.
const THROUGHPUT_SHARE: f64 = 0.25;
/// Median latency rise that counts as rising.
const LATENCY_RISE: f64 = 1.10;

pub const RULE: &str = "the first level (by offered load) whose throughput rose by less than a quarter of the rise in offered load over the level before, while its median latency rose by more than 10%";

/// One level as the rule sees it.
#[derive(Debug, Clone, Copy)]
pub struct LoadStep {
    /// Concurrency or requests per second offered.
    pub offered: f64,
    /// Completed requests per second.
    pub throughput: f64,
    /// Median latency, seconds.
    pub latency_p50: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saturation {
    /// Index (in the run's levels) of the first saturated level.
    pub first_saturated: usize,
    /// Index of the level before it: the knee.
    pub knee: usize,
    pub rule: String,
}

/// The saturation point of a sweep, if it has one. `steps` are in the run's level order;
/// the rule looks at them in order of offered load.
pub fn find(steps: &[LoadStep]) -> Option<Saturation> {
    let mut order: Vec<usize> = (0..steps.len())
        .filter(|&i| steps[i].offered > 0.0 && steps[i].latency_p50.is_finite())
        .collect();
    order.sort_by(|&a, &b| steps[a].offered.total_cmp(&steps[b].offered));
    order.windows(2).find_map(|pair| {
        let (a, b) = (&steps[pair[0]], &steps[pair[1]]);
        let load_rise = b.offered / a.offered - 1.0;
        let throughput_rise = if a.throughput > 0.0 {
            b.throughput / a.throughput - 1.0
        } else {
            f64::INFINITY
        };
        let saturated = load_rise > 0.0
            && throughput_rise < THROUGHPUT_SHARE * load_rise
            && b.latency_p50 > LATENCY_RISE * a.latency_p50;
        saturated.then(|| Saturation {
            first_saturated: pair[1],
            knee: pair[0],
            rule: RULE.into(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(offered: f64, throughput: f64, latency_p50: f64) -> LoadStep {
        LoadStep {
            offered,
            throughput,
            latency_p50,
        }
    }

    #[test]
    fn the_knee_is_where_throughput_flattens_and_latency_climbs() {
        // Concurrency 1, 2, 4, 8, 16 on a server with 4 slots: throughput doubles up to 4,
        // then stays; latency doubles from there.
        let sweep = [
            step(1.0, 10.0, 0.100),
            step(2.0, 19.5, 0.102),
            step(4.0, 38.0, 0.105),
            step(8.0, 39.0, 0.205),
            step(16.0, 39.2, 0.41),
        ];
        let s = find(&sweep).unwrap();
        assert_eq!((s.knee, s.first_saturated), (2, 3));
        // Levels given out of order are read by offered load.
        let shuffled = [sweep[3], sweep[0], sweep[4], sweep[2], sweep[1]];
        let s = find(&shuffled).unwrap();
        assert_eq!((s.knee, s.first_saturated), (3, 0));
    }

    #[test]
    fn rising_throughput_or_flat_latency_is_not_saturation() {
        // Throughput keeps up with the load: latency rising alone is not saturation.
        assert!(find(&[step(1.0, 10.0, 0.1), step(2.0, 18.0, 0.2)]).is_none());
        // Throughput flat but latency flat too (an idle, client-bound sweep): not either.
        assert!(find(&[step(1.0, 10.0, 0.1), step(2.0, 10.1, 0.105)]).is_none());
        // Open loop past capacity: the rate doubles, throughput stays, latency explodes.
        let s = find(&[
            step(10.0, 10.0, 0.03),
            step(20.0, 20.0, 0.03),
            step(40.0, 24.0, 2.0),
        ]);
        assert_eq!(s.unwrap().first_saturated, 2);
        assert!(find(&[step(1.0, 1.0, 0.1)]).is_none());
    }
}
