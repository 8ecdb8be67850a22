//! The compile-time shape checks, as a user meets them: every program in `ui-tests/fail` must be
//! rejected by `cargo check` with the error committed beside it (`*.stderr`), and every program
//! in `ui-tests/pass` must compile and run.
//!
//! After an intended change of a message, regenerate the snapshots with
//! `TRYBUILD=overwrite cargo test --test ui` and review each `.stderr` as a user would.

#[test]
fn shape_errors_are_compile_errors() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("ui-tests/fail/*.rs");
    cases.pass("ui-tests/pass/*.rs");
}
