//! The graceful-shutdown example, driven by a test: the server drains, then cuts the open
//! stream at the end of the grace period with a cause that says so, and exits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ctxkit::{Context, Shutdown};
use tokio::net::TcpListener;

#[allow(dead_code)]
#[path = "../examples/graceful_shutdown.rs"]
mod example;

/// Without the cut the open stream would never end: any bound shows it was cut. A few
/// milliseconds after the grace period is usual; this holds on a saturated machine too.
const BOUND: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_drains_then_cuts_the_open_stream_when_the_grace_period_ends() {
    let shutdown = Arc::new(Shutdown::new(&Context::background(), example::GRACE));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = example::spawn_server(listener, &shutdown);
    let conn = example::open_stream(addr).await.unwrap();

    shutdown.shutdown();
    let began = Instant::now();
    let reader = tokio::spawn(example::last_line(conn));

    // Draining: new connections are no longer served.
    tokio::time::sleep(example::GRACE / 5).await;
    assert!(
        example::open_stream(addr).await.is_err(),
        "a new request was served while draining"
    );

    tokio::time::timeout(BOUND, server)
        .await
        .expect("the server exited")
        .unwrap()
        .unwrap();
    let took = began.elapsed();
    assert!(
        took >= example::GRACE,
        "the stream was cut before the grace period ended: {took:?}"
    );
    assert!(took < BOUND, "{took:?}");

    let last = reader.await.unwrap().unwrap();
    assert_eq!(
        last,
        "stopped: context canceled: shutdown: the grace period of 500ms is over (draining \
         began: shutdown requested) (hard cancel: true)"
    );
}
