//! Glow conditioned on MNIST's digits (`ClassGlowFlow`: class priors on the split-off and the
//! final latent, and couplings whose network sees the class): `cargo run --release --example
//! class_glow -- --help`.
//!
//! The same commands as the glow example; `train` learns from the labels, `sample --class 7`
//! draws sevens (without `--class`: one row per digit), `eval` adds the marginal bpd and the
//! flow's accuracy as a classifier. Without arguments: train, then write samples.
use std::process::ExitCode;

#[path = "common/alloc.rs"]
mod alloc;

fn main() -> ExitCode {
    alloc::keep_freed_memory();
    dfdx_flows::cli::run_conditional::<dfdx_flows::cli::ClassGlow, 10>("class-glow")
}
