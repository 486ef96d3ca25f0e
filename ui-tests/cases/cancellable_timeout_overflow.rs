use ctxkit::cancellable;

#[cancellable(timeout = "9999999h")]
async fn fetch() -> Result<u32, ctxkit::Error> {
    Ok(1)
}

fn main() {
    let _ = fetch();
}
