//! The tutorial's `vardeq` flow on MNIST: `cargo run --release --example vardeq -- --help`.
//!
//! Without arguments: train with the tutorial's settings, then write samples.
use std::process::ExitCode;

#[path = "common/alloc.rs"]
mod alloc;

fn main() -> ExitCode {
    alloc::keep_freed_memory();
    dfdx_flows::cli::run::<dfdx_flows::cli::VarDeq>("vardeq")
}
