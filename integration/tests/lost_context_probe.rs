//! Where the implicit context goes, and where it is lost: every path that starts work either
//! keeps the request's context or reports the lookup that found none. None is silent.
//!
//! Run with `--nocapture` to see the table.

use std::sync::{Arc, Mutex};

use ctxkit::missing::{self, MissingContext};
use ctxkit::{Context, ContextKey, TaskSet, cancellable};
use futures_util::{StreamExt, stream};

/// What one path did with the context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// The code on that path found the request's context.
    Kept,
    /// It found none, and the lookup was reported (at the probe's own line).
    Warned,
    /// It found none and nothing said so: what must never happen.
    Silent,
}

/// Marks the request's context and every context derived from it.
struct Request;
impl ContextKey for Request {
    type Value = u32;
}

/// The lines at which a lookup was reported.
type Reports = Arc<Mutex<Vec<(String, u32)>>>;

fn classify(reports: &Reports, seen: (u32, Context)) -> Outcome {
    let (line, ctx) = seen;
    if ctx.value::<Request>() == Some(&7) {
        return Outcome::Kept;
    }
    let reported = reports
        .lock()
        .unwrap()
        .iter()
        .any(|(file, l)| file.ends_with("lost_context_probe.rs") && *l == line);
    if reported {
        Outcome::Warned
    } else {
        Outcome::Silent
    }
}

#[cancellable]
async fn implicit_in_a_cancellable_fn() -> Result<Context, ctxkit::Error> {
    Ok(Context::try_current().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_keeps_the_context_or_warns() {
    let reports: Reports = Arc::default();
    let sink = reports.clone();
    missing::set_hook(move |m: &MissingContext| {
        sink.lock()
            .unwrap()
            .push((m.location().file().to_owned(), m.location().line()));
    });

    let (request, _cancel) = Context::background().with_value::<Request>(7).with_cancel();
    let rows: Vec<(&str, (u32, Context))> = request
        .scope(async move {
            let mut rows = Vec::new();
            rows.push((
                "tokio::spawn",
                tokio::spawn(async { (line!(), Context::current()) })
                    .await
                    .unwrap(),
            ));
            let mut set = tokio::task::JoinSet::new();
            set.spawn(async { (line!(), Context::current()) });
            rows.push(("JoinSet::spawn", set.join_next().await.unwrap().unwrap()));
            rows.push((
                "tokio::task::spawn_blocking",
                tokio::task::spawn_blocking(|| (line!(), Context::current()))
                    .await
                    .unwrap(),
            ));
            rows.push((
                "std::thread::spawn",
                std::thread::spawn(|| (line!(), Context::current()))
                    .join()
                    .unwrap(),
            ));
            rows.push((
                "tokio::task::block_in_place",
                tokio::task::block_in_place(|| (line!(), Context::current())),
            ));
            let buffered: Vec<(u32, Context)> = stream::iter(0..3)
                .map(|_| async { (line!(), Context::current()) })
                .buffer_unordered(2)
                .collect()
                .await;
            rows.push(("buffer_unordered", buffered[0].clone()));
            // A `#[cancellable]` fn started where the context does not follow: its implicit
            // context is reported at the fn's name.
            let lost_fn = tokio::spawn(implicit_in_a_cancellable_fn())
                .await
                .unwrap()
                .unwrap();
            rows.push((
                "#[cancellable] fn under tokio::spawn",
                (line_of_implicit_fn(), lost_fn),
            ));

            rows.push((
                "ctxkit::spawn",
                ctxkit::spawn(async { (line!(), Context::current()) })
                    .await
                    .unwrap(),
            ));
            let mut tasks = TaskSet::new(&Context::current());
            tasks.spawn(async { (line!(), Context::current()) });
            // A task runs under its own child of the set's context, under the request's.
            rows.push((
                "ctxkit::TaskSet::spawn",
                tasks.join_next().await.unwrap().unwrap(),
            ));
            rows.push((
                "ctxkit::spawn_blocking",
                ctxkit::spawn_blocking(|| (line!(), Context::current()))
                    .await
                    .unwrap(),
            ));
            rows.push((
                "ctxkit::thread::spawn",
                ctxkit::thread::spawn(|| (line!(), Context::current()))
                    .join()
                    .unwrap(),
            ));
            rows
        })
        .await;

    let table: Vec<(&str, Outcome)> = rows
        .into_iter()
        .map(|(path, seen)| (path, classify(&reports, seen)))
        .collect();
    println!("| path | context |\n|---|---|");
    for (path, outcome) in &table {
        println!("| {path} | {outcome:?} |");
    }
    assert!(
        table.iter().all(|(_, o)| *o != Outcome::Silent),
        "a path lost the context silently: {table:?}"
    );
    use Outcome::{Kept, Warned};
    assert_eq!(
        table,
        [
            ("tokio::spawn", Warned),
            ("JoinSet::spawn", Warned),
            ("tokio::task::spawn_blocking", Warned),
            ("std::thread::spawn", Warned),
            ("tokio::task::block_in_place", Kept),
            ("buffer_unordered", Kept),
            ("#[cancellable] fn under tokio::spawn", Warned),
            ("ctxkit::spawn", Kept),
            ("ctxkit::TaskSet::spawn", Kept),
            ("ctxkit::spawn_blocking", Kept),
            ("ctxkit::thread::spawn", Kept),
        ]
    );
}

/// The line the macro's implicit lookup reports for `implicit_in_a_cancellable_fn`: its
/// `#[cancellable]` attribute, on the line above the fn.
fn line_of_implicit_fn() -> u32 {
    let src = include_str!("lost_context_probe.rs");
    // The macro reports a lost implicit context at the fn's name.
    1 + src
        .lines()
        .position(|l| l.starts_with("async fn implicit_in_a_cancellable_fn"))
        .unwrap() as u32
}
