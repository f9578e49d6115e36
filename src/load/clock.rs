//! How far this machine's clock is from the target server's, read from the server's
//! HTTP `Date` header. The header counts whole seconds, so one reading is worth ±1 s; but
//! the moment its second ticks over is pinned between two back-to-back requests, which
//! bounds the offset by about two round trips. Generators on several machines that each
//! know their offset to the same server can put their requests on one timeline.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The server's clock against this machine's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockCheck {
    /// Server time minus local time, in seconds (absent when it could not be measured).
    pub offset: Option<f64>,
    /// The measured offset is within ± this many seconds of the true one.
    pub bound: Option<f64>,
    /// How it was measured, or why it was not.
    pub method: String,
}

/// Seconds since the Unix epoch on this machine's clock.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One request: local send and receive times and the server's `Date` (whole seconds).
struct Probe {
    sent: f64,
    received: f64,
    date: i64,
}

/// Probes `url` (any cheap GET, e.g. `<base>/models`; the status does not matter) within
/// `budget`: every 50 ms until the server's second ticks over once, which places the tick
/// within 50 ms; then back to back just around the next tick, which pins it to about two
/// round trips. About 20–60 requests in all, so a provider's endpoint is not flooded.
pub fn check(url: &str, budget: Duration) -> ClockCheck {
    let not = |why: String| ClockCheck {
        offset: None,
        bound: None,
        method: why,
    };
    let client = match reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
    {
        Ok(c) => c,
        Err(e) => return not(format!("no HTTP client: {e}")),
    };
    let probe = || -> std::result::Result<Probe, String> {
        let sent = unix_now();
        let response = client
            .get(url)
            .send()
            .map_err(|e| format!("the server did not answer a GET: {}", e.without_url()))?;
        let received = unix_now();
        let date = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
            .ok_or_else(|| {
                "the server sends no Date header: generators' clocks are assumed \
                 synchronised (NTP); not measured"
                    .to_string()
            })?;
        Ok(Probe {
            sent,
            received,
            date: date.timestamp(),
        })
    };
    let started = Instant::now();
    let mut probes: Vec<Probe> = Vec::new();
    // Coarse: one probe every 50 ms until the first tick.
    while ticks(&probes).next().is_none() && started.elapsed() < budget {
        match probe() {
            Ok(p) => probes.push(p),
            Err(why) => return not(why),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let Some((rough, rough_bound)) = ticks(&probes).next() else {
        return not(format!(
            "the server's Date header did not tick over within {:.1} s",
            budget.as_secs_f64()
        ));
    };
    // Fine: back to back from just before the next tick (local time) to just after it.
    let next_tick = (unix_now() + rough).floor() + 1.0 - rough;
    let margin = rough_bound + 0.005;
    let wait = next_tick - margin - unix_now();
    if wait > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(wait));
    }
    let mut fine: Vec<Probe> = Vec::new();
    while unix_now() < next_tick + margin && started.elapsed() < budget + Duration::from_secs(2) {
        match probe() {
            Ok(p) => fine.push(p),
            Err(why) => return not(why),
        }
    }
    let count = probes.len() + fine.len();
    let best = ticks(&probes)
        .chain(ticks(&fine))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .expect("the coarse tick is there");
    ClockCheck {
        offset: Some(best.0),
        bound: Some(best.1),
        method: format!(
            "the server's Date header ticking over between two requests ({count} probes)"
        ),
    }
}

/// Each tick of the server's second between consecutive probes p and q: the server read
/// second `s + 1` at a local time in [p.sent, q.received], so the offset lies in
/// [s + 1 - q.received, s + 1 - p.sent]: (midpoint, half-width).
fn ticks(probes: &[Probe]) -> impl Iterator<Item = (f64, f64)> + '_ {
    probes.windows(2).filter_map(|w| {
        let (p, q) = (&w[0], &w[1]);
        (q.date == p.date + 1).then(|| {
            let tick = (p.date + 1) as f64;
            let (low, high) = (tick - q.received, tick - p.sent);
            ((low + high) / 2.0, (high - low) / 2.0)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_between_two_probes_bounds_the_offset() {
        // The server runs 0.25 s ahead; probes 10 ms apart, 2 ms each.
        let probes: Vec<Probe> = (0..200)
            .map(|i| {
                let sent = 1000.0 + i as f64 * 0.01;
                let server = sent + 0.001 + 0.25;
                Probe {
                    sent,
                    received: sent + 0.002,
                    date: server.floor() as i64,
                }
            })
            .collect();
        let (offset, bound) = ticks(&probes).next().unwrap();
        assert!(bound <= 0.007, "{bound}");
        assert!((offset - 0.25).abs() <= bound, "{offset} ± {bound}");
    }
}
