//! `assay tasks`: the task specs, one line each.

use crate::cli::TasksArgs;
use crate::error::Result;
use crate::spec;

pub fn run(args: &TasksArgs) -> Result<()> {
    let specs = spec::load_all(&args.tasks_dir)?;
    let width = specs.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for s in &specs {
        let family = s.family();
        println!("{:width$}  {:10}  {}", s.name, family, s.description);
    }
    Ok(())
}
