use ctxkit::cancellable;

#[cancellable(deadline = "1s")]
async fn fetch() -> Result<u32, ctxkit::Error> {
    Ok(1)
}

fn main() {
    let _ = fetch();
}
