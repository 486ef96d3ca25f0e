//! The live request tree (feature `live`): what every context under a root is doing right now.
//!
//! [`snapshot`] lists the live cancellable contexts under a root (a server's shutdown context,
//! say), each with its age, where it was made, its remaining deadline, the values set between it
//! and its parent (through their key's [`ContextKey::debug`]), its children, and the
//! `#[cancellable]` calls running under it, with the `file:line:column` of the `.await` a
//! suspended call waits at. No `tokio_unstable`, and no annotation at the await sites: the
//! `#[cancellable]` macro knows them.
//!
//! ```
//! use std::time::Duration;
//! use ctxkit::{Context, ContextKey, Error, cancellable};
//!
//! #[derive(ContextKey, Debug, Clone)]
//! #[context_key(debug)] // the tree shows the value's `Debug`
//! struct RequestId(u64);
//!
//! #[cancellable]
//! async fn load_user(ctx: &Context) -> Result<(), Error> {
//!     tokio::time::sleep(Duration::from_secs(60)).await; // the await the tree reports
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let (root, _shutdown) = Context::background().with_cancel();
//! let (request, _cancel) = root.with_value::<RequestId>(RequestId(7)).with_timeout(Duration::from_secs(30));
//! let task = tokio::spawn(async move { load_user(&request).await });
//! tokio::task::yield_now().await; // let it reach its await
//!
//! let tree = ctxkit::live::snapshot(&root);
//! assert_eq!(tree.contexts, 2);
//! let req = &tree.root.children[0];
//! assert_eq!(req.values[0].to_string(), "RequestId = RequestId(7)");
//! assert!(req.deadline_in.unwrap() <= Duration::from_secs(30));
//! let call = &req.calls[0];
//! assert!(call.name.ends_with("load_user"));
//! let site = call.awaiting.unwrap(); // the sleep's `.await`, as `file:line:column`
//! assert_eq!(site.line(), line!() - 19);
//! println!("{tree}"); // an indented tree; `tree.to_json()` for machines
//! # task.abort();
//! # }
//! ```
//!
//! # What it sees
//!
//! The tree is the cancellation tree: a cancellable context registers with its nearest
//! cancellable ancestor anyway, so the snapshot walks those registries and tracking a context
//! costs nothing beyond a timestamp and its place of creation. Hence:
//!
//! - the root should be cancellable (`with_cancel`, a deadline, [`Shutdown`](crate::Shutdown)'s
//!   context, a `ServerLayer`'s request context); under a root that cannot be cancelled
//!   (`background()`, `todo()`) no context is found, though calls are (every call, for
//!   `background()`);
//! - value contexts are shown as the values of the cancellable context (or call) below them;
//!   `without_cancel()` contexts are not followed (they leave the cancellation tree), but a call
//!   under one is listed under the nearest context above it;
//! - a cancelled context leaves the tree at once, as it leaves its parent's registry.
//!
//! A call is listed from its first suspension to its end; one that never waits never registers.
//!
//! # Cost
//!
//! With the feature off nothing of this exists: no field, no branch. With it on:
//!
//! - a cancellable context keeps when and where it was made (16 bytes). The time is a coarse
//!   one, refreshed every 5 ms by a thread the feature starts with the first context (reading
//!   even the coarse clock would cost a creation a sixth of its time): ages are precise to a
//!   few milliseconds;
//! - a `#[cancellable]` call that suspends registers once in a sharded global list, and leaves
//!   it when it ends; each await that suspends stores its line and column, and each poll of the
//!   call clears them.
//!
//! The measured figures are in `BENCHMARKS.md`.
//!
//! The snapshot locks each context's registry only while copying its children's pointers: it
//! never holds a lock while it formats values (foreign code) or while it drops what it copied,
//! and it never blocks a cancellation or a creation for longer than one such copy.

use std::collections::HashMap;
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use serde::ser::{Serialize, SerializeMap, Serializer};
use slab::Slab;

#[cfg(feature = "axum")]
mod serve;
#[cfg(feature = "axum")]
pub use serve::LiveTree;

use crate::sync::Arc;
use crate::tree::{CancelRef, Kind, Node};
use crate::{Context, ContextKey, Error, Instant};

/// When and where a cancellable context was made (kept in the node).
#[derive(Clone, Copy)]
pub(crate) struct Birth {
    at: coarsetime::Instant,
    here: &'static Location<'static>,
}

