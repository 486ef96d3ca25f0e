use ctxkit::cancellable;

#[cancellable(timeout = "1.5 seconds")]
async fn fetch() -> u32 {
    1
}

fn main() {
    let _ = fetch();
}
