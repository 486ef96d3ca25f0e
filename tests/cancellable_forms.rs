//! `#[cancellable]` on every kind of fn: methods, traits, generics, return types. Each compiles
//! and behaves like a free fn, with its signature exactly as written.

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
    pub async fn get(&self) -> Result<u32, Error> {
        tick().await;
        Ok(self.n)
    }

    #[cancellable]
    async fn bump(&mut self, by: u32) -> Result<u32, Error> {
        tick().await;
        self.n += by;
        Ok(self.n)
    }

    #[cancellable]
    async fn into_inner(self) -> Result<u32, Error> {
        tick().await;
        Ok(self.n)
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
    /// A plain declaration: the annotated impls below keep its signature.
    async fn load(&self, key: &str) -> Result<String, Error>;

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
    async fn load(&self, key: &str) -> Result<String, Error> {
        tick().await;
        Ok(key.to_uppercase())
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
#[allow(clippy::needless_lifetimes)] // the lifetime is what this form is about
async fn describe<'a, T, U: Display>(
    items: &'a [T],
    label: impl AsRef<str>,
    extra: U,
) -> Result<String, Error>
where
    T: Display + Sync,
{
    let mut out = String::from(label.as_ref());
    for item in items {
        tick().await;
        out.push_str(&format!(" {item}"));
    }
    Ok(format!("{out} {extra}"))
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

/// An application's alias, as in the report that found the trap: `ApiResult<()>` used to
/// become `Result<ApiResult<()>, ctxkit::Error>`, and a failed write read as a success.
type ApiResult<T> = Result<T, AppError>;

#[cancellable]
async fn save(fail: bool) -> ApiResult<()> {
    tick().await;
    if fail {
        return Err(AppError::NotFound);
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_result_alias_is_the_result_it_names() {
    // Typed as what the alias names: one `Result`, not two.
    let saved: Result<(), AppError> = save(false).await;
    assert_eq!(saved, Ok(()));
    assert_eq!(save(true).await, Err(AppError::NotFound));
    assert_eq!(
        cancelled().scope(save(false)).await,
        Err(AppError::Stopped(Error::Canceled))
    );
}

/// A generic alias with a default error type, shaped like `anyhow::Result`.
type Fallible<T, E = AppError> = Result<T, E>;

#[cancellable]
async fn parse_port(text: &str) -> Fallible<u16> {
    tick().await;
    text.parse().map_err(|_| AppError::NotFound)
}

#[cancellable]
async fn parse_port_plainly(text: &str) -> Fallible<u16, Error> {
    tick().await;
    Ok(text.parse().unwrap_or(0))
}

#[tokio::test(start_paused = true)]
async fn a_generic_alias_with_a_default_error_is_the_result_it_names() {
    assert_eq!(parse_port("80").await, Ok(80));
    assert_eq!(parse_port("x").await, Err(AppError::NotFound));
    assert_eq!(
        cancelled().scope(parse_port("80")).await,
        Err(AppError::Stopped(Error::Canceled))
    );
    assert_eq!(parse_port_plainly("443").await, Ok(443));
    assert_eq!(
        cancelled().scope(parse_port_plainly("443")).await,
        Err(Error::Canceled)
    );
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
async fn returns_early(flag: bool) -> Result<u8, Error> {
    if flag {
        return Ok(1);
    }
    tick().await;
    Ok(2)
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
    async fn selecting(flag: Arc<AtomicBool>) -> Result<(), Error> {
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
        Ok(())
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
    async fn nested() -> Result<u8, Error> {
        let inner = async {
            sleep(Duration::from_secs(10)).await;
            1
        };
        Ok(inner.await)
    }
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(10));
    assert_eq!(ctx.scope(nested()).await, Err(Error::DeadlineExceeded));
}

#[cancellable]
async fn shown(n: u32) -> Result<impl Display, Error> {
    tick().await;
    Ok(n + 1)
}

#[tokio::test(start_paused = true)]
async fn impl_trait_inside_the_result_is_kept() {
    assert_eq!(shown(1).await.map(|d| d.to_string()).ok(), Some("2".into()));
    assert!(cancelled().scope(shown(1)).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_timeouts_cause_names_where_it_came_from() {
    #[cancellable(timeout = "5ms")]
    async fn timed(seen: &std::sync::Mutex<Option<Context>>) -> Result<(), Error> {
        *seen.lock().unwrap() = Some(Context::current());
        std::future::pending::<()>().await;
        Ok(())
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
    async fn with_shields(ctx: Context) -> Result<u8, Error> {
        let _ = &ctx;
        #[shield]
        tick().await;
        #[shield(timeout = "10ms")]
        let n = async { 3 }.await;
        Ok(n)
    }
    let handle = tokio::spawn(with_shields(Context::background()));
    assert_eq!(handle.await.unwrap(), Ok(3));
}
