//! `assay grade`: saved outputs graded as a run would grade them, written as a run record
//! that `report`, `compare` and `gate` read like any other.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;

use crate::cli::GradeArgs;
use crate::engine::GeneratorInfo;
use crate::error::Result;
use crate::eval::generation::{CodeSettings, GenerationSettings, PromptStyle};
use crate::eval::grade::{self, OutputsFormat};
use crate::spec;
use crate::store::run::{self as record, Machine, ModelInfo, RunRecord, TaskRecord, ToolInfo};

pub fn run(args: &GradeArgs) -> Result<PathBuf> {
    let started_at = chrono::Utc::now();
    let clock = Instant::now();
    let spec = spec::find(&args.tasks_dir, &args.task)?;
    let format = OutputsFormat::parse(&args.format, &args.outputs)?;
    let style = PromptStyle::parse(&args.prompt_style)?;
    if args.sandbox == "none" {
        eprintln!("{}", crate::sandbox::NO_ISOLATION_WARNING);
    }
    let settings = GenerationSettings {
        limit: None,
        seed: args.seed,
        style,
        max_tokens: None,
        bootstrap_resamples: args.bootstrap,
        loglikelihood: false,
        code: CodeSettings {
            samples: 1,
            temperature: None,
            sandbox: args.sandbox.clone(),
            python: args.python.clone(),
        },
        repeats: None,
    };
    let mut result = grade::grade(&spec, &args.data_root, &args.outputs, format, &settings)?;
    result.family = spec.family().into();
    let name = args
        .outputs
        .file_stem()
        .map_or("outputs".into(), |s| s.to_string_lossy().into_owned());
    let run_id = args.run_id.clone().unwrap_or_else(|| {
        format!(
            "{}-graded-{name}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S")
        )
    });
    let dir = record::run_dir(&args.reports, &run_id);
    let run = RunRecord {
        schema: record::SCHEMA.into(),
        run_id,
        tool: ToolInfo::current(),
        model: ModelInfo::Generator(GeneratorInfo {
            model: format!("outputs:{}", args.outputs.display()),
            engine: "graded outputs".into(),
            device: "none".into(),
            arithmetic: None,
        }),
        started: started_at.to_rfc3339(),
        finished: chrono::Utc::now().to_rfc3339(),
        seconds: clock.elapsed().as_secs_f64(),
        machine: Machine::current(),
        settings: json!({
            "graded_from": args.outputs,
            "format": format!("{format:?}"),
            "seed": args.seed,
            "bootstrap_resamples": args.bootstrap,
            "sandbox": args.sandbox,
            "data_root": args.data_root,
        }),
        tasks: vec![TaskRecord { spec, result }],
        suite: None,
        requests: None,
    };
    record::write(&dir, &run, &[])?;
    super::run::print_table(&run);
    println!("\nrun record: {}", dir.display());
    Ok(dir)
}
