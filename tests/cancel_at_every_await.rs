//! `ctxkit::testing::cancel_at_every_await` (feature `testing`): it cancels a `#[cancellable]`
//! fn at each await in turn, and a broken invariant names the await.

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use ctxkit::testing::cancel_at_every_await;
use ctxkit::{Context, Error, cancellable};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};

/// The message every test sends: big enough that a 48-byte pipe takes it in several writes.
const MESSAGE: [u8; 128] = [7; 128];

/// The line of `send`'s `write_all(..).await`.
const SEND_WRITE_LINE: u32 = line!() + 6;

/// Writes one message and flushes. Not cancel safe: a cancellation while `write_all` waits
/// for the peer to read leaves part of the message on the wire.
#[cancellable]
async fn send<W: AsyncWrite + Unpin>(out: &mut W, message: &[u8]) -> io::Result<()> {
    out.write_all(message).await?;
    out.flush().await?;
    Ok(())
}

/// The same, with the write shielded (bounded, so a stuck peer cannot hold the call forever).
#[cancellable]
async fn send_whole<W: AsyncWrite + Unpin>(out: &mut W, message: &[u8]) -> io::Result<()> {
    #[shield(timeout = "2s")]
    out.write_all(message).await?;
    out.flush().await?;
    Ok(())
}

/// Sends `MESSAGE` with `send_fn` through a 48-byte in-memory pipe while a peer reads
/// everything; returns the send's result and what the peer received.
async fn over_a_pipe<F>(send_fn: F) -> (io::Result<()>, Vec<u8>)
where
    F: AsyncFnOnce(&mut DuplexStream) -> io::Result<()>,
{
    let (mut tx, mut rx) = tokio::io::duplex(48);
    let peer = tokio::spawn(async move {
        let mut received = Vec::new();
        rx.read_to_end(&mut received).await.map(|_| received)
    });
    let sent = send_fn(&mut tx).await;
    drop(tx);
    (
        sent,
        peer.await.expect("the peer panicked").expect("reading"),
    )
}

/// The invariant of a message protocol: the peer sees whole messages or nothing.
fn whole_or_nothing((sent, received): (io::Result<()>, Vec<u8>)) {
    assert!(
        received.is_empty() || received == MESSAGE,
        "the peer received {} of {} bytes (the send returned {sent:?})",
        received.len(),
        MESSAGE.len()
    );
}

/// The panic message of a test run in its own task.
async fn panic_message(fut: impl Future<Output = ()> + Send + 'static) -> String {
    let err = tokio::spawn(fut)
        .await
        .expect_err("the check should have failed");
    match err.into_panic().downcast::<String>() {
        Ok(message) => *message,
        Err(_) => panic!("a panic without a text message"),
    }
}

#[tokio::test]
async fn it_finds_a_write_all_cut_by_a_cancellation_and_names_the_await() {
    let start = std::time::Instant::now();
    let message = panic_message(async {
        cancel_at_every_await(
            |_ctx: Context| over_a_pipe(async |tx| send(tx, &MESSAGE).await),
            whole_or_nothing,
        )
        .await;
    })
    .await;
    eprintln!("found in {:?}: {message}", start.elapsed());
    let place = format!("{}:{SEND_WRITE_LINE}:", file!());
    assert!(message.contains(&place), "{message}");
    assert!(message.contains("await 1 of 2"), "{message}");
    assert!(message.contains("in flight"), "{message}");
    assert!(message.contains("received 48 of 128 bytes"), "{message}");
}

#[tokio::test]
async fn a_bounded_shield_makes_the_write_cancel_safe() {
    let sent = Mutex::new(Vec::new());
    let explored = cancel_at_every_await(
        |_ctx: Context| over_a_pipe(async |tx| send_whole(tx, &MESSAGE).await),
        |(result, received)| {
            sent.lock()
                .unwrap()
                .push(result.as_ref().map_err(|e| e.kind()).copied());
            whole_or_nothing((result, received));
        },
    )
    .await;
    assert_eq!(explored.runs(), 3);
    assert_eq!(
        *sent.lock().unwrap(),
        [
            Ok(()),
            // Cancelled while the shielded write was in flight: it finished, the flush stopped.
            Err(io::ErrorKind::Interrupted),
            // Cancelled at the flush, which had completed: nothing was left to stop.
            Ok(()),
        ]
    );
}

