//! Release gates: rules in TOML checked against a candidate run (and a baseline), with a
//! verdict per rule. Floors and ceilings on any score, latency, throughput or cost;
//! regressions against the baseline that fail only when the drop is larger than allowed
//! *and* significant (its paired bootstrap 95% CI lies wholly below zero).
//!
//! ```toml
//! [[rule]]
//! metric = "stsb.cosine_spearman"   # <task>.<score> from `assay run`
//! min = 0.80
//!
//! [[rule]]
//! metric = "scifact.ndcg_at_10"
//! max_drop = 0.01                   # against --baseline
//!
//! [[rule]]
//! metric = "latency_p99_ms"         # a performance column of `assay report`
//! max = 800
//! level = "concurrency 8"           # bench runs: default is the level cost was measured at
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::report::compare::{compare, suite_delta, Comparison, MetricDelta};
use crate::report::runs::{Run, RunKind};
use crate::report::table::{perf_rows, PERF_METRICS};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[serde(rename = "rule", default)]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Shown in reports; defaults to the check itself (`stsb.cosine_spearman >= 0.8`).
    pub name: Option<String>,
    pub metric: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Largest allowed worsening against the baseline, in the metric's units.
    pub max_drop: Option<f64>,
    /// Performance metrics of bench runs: which load level.
    pub level: Option<String>,
}

impl Rule {
    pub fn title(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        let mut parts = Vec::new();
        if let Some(min) = self.min {
            parts.push(format!("{} >= {min}", self.metric));
        }
        if let Some(max) = self.max {
            parts.push(format!("{} <= {max}", self.metric));
        }
        if let Some(drop) = self.max_drop {
            parts.push(format!("{} drops at most {drop} vs baseline", self.metric));
        }
        let mut title = parts.join(", ");
        if let Some(level) = &self.level {
            title.push_str(&format!(" @ {level}"));
        }
        title
    }

    /// Which kind of rule, for JUnit's `classname`.
    fn kind(&self) -> &'static str {
        match (
            self.max_drop.is_some(),
            self.min.is_some() || self.max.is_some(),
        ) {
            (true, false) => "regression",
            (true, true) => "threshold+regression",
            _ => "threshold",
        }
    }
}

/// Reads and checks a rules file; errors name the file (and line, for TOML syntax).
pub fn read_rules(path: &Path) -> Result<Rules> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_rules(path, &bytes)
}

/// A rules file's bytes (`path` names it in errors).
pub fn parse_rules(path: &Path, bytes: &[u8]) -> Result<Rules> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::input(path, format!("not valid UTF-8 (byte {})", e.valid_up_to())))?;
    let rules: Rules = toml::from_str(text).map_err(|e| Error::input(path, e.to_string()))?;
    if rules.rules.is_empty() {
        return Err(Error::input(path, "no [[rule]] entries"));
    }
    for (i, rule) in rules.rules.iter().enumerate() {
        if rule.min.is_none() && rule.max.is_none() && rule.max_drop.is_none() {
            return Err(Error::input(
                path,
                format!(
                    "rule {} (`{}`): give min, max or max_drop",
                    i + 1,
                    rule.metric
                ),
            ));
        }
        if rule.max_drop.is_some_and(|d| d < 0.0 || !d.is_finite()) {
            return Err(Error::input(
                path,
                format!("rule {} (`{}`): max_drop must be ≥ 0", i + 1, rule.metric),
            ));
        }
    }
    Ok(rules)
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pass,
    Fail,
    /// The rule could not be checked (missing metric, different item sets, ...).
    Error,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub rule: Rule,
    pub verdict: Verdict,
    /// The candidate's value, when found.
    pub value: Option<f64>,
    /// Why: the numbers behind the verdict.
    pub detail: String,
}

/// Exit code convention: 0 all pass, 1 any fail, 2 any rule could not be checked.
pub fn exit_code(outcomes: &[Outcome]) -> i32 {
    if outcomes.iter().any(|o| o.verdict == Verdict::Error) {
        2
    } else if outcomes.iter().any(|o| o.verdict == Verdict::Fail) {
        1
    } else {
        0
    }
}

