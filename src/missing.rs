//! Losing the current context is never silent.
//!
//! The implicit context follows a future through [`Context::scope`](crate::Context::scope), tasks
//! through [`ctxkit::spawn`](crate::spawn), [`TaskSet`](crate::TaskSet) and
//! [`Group`](crate::Group), blocking code through [`ctxkit::spawn_blocking`](crate::spawn_blocking),
//! threads through [`ctxkit::thread::spawn`](crate::thread::spawn), and sync code through
//! [`Context::enter`](crate::Context::enter). It cannot follow a task or thread started any
//! other way: `tokio::spawn`, `JoinSet::spawn`, `tokio::task::spawn_blocking` and
//! `std::thread::spawn` start from nothing, and so do the tasks a library such as hyper or tonic
//! spawns. There, [`Context::current`](crate::Context::current) and the implicit context of a
//! `#[cancellable]` fn find no context and fall back to
//! [`Context::background`](crate::Context::background), which is never cancelled: work that
//! should have stopped with its request runs on.
//!
//! So such a lookup is reported, once per call site, as a [`MissingContext`]:
//! - in debug builds, by default, as a warning on standard error that names the call site;
//! - with the `tracing` feature, as a `WARN` event of target `ctxkit::missing` instead, in any
//!   build, when a subscriber takes it;
//! - to the hook given to [`set_hook`] instead, in any build (a test can collect them; a
//!   service can log them);
//! - as a panic, every time, in [`strict`] mode (or with the environment variable
//!   `CTXKIT_STRICT=1`), for test suites that want every such path found.
//!
//! Only a process that has made a context current at least once reports anything: a program that
//! never uses the implicit context has nothing to lose. [`Context::try_current`](crate::Context::try_current)
//! is never reported: it is the way to ask where no context may be expected.
//!
//! # Why tasks spawned elsewhere cannot inherit the context
//!
//! tokio's task-locals are not inherited by spawned tasks (tokio issue #2396, open since 2020),
//! and tokio offers no stable hook at spawn time: `runtime::Builder::on_task_spawn` and
//! `on_before_task_poll` exist only under `--cfg tokio_unstable`, and even there they see a
//! task's id and spawn location, never its future, so they cannot wrap it in a scope. A task
//! that hyper, tonic or user code starts with `tokio::spawn` therefore starts without a
//! context; what ctxkit can do is make that visible, which this module does.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use ctxkit::Context;
//! use ctxkit::missing::{self, MissingContext};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let sink = seen.clone();
//! missing::set_hook(move |m: &MissingContext| sink.lock().unwrap().push(m.location().line()));
//!
//! let (ctx, _cancel) = Context::background().with_cancel();
//! let line = ctx
//!     .scope(async {
//!         // tokio::spawn does not carry the context: the lookup inside is reported.
//!         tokio::spawn(async { (line!(), Context::current()).0 }).await.unwrap()
//!     })
//!     .await;
//! assert_eq!(*seen.lock().unwrap(), [line]);
//! # }
//! ```

use std::collections::HashSet;
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// Set once any context was made current in this process.
static SCOPE_USED: AtomicBool = AtomicBool::new(false);
/// 0: not set, follow `CTXKIT_STRICT`; 1: off; 2: on.
static STRICT: AtomicU8 = AtomicU8::new(0);
/// Whether a hook is set (so release builds know there is someone to tell).
static HOOKED: AtomicBool = AtomicBool::new(false);

type Hook = Arc<dyn Fn(&MissingContext) + Send + Sync>;
static HOOK: RwLock<Option<Hook>> = RwLock::new(None);
static REPORTED: Mutex<Option<HashSet<&'static Location<'static>>>> = Mutex::new(None);

/// A lookup of the current context that found none: where, in which fn, on which thread.
/// Its `Display` says what happened and what to do.
#[derive(Clone, Debug)]
pub struct MissingContext {
    location: &'static Location<'static>,
    function: Option<&'static str>,
    thread: Option<String>,
    in_task: bool,
}

impl MissingContext {
    /// The call site of the lookup: the `Context::current()` call, or the `#[cancellable]` fn.
    pub fn location(&self) -> &'static Location<'static> {
        self.location
    }

