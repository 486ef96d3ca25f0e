//! Retries bounded by a context's budget (feature `retry`): [`retry`](crate::retry()),
//! [`retry_if`](crate::retry_if()), [`RetryPolicy`] and [`RetryError`].
//!
//! Exponential backoff with jitter that knows the deadline:
//!
//! - it never sleeps past the deadline, and never starts an attempt the budget left cannot
//!   cover ([`RetryPolicy::min_attempt`]): when the next backoff would leave less than that, it
//!   gives up at once ([`GaveUp::Budget`]) and hands the rest of the budget back to the caller;
//! - every attempt and every backoff runs under the context ([`Context::run`]): a cancellation or
//!   the deadline stops it at once, dropping the attempt in flight ([`GaveUp::Context`]);
//! - the error keeps every attempt's error, in order ([`RetryError::errors`]).
//!
//! Go has no retry helper in its standard library; this is what a handler writes by hand there
//! with `ctx.Deadline()` and a `select` on `ctx.Done()` around each sleep.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::{Context, Instant};

/// How [`retry`](crate::retry()) spaces its attempts.
///
/// The backoff before attempt `n + 1` is `first_delay × multiplier^(n-1)`, at most
/// `max_delay`, shortened by a random part of up to `jitter` of itself (so many clients failing
/// together do not retry together).
///
/// ```
/// use std::time::Duration;
/// use ctxkit::retry::RetryPolicy;
///
/// let policy = RetryPolicy::new()
///     .first_delay(Duration::from_millis(50))
///     .max_delay(Duration::from_secs(2))
///     .max_attempts(6)
///     .min_attempt(Duration::from_millis(100)); // what one attempt needs to have a chance
/// # let _ = policy;
/// ```
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    first_delay: Duration,
    max_delay: Duration,
    multiplier: f64,
    jitter: f64,
    max_attempts: Option<u32>,
    min_attempt: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::new()
    }
}

impl RetryPolicy {
    /// The defaults: 100 ms first delay, doubling, at most 10 s, jitter 0.5, at most 5 attempts,
    /// no minimum budget per attempt.
    pub fn new() -> RetryPolicy {
        RetryPolicy {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.5,
            max_attempts: Some(5),
            min_attempt: Duration::ZERO,
        }
    }

    /// The backoff after the first failure (before jitter).
    pub fn first_delay(mut self, delay: Duration) -> RetryPolicy {
        self.first_delay = delay;
        self
    }

    /// The longest backoff (before jitter).
    pub fn max_delay(mut self, delay: Duration) -> RetryPolicy {
        self.max_delay = delay;
        self
    }

    /// How much each backoff grows over the previous one (at least 1; NaN counts as 1).
    pub fn multiplier(mut self, multiplier: f64) -> RetryPolicy {
        self.multiplier = if multiplier >= 1.0 { multiplier } else { 1.0 };
        self
    }

    /// The largest part of a backoff taken off at random, from 0 (none: exact delays) to 1
    /// ("full jitter": anywhere between 0 and the delay). Clamped to that range.
    pub fn jitter(mut self, jitter: f64) -> RetryPolicy {
        self.jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        self
    }

    /// At most this many attempts, the first included (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> RetryPolicy {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// No limit on the number of attempts: only the context's deadline (or cancellation) ends
    /// the retries. Without a deadline, a call that always fails retries forever.
    pub fn unlimited_attempts(mut self) -> RetryPolicy {
        self.max_attempts = None;
        self
    }

    /// The budget an attempt needs to be worth starting: no attempt starts, and no backoff is
    /// slept, when less than this would be left for the attempt (the default is zero: any budget
    /// will do).
    pub fn min_attempt(mut self, budget: Duration) -> RetryPolicy {
        self.min_attempt = budget;
        self
    }

    /// The backoff after attempt `attempt` (1-based) failed, jitter applied.
    fn delay(&self, attempt: u32) -> Duration {
        let base = self.first_delay.as_secs_f64() * self.multiplier.powf(f64::from(attempt - 1));
        let capped = base.min(self.max_delay.as_secs_f64());
        let jittered = capped * (1.0 - self.jitter * fastrand::f64());
        Duration::try_from_secs_f64(jittered).unwrap_or(self.max_delay)
    }
}

