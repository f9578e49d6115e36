//! Plots for reports (plotters): every plot is written twice, `<stem>.svg` for the HTML
//! report and `<stem>.png` for slides. Inputs are plain numbers; no I/O but the files.
//!
//! Every figure is drawn by one generic routine for both backends, so the SVG and the PNG
//! always agree. Axes are computed here rather than by plotters so that log scales get
//! 1-2-5 ticks, load sweeps get a tick per tested level and degenerate ranges get padded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, ValueFormatter};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};

/// Raw samples of one quantity (milliseconds) for one curve, e.g. one engine's latencies.
#[derive(Debug, Clone)]
pub struct Samples {
    pub label: String,
    pub values_ms: Vec<f64>,
}

/// One run's load sweep: a point per load level.
#[derive(Debug, Clone)]
pub struct LoadCurve {
    pub label: String,
    pub points: Vec<LoadPoint>,
}

#[derive(Debug, Clone, Copy)]
pub struct LoadPoint {
    /// Offered load: concurrency (closed loop) or requests/s (open loop).
    pub offered: f64,
    /// Completed requests per second.
    pub throughput: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The sweep's first saturated level (ringed on the throughput panel).
    pub saturated: bool,
}

/// What the load axis counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadAxis {
    Concurrency,
    RequestRate,
}

/// One model's score on one task with its 95% CI.
#[derive(Debug, Clone)]
pub struct TaskScore {
    pub task: String,
    /// Metric name shown with the task, e.g. `cosine_spearman`.
    pub metric: String,
    pub model: String,
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

/// One model/engine: price and quality.
#[derive(Debug, Clone)]
pub struct CostPoint {
    pub label: String,
    pub usd_per_mtok: f64,
    pub quality: f64,
}

/// One run's load levels on the Pareto plane of a sizing study.
#[derive(Debug, Clone)]
pub struct ParetoCurve {
    pub label: String,
    pub points: Vec<ParetoPoint>,
}

#[derive(Debug, Clone)]
pub struct ParetoPoint {
    /// The level, e.g. `concurrency 8`.
    pub level: String,
    /// Output tokens per second one user sees while decoding (1 / median TPOT).
    pub per_user: f64,
    /// Output tokens per second the replica delivered.
    pub per_replica: f64,
}

/// A run's requests and the server's state over time, a series per load level.
#[derive(Debug, Clone, Default)]
pub struct TimeSeries {
    pub levels: Vec<TimeLevel>,
    /// The server's readings (`--scrape`), if any.
    pub server: Vec<ServerPoint>,
}

#[derive(Debug, Clone)]
pub struct TimeLevel {
    pub label: String,
    /// (scheduled send, seconds since the run's first request; latency in ms) per
    /// successful request.
    pub requests: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Copy)]
pub struct ServerPoint {
    /// Seconds since the run's first request.
    pub t: f64,
    pub running: Option<f64>,
    pub queued: Option<f64>,
}

/// Indices of the points no other point beats on both axes (more per user and more per
/// replica are both better), in order of tokens per user.
pub fn pareto_front(points: &[ParetoPoint]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].per_user.is_finite() && points[i].per_replica.is_finite())
        .collect();
    // From the fastest per user down: a point is on the front when it delivers more
    // per replica than every point faster per user.
    order.sort_by(|&a, &b| {
        points[b]
            .per_user
            .total_cmp(&points[a].per_user)
            .then(points[b].per_replica.total_cmp(&points[a].per_replica))
    });
    let mut best = f64::NEG_INFINITY;
    let mut front: Vec<usize> = order
        .into_iter()
        .filter(|&i| {
            let keep = points[i].per_replica > best;
            best = best.max(points[i].per_replica);
            keep
        })
        .collect();
    front.reverse();
    front
}

/// Tokens/s per user against tokens/s per replica, a point per level and the Pareto
/// front per run: the trade-off a sizing study picks its operating point on.
pub fn pareto(stem: &Path, title: &str, curves: &[ParetoCurve]) -> Result<Vec<PathBuf>> {
    render(stem, &Pareto { title, curves })
}

/// Latency over time per level (top: p50 and p99 per time bucket) with the server's
/// running and queued requests (means per bucket) beneath.
pub fn latency_over_time(stem: &Path, title: &str, series: &TimeSeries) -> Result<Vec<PathBuf>> {
    render(stem, &OverTime { title, series })
}

/// Latency CDF, one curve per engine. Returns the files written.
pub fn latency_cdf(stem: &Path, title: &str, curves: &[Samples]) -> Result<Vec<PathBuf>> {
    render(stem, &LatencyCdf { title, curves })
}

/// Throughput versus offered load (top panel) and p50/p99 latency (bottom panel).
pub fn throughput_vs_load(
    stem: &Path,
    title: &str,
    axis: LoadAxis,
    curves: &[LoadCurve],
) -> Result<Vec<PathBuf>> {
    render(
        stem,
        &ThroughputVsLoad {
            title,
            axis,
            curves,
        },
    )
}

/// TTFT (left) and TPOT (right) distributions, one curve per engine.
pub fn ttft_tpot(
    stem: &Path,
    title: &str,
    ttft: &[Samples],
    tpot: &[Samples],
) -> Result<Vec<PathBuf>> {
    render(stem, &TtftTpot { title, ttft, tpot })
}

/// Accuracy per task, a bar per model with its 95% CI.
pub fn scores_by_task(stem: &Path, title: &str, scores: &[TaskScore]) -> Result<Vec<PathBuf>> {
    render(stem, &ScoresByTask { title, scores })
}

/// Cost per 1M tokens versus quality, a labelled point per model/engine.
pub fn cost_vs_quality(
    stem: &Path,
    title: &str,
    quality_name: &str,
    points: &[CostPoint],
) -> Result<Vec<PathBuf>> {
    render(
        stem,
        &CostVsQuality {
            title,
            quality_name,
            points,
        },
    )
}

// ---------------------------------------------------------------------------------------
// Rendering: one figure, two backends.
// ---------------------------------------------------------------------------------------

/// Logical size of every figure: fits a 16:9 slide with room for a caption.
const SIZE: (u32, u32) = (1200, 700);

type DrawResult<T, DB> =
    std::result::Result<T, DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A figure that can draw itself on any backend (a trait: closures cannot be generic).
trait Figure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<(), DB>;
}

/// Writes `<stem>.svg` and `<stem>.png` and returns both paths.
fn render(stem: &Path, figure: &impl Figure) -> Result<Vec<PathBuf>> {
    if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let svg = with_extension(stem, "svg");
    let png = with_extension(stem, "png");
    let plot_err = |path: &Path, e: &dyn std::fmt::Display| {
        Error::External(format!("plot {}: {e}", path.display()))
    };
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        figure
            .draw(&root)
            .and_then(|()| root.present())
            .map_err(|e| plot_err(&svg, &e))?;
    }
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        figure
            .draw(&root)
            .and_then(|()| root.present())
            .map_err(|e| plot_err(&png, &e))?;
    }
    Ok(vec![svg, png])
}

/// Appends an extension instead of replacing one, so a stem like `run.v2/cdf` stays intact.
fn with_extension(stem: &Path, ext: &str) -> PathBuf {
    let mut name = stem.as_os_str().to_owned();
    name.push(".");
    name.push(ext);
    PathBuf::from(name)
}

// ---------------------------------------------------------------------------------------
// Style: palette, fonts, layout constants.
// ---------------------------------------------------------------------------------------

/// Tableau 10: qualitative, distinguishable, and familiar from other reports.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4E, 0x79, 0xA7),
    RGBColor(0xF2, 0x8E, 0x2B),
    RGBColor(0xE1, 0x57, 0x59),
    RGBColor(0x76, 0xB7, 0xB2),
    RGBColor(0x59, 0xA1, 0x4F),
    RGBColor(0xED, 0xC9, 0x48),
    RGBColor(0xB0, 0x7A, 0xA1),
    RGBColor(0xFF, 0x9D, 0xA7),
    RGBColor(0x9C, 0x75, 0x5F),
    RGBColor(0xBA, 0xB0, 0xAC),
];

const TEXT: RGBColor = RGBColor(0x30, 0x30, 0x30);
const MUTED: RGBColor = RGBColor(0x70, 0x70, 0x70);
const GRID: RGBColor = RGBColor(0xDD, 0xDD, 0xDD);
const GRID_LIGHT: RGBColor = RGBColor(0xF0, 0xF0, 0xF0);

const TITLE_PT: f64 = 30.0;
const CAPTION_PT: f64 = 22.0;
const AXIS_TITLE_PT: f64 = 20.0;
const TICK_PT: f64 = 17.0;
const LEGEND_PT: f64 = 16.0;

/// Pixels reserved under a panel for tick labels plus the axis title.
const X_LABEL_AREA: u32 = 62;
/// Pixels reserved left of a panel; fixed so stacked panels line up.
const Y_LABEL_AREA: u32 = 82;

/// Palette colour `i`; a second round uses darker shades so 20 series stay distinct.
fn palette(i: usize) -> RGBColor {
    let RGBColor(r, g, b) = PALETTE[i % PALETTE.len()];
    if (i / PALETTE.len()).is_multiple_of(2) {
        RGBColor(r, g, b)
    } else {
        let dark = |c: u8| (f64::from(c) * 0.6) as u8;
        RGBColor(dark(r), dark(g), dark(b))
    }
}