/// Checks every rule against the candidate runs (and the baseline runs for `max_drop`).
pub fn check(
    rules: &Rules,
    candidate: &[Run],
    baseline: &[Run],
    resamples: usize,
    seed: u64,
) -> Vec<Outcome> {
    let mut comparisons = Comparisons {
        resamples,
        seed,
        done: HashMap::new(),
    };
    rules
        .rules
        .iter()
        .map(
            |rule| match check_one(rule, candidate, baseline, &mut comparisons) {
                Ok((verdict, value, detail)) => Outcome {
                    rule: rule.clone(),
                    verdict,
                    value: Some(value),
                    detail,
                },
                Err(e) => Outcome {
                    rule: rule.clone(),
                    verdict: Verdict::Error,
                    value: None,
                    detail: e.to_string(),
                },
            },
        )
        .collect()
}

/// Paired comparisons of baseline and candidate runs, each computed once however many
/// `max_drop` rules read it (a comparison bootstraps every score of the runs).
struct Comparisons {
    resamples: usize,
    seed: u64,
    done: HashMap<(PathBuf, PathBuf), Comparison>,
}

impl Comparisons {
    fn get(&mut self, base: &Run, cand: &Run) -> Result<&Comparison> {
        let key = (base.dir.clone(), cand.dir.clone());
        if !self.done.contains_key(&key) {
            let comparison = compare(base, cand, self.resamples, self.seed)?;
            self.done.insert(key.clone(), comparison);
        }
        Ok(&self.done[&key])
    }
}

fn check_one(
    rule: &Rule,
    candidate: &[Run],
    baseline: &[Run],
    comparisons: &mut Comparisons,
) -> Result<(Verdict, f64, String)> {
    let value = lookup(rule, candidate)?;
    let mut failures = Vec::new();
    let mut notes = vec![format!("value {}", show(value))];
    if let Some(min) = rule.min {
        // NaN is below every floor and above every ceiling.
        if value.is_nan() || value < min {
            failures.push(format!("below the floor {min}"));
        }
    }
    if let Some(max) = rule.max {
        if value.is_nan() || value > max {
            failures.push(format!("above the ceiling {max}"));
        }
    }
    if let Some(max_drop) = rule.max_drop {
        let d = regression(rule, candidate, baseline, comparisons)?;
        let (failed, text) = judge_drop(&d, max_drop);
        if failed {
            failures.push(text);
        } else {
            notes.push(text);
        }
    }
    if failures.is_empty() {
        Ok((Verdict::Pass, value, notes.join("; ")))
    } else {
        notes.splice(0..0, failures);
        Ok((Verdict::Fail, value, notes.join("; ")))
    }
}

/// A `max_drop` rule on one delta: whether it fails, and the words saying why.
/// A drop beyond `max_drop` fails only when the paired CI lies wholly on the worse side;
/// a score with no per-item values (pair classification's average precision) has no CI, so
/// there the drop alone decides — a gate that can never fail guards nothing.
fn judge_drop(d: &MetricDelta, max_drop: f64) -> (bool, String) {
    let has_ci = d.ci95.is_known();
    let summary = if has_ci {
        format!(
            "baseline {}, delta {:+.4} (95% CI {:+.4} to {:+.4}, {} items)",
            show(d.baseline),
            d.delta,
            d.ci95.low,
            d.ci95.high,
            d.items
        )
    } else {
        format!(
            "baseline {}, delta {:+.4} (no CI: the score has no per-item values)",
            show(d.baseline),
            d.delta
        )
    };
    // Checked first: NaN items are left out of the paired CI, so a NaN score can come
    // with a finite one.
    if d.drop().is_nan() {
        return (true, format!("the score is NaN: {summary}"));
    }
    match (d.drop() > max_drop, has_ci) {
        (true, false) => (
            true,
            format!("dropped {:.4} > {max_drop}: {summary}", d.drop()),
        ),
        (true, true) if d.significantly_worse() => (
            true,
            format!(
                "dropped {:.4} > {max_drop}, significantly: {summary}",
                d.drop()
            ),
        ),
        (true, true) => (
            false,
            format!(
                "dropped {:.4} > {max_drop} but not significantly: {summary}",
                d.drop()
            ),
        ),
        (false, _) => (false, summary),
    }
}

fn show(v: f64) -> String {
    format!("{v:.4}")
}

