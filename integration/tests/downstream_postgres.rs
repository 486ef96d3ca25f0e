//! `ctxkit::postgres` against a real PostgreSQL (`CTXKIT_POSTGRES_URL`): an expired budget sends
//! nothing, a deadline is the server's `statement_timeout`, a cancellation stops the statement on
//! the server (seen in `pg_stat_activity` from a second connection), a dropped call still stops
//! it, and a soak with random cancels on a pool of 4 leaves no broken connection.
//!
//! The cancel-to-server-stop latencies and the soak's counts are printed (`--nocapture`); no
//! assertion is timed beyond generous bounds.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ctxkit::postgres::{ClientExt, Error as DbError};
use ctxkit::{Context, Error, Instant};
use tokio_postgres::{Client, NoTls};

/// Far longer than anything should take, even on a saturated machine.
const PATIENCE: Duration = Duration::from_secs(30);

async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

async fn backend_pid(client: &Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// `(state, query)` of a server process, seen from another connection.
async fn activity(monitor: &Client, pid: i32) -> (String, String) {
    let row = monitor
        .query_one(
            "SELECT coalesce(state, ''), coalesce(query, '') FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// Whether the server process runs the tests' `pg_sleep(10)` (not a wait ctxkit queues after a
/// cancel request).
fn is_sleeping((state, query): &(String, String)) -> bool {
    state == "active" && query.contains("pg_sleep(10)")
}

/// Waits until the server process `pid` runs the `pg_sleep(10)`.
async fn until_sleeping(monitor: &Client, pid: i32) {
    let start = Instant::now();
    while !is_sleeping(&activity(monitor, pid).await) {
        assert!(start.elapsed() < PATIENCE, "the statement never started");
        tokio::task::yield_now().await;
    }
}

/// Polls until the server process `pid` no longer runs the `pg_sleep(10)`; returns when it saw
/// that.
async fn until_stopped(monitor: &Client, pid: i32) -> Instant {
    let start = Instant::now();
    loop {
        if !is_sleeping(&activity(monitor, pid).await) {
            return Instant::now();
        }
        assert!(
            start.elapsed() < PATIENCE,
            "the statement still runs on the server"
        );
    }
}

/// The connection is idle, outside any transaction, with the server's default timeout.
async fn assert_clean(client: &Client, monitor: &Client) {
    let pid = backend_pid(client).await;
    let timeout: String = client
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        timeout, "0",
        "statement_timeout leaked out of the statement"
    );
    // From the monitor, the connection is idle (not "idle in transaction").
    let (state, _) = activity(monitor, pid).await;
    assert_eq!(state, "idle");
}

fn sql_state(err: &DbError) -> Option<String> {
    err.db_error()
        .and_then(|e| e.code())
        .map(|c| c.code().to_owned())
}

#[tokio::test]
async fn a_context_already_done_sends_nothing() {
    let url = require!(support::postgres_url());
    let client = connect(&url).await;
    client
        .batch_execute("CREATE TEMP TABLE marks (n int)")
        .await
        .unwrap();

    let (cancelled, cancel) = Context::background().with_cancel();
    cancel.cancel();
    let err = client
        .under(&cancelled)
        .execute("INSERT INTO marks VALUES (1)", &[])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DbError::Context {
                kind: Error::Canceled,
                sent: false,
                ..
            }
        ),
        "{err:?}"
    );

    let (expired, _cancel) = Context::background().with_deadline(Instant::now());
    let stmt = client
        .prepare("INSERT INTO marks VALUES (2)")
        .await
        .unwrap();
    let err = client
        .under(&expired)
        .execute(&stmt, &[])
        .await
        .unwrap_err();
    assert!(err.is_deadline_exceeded(), "{err:?}");
    assert!(matches!(err, DbError::Context { sent: false, .. }));

    let n: i64 = client
        .query_one("SELECT count(*) FROM marks", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "a statement ran although its context was done");
}

