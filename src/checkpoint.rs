//! Explicit cancellation points: [`Context::check`] for CPU-bound loops and [`checkpoint`] for
//! async code that never awaits anything cancellable (Trio's `checkpoint()`).

use crate::{Context, Error};

impl Context {
    /// `Err` with this context's error once it is done, `Ok(())` while it is live: a cancellation
    /// point for CPU-bound loops, which never reach an `.await` where `#[cancellable]` or
    /// [`Context::run`] could stop them.
    ///
    /// It sees a passed deadline even when the deadline's timer could not fire, for instance
    /// because the loop itself keeps a single-threaded runtime busy. The cost is one atomic load,
    /// plus one clock read when the context has a deadline.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxkit::{Context, Error};
    ///
    /// fn crunch(ctx: &Context, data: &[u64]) -> Result<u64, Error> {
    ///     let mut sum = 0u64;
    ///     for (i, x) in data.iter().enumerate() {
    ///         if i % 1024 == 0 {
    ///             ctx.check()?; // stop promptly once the request is gone
    ///         }
    ///         sum = sum.wrapping_add(x.wrapping_mul(*x));
    ///     }
    ///     Ok(sum)
    /// }
    ///
    /// let (ctx, cancel) = Context::background().with_cancel();
    /// assert_eq!(crunch(&ctx, &[1, 2, 3]), Ok(14));
    /// cancel.cancel();
    /// assert_eq!(crunch(&ctx, &[1, 2, 3]), Err(Error::Canceled));
    /// ```
    #[inline]
    pub fn check(&self) -> Result<(), Error> {
        if !self.is_done() && !self.core().is_some_and(|c| c.under_deadline()) {
            return Ok(());
        }
        match self.err() {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

/// A cancellation point for async code: `Err` with the current context's error
/// ([`Context::current`]) if it is done, otherwise yields once to the scheduler (so other tasks,
/// and the timers that cancel contexts, get to run) and checks again.
///
/// Put it in loops that await nothing cancellable, or nothing at all, so that they still notice
/// cancellation and leave the thread to others.
///
/// ```
/// use ctxkit::{Context, Error, checkpoint};
///
/// async fn drain(queue: &mut Vec<u32>) -> Result<u32, Error> {
///     let mut total = 0;
///     while let Some(item) = queue.pop() {
///         checkpoint().await?;
///         total += item;
///     }
///     Ok(total)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (ctx, cancel) = Context::background().with_cancel();
/// assert_eq!(ctx.scope(drain(&mut vec![1, 2, 3])).await, Ok(6));
/// cancel.cancel();
/// assert_eq!(ctx.scope(drain(&mut vec![1, 2, 3])).await, Err(Error::Canceled));
/// # }
/// ```
pub async fn checkpoint() -> Result<(), Error> {
    let ctx = Context::current();
    ctx.check()?;
    tokio::task::yield_now().await;
    // Whatever ran while we yielded may have cancelled us: report it now, not at the next point.
    ctx.check()
}