impl Birth {
    /// Now, at `here`.
    #[inline]
    pub(crate) fn now(here: &'static Location<'static>) -> Birth {
        Birth {
            at: coarse_now(),
            here,
        }
    }
}

/// How often the clock thread refreshes the coarse time contexts are stamped with.
const TICK_MS: u64 = 5;

/// Whether the clock thread runs.
static TICKING: AtomicBool = AtomicBool::new(false);

/// The time, to within [`TICK_MS`] and the coarse clock's own granularity: the value the clock
/// thread last stored (one load; reading even the coarse clock costs a context's creation a
/// sixth of its time).
#[inline]
fn coarse_now() -> coarsetime::Instant {
    if TICKING.load(Ordering::Relaxed) {
        coarsetime::Instant::recent()
    } else {
        start_clock()
    }
}

/// Starts the clock thread (once) and reads the clock; if no thread can be started, every stamp
/// reads the clock.
#[cold]
fn start_clock() -> coarsetime::Instant {
    static UPDATER: OnceLock<Option<coarsetime::Updater>> = OnceLock::new();
    let started = UPDATER.get_or_init(|| coarsetime::Updater::new(TICK_MS).start().ok());
    if started.is_some() {
        TICKING.store(true, Ordering::Relaxed);
        // The stamp the thread stored on starting: never after a later context's.
        coarsetime::Instant::recent()
    } else {
        coarsetime::Instant::now_without_cache_update()
    }
}

/// `now - then`, zero if the clock thread's last stamp is behind a fresh reading's.
fn since(now: coarsetime::Instant, then: coarsetime::Instant) -> Duration {
    if now > then {
        now.duration_since(then).into()
    } else {
        Duration::ZERO
    }
}

/// The request line (`GET /path`) that `ServerLayer` adds to each request's context, so the
/// tree says which request a context serves.
#[cfg(feature = "tower")]
pub(crate) struct Request;

#[cfg(feature = "tower")]
impl ContextKey for Request {
    type Value = RequestLine;
    fn debug(value: &RequestLine) -> Option<&dyn fmt::Debug> {
        Some(value)
    }
}

/// `GET /path`, shown without quotes.
#[cfg(feature = "tower")]
pub(crate) struct RequestLine(pub(crate) String);

#[cfg(feature = "tower")]
impl fmt::Debug for RequestLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The type-erased [`ContextKey::debug`] a value node keeps.
pub(crate) type DebugFn =
    for<'a> fn(&'a (dyn std::any::Any + Send + Sync)) -> Option<&'a dyn fmt::Debug>;

/// [`DebugFn`] for key `K`.
pub(crate) fn debug_of<K: ContextKey>(
    value: &(dyn std::any::Any + Send + Sync),
) -> Option<&dyn fmt::Debug> {
    value.downcast_ref::<K::Value>().and_then(K::debug)
}

// ---------------------------------------------------------------------------------------------
// Calls

/// A `#[cancellable]` call as the tree shows it; registered at its first suspension.
pub(crate) struct Call {
    name: &'static str,
    defined: &'static Location<'static>,
    born: coarsetime::Instant,
    /// The call's context.
    ctx: Option<Arc<Node>>,
    /// `line << 32 | column` of the await the call is suspended at; 0 while it runs.
    site: AtomicU64,
    /// The address of the file name of that await when it is not the fn's own constant (code
    /// another file's macro made), else 0; the name itself is in `other_file`.
    file: AtomicUsize,
    other_file: Mutex<Option<&'static str>>,
}

impl Call {
    /// The call's await is in `file` (at `addr`), not in the fn's own file constant.
    #[cold]
    fn other_file(&self, addr: usize, file: &'static str) {
        *self
            .other_file
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(file);
        self.file.store(addr, Ordering::Relaxed);
    }

    /// The file of the await the call is suspended at.
    fn await_file(&self) -> &'static str {
        if self.file.load(Ordering::Relaxed) == 0 {
            return self.defined.file();
        }
        self.other_file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unwrap_or(self.defined.file())
    }
}

/// What a call frame keeps for the tree: who it is, and its registration once it suspended.
pub(crate) struct CallSlot {
    name: &'static str,
    defined: &'static Location<'static>,
    born: coarsetime::Instant,
    registered: OnceLock<Registered>,
}

struct Registered {
    call: Arc<Call>,
    shard: usize,
    key: usize,
}

const SHARDS: usize = 16;

