//! A client hangs up; the SQL and the downstream call it started stop.
//!
//! An axum service (behind ctxkit's `ServerLayer`) answers `/report` by running a slow query on
//! PostgreSQL (`ctxkit::postgres`) and calling a slow downstream HTTP service with reqwest
//! (`ctxkit::reqwest`) at the same time. A client sends one request and hangs up after 300 ms.
//! The example prints when the statement stopped on the server (seen in `pg_stat_activity` from
//! another connection) and when the downstream service saw its caller go away.
//!
//! Needs a PostgreSQL: `CTXKIT_POSTGRES_URL` (`scripts/with-services cargo run -p
//! ctxkit-integration --example downstream_hangup` starts one); without it, it says so and
//! exits (an error under `CI=true`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use ctxkit::axum::Ctx;
use ctxkit::postgres::ClientExt;
use ctxkit::propagation::Accept;
use ctxkit::reqwest::RequestBuilderExt;
use ctxkit::tower::{ClientWentAway, ServerLayer};
use ctxkit::{Context, Instant};
use tokio::sync::mpsc;
use tokio_postgres::NoTls;

const PATIENCE: Duration = Duration::from_secs(10);

/// Whether the server process `pid` runs the report's query.
async fn running(monitor: &tokio_postgres::Client, pid: i32) -> bool {
    let row = monitor
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE pid = $1 AND state = 'active' AND query LIKE '%slow_report%'",
            &[&pid],
        )
        .await
        .unwrap();
    row.get::<_, i64>(0) > 0
}

async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::main]
async fn main() {
    let Some(url) = std::env::var("CTXKIT_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        eprintln!(
            "!!!!!! SKIPPED: CTXKIT_POSTGRES_URL is not set, so there is no PostgreSQL to stop a \
             query on. Run: scripts/with-services cargo run -p ctxkit-integration --example downstream_hangup"
        );
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            std::process::exit(1);
        }
        return;
    };

    // The downstream service: slow, and it says when its caller went away.
    let (gone_tx, mut gone) = mpsc::unbounded_channel();
    let downstream = Router::new()
        .route(
            "/stock",
            get(move |Ctx(ctx): Ctx| {
                let gone_tx = gone_tx.clone();
                async move {
                    let watched = ctx.clone();
                    tokio::spawn(async move {
                        watched.done().await;
                        let went_away = watched
                            .cause()
                            .is_some_and(|c| c.downcast_ref::<ClientWentAway>().is_some());
                        let _ = gone_tx.send((Instant::now(), went_away));
                    });
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "42 in stock"
                }
            }),
        )
        .layer(ServerLayer::new(Context::background(), Accept::new()));
    let downstream = serve(downstream).await;

    // The service: a query and a downstream call under the request's context.
    let (db, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(conn);
    let db = Arc::new(db);
    let pid: i32 = db
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let http = reqwest::Client::new();
    let app = Router::new()
        .route(
            "/report",
            get(move |Ctx(ctx): Ctx| {
                let (db, http) = (db.clone(), http.clone());
                async move {
                    let sql = async {
                        db.under(&ctx)
                            .query_one("SELECT pg_sleep(30)::text AS slow_report", &[])
                            .await
                    };
                    let call = http
                        .get(format!("http://{downstream}/stock"))
                        .send_with(&ctx);
                    let (rows, stock) = tokio::join!(sql, call);
                    format!("{:?} {:?}", rows.map(|_| ()), stock.map(|r| r.status()))
                }
            }),
        )
        .layer(ServerLayer::new(Context::background(), Accept::new()));
    let service = serve(app).await;

    // A monitor connection, to watch the query on the server.
    let (monitor, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(conn);
    // The client: one request, and it hangs up after 300 ms.
    let client = tokio::spawn(async move {
        reqwest::Client::new()
            .get(format!("http://{service}/report"))
            .send()
            .await
    });
    let start = Instant::now();
    while !running(&monitor, pid).await {
        assert!(start.elapsed() < PATIENCE, "the query never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "the service runs `SELECT pg_sleep(30)` on PostgreSQL and calls the downstream service"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.abort();
    let hung_up = Instant::now();
    println!("the client hangs up");

    while running(&monitor, pid).await {
        assert!(
            hung_up.elapsed() < PATIENCE,
            "the query still runs on the server"
        );
    }
    println!(
        "PostgreSQL: the query stopped on the server {:.1} ms after the hang-up (pg_stat_activity)",
        hung_up.elapsed().as_secs_f64() * 1e3
    );
    let (at, went_away) = tokio::time::timeout(PATIENCE, gone.recv())
        .await
        .expect("the downstream call was never dropped")
        .unwrap();
    println!(
        "downstream: its caller went away {:.1} ms after the hang-up ({})",
        (at - hung_up).as_secs_f64() * 1e3,
        if went_away {
            "the connection was closed"
        } else {
            "its context ended"
        }
    );
}