fn font(size: f64, color: RGBColor) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&color)
}

/// Colour per label in first-seen order, so one engine keeps its colour across panels.
fn colours_by_label<'s>(labels: impl IntoIterator<Item = &'s str>) -> Vec<(String, RGBColor)> {
    let mut out: Vec<(String, RGBColor)> = Vec::new();
    for label in labels {
        if !out.iter().any(|(l, _)| l == label) {
            out.push((label.to_string(), palette(out.len())));
        }
    }
    out
}

fn colour_of(colours: &[(String, RGBColor)], label: &str) -> RGBColor {
    colours
        .iter()
        .find(|(l, _)| l == label)
        .map_or(palette(0), |(_, c)| *c)
}

// ---------------------------------------------------------------------------------------
// Axes: ranges, ticks and tick labels in drawing space (log10 for log axes).
// ---------------------------------------------------------------------------------------

/// Spread (max/min) beyond which a positive axis switches to log scale.
const LOG_SPREAD: f64 = 20.0;

#[derive(Debug, Clone)]
struct Axis {
    log: bool,
    /// Range in drawing space (log10 of the value on a log axis).
    lo: f64,
    hi: f64,
    /// Labelled ticks in drawing space.
    ticks: Vec<(f64, String)>,
    /// Unlabelled light grid lines in drawing space.
    minor: Vec<f64>,
}

impl Axis {
    /// Axis over the finite values; `None` when there are none. Log scale only when
    /// allowed, all values are positive and they spread over more than `LOG_SPREAD`.
    fn from_data(
        values: impl IntoIterator<Item = f64>,
        allow_log: bool,
        zero: bool,
    ) -> Option<Axis> {
        let (lo, hi) = finite_bounds(values)?;
        if allow_log && lo > 0.0 && hi / lo > LOG_SPREAD {
            return Some(Axis::log(lo, hi));
        }
        let (mut lo, mut hi) = if zero {
            (lo.min(0.0), hi.max(0.0))
        } else {
            (lo, hi)
        };
        let span = hi - lo;
        if span <= 1e-12 * hi.abs().max(lo.abs()).max(1e-300) {
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            lo = if zero && lo >= 0.0 {
                lo.min(0.0)
            } else {
                lo - pad
            };
            hi += pad;
        } else {
            let pad = 0.05 * span;
            // A zero baseline is the point of `zero`: no padding below it.
            if !(zero && lo == 0.0) {
                lo -= pad;
            }
            hi += pad;
        }
        Some(Axis::linear(lo, hi))
    }

    /// Linear axis over exactly `lo..hi` with about six round ticks.
    fn linear(lo: f64, hi: f64) -> Axis {
        let step = nice_step((hi - lo) / 6.0);
        let decimals = decimals_for(step);
        let first = (lo / step).ceil() as i64;
        let last = (hi / step).floor() as i64;
        let ticks = (first..=last)
            .take(100)
            .map(|k| {
                let t = k as f64 * step;
                // Avoid "-0.0" labels from rounding.
                let t = if t.abs() < step * 1e-9 { 0.0 } else { t };
                (t, format!("{t:.decimals$}"))
            })
            .collect();
        Axis {
            log: false,
            lo,
            hi,
            ticks,
            minor: Vec::new(),
        }
    }

    /// Log axis over positive `lo..hi` with 1-2-5 ticks (powers of ten, or every few
    /// powers, when that would crowd).
    fn log(lo: f64, hi: f64) -> Axis {
        let (tl, th) = (lo.log10(), hi.log10());
        let pad = 0.04 * (th - tl);
        let (tl, th) = (tl - pad, th + pad);
        let decades = (tl.floor() as i32)..=(th.ceil() as i32);
        let in_range = |t: f64| t >= tl && t <= th;
        let candidates = |mults: &[f64]| -> Vec<f64> {
            decades
                .clone()
                .flat_map(|d| mults.iter().map(move |m| m * 10f64.powi(d)))
                .filter(|v| in_range(v.log10()))
                .collect()
        };
        let mut values = candidates(&[1.0, 2.0, 5.0]);
        if values.len() > 12 {
            let powers = candidates(&[1.0]);
            let every = powers.len().div_ceil(8).max(1);
            values = powers.into_iter().step_by(every).collect();
        }
        let ticks = values
            .into_iter()
            .map(|v| (v.log10(), format_value(v)))
            .collect();
        let minor = if th - tl <= 8.0 {
            candidates(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
                .into_iter()
                .map(f64::log10)
                .collect()
        } else {
            Vec::new()
        };
        Axis {
            log: true,
            lo: tl,
            hi: th,
            ticks,
            minor,
        }
    }

    /// Categorical axis for `n` groups centred on 0..n, with separators between groups.
    fn categories(n: usize) -> Axis {
        Axis {
            log: false,
            lo: -0.5,
            hi: n as f64 - 0.5,
            ticks: (1..n).map(|i| (i as f64 - 0.5, String::new())).collect(),
            minor: Vec::new(),
        }
    }

    /// Puts a tick on every given value (e.g. the tested load levels) when there are few
    /// and they are far enough apart to label; keeps the round ticks otherwise.
    fn ticks_at(mut self, values: &[f64]) -> Axis {
        let mut at: Vec<f64> = values.iter().filter_map(|v| self.to(*v)).collect();
        at.sort_by(f64::total_cmp);
        at.dedup_by(|a, b| (*a - *b).abs() < 1e-12);
        let min_gap = (self.hi - self.lo) / 18.0;
        let spaced = at.windows(2).all(|w| w[1] - w[0] >= min_gap);
        if !at.is_empty() && at.len() <= 12 && spaced {
            self.ticks = at
                .into_iter()
                .map(|t| (t, format_value(self.from(t))))
                .collect();
        }
        self
    }

    /// Value to drawing space; `None` for NaN/inf and for non-positive values on a log axis.
    fn to(&self, v: f64) -> Option<f64> {
        match (v.is_finite(), self.log) {
            (false, _) => None,
            (true, false) => Some(v),
            (true, true) => (v > 0.0).then(|| v.log10()),
        }
    }

    /// Same grid, no tick labels: for the upper of two panels sharing an x axis.
    fn unlabelled(&self) -> Axis {
        let mut axis = self.clone();
        axis.ticks.iter_mut().for_each(|(_, label)| label.clear());
        axis
    }

    fn from(&self, t: f64) -> f64 {
        if self.log {
            10f64.powf(t)
        } else {
            t
        }
    }

    fn label_at(&self, t: f64) -> String {
        let tol = (self.hi - self.lo).abs() * 1e-9;
        self.ticks
            .iter()
            .find(|(tick, _)| (tick - t).abs() <= tol)
            .map_or_else(|| format_value(self.from(t)), |(_, l)| l.clone())
    }

    /// The axis title, flagged when the scale is logarithmic so readers do not misjudge gaps.
    fn title(&self, title: &str) -> String {
        if self.log {
            format!("{title}, log scale")
        } else {
            title.to_string()
        }
    }
}

/// Plotters coordinate for an `Axis`: linear in drawing space, ticks and labels as computed.
impl Ranged for Axis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.hi - self.lo;
        if span.abs() < f64::MIN_POSITIVE {
            return limit.0;
        }
        let share = (value - self.lo) / span;
        limit.0 + ((limit.1 - limit.0) as f64 * share + 1e-3).floor() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.minor.clone()
        } else {
            self.ticks.iter().map(|(t, _)| *t).collect()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

impl ValueFormatter<f64> for Axis {
    fn format_ext(&self, value: &f64) -> String {
        self.label_at(*value)
    }
}

fn finite_bounds(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((f64::min(lo, v), f64::max(hi, v))),
        })
}

/// A 1-2-5 step near `raw`.
fn nice_step(raw: f64) -> f64 {
    if !raw.is_finite() || raw <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let mult = if norm < 1.5 {
        1.0
    } else if norm < 3.0 {
        2.0
    } else if norm < 7.0 {
        5.0
    } else {
        10.0
    };
    mult * mag
}

fn decimals_for(step: f64) -> usize {
    (-(step.log10() + 1e-9).floor()).clamp(0.0, 6.0) as usize
}

/// Compact number: three significant digits, trailing zeros dropped.
fn format_value(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    if v.abs() >= 1e6 {
        return format!("{v:.0e}");
    }
    let decimals = (2 - v.abs().log10().floor() as i64).clamp(0, 6) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

// ---------------------------------------------------------------------------------------
// Frame, legend, panels and series: the drawing shared by all five plots.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stroke {
    Solid,
    Dashed,
    /// A filled box, for bar charts.
    Bar,
    /// Markers only.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Circle,
    Triangle,
    /// An open ring around a point another marker already shows.
    Ring,
    /// An open circle: a point that is there but not the point.
    Hollow,
}

#[derive(Debug, Clone)]
struct LegendEntry {
    label: String,
    colour: RGBColor,
    stroke: Stroke,
    marker: Marker,
}

impl LegendEntry {
    fn new(label: &str, colour: RGBColor, stroke: Stroke, marker: Marker) -> Self {
        LegendEntry {
            label: label.to_string(),
            colour,
            stroke,
            marker,
        }
    }
}

