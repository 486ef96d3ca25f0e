//! PostgreSQL statements under a context (feature `postgres`, on tokio-postgres): Go's
//! `QueryContext`, which stops the statement *on the server*.
//!
//! ```no_run
//! use ctxkit::Context;
//! use ctxkit::postgres::ClientExt;
//!
//! # async fn handler(client: &tokio_postgres::Client, ctx: &Context) -> Result<(), ctxkit::postgres::Error> {
//! let rows = client
//!     .under(ctx)
//!     .query("SELECT name FROM items WHERE owner = $1", &[&"ada"])
//!     .await?;
//! # let _ = rows;
//! # Ok(())
//! # }
//! ```
//!
//! A statement run through [`ClientExt::under`]:
//!
//! - is never sent when the context is already done ([`Error::Context`] with `sent: false`);
//! - runs in a transaction of its own (`BEGIN`, the statement, `COMMIT`), sent as a pipeline;
//! - **deadline:** the budget left is the statement's server-side `statement_timeout`
//!   (`SET LOCAL`, so it ends with the transaction): the server itself ends the statement when
//!   the budget is spent, and the error is [`crate::Error::DeadlineExceeded`] with the server's
//!   error (SQLSTATE 57014) as its source. Should the server not have ended it shortly after the
//!   deadline, a cancel request follows;
//! - **cancellation:** the moment the context is cancelled, the server is sent a cancel request
//!   (tokio-postgres' [`CancelToken`](tokio_postgres::CancelToken)), and the call returns once
//!   the statement has stopped on the server ([`crate::Error::Canceled`], the server's error as
//!   its source);
//! - **afterwards** the connection is clean: the transaction is rolled back, and what a cancel
//!   request may still do is absorbed before the connection's next statement runs (below). A
//!   result that arrived is never thrown away: a statement that completed (and committed) as
//!   the context ended returns its rows.
//!
//! If the future is dropped before it completes (the task was aborted, a `select!` took another
//! branch, axum dropped the handler of a client that hung up), the same happens without anyone
//! waiting: the rollback and the waits below are queued on the connection at once, behind the
//! statement, and the cancel request is sent from a spawned task. The connection can go back to
//! a pool at once: its next statement runs after them.
//!
//! # Why a cancel request needs care
//!
//! A PostgreSQL cancel request stops whatever the connection's server process runs when it
//! arrives, not a given statement, and the postmaster signals the process twice (the process and
//! its process group), which usually arrive as one but not always. Sent carelessly, it stops the
//! *next* statement on the connection, another request's, with "canceling statement due to user
//! request" (rust-postgres#834, pgx and libpq have the same race). So ctxkit:
//!
//! - sends it only once the server is on our statement (our `BEGIN` has been answered), never
//!   while the connection still runs an earlier caller's statements;
//! - queues behind the statement a wait inside the transaction (`SELECT pg_sleep(2)`, which
//!   fails at once if the request already stopped the statement) for a request that arrives
//!   after the statement ended by itself, then `ROLLBACK`, then a short wait outside it
//!   (`SELECT pg_sleep(0.1)`) for the second signal, then a last `ROLLBACK` (a signal that
//!   lands on the first `ROLLBACK` cancels it and leaves the transaction aborted). A request the
//!   server gets while the connection is idle is dropped by the server.
//! - ends a transaction left aborted on a connection it is given (every statement fails there,
//!   even the prepare that comes first): that call fails, naming it, and the connection works
//!   again for the next.
//!
//! The soak test (2,000 statements, random cancellations, deadlines and dropped calls on a pool
//! of 4) counts the statements stopped by a cancel request that was not theirs: none. What it
//! costs: after a cancellation, the connection's next statement starts up to 0.1 s later (2 s if
//! the server took that long to deliver the request). A server that does not speak English
//! (`lc_messages`) makes the error text unreadable, and then the longer wait is used.
//!
//! # Limits
//!
//! - Use it on a connection that is not inside a transaction of its own: its `BEGIN`/`COMMIT`
//!   would end that transaction. Inside a transaction, set `statement_timeout` yourself
//!   (`SELECT set_config('statement_timeout', …, true)`) and use [`Context::run`] and the
//!   cancel token.
//! - The statement runs in a transaction block, so it cannot be one that refuses to
//!   (`VACUUM`, `CREATE DATABASE`).
//! - The cancel request goes over a new connection without TLS (tokio-postgres' `NoTls`), as
//!   the connection's own settings say where; a server that requires TLS for it is not supported
//!   yet.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};

