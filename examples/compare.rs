//! The tutorial's comparison of the three models, from the `results.json` that `eval` writes:
//!
//! ```text
//! cargo run --release --example simple -- eval --checkpoint runs/simple
//! cargo run --release --example vardeq -- eval --checkpoint runs/vardeq
//! cargo run --release --example multiscale -- eval --checkpoint runs/multiscale
//! cargo run --release --example compare                 # reads runs/{simple,vardeq,multiscale}
//! cargo run --release --example compare -- --runs DIR
//! ```
//!
//! Prints the table (Model | Validation Bpd | Test Bpd | Inference time | Sampling time | Num
//! Parameters) as text and as Markdown. Missing or unreadable results are listed, with the
//! command that makes them, and left out of the table.
use clap::Parser;
use dfdx_flows::cli::{results_table, EvalResults};
use std::path::PathBuf;
use std::process::ExitCode;

/// The tutorial's three models, in the order of its table.
const MODELS: [&str; 3] = ["simple", "vardeq", "multiscale"];

/// Compare the models' evaluation results (results.json written by `eval`).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Directory holding one run directory per model: DIR/{simple,vardeq,multiscale}/results.json
    #[arg(long, default_value = "runs")]
    runs: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.runs.is_dir() {
        eprintln!(
            "error: {} is not a directory (give --runs DIR, the parent of the run directories)",
            args.runs.display()
        );
        return ExitCode::FAILURE;
    }
    let mut found: Vec<EvalResults> = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    for model in MODELS {
        let dir = args.runs.join(model);
        let path = dir.join("results.json");
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<EvalResults>(&bytes) {
                Ok(r) => found.push(r),
                Err(e) => missing.push(format!(
                    "{model}: {} is not a results file of `eval` ({e})",
                    path.display()
                )),
            },
            Err(_) => missing.push(format!(
                "{model}: no {} (run `cargo run --release --example {model} -- eval --checkpoint {}`)",
                path.display(),
                dir.display()
            )),
        }
    }
    if found.is_empty() {
        println!("no results in {}", args.runs.display());
    } else {
        println!("{}", results_table(&found, false));
        print!("{}", results_table(&found, true));
    }
    if !missing.is_empty() {
        println!("\nmissing:");
        for m in &missing {
            println!("  {m}");
        }
    }
    // No table at all is a failure (for scripts); a partial table is not.
    if found.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