#[tokio::test]
async fn statements_under_a_live_context_work_and_commit() {
    let url = require!(support::postgres_url());
    let client = connect(&url).await;
    let monitor = connect(&url).await;
    client
        .batch_execute("CREATE TEMP TABLE items (n int)")
        .await
        .unwrap();
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(30));
    let under = client.under(&ctx);
    assert_eq!(
        under
            .execute("INSERT INTO items VALUES ($1), ($2)", &[&1_i32, &2_i32])
            .await
            .unwrap(),
        2
    );
    let rows = under
        .query("SELECT n FROM items ORDER BY n", &[])
        .await
        .unwrap();
    assert_eq!(rows.iter().map(|r| r.get(0)).collect::<Vec<i32>>(), [1, 2]);
    let one: i32 = under
        .query_one("SELECT n FROM items WHERE n = $1", &[&2_i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(one, 2);
    assert!(
        under
            .query_opt("SELECT n FROM items WHERE n = 3", &[])
            .await
            .unwrap()
            .is_none()
    );
    // The statement saw the budget as its timeout.
    let seen: String = under
        .query_one("SELECT current_setting('statement_timeout')", &[])
        .await
        .unwrap()
        .get(0);
    let ms: u64 = seen.trim_end_matches("ms").parse().unwrap_or_else(|_| {
        // PostgreSQL shows whole seconds as "30s".
        seen.trim_end_matches('s').parse::<u64>().unwrap() * 1000
    });
    assert!(ms > 0 && ms <= 30_000, "{seen}");
    // A database error while the context is live is the database's.
    let err = under
        .query_one("SELECT n FROM items", &[])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), None);
    assert!(matches!(err, DbError::Db(_)));
    let err = under.execute("SELECT 1/0", &[]).await.unwrap_err();
    assert_eq!(sql_state(&err).as_deref(), Some("22012"));
    // Without a deadline: no transaction, same answers.
    let none = Context::background();
    assert_eq!(
        client
            .under(&none)
            .query("SELECT 1", &[])
            .await
            .unwrap()
            .len(),
        1
    );
    assert_clean(&client, &monitor).await;
}

#[tokio::test]
async fn a_deadline_is_the_servers_statement_timeout() {
    let url = require!(support::postgres_url());
    let client = connect(&url).await;
    let monitor = connect(&url).await;
    let start = Instant::now();
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(200));
    let err = client
        .under(&ctx)
        .execute("SELECT pg_sleep(10)", &[])
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert!(err.is_deadline_exceeded(), "{err:?}");
    assert!(matches!(err, DbError::Context { sent: true, .. }));
    // The server ended it, by its statement_timeout.
    let db = err.db_error().expect("the server's error");
    assert_eq!(db.code().map(|c| c.code()), Some("57014"));
    assert!(
        db.as_db_error()
            .is_some_and(|e| e.message().contains("statement timeout")),
        "{db:?}"
    );
    assert!(
        took >= Duration::from_millis(200) && took < PATIENCE,
        "{took:?}"
    );
    eprintln!("pg_sleep(10) under a 200 ms budget returned after {took:?}");
    assert_clean(&client, &monitor).await;
}

#[tokio::test]
async fn a_cancellation_stops_the_statement_on_the_server() {
    let url = require!(support::postgres_url());
    let client = Arc::new(connect(&url).await);
    let monitor = connect(&url).await;
    let pid = backend_pid(&client).await;
    // With and without a deadline (a transaction or not).
    for budget in [None, Some(Duration::from_secs(60))] {
        let (ctx, cancel) = match budget {
            Some(b) => Context::background().with_timeout(b),
            None => Context::background().with_cancel(),
        };
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.under(&ctx).execute("SELECT pg_sleep(10)", &[]).await }
        });
        until_sleeping(&monitor, pid).await;
        let cancelled = Instant::now();
        cancel.cancel();
        let stopped = until_stopped(&monitor, pid).await;
        let err = tokio::time::timeout(PATIENCE, call)
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        eprintln!(
            "budget {budget:?}: stopped on the server {:?} after the cancel",
            stopped - cancelled
        );
        assert!(err.is_canceled(), "{err:?}");
        let db = err.db_error().expect("the server's error");
        assert!(
            db.as_db_error()
                .is_some_and(|e| e.message().contains("user request")),
            "{db:?}"
        );
        assert_clean(&client, &monitor).await;
    }
}

