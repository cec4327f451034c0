//! Compile-time checks of `#[message]`, `#[data]` and `#[handler]`: each misuse in
//! `tests/ui/fail-*.rs` fails with the error committed beside it in
//! `.stderr`; each `tests/ui/pass-*.rs` compiles and runs.
//!
//! The `.stderr` files depend on the compiler's wording; `rust-toolchain.toml`
//! pins the toolchain. After a deliberate change to a message, regenerate
//! them with `TRYBUILD=overwrite cargo test --test ui` and read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail-*.rs");
    t.pass("tests/ui/pass-*.rs");
}
