use ctxkit::cancellable;

#[cancellable(timeout = "1.5 seconds")]
async fn fetch() -> Result<u32, ctxkit::Error> {
    Ok(1)
}

fn main() {
    let _ = fetch();
}