use crate::{Context, Instant};

/// How long after the deadline the server's `statement_timeout` may take to end the statement
/// before a cancel request is sent as well.
const SERVER_TIMEOUT_GRACE: Duration = Duration::from_millis(100);

/// How long a call waits, once its context ended, for the server to answer the rest of its
/// pipeline; past that it returns (the connection finishes the pipeline on its own).
const CLEANUP_PATIENCE: Duration = Duration::from_secs(10);

/// Runs statements of a tokio-postgres [`Client`] under a [`Context`]. See the
/// [module documentation](self).
pub trait ClientExt: sealed::Sealed {
    /// This client's statements under `ctx`.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use ctxkit::Context;
    /// use ctxkit::postgres::ClientExt;
    ///
    /// # async fn f(client: tokio_postgres::Client) {
    /// let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(200));
    /// // Ended by the server's statement_timeout, 200 ms from now.
    /// let err = client.under(&ctx).execute("SELECT pg_sleep(10)", &[]).await.unwrap_err();
    /// assert_eq!(err.kind(), Some(ctxkit::Error::DeadlineExceeded));
    /// # }
    /// ```
    fn under<'a>(&'a self, ctx: &'a Context) -> Under<'a>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for tokio_postgres::Client {}

    /// What a statement argument is.
    pub enum Text<'a> {
        Sql(&'a str),
        Prepared(&'a tokio_postgres::Statement),
    }

    pub trait SealedStatement {
        fn text(&self) -> Text<'_>;
    }
    impl SealedStatement for str {
        fn text(&self) -> Text<'_> {
            Text::Sql(self)
        }
    }
    impl SealedStatement for String {
        fn text(&self) -> Text<'_> {
            Text::Sql(self)
        }
    }
    impl SealedStatement for tokio_postgres::Statement {
        fn text(&self) -> Text<'_> {
            Text::Prepared(self)
        }
    }
}

/// A statement for [`Under`]: SQL text (`&str`, `String`; prepared first, under the context) or
/// a prepared [`Statement`].
pub trait ToStatement: sealed::SealedStatement + Sync {}
impl ToStatement for str {}
impl ToStatement for String {}
impl ToStatement for Statement {}

impl ClientExt for Client {
    fn under<'a>(&'a self, ctx: &'a Context) -> Under<'a> {
        Under { client: self, ctx }
    }
}

/// A client's statements under a context: [`ClientExt::under`]. The methods are tokio-postgres'
/// own, with the context's rules.
#[derive(Clone, Copy)]
pub struct Under<'a> {
    client: &'a Client,
    ctx: &'a Context,
}

impl fmt::Debug for Under<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Under")
            .field("ctx", self.ctx)
            .finish_non_exhaustive()
    }
}

type Params<'x> = &'x [&'x (dyn ToSql + Sync)];
type OpFuture<'x, T> = Pin<Box<dyn Future<Output = Result<T, tokio_postgres::Error>> + Send + 'x>>;
type Op<T> = for<'x> fn(&'x Client, &'x Statement, Params<'x>) -> OpFuture<'x, T>;

