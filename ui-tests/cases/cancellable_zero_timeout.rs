use ctxkit::cancellable;

#[cancellable(timeout = "0ms")]
async fn fetch() -> Result<u32, ctxkit::Error> {
    Ok(1)
}

fn main() {
    let _ = fetch();
}
