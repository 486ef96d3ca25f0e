use ctxkit::cancellable;

#[derive(Debug)]
enum AppError {
    NotFound,
}

#[cancellable]
async fn find(id: u32) -> Result<u32, AppError> {
    if id == 0 {
        return Err(AppError::NotFound);
    }
    Ok(id)
}

fn main() {
    let _ = find(1);
}