/// Legend entries for coloured series, empty when there is only one (the title says it).
fn series_legend(
    colours: &[(String, RGBColor)],
    stroke: Stroke,
    marker: Marker,
) -> Vec<LegendEntry> {
    if colours.len() < 2 {
        return Vec::new();
    }
    colours
        .iter()
        .map(|(l, c)| LegendEntry::new(l, *c, stroke, marker))
        .collect()
}

const LEGEND_ROW: i32 = 30;
const LEGEND_ROW_MIN: i32 = 18;
const LEGEND_SWATCH: i32 = 40;
const LEGEND_MAX_W: i32 = 470;

/// White page, title, and the legend in a column right of the plots: outside the data,
/// so it never hides a curve. Returns the area left for the panels.
fn frame<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    legend: &[LegendEntry],
) -> DrawResult<DrawingArea<DB, Shift>, DB> {
    root.fill(&WHITE)?;
    let page = root.margin(12, 8, 12, 12);
    let (page_w, _) = page.dim_in_pixel();
    let title_style = fitted_font(&page, title, TITLE_PT, page_w as i32 - 20, TEXT)?;
    let body = page.titled(title, title_style)?.margin(8, 0, 0, 0);
    if legend.is_empty() {
        return Ok(body);
    }
    let style = font(LEGEND_PT, TEXT);
    let mut text_w = 0;
    for entry in legend {
        text_w = text_w.max(body.estimate_text_size(&entry.label, &style)?.0 as i32);
    }
    let width = (text_w + LEGEND_SWATCH + 44).min(LEGEND_MAX_W);
    let (body_w, _) = body.dim_in_pixel();
    let (plots, side) = body.split_horizontally(body_w as i32 - width);
    draw_legend(&side, legend, width - LEGEND_SWATCH - 44)?;
    Ok(plots)
}

/// Legend rows in a light box; rows shrink when there are many, and what still does not
/// fit is summarised as "+N more" rather than drawn off the page.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    legend: &[LegendEntry],
    text_w: i32,
) -> DrawResult<(), DB> {
    let (w, h) = area.dim_in_pixel();
    let (x0, y0) = (4, 16);
    let room = h as i32 - y0 - 24;
    let n = legend.len().max(1) as i32;
    let row = (room / n).clamp(LEGEND_ROW_MIN, LEGEND_ROW);
    let capacity = (room / row).max(1) as usize;
    let shown = if legend.len() > capacity {
        capacity - 1
    } else {
        legend.len()
    };
    let rows = if shown < legend.len() {
        shown + 1
    } else {
        shown
    };
    area.draw(&Rectangle::new(
        [(x0, y0), (w as i32 - 8, y0 + row * rows as i32 + 14)],
        GRID.stroke_width(1),
    ))?;
    let size = LEGEND_PT.min(f64::from(row) * 0.62);
    let style = font(size, TEXT).pos(Pos::new(HPos::Left, VPos::Center));
    let (sx0, sx1) = (x0 + 12, x0 + 12 + LEGEND_SWATCH);
    let half = (row / 2 - 6).max(4);
    for (i, entry) in legend.iter().take(shown).enumerate() {
        let y = y0 + 7 + row * i as i32 + row / 2;
        if entry.stroke == Stroke::Bar {
            area.draw(&Rectangle::new(
                [(sx0 + 8, y - half), (sx1 - 8, y + half)],
                entry.colour.filled(),
            ))?;
        } else {
            draw_stroke(area, vec![(sx0, y), (sx1, y)], entry.colour, entry.stroke)?;
        }
        draw_marker(area, ((sx0 + sx1) / 2, y), entry.marker, entry.colour)?;
        // Shrink the font before shortening a run's name.
        let mut style = style.clone();
        let mut pt = size;
        while pt > 10.0 && area.estimate_text_size(&entry.label, &style)?.0 as i32 > text_w {
            pt -= 1.0;
            style = font(pt, TEXT).pos(Pos::new(HPos::Left, VPos::Center));
        }
        let label = fit_text(area, &entry.label, &style, text_w)?;
        area.draw_text(&label, &style, (sx1 + 12, y))?;
    }
    if shown < legend.len() {
        let y = y0 + 7 + row * shown as i32 + row / 2;
        let more = format!("+{} more", legend.len() - shown);
        area.draw_text(&more, &style, (sx0, y))?;
    }
    Ok(())
}

/// Largest font (down to 14 pt) at which `text` fits in `max_w` pixels.
fn fitted_font<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    size: f64,
    max_w: i32,
    colour: RGBColor,
) -> DrawResult<TextStyle<'static>, DB> {
    let mut size = size;
    while size > 14.0 && area.estimate_text_size(text, &font(size, colour))?.0 as i32 > max_w {
        size -= 2.0;
    }
    Ok(font(size, colour))
}

/// `text` with its middle replaced by an ellipsis until it fits in `max_w` pixels: labels
/// often differ only at the end (`...-bf16` vs `...-fp8`), so both ends are kept. Whole
/// words (between `-`, `_`, `/`, `.`, ` `) go first; a word is cut only when one word
/// alone does not fit.
fn fit_text<DB: DrawingBackend, CT: CoordTranslate>(
    area: &DrawingArea<DB, CT>,
    text: &str,
    style: &TextStyle,
    max_w: i32,
) -> DrawResult<String, DB> {
    let fits = |t: &str| -> DrawResult<bool, DB> {
        Ok(area.estimate_text_size(t, style)?.0 as i32 <= max_w)
    };
    if fits(text)? {
        return Ok(text.to_string());
    }
    let words = split_words(text);
    for keep in (2..words.len()).rev() {
        let head: String = words[..keep.div_ceil(2)].concat();
        let tail: String = words[words.len() - keep / 2..].concat();
        let candidate = format!("{head}…{tail}");
        if fits(&candidate)? {
            return Ok(candidate);
        }
    }
    let chars: Vec<char> = text.chars().collect();
    for keep in (1..chars.len()).rev() {
        let head: String = chars[..keep.div_ceil(2)].iter().collect();
        let tail: String = chars[chars.len() - keep / 2..].iter().collect();
        let candidate = format!("{head}…{tail}");
        if fits(&candidate)? {
            return Ok(candidate);
        }
    }
    Ok("…".to_string())
}

/// Words with their trailing separator (`-`, `_`, `/`, `.`, ` `).
fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        word.push(c);
        if matches!(c, '-' | '_' | '/' | '.' | ' ') {
            words.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Splits `text` into at most `max_lines` lines of `max_w` pixels, breaking after
/// `-`, `_`, `/`, `.` or a space; what still does not fit is shortened.
fn wrap_text<DB: DrawingBackend, CT: CoordTranslate>(
    area: &DrawingArea<DB, CT>,
    text: &str,
    style: &TextStyle,
    max_w: i32,
    max_lines: usize,
) -> DrawResult<Vec<String>, DB> {
    let mut lines: Vec<String> = Vec::new();
    for token in split_words(text) {
        let joined = match lines.last() {
            Some(line) => format!("{line}{token}"),
            None => token.clone(),
        };
        let room = area.estimate_text_size(joined.trim_end(), style)?.0 as i32 <= max_w;
        let full = lines.len() >= max_lines;
        match lines.last_mut() {
            Some(line) if room || full => *line = joined,
            Some(_) => lines.push(token),
            None => lines.push(joined),
        }
    }
    lines
        .iter()
        .map(|line| fit_text(area, line.trim_end(), style, max_w))
        .collect()
}

/// "no data" in the middle of `area`, under an optional panel caption.
fn no_data<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: Option<&str>,
) -> DrawResult<(), DB> {
    let (w, h) = area.dim_in_pixel();
    if let Some(caption) = caption {
        let style = font(CAPTION_PT, TEXT).pos(Pos::new(HPos::Center, VPos::Top));
        area.draw_text(caption, &style, (w as i32 / 2, 12))?;
    }
    let top = if caption.is_some() { 50 } else { 12 };
    area.draw(&Rectangle::new(
        [(12, top), (w as i32 - 12, h as i32 - 12)],
        GRID.stroke_width(1),
    ))?;
    let style = font(26.0, MUTED).pos(Pos::new(HPos::Center, VPos::Center));
    area.draw_text("no data", &style, (w as i32 / 2, h as i32 / 2))
}

type Coord = Cartesian2d<Axis, Axis>;
type Chart<'a, DB> = ChartContext<'a, DB, Coord>;

/// What one panel shows; axis titles should carry units.
struct PanelSpec<'s> {
    x: &'s Axis,
    y: &'s Axis,
    x_title: &'s str,
    y_title: &'s str,
    caption: Option<&'s str>,
    /// False for the upper of two stacked panels: the lower one labels the shared axis.
    x_labels: bool,
    /// Room under the plot for tick labels and the x title.
    x_label_area: u32,
}

/// Builds a panel and draws its grid, ticks and axis titles.
fn panel<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    spec: &PanelSpec,
) -> DrawResult<Chart<'a, DB>, DB> {
    let mut builder = ChartBuilder::on(area);
    builder
        .margin(12)
        .margin_right(28)
        .x_label_area_size(if spec.x_labels { spec.x_label_area } else { 8 })
        .y_label_area_size(Y_LABEL_AREA);
    if let Some(caption) = spec.caption {
        builder.caption(caption, font(CAPTION_PT, TEXT));
    }
    let x = if spec.x_labels {
        spec.x.clone()
    } else {
        spec.x.unlabelled()
    };
    let mut chart = builder.build_cartesian_2d(x, spec.y.clone())?;
    let x_title = if spec.x_labels {
        spec.x.title(spec.x_title)
    } else {
        String::new()
    };
    chart
        .configure_mesh()
        .x_desc(x_title)
        .y_desc(spec.y.title(spec.y_title))
        .label_style(font(TICK_PT, TEXT))
        .axis_desc_style(font(AXIS_TITLE_PT, TEXT))
        .bold_line_style(GRID.stroke_width(1))
        .light_line_style(GRID_LIGHT.stroke_width(1))
        .axis_style(MUTED.stroke_width(1))
        .draw()?;
    Ok(chart)
}

