use ctxkit::cancellable;

#[cancellable]
async fn fetch_all(ids: &[u32]) -> Vec<u32> {
    tokio::task::yield_now().await;
    ids.to_vec()
}

fn main() {
    let _ = fetch_all(&[1]);
}
