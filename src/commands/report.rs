//! `assay report`, `assay compare` and `assay gate`: they only read run records.

use crate::cli::{CompareArgs, GateArgs, ReportArgs};
use crate::error::{Error, Result};
use crate::gate;
use crate::report::{self, compare, runs, table};
use crate::store::run::write_atomic;

pub fn report(args: &ReportArgs) -> Result<()> {
    let runs = runs::load_all(&args.runs)?;
    let written = report::write(&runs, &args.out, &args.title)?;
    if written.quality.height() > 0 {
        println!("Main scores (bootstrap 95% CI over items; every score in quality.md)\n");
        println!(
            "{}",
            table::markdown(&table::main_scores(&written.quality)?)
        );
    }
    if written.performance.height() > 0 {
        println!("Performance (latencies in ms, percentiles by linear interpolation)\n");
        println!("{}", table::markdown(&written.performance));
    }
    println!(
        "wrote {} files to {}; open {}",
        written.files.len(),
        args.out.display(),
        written.html.display()
    );
    Ok(())
}

pub fn compare(args: &CompareArgs) -> Result<()> {
    let loaded = runs::load_all(&[args.baseline.clone(), args.candidate.clone()])?;
    let (base, cand) = (&loaded[0], &loaded[1]);
    let c = compare::compare(base, cand, args.paired.bootstrap, args.paired.seed)?;
    println!(
        "baseline {} ({})\ncandidate {} ({})\n",
        base.run_id, base.label, cand.run_id, cand.label
    );
    let metrics = compare::metrics_frame(&c)?;
    let latency = compare::latency_frame(&c)?;
    if metrics.height() > 0 {
        println!("Scores: candidate − baseline, paired bootstrap 95% CI over the same items\n");
        println!("{}", table::markdown(&metrics));
    }
    if latency.height() > 0 {
        println!(
            "Latency (ms): candidate − baseline per percentile, two-sample bootstrap 95% CI\n"
        );
        println!("{}", table::markdown(&latency));
    }
    for note in &c.unmatched {
        println!("not compared: {note}");
    }
    if let Some(out) = &args.out {
        let json = serde_json::to_vec_pretty(&c).map_err(|e| Error::External(e.to_string()))?;
        write_atomic(&out.join("compare.json"), &json)?;
        table::write_all(&metrics, &out.join("metrics"), "Score deltas")?;
        table::write_all(&latency, &out.join("latency"), "Latency deltas")?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

/// Returns the exit code: 0 pass, 1 fail, 2 a rule could not be checked.
pub fn gate(args: &GateArgs) -> Result<i32> {
    let rules = gate::read_rules(&args.rules)?;
    let candidate = runs::load_all(&args.candidate)?;
    let baseline = if args.baseline.is_empty() {
        Vec::new()
    } else {
        runs::load_all(&args.baseline)?
    };
    let outcomes = gate::check(
        &rules,
        &candidate,
        &baseline,
        args.paired.bootstrap,
        args.paired.seed,
    );
    print!("{}", gate::human(&outcomes));
    if let Some(path) = &args.summary {
        write_atomic(
            path,
            gate::markdown(&outcomes, &candidate, &baseline).as_bytes(),
        )?;
    }
    if let Some(path) = &args.junit {
        let suite = format!("assay gate {}", args.rules.display());
        let timestamp = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
        write_atomic(path, gate::junit(&outcomes, &suite, &timestamp)?.as_bytes())?;
    }
    Ok(gate::exit_code(&outcomes))
}