/// Maps raw (x, y) pairs into drawing space, dropping NaN and off-scale points.
fn to_drawing(x: &Axis, y: &Axis, points: impl IntoIterator<Item = (f64, f64)>) -> Vec<(f64, f64)> {
    points
        .into_iter()
        .filter_map(|(a, b)| Some((x.to(a)?, y.to(b)?)))
        .collect()
}

fn draw_stroke<DB: DrawingBackend, CT: CoordTranslate>(
    area: &DrawingArea<DB, CT>,
    points: Vec<CT::From>,
    colour: RGBColor,
    stroke: Stroke,
) -> DrawResult<(), DB>
where
    CT::From: Clone,
{
    match stroke {
        Stroke::Solid => area.draw(&PathElement::new(points, colour.stroke_width(3))),
        Stroke::Dashed => area.draw(&DashedPathElement::new(
            points,
            10,
            6,
            colour.stroke_width(3),
        )),
        Stroke::Bar | Stroke::None => Ok(()),
    }
}

fn draw_marker<DB: DrawingBackend, CT: CoordTranslate>(
    area: &DrawingArea<DB, CT>,
    at: CT::From,
    marker: Marker,
    colour: RGBColor,
) -> DrawResult<(), DB>
where
    CT::From: Clone,
{
    match marker {
        Marker::None => Ok(()),
        Marker::Circle => area.draw(&Circle::new(at, 6, colour.filled())),
        Marker::Triangle => area.draw(&TriangleMarker::new(at, 8, colour.filled())),
        Marker::Ring => area.draw(&Circle::new(at, 13, colour.stroke_width(3))),
        Marker::Hollow => area.draw(&Circle::new(at, 6, colour.stroke_width(2))),
    }
}

/// One data series in drawing space: a line (if two or more points) plus markers.
fn draw_series<DB: DrawingBackend>(
    chart: &Chart<DB>,
    points: Vec<(f64, f64)>,
    colour: RGBColor,
    stroke: Stroke,
    marker: Marker,
) -> DrawResult<(), DB> {
    let area = chart.plotting_area();
    for p in &points {
        draw_marker(area, *p, marker, colour)?;
    }
    if points.len() > 1 {
        draw_stroke(area, points, colour, stroke)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// CDF panels (latency_cdf, ttft_tpot).
// ---------------------------------------------------------------------------------------

/// Up to this many samples the CDF is drawn as the exact staircase.
const CDF_MAX_STEPS: usize = 60;

/// Empirical CDF points (value, share); NaN and inf are dropped. Small samples give the
/// exact staircase, large ones a line through the order statistics.
fn ecdf(values: &[f64]) -> Vec<(f64, f64)> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let share = |i: usize| (i + 1) as f64 / n as f64;
    let mut out = Vec::with_capacity(2 * n);
    for (i, &v) in sorted.iter().enumerate() {
        if n <= CDF_MAX_STEPS || i == 0 {
            out.push((v, if i == 0 { 0.0 } else { share(i - 1) }));
        }
        out.push((v, share(i)));
    }
    out
}

/// Drops points closer than (dx, dy) to the last kept one, keeping the ends. Thick
/// bitmap lines made of sub-pixel segments render as ragged "fur"; this keeps them smooth.
fn thin(points: Vec<(f64, f64)>, dx: f64, dy: f64) -> Vec<(f64, f64)> {
    let Some(&last) = points.last() else {
        return points;
    };
    let mut out: Vec<(f64, f64)> = Vec::new();
    for p in points {
        match out.last() {
            Some(q) if (p.0 - q.0).abs() < dx && (p.1 - q.1).abs() < dy => {}
            _ => out.push(p),
        }
    }
    if out.last() != Some(&last) {
        out.push(last);
    }
    out
}

/// One CDF panel: a line per curve, y = share of requests.
fn cdf_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: Option<&str>,
    x_title: &str,
    curves: &[(&[f64], RGBColor)],
) -> DrawResult<(), DB> {
    let all = curves.iter().flat_map(|(v, _)| v.iter().copied());
    let Some(x) = Axis::from_data(all, true, false) else {
        return no_data(area, caption);
    };
    let y = Axis::linear(-0.02, 1.02);
    let chart = panel(
        area,
        &PanelSpec {
            x: &x,
            y: &y,
            x_title,
            y_title: "share of requests",
            caption,
            x_labels: true,
            x_label_area: X_LABEL_AREA,
        },
    )?;
    // About 3 pixels in each direction, whatever the panel size.
    let (w, h) = chart.plotting_area().dim_in_pixel();
    let dx = 3.0 * (x.hi - x.lo) / f64::from(w.max(1));
    let dy = 3.0 * (y.hi - y.lo) / f64::from(h.max(1));
    for (values, colour) in curves {
        let points = thin(to_drawing(&x, &y, ecdf(values)), dx, dy);
        draw_series(&chart, points, *colour, Stroke::Solid, Marker::None)?;
    }
    Ok(())
}

/// Curves with their colours; labels with no finite sample say so in the legend.
fn cdf_legend(colours: &[(String, RGBColor)], sets: &[&[Samples]]) -> Vec<LegendEntry> {
    let mut legend = series_legend(colours, Stroke::Solid, Marker::None);
    for entry in &mut legend {
        let has_data = sets
            .iter()
            .flat_map(|s| s.iter())
            .any(|s| s.label == entry.label && s.values_ms.iter().any(|v| v.is_finite()));
        if !has_data {
            entry.label.push_str(" (no data)");
        }
    }
    legend
}

fn cdf_curves<'s>(
    samples: &'s [Samples],
    colours: &[(String, RGBColor)],
) -> Vec<(&'s [f64], RGBColor)> {
    samples
        .iter()
        .map(|s| (s.values_ms.as_slice(), colour_of(colours, &s.label)))
        .collect()
}

struct LatencyCdf<'s> {
    title: &'s str,
    curves: &'s [Samples],
}

impl Figure for LatencyCdf<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<(), DB> {
        let colours = colours_by_label(self.curves.iter().map(|c| c.label.as_str()));
        let legend = cdf_legend(&colours, &[self.curves]);
        let body = frame(root, self.title, &legend)?;
        cdf_panel(
            &body,
            None,
            "latency (ms)",
            &cdf_curves(self.curves, &colours),
        )
    }
}

struct TtftTpot<'s> {
    title: &'s str,
    ttft: &'s [Samples],
    tpot: &'s [Samples],
}

impl Figure for TtftTpot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<(), DB> {
        let labels = self.ttft.iter().chain(self.tpot).map(|s| s.label.as_str());
        let colours = colours_by_label(labels);
        let legend = cdf_legend(&colours, &[self.ttft, self.tpot]);
        let body = frame(root, self.title, &legend)?;
        let (w, _) = body.dim_in_pixel();
        let (left, right) = body.split_horizontally(w / 2);
        cdf_panel(
            &left,
            Some("time to first token"),
            "TTFT (ms)",
            &cdf_curves(self.ttft, &colours),
        )?;
        cdf_panel(
            &right,
            Some("time per output token"),
            "TPOT (ms per output token)",
            &cdf_curves(self.tpot, &colours),
        )
    }
}

// ---------------------------------------------------------------------------------------
// Load sweep.
// ---------------------------------------------------------------------------------------

struct ThroughputVsLoad<'s> {
    title: &'s str,
    axis: LoadAxis,
    curves: &'s [LoadCurve],
}

impl ThroughputVsLoad<'_> {
    /// Points with a finite offered load, sorted along the axis so lines do not zigzag.
    fn sorted(curve: &LoadCurve) -> Vec<LoadPoint> {
        let mut points: Vec<LoadPoint> = curve
            .points
            .iter()
            .copied()
            .filter(|p| p.offered.is_finite())
            .collect();
        points.sort_by(|a, b| a.offered.total_cmp(&b.offered));
        points
    }
}

impl Figure for ThroughputVsLoad<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<(), DB> {
        let colours = colours_by_label(self.curves.iter().map(|c| c.label.as_str()));
        let curves: Vec<(RGBColor, Vec<LoadPoint>)> = self
            .curves
            .iter()
            .map(|c| (colour_of(&colours, &c.label), Self::sorted(c)))
            .collect();
        let offered: Vec<f64> = curves
            .iter()
            .flat_map(|(_, points)| points.iter().map(|p| p.offered))
            .collect();
        let Some(x) = Axis::from_data(offered.iter().copied(), true, false) else {
            let body = frame(root, self.title, &[])?;
            return no_data(&body, None);
        };
        // A tick per tested level: that is what a sizing study reads off.
        let x = x.ticks_at(&offered);

