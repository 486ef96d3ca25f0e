//! What the integration tests share: finding the real services the test command started.
//!
//! `scripts/test` (the README's test command, also run by `.ci/run`) installs and starts each
//! service on loopback and hands its address over in an environment variable. A bare
//! `cargo test` runs without them: each test that needs one says loudly that it was skipped, and
//! under `CI=true` it fails instead, so CI can never pass without them.
#![allow(dead_code)] // each test file uses only some of these

/// The address of a service the test command started, from `var`; `None` after a loud message
/// when it is not set outside CI. Under `CI=true` a missing service fails the test.
pub fn service(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ => {
            let msg = format!(
                "{var} is not set: the tests against a real {what} did not run. \
                 `scripts/test` starts {what} and sets it."
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}");
            }
            eprintln!("!!!!!! SKIPPED: {msg}");
            None
        }
    }
}

/// A PostgreSQL connection string (`CTXKIT_POSTGRES_URL`, e.g.
/// `host=127.0.0.1 port=… user=postgres dbname=postgres`).
pub fn postgres_url() -> Option<String> {
    service("CTXKIT_POSTGRES_URL", "PostgreSQL")
}

/// A nats-server URL (`CTXKIT_NATS_URL`, e.g. `nats://127.0.0.1:4222`).
pub fn nats_url() -> Option<String> {
    service("CTXKIT_NATS_URL", "nats-server")
}

/// Skips the test (returning from it) when the service is not there; see [`service`].
#[macro_export]
macro_rules! require {
    ($getter:expr) => {
        match $getter {
            Some(v) => v,
            None => return,
        }
    };
}
