use ctxkit::{Error, cancellable};

#[cancellable]
async fn count(items: &[u32], limit: ) -> Result<usize, Error> {
    #[shield]
    tokio::task::yield_now().await;
    Ok(items.len())
}

// The fn is still there for its callers.
async fn caller() -> Result<usize, Error> {
    count(&[1], 2).await
}

fn main() {
    let _ = caller();
}