/// Every registered call, sharded by the thread that registered it.
static CALLS: [Mutex<Slab<Arc<Call>>>; SHARDS] = [const { Mutex::new(Slab::new()) }; SHARDS];

fn shard_of_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

fn lock_shard(i: usize) -> std::sync::MutexGuard<'static, Slab<Arc<Call>>> {
    CALLS[i].lock().unwrap_or_else(PoisonError::into_inner)
}

impl CallSlot {
    /// The slot of the call of fn `name`, defined at `defined`, starting now.
    #[inline]
    pub(crate) fn new(name: &'static str, defined: &'static Location<'static>) -> CallSlot {
        CallSlot {
            name,
            defined,
            born: coarse_now(),
            registered: OnceLock::new(),
        }
    }

    /// The call is suspended at the await at `site` (its future returned `Pending`).
    #[inline]
    pub(crate) fn suspended(&self, site: &'static Location<'static>, ctx: &Context) {
        let r = self.registered.get_or_init(|| self.register(ctx));
        let file = site.file();
        // Almost always the fn's own file, as the same constant: one comparison.
        let addr = if std::ptr::eq(file, self.defined.file()) {
            0
        } else {
            file.as_ptr() as usize
        };
        if addr != r.call.file.load(Ordering::Relaxed) {
            r.call.other_file(addr, file);
        }
        let packed = (u64::from(site.line()) << 32) | u64::from(site.column());
        r.call.site.store(packed, Ordering::Relaxed);
    }

    /// The call is polled: it runs until an await suspends it again.
    #[inline]
    pub(crate) fn resumed(&self) {
        if let Some(r) = self.registered.get() {
            r.call.site.store(0, Ordering::Relaxed);
        }
    }

    #[cold]
    fn register(&self, ctx: &Context) -> Registered {
        let call = Arc::new(Call {
            name: self.name,
            defined: self.defined,
            born: self.born,
            ctx: ctx.node.clone(),
            site: AtomicU64::new(0),
            file: AtomicUsize::new(0),
            other_file: Mutex::new(None),
        });
        let shard = shard_of_thread();
        let key = lock_shard(shard).insert(call.clone());
        Registered { call, shard, key }
    }
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        if let Some(r) = self.registered.take() {
            let removed = lock_shard(r.shard).try_remove(r.key);
            // Dropped outside the lock: it may hold the last reference to the call's context.
            drop(removed);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The snapshot

/// The live contexts under a root at one moment: see the [module docs](self).
///
/// `Display` writes it as an indented tree, one line per context, value and call;
/// [`Snapshot::to_json`] gives the same as JSON.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Snapshot {
    /// The root, with everything live under it.
    pub root: LiveContext,
    /// How many contexts the tree holds, the root included.
    pub contexts: usize,
    /// How many `#[cancellable]` calls it lists.
    pub calls: usize,
    /// How long taking the snapshot took.
    pub took: Duration,
}

/// One live context of a [`Snapshot`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LiveContext {
    /// `WithCancel`, `WithDeadline` (also for `with_timeout`), or for a root that cannot be
    /// cancelled `Background`, `TODO`, `WithValue` or `WithoutCancel`.
    pub kind: &'static str,
    /// Where it was made (the `with_*` call); `None` for a root that cannot be cancelled.
    pub created_at: Option<&'static Location<'static>>,
    /// How long ago it was made (coarse clock: a few milliseconds).
    pub age: Option<Duration>,
    /// The time left until its deadline (its own or an ancestor's; zero once passed), on tokio's
    /// clock.
    pub deadline_in: Option<Duration>,
    /// Set if it was cancelled while the snapshot was taken.
    pub err: Option<Error>,
    /// The values set between its parent in the tree and it (for the root: every value it sees),
    /// nearest first.
    pub values: Vec<LiveValue>,
    /// The suspended or running `#[cancellable]` calls whose context is this one or a value
    /// context between it and its children, oldest first.
    pub calls: Vec<LiveCall>,
    /// The live cancellable contexts made under it.
    pub children: Vec<LiveContext>,
    /// How many live children are left out because they are deeper than [`MAX_DEPTH`].
    pub hidden: usize,
}

/// How deep the snapshot goes below its root: the children of a context at this depth are
/// counted ([`LiveContext::hidden`]) but not listed.
pub const MAX_DEPTH: usize = 200;

/// A value of a [`LiveContext`] or a [`LiveCall`]. `Display`: `Key = value`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveValue {
    /// The key's type name, without its path.
    pub key: String,
    /// The value's `Debug`, when its key gives one ([`ContextKey::debug`]); `None` shows `..`.
    pub value: Option<String>,
}

