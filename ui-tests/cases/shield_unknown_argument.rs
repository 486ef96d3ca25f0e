use ctxkit::cancellable;

#[cancellable]
async fn save() {
    #[shield(deadline = "1s")]
    tokio::task::yield_now().await;
}

fn main() {
    let _ = save();
}