        let mut legend = series_legend(&colours, Stroke::Solid, Marker::Circle);
        let look = if colours.len() > 1 { MUTED } else { palette(0) };
        legend.push(LegendEntry::new(
            "p50 latency",
            look,
            Stroke::Solid,
            Marker::Circle,
        ));
        legend.push(LegendEntry::new(
            "p99 latency",
            look,
            Stroke::Dashed,
            Marker::Triangle,
        ));
        if curves
            .iter()
            .any(|(_, points)| points.iter().any(|p| p.saturated))
        {
            legend.push(LegendEntry::new(
                "saturated (throughput flat, latency up)",
                look,
                Stroke::None,
                Marker::Ring,
            ));
        }
        let body = frame(root, self.title, &legend)?;
        let (_, h) = body.dim_in_pixel();
        let (top, bottom) = body.split_vertically(h as i32 * 45 / 100);

        let series = |value: fn(&LoadPoint) -> f64, stroke: Stroke, marker: Marker| {
            curves.iter().map(move |(colour, points)| Series {
                points: points.iter().map(|p| (p.offered, value(p))).collect(),
                colour: *colour,
                stroke,
                marker,
            })
        };
        let mut throughput: Vec<Series> =
            series(|p| p.throughput, Stroke::Solid, Marker::Circle).collect();
        throughput.extend(curves.iter().map(|(colour, points)| {
            Series {
                points: points
                    .iter()
                    .filter(|p| p.saturated)
                    .map(|p| (p.offered, p.throughput))
                    .collect(),
                colour: *colour,
                stroke: Stroke::None,
                marker: Marker::Ring,
            }
        }));
        let latency: Vec<Series> = series(|p| p.p50_ms, Stroke::Solid, Marker::Circle)
            .chain(series(|p| p.p99_ms, Stroke::Dashed, Marker::Triangle))
            .collect();
        let x_title = match self.axis {
            LoadAxis::Concurrency => "concurrency (requests in flight)",
            LoadAxis::RequestRate => "offered rate (requests/s)",
        };
        let top_spec = LinePanel {
            x: &x,
            x_title,
            y_title: "throughput (requests/s)",
            y_log: false,
            x_labels: false,
        };
        line_panel(&top, &top_spec, &throughput)?;
        let bottom_spec = LinePanel {
            y_title: "latency (ms)",
            y_log: true,
            x_labels: true,
            ..top_spec
        };
        line_panel(&bottom, &bottom_spec, &latency)
    }
}

/// A series in data units and how it looks.
struct Series {
    points: Vec<(f64, f64)>,
    colour: RGBColor,
    stroke: Stroke,
    marker: Marker,
}

/// A panel of line series over a given x axis.
#[derive(Clone, Copy)]
struct LinePanel<'s> {
    x: &'s Axis,
    x_title: &'s str,
    y_title: &'s str,
    /// Whether a wide spread may put y on a log scale; otherwise y starts at zero.
    y_log: bool,
    x_labels: bool,
}

fn line_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    spec: &LinePanel,
    series: &[Series],
) -> DrawResult<(), DB> {
    let values = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let Some(y) = Axis::from_data(values, spec.y_log, true) else {
        return no_data(area, Some(spec.y_title));
    };
    let chart = panel(
        area,
        &PanelSpec {
            x: spec.x,
            y: &y,
            x_title: spec.x_title,
            y_title: spec.y_title,
            caption: None,
            x_labels: spec.x_labels,
            x_label_area: X_LABEL_AREA,
        },
    )?;
    for s in series {
        let points = to_drawing(spec.x, &y, s.points.iter().copied());
        draw_series(&chart, points, s.colour, s.stroke, s.marker)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Scores per task.
// ---------------------------------------------------------------------------------------

struct ScoresByTask<'s> {
    title: &'s str,
    scores: &'s [TaskScore],
}

/// Share of a category's width taken by its bars; the rest separates the groups.
const GROUP_WIDTH: f64 = 0.8;
/// Line height of the task labels under the bars.
const GROUP_LABEL_ROW: i32 = 22;

/// Scores arranged for drawing: groups (task, metric) and models in first-seen order.
struct BarTable<'s> {
    groups: Vec<(&'s str, &'s str)>,
    models: Vec<(String, RGBColor)>,
    cells: HashMap<(usize, &'s str), &'s TaskScore>,
}

impl<'s> ScoresByTask<'s> {
    /// Groups the finite scores; a repeated (task, metric, model) keeps its first score.
    fn table(&self) -> BarTable<'s> {
        let valid = || self.scores.iter().filter(|s| s.value.is_finite());
        let mut groups: Vec<(&'s str, &'s str)> = Vec::new();
        let mut cells = HashMap::new();
        for s in valid() {
            let key = (s.task.as_str(), s.metric.as_str());
            let g = match groups.iter().position(|k| *k == key) {
                Some(g) => g,
                None => {
                    groups.push(key);
                    groups.len() - 1
                }
            };
            cells.entry((g, s.model.as_str())).or_insert(s);
        }
        let models = colours_by_label(valid().map(|s| s.model.as_str()));
        BarTable {
            groups,
            models,
            cells,
        }
    }

    /// Score axis: starts at 0 for 0..1 metrics unless that would squash the differences,
    /// otherwise a little below the lowest CI bound, on a tick when that costs little room.
    fn y_axis(&self) -> Option<Axis> {
        let values = self
            .scores
            .iter()
            .filter(|s| s.value.is_finite())
            .flat_map(|s| [s.value, s.low, s.high]);
        let (min, max) = finite_bounds(values)?;
        let unit = min >= 0.0 && max <= 1.0;
        let span = if max > min {
            max - min
        } else {
            max.abs().max(0.1)
        };
        let mut lo = if unit && min <= 0.5 * max {
            0.0
        } else {
            min - 0.15 * span
        };
        if min >= 0.0 {
            lo = lo.max(0.0);
        }
        let mut hi = max + 0.08 * span;
        if unit {
            hi = hi.min(1.02);
        }
        let step = nice_step((hi - lo) / 6.0);
        let snapped = (lo / step).floor() * step;
        if lo - snapped <= 0.1 * (hi - lo) {
            lo = snapped;
        }
        Some(Axis::linear(lo, hi))
    }
}

/// Task label lines (wrapped to the group width) and the metric line under them.
fn group_labels<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    groups: &[(&str, &str)],
    group_w: i32,
) -> DrawResult<Vec<Vec<(String, TextStyle<'static>)>>, DB> {
    let max_w = (group_w - 8).max(20);
    // One size for every group, the largest at which each word of every task name fits
    // (names wrap between words and are cut only below 9 pt).
    let mut size = TICK_PT + 1.0;
    while size > 9.0 {
        let mut fits = true;
        for (task, _) in groups {
            for word in split_words(task) {
                if area
                    .estimate_text_size(word.trim_end(), &font(size, TEXT))?
                    .0 as i32
                    > max_w
                {
                    fits = false;
                }
            }
        }
        if fits {
            break;
        }
        size -= 1.0;
    }
    let task_style = font(size, TEXT);
    let metric_style = font(size.min(TICK_PT) - 1.0, MUTED);
    let mut out = Vec::with_capacity(groups.len());
    for (task, metric) in groups {
        let mut lines: Vec<(String, TextStyle)> = wrap_text(area, task, &task_style, max_w, 3)?
            .into_iter()
            .map(|l| (l, task_style.clone()))
            .collect();
        if !metric.is_empty() {
            // The measure in full, over two lines if need be (`(cosine_` `spearman)`).
            for line in wrap_text(area, &format!("({metric})"), &metric_style, max_w, 2)? {
                lines.push((line, metric_style.clone()));
            }
        }
        out.push(lines);
    }
    Ok(out)
}

impl Figure for ScoresByTask<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<(), DB> {
        let table = self.table();
        let legend = series_legend(&table.models, Stroke::Bar, Marker::None);
        let body = frame(root, self.title, &legend)?;
        let Some(y) = self.y_axis() else {
            return no_data(&body, None);
        };
        let n = table.groups.len().max(1) as i32;
        let plot_w = body.dim_in_pixel().0 as i32 - Y_LABEL_AREA as i32 - 40;
        let labels = group_labels(&body, &table.groups, plot_w / n)?;
        let rows = labels.iter().map(Vec::len).max().unwrap_or(1) as i32;
        let x = Axis::categories(table.groups.len());
        let chart = panel(
            &body,
            &PanelSpec {
                x: &x,
                y: &y,
                x_title: "task",
                y_title: "score",
                caption: None,
                x_labels: true,
                x_label_area: (X_LABEL_AREA as i32 + (rows - 1) * GROUP_LABEL_ROW) as u32,
            },
        )?;
        let area = chart.plotting_area();
        let baseline = if y.lo < 0.0 && y.hi > 0.0 { 0.0 } else { y.lo };
        // At least two bar widths per group, so a lone model does not get a slab.
        let bar_w = GROUP_WIDTH / table.models.len().max(2) as f64;
        let first = -bar_w * table.models.len() as f64 / 2.0;
        for (g, lines) in labels.into_iter().enumerate() {
            for (m, (model, colour)) in table.models.iter().enumerate() {
                let Some(score) = table.cells.get(&(g, model.as_str())) else {
                    continue;
                };
                let left = g as f64 + first + m as f64 * bar_w;
                let (x0, x1) = (left + 0.06 * bar_w, left + 0.94 * bar_w);
                let value = score.value.clamp(y.lo, y.hi);
                area.draw(&Rectangle::new(
                    [(x0, baseline), (x1, value)],
                    colour.filled(),
                ))?;
                if score.low.is_finite() && score.high.is_finite() {
                    let (low, high) = (score.low.clamp(y.lo, y.hi), score.high.clamp(y.lo, y.hi));
                    draw_whisker(area, (x0 + x1) / 2.0, low, high, 0.2 * bar_w)?;
                }
            }
            for (i, (line, style)) in lines.into_iter().enumerate() {
                let style = style.pos(Pos::new(HPos::Center, VPos::Top));
                let offset = (0, 10 + GROUP_LABEL_ROW * i as i32);
                area.draw(&(EmptyElement::at((g as f64, y.lo)) + Text::new(line, offset, style)))?;
            }
        }
        Ok(())
    }
}