/// A `#[cancellable]` call in a [`Snapshot`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LiveCall {
    /// The fn's path (`my_crate::handlers::load_user`).
    pub name: &'static str,
    /// Where the fn is (its name, in the source).
    pub defined_at: &'static Location<'static>,
    /// How long ago the call started (coarse clock).
    pub age: Duration,
    /// The await it is suspended at; `None` while it runs (on another thread, right now).
    pub awaiting: Option<AwaitSite>,
    /// The values set between the context it is listed under and its own, nearest first.
    pub values: Vec<LiveValue>,
}

/// Where a suspended call waits: the `.await`'s place in the source. `Display`:
/// `file:line:column`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwaitSite {
    file: &'static str,
    line: u32,
    column: u32,
}

impl AwaitSite {
    /// The source file.
    pub fn file(&self) -> &'static str {
        self.file
    }

    /// The line of the `.await`.
    pub fn line(&self) -> u32 {
        self.line
    }

    /// The column of the `.await`.
    pub fn column(&self) -> u32 {
        self.column
    }
}

impl fmt::Display for AwaitSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

impl fmt::Display for LiveValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{} = {v}", self.key),
            None => write!(f, "{} = ..", self.key),
        }
    }
}

/// A node found under the root, before it is formatted.
struct Found {
    node: Option<Arc<Node>>,
    /// Its values' nodes, nearest first.
    values: Vec<Arc<Node>>,
    calls: Vec<(Arc<Call>, Vec<Arc<Node>>)>,
    children: Vec<usize>,
    depth: usize,
    hidden: usize,
}

/// The address of a node, as the key of the found nodes' index.
fn addr(node: &Arc<Node>) -> usize {
    Arc::as_ptr(node) as usize
}

/// Takes a snapshot of the live contexts under `root`. See the [module docs](self) for what it
/// sees and what it costs; a `root` that cannot be cancelled is listed without children.
pub fn snapshot(root: &Context) -> Snapshot {
    let started = std::time::Instant::now();
    let mut found = vec![Found {
        node: root.node.clone(),
        values: Vec::new(),
        calls: Vec::new(),
        children: Vec::new(),
        depth: 0,
        hidden: 0,
    }];
    // Where each found node is; the root is also known by its cancellable source, which is the
    // node its children register with.
    let mut index: HashMap<usize, usize> = HashMap::new();
    if let Some(n) = &root.node {
        index.insert(addr(n), 0);
    }
    // The root's values: all it sees.
    let mut cur = root.node.as_ref();
    while let Some(n) = cur {
        if matches!(n.kind, Kind::Value(_)) {
            found[0].values.push(n.clone());
        }
        cur = n.parent.as_ref();
    }

    let source = root.cancellable().map(CancelRef::to_owned);
    let mut kids = Vec::new();
    if let Some(src) = &source {
        // Breadth first, without recursion: trees may be deep.
        let mut i = 0;
        let mut registry_of = vec![(0usize, src.clone())];
        while i < registry_of.len() {
            let (at, parent_node) = registry_of[i].clone();
            i += 1;
            kids.clear();
            parent_node.get().live_children(&mut kids);
            if found[at].depth == MAX_DEPTH {
                found[at].hidden = kids.len();
                kids.clear();
            }
            for child in kids.drain(..) {
                // A child of the root's source that is not under the root itself (the root is a
                // value context over it) is skipped.
                let Some((owner, values)) = owner_of(child.node().parent.as_ref(), &index, false)
                else {
                    continue;
                };
                if owner != at {
                    continue;
                }
                let me = found.len();
                index.insert(addr(child.node()), me);
                found[at].children.push(me);
                found.push(Found {
                    node: Some(child.node().clone()),
                    values,
                    calls: Vec::new(),
                    children: Vec::new(),
                    depth: found[at].depth + 1,
                    hidden: 0,
                });
                registry_of.push((me, child));
            }
        }
    }

    // The calls, each under the nearest found context on its context's chain.
    let mut calls = Vec::new();
    for shard in 0..SHARDS {
        calls.extend(lock_shard(shard).iter().map(|(_, c)| c.clone()));
    }
    let background_root = root.node.is_none();
    let mut listed = 0;
    for call in calls {
        if let Some((at, values)) = owner_of(call.ctx.as_ref(), &index, background_root) {
            found[at].calls.push((call, values));
            listed += 1;
        }
    }

    // Formatting (values' `Debug`: foreign code) with no lock held.
    let now = coarsetime::Instant::now_without_cache_update();
    let tokio_now = Instant::now();
    let contexts = found.len();
    let root = build(&mut found, 0, now, tokio_now);
    Snapshot {
        root,
        contexts,
        calls: listed,
        took: started.elapsed(),
    }
}

