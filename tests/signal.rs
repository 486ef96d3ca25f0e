//! `signal::notify` with real signals: sent to this test process (the tests that listen take
//! turns, since a signal reaches every listener of the process), or to a child process that
//! re-runs this binary for the cases that end the process.
#![cfg(all(unix, feature = "signal"))]

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ctxkit::signal::{self, Signal, SignalReceived};
use ctxkit::{Context, Error};

/// Generous: nothing here should take more than milliseconds, but the machine may be loaded.
const PATIENCE: Duration = Duration::from_secs(30);

/// Signals reach every listener in the process: tests that listen take turns.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

fn send(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {signal} {pid}: {status}");
}

async fn done_soon(ctx: &Context) {
    tokio::time::timeout(PATIENCE, ctx.done())
        .await
        .expect("the signal cancelled the context");
}

#[tokio::test]
async fn a_signal_cancels_every_context_listening_for_it_and_no_other() {
    let _turn = one_at_a_time().await;
    let root = Context::background();
    let (a, _stop_a) = signal::notify(&root, &[Signal::Interrupt, Signal::Terminate]);
    let (b, _stop_b) = signal::notify(&root, &[Signal::Interrupt]);
    let (term_only, _stop_t) = signal::notify(&root, &[Signal::Terminate]);
    let (nothing, _stop_n) = signal::notify(&root, &[]);

    send("INT", std::process::id());
    done_soon(&a).await;
    done_soon(&b).await;
    for ctx in [&a, &b] {
        assert_eq!(ctx.err(), Some(Error::Canceled));
        let cause = ctx.cause().unwrap();
        assert_eq!(
            cause.downcast_ref::<SignalReceived>(),
            Some(&SignalReceived(Signal::Interrupt))
        );
        assert_eq!(cause.to_string(), "received SIGINT");
    }
    // Give a wrongly woken listener every chance to act before looking.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!term_only.is_done());
    assert!(!nothing.is_done());
    assert!(!root.is_done());
}

#[tokio::test]
async fn terminate_names_sigterm() {
    let _turn = one_at_a_time().await;
    let (ctx, _stop) = signal::notify(&Context::background(), &[Signal::Terminate]);
    send("TERM", std::process::id());
    done_soon(&ctx).await;
    assert_eq!(ctx.cause().unwrap().to_string(), "received SIGTERM");
}

#[tokio::test]
async fn hangup_and_quit_can_be_heard_too() {
    let _turn = one_at_a_time().await;
    let (hup, _stop_h) = signal::notify(&Context::background(), &[Signal::Hangup]);
    let (quit, _stop_q) = signal::notify(&Context::background(), &[Signal::Quit]);
    send("HUP", std::process::id());
    done_soon(&hup).await;
    send("QUIT", std::process::id());
    done_soon(&quit).await;
    assert_eq!(hup.cause().unwrap().to_string(), "received SIGHUP");
    assert_eq!(quit.cause().unwrap().to_string(), "received SIGQUIT");
}

#[tokio::test]
async fn the_handle_and_the_parent_cancel_it_without_any_signal() {
    let _turn = one_at_a_time().await;
    let (parent, cancel_parent) = Context::background().with_cancel();
    let (by_stop, stop) = signal::notify(&parent, &[Signal::Interrupt]);
    let (by_parent, _stop) = signal::notify(&parent, &[Signal::Interrupt]);

    stop.cancel();
    assert_eq!(by_stop.err(), Some(Error::Canceled));
    assert!(!by_stop.cause().unwrap().is::<SignalReceived>());
    assert!(!by_parent.is_done());

    cancel_parent.cancel_with(std::io::Error::other("shutting down"));
    assert_eq!(by_parent.cause().unwrap().to_string(), "shutting down");

    // A parent that is done already gives a context that is done already.
    let (late, _stop) = signal::notify(&parent, &[Signal::Interrupt]);
    assert_eq!(late.err(), Some(Error::Canceled));
}