/// A CI whisker: vertical line from low to high with caps.
fn draw_whisker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Coord>,
    x: f64,
    low: f64,
    high: f64,
    cap: f64,
) -> DrawResult<(), DB> {
    let style = TEXT.stroke_width(2);
    area.draw(&PathElement::new(vec![(x, low), (x, high)], style))?;
    for y in [low, high] {
        area.draw(&PathElement::new(vec![(x - cap, y), (x + cap, y)], style))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Cost versus quality.
// ---------------------------------------------------------------------------------------

struct CostVsQuality<'s> {
    title: &'s str,
    quality_name: &'s str,
    points: &'s [CostPoint],
}

impl Figure for CostVsQuality<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<(), DB> {
        // Points label themselves, so no legend.
        let body = frame(root, self.title, &[])?;
        let valid: Vec<&CostPoint> = self
            .points
            .iter()
            .filter(|p| p.usd_per_mtok.is_finite() && p.quality.is_finite())
            .collect();
        let x = Axis::from_data(valid.iter().map(|p| p.usd_per_mtok), true, false);
        let y = Axis::from_data(valid.iter().map(|p| p.quality), false, false);
        let (Some(x), Some(y)) = (x, y) else {
            return no_data(&body, None);
        };
        let chart = panel(
            &body,
            &PanelSpec {
                x: &x,
                y: &y,
                x_title: "cost (USD per 1M tokens)",
                y_title: self.quality_name,
                caption: None,
                x_labels: true,
                x_label_area: X_LABEL_AREA,
            },
        )?;
        let placed: Vec<((f64, f64), RGBColor, &str)> = valid
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let at = (x.to(p.usd_per_mtok)?, y.to(p.quality)?);
                Some((at, palette(i), p.label.as_str()))
            })
            .collect();
        for (at, colour, _) in &placed {
            draw_marker(chart.plotting_area(), *at, Marker::Circle, *colour)?;
        }
        draw_point_labels(&chart, &placed)
    }
}

struct Pareto<'s> {
    title: &'s str,
    curves: &'s [ParetoCurve],
}

impl Figure for Pareto<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<(), DB> {
        let colours = colours_by_label(self.curves.iter().map(|c| c.label.as_str()));
        let mut legend = series_legend(&colours, Stroke::Solid, Marker::Circle);
        legend.push(LegendEntry::new(
            "dominated level",
            MUTED,
            Stroke::None,
            Marker::Hollow,
        ));
        let body = frame(root, self.title, &legend)?;
        let all = || self.curves.iter().flat_map(|c| c.points.iter());
        let x = Axis::from_data(all().map(|p| p.per_user), true, false);
        let y = Axis::from_data(all().map(|p| p.per_replica), true, true);
        let (Some(x), Some(y)) = (x, y) else {
            return no_data(&body, None);
        };
        let chart = panel(
            &body,
            &PanelSpec {
                x: &x,
                y: &y,
                x_title: "output tokens/s per user (1 / median TPOT)",
                y_title: "output tokens/s per replica",
                caption: None,
                x_labels: true,
                x_label_area: X_LABEL_AREA,
            },
        )?;
        let mut labels: Vec<((f64, f64), RGBColor, &str)> = Vec::new();
        for curve in self.curves {
            let colour = colour_of(&colours, &curve.label);
            let front = pareto_front(&curve.points);
            let line = front
                .iter()
                .map(|&i| (curve.points[i].per_user, curve.points[i].per_replica));
            draw_series(
                &chart,
                to_drawing(&x, &y, line),
                colour,
                Stroke::Solid,
                Marker::Circle,
            )?;
            for (i, p) in curve.points.iter().enumerate() {
                let Some(at) = x.to(p.per_user).zip(y.to(p.per_replica)) else {
                    continue;
                };
                if front.contains(&i) {
                    labels.push((at, colour, p.level.as_str()));
                } else {
                    draw_marker(chart.plotting_area(), at, Marker::Hollow, colour)?;
                }
            }
        }
        draw_point_labels(&chart, &labels)
    }
}

struct OverTime<'s> {
    title: &'s str,
    series: &'s TimeSeries,
}

/// Time buckets per level: enough to show a trend, each with several requests.
const TIME_BUCKETS: f64 = 60.0;

impl OverTime<'_> {
    /// (bucket middle, p50 ms, p99 ms) of a level's requests in buckets of `width` s.
    fn buckets(requests: &[(f64, f64)], width: f64) -> Vec<(f64, f64, f64)> {
        let mut by_bucket: std::collections::BTreeMap<i64, Vec<f64>> = Default::default();
        for &(t, ms) in requests {
            if t.is_finite() && ms.is_finite() {
                by_bucket
                    .entry((t / width).floor() as i64)
                    .or_default()
                    .push(ms);
            }
        }
        by_bucket
            .into_iter()
            .map(|(k, values)| {
                let mid = (k as f64 + 0.5) * width;
                let p = |q| crate::metrics::quantile::percentile(&values, q);
                (mid, p(50.0), p(99.0))
            })
            .collect()
    }
}

impl Figure for OverTime<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<(), DB> {
        let levels = &self.series.levels;
        let colours = colours_by_label(levels.iter().map(|l| l.label.as_str()));
        let mut legend = series_legend(&colours, Stroke::Solid, Marker::None);
        legend.push(LegendEntry::new(
            "p50 latency",
            MUTED,
            Stroke::Solid,
            Marker::None,
        ));
        legend.push(LegendEntry::new(
            "p99 latency",
            MUTED,
            Stroke::Dashed,
            Marker::None,
        ));
        legend.push(LegendEntry::new(
            "server: running",
            TEXT,
            Stroke::Solid,
            Marker::None,
        ));
        legend.push(LegendEntry::new(
            "server: queued",
            TEXT,
            Stroke::Dashed,
            Marker::None,
        ));
        let times = levels
            .iter()
            .flat_map(|l| l.requests.iter().map(|r| r.0))
            .chain(self.series.server.iter().map(|s| s.t));
        let Some(x) = Axis::from_data(times.clone(), false, false) else {
            let body = frame(root, self.title, &legend)?;
            return no_data(&body, None);
        };
        let span = finite_bounds(times).map_or(1.0, |(lo, hi)| (hi - lo).max(1e-3));
        let width = (span / TIME_BUCKETS).max(0.25);
        let body = frame(root, self.title, &legend)?;
        let (_, h) = body.dim_in_pixel();
        let (top, bottom) = body.split_vertically(h as i32 * 55 / 100);
        let mut latency = Vec::new();
        for level in levels {
            let colour = colour_of(&colours, &level.label);
            let buckets = Self::buckets(&level.requests, width);
            for (stroke, pick) in [
                (
                    Stroke::Solid,
                    (|b: &(f64, f64, f64)| b.1) as fn(&(f64, f64, f64)) -> f64,
                ),
                (Stroke::Dashed, |b| b.2),
            ] {
                latency.push(Series {
                    points: buckets.iter().map(|b| (b.0, pick(b))).collect(),
                    colour,
                    stroke,
                    // A level within one bucket is a point, not a line: mark it.
                    marker: if buckets.len() == 1 {
                        Marker::Circle
                    } else {
                        Marker::None
                    },
                });
            }
        }
        let top_spec = LinePanel {
            x: &x,
            x_title: "time (s since the first request)",
            y_title: "latency (ms)",
            y_log: true,
            x_labels: false,
        };
        line_panel(&top, &top_spec, &latency)?;
        let bottom_spec = LinePanel {
            y_title: "server requests",
            y_log: false,
            x_labels: true,
            ..top_spec
        };
        let server = &self.series.server;
        if server.is_empty() {
            return no_data(&bottom, Some("server requests (run with --scrape)"));
        }
        // Means per time bucket, as for latency: raw readings every second over a long
        // run are a comb, and near-simultaneous readings (one level's last, the next
        // one's first) make zero-length dashes.
        let gauge = |pick: fn(&ServerPoint) -> Option<f64>, stroke| {
            let mut by_bucket: std::collections::BTreeMap<i64, (f64, usize)> = Default::default();
            for p in server {
                if let Some(v) = pick(p).filter(|v| v.is_finite() && p.t.is_finite()) {
                    let e = by_bucket.entry((p.t / width).floor() as i64).or_default();
                    *e = (e.0 + v, e.1 + 1);
                }
            }
            Series {
                points: by_bucket
                    .into_iter()
                    .map(|(k, (sum, n))| ((k as f64 + 0.5) * width, sum / n as f64))
                    .collect(),
                colour: TEXT,
                stroke,
                marker: Marker::None,
            }
        };
        line_panel(
            &bottom,
            &bottom_spec,
            &[
                gauge(|s| s.running, Stroke::Solid),
                gauge(|s| s.queued, Stroke::Dashed),
            ],
        )
    }
}