/// Walks up from `start` to the nearest found node: its index and the value nodes on the way
/// (nearest first). `None` when the chain leaves the root's tree; `top_is_root`: reaching the
/// top of the chain counts as reaching the root (a `background()` root).
fn owner_of(
    start: Option<&Arc<Node>>,
    index: &HashMap<usize, usize>,
    top_is_root: bool,
) -> Option<(usize, Vec<Arc<Node>>)> {
    let mut values = Vec::new();
    let mut cur = start;
    while let Some(n) = cur {
        if let Some(&i) = index.get(&addr(n)) {
            return Some((i, values));
        }
        if matches!(n.kind, Kind::Value(_)) {
            values.push(n.clone());
        }
        cur = n.parent.as_ref();
    }
    top_is_root.then_some((0, values))
}

fn build(
    found: &mut [Found],
    i: usize,
    now: coarsetime::Instant,
    tokio_now: Instant,
) -> LiveContext {
    let f = &mut found[i];
    let node = f.node.clone();
    let values = f.values.iter().map(value_of).collect();
    let mut calls: Vec<LiveCall> = std::mem::take(&mut f.calls)
        .into_iter()
        .map(|(c, values)| call_of(&c, &values, now))
        .collect();
    calls.sort_by_key(|c| std::cmp::Reverse(c.age));
    let children_idx = std::mem::take(&mut f.children);
    let hidden = f.hidden;
    let (kind, created_at, age, deadline_in, err) = describe(node.as_ref(), now, tokio_now);
    // Recursion depth is the tree's depth: at most `MAX_DEPTH`.
    let children = children_idx
        .into_iter()
        .map(|c| build(found, c, now, tokio_now))
        .collect();
    LiveContext {
        kind,
        created_at,
        age,
        deadline_in,
        err,
        values,
        calls,
        children,
        hidden,
    }
}

type Description = (
    &'static str,
    Option<&'static Location<'static>>,
    Option<Duration>,
    Option<Duration>,
    Option<Error>,
);

fn describe(node: Option<&Arc<Node>>, now: coarsetime::Instant, tokio_now: Instant) -> Description {
    let Some(n) = node else {
        return ("Background", None, None, None, None);
    };
    let kind = match &n.kind {
        Kind::Todo => "TODO",
        Kind::WithoutCancel => "WithoutCancel",
        Kind::Value(_) => "WithValue",
        Kind::Cancel(c) if c.has_own_deadline() => "WithDeadline",
        Kind::Cancel(_) => "WithCancel",
    };
    let Some(core) = CancelRef::of(n) else {
        return (kind, None, None, None, None);
    };
    let birth = core.live;
    let age = since(now, birth.at);
    let deadline_in = core
        .deadline()
        .map(|at| at.saturating_duration_since(tokio_now));
    let err = core.state().err();
    (kind, Some(birth.here), Some(age), deadline_in, err)
}

fn value_of(n: &Arc<Node>) -> LiveValue {
    match &n.kind {
        Kind::Value(v) => LiveValue {
            key: short_name((v.meta.name)()),
            value: (v.meta.debug)(&*v.value).map(|d| format!("{d:?}")),
        },
        _ => LiveValue {
            key: String::new(),
            value: None,
        },
    }
}

fn call_of(c: &Call, values: &[Arc<Node>], now: coarsetime::Instant) -> LiveCall {
    let packed = c.site.load(Ordering::Relaxed);
    let awaiting = (packed != 0).then(|| AwaitSite {
        file: c.await_file(),
        line: (packed >> 32) as u32,
        column: packed as u32,
    });
    LiveCall {
        name: c.name,
        defined_at: c.defined,
        age: since(now, c.born),
        awaiting,
        values: values.iter().map(value_of).collect(),
    }
}

/// `my_crate::keys::RequestId` -> `RequestId`; `a::B<c::D>` -> `B<D>`.
fn short_name(full: &str) -> String {
    crate::context::short_type_name(full)
}

// ---------------------------------------------------------------------------------------------
// Rendering

