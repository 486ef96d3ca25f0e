//! The live request tree (`ctxkit::live`): what a snapshot lists, where suspended calls wait, and
//! that taking one neither blocks nor is blocked by the tree's own work.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ctxkit::live::{self, LiveContext, MAX_DEPTH};
use ctxkit::{Context, ContextKey, Error, cancellable};
use tokio::sync::Notify;

#[derive(ContextKey, Debug, Clone)]
#[context_key(debug)]
struct RequestId(#[allow(dead_code)] u64);

/// A key without `debug`: its value is shown as `..`.
struct Secret;
impl ContextKey for Secret {
    type Value = String;
}

fn only_child(c: &LiveContext) -> &LiveContext {
    assert_eq!(c.children.len(), 1, "{c:#?}");
    &c.children[0]
}

#[test]
fn a_snapshot_lists_the_live_cancellable_contexts_with_their_values_and_deadlines() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let (root, _root_cancel) = Context::background().with_cancel();
        let (req, _req_cancel) = root
            .with_value::<RequestId>(RequestId(7))
            .with_value::<Secret>("hunter2".into())
            .with_timeout(Duration::from_secs(30));
        let line = line!() - 1;
        let (inner, _inner_cancel) = req.with_cancel();
        let (other, other_cancel) = root.with_cancel();
        tokio::time::advance(Duration::from_secs(10)).await;

        let tree = live::snapshot(&root);
        assert_eq!(tree.contexts, 4);
        assert_eq!(tree.root.kind, "WithCancel");
        assert_eq!(tree.root.children.len(), 2);
        let r = &tree.root.children[0];
        assert_eq!(r.kind, "WithDeadline");
        let at = r.created_at.unwrap();
        assert_eq!((at.file(), at.line()), (file!(), line));
        // Tokio's (paused) clock: exactly 20 s left.
        assert_eq!(r.deadline_in, Some(Duration::from_secs(20)));
        let values: Vec<String> = r.values.iter().map(ToString::to_string).collect();
        assert_eq!(values, ["Secret = ..", "RequestId = RequestId(7)"]);
        let i = only_child(r);
        assert_eq!(i.kind, "WithCancel");
        assert!(i.values.is_empty());
        assert_eq!(i.deadline_in, Some(Duration::from_secs(20)), "inherited");
        assert_eq!(tree.root.children[1].deadline_in, None);

        // A cancelled context leaves the tree at once, with everything under it.
        other_cancel.cancel();
        drop(_req_cancel);
        let tree = live::snapshot(&root);
        assert_eq!(tree.contexts, 1, "{tree}");
        drop((inner, other));
    });
}

#[test]
fn ages_follow_the_clock() {
    let (root, _cancel) = Context::background().with_cancel();
    std::thread::sleep(Duration::from_millis(50));
    let (_child, _child_cancel) = root.with_cancel();
    let tree = live::snapshot(&root);
    let root_age = tree.root.age.unwrap();
    let child_age = tree.root.children[0].age.unwrap();
    // The coarse clock ticks every few milliseconds (or later, on a saturated machine): only the
    // order and the sleep hold.
    assert!(root_age >= Duration::from_millis(40), "{root_age:?}");
    assert!(child_age <= root_age, "{child_age:?} vs {root_age:?}");
}

#[test]
fn a_value_root_lists_only_what_is_under_it() {
    let (top, _cancel) = Context::background().with_cancel();
    let root = top.with_value::<RequestId>(RequestId(1));
    let (_mine, _c1) = root.with_cancel();
    let (_sibling, _c2) = top.with_cancel();
    let tree = live::snapshot(&root);
    assert_eq!(tree.root.kind, "WithValue");
    assert_eq!(tree.contexts, 2, "{tree}");
    assert_eq!(tree.root.values[0].value.as_deref(), Some("RequestId(1)"));
    assert!(tree.root.children[0].values.is_empty());
}