/// `task.score` from an evaluation run, else a performance metric from a bench level
/// or an evaluation run's requests. Exactly one run may provide it.
fn lookup(rule: &Rule, runs: &[Run]) -> Result<f64> {
    let mut found = Vec::new();
    if let Some((suite, key)) = suite_metric(&rule.metric) {
        for run in runs {
            if let Some(s) = run.eval().and_then(|e| e.suite.as_ref()) {
                if s.name == suite {
                    if let Some(score) = s.scores.get(key) {
                        found.push((run.run_id.clone(), score.value));
                    }
                }
            }
        }
    } else if let Some((task, score)) = rule.metric.split_once('.') {
        for run in runs {
            if let RunKind::Eval(eval) = &run.kind {
                for t in eval.tasks.iter().filter(|t| t.result.task == task) {
                    if let Some(s) = t.result.scores.get(score) {
                        found.push((run.run_id.clone(), s.value));
                    }
                }
            }
        }
    } else {
        let name = perf_alias(&rule.metric);
        let (_, read) = PERF_METRICS
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| unknown_metric(rule))?;
        for row in perf_rows(runs) {
            let wanted = match (&rule.level, &row.run.kind) {
                (Some(level), _) => row.level == *level,
                (None, RunKind::Bench(b)) => b
                    .capacity_level()
                    .is_some_and(|(_, l)| l.label == row.level),
                (None, RunKind::Eval(_)) => true,
            };
            if wanted {
                let v = read(&row).ok_or_else(|| {
                    Error::Usage(format!(
                        "`{}`: run {} ({}) has no such measure",
                        rule.metric, row.run.run_id, row.level
                    ))
                })?;
                found.push((format!("{} ({})", row.run.run_id, row.level), v));
            }
        }
    }
    match found.as_slice() {
        [(_, v)] => Ok(*v),
        [] => Err(unknown_metric(rule)),
        many => {
            Err(Error::Usage(format!(
            "`{}` is in more than one candidate run ({}): gate them one at a time or set `level`",
            rule.metric,
            many.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>().join(", ")
        )))
        }
    }
}

/// `suite.<name>.<aggregate>` split into name and aggregate.
fn suite_metric(metric: &str) -> Option<(&str, &str)> {
    metric.strip_prefix("suite.")?.split_once('.')
}

fn perf_alias(metric: &str) -> &str {
    match metric {
        "p50_ms" => "latency_p50_ms",
        "p90_ms" => "latency_p90_ms",
        "p99_ms" => "latency_p99_ms",
        "throughput" => "requests_per_s",
        other => other,
    }
}

fn unknown_metric(rule: &Rule) -> Error {
    let perf: Vec<&str> = PERF_METRICS.iter().map(|(n, _)| *n).collect();
    Error::Usage(format!(
        "`{}` is not in the candidate run{}: use <task>.<score> (e.g. stsb.cosine_spearman), suite.<suite>.<aggregate> (e.g. suite.mteb-lite.mean) or one of {}",
        rule.metric,
        rule.level.as_ref().map_or(String::new(), |l| format!(" at level `{l}`")),
        perf.join(", ")
    ))
}

/// The paired delta of a `task.score` between the baseline and candidate runs that have
/// the task.
fn regression(
    rule: &Rule,
    candidate: &[Run],
    baseline: &[Run],
    comparisons: &mut Comparisons,
) -> Result<MetricDelta> {
    if let Some((suite, key)) = suite_metric(&rule.metric) {
        let has_suite = |run: &&Run| {
            run.eval()
                .and_then(|e| e.suite.as_ref())
                .is_some_and(|s| s.name == suite)
        };
        let cand = candidate
            .iter()
            .find(has_suite)
            .ok_or_else(|| unknown_metric(rule))?;
        let base = baseline.iter().find(has_suite).ok_or_else(|| {
            Error::Usage(format!(
                "`{}`: no baseline run has suite `{suite}`",
                rule.metric
            ))
        })?;
        let (Some(b), Some(c)) = (base.eval(), cand.eval()) else {
            return Err(unknown_metric(rule));
        };
        return suite_delta(b, c, key).ok_or_else(|| unknown_metric(rule));
    }
    let Some((task, score)) = rule.metric.split_once('.') else {
        return Err(Error::Usage(format!(
            "`{}`: max_drop applies to scores (<task>.<score>), not to performance measures",
            rule.metric
        )));
    };
    if baseline.is_empty() {
        return Err(Error::Usage(format!(
            "`{}`: max_drop needs --baseline",
            rule.metric
        )));
    }
    let has_task = |run: &&Run| {
        run.eval()
            .is_some_and(|e| e.tasks.iter().any(|t| t.result.task == task))
    };
    let cand = candidate
        .iter()
        .find(has_task)
        .ok_or_else(|| unknown_metric(rule))?;
    let base = baseline.iter().find(has_task).ok_or_else(|| {
        Error::Usage(format!(
            "`{}`: no baseline run has task `{task}`",
            rule.metric
        ))
    })?;
    comparisons
        .get(base, cand)?
        .metrics
        .iter()
        .find(|d| d.task == task && d.metric == score)
        .cloned()
        .ok_or_else(|| {
            Error::Usage(format!(
                "`{}`: the baseline run {} has no score `{score}`",
                rule.metric, base.run_id
            ))
        })
}