/// Pixel box (x0, y0, x1, y1).
type PixelBox = (i32, i32, i32, i32);

fn overlaps(a: &PixelBox, b: &PixelBox) -> bool {
    a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
}

/// Where a label may sit around its point, in order of preference: right, left, above,
/// below (unit steps in pixel space, y down).
const LABEL_SIDES: [(i32, i32); 4] = [(1, 0), (-1, 0), (0, -1), (0, 1)];

/// Box, anchor and pixel offset of a `size` label on `side` of the point at `(x, y)`.
fn label_spot(
    (x, y): (i32, i32),
    (w, h): (i32, i32),
    (sx, sy): (i32, i32),
) -> (PixelBox, Pos, (i32, i32)) {
    const GAP: i32 = 10;
    let offset = (sx * GAP, sy * GAP);
    let (cx, cy) = (x + offset.0, y + offset.1);
    let (x0, h_pos) = match sx {
        1 => (cx, HPos::Left),
        -1 => (cx - w, HPos::Right),
        _ => (cx - w / 2, HPos::Center),
    };
    let (y0, v_pos) = match sy {
        1 => (cy, VPos::Top),
        -1 => (cy - h, VPos::Bottom),
        _ => (cy - h / 2, VPos::Center),
    };
    ((x0, y0, x0 + w, y0 + h), Pos::new(h_pos, v_pos), offset)
}

