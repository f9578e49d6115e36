//! `assay tasks`: the task specs and the suites, one line each.

use crate::cli::TasksArgs;
use crate::error::Result;
use crate::spec;

pub fn run(args: &TasksArgs) -> Result<()> {
    let specs = spec::load_all(&args.tasks_dir)?;
    let width = specs.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for s in &specs {
        let family = s.family();
        println!("{:width$}  {:19}  {}", s.name, family, s.description);
    }
    let suites = spec::load_suites(&args.tasks_dir)?;
    if !suites.is_empty() {
        println!("\nsuites (assay run --suite NAME):");
        let width = suites.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for s in &suites {
            println!(
                "{:width$}  {}  [{}]",
                s.name,
                s.description,
                s.tasks.join(", ")
            );
        }
    }
    Ok(())
}
