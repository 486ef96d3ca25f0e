use ctxkit::cancellable;

#[cancellable(timeout = 250)]
async fn fetch() -> Result<u32, ctxkit::Error> {
    Ok(1)
}

fn main() {
    let _ = fetch();
}
