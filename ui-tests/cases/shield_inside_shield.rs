use ctxkit::cancellable;

#[cancellable]
async fn save() {
    #[shield]
    {
        #[shield]
        tokio::task::yield_now().await;
    }
}

fn main() {
    let _ = save();
}