/// What a person reads: one line per rule, then the tally.
pub fn human(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    for o in outcomes {
        let tag = match o.verdict {
            Verdict::Pass => "PASS ",
            Verdict::Fail => "FAIL ",
            Verdict::Error => "ERROR",
        };
        out.push_str(&format!("{tag} {}: {}\n", o.rule.title(), o.detail));
    }
    out.push_str(&format!("{}\n", tally(outcomes)));
    out
}

fn tally(outcomes: &[Outcome]) -> String {
    let count = |v: Verdict| outcomes.iter().filter(|o| o.verdict == v).count();
    let verdict = match exit_code(outcomes) {
        0 => "passed",
        1 => "FAILED",
        _ => "could not be checked",
    };
    format!(
        "gate {verdict}: {} passed, {} failed, {} errors",
        count(Verdict::Pass),
        count(Verdict::Fail),
        count(Verdict::Error)
    )
}

/// Markdown for a CI job summary.
pub fn markdown(outcomes: &[Outcome], candidate: &[Run], baseline: &[Run]) -> String {
    let runs = |rs: &[Run]| {
        rs.iter()
            .map(|r| format!("`{}` ({})", r.run_id, r.label))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = format!("## assay {}\n\n", tally(outcomes));
    out.push_str(&format!("Candidate: {}  \n", runs(candidate)));
    if !baseline.is_empty() {
        out.push_str(&format!("Baseline: {}\n", runs(baseline)));
    }
    out.push_str("\n| result | rule | value | detail |\n|---|---|---:|---|\n");
    for o in outcomes {
        let icon = match o.verdict {
            Verdict::Pass => "✅ pass",
            Verdict::Fail => "❌ fail",
            Verdict::Error => "⚠️ error",
        };
        let value = o.value.map_or("-".into(), show);
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        out.push_str(&format!(
            "| {icon} | {} | {value} | {} |\n",
            cell(&o.rule.title()),
            cell(&o.detail)
        ));
    }
    out
}

/// JUnit XML: one `<testcase>` per rule, `<failure>` for a failed rule and `<error>` for
/// one that could not be checked, in the layout Jenkins, GitLab and GitHub reporters read.
pub fn junit(outcomes: &[Outcome], suite: &str, timestamp: &str) -> Result<String> {
    use quick_xml::events::{BytesDecl, BytesText, Event};
    let count = |v: Verdict| {
        outcomes
            .iter()
            .filter(|o| o.verdict == v)
            .count()
            .to_string()
    };
    let (tests, failures, errors) = (
        outcomes.len().to_string(),
        count(Verdict::Fail),
        count(Verdict::Error),
    );
    let io = |e: std::io::Error| Error::External(format!("writing JUnit XML: {e}"));
    let mut w = quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
        .map_err(io)?;
    w.create_element("testsuites")
        .with_attributes([
            ("name", "assay gate"),
            ("tests", tests.as_str()),
            ("failures", failures.as_str()),
            ("errors", errors.as_str()),
            ("time", "0"),
        ])
        .write_inner_content(|w| {
            w.create_element("testsuite")
                .with_attributes([
                    ("name", suite),
                    ("tests", tests.as_str()),
                    ("failures", failures.as_str()),
                    ("errors", errors.as_str()),
                    ("skipped", "0"),
                    ("time", "0"),
                    ("timestamp", timestamp),
                ])
                .write_inner_content(|w| {
                    for o in outcomes {
                        let title = o.rule.title();
                        let classname = format!("assay.gate.{}", o.rule.kind());
                        let case = w.create_element("testcase").with_attributes([
                            ("name", title.as_str()),
                            ("classname", classname.as_str()),
                            ("time", "0"),
                        ]);
                        let (tag, kind) = match o.verdict {
                            Verdict::Pass => {
                                case.write_inner_content(|w| {
                                    w.create_element("system-out")
                                        .write_text_content(BytesText::new(&o.detail))?;
                                    Ok(())
                                })?;
                                continue;
                            }
                            Verdict::Fail => ("failure", "GateFailure"),
                            Verdict::Error => ("error", "GateError"),
                        };
                        case.write_inner_content(|w| {
                            w.create_element(tag)
                                .with_attributes([("message", o.detail.as_str()), ("type", kind)])
                                .write_text_content(BytesText::new(&o.detail))?;
                            Ok(())
                        })?;
                    }
                    Ok(())
                })?;
            Ok(())
        })
        .map_err(io)?;
    String::from_utf8(w.into_inner()).map_err(|e| Error::External(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Result<Rules> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, text).unwrap();
        read_rules(&path)
    }

    #[test]
    fn rules_files_are_checked() {
        let ok = rules("[[rule]]\nmetric = \"stsb.cosine_spearman\"\nmin = 0.8\n").unwrap();
        assert_eq!(ok.rules[0].title(), "stsb.cosine_spearman >= 0.8");
        let err = rules("[[rule]]\nmetric = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("give min, max or max_drop"), "{err}");
        let err = rules("[[rule]]\nmetric = \"x\"\nminn = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rules.toml") && err.contains("minn"), "{err}");
        let err = rules("[[rule]]\nmetric = \"x\"\nmax_drop = -1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_drop must be"), "{err}");
    }

    fn delta(candidate: f64, ci95: (f64, f64), items: usize) -> MetricDelta {
        MetricDelta {
            task: "twitter-url-corpus".into(),
            metric: "max_ap".into(),
            baseline: 0.77,
            candidate,
            delta: candidate - 0.77,
            ci95: crate::metrics::bootstrap::Interval {
                low: ci95.0,
                high: ci95.1,
            },
            significant: ci95.0 > 0.0 || ci95.1 < 0.0,
            items,
            higher_is_better: true,
        }
    }

    #[test]
    fn drops_without_a_ci_are_judged_by_size_alone() {
        let nan = f64::NAN;
        // No per-item values: a large drop fails, a small one passes, and no NaN is shown.
        let (failed, text) = judge_drop(&delta(0.70, (nan, nan), 0), 0.01);
        assert!(failed, "{text}");
        assert_eq!(
            text,
            "dropped 0.0700 > 0.01: baseline 0.7700, delta -0.0700 \
             (no CI: the score has no per-item values)"
        );
        let (failed, text) = judge_drop(&delta(0.765, (nan, nan), 0), 0.01);
        assert!(!failed && !text.contains("NaN"), "{text}");
        // With a CI, a large drop fails only when the CI excludes zero.
        assert!(judge_drop(&delta(0.70, (-0.09, -0.05), 300), 0.01).0);
        let (failed, text) = judge_drop(&delta(0.70, (-0.15, 0.01), 300), 0.01);
        assert!(!failed && text.contains("not significantly"), "{text}");
        // A NaN candidate score is a failure, not a pass, with or without a CI.
        assert!(judge_drop(&delta(nan, (nan, nan), 0), 0.01).0);
        let (failed, text) = judge_drop(&delta(nan, (-0.15, 0.01), 300), 0.01);
        assert!(failed && text.starts_with("the score is NaN"), "{text}");
    }

    #[test]
    fn junit_escapes_and_counts() {
        let rule = |m: &str| Rule {
            name: None,
            metric: m.into(),
            min: Some(0.5),
            max: None,
            max_drop: None,
            level: None,
        };
        let outcomes = vec![
            Outcome {
                rule: rule("a.b"),
                verdict: Verdict::Pass,
                value: Some(0.7),
                detail: "value 0.7".into(),
            },
            Outcome {
                rule: rule("c.d"),
                verdict: Verdict::Fail,
                value: Some(0.1),
                detail: "below <floor> & \"worse\"".into(),
            },
        ];
        let xml = junit(&outcomes, "rules.toml", "2026-01-01T00:00:00").unwrap();
        assert!(
            xml.contains("tests=\"2\" failures=\"1\" errors=\"0\""),
            "{xml}"
        );
        assert!(
            xml.contains("below &lt;floor&gt; &amp; &quot;worse&quot;"),
            "{xml}"
        );
        assert_eq!(exit_code(&outcomes), 1);
    }
}