impl Under<'_> {
    /// [`Client::query`] under the context: the rows.
    ///
    /// # Errors
    ///
    /// [`Error::Context`] when the context ended first (or was done already: nothing sent),
    /// [`Error::Db`] for the database's own errors.
    pub async fn query<S: ToStatement + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        self.run(statement, params, |c, s, p| Box::pin(c.query(s, p)))
            .await
    }

    /// [`Client::query_one`] under the context: exactly one row.
    ///
    /// # Errors
    ///
    /// Those of [`Under::query`]; [`Error::Db`] when the statement returned another number of
    /// rows.
    pub async fn query_one<S: ToStatement + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, Error> {
        self.run(statement, params, |c, s, p| Box::pin(c.query_one(s, p)))
            .await
    }

    /// [`Client::query_opt`] under the context: at most one row.
    ///
    /// # Errors
    ///
    /// Those of [`Under::query`]; [`Error::Db`] when the statement returned more than one row.
    pub async fn query_opt<S: ToStatement + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error> {
        self.run(statement, params, |c, s, p| Box::pin(c.query_opt(s, p)))
            .await
    }

    /// [`Client::execute`] under the context: the number of rows the statement changed.
    ///
    /// # Errors
    ///
    /// Those of [`Under::query`].
    pub async fn execute<S: ToStatement + ?Sized>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, Error> {
        self.run(statement, params, |c, s, p| Box::pin(c.execute(s, p)))
            .await
    }

    async fn run<S: ToStatement + ?Sized, T: Send>(
        &self,
        statement: &S,
        params: Params<'_>,
        op: Op<T>,
    ) -> Result<T, Error> {
        let (client, ctx) = (self.client, self.ctx);
        if let Some(kind) = ctx.err() {
            return Err(Error::unsent(kind));
        }
        let prepared;
        let statement = match statement.text() {
            sealed::Text::Prepared(s) => s,
            // Preparing runs nothing: dropping it when the context ends is harmless.
            sealed::Text::Sql(sql) => match ctx.run(client.prepare(sql)).await {
                Ok(Ok(s)) => {
                    prepared = s;
                    &prepared
                }
                Ok(Err(e)) => {
                    if e.code() == Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION)
                    {
                        // The connection came to us inside an aborted transaction, where every
                        // statement fails until a ROLLBACK; nothing below would send one, so
                        // the connection would stay broken for every later caller. End it (this
                        // call still fails: the transaction was someone else's).
                        drop(Sent::now(Box::pin(client.batch_execute("ROLLBACK"))));
                    }
                    return Err(Error::Db(e));
                }
                Err(kind) => return Err(Error::unsent(kind)),
            },
        };
        let budget = ctx
            .deadline()
            .map(|at| at.saturating_duration_since(Instant::now()));
        if let Some(kind) = ctx.err() {
            return Err(Error::unsent(kind));
        }
        if budget.is_some_and(|b| b.is_zero()) {
            return Err(Error::unsent(crate::Error::DeadlineExceeded));
        }

        // BEGIN (with the budget as the statement's timeout) and the statement go out together,
        // in this order, before anything is awaited.
        let begin_sql = match budget {
            Some(b) => format!("BEGIN; SET LOCAL statement_timeout = {}", timeout_millis(b)),
            None => "BEGIN".to_owned(),
        };
        let begun = AtomicBool::new(false);
        let finished = AtomicBool::new(false);
        let mut guard = Guard {
            client,
            state: State::Running,
            begun: &begun,
            finished: &finished,
        };
        let begin = Sent::now(Box::pin(client.batch_execute(&begin_sql)));
        let work = Sent::now(Box::pin(async {
            let out = op(client, statement, params).await;
            finished.store(true, Ordering::Release);
            out
        }));
        let mut both = pin!(async {
            let begin = begin.wait().await;
            // From here on the server runs our statement (or is done with it): a cancel request
            // can only reach it, or what we send after it.
            begun.store(true, Ordering::Release);
            (begin, work.wait().await)
        });

        let mut done = pin!(ctx.done());
        let ended = poll_fn(|cx| {
            if let Poll::Ready(out) = both.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            done.as_mut().poll(cx).map(|()| None)
        })
        .await;

        if let Some((begin, work)) = ended {
            // The statement is done: end its transaction, keeping a result that arrived.
            guard.state = State::WorkDone;
            let end = if begin.is_ok() && work.is_ok() {
                "COMMIT"
            } else {
                "ROLLBACK"
            };
            let end = client.batch_execute(end).await;
            guard.state = State::Ended;
            let failure = match (begin, work, end) {
                (Ok(()), Ok(v), Ok(())) => return Ok(v),
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => e,
            };
            return Err(match ctx.err() {
                Some(kind) => Error::Context {
                    kind,
                    sent: true,
                    source: Some(failure),
                },
                None => Error::Db(failure),
            });
        }

        let kind = ctx.err().unwrap_or(crate::Error::Canceled);
        let ended = |source| {
            Err(Error::Context {
                kind,
                sent: true,
                source,
            })
        };
        // With a deadline, the server's statement_timeout is due now: let it end the statement.
        // Otherwise (or if it has not even started), wait until the server is on our statement:
        // a cancel request stops whatever the connection runs, which must be ours.
        let grace = if kind.is_deadline_exceeded() && budget.is_some() {
            SERVER_TIMEOUT_GRACE
        } else {
            Duration::ZERO
        };
        let settled = tokio::time::timeout(CLEANUP_PATIENCE, async {
            let mut grace_over = pin!(tokio::time::sleep(grace));
            poll_fn(|cx| {
                if let Poll::Ready(out) = both.as_mut().poll(cx) {
                    return Poll::Ready(Some(out));
                }
                if grace_over.as_mut().poll(cx).is_ready() && begun.load(Ordering::Acquire) {
                    return Poll::Ready(None);
                }
                Poll::Pending
            })
            .await
        })
        .await;
        match settled {
            Ok(Some((_, work))) => {
                // Ended without a cancel request (by the server's timeout, or by itself).
                guard.state = State::WorkDone;
                // Queued, not awaited: the caller's context has ended already.
                drop(Sent::now(Box::pin(client.batch_execute("ROLLBACK"))));
                guard.state = State::Ended;
                return ended(work.err());
            }
            Ok(None) => {}
            Err(_) => return ended(None),
        }

        // Stop it on the server. The tail catches the request if the statement ended by itself
        // before it arrived; if the request stopped the statement, the transaction is aborted
        // and the tail's wait fails at once.
        guard.state = State::Cancelling;
        // A cancel request opens a connection of its own: bounded, as the rest of the cleanup.
        let cancel_sent = matches!(
            tokio::time::timeout(CLEANUP_PATIENCE, client.cancel_token().cancel_query(NoTls)).await,
            Ok(Ok(()))
        );
        let tail = Tail::send(client, cancel_sent);
        guard.state = State::Ended;
        let source = tokio::time::timeout(CLEANUP_PATIENCE, async {
            // The tail is queued, not awaited: whoever uses the connection next comes after it.
            let (_, work) = both.as_mut().await;
            drop(tail);
            // What may still be on its way: PostgreSQL's postmaster signals the server process
            // twice for one cancel request (the process and its group), and the second signal
            // can come a moment after the first was handled. And if the statement failed on its
            // own before the request arrived, the aborted transaction skipped the tail's wait,
            // so the whole request is still on its way. A wait outside the transaction takes it,
            // queued (not awaited): the connection's next statement comes after it.
            if cancel_sent {
                let first_consumed =
                    work.as_ref().err().is_some_and(stopped_by_cancel_request) || work.is_ok();
                drop(Sent::now(Box::pin(client.batch_execute(
                    if first_consumed {
                        SECOND_SIGNAL_SPONGE
                    } else {
                        CANCEL_SPONGE
                    },
                ))));
                // A signal that landed on the tail's ROLLBACK cancelled it, leaving the
                // transaction aborted (and the wait above failing at once): end it for good.
                drop(Sent::now(Box::pin(client.batch_execute(FINAL_ROLLBACK))));
            }
            work.err()
        })
        .await
        .unwrap_or(None);
        ended(source)
    }
}