#[tokio::test]
async fn the_returned_handle_names_the_caller() {
    let _turn = one_at_a_time().await;
    let (ctx, stop) = signal::notify(&Context::background(), &[Signal::Interrupt]);
    drop(stop);
    let origin = ctx.cause().unwrap().origin().unwrap_or_default();
    assert!(origin.contains(file!()), "{origin}");
}

/// A child process running one scenario of [`signal_child`], read line by line.
struct Child {
    process: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Child {
    fn start(scenario: &str) -> Child {
        let mut process = Command::new(std::env::current_exe().unwrap())
            .args([
                "signal_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CTXKIT_SIGNAL_SCENARIO", scenario)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("re-run this test binary");
        let stdout = process.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Child { process, lines }
    }

    /// Waits for the child to print `prefix` (after the test harness's own words on the same
    /// line), and returns the rest of the line from there.
    fn expect(&self, prefix: &str) -> String {
        let until = Instant::now() + PATIENCE;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(prefix) => {
                    return line[line.find(prefix).unwrap()..].to_owned();
                }
                Ok(_) => {}
                Err(_) => panic!("the child never printed {prefix:?}"),
            }
        }
    }

    fn send(&self, signal: &str) {
        send(signal, self.process.id());
    }

    fn exit_status(&mut self) -> ExitStatus {
        let until = Instant::now() + PATIENCE;
        while Instant::now() < until {
            if let Some(status) = self.process.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the child did not end");
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[test]
fn a_second_interrupt_while_shutting_down_ends_the_process() {
    let mut child = Child::start("second");
    child.expect("@ready");
    child.send("INT");
    assert_eq!(child.expect("@first:"), "@first: received SIGINT");
    // The child's shutdown hangs; the second Ctrl-C must end it, killed by SIGINT.
    child.send("INT");
    let status = child.exit_status();
    assert_eq!(status.signal(), Some(2), "{status}");
}

#[test]
fn a_second_terminate_ends_the_process_too() {
    let mut child = Child::start("second");
    child.expect("@ready");
    child.send("TERM");
    assert_eq!(child.expect("@first:"), "@first: received SIGTERM");
    child.send("TERM");
    let status = child.exit_status();
    assert_eq!(status.signal(), Some(15), "{status}");
}

#[test]
fn the_second_signal_ends_the_process_also_when_tokio_listened_first() {
    for _ in 0..5 {
        let mut child = Child::start("tokio_first");
        child.expect("@ready");
        child.send("INT");
        assert_eq!(child.expect("@first:"), "@first: received SIGINT");
        child.send("INT");
        let status = child.exit_status();
        assert_eq!(status.signal(), Some(2), "{status}");
    }
}

#[test]
fn a_signal_after_stop_gets_the_default_action() {
    let mut child = Child::start("stop");
    child.expect("@stopped");
    child.send("INT");
    let status = child.exit_status();
    assert_eq!(status.signal(), Some(2), "{status}");
}

#[test]
fn once_the_last_notify_context_is_dropped_the_apps_own_ctrl_c_hears_the_signal() {
    let mut child = Child::start("handed_back");
    child.expect("@listening");
    child.send("INT");
    assert_eq!(child.expect("@app:"), "@app: heard SIGINT");
    let status = child.exit_status();
    assert!(status.success(), "{status}");
}

#[test]
fn an_app_listener_made_before_notify_hears_the_signal_once_notify_is_gone() {
    let mut child = Child::start("handed_back_tokio_first");
    child.expect("@listening");
    child.send("INT");
    assert_eq!(child.expect("@app:"), "@app: heard SIGINT");
    let status = child.exit_status();
    assert!(status.success(), "{status}");
}

#[test]
fn a_notify_after_the_signal_was_handed_back_arms_the_second_signal_again() {
    let mut child = Child::start("notify_again");
    child.expect("@ready");
    child.send("INT");
    assert_eq!(child.expect("@first:"), "@first: received SIGINT");
    child.send("INT");
    let status = child.exit_status();
    assert_eq!(status.signal(), Some(2), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_on_signals_drains_at_the_first_signal_and_cuts_after_the_grace_period() {
    use ctxkit::{GraceExpired, Shutdown};
    let _turn = one_at_a_time().await;
    let grace = Duration::from_millis(500);
    let shutdown = Shutdown::on_signals(&Context::background(), &[Signal::Terminate], grace);
    let (request, _done) = shutdown.hard().with_cancel();

    // Before the signal: the grace period cannot have begun earlier.
    let began = Instant::now();
    send("TERM", std::process::id());
    done_soon(shutdown.draining()).await;
    assert_eq!(
        shutdown.draining().cause().unwrap().to_string(),
        "received SIGTERM"
    );
    // Read before the clock: done now means done by then. A loaded machine may get here only
    // after the grace period; the hard cancel must not have come before it.
    let done = request.is_done();
    let since = began.elapsed();
    assert!(
        !done || since >= grace,
        "the hard cancel came {since:?} after the signal, within the grace period"
    );
    done_soon(&request).await;
    // Never before the grace period; how much after depends on the machine's load.
    assert!(began.elapsed() >= grace, "{:?}", began.elapsed());
    let cause = request.cause().unwrap();
    let expired = cause.downcast_ref::<GraceExpired>().unwrap();
    assert_eq!(expired.grace(), grace);
    assert_eq!(expired.draining_began(), "received SIGTERM");
}

/// Not a test by itself: the child process of the tests above (`--ignored` runs it there).
#[tokio::test]
#[ignore = "runs as the child process of the signal tests"]
async fn signal_child() {
    let Ok(scenario) = std::env::var("CTXKIT_SIGNAL_SCENARIO") else {
        return;
    };
    // Other code that listened with tokio before the first `notify`: its handler action runs
    // before ctxkit's, which must still not take the first signal for a second one.
    let mut earlier =
        matches!(scenario.as_str(), "tokio_first" | "handed_back_tokio_first").then(|| {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).unwrap()
        });
    let signals = [Signal::Interrupt, Signal::Terminate];
    let (ctx, stop) = signal::notify(&Context::background(), &signals);
    match scenario.as_str() {
        "second" | "tokio_first" => {
            println!("@ready");
            ctx.done().await;
            if scenario == "tokio_first" {
                // There the listener may still be settling when the context is done.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            println!("@first: {}", ctx.cause().unwrap());
            // A shutdown that hangs.
            tokio::time::sleep(PATIENCE * 2).await;
        }
        "handed_back" | "handed_back_tokio_first" | "notify_again" => {
            // A library's start-up: it listened, then stopped and let go of its context.
            stop.cancel();
            drop(ctx);
            // Let the listener see it (this runtime has one thread: it runs meanwhile).
            tokio::time::sleep(Duration::from_millis(50)).await;
            if scenario == "notify_again" {
                let (again, _stop) = signal::notify(&Context::background(), &signals);
                println!("@ready");
                again.done().await;
                // tokio's action now comes before ctxkit's re-added one, as when tokio listened
                // first: the listener may still be settling when the context is done.
                tokio::time::sleep(Duration::from_millis(200)).await;
                println!("@first: {}", again.cause().unwrap());
                tokio::time::sleep(PATIENCE * 2).await;
                println!("@survived");
                return;
            }
            // The application's own shutdown listener, made before or after.
            let mut app = earlier.take().unwrap_or_else(|| {
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).unwrap()
            });
            println!("@listening");
            tokio::time::timeout(PATIENCE, app.recv())
                .await
                .expect("the app heard the signal");
            println!("@app: heard SIGINT");
            return;
        }
        "stop" => {
            stop.cancel();
            // Let the listener see it (this runtime has one thread: it runs meanwhile).
            tokio::time::sleep(Duration::from_millis(50)).await;
            println!("@stopped");
            tokio::time::sleep(PATIENCE * 2).await;
        }
        other => panic!("unknown scenario {other}"),
    }
    println!("@survived");
}
