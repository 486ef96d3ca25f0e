use ctxkit::cancellable;

#[derive(Debug)]
enum ApiError {
    WriteFailed,
}

type ApiResult<T> = Result<T, ApiError>;

#[cancellable]
async fn save(ok: bool) -> ApiResult<()> {
    tokio::task::yield_now().await;
    if ok { Ok(()) } else { Err(ApiError::WriteFailed) }
}

fn main() {
    let _ = save(true);
}