/// Whether a statement's error is a cancel request's (SQLSTATE 57014 "… due to user request",
/// the text of an English-speaking server; otherwise we wait as if it were not).
fn stopped_by_cancel_request(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        db.code() == &tokio_postgres::error::SqlState::QUERY_CANCELED
            && db.message().contains("user request")
    })
}

/// The statements that end a transaction whose statement was cancelled: the server's cancel
/// request, which targets whatever the connection runs when it arrives, must land on them and
/// never on a later statement.
struct Tail<'a> {
    sent: Vec<Sent<'a, ()>>,
}

impl<'a> Tail<'a> {
    /// Sends the tail (without waiting for it): the wait for a cancel request still on its way
    /// when `cancel_sent`, then `ROLLBACK`.
    fn send(client: &'a Client, cancel_sent: bool) -> Tail<'a> {
        let mut sent = Vec::new();
        if cancel_sent {
            sent.push(Sent::now(Box::pin(
                client.batch_execute("SET LOCAL statement_timeout = 0"),
            )));
            sent.push(Sent::now(Box::pin(client.batch_execute(CANCEL_SPONGE))));
        }
        sent.push(Sent::now(Box::pin(client.batch_execute("ROLLBACK"))));
        Tail { sent }
    }

    /// [`Tail::send`] with a cancel request sent, then the wait for the request's second
    /// signal, for a call that cannot look at how its statement ended (its future was dropped).
    fn send_unwatched(client: &'a Client) -> Tail<'a> {
        let mut tail = Tail::send(client, true);
        tail.sent.push(Sent::now(Box::pin(
            client.batch_execute(SECOND_SIGNAL_SPONGE),
        )));
        tail.sent
            .push(Sent::now(Box::pin(client.batch_execute(FINAL_ROLLBACK))));
        tail
    }
}

/// Where a late cancel request lands: a wait that a cancel request ends, and that fails at once
/// in a transaction already aborted (by the cancel request, or the statement's own failure).
const CANCEL_SPONGE: &str = "SELECT pg_sleep(2)";

/// After the waits: a cancel request's signal that arrives while the tail's `ROLLBACK` runs
/// cancels that `ROLLBACK`, and the transaction stays aborted (every later statement on the
/// connection would fail with "current transaction is aborted"). This one ends it; outside a
/// transaction it is a no-op (the server answers with a warning).
const FINAL_ROLLBACK: &str = "ROLLBACK";

/// Where the postmaster's second signal for one cancel request lands (it signals the server
/// process and then its process group; the two usually arrive as one).
const SECOND_SIGNAL_SPONGE: &str = "SELECT pg_sleep(0.1)";

/// A tokio-postgres request already sent (polled once, which is when tokio-postgres sends it),
/// to be awaited later.
enum Sent<'a, T> {
    Done(Result<T, tokio_postgres::Error>),
    Pending(OpFuture<'a, T>),
}

impl<'a, T> Sent<'a, T> {
    fn now(mut fut: OpFuture<'a, T>) -> Sent<'a, T> {
        let mut cx = TaskContext::from_waker(Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(out) => Sent::Done(out),
            Poll::Pending => Sent::Pending(fut),
        }
    }

    async fn wait(self) -> Result<T, tokio_postgres::Error> {
        match self {
            Sent::Done(out) => out,
            Sent::Pending(fut) => fut.await,
        }
    }
}

/// Where a call is; what its drop must send so the connection is left clean.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// The statement may be running: a cancel request, and the tail.
    Running,
    /// The statement is done, its transaction open: `ROLLBACK` (the caller gave up on it).
    WorkDone,
    /// A cancel request may be on its way: the tail.
    Cancelling,
    /// All is sent.
    Ended,
}

/// Leaves the connection clean when a call's future is dropped before it completed (its task was
/// aborted, a `select!` took another branch): what it sends is queued on the connection at once,
/// behind the statement.
struct Guard<'a> {
    client: &'a Client,
    state: State,
    begun: &'a AtomicBool,
    finished: &'a AtomicBool,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let mut state = self.state;
        if state == State::Running && self.finished.load(Ordering::Acquire) {
            state = State::WorkDone;
        }
        match state {
            State::Ended => {}
            State::WorkDone => drop(Tail::send(self.client, false)),
            State::Cancelling => drop(Tail::send_unwatched(self.client)),
            State::Running => {
                let rt = tokio::runtime::Handle::try_current();
                let (Ok(rt), true) = (rt, self.begun.load(Ordering::Acquire)) else {
                    // No runtime to send a cancel request from, or the server is not on our
                    // statement yet (a request would stop another): the statement runs to its
                    // end (or its statement_timeout); then the transaction is rolled back.
                    drop(Tail::send(self.client, false));
                    return;
                };
                drop(Tail::send_unwatched(self.client));
                let token = self.client.cancel_token();
                rt.spawn(async move {
                    let _ = tokio::time::timeout(CLEANUP_PATIENCE, token.cancel_query(NoTls)).await;
                });
            }
        }
    }
}

