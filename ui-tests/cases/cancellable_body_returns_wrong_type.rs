use ctxkit::cancellable;

#[cancellable]
async fn count() -> Result<u32, ctxkit::Error> {
    tokio::task::yield_now().await;
    "three"
}

fn main() {
    let _ = count();
}
