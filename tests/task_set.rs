//! `TaskSet`: JoinSet semantics under a context.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use ctxkit::{Context, ContextKey, Error, TaskSet};

struct Tenant;
impl ContextKey for Tenant {
    type Value = &'static str;
}

/// Sets its flag when dropped: shows that a task's future was dropped (aborted or finished).
struct Dropped(Arc<AtomicBool>);
impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn join_next_returns_each_tasks_value_as_it_finishes() {
    let mut set = TaskSet::new(&Context::background());
    for (n, ms) in [(1, 30), (2, 10), (3, 20)] {
        set.spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            n
        });
    }
    let mut order = Vec::new();
    while let Some(done) = set.join_next().await {
        order.push(done.unwrap());
    }
    assert_eq!(order, [2, 3, 1]);
    assert!(set.is_empty());
}

#[tokio::test]
async fn every_task_runs_under_its_own_child_of_the_sets_context_with_it_current() {
    let parent = Context::background().with_value::<Tenant>("acme");
    let mut set = TaskSet::new(&parent);
    for _ in 0..2 {
        set.spawn(async { Context::current() });
    }
    let a = set.join_next().await.unwrap().unwrap();
    let b = set.join_next().await.unwrap().unwrap();
    assert!(!a.ptr_eq(&b), "each task has its own context");
    assert!(!a.ptr_eq(set.context()));
    assert_eq!(a.value::<Tenant>(), Some(&"acme"));
    // A task's context ends with the task.
    assert_eq!(a.err(), Some(Error::Canceled));
    assert!(!set.context().is_done());
}

#[tokio::test]
async fn cancel_reaches_every_task_through_its_context() {
    let mut set = TaskSet::new(&Context::background());
    for _ in 0..3 {
        set.spawn(async { Context::current().done().await });
    }
    set.cancel();
    let joined = tokio::time::timeout(Duration::from_secs(30), async {
        let mut n = 0;
        while let Some(done) = set.join_next().await {
            done.unwrap();
            n += 1;
        }
        n
    })
    .await
    .unwrap();
    assert_eq!(joined, 3);
}

#[tokio::test]
async fn a_cancellable_fn_in_a_task_stops_when_the_parent_is_cancelled() {
    #[ctxkit::cancellable]
    async fn forever() -> Result<(), Error> {
        std::future::pending::<()>().await;
        Ok(())
    }
    let (parent, cancel) = Context::background().with_cancel();
    let mut set = TaskSet::new(&parent);
    set.spawn(forever());
    cancel.cancel();
    let out = set.join_next().await.unwrap().unwrap();
    assert_eq!(out, Err(Error::Canceled));
}

#[tokio::test]
async fn dropping_the_set_cancels_its_context_and_aborts_its_tasks() {
    let dropped = Arc::new(AtomicBool::new(false));
    let guard = Dropped(dropped.clone());
    let mut set = TaskSet::new(&Context::background());
    set.spawn(async move {
        let _guard = guard;
        std::future::pending::<()>().await
    });
    let ctx = set.context().clone();
    tokio::task::yield_now().await;
    drop(set);
    assert!(ctx.is_done());
    // The abort drops the task's future when the runtime next gets to it.
    for _ in 0..100 {
        if dropped.load(SeqCst) {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(dropped.load(SeqCst));
}

#[tokio::test]
async fn an_aborted_task_reports_cancelled_and_its_context_is_cancelled() {
    let mut set = TaskSet::new(&Context::background());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let handle = set.spawn(async move {
        tx.send(Context::current()).unwrap();
        std::future::pending::<()>().await
    });
    let task_ctx = rx.await.unwrap();
    handle.abort();
    let err = set.join_next().await.unwrap().unwrap_err();
    assert!(err.is_cancelled());
    assert!(task_ctx.is_done());
}

#[tokio::test]
async fn a_panicking_task_is_a_join_error_for_join_next_and_a_panic_for_join_all() {
    let mut set = TaskSet::new(&Context::background());
    set.spawn(async { panic!("boom") });
    let err = set.join_next().await.unwrap().unwrap_err();
    assert!(err.is_panic());

    let mut set = TaskSet::new(&Context::background());
    set.spawn(async { panic!("boom again") });
    let all = tokio::spawn(set.join_all()).await.unwrap_err();
    assert_eq!(all.into_panic().downcast_ref::<&str>(), Some(&"boom again"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_blocking_runs_under_a_child_context_too() {
    let parent = Context::background().with_value::<Tenant>("blocking");
    let mut set = TaskSet::new(&parent);
    set.spawn_blocking(|| Context::current().value::<Tenant>().copied());
    assert_eq!(set.join_next().await.unwrap().unwrap(), Some("blocking"));
}
