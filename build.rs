//! Generates the literal dimension impls of `src/shape.rs` (`Halve`, `Double`, `Quadruple`).
//!
//! Literal impls (`impl Halve for Const<28> { type Output = Const<14>; }`) keep `cargo check`
//! fast: DESIGN.md §2 measured 0.6 s for 3,072 literal impls against 4.6 s for the same via
//! const arithmetic in a macro.
use std::fmt::Write;

/// Largest size that can be halved (even sizes only).
const MAX_HALVE: usize = 4096;
/// Largest size that can be doubled.
const MAX_DOUBLE: usize = 2048;
/// Largest size that can be quadrupled.
const MAX_QUADRUPLE: usize = 1024;

fn main() {
    let mut src = String::new();
    for n in (2..=MAX_HALVE).step_by(2) {
        writeln!(
            src,
            "impl Halve for Const<{n}> {{ type Output = Const<{}>; }}",
            n / 2
        )
        .unwrap();
    }
    for n in 1..=MAX_DOUBLE {
        writeln!(
            src,
            "impl Double for Const<{n}> {{ type Output = Const<{}>; }}",
            2 * n
        )
        .unwrap();
    }
    for n in 1..=MAX_QUADRUPLE {
        writeln!(
            src,
            "impl Quadruple for Const<{n}> {{ type Output = Const<{}>; }}",
            4 * n
        )
        .unwrap();
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("dims.rs");
    std::fs::write(out, src).unwrap();
    println!("cargo:rerun-if-changed=build.rs");
}
