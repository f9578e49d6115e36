//! The `assay` binary: parse the command line, run the command, map errors to exit codes
//! (2: bad input or usage, 1: anything else).

use clap::Parser;

use assay::cli::{Cli, Command};
use assay::commands;

fn main() {
    // Before any code compiled for the target CPU's extensions can run.
    if let Err(why) = assay::cpu::check() {
        eprintln!("error: {why}");
        std::process::exit(2);
    }
    keep_freed_pages_a_while();
    assay::engine::contain::quiet_contained_panics();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ASSAY_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let outcome: anyhow::Result<()> = match &cli.command {
        Command::Tasks(args) => commands::tasks::run(args).map_err(Into::into),
        Command::Run(args) => commands::run::run(args)
            .map(|_| ())
            .map_err(|e| e.with_completion_flag("--prompt-style completion").into()),
        Command::Report(args) => commands::report::report(args).map_err(Into::into),
        Command::Compare(args) => commands::report::compare(args).map_err(Into::into),
        // 1 means "the gate failed": any error that stops the check is 2.
        Command::Gate(args) => match commands::report::gate(args) {
            Ok(0) => Ok(()),
            Ok(code) => std::process::exit(code),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(2)
            }
        },
        Command::BenchEmbed(args) => commands::bench_embed::run(args).map_err(Into::into),
        Command::Bench(args) => commands::bench::run(args).map(|_| ()).map_err(Into::into),
        Command::BenchDecode(args) => commands::bench_decode::run(args).map_err(Into::into),
        Command::BenchSearch(args) => commands::bench_search::run(args).map_err(Into::into),
        Command::BenchHarness(args) => commands::bench_harness::run(args).map_err(Into::into),
        Command::ServeTrivial(args) => commands::bench_harness::serve(args).map_err(Into::into),
        Command::Merge(args) => commands::merge::run(args).map_err(Into::into),
        Command::Grade(args) => commands::grade::run(args).map(|_| ()).map_err(Into::into),
        Command::Generate(args) => commands::generate::run(args).map_err(Into::into),
        Command::Parity(args) => match commands::parity::run(args) {
            Ok(true) => Ok(()),
            Ok(false) => std::process::exit(1),
            Err(e) => Err(e.into()),
        },
    };
    if let Err(err) = outcome {
        let code = err
            .downcast_ref::<assay::Error>()
            .map_or(1, assay::Error::exit_code);
        eprintln!("error: {}", assay::error::describe_chain(err.as_ref()));
        std::process::exit(code);
    }
}

// candle allocates a fresh buffer for every op; glibc hands large ones back to the OS each
// time, so long inputs spent a third of their time in page faults. mimalloc reuses them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// mimalloc's own option API (its `mi_option_set`; the option numbering is the same in its
// v2 and v3 headers).
extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// mimalloc returns freed pages to the OS 10 ms after they go idle, and the next batch
/// faults them back in zeroed (measured: 20% of embedding throughput). A second's delay
/// keeps them across batches and still frees them when a run goes quiet.
fn keep_freed_pages_a_while() {
    // SAFETY: a plain option setter of the linked allocator; any value is valid.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 1000) };
}