/// `statement_timeout` in whole milliseconds, rounded up (at least 1: 0 would disable it).
fn timeout_millis(budget: Duration) -> u128 {
    budget.as_micros().div_ceil(1000).max(1)
}

/// A connection from a `deadpool-postgres` pool, waited for under `ctx` (feature
/// `deadpool-postgres`): the wait ends when the context does, and nothing is asked of the pool
/// once it is done.
///
/// The connections [`ClientExt::under`] used are clean when they go back to the pool (see the
/// [module documentation](self)), so the pool's fast recycling is enough.
///
/// ```no_run
/// use ctxkit::Context;
/// use ctxkit::postgres::ClientExt;
///
/// # async fn handler(pool: &deadpool_postgres::Pool, ctx: &Context) -> Result<(), ctxkit::postgres::Error> {
/// let conn = ctxkit::postgres::get(pool, ctx).await?;
/// let n = conn.under(ctx).execute("UPDATE items SET seen = now() WHERE id = $1", &[&42_i64]).await?;
/// # let _ = n;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// [`Error::Context`] when the context ended first, [`Error::Pool`] for the pool's own errors.
#[cfg(feature = "deadpool-postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "deadpool-postgres")))]
pub async fn get(
    pool: &deadpool_postgres::Pool,
    ctx: &Context,
) -> Result<deadpool_postgres::Object, Error> {
    if let Some(kind) = ctx.err() {
        return Err(Error::unsent(kind));
    }
    match ctx.run(pool.get()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => match ctx.err() {
            Some(kind) => Err(Error::unsent(kind)),
            None => Err(Error::Pool(e)),
        },
        Err(kind) => Err(Error::unsent(kind)),
    }
}

