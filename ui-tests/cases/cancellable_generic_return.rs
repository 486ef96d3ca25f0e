use ctxkit::cancellable;

#[cancellable]
async fn first<T: Clone>(items: &[T]) -> T {
    tokio::task::yield_now().await;
    items[0].clone()
}

fn main() {
    let _ = first(&[1]);
}
