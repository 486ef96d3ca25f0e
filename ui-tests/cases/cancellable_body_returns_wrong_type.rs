use ctxkit::cancellable;

#[cancellable]
async fn count() -> u32 {
    tokio::task::yield_now().await;
    "three"
}

fn main() {
    let _ = count();
}