impl fmt::Display for Snapshot {
    /// One line per context, then its values and calls, indented by depth.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut stack = vec![(&self.root, 0usize)];
        while let Some((c, depth)) = stack.pop() {
            write_context(f, c, depth)?;
            stack.extend(c.children.iter().rev().map(|k| (k, depth + 1)));
        }
        Ok(())
    }
}

fn write_context(f: &mut fmt::Formatter<'_>, c: &LiveContext, depth: usize) -> fmt::Result {
    let pad = "  ".repeat(depth);
    write!(f, "{pad}{}", c.kind)?;
    if let Some(at) = c.created_at {
        write!(f, " {at}")?;
    }
    if let Some(age) = c.age {
        write!(f, " age={}", Millis(age))?;
    }
    if let Some(d) = c.deadline_in {
        write!(f, " deadline_in={}", Millis(d))?;
    }
    if let Some(e) = c.err {
        write!(f, " [{e}]")?;
    }
    if c.hidden > 0 {
        write!(f, " (+{} deeper, not listed)", c.hidden)?;
    }
    writeln!(f)?;
    for v in &c.values {
        writeln!(f, "{pad}  · {v}")?;
    }
    for call in &c.calls {
        write!(
            f,
            "{pad}  ↳ {} ({}) age={}",
            call.name,
            call.defined_at,
            Millis(call.age)
        )?;
        match call.awaiting {
            Some(s) => writeln!(f, " awaiting {s}")?,
            None => writeln!(f, " running")?,
        }
        for v in &call.values {
            writeln!(f, "{pad}      · {v}")?;
        }
    }
    Ok(())
}

/// A duration in milliseconds, with one decimal.
struct Millis(Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1}ms", self.0.as_secs_f64() * 1e3)
    }
}

impl Snapshot {
    /// The snapshot as a JSON value: `{"contexts", "calls", "took_us", "root"}`, where each
    /// context is `{"kind", "created_at", "age_ms", "deadline_in_ms", "err", "values", "calls",
    /// "children", "hidden"}`, each value `{"key", "value"}` and each call `{"name",
    /// "defined_at", "age_ms", "awaiting", "values"}` (absent facts are `null`). The snapshot is
    /// also `serde::Serialize` in this shape, for any serde format; [`Snapshot::to_json_string`]
    /// writes the JSON text without building the value first.
    ///
    /// ```
    /// use ctxkit::Context;
    ///
    /// let (root, _cancel) = Context::background().with_cancel();
    /// let (_child, _cancel_child) = root.with_cancel();
    /// let json = ctxkit::live::snapshot(&root).to_json();
    /// assert_eq!(json["contexts"], 2);
    /// assert_eq!(json["root"]["children"][0]["kind"], "WithCancel");
    /// ```
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The snapshot as JSON text (see [`Snapshot::to_json`]).
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `Display` as a serde string.
struct Text<T>(T);

impl<T: fmt::Display> Serialize for Text<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl Serialize for Snapshot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("contexts", &self.contexts)?;
        m.serialize_entry("calls", &self.calls)?;
        let took = u64::try_from(self.took.as_micros()).unwrap_or(u64::MAX);
        m.serialize_entry("took_us", &took)?;
        m.serialize_entry("root", &self.root)?;
        m.end()
    }
}

impl Serialize for LiveContext {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(9))?;
        m.serialize_entry("kind", self.kind)?;
        m.serialize_entry("created_at", &self.created_at.map(Text))?;
        m.serialize_entry("age_ms", &self.age.map(ms))?;
        m.serialize_entry("deadline_in_ms", &self.deadline_in.map(ms))?;
        m.serialize_entry("err", &self.err.map(Text))?;
        m.serialize_entry("values", &self.values)?;
        m.serialize_entry("calls", &self.calls)?;
        m.serialize_entry("children", &self.children)?;
        m.serialize_entry("hidden", &self.hidden)?;
        m.end()
    }
}

impl Serialize for LiveValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("key", &self.key)?;
        m.serialize_entry("value", &self.value)?;
        m.end()
    }
}

impl Serialize for LiveCall {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("name", self.name)?;
        m.serialize_entry("defined_at", &Text(self.defined_at))?;
        m.serialize_entry("age_ms", &ms(self.age))?;
        m.serialize_entry("awaiting", &self.awaiting.map(Text))?;
        m.serialize_entry("values", &self.values)?;
        m.end()
    }
}
