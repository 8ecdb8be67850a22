//! Glow for MNIST (`GlowFlow`: two levels of 8 steps, ActNorm, invertible 1×1 convolutions,
//! affine couplings, a learned-prior split): `cargo run --release --example glow -- --help`.
//!
//! The same commands as the tutorial's examples (train, eval, sample, info, loglik,
//! interpolate, ...). Without arguments: train, then write samples.
use std::process::ExitCode;

#[path = "common/alloc.rs"]
mod alloc;

fn main() -> ExitCode {
    alloc::keep_freed_memory();
    dfdx_flows::cli::run::<dfdx_flows::cli::Glow>("glow")
}