    /// The `#[cancellable]` fn whose implicit context was looked up, if it was one.
    pub fn function(&self) -> Option<&'static str> {
        self.function
    }

    /// The name of the thread the lookup ran on, if it has one.
    pub fn thread(&self) -> Option<&str> {
        self.thread.as_deref()
    }

    /// Whether the lookup ran inside a tokio task (including `spawn_blocking` closures).
    pub fn in_task(&self) -> bool {
        self.in_task
    }
}

impl fmt::Display for MissingContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no current context at {}", self.location)?;
        if let Some(function) = self.function {
            write!(f, " (in `{function}`)")?;
        }
        if let Some(thread) = &self.thread {
            write!(f, " on thread `{thread}`")?;
        }
        f.write_str(
            ": using Context::background(), which is never cancelled. The context does not follow \
             tasks and threads started without ctxkit (tokio::spawn, JoinSet::spawn, \
             spawn_blocking, std::thread::spawn): start them with ctxkit::spawn, ctxkit::TaskSet, \
             ctxkit::spawn_blocking or ctxkit::thread::spawn, or make the context current with \
             ctx.scope(fut) / ctx.enter(); where no context is expected, call \
             Context::try_current()",
        )
    }
}

impl std::error::Error for MissingContext {}

/// Sends every [`MissingContext`] (the first at each call site) to `hook` instead of the default
/// warning, in debug and release builds alike. Replaces an earlier hook.
///
/// ```
/// ctxkit::missing::set_hook(|m| eprintln!("lost the request's context: {m}"));
/// ```
pub fn set_hook(hook: impl Fn(&MissingContext) + Send + Sync + 'static) {
    *HOOK.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(hook));
    HOOKED.store(true, Relaxed);
}

/// Turns strict mode on or off: on, every lookup that finds no current context (in a process
/// that has made one current before) panics with the [`MissingContext`] text. Meant for test
/// suites. Until this is called, strict mode follows the environment variable `CTXKIT_STRICT`
/// (`1` turns it on).
///
/// ```
/// use ctxkit::Context;
///
/// ctxkit::missing::strict(true);
/// Context::background().sync_scope(|| ()); // this process uses the implicit context
/// let lost = std::thread::spawn(|| Context::current()).join();
/// assert!(lost.is_err()); // the thread panicked: std::thread::spawn lost the context
/// ctxkit::missing::strict(false);
/// ```
pub fn strict(on: bool) {
    STRICT.store(if on { 2 } else { 1 }, Relaxed);
}

fn is_strict() -> bool {
    match STRICT.load(Relaxed) {
        0 => std::env::var_os("CTXKIT_STRICT").is_some_and(|v| v == "1"),
        s => s == 2,
    }
}

/// Called whenever a context is made current.
#[inline]
pub(crate) fn note_scope_used() {
    if !SCOPE_USED.load(Relaxed) {
        SCOPE_USED.store(true, Relaxed);
    }
}

/// A lookup at `at` found no current context.
#[cold]
pub(crate) fn report(at: &'static Location<'static>, function: Option<&'static str>) {
    if !SCOPE_USED.load(Relaxed) {
        return;
    }
    let strict = is_strict();
    if !strict && !HOOKED.load(Relaxed) && !cfg!(debug_assertions) && !tracing_listens() {
        return;
    }
    let missing = MissingContext {
        location: at,
        function,
        thread: std::thread::current().name().map(str::to_owned),
        in_task: tokio::task::try_id().is_some(),
    };
    if strict {
        panic!("ctxkit strict mode: {missing}");
    }
    let first = REPORTED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(HashSet::new)
        .insert(at);
    if first {
        emit(&missing);
    }
}

/// Whether a `tracing` subscriber takes the warning event (feature `tracing`): then release
/// builds report too.
fn tracing_listens() -> bool {
    #[cfg(feature = "tracing")]
    return ::tracing::enabled!(target: "ctxkit::missing", ::tracing::Level::WARN);
    #[cfg(not(feature = "tracing"))]
    false
}

/// Where a report goes: the hook if one is set, else (feature `tracing`) a `WARN` event when a
/// subscriber takes it, else standard error in debug builds.
fn emit(missing: &MissingContext) {
    let hook = HOOK.read().unwrap_or_else(PoisonError::into_inner).clone();
    if let Some(hook) = hook {
        return hook(missing);
    }
    #[cfg(feature = "tracing")]
    if crate::tracing::missing_context(missing) {
        return;
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: ctxkit: {missing} (reported once per call site)");
    }
}