#[tokio::test]
async fn cancel_to_server_stop_latency_over_60_runs() {
    let url = require!(support::postgres_url());
    let client = Arc::new(connect(&url).await);
    let monitor = connect(&url).await;
    let pid = backend_pid(&client).await;
    let mut latencies = Vec::new();
    for _ in 0..60 {
        let (ctx, cancel) = Context::background().with_timeout(Duration::from_secs(60));
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.under(&ctx).execute("SELECT pg_sleep(10)", &[]).await }
        });
        until_sleeping(&monitor, pid).await;
        let cancelled = Instant::now();
        cancel.cancel();
        latencies.push(until_stopped(&monitor, pid).await - cancelled);
        let err = tokio::time::timeout(PATIENCE, call)
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert!(err.is_canceled(), "{err:?}");
    }
    latencies.sort();
    eprintln!(
        "cancel → stopped on the server (pg_stat_activity), {} runs: min {:?}, median {:?}, p90 {:?}, max {:?}",
        latencies.len(),
        latencies[0],
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 9 / 10],
        latencies[latencies.len() - 1]
    );
    assert_clean(&client, &monitor).await;
}

#[tokio::test]
async fn a_dropped_call_still_stops_the_statement_and_ends_its_transaction() {
    let url = require!(support::postgres_url());
    let client = Arc::new(connect(&url).await);
    let monitor = connect(&url).await;
    let pid = backend_pid(&client).await;
    let call = tokio::spawn({
        let client = client.clone();
        async move {
            let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(60));
            client.under(&ctx).execute("SELECT pg_sleep(10)", &[]).await
        }
    });
    until_sleeping(&monitor, pid).await;
    call.abort();
    let _ = call.await;
    until_stopped(&monitor, pid).await;
    // The pipeline's COMMIT still ran: the next statement is not inside a leftover transaction,
    // and it is not hit by the cancel.
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    assert_clean(&client, &monitor).await;
}

/// What one soak query does to its context.
#[derive(Clone, Copy, Debug)]
enum Fate {
    Live,
    Cancel(Duration),
    Deadline(Duration),
    /// The call's future is dropped (its task gave up on it) after this long.
    Drop(Duration),
}

