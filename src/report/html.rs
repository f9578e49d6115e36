//! The one-file HTML report: run list, tables, plots (SVG inline) and definitions. No
//! external resources, so it opens anywhere and can be attached to a CI job.
//!
//! A small inline script records what rendered (tables with rows, plots with a non-empty
//! box) and any script error in `data-rendered` / `data-errors` on `<body>`, so a headless
//! browser can check the page.

use minijinja::{context, Environment};
use serde::Serialize;

use crate::error::{Error, Result};

#[derive(Debug, Serialize)]
pub struct Table {
    pub title: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Columns to right-align.
    pub numeric: Vec<bool>,
    /// Long reference tables go after the plots, folded.
    pub folded: bool,
}

#[derive(Debug, Serialize)]
pub struct Figure {
    pub title: String,
    /// The SVG document as plotters wrote it.
    pub svg: String,
}

#[derive(Debug, Serialize)]
pub struct RunLine {
    pub run_id: String,
    pub label: String,
    pub kind: String,
    pub model: String,
    pub detail: String,
}

const TEMPLATE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<script>
window.__errors = [];
window.addEventListener("error", function (e) { window.__errors.push(String(e.message)); });
</script>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1280px; color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.3rem; }
p.meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1rem; }
th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #eee; text-align: left; white-space: nowrap; }
th { background: #f5f5f5; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
figure { margin: 1rem 0 2rem; }
figure svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9rem; }
dt { font-weight: 600; margin-top: 0.4rem; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="meta">assay {{ version }} · generated {{ generated }} · {{ runs | length }} run(s)</p>

<h2>Runs</h2>
<div class="scroll"><table class="data">
<thead><tr><th>run</th><th>label</th><th>kind</th><th>model</th><th>detail</th></tr></thead>
<tbody>
{% for r in runs %}<tr><td>{{ r.run_id }}</td><td>{{ r.label }}</td><td>{{ r.kind }}</td><td>{{ r.model }}</td><td>{{ r.detail }}</td></tr>
{% endfor %}</tbody>
</table></div>

{% macro data_table(t) %}
<div class="scroll"><table class="data">
<thead><tr>{% for h in t.headers %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in t.rows %}<tr>{% for cell in row %}<td{% if t.numeric[loop.index0] %} class="num"{% endif %}>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table></div>
{% endmacro %}
{% for t in tables if not t.folded %}
<h2>{{ t.title }}</h2>
{% if t.rows %}{{ data_table(t) }}{% else %}<p>No rows.</p>{% endif %}
{% endfor %}

{% if figures %}<h2>Plots</h2>{% endif %}
{% for f in figures %}
<figure class="plot">
{{ f.svg | safe }}
<figcaption>{{ f.title }}</figcaption>
</figure>
{% endfor %}

{% for t in tables if t.folded %}
<h2>{{ t.title }}</h2>
<details><summary>{{ t.rows | length }} rows</summary>{{ data_table(t) }}</details>
{% endfor %}

<h2>Definitions</h2>
<dl>
{% for d in definitions %}<dt>{{ d[0] }}</dt><dd>{{ d[1] }}</dd>
{% endfor %}</dl>

<script>
(function () {
  var withRows = Array.prototype.filter.call(document.querySelectorAll("table.data"),
    function (t) { return t.querySelectorAll("tbody tr").length > 0; });
  var tables = withRows.filter(function (t) {
    return t.closest("details") === null && t.getBoundingClientRect().height > 0;
  }).length;
  var folded = withRows.filter(function (t) { return t.closest("details") !== null; }).length;
  var plots = Array.prototype.filter.call(document.querySelectorAll("figure.plot svg"),
    function (s) { var b = s.getBoundingClientRect(); return b.width > 0 && b.height > 0 && s.querySelectorAll("text").length > 0; }).length;
  document.body.setAttribute("data-rendered", "tables=" + tables + " folded=" + folded + " plots=" + plots);
  document.body.setAttribute("data-errors", String(window.__errors.length));
})();
</script>
</body>
</html>
"#;

/// What every number in the report means.
pub const DEFINITIONS: &[(&str, &str)] = &[
    ("ci95_low / ci95_high", "Percentile bootstrap 95% confidence interval over the task's items (queries, pairs, questions), seeded."),
    ("Percentiles", "Linear interpolation between order statistics (numpy's default)."),
    ("latency", "Scheduled send to the last byte, in ms: in open-loop runs queueing behind a slow server counts (no coordinated omission)."),
    ("TTFT", "Time to first token: scheduled send to the first streamed content token, in ms."),
    ("TPOT", "Time per output token after the first: (end − first token) / (output tokens − 1), in ms."),
    ("ITL", "Inter-token latency: every gap between streamed tokens, pooled over requests, in ms."),
    ("goodput", "Requests per second that succeeded and met the SLO (all successes when no SLO was set)."),
    ("usd_per_mtok", "Dollars per 1M tokens (input + output) at the level's goodput and the run's --price-per-hour."),
    ("offered", "Closed loop: requests kept in flight (concurrency). Open loop: arrival rate in requests/s."),
];

pub fn render(
    title: &str,
    runs: &[RunLine],
    tables: &[Table],
    figures: &[Figure],
) -> Result<String> {
    let mut env = Environment::new();
    env.add_template("report.html", TEMPLATE)
        .map_err(|e| Error::External(format!("report template: {e}")))?;
    let figures: Vec<Figure> = figures
        .iter()
        .map(|f| Figure {
            title: f.title.clone(),
            svg: strip_xml_declaration(&f.svg).to_string(),
        })
        .collect();
    env.get_template("report.html")
        .and_then(|t| {
            t.render(context! {
                title,
                version => env!("CARGO_PKG_VERSION"),
                generated => chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
                runs,
                tables,
                figures,
                definitions => DEFINITIONS,
            })
        })
        .map_err(|e| Error::External(format!("report template: {e}")))
}

/// An inline `<svg>` must not carry the `<?xml ...?>` prolog of a standalone file.
fn strip_xml_declaration(svg: &str) -> &str {
    let svg = svg.trim_start();
    match svg.strip_prefix("<?xml") {
        Some(rest) => rest.find("?>").map_or(svg, |i| rest[i + 2..].trim_start()),
        None => svg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_escaped_and_svg_is_inlined() {
        let table = Table {
            title: "Quality".into(),
            headers: vec!["model".into()],
            rows: vec![vec!["<b>x</b>".into()]],
            numeric: vec![false],
            folded: false,
        };
        let figure = Figure {
            title: "plot".into(),
            svg: "<?xml version=\"1.0\"?>\n<svg width=\"10\"></svg>".into(),
        };
        let html = render("t", &[], &[table], &[figure]).unwrap();
        assert!(
            html.contains("&lt;b&gt;x&lt;&#x2f;b&gt;") || html.contains("&lt;b&gt;x&lt;/b&gt;"),
            "{html}"
        );
        assert!(html.contains("<svg width=\"10\"></svg>"));
        assert!(html.contains("<td>&lt;b&gt;") && html.contains("<table class=\"data\">"));
        assert!(!html.contains("<?xml"));
    }
}