#[cancellable]
async fn outer(ctx: &Context, gate: Arc<Notify>) -> Result<(), Error> {
    let tagged = ctx.with_value::<RequestId>(RequestId(42));
    inner(&tagged, gate).await?; // OUTER_AWAIT
    Ok(())
}

#[cancellable]
async fn inner(ctx: &Context, gate: Arc<Notify>) -> Result<(), Error> {
    gate.notified().await; // INNER_AWAIT
    tokio::task::yield_now().await;
    Ok(())
}

/// The line of the first line of this file containing `marker`.
fn line_of(marker: &str) -> u32 {
    let src = include_str!("live.rs");
    let i = src
        .lines()
        .position(|l| l.contains(marker) && !l.contains("line_of"))
        .unwrap();
    u32::try_from(i).unwrap() + 1
}

#[tokio::test]
async fn a_suspended_call_shows_the_await_it_waits_at() {
    let (root, _cancel) = Context::background().with_cancel();
    let (req, _req_cancel) = root.with_cancel();
    let gate = Arc::new(Notify::new());
    let task = tokio::spawn({
        let gate = gate.clone();
        async move { outer(&req, gate).await }
    });
    // Wait until both calls are suspended (no timing: poll the tree).
    let tree = loop {
        tokio::task::yield_now().await;
        let tree = live::snapshot(&root);
        if tree.calls == 2 {
            break tree;
        }
    };
    let req = only_child(&tree.root);
    assert_eq!(req.calls.len(), 2, "{tree}");
    let by_name = |name: &str| req.calls.iter().find(|c| c.name == name).unwrap();
    let (o, i) = (by_name("live::outer"), by_name("live::inner"));
    assert_eq!(o.awaiting.unwrap().line(), line_of("// OUTER_AWAIT"));
    assert_eq!(o.awaiting.unwrap().file(), file!());
    assert_eq!(i.awaiting.unwrap().line(), line_of("// INNER_AWAIT"));
    // Where the fn is: its name's line.
    assert_eq!(i.defined_at.line(), line_of("async fn inner("));
    assert_eq!(i.defined_at.file(), file!());
    // `outer`'s own value context is shown with the call that runs under it.
    assert!(o.values.is_empty());
    assert_eq!(i.values[0].to_string(), "RequestId = RequestId(42)");
    let text = tree.to_string();
    assert!(text.contains("↳ live::inner (tests/live.rs:"), "{text}");
    assert!(
        text.contains(&format!(
            "awaiting tests/live.rs:{}:",
            line_of("// INNER_AWAIT")
        )),
        "{text}"
    );

    // Once the calls end, they leave the tree.
    gate.notify_one();
    task.await.unwrap().unwrap();
    assert_eq!(live::snapshot(&root).calls, 0);
}

#[tokio::test]
async fn a_cancelled_call_leaves_the_tree() {
    let (root, cancel) = Context::background().with_cancel();
    let gate = Arc::new(Notify::new());
    let task = tokio::spawn({
        let (root, gate) = (root.clone(), gate.clone());
        async move { inner(&root, gate).await }
    });
    while live::snapshot(&root).calls == 0 {
        tokio::task::yield_now().await;
    }
    cancel.cancel();
    assert_eq!(task.await.unwrap(), Err(Error::Canceled));
    assert_eq!(live::snapshot(&root).calls, 0);
}

#[tokio::test]
async fn a_background_root_lists_every_call() {
    let gate = Arc::new(Notify::new());
    let task = tokio::spawn({
        let gate = gate.clone();
        async move { inner(&Context::background(), gate).await }
    });
    let tree = loop {
        tokio::task::yield_now().await;
        let tree = live::snapshot(&Context::background());
        if tree.calls >= 1 {
            break tree;
        }
    };
    assert_eq!(tree.root.kind, "Background");
    assert_eq!(tree.contexts, 1);
    assert!(tree.root.calls.iter().any(|c| c.name == "live::inner"));
    gate.notify_one();
    task.await.unwrap().unwrap();
}

