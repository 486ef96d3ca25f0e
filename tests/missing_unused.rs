//! A process that never makes a context current has nothing to lose: its lookups are not
//! reported (its own binary, so that no other test makes a context current first).

use std::sync::{Arc, Mutex};

use ctxkit::Context;

#[test]
fn a_program_that_never_uses_the_implicit_context_gets_no_reports() {
    let seen = Arc::new(Mutex::new(0));
    let sink = seen.clone();
    ctxkit::missing::set_hook(move |_| *sink.lock().unwrap() += 1);
    ctxkit::missing::strict(true);
    let ctx = std::thread::spawn(Context::current).join().unwrap();
    assert!(ctx.ptr_eq(&Context::background()));
    assert_eq!(*seen.lock().unwrap(), 0);
}
