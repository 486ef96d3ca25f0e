use ctxkit::cancellable;

#[cancellable]
async fn save() {
    let task = async {
        #[shield]
        tokio::task::yield_now().await;
    };
    task.await;
}

fn main() {
    let _ = save();
}