#[test]
fn the_json_form_has_the_same_tree() {
    let (root, _cancel) = Context::background().with_cancel();
    let (_req, _req_cancel) = root
        .with_value::<RequestId>(RequestId(3))
        .with_timeout(Duration::from_secs(60));
    let json = live::snapshot(&root).to_json();
    assert_eq!(json["contexts"], 2);
    let req = &json["root"]["children"][0];
    assert_eq!(req["kind"], "WithDeadline");
    assert_eq!(req["values"][0]["key"], "RequestId");
    assert_eq!(req["values"][0]["value"], "RequestId(3)");
    assert!(req["deadline_in_ms"].as_f64().unwrap() <= 60_000.0);
    assert!(
        req["created_at"]
            .as_str()
            .unwrap()
            .starts_with("tests/live.rs:")
    );
    assert!(req["age_ms"].as_f64().is_some());
    assert!(json["root"]["deadline_in_ms"].is_null());
}

#[test]
fn a_tree_deeper_than_the_limit_is_cut_and_counted() {
    let (root, _cancel) = Context::background().with_cancel();
    let mut handles = Vec::new();
    let mut ctx = root.clone();
    for _ in 0..MAX_DEPTH + 50 {
        let (child, cancel) = ctx.with_cancel();
        handles.push(cancel);
        ctx = child;
    }
    let tree = live::snapshot(&root);
    assert_eq!(tree.contexts, MAX_DEPTH + 1);
    let mut c = &tree.root;
    for _ in 0..MAX_DEPTH {
        c = only_child(c);
    }
    assert!(c.children.is_empty());
    assert_eq!(c.hidden, 1);
    assert!(tree.to_string().contains("(+1 deeper, not listed)"));
    let _ = tree.to_json();
}

/// A value whose `Debug` derives, cancels and snapshots the tree it is in: the snapshot holds no
/// lock while it formats values, so this neither deadlocks nor panics.
struct Reentrant(Context);

impl fmt::Debug for Reentrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (child, cancel) = self.0.with_cancel();
        let (_grandchild, _keep) = child.with_cancel();
        let inner = live::snapshot(&child);
        cancel.cancel();
        write!(f, "Reentrant({} contexts)", inner.contexts)
    }
}

struct ReentrantKey;
impl ContextKey for ReentrantKey {
    type Value = Reentrant;
    fn debug(value: &Reentrant) -> Option<&dyn fmt::Debug> {
        Some(value)
    }
}

#[test]
fn a_values_debug_may_use_the_tree_it_is_shown_in() {
    let (root, _cancel) = Context::background().with_cancel();
    let (_c, _cc) = root
        .with_value::<ReentrantKey>(Reentrant(root.clone()))
        .with_cancel();
    let tree = live::snapshot(&root);
    let v = &tree.root.children[0].values[0];
    assert_eq!(v.value.as_deref(), Some("Reentrant(2 contexts)"));
}

/// Snapshots taken in a loop while other threads make, cancel and drop contexts under the same
/// root: every snapshot is a consistent tree and no thread waits for another for long.
#[test]
fn snapshots_race_creation_and_cancellation() {
    let (root, _cancel) = Context::background().with_cancel();
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (root, stop, made) = (root.clone(), stop.clone(), made.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    made.fetch_add(1, Ordering::Relaxed);
                    let (a, ca) = root.with_cancel();
                    let (_b, cb) = a.with_value::<RequestId>(RequestId(n)).with_cancel();
                    if n.is_multiple_of(2) {
                        ca.cancel();
                    }
                    drop(cb);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut snapshots = 0;
    // Until both sides did a fair amount of work at the same time, however the threads are
    // scheduled.
    while snapshots < 2000 || made.load(Ordering::Relaxed) < 20_000 {
        let tree = live::snapshot(&root);
        assert!(tree.contexts >= 1);
        for c in &tree.root.children {
            for g in &c.children {
                assert!(
                    g.values[0]
                        .value
                        .as_deref()
                        .unwrap()
                        .starts_with("RequestId(")
                );
            }
        }
        snapshots += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let made: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(made >= 20_000);
    assert_eq!(live::snapshot(&root).contexts, 1);
}
