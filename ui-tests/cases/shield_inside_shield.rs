use ctxkit::cancellable;

#[cancellable]
async fn save() -> Result<(), ctxkit::Error> {
    #[shield]
    {
        #[shield]
        tokio::task::yield_now().await;
    }
    Ok(())
}

fn main() {
    let _ = save();
}
