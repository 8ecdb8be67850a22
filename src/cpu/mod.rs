//! The CPU kernels behind the op traits of [`nn`](crate::nn) and
//! [`AffineCouplingOps`](crate::layers::AffineCouplingOps): convolutions (direct implicit GEMM
//! and Winograd), the fused elementwise ops, the whole conditioner networks (the tutorial's and
//! Glow's) as one op each, and the affine coupling transform. Each op is a custom dfdx autograd
//! op over host copies, parallel over the images of the batch; `f32` kernels pick AVX-512 or
//! AVX2 at run time ([`simd`]).
//!
//! Implementation detail: nothing here is public API. What was measured and why each kernel is
//! shaped as it is stands in `benches/README.md`.
#[macro_use]
mod simd;
mod affine;
mod conditioner;
mod conv;
mod conv_dims;
mod direct_conv;
mod elementwise;
mod exp;
mod fused;
mod gemm;
mod glow_net;
mod host;
mod transpose;
mod winograd;
