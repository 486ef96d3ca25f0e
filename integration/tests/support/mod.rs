//! What the integration tests share: finding the real services the test command started.
//!
//! `scripts/test` (the README's test command, also run by `.ci/run`) installs and starts each
//! service on loopback and hands its address over in an environment variable. A bare
//! `cargo test` runs without them: each test that needs one says loudly that it was skipped, and
//! under `CI=true` it fails instead, so CI can never pass without them.
#![allow(dead_code)] // each test file uses only some of these

use std::path::PathBuf;
use std::sync::OnceLock;

/// Whether this run is CI's: `CI` set to anything but empty, `false` or `0`.
pub fn under_ci() -> bool {
    !matches!(
        std::env::var("CI").as_deref(),
        Err(_) | Ok("") | Ok("false") | Ok("0")
    )
}

/// Says loudly that the running test skipped because `why`; under CI, fails the test instead.
pub fn skip(why: &str) {
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    assert!(
        !under_ci(),
        "{test}: {why} (CI is set: nothing may be skipped)"
    );
    eprintln!("!!!!!! SKIPPED {test}: {why}");
}

/// The address of a service the test command started, from `var`; `None` after a loud message
/// when it is not set outside CI. Under `CI=true` a missing service fails the test.
pub fn service(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ => {
            skip(&format!(
                "{var} is not set: the tests against a real {what} did not run. \
                 `scripts/test` starts {what} and sets it."
            ));
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

/// The Python interpreter of the real peers' venv (grpcio, the OpenTelemetry SDK, the stubs of
/// `peers/hop.proto`): `CTXKIT_PEERS_PYTHON`, which `scripts/test` sets (empty when the peers
/// could not be installed), else installed on first use by `peers/install.sh` into
/// `peers-venv` under the cargo target dir in use. `None` after a loud message when they are not
/// available (no python3, PyPI unreachable); under `CI=true` the test fails instead.
pub fn peers_python() -> Option<PathBuf> {
    static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = match std::env::var("CTXKIT_PEERS_PYTHON") {
        Ok(p) if !p.trim().is_empty() => Ok(PathBuf::from(p.trim())),
        Ok(_) => Err("the test command could not install them (see its output)".to_owned()),
        Err(_) => INSTALLED.get_or_init(install_peers).clone(),
    };
    match found {
        Ok(python) => Some(python),
        Err(why) => {
            skip(&format!(
                "needs the Python peers, not available here: {why}"
            ));
            None
        }
    }
}

fn install_peers() -> Result<PathBuf, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/install.sh");
    // CARGO_TARGET_TMPDIR is `<target dir>/tmp`: the venv goes next to it.
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../peers-venv");
    let out = std::process::Command::new(script)
        .arg(&venv)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("could not run {script}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{script} failed ({})", out.status));
    }
    let python = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if python.is_empty() {
        return Err("python3 is missing or PyPI cannot be reached (see above)".to_owned());
    }
    Ok(PathBuf::from(python))
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
