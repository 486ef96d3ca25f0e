use ctxkit::cancellable;

#[cancellable]
async fn wait() {
    let n = 5u32;
    n.await;
}

fn main() {
    let _ = wait();
}
