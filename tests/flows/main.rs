//! The library's integration tests, one module per concept, in one test crate: each crate
//! compiles the flows, the trainer and the checks it uses again (generic code is compiled
//! where it is used), so one crate instead of thirteen compiles them once.
//!
//! `cargo test --test flows actnorm::` runs one module's tests. The tests that need real MNIST
//! are `#[ignore]`d; CI runs them with `MNIST_REAL_DIR` set (`.ci/run`).
mod actnorm;
mod checkpoints;
mod classes;
mod common;
mod custom_layer;
mod errors;
mod glow_coupling;
mod glow_model;
mod invconv;
mod layers;
mod models;
mod pretrained;
mod repeat;
mod schedule;
mod split_prior;
