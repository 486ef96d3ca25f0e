use ctxkit::{Error, cancellable};

#[cancellable]
async fn count(items: &[u32]) -> Result<usize, Error> {
    #[shield]
    tokio::task::yield_now().await;
    let n = items.len() +;
    Ok(n)
}

// The signature is kept: callers type-check against `Result<usize, Error>`.
async fn caller() -> Result<usize, Error> {
    let n: usize = count(&[1, 2]).await?;
    Ok(n)
}

fn main() {
    let _ = caller();
}
