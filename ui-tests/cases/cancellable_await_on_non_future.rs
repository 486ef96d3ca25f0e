use ctxkit::cancellable;

#[cancellable]
async fn wait() -> Result<(), ctxkit::Error> {
    let n = 5u32;
    n.await;
    Ok(())
}

fn main() {
    let _ = wait();
}
