//! `#[cancellable]` on every kind of fn: methods, traits, generics, return types. Each compiles
//! and behaves like a free fn.

use std::fmt::Display;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ctxkit::{Context, Error, cancellable};
use tokio::time::sleep;

fn cancelled() -> Context {
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    ctx
}

async fn tick() {
    sleep(Duration::from_millis(1)).await;
}

struct Counter {
    n: u32,
}

impl Counter {
    /// Docs and attributes stay on the fn.
    #[cancellable]
    #[inline(never)]
    pub async fn get(&self) -> u32 {
        tick().await;
        self.n
    }

    #[cancellable]
    async fn bump(&mut self, by: u32) -> Result<u32, Error> {
        tick().await;
        self.n += by;
        Ok(self.n)
    }

    #[cancellable]
    async fn into_inner(self) -> u32 {
        tick().await;
        self.n
    }
}

#[tokio::test(start_paused = true)]
async fn methods_with_every_receiver() {
    let mut c = Counter { n: 1 };
    assert_eq!(c.get().await, Ok(1));
    assert_eq!(c.bump(2).await, Ok(3));
    assert_eq!(cancelled().scope(c.bump(5)).await, Err(Error::Canceled));
    assert_eq!(c.n, 3);
    assert_eq!(cancelled().scope(c.get()).await, Err(Error::Canceled));
    assert_eq!(c.into_inner().await, Ok(3));
}

trait Store {
    /// A declaration: the return type becomes `Result<String, ctxkit::Error>`, which the
    /// annotated impls below match.
    #[cancellable]
    async fn load(&self, key: &str) -> String;

    /// A default body.
    #[cancellable]
    async fn load_twice(&self, key: &str) -> Result<String, Error> {
        let a = self.load(key).await?;
        tick().await;
        let b = self.load(key).await?;
        Ok(format!("{a}{b}"))
    }
}

struct Memory;

impl Store for Memory {
    #[cancellable]
    async fn load(&self, key: &str) -> String {
        tick().await;
        key.to_uppercase()
    }
}

#[tokio::test(start_paused = true)]
async fn trait_methods_and_their_impls() {
    assert_eq!(Memory.load("a").await, Ok("A".to_string()));
    assert_eq!(Memory.load_twice("b").await, Ok("BB".to_string()));
    assert_eq!(
        cancelled().scope(Memory.load("a")).await,
        Err(Error::Canceled)
    );
    assert_eq!(
        cancelled().scope(Memory.load_twice("a")).await,
        Err(Error::Canceled)
    );
}

#[cancellable]
async fn describe<'a, T, U: Display>(items: &'a [T], label: impl AsRef<str>, extra: U) -> String
where
    T: Display + Sync,
{
    let mut out = String::from(label.as_ref());
    for item in items {
        tick().await;
        out.push_str(&format!(" {item}"));
    }
    format!("{out} {extra}")
}

#[tokio::test(start_paused = true)]
async fn generic_fns_with_lifetimes_where_clauses_and_impl_trait_args() {
    let got = describe(&[1, 2], "n:", '!').await;
    assert_eq!(got.as_deref(), Ok("n: 1 2 !"));
    let got = cancelled().scope(describe(&["x"], "s", 0)).await;
    assert_eq!(got, Err(Error::Canceled));
}

#[cancellable]
async fn read_config(ctx: &Context) -> io::Result<String> {
    let _ = ctx;
    tick().await;
    Ok("config".into())
}

#[tokio::test(start_paused = true)]
async fn io_result_fns_map_cancellation_to_io_errors() {
    assert_eq!(read_config(&Context::background()).await.unwrap(), "config");
    let err = read_config(&cancelled()).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Interrupted);

    let (ctx, _cancel) = Context::background().with_timeout(Duration::ZERO);
    let err = read_config(&ctx).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
}

#[derive(Debug, PartialEq)]
enum AppError {
    NotFound,
    Stopped(Error),
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::Stopped(e)
    }
}

#[cancellable]
async fn find(id: u32) -> Result<&'static str, AppError> {
    tick().await;
    match id {
        1 => Ok("one"),
        _ => Err(AppError::NotFound),
    }
}

#[cancellable]
async fn find_both() -> Result<String, AppError> {
    let a = find(1).await?;
    let b = find(2).await?; // `?` keeps working on the user's own errors
    Ok(format!("{a}{b}"))
}

#[tokio::test(start_paused = true)]
async fn result_fns_keep_their_error_type() {
    assert_eq!(find(1).await, Ok("one"));
    assert_eq!(find_both().await, Err(AppError::NotFound));
    assert_eq!(
        cancelled().scope(find(1)).await,
        Err(AppError::Stopped(Error::Canceled))
    );
}

#[cancellable]
async fn returns_early(flag: bool) -> u8 {
    if flag {
        return 1;
    }
    tick().await;
    2
}

#[tokio::test(start_paused = true)]
async fn return_in_the_body_keeps_working() {
    assert_eq!(returns_early(true).await, Ok(1));
    assert_eq!(returns_early(false).await, Ok(2));
}

#[tokio::test(start_paused = true)]
async fn the_future_stays_send() {
    let (ctx, _cancel) = Context::background().with_cancel();
    let handle = tokio::spawn(async move {
        let mut c = Counter { n: 4 };
        let _ = c.bump(1).await;
        let _ = Memory.load_twice("s").await;
        let _ = describe(&[1u8], "x", 1).await;
        read_config(&ctx).await.unwrap()
    });
    assert_eq!(handle.await.unwrap(), "config");
}

