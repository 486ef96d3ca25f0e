//! `Shutdown`: a draining phase, then a hard cancellation a grace period later.

use std::time::Duration;

use ctxkit::{Context, Error, GraceExpired, Shutdown, ShutdownRequested};

const GRACE: Duration = Duration::from_secs(10);

#[tokio::test(start_paused = true)]
async fn draining_begins_at_shutdown_and_the_hard_cancel_follows_after_the_grace_period() {
    let shutdown = Shutdown::new(&Context::background(), GRACE);
    let (request, _done) = shutdown.hard().with_cancel();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(
        !shutdown.draining().is_done(),
        "nothing happens before shutdown()"
    );

    shutdown.shutdown();
    assert!(shutdown.draining().is_done());
    assert!(
        shutdown
            .draining()
            .cause()
            .unwrap()
            .is::<ShutdownRequested>()
    );
    let began = tokio::time::Instant::now();
    request.done().await;
    assert_eq!(began.elapsed(), GRACE);
    assert_eq!(request.err(), Some(Error::Canceled));
    let cause = request.cause().unwrap();
    let expired = cause.downcast_ref::<GraceExpired>().unwrap();
    assert_eq!(expired.grace(), GRACE);
    assert_eq!(expired.draining_began(), "shutdown requested");
    assert!(shutdown.hard().cause().unwrap().is::<GraceExpired>());
}

#[tokio::test(start_paused = true)]
async fn a_second_shutdown_call_changes_nothing() {
    let shutdown = Shutdown::new(&Context::background(), GRACE);
    shutdown.shutdown();
    let began = tokio::time::Instant::now();
    tokio::time::sleep(GRACE / 2).await;
    shutdown.shutdown();
    shutdown.hard().done().await;
    assert_eq!(began.elapsed(), GRACE);
}

#[tokio::test]
async fn cancelling_the_parent_cancels_both_phases_at_once() {
    let (parent, cancel) = Context::background().with_cancel();
    let shutdown = Shutdown::new(&parent, GRACE);
    cancel.cancel_with(std::io::Error::other("power failure"));
    assert!(shutdown.draining().is_done());
    assert!(shutdown.hard().is_done());
    assert_eq!(
        shutdown.hard().cause().unwrap().to_string(),
        "power failure"
    );
}

#[tokio::test]
async fn dropping_the_shutdown_cancels_both_phases() {
    let shutdown = Shutdown::new(&Context::background(), GRACE);
    let (draining, hard) = (shutdown.draining().clone(), shutdown.hard().clone());
    drop(shutdown);
    assert!(draining.is_done() && hard.is_done());
}

#[test]
fn outside_a_runtime_the_grace_period_still_ends() {
    // Deadlines and callbacks have their own fallback thread there.
    let shutdown = Shutdown::new(&Context::background(), Duration::from_millis(20));
    let began = std::time::Instant::now();
    shutdown.shutdown();
    while !shutdown.hard().is_done() {
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "the hard cancel never came"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(began.elapsed() >= Duration::from_millis(20));
    assert!(shutdown.hard().cause().unwrap().is::<GraceExpired>());
}