/// The attempt [`retry`](crate::retry()) is starting: its number and its context.
#[derive(Clone, Debug)]
pub struct Attempt {
    number: u32,
    ctx: Context,
}

impl Attempt {
    /// 1 for the first attempt, 2 for the first retry, ….
    pub fn number(&self) -> u32 {
        self.number
    }

    /// The context the retries run under (pass it on to the call: `send_with(attempt.context())`).
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The budget left for this attempt, if the context has a deadline.
    pub fn budget(&self) -> Option<Duration> {
        self.ctx
            .deadline()
            .map(|at| at.saturating_duration_since(Instant::now()))
    }
}

/// Why [`retry`](crate::retry()) stopped retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GaveUp {
    /// [`RetryPolicy::max_attempts`] attempts failed.
    Attempts,
    /// [`retry_if`](crate::retry_if())'s predicate called the last error permanent.
    Permanent,
    /// The budget left could not cover the next backoff plus [`RetryPolicy::min_attempt`] (or,
    /// before the first attempt, the minimum alone): nothing more was tried, and the call
    /// returned at once, before the deadline.
    Budget,
    /// The context ended (deadline or cancellation) during an attempt, which was dropped, or
    /// during a backoff, or before the first attempt.
    Context(crate::Error),
}

/// Every error of a [`retry`](crate::retry()) that gave up, and why it did.
///
/// An attempt dropped because the context ended has no error of its own: [`RetryError::errors`]
/// holds those of the attempts that finished.
pub struct RetryError<E> {
    errors: Vec<E>,
    reason: GaveUp,
}

impl<E> RetryError<E> {
    /// Why the retries stopped.
    pub fn reason(&self) -> GaveUp {
        self.reason
    }

    /// The context's kind when the deadline or a cancellation stopped the retries:
    /// [`GaveUp::Context`]'s, and [`crate::Error::DeadlineExceeded`] for [`GaveUp::Budget`]
    /// (the deadline leaves no time for another attempt). `None` when the attempts ran out or an
    /// error was permanent.
    pub fn kind(&self) -> Option<crate::Error> {
        match self.reason {
            GaveUp::Context(kind) => Some(kind),
            GaveUp::Budget => Some(crate::Error::DeadlineExceeded),
            GaveUp::Attempts | GaveUp::Permanent => None,
        }
    }

    /// The error of each attempt that finished, the first attempt's first.
    pub fn errors(&self) -> &[E] {
        &self.errors
    }

    /// The last attempt's error, if an attempt finished.
    pub fn last(&self) -> Option<&E> {
        self.errors.last()
    }

    /// The errors, the first attempt's first.
    pub fn into_errors(self) -> Vec<E> {
        self.errors
    }
}

impl<E: fmt::Debug> fmt::Debug for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryError")
            .field("reason", &self.reason)
            .field("errors", &self.errors)
            .finish()
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        let plural = if n == 1 { "" } else { "s" };
        match self.reason {
            GaveUp::Attempts => write!(f, "gave up after {n} failed attempt{plural}")?,
            GaveUp::Permanent => {
                write!(f, "gave up on a permanent error after {n} attempt{plural}")?
            }
            GaveUp::Budget => write!(
                f,
                "gave up after {n} failed attempt{plural}: the deadline leaves no time for another"
            )?,
            GaveUp::Context(kind) => write!(f, "{kind} after {n} failed attempt{plural}")?,
        }
        match self.errors.last() {
            Some(e) => write!(f, "; last error: {e}"),
            None => Ok(()),
        }
    }
}

