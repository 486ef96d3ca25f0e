use ctxkit::cancellable;

#[cancellable(timeout = "9999999h")]
async fn fetch() -> u32 {
    1
}

fn main() {
    let _ = fetch();
}
