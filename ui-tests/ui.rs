//! Compile-fail cases of the macros and of the typed API: each file in `cases/` is one misuse,
//! its `.stderr` the message users get (reviewed by hand). Regenerate with `TRYBUILD=overwrite`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("cases/*.rs");
}
