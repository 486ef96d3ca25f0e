use ctxkit::cancellable;

#[cancellable(timeout = "0ms")]
async fn fetch() -> u32 {
    1
}

fn main() {
    let _ = fetch();
}