impl<E> std::error::Error for RetryError<E>
where
    E: std::error::Error + 'static,
{
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.errors
            .last()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Calls `attempt` until it succeeds, with exponential backoff and jitter bounded by `ctx`'s
/// budget; every error is retried (see [`retry_if`] to stop on permanent ones). See the
/// [`retry` module](mod@crate::retry) for the rules.
///
/// ```
/// use std::time::Duration;
/// use ctxkit::Context;
/// use ctxkit::retry::{GaveUp, RetryPolicy};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(1));
/// let policy = RetryPolicy::new()
///     .first_delay(Duration::from_millis(100))
///     .unlimited_attempts()
///     .min_attempt(Duration::from_millis(200));
///
/// // A call that succeeds on its third attempt.
/// let ok = ctxkit::retry(&ctx, &policy, |attempt| async move {
///     if attempt.number() < 3 { Err("unavailable") } else { Ok(attempt.number()) }
/// })
/// .await;
/// assert_eq!(ok.unwrap(), 3);
///
/// // A call that always fails: the retries end before the deadline, once the budget cannot
/// // cover another backoff and attempt.
/// let start = ctxkit::Instant::now();
/// let err = ctxkit::retry(&ctx, &policy, |_| async { Err::<(), _>("unavailable") })
///     .await
///     .unwrap_err();
/// assert_eq!(err.reason(), GaveUp::Budget);
/// assert!(err.errors().len() >= 2);
/// assert!(start.elapsed() < Duration::from_secs(1));
/// # }
/// ```
pub async fn retry<T, E, F, Fut>(
    ctx: &Context,
    policy: &RetryPolicy,
    attempt: F,
) -> Result<T, RetryError<E>>
where
    F: FnMut(Attempt) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    retry_if(ctx, policy, |_| true, attempt).await
}

/// [`retry`], retrying only the errors for which `retryable` returns `true`: another error ends
/// the retries at once ([`GaveUp::Permanent`]).
///
/// ```
/// use ctxkit::Context;
/// use ctxkit::retry::{GaveUp, RetryPolicy};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let status = [503, 404, 200];
/// let err = ctxkit::retry_if(
///     &Context::background(),
///     &RetryPolicy::new(),
///     |code: &u16| *code >= 500,
///     |attempt| async move {
///         match status[attempt.number() as usize - 1] {
///             200 => Ok(()),
///             code => Err(code),
///         }
///     },
/// )
/// .await
/// .unwrap_err();
/// assert_eq!(err.reason(), GaveUp::Permanent);
/// assert_eq!(err.errors(), &[503, 404]);
/// # }
/// ```
pub async fn retry_if<T, E, F, Fut, R>(
    ctx: &Context,
    policy: &RetryPolicy,
    mut retryable: R,
    mut attempt: F,
) -> Result<T, RetryError<E>>
where
    R: FnMut(&E) -> bool,
    F: FnMut(Attempt) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut errors = Vec::new();
    let give_up = |errors, reason| Err(RetryError { errors, reason });
    if let Some(kind) = ctx.err() {
        return give_up(errors, GaveUp::Context(kind));
    }
    if !covers(ctx, Duration::ZERO, policy.min_attempt) {
        return give_up(errors, GaveUp::Budget);
    }
    let mut number = 1;
    loop {
        let call = attempt(Attempt {
            number,
            ctx: ctx.clone(),
        });
        match ctx.run(call).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => {
                let permanent = !retryable(&e);
                errors.push(e);
                if permanent {
                    return give_up(errors, GaveUp::Permanent);
                }
            }
            Err(kind) => return give_up(errors, GaveUp::Context(kind)),
        }
        if policy.max_attempts.is_some_and(|max| number >= max) {
            return give_up(errors, GaveUp::Attempts);
        }
        if let Some(kind) = ctx.err() {
            return give_up(errors, GaveUp::Context(kind));
        }
        let delay = policy.delay(number);
        if !covers(ctx, delay, policy.min_attempt) {
            return give_up(errors, GaveUp::Budget);
        }
        if let Err(kind) = ctx.run(tokio::time::sleep(delay)).await {
            return give_up(errors, GaveUp::Context(kind));
        }
        number += 1;
    }
}

/// Whether `ctx`'s budget covers `delay` and then `min_attempt` (always, without a deadline).
/// An attempt needs some budget even when the minimum is zero: the deadline must not have passed
/// by the end of the delay.
fn covers(ctx: &Context, delay: Duration, min_attempt: Duration) -> bool {
    match ctx.deadline() {
        None => true,
        Some(at) => {
            let left = at.saturating_duration_since(Instant::now());
            delay
                .checked_add(min_attempt)
                .is_some_and(|need| need < left)
        }
    }
}
