//! The multi-scale flow conditioned on MNIST's digits (`ClassMultiscaleFlow`: a class prior on
//! the split-off and on the final latent): `cargo run --release --example class_multiscale --
//! --help`.
//!
//! The same commands as the multi-scale example; `train` learns from the labels, `sample
//! --class 7` draws sevens (without `--class`: one row per digit), `eval` adds the marginal
//! bpd and the flow's accuracy as a classifier. Without arguments: train, then write samples.
use std::process::ExitCode;

#[path = "common/alloc.rs"]
mod alloc;

fn main() -> ExitCode {
    alloc::keep_freed_memory();
    dfdx_flows::cli::run_conditional::<dfdx_flows::cli::ClassMultiscale, 10>("class-multiscale")
}