#[tokio::test]
async fn a_fn_with_n_awaits_costs_n_plus_one_runs() {
    let defined = line!();
    #[cancellable]
    async fn three_steps() -> Result<(), Error> {
        tokio::task::yield_now().await;
        std::future::ready(()).await;
        tokio::task::yield_now().await;
        Ok(())
    }
    let runs = AtomicUsize::new(0);
    let explored = cancel_at_every_await(
        |_ctx: Context| {
            runs.fetch_add(1, Ordering::SeqCst);
            three_steps()
        },
        |_| {},
    )
    .await;
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    assert_eq!(explored.runs(), 4);
    let reached: Vec<u32> = explored
        .awaits()
        .iter()
        .map(|a| a.location().line())
        .collect();
    assert_eq!(reached, [defined + 3, defined + 4, defined + 5]);
    assert!(
        explored
            .awaits()
            .iter()
            .all(|a| a.location().file() == file!())
    );
    let in_flight: Vec<bool> = explored.awaits().iter().map(|a| a.in_flight()).collect();
    assert_eq!(in_flight, [true, false, true]);
}

#[tokio::test]
async fn the_k_th_run_stops_at_the_k_th_await() {
    #[cancellable]
    async fn count_steps(steps: &AtomicUsize) -> Result<(), Error> {
        for _ in 0..3 {
            tokio::task::yield_now().await;
            steps.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
    let seen = Mutex::new(Vec::new());
    cancel_at_every_await(
        |_ctx: Context| async {
            let steps = AtomicUsize::new(0);
            let result = count_steps(&steps).await;
            (result, steps.into_inner())
        },
        |outcome| seen.lock().unwrap().push(outcome),
    )
    .await;
    // Run 0 is not cancelled; run k is cancelled while its k-th yield is in flight.
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (Ok(()), 3),
            (Err(Error::Canceled), 0),
            (Err(Error::Canceled), 1),
            (Err(Error::Canceled), 2)
        ]
    );
}

#[tokio::test]
async fn awaits_of_nested_calls_and_of_explicit_contexts_count_too() {
    #[cancellable]
    async fn inner() -> Result<(), Error> {
        tokio::task::yield_now().await;
        Ok(())
    }
    #[cancellable]
    async fn outer(ctx: &Context) -> Result<(), Error> {
        let _ = ctx;
        inner().await?;
        inner().await
    }
    let explored =
        cancel_at_every_await(|ctx: Context| async move { outer(&ctx).await }, |_| {}).await;
    // outer's two awaits and inner's one await per call, in the order they are first polled.
    assert_eq!(explored.runs(), 5);
}

#[tokio::test]
async fn a_run_that_takes_another_path_is_reported() {
    #[cancellable]
    async fn steps(n: usize) -> Result<(), Error> {
        for _ in 0..n {
            tokio::task::yield_now().await;
        }
        Ok(())
    }
    let message = panic_message(async {
        let runs = AtomicUsize::new(0);
        cancel_at_every_await(
            // Three awaits on the first run, none after: not deterministic.
            |_ctx: Context| {
                steps(if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                    3
                } else {
                    0
                })
            },
            |_| {},
        )
        .await;
    })
    .await;
    assert!(message.contains("never reached it"), "{message}");
}

#[tokio::test]
async fn a_failing_reference_run_is_reported_as_such() {
    #[cancellable]
    async fn broken() -> Result<u8, Error> {
        tokio::task::yield_now().await;
        Ok(1)
    }
    let message = panic_message(async {
        cancel_at_every_await(|_ctx: Context| broken(), |got| assert_eq!(got, Ok(2))).await;
    })
    .await;
    assert!(message.contains("run without cancellation"), "{message}");
}

#[path = "../examples/cancellable_request.rs"]
#[allow(dead_code)]
mod cancellable_request;

#[tokio::test(start_paused = true)]
async fn the_talks_server_is_cancel_safe_at_every_await() {
    use cancellable_request::{Event, Payload, Processor, RequestId, ServerError};

    let event = Event {
        request_id: "c66e30e7-5a91-435c-bf18-e63469d472b3",
        payload: Payload::Downstream1 {
            event_id: "ev-1".into(),
        },
        steps: 3,
    };
    let id = RequestId(uuid::Uuid::parse_str(event.request_id).unwrap());
    let explored = cancel_at_every_await(
        |ctx: Context| {
            let ctx = RequestId::set(&ctx, id);
            let event = &event;
            async move {
                let processor = Processor::default();
                let result = processor.server(&ctx, event).await;
                (result, processor)
            }
        },
        |(result, processor): (Result<_, ServerError>, Processor)| {
            let committed = processor.acknowledged();
            assert_eq!(processor.in_flight(), 0, "the processing outlived the call");
            assert_eq!(
                processor.stored().len(),
                committed.len(),
                "a commit was cut in half"
            );
            // Either the result was committed, or the event was cleaned up: never both, never
            // neither.
            assert_eq!(committed.is_empty(), !processor.cleaned_up().is_empty());
            assert_eq!(result.is_ok(), !committed.is_empty());
        },
    )
    .await;
    // Three steps, the processing's await in the server, and the commit's two writes plus the
    // commit's await in the server.
    assert_eq!(explored.runs(), 1 + 3 + 1 + 2 + 1);
}
