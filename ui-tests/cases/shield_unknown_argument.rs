use ctxkit::cancellable;

#[cancellable]
async fn save() -> Result<(), ctxkit::Error> {
    #[shield(deadline = "1s")]
    tokio::task::yield_now().await;
    Ok(())
}

fn main() {
    let _ = save();
}
