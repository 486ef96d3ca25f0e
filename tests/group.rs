//! `Group`: errgroup semantics, limits, panics and drops.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use ctxkit::{Context, Error, Group, TaskFailed};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, timeout};

#[derive(Debug, PartialEq)]
enum AppError {
    Failed(&'static str),
    Ctx(Error),
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::Ctx(e)
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Failed(what) => write!(f, "{what} failed"),
            AppError::Ctx(e) => write!(f, "{e}"),
        }
    }
}

/// Sends its name when dropped: proves a task's future is gone.
struct DropFlag(&'static str, mpsc::UnboundedSender<&'static str>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        let _ = self.1.send(self.0);
    }
}

/// Waits (generously) for `n` drop flags and returns their names, sorted.
async fn dropped(rx: &mut mpsc::UnboundedReceiver<&'static str>, n: usize) -> Vec<&'static str> {
    let mut names = Vec::new();
    while names.len() < n {
        match timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Some(name)) => names.push(name),
            _ => panic!("only {names:?} of {n} tasks were dropped"),
        }
    }
    names.sort();
    names
}

/// Runs `wait` on its own task and returns the panic it resumed.
async fn resumed_panic<E: fmt::Display + Send + 'static>(
    group: Group<E>,
) -> Box<dyn std::any::Any + Send> {
    match tokio::spawn(group.wait()).await {
        Err(e) if e.is_panic() => e.into_panic(),
        Err(e) => panic!("wait was cancelled: {e}"),
        Ok(_) => panic!("wait returned instead of resuming the panic"),
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    match payload.downcast_ref::<&'static str>() {
        Some(s) => s,
        None => payload.downcast_ref::<String>().expect("a text panic"),
    }
}

/// A task that runs until its context is cancelled, then returns the context's error.
async fn until_cancelled() -> Result<(), AppError> {
    Context::current().done().await;
    Err(Context::current().err().expect("done").into())
}

#[tokio::test(start_paused = true)]
async fn wait_returns_ok_when_every_task_succeeds() {
    let group: Group<AppError> = Group::new(&Context::background());
    let finished = Arc::new(AtomicUsize::new(0));
    for i in 0..5u64 {
        let finished = finished.clone();
        group
            .spawn(async move {
                sleep(Duration::from_millis(10 * i)).await;
                finished.fetch_add(1, SeqCst);
                Ok(())
            })
            .await;
    }
    assert_eq!(group.wait().await, Ok(()));
    assert_eq!(finished.load(SeqCst), 5);
}

#[tokio::test(start_paused = true)]
async fn first_error_wins_and_cancels_its_siblings() {
    let group = Group::new(&Context::background());
    let ctx = group.context().clone();
    group.spawn(until_cancelled()).await;
    group.spawn(until_cancelled()).await;
    group
        .spawn(async {
            sleep(Duration::from_millis(10)).await;
            Err(AppError::Failed("first"))
        })
        .await;
    group
        .spawn(async {
            sleep(Duration::from_millis(20)).await;
            Err(AppError::Failed("second"))
        })
        .await;
    assert_eq!(group.wait().await, Err(AppError::Failed("first")));
    assert_eq!(ctx.err(), Some(Error::Canceled));
    let cause = ctx.cause().expect("cancelled");
    assert_eq!(cause.to_string(), "first failed");
    let failed = cause
        .downcast_ref::<TaskFailed>()
        .expect("a TaskFailed cause");
    assert_eq!(failed.message(), "first failed");
    assert!(!failed.panicked());
}

#[tokio::test(start_paused = true)]
async fn the_context_is_cancelled_at_the_first_error_not_at_wait() {
    let group = Group::new(&Context::background());
    let ctx = group.context().clone();
    group.spawn(async { Err(AppError::Failed("early")) }).await;
    timeout(Duration::from_secs(30), ctx.done())
        .await
        .expect("cancelled before anyone waits");
    assert_eq!(ctx.cause().unwrap().to_string(), "early failed");
    assert_eq!(group.wait().await, Err(AppError::Failed("early")));
}

#[tokio::test(start_paused = true)]
async fn wait_cancels_the_context_after_every_task_finished() {
    let group: Group<AppError> = Group::new(&Context::background());
    let ctx = group.context().clone();
    let (tx, rx) = oneshot::channel();
    group
        .spawn(async move {
            sleep(Duration::from_millis(50)).await;
            // Still live while a task runs.
            tx.send(Context::current().is_done()).unwrap();
            Ok(())
        })
        .await;
    assert!(!ctx.is_done());
    assert_eq!(group.wait().await, Ok(()));
    assert_eq!(rx.await, Ok(false));
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert!(ctx.cause().unwrap().is::<Error>());
}

