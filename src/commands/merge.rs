//! `assay merge`: one record from the shards of a sharded run.

use crate::cli::MergeArgs;
use crate::error::Result;
use crate::eval::merge;

pub fn run(args: &MergeArgs) -> Result<()> {
    let out = args.out.clone().unwrap_or_else(|| args.run_dir.clone());
    let record = merge::merge(&args.run_dir, &out, args.data_root.as_deref())?;
    super::run::print_table(&record);
    println!(
        "\nmerged {} shards: {}",
        record.settings["shards"]["count"],
        out.display()
    );
    Ok(())
}