/// Labels next to their points: the first side (see `LABEL_SIDES`) that stays inside the
/// plot and hits neither another label nor a point; failing that, any side inside.
fn draw_point_labels<DB: DrawingBackend>(
    chart: &Chart<DB>,
    points: &[((f64, f64), RGBColor, &str)],
) -> DrawResult<(), DB> {
    let area = chart.plotting_area();
    let (px, py) = area.get_pixel_range();
    let inside =
        |b: &PixelBox| b.0 >= px.start && b.2 <= px.end && b.1 >= py.start && b.3 <= py.end;
    let style = font(TICK_PT, TEXT);
    let mut taken: Vec<PixelBox> = points
        .iter()
        .map(|(at, _, _)| {
            let (x, y) = chart.backend_coord(at);
            (x - 7, y - 7, x + 7, y + 7)
        })
        .collect();
    for (at, _, label) in points {
        let (w, h) = area.estimate_text_size(label, &style)?;
        let size = (w as i32, h as i32);
        let spots = LABEL_SIDES.map(|side| label_spot(chart.backend_coord(at), size, side));
        let free = |b: &PixelBox| inside(b) && !taken.iter().any(|t| overlaps(t, b));
        let (bx, pos, offset) = spots
            .iter()
            .find(|s| free(&s.0))
            .or_else(|| spots.iter().find(|s| inside(&s.0)))
            .copied()
            .unwrap_or(spots[0]);
        taken.push(bx);
        let text = Text::new(label.to_string(), offset, style.pos(pos));
        area.draw(&(EmptyElement::at(*at) + text))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic log-normal-ish latencies: exp of a sum of uniforms, no rand needed.
    fn latencies(median_ms: f64, spread: f64, n: usize, seed: u64) -> Vec<f64> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut uniform = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let z = (0..4).map(|_| uniform()).sum::<f64>() - 2.0;
                median_ms * (spread * z).exp()
            })
            .collect()
    }

    /// Reads width and height from the PNG signature and IHDR chunk.
    fn png_size(path: &Path) -> (u32, u32) {
        let bytes = std::fs::read(path).expect("read png");
        assert!(bytes.len() > 24, "png too short");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "png signature");
        assert_eq!(&bytes[12..16], b"IHDR", "png IHDR");
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        (be(&bytes[16..20]), be(&bytes[20..24]))
    }

    /// Both files exist, both are full size, and the SVG carries every expected text.
    /// With `ASSAY_PLOT_KEEP=<dir>` the files are also copied there for a visual check.
    fn check(written: &[PathBuf], stem: &Path, texts: &[&str]) {
        assert_eq!(
            written,
            [with_extension(stem, "svg"), with_extension(stem, "png")]
        );
        assert_eq!(png_size(&written[1]), SIZE);
        let svg = std::fs::read_to_string(&written[0]).expect("read svg");
        assert!(
            svg.starts_with(r#"<svg width="1200" height="700""#),
            "svg size"
        );
        for text in texts {
            assert!(svg.contains(text), "svg lacks {text:?}");
        }
        if let Ok(dir) = std::env::var("ASSAY_PLOT_KEEP") {
            for path in written {
                if let Some(name) = path.file_name() {
                    let _ = std::fs::copy(path, Path::new(&dir).join(name));
                }
            }
        }
    }

    fn samples(label: &str, values_ms: Vec<f64>) -> Samples {
        Samples {
            label: label.to_string(),
            values_ms,
        }
    }

    fn load_curve(label: &str, scale: f64) -> LoadCurve {
        let points = [
            (1.0, 9.5, 105.0, 160.0),
            (8.0, 61.0, 130.0, 240.0),
            (32.0, 118.0, 270.0, 900.0),
        ]
        .iter()
        .map(|&(offered, tput, p50, p99)| LoadPoint {
            offered,
            throughput: tput * scale,
            p50_ms: p50 / scale,
            p99_ms: p99 / scale,
            saturated: offered == 32.0,
        })
        .collect();
        LoadCurve {
            label: label.to_string(),
            points,
        }
    }

    fn score(task: &str, metric: &str, model: &str, value: f64, half: f64) -> TaskScore {
        TaskScore {
            task: task.to_string(),
            metric: metric.to_string(),
            model: model.to_string(),
            value,
            low: value - half,
            high: value + half,
        }
    }

    fn cost(label: &str, usd_per_mtok: f64, quality: f64) -> CostPoint {
        CostPoint {
            label: label.to_string(),
            usd_per_mtok,
            quality,
        }
    }

    #[test]
    fn latency_cdf_writes_both_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stem = dir.path().join("latency_cdf");
        let curves = [
            samples("vllm", latencies(120.0, 0.5, 2000, 1)),
            samples("llama.cpp", latencies(300.0, 0.7, 500, 2)),
        ];
        let written = latency_cdf(&stem, "Request latency", &curves).expect("plot");
        check(
            &written,
            &stem,
            &[
                "Request latency",
                "latency (ms",
                "share of requests",
                "vllm",
                "llama.cpp",
            ],
        );
    }

    #[test]
    fn latency_cdf_narrow_spread_uses_linear_axis() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stem = dir.path().join("latency_cdf_linear");
        let curves = [samples("onnx", latencies(40.0, 0.1, 300, 3))];
        let written = latency_cdf(&stem, "Embedding latency", &curves).expect("plot");
        check(
            &written,
            &stem,
            &["Embedding latency", "latency (ms)", "share of requests"],
        );
        let svg = std::fs::read_to_string(&written[0]).expect("read svg");
        assert!(!svg.contains("log scale"));
    }

    fn pareto_point(per_user: f64, per_replica: f64) -> ParetoPoint {
        ParetoPoint {
            level: format!("c={per_replica}"),
            per_user,
            per_replica,
        }
    }

    #[test]
    fn pareto_front_keeps_the_undominated_levels() {
        let points = vec![
            pareto_point(50.0, 40.0),
            pareto_point(40.0, 120.0),
            pareto_point(30.0, 100.0),
            pareto_point(20.0, 200.0),
            pareto_point(10.0, 190.0),
            pareto_point(f64::NAN, 500.0),
        ];
        // 30/100 loses to 40/120 on both; 10/190 to 20/200; NaN is no point at all.
        assert_eq!(pareto_front(&points), vec![3, 1, 0]);
        assert!(pareto_front(&[]).is_empty());
    }

    #[test]
    fn pareto_and_latency_over_time_write_both_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stem = dir.path().join("pareto");
        let curves = [ParetoCurve {
            label: "llama.cpp".into(),
            points: vec![
                pareto_point(52.0, 50.0),
                pareto_point(30.0, 110.0),
                pareto_point(25.0, 100.0),
                pareto_point(12.0, 150.0),
            ],
        }];
        let written = pareto(&stem, "Per user against per replica", &curves).expect("plot");
        check(
            &written,
            &stem,
            &[
                "Per user against per replica",
                "output tokens/s per user (1 / median TPOT)",
                "output tokens/s per replica",
                "dominated level",
                "c=150",
            ],
        );
        let level = |label: &str, from: f64, ms: f64| TimeLevel {
            label: label.into(),
            requests: (0..100)
                .map(|i| (from + i as f64 * 0.1, ms * (1.0 + (i % 7) as f64 / 10.0)))
                .collect(),
        };
        let series = TimeSeries {
            levels: vec![
                level("rate 2/s", 0.0, 300.0),
                level("rate 4/s", 12.0, 900.0),
            ],
            server: (0..80)
                .map(|i| ServerPoint {
                    t: i as f64 * 0.3,
                    running: Some((i % 4) as f64),
                    queued: Some(if i > 40 { 2.0 } else { 0.0 }),
                })
                .collect(),
        };
        let stem = dir.path().join("over_time");
        let written = latency_over_time(&stem, "Latency over time", &series).expect("plot");
        check(
            &written,
            &stem,
            &[
                "time (s since the first request)",
                "latency (ms",
                "server requests",
                "server: queued",
                "rate 4/s",
            ],
        );
        // Without --scrape the lower panel says why it is empty.
        let stem = dir.path().join("over_time_no_server");
        let bare = TimeSeries {
            server: Vec::new(),
            ..series
        };
        let written = latency_over_time(&stem, "Latency over time", &bare).expect("plot");
        check(&written, &stem, &["run with --scrape"]);
    }

    #[test]
    fn throughput_vs_load_writes_both_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stem = dir.path().join("load");
        let curves = [load_curve("vllm", 1.0), load_curve("tgi", 0.8)];
        let written =
            throughput_vs_load(&stem, "Load sweep", LoadAxis::Concurrency, &curves).expect("plot");
        check(
            &written,
            &stem,
            &[
                "Load sweep",
                "concurrency (requests in flight)",
                "throughput (requests/s)",
                "latency (ms",
                "p50 latency",
                "p99 latency",
                "saturated (throughput flat, latency up)",
            ],
        );
    }

    #[test]
    fn throughput_vs_rate_single_curve() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stem = dir.path().join("rate");
        let curve = LoadCurve {
            label: "vllm".to_string(),
            points: [0.5, 1.0, 2.0, 4.0]
                .iter()
                .map(|&r| LoadPoint {
                    offered: r,
                    throughput: r.min(3.1),
                    p50_ms: 200.0 + 40.0 * r,
                    p99_ms: 350.0 + 120.0 * r * r,
                    saturated: false,
                })
                .collect(),
        };
        let written = throughput_vs_load(&stem, "Open-loop sweep", LoadAxis::RequestRate, &[curve])
            .expect("plot");
        check(
            &written,
            &stem,
            &["Open-loop sweep", "offered rate (requests/s)"],
        );
    }

    #[test]
    fn ttft_tpot_writes_both_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stem = dir.path().join("ttft_tpot");
        let ttft = [
            samples("vllm", latencies(80.0, 0.6, 1000, 4)),
            samples("tgi", latencies(140.0, 0.6, 1000, 5)),
        ];
        let tpot = [
            samples("vllm", latencies(12.0, 0.15, 1000, 6)),
            samples("tgi", latencies(15.0, 0.2, 1000, 7)),
        ];
        let written = ttft_tpot(&stem, "Streaming latency", &ttft, &tpot).expect("plot");
        check(
            &written,
            &stem,
            &[
                "Streaming latency",
                "TTFT (ms",
                "TPOT (ms per output token",
                "share of requests",
            ],
        );
    }

    #[test]
    fn ttft_tpot_empty_panel_says_no_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stem = dir.path().join("ttft_only");
        let ttft = [samples("vllm", latencies(80.0, 0.6, 200, 8))];
        let written = ttft_tpot(&stem, "TTFT only", &ttft, &[]).expect("plot");
        check(&written, &stem, &["TTFT only", "TTFT (ms", "no data"]);
    }

    #[test]
    fn scores_by_task_writes_both_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stem = dir.path().join("scores");
        let mut scores = Vec::new();
        for (model, bias) in [("bge-small", 0.0), ("e5-base", 0.03), ("minilm", -0.05)] {
            scores.push(score("sts-b", "cosine_spearman", model, 0.82 + bias, 0.015));
            scores.push(score("scifact", "ndcg@10", model, 0.64 + bias, 0.03));
        }
        let written = scores_by_task(&stem, "Accuracy by task", &scores).expect("plot");
        check(
            &written,
            &stem,
            &[
                "Accuracy by task",
                "score",
                "task",
                "sts-b",
                "(cosine_spearman)",
                "e5-base",
            ],
        );
    }

    #[test]
    fn cost_vs_quality_writes_both_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stem = dir.path().join("cost");
        let points = [
            cost("gpt-small", 0.15, 0.71),
            cost("gpt-large", 5.0, 0.86),
            cost("llama-8b local", 0.04, 0.66),
            cost("llama-70b", 0.9, 0.82),
            cost("mixtral", 0.6, 0.80),
        ];
        let written = cost_vs_quality(&stem, "Cost and quality", "accuracy (exact match)", &points)
            .expect("plot");
        check(
            &written,
            &stem,
            &[
                "Cost and quality",
                "cost (USD per 1M tokens",
                "accuracy (exact match)",
                "mixtral",
            ],
        );
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let nan = f64::NAN;

        let w = latency_cdf(&d.join("cdf_empty"), "Empty", &[]).expect("empty cdf");
        check(&w, &d.join("cdf_empty"), &["Empty", "no data"]);
        let only_nan = [samples("a", vec![nan, nan]), samples("b", vec![])];
        let w = latency_cdf(&d.join("cdf_nan"), "All NaN", &only_nan).expect("nan cdf");
        check(&w, &d.join("cdf_nan"), &["no data"]);
        let same = [samples("a", vec![50.0; 10]), samples("b", vec![50.0, nan])];
        let w = latency_cdf(&d.join("cdf_same"), "Identical", &same).expect("identical cdf");
        check(&w, &d.join("cdf_same"), &["latency (ms)"]);

        let w = throughput_vs_load(&d.join("load_empty"), "Empty", LoadAxis::Concurrency, &[])
            .expect("empty load");
        check(&w, &d.join("load_empty"), &["no data"]);
        let one = LoadCurve {
            label: "one".to_string(),
            points: vec![
                LoadPoint {
                    offered: 4.0,
                    throughput: 10.0,
                    p50_ms: 100.0,
                    p99_ms: nan,
                    saturated: false,
                },
                LoadPoint {
                    offered: nan,
                    throughput: 1.0,
                    p50_ms: 1.0,
                    p99_ms: 1.0,
                    saturated: false,
                },
            ],
        };
        let w = throughput_vs_load(
            &d.join("load_one"),
            "One point",
            LoadAxis::RequestRate,
            &[one],
        )
        .expect("single load point");
        check(&w, &d.join("load_one"), &["offered rate (requests/s)"]);
        let no_tput = LoadCurve {
            label: "x".to_string(),
            points: vec![LoadPoint {
                offered: 1.0,
                throughput: nan,
                p50_ms: nan,
                p99_ms: nan,
                saturated: false,
            }],
        };
        let w = throughput_vs_load(
            &d.join("load_nan"),
            "NaN",
            LoadAxis::Concurrency,
            &[no_tput],
        )
        .expect("nan load");
        check(&w, &d.join("load_nan"), &["no data"]);

        let w = ttft_tpot(&d.join("tt_empty"), "Empty", &[], &[]).expect("empty ttft");
        check(&w, &d.join("tt_empty"), &["no data"]);

        let w = scores_by_task(&d.join("scores_empty"), "Empty", &[]).expect("empty scores");
        check(&w, &d.join("scores_empty"), &["no data"]);
        let odd = [
            score("t", "m", "a", 0.5, 0.0),
            score("t", "m", "b", nan, 0.1),
            TaskScore {
                low: nan,
                high: nan,
                ..score("u", "", "a", 3.0, 0.0)
            },
        ];
        let w = scores_by_task(&d.join("scores_odd"), "Odd scores", &odd).expect("odd scores");
        check(&w, &d.join("scores_odd"), &["Odd scores", "score"]);

        let w = cost_vs_quality(&d.join("cost_empty"), "Empty", "q", &[]).expect("empty cost");
        check(&w, &d.join("cost_empty"), &["no data"]);
        let single = [cost("solo", 1.0, 0.5), cost("bad", nan, 0.4)];
        let w =
            cost_vs_quality(&d.join("cost_one"), "Single", "quality", &single).expect("one cost");
        check(&w, &d.join("cost_one"), &["solo", "quality"]);
    }

    #[test]
    fn axes_pad_degenerate_ranges_and_pick_log_for_wide_spreads() {
        let flat = Axis::from_data([5.0, 5.0], true, false).expect("axis");
        assert!(flat.lo < 5.0 && flat.hi > 5.0 && !flat.log);
        let zero = Axis::from_data([0.0], true, true).expect("axis");
        assert!(zero.lo <= 0.0 && zero.hi > 0.0);
        let wide = Axis::from_data([1.0, 1000.0], true, false).expect("axis");
        assert!(wide.log && !wide.ticks.is_empty());
        let huge = Axis::from_data([1e-3, 1e9], true, false).expect("axis");
        assert!(huge.log && (2..=9).contains(&huge.ticks.len()));
        assert!(Axis::from_data([f64::NAN], true, false).is_none());
        assert_eq!(format_value(20.000000001), "20");
        assert_eq!(format_value(0.05), "0.05");
        assert_eq!(format_value(1.25), "1.25");
        assert_eq!(format_value(1500.0), "1500");
    }

    #[test]
    fn ecdf_is_a_staircase_to_one() {
        let points = ecdf(&[3.0, 1.0, f64::NAN, 2.0]);
        assert_eq!(points.first(), Some(&(1.0, 0.0)));
        assert_eq!(points.last(), Some(&(3.0, 1.0)));
        let many = ecdf(&latencies(10.0, 0.5, 10_000, 9));
        assert_eq!(many.len(), 10_001);
        assert_eq!(many.last().map(|p| p.1), Some(1.0));
        let thinned = thin(many, 0.1, 0.01);
        assert!(thinned.len() < 200, "{} points", thinned.len());
        assert_eq!(thinned.last().map(|p| p.1), Some(1.0));
    }
}
