//! The tutorial's `vardeq` flow on MNIST: `cargo run --release --example vardeq -- --help`.
//!
//! Without arguments: train with the tutorial's settings, then write samples.
use dfdx_flows::models::vardeq_flow;
use std::process::ExitCode;

// Training allocates and frees large tensors every step; mimalloc keeps them mapped instead of
// returning them to the OS and faulting them back in.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    dfdx_flows::cli::run("vardeq", vardeq_flow)
}