#[tokio::test]
async fn soak_2000_queries_with_random_cancels_on_a_pool_of_4() {
    let url = require!(support::postgres_url());
    let config: tokio_postgres::Config = url.parse().unwrap();
    let manager = deadpool_postgres::Manager::from_config(
        config,
        NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(4)
        .build()
        .unwrap();
    const QUERIES: usize = 2000;
    const WORKERS: usize = 8;
    let next = Arc::new(AtomicUsize::new(0));
    let (ok, ended, broken) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let dropped = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (pool, next, ok, ended, broken, dropped) = (
            pool.clone(),
            next.clone(),
            ok.clone(),
            ended.clone(),
            broken.clone(),
            dropped.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(w as u64 + 1);
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= QUERIES {
                    break;
                }
                let sleep_ms = rng.u32(0..15);
                let within = Duration::from_millis(rng.u64(0..20));
                let fate = match rng.u8(0..10) {
                    0..=2 => Fate::Live,
                    3..=5 => Fate::Cancel(within),
                    6..=8 => Fate::Deadline(within + Duration::from_millis(1)),
                    _ => Fate::Drop(within),
                };
                let (ctx, cancel) = match fate {
                    Fate::Deadline(d) => Context::background().with_timeout(d),
                    _ => Context::background().with_cancel(),
                };
                if let Fate::Cancel(after) = fate {
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        cancel.cancel();
                    });
                } else {
                    std::mem::forget(cancel); // neither cancelled nor dropped (a drop cancels)
                }
                let call = async {
                    let conn = ctxkit::postgres::get(&pool, &ctx).await?;
                    let row = conn
                        .under(&ctx)
                        .query_one(
                            "SELECT pg_sleep($1::int / 1000.0), $2::int",
                            &[&(sleep_ms as i32), &(i as i32)],
                        )
                        .await?;
                    Ok::<i32, DbError>(row.get(1))
                };
                let out = match fate {
                    Fate::Drop(after) => match tokio::time::timeout(after, call).await {
                        Ok(out) => out,
                        Err(_) => {
                            dropped.fetch_add(1, Ordering::SeqCst);
                            continue;
                        }
                    },
                    _ => call.await,
                };
                match out {
                    Ok(n) if n == i as i32 => ok.fetch_add(1, Ordering::SeqCst),
                    Ok(n) => panic!("query {i} got the answer of query {n}"),
                    Err(e) if e.kind().is_some() && !matches!(fate, Fate::Live) => {
                        ended.fetch_add(1, Ordering::SeqCst)
                    }
                    Err(e) => {
                        eprintln!("broken: query {i} ({fate:?}): {e:?}");
                        broken.fetch_add(1, Ordering::SeqCst)
                    }
                };
            }
        }));
    }
    for w in workers {
        tokio::time::timeout(Duration::from_secs(300), w)
            .await
            .unwrap()
            .unwrap();
    }
    let took = start.elapsed();

    // Afterwards: every connection of the pool answers, cleanly, with nothing left running.
    let monitor = connect(&url).await;
    let conns: Vec<_> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(pool.get().await.unwrap());
        }
        v
    };
    let ctx = Context::background();
    let mut pids = Vec::new();
    for (k, conn) in conns.iter().enumerate() {
        let n: i32 = conn
            .under(&ctx)
            .query_one("SELECT $1::int", &[&(k as i32)])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, k as i32);
        pids.push(backend_pid(conn).await);
    }
    // Nothing left running on the pool's connections (other tests' connections are not counted).
    let waited = Instant::now();
    let leftover = loop {
        let n: i64 = monitor
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1) AND state <> 'idle'",
                &[&pids],
            )
            .await
            .unwrap()
            .get(0);
        if n == 0 || waited.elapsed() > PATIENCE {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    for conn in &conns {
        assert_clean(conn, &monitor).await;
    }
    let status = pool.status();
    eprintln!(
        "soak: {QUERIES} queries in {took:?} on a pool of {} ({} workers): {} answered, {} ended by \
         their context, {} dropped mid-call, {} broken; leftover running statements: {leftover}",
        status.max_size,
        WORKERS,
        ok.load(Ordering::SeqCst),
        ended.load(Ordering::SeqCst),
        dropped.load(Ordering::SeqCst),
        broken.load(Ordering::SeqCst),
    );
    assert_eq!(broken.load(Ordering::SeqCst), 0);
    assert_eq!(leftover, 0);
    assert!(ok.load(Ordering::SeqCst) > 0 && ended.load(Ordering::SeqCst) > 0);
}

#[tokio::test]
async fn waiting_for_a_pooled_connection_ends_with_the_context() {
    let url = require!(support::postgres_url());
    let config: tokio_postgres::Config = url.parse().unwrap();
    let manager = deadpool_postgres::Manager::new(config, NoTls);
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(1)
        .build()
        .unwrap();
    let held = pool.get().await.unwrap();
    let start = Instant::now();
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(200));
    let err = ctxkit::postgres::get(&pool, &ctx).await.unwrap_err();
    assert!(err.is_deadline_exceeded(), "{err:?}");
    assert!(start.elapsed() >= Duration::from_millis(200));
    drop(held);
    let conn = ctxkit::postgres::get(&pool, &Context::background())
        .await
        .unwrap();
    let n: i32 = conn.query_one("SELECT 7", &[]).await.unwrap().get(0);
    assert_eq!(n, 7);
}

#[tokio::test]
async fn a_connection_left_in_an_aborted_transaction_fails_once_then_works_again() {
    let url = require!(support::postgres_url());
    let client = connect(&url).await;
    // Someone left the connection inside a failed transaction.
    assert!(client.batch_execute("BEGIN; SELECT 1/0").await.is_err());
    let ctx = Context::background();
    let first = client.under(&ctx).query_one("SELECT 1::int", &[]).await;
    let err = first.unwrap_err();
    assert_eq!(
        err.db_error().and_then(|e| e.code()),
        Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION),
        "{err}"
    );
    // The failed call ended that transaction: the connection is usable again.
    let n: i32 = client
        .under(&ctx)
        .query_one("SELECT 2::int", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}