#[tokio::test]
async fn every_task_runs_with_the_group_context_as_current() {
    let (parent, _cancel) = Context::background().with_cancel();
    let group: Group<AppError> = Group::new(&parent);
    let (tx, mut rx) = mpsc::unbounded_channel();
    for _ in 0..3 {
        let tx = tx.clone();
        group
            .spawn(async move {
                tx.send(Context::current()).unwrap();
                Ok(())
            })
            .await;
    }
    let tx2 = tx.clone();
    assert!(group.try_spawn(async move {
        tx2.send(Context::current()).unwrap();
        Ok(())
    }));
    drop(tx);
    let ctx = group.context().clone();
    group.wait().await.unwrap();
    let mut seen = 0;
    while let Some(current) = rx.recv().await {
        assert!(current.ptr_eq(&ctx));
        seen += 1;
    }
    assert_eq!(seen, 4);
    let debug = format!("{ctx:?}");
    assert!(
        debug.starts_with("Background.WithCancel.WithCancel [context canceled"),
        "{debug}"
    );
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_parent_cancels_the_group_but_is_not_an_error_by_itself() {
    let (parent, cancel) = Context::background().with_cancel();
    let group: Group<AppError> = Group::new(&parent);
    group
        .spawn(async {
            // A task that notices cancellation and stops cleanly.
            Context::current().done().await;
            Ok(())
        })
        .await;
    cancel.cancel();
    assert_eq!(group.wait().await, Ok(()));
    assert_eq!(parent.err(), Some(Error::Canceled));
}

#[tokio::test(start_paused = true)]
async fn a_task_error_never_cancels_the_parent() {
    let (parent, _cancel) = Context::background().with_cancel();
    let group = Group::new(&parent);
    group.spawn(async { Err(AppError::Failed("child")) }).await;
    assert!(group.wait().await.is_err());
    assert_eq!(parent.err(), None);
}

#[tokio::test(start_paused = true)]
async fn a_limit_bounds_the_tasks_running_at_once() {
    let group: Group<AppError> = Group::with_limit(&Context::background(), 3);
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    for i in 0..20u64 {
        let (r, p, f) = (running.clone(), peak.clone(), finished.clone());
        group
            .spawn(async move {
                let now = r.fetch_add(1, SeqCst) + 1;
                p.fetch_max(now, SeqCst);
                sleep(Duration::from_millis(1 + i % 7)).await;
                r.fetch_sub(1, SeqCst);
                f.fetch_add(1, SeqCst);
                Ok(())
            })
            .await;
        assert!(running.load(SeqCst) <= 3);
    }
    group.wait().await.unwrap();
    assert_eq!(finished.load(SeqCst), 20);
    assert_eq!(peak.load(SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_holds_on_a_multi_threaded_runtime() {
    let group: Group<AppError> = Group::with_limit(&Context::background(), 2);
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    for _ in 0..50 {
        let (running, peak) = (running.clone(), peak.clone());
        group
            .spawn(async move {
                peak.fetch_max(running.fetch_add(1, SeqCst) + 1, SeqCst);
                tokio::task::yield_now().await;
                std::thread::sleep(Duration::from_micros(200));
                running.fetch_sub(1, SeqCst);
                Ok(())
            })
            .await;
    }
    group.wait().await.unwrap();
    let peak = peak.load(SeqCst);
    assert!((1..=2).contains(&peak), "peak {peak}");
}

#[tokio::test(start_paused = true)]
async fn spawn_waits_for_a_free_slot() {
    let group: Group<AppError> = Group::with_limit(&Context::background(), 1);
    let (release, released) = oneshot::channel::<()>();
    group
        .spawn(async move {
            let _ = released.await;
            Ok(())
        })
        .await;
    // The only slot is taken: the second spawn must wait until the first task ends.
    {
        let second = group.spawn(async { Ok(()) });
        tokio::pin!(second);
        assert!(
            timeout(Duration::from_secs(5), &mut second).await.is_err(),
            "spawn returned while the group was full"
        );
        release.send(()).unwrap();
        timeout(Duration::from_secs(5), second)
            .await
            .expect("a slot freed");
    }
    group.wait().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn try_spawn_declines_when_full_and_accepts_once_a_slot_frees() {
    let group: Group<AppError> = Group::with_limit(&Context::background(), 2);
    let (release, released) = tokio::sync::watch::channel(false);
    for _ in 0..2 {
        let mut released = released.clone();
        assert!(group.try_spawn(async move {
            let _ = released.wait_for(|r| *r).await;
            Ok(())
        }));
    }
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    assert!(!group.try_spawn(async move {
        r.fetch_add(1, SeqCst);
        Ok(())
    }));
    release.send(true).unwrap();
    // Both tasks end; their slots free.
    let r = ran.clone();
    let accepted = timeout(Duration::from_secs(5), async {
        loop {
            let r = r.clone();
            if group.try_spawn(async move {
                r.fetch_add(1, SeqCst);
                Ok(())
            }) {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(accepted.is_ok(), "try_spawn never found a free slot");
    group.wait().await.unwrap();
    // The declined future was dropped unpolled; the accepted one ran.
    assert_eq!(ran.load(SeqCst), 1);
}

#[tokio::test]
async fn a_limit_of_zero_means_no_limit() {
    let group: Group<AppError> = Group::with_limit(&Context::background(), 0);
    let (release, released) = tokio::sync::watch::channel(false);
    for _ in 0..10 {
        let mut released = released.clone();
        assert!(group.try_spawn(async move {
            let _ = released.wait_for(|r| *r).await;
            Ok(())
        }));
    }
    release.send(true).unwrap();
    group.wait().await.unwrap();
    // So does a limit tokio's semaphore could not hold.
    let huge: Group<AppError> = Group::with_limit(&Context::background(), usize::MAX);
    assert!(huge.try_spawn(async { Ok(()) }));
    huge.wait().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_panic_cancels_siblings_and_resumes_in_wait_after_they_finished() {
    let group: Group<AppError> = Group::new(&Context::background());
    let ctx = group.context().clone();
    let (tx, mut rx) = mpsc::unbounded_channel();
    for name in ["a", "b"] {
        let tx = tx.clone();
        group
            .spawn(async move {
                Context::current().done().await;
                // Takes a while to wind down: wait must still wait for it.
                sleep(Duration::from_millis(100)).await;
                tx.send(name).unwrap();
                Ok(())
            })
            .await;
    }
    group
        .spawn(async {
            sleep(Duration::from_millis(10)).await;
            panic!("boom at step {}", 3);
        })
        .await;
    let payload = resumed_panic(group).await;
    assert_eq!(panic_text(&*payload), "boom at step 3");
    // Both siblings saw the cancellation and finished before the panic resumed.
    let mut finished = vec![rx.try_recv().unwrap(), rx.try_recv().unwrap()];
    finished.sort();
    assert_eq!(finished, ["a", "b"]);
    let cause = ctx.cause().unwrap();
    assert_eq!(cause.to_string(), "task panicked: boom at step 3");
    assert!(cause.downcast_ref::<TaskFailed>().unwrap().panicked());
}

#[tokio::test(start_paused = true)]
async fn a_panic_is_not_swallowed_by_an_earlier_error() {
    let group = Group::new(&Context::background());
    group.spawn(async { Err(AppError::Failed("first")) }).await;
    group
        .spawn(async {
            sleep(Duration::from_millis(10)).await;
            panic!("later panic");
        })
        .await;
    let payload = resumed_panic(group).await;
    assert_eq!(panic_text(&*payload), "later panic");
}

#[tokio::test(start_paused = true)]
async fn a_panic_of_a_task_reaped_by_spawn_still_resumes_in_wait() {
    let group: Group<AppError> = Group::new(&Context::background());
    group.spawn(async { panic!("early panic") }).await;
    tokio::task::yield_now().await;
    sleep(Duration::from_millis(1)).await;
    // This spawn reaps the finished, panicked task.
    group.spawn(async { Ok(()) }).await;
    let payload = resumed_panic(group).await;
    assert_eq!(panic_text(&*payload), "early panic");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_group_cancels_and_aborts_every_task() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let group: Group<AppError> = Group::new(&Context::background());
    let ctx = group.context().clone();
    for name in ["a", "b", "c"] {
        let flag = DropFlag(name, tx.clone());
        group
            .spawn(async move {
                let _flag = flag;
                // Ignores cancellation: only an abort stops it.
                sleep(Duration::from_secs(3600)).await;
                Ok(())
            })
            .await;
    }
    tokio::task::yield_now().await;
    drop(group);
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(dropped(&mut rx, 3).await, ["a", "b", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_group_aborts_tasks_on_a_multi_threaded_runtime() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let group: Group<AppError> = Group::with_limit(&Context::background(), 8);
    let started = Arc::new(tokio::sync::Barrier::new(9));
    for name in ["a", "b", "c", "d", "e", "f", "g", "h"] {
        let flag = DropFlag(name, tx.clone());
        let started = started.clone();
        group
            .spawn(async move {
                let _flag = flag;
                started.wait().await;
                std::future::pending::<()>().await;
                Ok(())
            })
            .await;
    }
    started.wait().await;
    drop(group);
    assert_eq!(dropped(&mut rx, 8).await.len(), 8);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_wait_future_aborts_the_remaining_tasks() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let group: Group<AppError> = Group::new(&Context::background());
    let ctx = group.context().clone();
    let flag = DropFlag("stuck", tx.clone());
    group
        .spawn(async move {
            let _flag = flag;
            std::future::pending::<()>().await;
            Ok(())
        })
        .await;
    assert!(timeout(Duration::from_secs(1), group.wait()).await.is_err());
    assert!(ctx.is_done());
    assert_eq!(dropped(&mut rx, 1).await, ["stuck"]);
}

#[tokio::test]
async fn an_empty_group_waits_for_nothing_and_still_cancels_its_context() {
    let group: Group<AppError> = Group::new(&Context::background());
    let ctx = group.context().clone();
    assert_eq!(group.wait().await, Ok(()));
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

#[tokio::test(start_paused = true)]
async fn a_full_group_that_failed_keeps_admitting_tasks_so_a_producer_never_hangs() {
    let group: Group<AppError> = Group::with_limit(&Context::background(), 1);
    let started = Arc::new(AtomicUsize::new(0));
    let mut fed = 0;
    for i in 0..100 {
        if group.context().is_done() {
            break; // the producer stops feeding a failed group
        }
        let started = started.clone();
        // The slot is held until each task ends: the tasks after the failure end at once.
        timeout(
            Duration::from_secs(30),
            group.spawn(async move {
                started.fetch_add(1, SeqCst);
                if i == 3 {
                    return Err(AppError::Failed("item 3"));
                }
                Context::current()
                    .run(sleep(Duration::from_millis(10)))
                    .await?;
                Ok(())
            }),
        )
        .await
        .expect("spawn found a slot");
        fed += 1;
        tokio::task::yield_now().await;
    }
    assert_eq!(group.wait().await, Err(AppError::Failed("item 3")));
    assert!(fed <= 5, "fed {fed} tasks");
    assert_eq!(started.load(SeqCst), fed);
}

#[tokio::test(start_paused = true)]
async fn finished_tasks_are_reaped_as_new_ones_spawn() {
    let group: Group<AppError> = Group::new(&Context::background());
    for _ in 0..1000 {
        group.spawn(async { Ok(()) }).await;
        tokio::task::yield_now().await;
    }
    // A long-lived group does not hold every finished task until `wait`.
    let debug = format!("{group:?}");
    let tasks: usize = debug
        .split("tasks: ")
        .nth(1)
        .and_then(|s| s.trim_end_matches(" }").parse().ok())
        .unwrap_or_else(|| panic!("no task count in {debug}"));
    assert!(tasks <= 2, "{debug}");
    group.wait().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn errors_that_are_only_display_work_too() {
    // A non-`Sync` error without `From<ctxkit::Error>`.
    struct Text(std::cell::Cell<u8>);
    impl fmt::Display for Text {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "text {}", self.0.get())
        }
    }
    let group = Group::new(&Context::background());
    group
        .spawn(async { Err(Text(std::cell::Cell::new(7))) })
        .await;
    let ctx = group.context().clone();
    let err = group.wait().await.expect_err("an error");
    assert_eq!(err.to_string(), "text 7");
    assert_eq!(ctx.cause().unwrap().to_string(), "text 7");
}

#[test]
fn group_and_its_futures_are_send_and_sync() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let group: Group<AppError> = Group::new(&Context::background());
    send_sync(&group);
    send(&group.spawn(async { Ok(()) }));
    send(&group.wait());
}