/// Why a statement run [`under`](ClientExt::under) a context failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The context ended.
    Context {
        /// Deadline or cancellation.
        kind: crate::Error,
        /// `false`: the context had ended before the statement was sent, and nothing ran.
        /// `true`: it was sent and stopped on the server (by its `statement_timeout` or a cancel
        /// request).
        sent: bool,
        /// The database's error, when it reported one (`57014 query_canceled`: "canceling
        /// statement due to statement timeout" or "… due to user request").
        source: Option<tokio_postgres::Error>,
    },
    /// The database failed while the context was live.
    Db(tokio_postgres::Error),
    /// The pool failed while the context was live (feature `deadpool-postgres`).
    #[cfg(feature = "deadpool-postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deadpool-postgres")))]
    Pool(deadpool_postgres::PoolError),
}

impl Error {
    context_error_helpers!("statement");

    /// The database's error, if there is one.
    pub fn db_error(&self) -> Option<&tokio_postgres::Error> {
        match self {
            Error::Context { source, .. } => source.as_ref(),
            Error::Db(e) => Some(e),
            #[cfg(feature = "deadpool-postgres")]
            Error::Pool(_) => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Context {
                kind, sent: false, ..
            } => write!(f, "{kind}: statement not sent"),
            Error::Context { kind, .. } => write!(f, "{kind}: statement stopped on the server"),
            Error::Db(e) => fmt::Display::fmt(e, f),
            #[cfg(feature = "deadpool-postgres")]
            Error::Pool(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Context {
                source: Some(e), ..
            } => Some(e),
            Error::Context { kind, .. } => Some(kind),
            Error::Db(e) => e.source(),
            #[cfg(feature = "deadpool-postgres")]
            Error::Pool(e) => e.source(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_is_rounded_up_and_never_zero() {
        assert_eq!(timeout_millis(Duration::from_nanos(1)), 1);
        assert_eq!(timeout_millis(Duration::from_micros(1500)), 2);
        assert_eq!(timeout_millis(Duration::from_millis(200)), 200);
        assert_eq!(timeout_millis(Duration::ZERO), 1);
    }
}
