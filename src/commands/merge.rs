//! `assay merge`: one record from the shards of a sharded run, or from the generators of
//! a bench spread over machines.

use crate::cli::MergeArgs;
use crate::error::Result;
use crate::eval::merge;
use crate::load::merge::{clock_bound, merge_bench};

pub fn run(args: &MergeArgs) -> Result<()> {
    let out = args.out.clone().unwrap_or_else(|| args.run_dir.clone());
    if merge::is_bench(&args.run_dir) {
        let bench = merge_bench(&args.run_dir, &out)?;
        super::bench::print(&bench, bench.workload.kind);
        println!(
            "\nmerged {} generators (percentiles over all their requests); clocks: {}",
            bench.generators.len(),
            match clock_bound(&bench.generators) {
                Some(b) => format!("on the server's within ±{:.3} ms", b * 1e3),
                None => "offsets not measured (the server sends no Date header): \
                         assumed synchronised"
                    .into(),
            }
        );
        for level in &bench.levels {
            for g in &level.generators {
                let lag = g
                    .schedule_lag
                    .map_or("-".into(), |d| format!("{:.2} ms", d.p99 * 1e3));
                println!(
                    "  {}  generator {}: {} requests, schedule lag p99 {lag}",
                    level.label, g.shard, g.requests
                );
            }
        }
        println!("\nbench record: {}", out.display());
        return Ok(());
    }
    let record = merge::merge(&args.run_dir, &out, args.data_root.as_deref())?;
    super::run::print_table(&record);
    println!(
        "\nmerged {} shards: {}",
        record.settings["shards"]["count"],
        out.display()
    );
    Ok(())
}