#[tokio::test(start_paused = true)]
async fn awaits_inside_macros_are_not_raced_but_the_call_still_stops_there() {
    #[cancellable]
    async fn selecting(flag: Arc<AtomicBool>) {
        struct SetOnDrop(Arc<AtomicBool>);
        impl Drop for SetOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _guard = SetOnDrop(flag);
        tokio::select! {
            _ = sleep(Duration::from_secs(10)) => {}
            _ = std::future::pending::<()>() => {}
        }
    }
    let flag = Arc::new(AtomicBool::new(false));
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(10));
    let start = tokio::time::Instant::now();
    assert_eq!(
        ctx.scope(selecting(flag.clone())).await,
        Err(Error::DeadlineExceeded)
    );
    assert_eq!(start.elapsed(), Duration::from_millis(10));
    assert!(flag.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn awaits_inside_async_blocks_are_stopped_at_the_blocks_await() {
    #[cancellable]
    async fn nested() -> u8 {
        let inner = async {
            sleep(Duration::from_secs(10)).await;
            1
        };
        inner.await
    }
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(10));
    assert_eq!(ctx.scope(nested()).await, Err(Error::DeadlineExceeded));
}

#[cancellable]
async fn shown(n: u32) -> impl Display {
    tick().await;
    n + 1
}

#[tokio::test(start_paused = true)]
async fn impl_trait_return_types_are_wrapped_too() {
    assert_eq!(shown(1).await.map(|d| d.to_string()).ok(), Some("2".into()));
    assert!(cancelled().scope(shown(1)).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_timeouts_cause_names_where_it_came_from() {
    #[cancellable(timeout = "5ms")]
    async fn timed(seen: &std::sync::Mutex<Option<Context>>) {
        *seen.lock().unwrap() = Some(Context::current());
        std::future::pending::<()>().await;
    }
    let seen = std::sync::Mutex::new(None);
    assert_eq!(timed(&seen).await, Err(Error::DeadlineExceeded));
    let ctx = seen.lock().unwrap().take().unwrap();
    let origin = ctx.cause().and_then(|c| c.origin()).unwrap_or_default();
    assert!(origin.contains(file!()), "origin: {origin}");
}

#[tokio::test(start_paused = true)]
async fn shielded_futures_stay_send() {
    #[cancellable(timeout = "1s")]
    async fn with_shields(ctx: Context) -> u8 {
        let _ = &ctx;
        #[shield]
        tick().await;
        #[shield(timeout = "10ms")]
        let n = async { 3 }.await;
        n
    }
    let handle = tokio::spawn(with_shields(Context::background()));
    assert_eq!(handle.await.unwrap(), Ok(3));
}

/// The talk's `processor.Server` (a spawned task, a channel and a `select` on `ctx.Done()`),
/// as the README shows it.
mod talk {
    use std::time::Duration;

    use ctxkit::{Context, ContextKey, cancellable};

    #[derive(Clone, Debug, ContextKey)]
    pub struct RequestId(pub u64);

    #[derive(Debug, PartialEq)]
    pub enum ServerError {
        NoRequestId,
        Stopped(ctxkit::Error),
    }
    impl From<ctxkit::Error> for ServerError {
        fn from(e: ctxkit::Error) -> Self {
            ServerError::Stopped(e)
        }
    }

    /// Cleans up after an event unless disarmed (the talk's `cancelRequestAndCleanup`).
    pub struct Cleanup<'a> {
        event_id: &'a str,
        log: &'a std::sync::Mutex<Vec<String>>,
        armed: bool,
    }
    impl<'a> Cleanup<'a> {
        pub fn arm(event_id: &'a str, log: &'a std::sync::Mutex<Vec<String>>) -> Self {
            Cleanup {
                event_id,
                log,
                armed: true,
            }
        }
        pub fn disarm(mut self) {
            self.armed = false;
        }
    }
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            if self.armed {
                let line = format!("cleaned up {}", self.event_id);
                self.log.lock().unwrap().push(line);
            }
        }
    }

    async fn process_event(id: &str, work: Duration) -> String {
        tokio::time::sleep(work).await;
        format!("processed {id}")
    }

    #[cancellable]
    pub async fn server(
        ctx: &Context,
        event_id: &str,
        work: Duration,
        log: &std::sync::Mutex<Vec<String>>,
    ) -> Result<String, ServerError> {
        let request = RequestId::get(ctx).ok_or(ServerError::NoRequestId)?;
        let cleanup = Cleanup::arm(event_id, log); // dropped armed if the call is cancelled
        let status = process_event(event_id, work).await; // raced against ctx
        cleanup.disarm();
        Ok(format!("{status} for request {}", request.0))
    }
}

#[tokio::test(start_paused = true)]
async fn the_talks_server_in_ten_lines() {
    use talk::*;
    let log = std::sync::Mutex::new(Vec::new());
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(100));
    let ctx = RequestId::set(&ctx, RequestId(7));

    let fast = server(&ctx, "e1", Duration::from_millis(10), &log).await;
    assert_eq!(fast.as_deref(), Ok("processed e1 for request 7"));
    let slow = server(&ctx, "e2", Duration::from_secs(5), &log).await;
    assert_eq!(slow, Err(ServerError::Stopped(Error::DeadlineExceeded)));
    assert_eq!(*log.lock().unwrap(), ["cleaned up e2"]);
    let anonymous = server(&Context::background(), "e3", Duration::ZERO, &log).await;
    assert_eq!(anonymous, Err(ServerError::NoRequestId));
}
