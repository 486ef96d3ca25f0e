use ctxkit::cancellable;

#[cancellable]
async fn save() -> Result<(), ctxkit::Error> {
    let task = async {
        #[shield]
        tokio::task::yield_now().await;
    };
    task.await;
    Ok(())
}

fn main() {
    let _ = save();
}
